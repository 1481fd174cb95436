/* Statistics in shared memory: written by every process without locks, read
 * by anyone (the admin API, shmstat) without the proxy's help.
 *
 * One POSIX shared-memory object holds a header, a table of stat entries, an
 * arena of names (any length), and value cells. Every process writes only its
 * own *slot*: counters and gauges have one 64-bit cell per slot, so a writer
 * never contends and a reader sums the slots. A slot outlives its process, so
 * counters never go backwards; a dead process's gauge cells are zeroed by the
 * supervisor (a crashed worker's open connections are no longer open).
 * Histograms are fixed log-linear bucket arrays per slot, plus count and sum.
 *
 * Names are appended without a lock: an entry is reserved with an atomic
 * increment, filled, then published with a release store; readers skip
 * entries not yet published. Two processes may register the same name at
 * once; readers then see two entries of one name and merge them. No lock
 * lives in the segment, so a process killed at any instruction wedges no one. */
#ifndef LEGATE_SHM_STATS_H
#define LEGATE_SHM_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define STATS_MAGIC 0x3154415453474c00ull /* "\0LGSTAT1" */
/* Bump on any change below. A test build adds LEGATE_LAYOUT_VERSION_DELTA to
 * exercise a hot restart between different layouts. */
#ifndef LEGATE_LAYOUT_VERSION_DELTA
#define LEGATE_LAYOUT_VERSION_DELTA 0u
#endif
#define STATS_LAYOUT_VERSION (3u + LEGATE_LAYOUT_VERSION_DELTA)

/* Histogram buckets: values 0..15 exactly, then 8 linear sub-buckets per power
 * of two up to 2^40 (a value is exact to within 12.5%); larger values land in
 * the last bucket. */
#define STATS_HIST_SUB 8
#define STATS_HIST_BUCKETS (16 + (40 - 4) * STATS_HIST_SUB + 1)

enum stat_kind {
    STAT_COUNTER = 1,
    STAT_GAUGE = 2,
    STAT_HISTOGRAM = 3,
};

/* How big a segment to make: from the configuration, with headroom. */
struct stats_layout {
    uint32_t max_stats;      /* entries in the table (all kinds) */
    uint32_t max_histograms; /* of which histograms, each with its own bucket block */
    uint32_t n_slots;        /* process slots */
    uint64_t arena_size;     /* bytes for names */
};

/* The segment header, at offset 0. Every offset is from the segment start. */
struct stats_header {
    uint64_t magic;
    uint32_t layout_version;
    uint32_t header_size; /* sizeof(struct stats_header) */
    uint32_t base_id;
    uint32_t epoch;         /* hot-restart epoch of the generation that made it */
    int64_t created_unix;   /* creation time, seconds (the first generation's start) */
    int32_t supervisor_pid; /* its owner: the supervisor of the generation serving */
    uint32_t n_slots;
    uint32_t max_stats;
    uint32_t max_histograms;
    uint64_t arena_size;
    uint64_t table_off;          /* max_stats x struct stats_entry */
    uint64_t arena_off;          /* arena_size bytes of names */
    uint64_t cells_off;          /* n_slots x row_stride x 8 bytes, slot-major: (slot, index)
                                    is at cells_off + (slot * row_stride + index) * 8, so a
                                    process's cells are contiguous and never share a cache
                                    line with another's */
    uint64_t hists_off;          /* n_slots x max_histograms x struct stats_hist_cells */
    uint64_t total_size;         /* the whole segment */
    _Atomic uint32_t n_reserved; /* entries handed out (at most max_stats; readers clamp anyway) */
    _Atomic uint32_t n_hists;    /* histogram blocks handed out */
    _Atomic uint64_t arena_used; /* name bytes handed out */
    _Atomic int32_t owner_alive; /* cleared by a supervisor that exits cleanly */
    uint32_t row_stride;         /* cells per slot row: max_stats rounded up to 8 */
    uint64_t slots_off;          /* n_slots x struct stats_slot_info */
    uint64_t baseline_off;       /* max_stats x 8 bytes: counter values at the last reset */
    int64_t owner_since_unix;    /* when supervisor_pid became the owner (hot restart moves it) */
};

/* Who writes a slot, kept by the supervisor so that readers (shmstat
 * --per-process) can name the processes behind the numbers. */
enum stats_slot_state {
    STATS_SLOT_UNUSED = 0,
    STATS_SLOT_ALIVE = 1,
    STATS_SLOT_EXITED = 2,
};

struct stats_slot_info {
    _Atomic uint32_t state; /* enum stats_slot_state; written last (release) */
    int32_t pid;
    int64_t started_unix;
    uint32_t epoch; /* hot-restart epoch of the process's generation */
    uint32_t unused;
    char title[48]; /* "worker 0"; readers copy it and terminate it themselves */
};

/* Entry flags. A host stat (per upstream host: `cluster.<c>.host.<addr>.<stat>`)
 * is listed by /clusters, not by /stats or Prometheus, as in Envoy. */
#define STAT_FLAG_HOST 1u

struct stats_entry {
    _Atomic uint32_t ready; /* 0 until the entry is complete (release/acquire) */
    uint32_t kind;          /* enum stat_kind */
    uint32_t name_off;      /* into the arena */
    uint32_t name_len;
    uint32_t index; /* counters/gauges: cell column; histograms: histogram block */
    uint32_t flags; /* STAT_FLAG_* */
};

struct stats_hist_cells {
    _Atomic uint64_t count;
    _Atomic uint64_t sum;
    _Atomic uint64_t buckets[STATS_HIST_BUCKETS];
};

/* The shape of a segment, copied from its header once it is validated. Every
 * later access uses the copy: another process could change the header in
 * shared memory after validation, and nothing read there twice is trusted. */
struct stats_geometry {
    uint32_t n_slots, max_stats, max_histograms, row_stride;
    uint64_t arena_size, table_off, arena_off, cells_off, hists_off, slots_off, baseline_off;
};

/* A process's view of a segment. */
struct stats {
    void *base;
    size_t size;
    bool read_only;
    uint32_t slot; /* the slot this process writes (writers only) */
    struct stats_header *hdr;
    struct stats_geometry g;
};

/* Name the segment of an instance: "/legate.<base_id>.stats". */
void stats_shm_name(unsigned base_id, char *out, size_t cap);

/* Create (replacing any stale segment of that name), 0600, sized by `layout`.
 * Returns 0, or -1 with errno. */
int stats_create(struct stats *s, const char *shm_name, const struct stats_layout *layout,
                 uint32_t base_id, uint32_t epoch);
/* Map an existing segment. Read-only mappings validate every header field and
 * offset against the real size first: a truncated or hostile segment is an
 * error (`why` says which), never a crash. */
int stats_attach(struct stats *s, const char *shm_name, bool read_only, const char **why);
/* The same validation, for a segment already in memory (shmstat, tests). */
int stats_validate(const void *base, size_t size, const char **why);
void stats_detach(struct stats *s);
int stats_unlink(const char *shm_name);

/* Which slot this process writes; -1 (and no change) if the segment has no
 * such slot: two processes sharing a slot would lose increments. */
int stats_set_slot(struct stats *s, uint32_t slot);

/* Find or add a stat; returns its id (>= 0), or -1 if the table, the arena or
 * the histogram blocks are full, or the name is registered with another kind. */
int stats_register(struct stats *s, const char *name, enum stat_kind kind);
int stats_register_flags(struct stats *s, const char *name, enum stat_kind kind, uint32_t flags);
/* Find a published stat by name; -1 if absent. */
int stats_find(const struct stats *s, const char *name, size_t len);

/* Entries that are published (ids below stats_count() that are not ready are
 * skipped by stats_entry_at returning NULL). The segment is shared with other
 * processes, some perhaps hostile: every reader copies an entry's fields once,
 * checks the copy, and uses only the copy. */
uint32_t stats_count(const struct stats *s);
const struct stats_entry *stats_entry_at(const struct stats *s, uint32_t id);
/* The entry's name (not NUL-terminated) and its length; NULL (and *len 0) if
 * the entry does not point inside the arena. */
const char *stats_name(const struct stats *s, const struct stats_entry *e, size_t *len);

/* Writers. Each touches only this process's slot: a relaxed load and store. */
void stats_inc(struct stats *s, int id, uint64_t n);
void stats_gauge_add(struct stats *s, int id, int64_t delta);
void stats_gauge_set(struct stats *s, int id, int64_t value);
void stats_hist_record(struct stats *s, int id, uint64_t value);

/* The hot path: resolve a counter or gauge to this process's own cell once
 * (at start-up), then add to it inline. Only this process writes its slot, so
 * a relaxed load and store do: no read-modify-write, about the cost of a
 * plain add. NULL for a failed registration, which
 * stats_cell_add accepts and ignores. */
_Atomic uint64_t *stats_cell(struct stats *s, int id);
static inline void stats_cell_add(_Atomic uint64_t *cell, uint64_t n)
{
    if (cell != NULL)
        atomic_store_explicit(cell, atomic_load_explicit(cell, memory_order_relaxed) + n,
                              memory_order_relaxed);
}

/* The same for a histogram: resolve once, record inline. */
struct stats_hist_cells *stats_hist_handle(struct stats *s, int id);
uint32_t stats_hist_bucket(uint64_t value);
static inline void stats_hist_add(struct stats_hist_cells *h, uint64_t value)
{
    if (h == NULL)
        return;
    stats_cell_add(&h->buckets[stats_hist_bucket(value)], 1);
    stats_cell_add(&h->sum, value);
    stats_cell_add(&h->count, 1); /* last: a reader never sees more count than buckets */
}

/* Readers: sums over every slot. A counter's value is counted from the last
 * stats_reset_counters (Envoy's /reset_counters); stats_slot_value is raw. */
uint64_t stats_counter_value(const struct stats *s, int id);
int64_t stats_gauge_value(const struct stats *s, int id);
/* A gauge summed over every entry of its name: two processes registering a
 * name at once make two entries, each counting part of it (the views merge
 * them; a limit or a balancer checking one would undercount). Entries are
 * looked for again only when the table grew. */
#define STATS_TWINS_MAX 8
struct stats_same_name {
    int primary;
    uint32_t seen; /* stats_count when ids[] was made */
    int n;
    int ids[STATS_TWINS_MAX];
};
void stats_same_name_init(struct stats_same_name *sn, int id);
int64_t stats_gauge_value_all(const struct stats *s, struct stats_same_name *sn);
uint64_t stats_slot_value(const struct stats *s, int id, uint32_t slot);

struct stats_hist_snapshot {
    uint64_t count;
    uint64_t sum;
    uint64_t buckets[STATS_HIST_BUCKETS];
};
void stats_hist_read(const struct stats *s, int id, struct stats_hist_snapshot *out);
/* One slot's sample count of a histogram (shmstat --per-process). */
uint64_t stats_hist_slot_count(const struct stats *s, int id, uint32_t slot);
/* The q-quantile (0..1) of a snapshot: the upper bound of the bucket it falls
 * in (exact to a bucket). 0 for an empty histogram. The snapshot's count is
 * the sum of its buckets (stats_hist_read makes it so), not summed again. */
uint64_t stats_hist_quantile(const struct stats_hist_snapshot *h, double q);
/* Bucket arithmetic (stats_hist_bucket above), exposed for tests and exporters. */
uint64_t stats_hist_bucket_upper(uint32_t bucket);

/* The supervisor, when the process in `slot` has died: its gauges no longer
 * hold (its connections are gone). Counters and histograms are kept. */
void stats_slot_reset_gauges(struct stats *s, uint32_t slot);

/* Every counter reads 0 from now on (its cells keep counting: only the
 * baseline moves, so no writer is disturbed). Writable views only. */
void stats_reset_counters(struct stats *s);

/* An entry's kind and flags, copied and checked; false for an unpublished or
 * invalid id. */
bool stats_entry_info(const struct stats *s, uint32_t id, enum stat_kind *kind, uint32_t *flags);

/* Whether the supervisor that made the segment still runs: it has not marked
 * it abandoned, and its pid is a live process (not a zombie). */
bool stats_owner_alive(const struct stats *s);

/* The supervisor's record of who writes a slot. */
void stats_slot_claim(struct stats *s, uint32_t slot, pid_t pid, const char *title, uint32_t epoch);
/* Hot restart: the supervisor of the generation now serving owns the segment
 * (stats_owner_alive asks after it). Its start time becomes the owner's. */
void stats_set_owner(struct stats *s, pid_t pid, uint32_t epoch);
void stats_slot_exited(struct stats *s, uint32_t slot);
/* A copy of a slot's record (title NUL-terminated); false if out of range. */
bool stats_slot_info(const struct stats *s, uint32_t slot, struct stats_slot_info *out);

#endif

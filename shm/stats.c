#include "shm/stats.h"

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Limits that keep every offset computation far from overflow, and a hostile
 * header from asking for absurd sizes. */
#define MAX_SLOTS 65536u
#define MAX_STATS (1u << 24)
#define MAX_ARENA (1ull << 32)

struct offsets {
    uint64_t table, arena, cells, hists, slots, baseline, total;
    uint64_t row_stride; /* cells per slot row: max_stats rounded up to a cache line */
};

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* The one place the layout is computed: create writes it, validate compares. */
static int compute_offsets(uint32_t n_slots, uint32_t max_stats, uint32_t max_histograms,
                           uint64_t arena_size, struct offsets *o)
{
    if (n_slots == 0 || n_slots > MAX_SLOTS || max_stats == 0 || max_stats > MAX_STATS ||
        max_histograms > max_stats || arena_size == 0 || arena_size > MAX_ARENA)
        return -1;
    o->row_stride = align_up(max_stats, 8);
    o->table = align_up(sizeof(struct stats_header), 64);
    o->arena = align_up(o->table + (uint64_t)max_stats * sizeof(struct stats_entry), 64);
    o->cells = align_up(o->arena + arena_size, 64);
    o->hists = align_up(o->cells + (uint64_t)n_slots * o->row_stride * 8, 64);
    o->slots = align_up(
        o->hists + (uint64_t)n_slots * max_histograms * sizeof(struct stats_hist_cells), 64);
    o->baseline = align_up(o->slots + (uint64_t)n_slots * sizeof(struct stats_slot_info), 64);
    o->total = align_up(o->baseline + (uint64_t)max_stats * 8, 4096);
    return 0;
}

void stats_shm_name(unsigned base_id, char *out, size_t cap)
{
    snprintf(out, cap, "/legate.%u.stats", base_id);
}

/* `h`: a validated private copy of the header (or the one stats_create wrote). */
static void map_view(struct stats *s, void *base, size_t size, bool read_only,
                     const struct stats_header *h)
{
    s->base = base;
    s->size = size;
    s->read_only = read_only;
    s->slot = 0;
    s->hdr = base;
    s->g = (struct stats_geometry){
        .n_slots = h->n_slots,
        .max_stats = h->max_stats,
        .max_histograms = h->max_histograms,
        .row_stride = h->row_stride,
        .arena_size = h->arena_size,
        .table_off = h->table_off,
        .arena_off = h->arena_off,
        .cells_off = h->cells_off,
        .hists_off = h->hists_off,
        .slots_off = h->slots_off,
        .baseline_off = h->baseline_off,
    };
}

int stats_create(struct stats *s, const char *shm_name, const struct stats_layout *layout,
                 uint32_t base_id, uint32_t epoch)
{
    struct offsets o;
    if (compute_offsets(layout->n_slots, layout->max_stats, layout->max_histograms,
                        layout->arena_size, &o) != 0) {
        errno = EINVAL;
        return -1;
    }
    shm_unlink(shm_name); /* a stale segment of a dead instance */
    int fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)o.total) != 0) {
        int e = errno;
        close(fd);
        shm_unlink(shm_name);
        errno = e;
        return -1;
    }
    void *base = mmap(NULL, o.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (base == MAP_FAILED) {
        shm_unlink(shm_name);
        errno = e;
        return -1;
    }
    /* ftruncate zero-filled everything: only the header needs writing. */
    struct stats_header *h = base;
    h->layout_version = STATS_LAYOUT_VERSION;
    h->header_size = sizeof(*h);
    h->base_id = base_id;
    h->epoch = epoch;
    h->created_unix = (int64_t)time(NULL);
    h->owner_since_unix = h->created_unix;
    h->supervisor_pid = (int32_t)getpid();
    h->n_slots = layout->n_slots;
    h->max_stats = layout->max_stats;
    h->max_histograms = layout->max_histograms;
    h->arena_size = layout->arena_size;
    h->table_off = o.table;
    h->arena_off = o.arena;
    h->cells_off = o.cells;
    h->hists_off = o.hists;
    h->total_size = o.total;
    h->row_stride = (uint32_t)o.row_stride;
    h->slots_off = o.slots;
    h->baseline_off = o.baseline;
    atomic_store_explicit(&h->owner_alive, 1, memory_order_relaxed);
    /* The magic last: a reader that sees it sees a complete header. */
    atomic_thread_fence(memory_order_release);
    h->magic = STATS_MAGIC;
    map_view(s, base, o.total, false, h);
    return 0;
}

/* Validate a private copy of the header: what was checked cannot change
 * under us afterwards. */
static int validate_copy(const void *base, size_t size, struct stats_header *h, const char **why)
{
    static const char *unused;
    if (why == NULL)
        why = &unused;
    struct offsets o;
    if (size < sizeof(*h)) {
        *why = "segment smaller than its header (truncated)";
        return -1;
    }
    memcpy(h, (const void *)base, sizeof(*h));
    if (h->magic != STATS_MAGIC) {
        *why = "bad magic: not a legate stats segment";
        return -1;
    }
    if (h->layout_version != STATS_LAYOUT_VERSION) {
        *why = "layout version differs from this binary's";
        return -1;
    }
    if (h->header_size != sizeof(*h)) {
        *why = "header size differs from this binary's";
        return -1;
    }
    if (compute_offsets(h->n_slots, h->max_stats, h->max_histograms, h->arena_size, &o) != 0) {
        *why = "sizes in the header are out of range";
        return -1;
    }
    /* Offsets must be exactly what the sizes imply: nothing overlaps, nothing
     * points outside. */
    if (h->table_off != o.table || h->arena_off != o.arena || h->cells_off != o.cells ||
        h->hists_off != o.hists || h->total_size != o.total || h->row_stride != o.row_stride ||
        h->slots_off != o.slots || h->baseline_off != o.baseline) {
        *why = "offsets in the header do not match its sizes";
        return -1;
    }
    if (o.total > size) {
        *why = "segment smaller than its header says (truncated)";
        return -1;
    }
    return 0;
}

int stats_validate(const void *base, size_t size, const char **why)
{
    struct stats_header copy;
    return validate_copy(base, size, &copy, why);
}

int stats_attach(struct stats *s, const char *shm_name, bool read_only, const char **why)
{
    static const char *unused;
    if (why == NULL)
        why = &unused;
    int fd = shm_open(shm_name, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
    if (fd < 0) {
        *why = strerror(errno);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        *why = strerror(e);
        errno = e;
        return -1;
    }
    if (st.st_size <= 0) {
        close(fd);
        *why = "empty segment";
        errno = EINVAL;
        return -1;
    }
    size_t size = (size_t)st.st_size;
    void *base =
        mmap(NULL, size, read_only ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (base == MAP_FAILED) {
        *why = strerror(e);
        errno = e;
        return -1;
    }
    struct stats_header copy;
    if (validate_copy(base, size, &copy, why) != 0) {
        munmap(base, size);
        errno = EINVAL;
        return -1;
    }
    map_view(s, base, size, read_only, &copy);
    return 0;
}

void stats_detach(struct stats *s)
{
    if (s->base != NULL)
        munmap(s->base, s->size);
    s->base = NULL;
    s->hdr = NULL;
}

int stats_unlink(const char *shm_name)
{
    return shm_unlink(shm_name);
}

int stats_set_slot(struct stats *s, uint32_t slot)
{
    if (slot >= s->g.n_slots)
        return -1;
    s->slot = slot;
    return 0;
}

/* --- entries ------------------------------------------------------------------------ */

static struct stats_entry *table(const struct stats *s)
{
    return (struct stats_entry *)((char *)s->base + s->g.table_off);
}

uint32_t stats_count(const struct stats *s)
{
    /* n_reserved overshoots max_stats once the table is full: clamp. */
    uint32_t n = atomic_load_explicit(&s->hdr->n_reserved, memory_order_acquire);
    return n < s->g.max_stats ? n : s->g.max_stats;
}

/* An entry's fields, copied once after the acquire on `ready` and checked:
 * another process could change the shared entry between two reads, so the
 * copy is all a reader may use. */
struct entry_copy {
    uint32_t kind, index, name_off, name_len, flags;
};

static bool entry_read(const struct stats *s, const struct stats_entry *e, struct entry_copy *c)
{
    if (atomic_load_explicit(&e->ready, memory_order_acquire) != 1)
        return false;
    c->kind = *(const volatile uint32_t *)&e->kind;
    c->index = *(const volatile uint32_t *)&e->index;
    c->name_off = *(const volatile uint32_t *)&e->name_off;
    c->name_len = *(const volatile uint32_t *)&e->name_len;
    c->flags = *(const volatile uint32_t *)&e->flags;
    uint64_t limit = c->kind == STAT_HISTOGRAM ? s->g.max_histograms : s->g.max_stats;
    return c->kind >= STAT_COUNTER && c->kind <= STAT_HISTOGRAM && c->index < limit &&
           (uint64_t)c->name_off + c->name_len <= s->g.arena_size;
}

static bool entry_read_id(const struct stats *s, int id, struct entry_copy *c)
{
    return id >= 0 && (uint32_t)id < stats_count(s) && entry_read(s, &table(s)[id], c);
}

const struct stats_entry *stats_entry_at(const struct stats *s, uint32_t id)
{
    struct entry_copy c;
    return entry_read_id(s, (int)id, &c) ? &table(s)[id] : NULL;
}

const char *stats_name(const struct stats *s, const struct stats_entry *e, size_t *len)
{
    struct entry_copy c;
    *len = 0;
    if (!entry_read(s, e, &c))
        return NULL;
    *len = c.name_len;
    return (const char *)s->base + s->g.arena_off + c.name_off;
}

int stats_find(const struct stats *s, const char *name, size_t len)
{
    uint32_t n = stats_count(s);
    for (uint32_t id = 0; id < n; id++) {
        struct entry_copy c;
        if (entry_read(s, &table(s)[id], &c) && c.name_len == len &&
            memcmp((const char *)s->base + s->g.arena_off + c.name_off, name, len) == 0)
            return (int)id;
    }
    return -1;
}

/* Take `n` from a shared allocation counter if `limit` allows; a refused
 * request takes nothing, so it cannot starve a later one. Lock-free. */
static bool reserve(_Atomic uint64_t *used, uint64_t n, uint64_t limit, uint64_t *at)
{
    uint64_t cur = atomic_load_explicit(used, memory_order_relaxed);
    do {
        if (cur > limit || n > limit - cur)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(used, &cur, cur + n, memory_order_relaxed,
                                                    memory_order_relaxed));
    *at = cur;
    return true;
}

static bool reserve32(_Atomic uint32_t *used, uint32_t limit, uint32_t *at)
{
    uint32_t cur = atomic_load_explicit(used, memory_order_relaxed);
    do {
        if (cur >= limit)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(used, &cur, cur + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    *at = cur;
    return true;
}

int stats_register(struct stats *s, const char *name, enum stat_kind kind)
{
    return stats_register_flags(s, name, kind, 0);
}

int stats_register_flags(struct stats *s, const char *name, enum stat_kind kind, uint32_t flags)
{
    size_t len = strlen(name);
    int existing = stats_find(s, name, len);
    if (existing >= 0)
        return table(s)[existing].kind == (uint32_t)kind ? existing : -1;
    if (s->read_only || len == 0 || len > UINT32_MAX)
        return -1;
    struct stats_header *h = s->hdr;
    /* Check every capacity before taking anything, then reserve: the entry,
     * a histogram block, the name bytes. Each is a compare-and-swap that
     * refuses rather than overshoots. Only a race between two registrations
     * for the last room can waste what the loser took first. */
    uint64_t off = 0;
    uint32_t index = 0, id = 0;
    if (atomic_load_explicit(&h->n_reserved, memory_order_relaxed) >= h->max_stats ||
        (kind == STAT_HISTOGRAM &&
         atomic_load_explicit(&h->n_hists, memory_order_relaxed) >= h->max_histograms) ||
        atomic_load_explicit(&h->arena_used, memory_order_relaxed) + len > h->arena_size)
        return -1;
    if (!reserve32(&h->n_reserved, h->max_stats, &id))
        return -1;
    if (kind == STAT_HISTOGRAM && !reserve32(&h->n_hists, h->max_histograms, &index))
        return -1; /* the entry stays unpublished: readers skip it */
    if (!reserve(&h->arena_used, len, h->arena_size, &off))
        return -1;
    if (kind != STAT_HISTOGRAM)
        index = id;
    memcpy((char *)s->base + h->arena_off + off, name, len);
    struct stats_entry *e = &table(s)[id];
    e->kind = (uint32_t)kind;
    e->name_off = (uint32_t)off;
    e->name_len = (uint32_t)len;
    e->index = index;
    e->flags = flags;
    atomic_store_explicit(&e->ready, 1, memory_order_release);
    return (int)id;
}

/* --- cells ------------------------------------------------------------------------------ */

static _Atomic uint64_t *cell(const struct stats *s, uint32_t slot, uint32_t index)
{
    uint64_t stride = s->g.row_stride; /* validated against max_stats */
    return (_Atomic uint64_t *)((char *)s->base + s->g.cells_off) + slot * stride + index;
}

static struct stats_hist_cells *hist_cells(const struct stats *s, uint32_t slot, uint32_t index)
{
    return (struct stats_hist_cells *)((char *)s->base + s->g.hists_off) +
           (uint64_t)slot * s->g.max_histograms + index;
}

/* The cell this process writes for a counter or gauge; NULL for a bad id, a
 * histogram, or a read-only view. */
_Atomic uint64_t *stats_cell(struct stats *s, int id)
{
    struct entry_copy c;
    if (s->read_only || !entry_read_id(s, id, &c) || c.kind == STAT_HISTOGRAM)
        return NULL;
    return cell(s, s->slot, c.index);
}

void stats_inc(struct stats *s, int id, uint64_t n)
{
    stats_cell_add(stats_cell(s, id), n);
}

void stats_gauge_add(struct stats *s, int id, int64_t delta)
{
    stats_cell_add(stats_cell(s, id), (uint64_t)delta);
}

void stats_gauge_set(struct stats *s, int id, int64_t value)
{
    _Atomic uint64_t *c = stats_cell(s, id);
    if (c != NULL)
        atomic_store_explicit(c, (uint64_t)value, memory_order_relaxed);
}

uint32_t stats_hist_bucket(uint64_t v)
{
    if (v < 16)
        return (uint32_t)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* 4 .. 63 */
    if (e >= 40)
        return STATS_HIST_BUCKETS - 1;
    unsigned sub = (unsigned)(v >> (e - 3)) & (STATS_HIST_SUB - 1);
    return 16 + (e - 4) * STATS_HIST_SUB + sub;
}

uint64_t stats_hist_bucket_upper(uint32_t b)
{
    if (b < 16)
        return b;
    if (b >= STATS_HIST_BUCKETS - 1)
        return UINT64_MAX;
    unsigned k = b - 16, e = 4 + k / STATS_HIST_SUB, sub = k % STATS_HIST_SUB;
    uint64_t width = 1ull << (e - 3);
    return (1ull << e) + sub * width + width - 1;
}

struct stats_hist_cells *stats_hist_handle(struct stats *s, int id)
{
    struct entry_copy c;
    if (s->read_only || !entry_read_id(s, id, &c) || c.kind != STAT_HISTOGRAM)
        return NULL;
    return hist_cells(s, s->slot, c.index);
}

void stats_hist_record(struct stats *s, int id, uint64_t value)
{
    stats_hist_add(stats_hist_handle(s, id), value);
}

uint64_t stats_slot_value(const struct stats *s, int id, uint32_t slot)
{
    struct entry_copy c;
    if (!entry_read_id(s, id, &c) || c.kind == STAT_HISTOGRAM || slot >= s->g.n_slots)
        return 0;
    return atomic_load_explicit(cell(s, slot, c.index), memory_order_relaxed);
}

/* A counter's or gauge's cells summed over every slot. The caller has read
 * and checked the entry once; the column is not looked up again per slot. */
static uint64_t column_sum(const struct stats *s, uint32_t index)
{
    uint64_t sum = 0;
    for (uint32_t slot = 0; slot < s->g.n_slots; slot++)
        sum += atomic_load_explicit(cell(s, slot, index), memory_order_relaxed);
    return sum;
}

static _Atomic uint64_t *baseline(const struct stats *s, uint32_t index)
{
    return (_Atomic uint64_t *)((char *)s->base + s->g.baseline_off) + index;
}

uint64_t stats_counter_value(const struct stats *s, int id)
{
    struct entry_copy c;
    if (!entry_read_id(s, id, &c) || c.kind != STAT_COUNTER)
        return 0;
    uint64_t sum = column_sum(s, c.index);
    uint64_t base = atomic_load_explicit(baseline(s, c.index), memory_order_relaxed);
    return sum >= base ? sum - base : 0; /* a hostile baseline cannot wrap it */
}

int64_t stats_gauge_value(const struct stats *s, int id)
{
    struct entry_copy c;
    if (!entry_read_id(s, id, &c) || c.kind == STAT_HISTOGRAM)
        return 0;
    return (int64_t)column_sum(s, c.index); /* two's complement sums as signed */
}

void stats_same_name_init(struct stats_same_name *sn, int id)
{
    memset(sn, 0, sizeof(*sn));
    sn->primary = id;
    sn->ids[0] = id;
    sn->n = id >= 0 ? 1 : 0;
}

int64_t stats_gauge_value_all(const struct stats *s, struct stats_same_name *sn)
{
    if (sn->primary < 0)
        return 0;
    uint32_t count = stats_count(s);
    if (count != sn->seen) {
        /* Entries were added since: look again for twins of the primary. */
        size_t len;
        const char *name = stats_name(s, &table(s)[sn->primary], &len);
        sn->n = 0;
        sn->ids[sn->n++] = sn->primary;
        for (uint32_t id = 0; name != NULL && id < count && sn->n < STATS_TWINS_MAX; id++) {
            size_t l;
            const char *other =
                id == (uint32_t)sn->primary ? NULL : stats_name(s, &table(s)[id], &l);
            if (other != NULL && l == len && memcmp(other, name, len) == 0)
                sn->ids[sn->n++] = (int)id;
        }
        sn->seen = count;
    }
    int64_t sum = 0;
    for (int i = 0; i < sn->n; i++)
        sum += stats_gauge_value(s, sn->ids[i]);
    return sum;
}

void stats_reset_counters(struct stats *s)
{
    if (s->read_only)
        return;
    uint32_t n = stats_count(s);
    for (uint32_t id = 0; id < n; id++) {
        struct entry_copy c;
        if (entry_read(s, &table(s)[id], &c) && c.kind == STAT_COUNTER)
            atomic_store_explicit(baseline(s, c.index), column_sum(s, c.index),
                                  memory_order_relaxed);
    }
}

bool stats_entry_info(const struct stats *s, uint32_t id, enum stat_kind *kind, uint32_t *flags)
{
    struct entry_copy c;
    if (!entry_read_id(s, (int)id, &c))
        return false;
    *kind = (enum stat_kind)c.kind;
    *flags = c.flags;
    return true;
}

/* When the process with this /proc/<pid>/stat text started, in Unix time,
 * or -1 if that cannot be told. */
static long long process_start_unix(const char *stat_text)
{
    const char *p = strrchr(stat_text, ')'); /* the command name may hold anything */
    if (p == NULL)
        return -1;
    /* starttime is field 22; the state after ')' is field 3 */
    for (int field = 2; field < 22 && p != NULL; field++)
        p = strchr(p + 1, ' ');
    unsigned long long ticks;
    if (p == NULL || sscanf(p + 1, "%llu", &ticks) != 1)
        return -1;
    FILE *f = fopen("/proc/stat", "re");
    if (f == NULL)
        return -1;
    char line[256];
    long long btime = -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "btime %lld", &btime) == 1)
            break;
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    return btime < 0 || hz <= 0 ? -1 : btime + (long long)(ticks / (unsigned long long)hz);
}

/* A pid that exists, has not exited (a zombie has, but still answers kill),
 * and is not a newer process that reused the pid: one started after the
 * segment was made cannot be the supervisor that made it. */
static bool pid_running(pid_t pid, int64_t created_unix)
{
    if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM))
        return false;
    char path[64], text[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true; /* no /proc to ask: trust kill */
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return true;
    text[n] = '\0';
    const char *paren = strrchr(text, ')');
    if (paren != NULL && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'))
        return false;
    long long started = process_start_unix(text);
    return started < 0 || started <= (long long)created_unix + 2; /* 2 s: rounding slack */
}

bool stats_owner_alive(const struct stats *s)
{
    return atomic_load_explicit(&s->hdr->owner_alive, memory_order_relaxed) &&
           pid_running(s->hdr->supervisor_pid, s->hdr->owner_since_unix);
}

static struct stats_slot_info *slot_info(const struct stats *s, uint32_t slot)
{
    return (struct stats_slot_info *)((char *)s->base + s->g.slots_off) + slot;
}

void stats_slot_claim(struct stats *s, uint32_t slot, pid_t pid, const char *title, uint32_t epoch)
{
    if (s->read_only || slot >= s->g.n_slots)
        return;
    struct stats_slot_info *si = slot_info(s, slot);
    si->pid = (int32_t)pid;
    si->started_unix = (int64_t)time(NULL);
    si->epoch = epoch;
    snprintf(si->title, sizeof(si->title), "%s", title);
    atomic_store_explicit(&si->state, STATS_SLOT_ALIVE, memory_order_release);
}

void stats_set_owner(struct stats *s, pid_t pid, uint32_t epoch)
{
    if (s->read_only)
        return;
    /* The time first: a reader that sees it with the old pid still finds a
     * process started before it, alive (the old owner is, for a while). */
    s->hdr->owner_since_unix = (int64_t)time(NULL);
    s->hdr->epoch = epoch;
    atomic_store_explicit(&s->hdr->owner_alive, 1, memory_order_relaxed);
    s->hdr->supervisor_pid = (int32_t)pid;
}

void stats_slot_exited(struct stats *s, uint32_t slot)
{
    if (s->read_only || slot >= s->g.n_slots)
        return;
    atomic_store_explicit(&slot_info(s, slot)->state, STATS_SLOT_EXITED, memory_order_release);
}

bool stats_slot_info(const struct stats *s, uint32_t slot, struct stats_slot_info *out)
{
    if (slot >= s->g.n_slots)
        return false;
    const struct stats_slot_info *si = slot_info(s, slot);
    uint32_t state = atomic_load_explicit(&si->state, memory_order_acquire);
    atomic_init(&out->state, state);
    out->pid = *(const volatile int32_t *)&si->pid;
    out->started_unix = *(const volatile int64_t *)&si->started_unix;
    out->epoch = *(const volatile uint32_t *)&si->epoch;
    memcpy(out->title, (const void *)si->title, sizeof(out->title));
    out->title[sizeof(out->title) - 1] = '\0';
    return true;
}

void stats_hist_read(const struct stats *s, int id, struct stats_hist_snapshot *out)
{
    memset(out, 0, sizeof(*out));
    struct entry_copy c;
    if (!entry_read_id(s, id, &c) || c.kind != STAT_HISTOGRAM)
        return;
    for (uint32_t slot = 0; slot < s->g.n_slots; slot++) {
        const struct stats_hist_cells *h = hist_cells(s, slot, c.index);
        if (atomic_load_explicit(&h->count, memory_order_relaxed) == 0)
            continue; /* most slots never record a given histogram: skip 305 loads */
        out->sum += atomic_load_explicit(&h->sum, memory_order_relaxed);
        for (uint32_t b = 0; b < STATS_HIST_BUCKETS; b++) {
            uint64_t n = atomic_load_explicit(&h->buckets[b], memory_order_relaxed);
            out->buckets[b] += n;
            /* The count is the buckets' sum, read at the same moment: a
             * record in progress cannot make a bucket exceed the total. */
            out->count += n;
        }
    }
}

uint64_t stats_hist_slot_count(const struct stats *s, int id, uint32_t slot)
{
    struct entry_copy c;
    if (!entry_read_id(s, id, &c) || c.kind != STAT_HISTOGRAM || slot >= s->g.n_slots)
        return 0;
    return atomic_load_explicit(&hist_cells(s, slot, c.index)->count, memory_order_relaxed);
}

uint64_t stats_hist_quantile(const struct stats_hist_snapshot *h, double q)
{
    uint64_t total = h->count; /* the buckets' sum, as stats_hist_read counts it */
    if (total == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    /* The rank of the q-quantile, at least the first value. A count near
     * 2^64 (a hostile segment's) rounds up to 2^64 as a double, which no
     * uint64_t holds: the rank is then the total. */
    double want = q * (double)total;
    uint64_t rank = want >= 18446744073709551615.0 ? total : (uint64_t)want;
    if (rank < total && (double)rank < want)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (uint32_t b = 0; b < STATS_HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank)
            return stats_hist_bucket_upper(b);
    }
    return stats_hist_bucket_upper(STATS_HIST_BUCKETS - 1);
}

void stats_slot_reset_gauges(struct stats *s, uint32_t slot)
{
    if (s->read_only || slot >= s->g.n_slots)
        return;
    uint32_t n = stats_count(s);
    for (uint32_t id = 0; id < n; id++) {
        struct entry_copy c;
        if (entry_read(s, &table(s)[id], &c) && c.kind == STAT_GAUGE)
            atomic_store_explicit(cell(s, slot, c.index), 0, memory_order_relaxed);
    }
}

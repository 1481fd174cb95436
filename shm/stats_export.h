/* Reading a statistics segment as a whole and rendering it: one code path for
 * the admin API (/stats, /stats?format=json, /stats/prometheus, /clusters) and
 * for shmstat, so that they can never disagree.
 *
 * A view is a copy: the segment is read once, entries of one name are merged
 * (two processes may register a name at once), and the rows are sorted by
 * name. Rendering then works on the copy only. */
#ifndef LEGATE_SHM_STATS_EXPORT_H
#define LEGATE_SHM_STATS_EXPORT_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "shm/stats.h"

struct stat_row {
    char *name; /* NUL-terminated copy */
    enum stat_kind kind;
    uint32_t flags;
    uint64_t value;                   /* counters; gauges as two's complement */
    struct stats_hist_snapshot *hist; /* histograms */
    uint64_t *per_slot;               /* per process slot, when asked for (n_slots) */
    int ids[2];                       /* the entries merged into this row (-1: none) */
};

struct stats_view {
    struct stat_row *rows;
    size_t n;
    uint32_t n_slots;
    uint32_t n_entries; /* stats_count() when taken: refresh re-sorts only if it grew */
    bool partial;       /* a row merged more entries than ids[] holds, or used_only dropped
                           rows: refresh must take the view again */
};

struct stats_view_opts {
    const regex_t *filter; /* keep names it matches (NULL: all) */
    bool used_only;        /* drop counters and gauges at 0, histograms without samples */
    bool hosts;            /* per-host stats (STAT_FLAG_HOST) instead of the others */
    bool per_slot;         /* fill stat_row.per_slot */
};

/* Compile a name filter: a POSIX extended regex, without what makes glibc's
 * regex engine take exponential time on a pattern a client chooses
 * (backreferences \1..\9, bounded repeats {n,m}) and at most 256 bytes long.
 * The admin's ?filter= and shmstat --filter both use it. Returns 0, or -1
 * with the reason in err. */
#define STATS_FILTER_MAX 256
int stats_filter_compile(regex_t *re, const char *pattern, char *err, size_t cap);

/* Returns 0, or -1 when out of memory. */
int stats_view_take(const struct stats *s, const struct stats_view_opts *opts,
                    struct stats_view *out);
/* The same view with current values: cheap when no stat was added since (the
 * rows, names and order are kept; only the values are read again), a full
 * stats_view_take otherwise. For shmstat --watch. Same opts as the take. */
int stats_view_refresh(const struct stats *s, const struct stats_view_opts *opts,
                       struct stats_view *v);
void stats_view_free(struct stats_view *v);
/* The row of a name, or NULL. */
const struct stat_row *stats_view_find(const struct stats_view *v, const char *name);

/* Envoy's quantiles for histograms: P0 P25 P50 P75 P90 P95 P99 P99.5 P99.9 P100. */
extern const double stats_quantiles[10];

/* Envoy's /stats: "name: value" for counters and gauges, then histograms as
 * "name: P0(nan,v) P25(nan,v) ..." (legate keeps no interval histograms:
 * the interval column is always nan). */
void stats_render_text(const struct stats_view *v, struct buf *out);
/* Envoy's /stats?format=json. */
void stats_render_json(const struct stats_view *v, struct buf *out);
/* Prometheus text exposition 0.0.4, as promtool lints it: Envoy's tags
 * extracted from the names, counters ending in _total, histograms in ms named
 * *_ms reported in seconds. See README, "Prometheus names". */
void stats_render_prometheus(const struct stats_view *v, struct buf *out);

/* Append `s` as a JSON string (quoted, escaped). */
void json_append_string(struct buf *out, const char *s, size_t len);

#endif

/* Micro-benchmark: the cost of a counter increment and of a histogram record
 * on the shared-memory stats, in ns per operation. Not a test: it reports. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "shm/stats.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(void)
{
    char name[64];
    snprintf(name, sizeof(name), "/legate-bench-%d.stats", (int)getpid());
    struct stats s;
    struct stats_layout l = {
        .max_stats = 10000, .max_histograms = 100, .n_slots = 16, .arena_size = 1 << 20};
    if (stats_create(&s, name, &l, 0, 0) != 0) {
        perror("stats_create");
        return 1;
    }
    stats_set_slot(&s, 3);
    int c = stats_register(&s, "cluster.bench.upstream_rq_total", STAT_COUNTER);
    int h = stats_register(&s, "cluster.bench.upstream_rq_time", STAT_HISTOGRAM);
    const long n = 100000000;
    double t0 = now_ns();
    for (long i = 0; i < n; i++)
        stats_inc(&s, c, 1);
    double t1 = now_ns();
    for (long i = 0; i < n; i++)
        stats_hist_record(&s, h, (uint64_t)(i & 4095));
    double t2 = now_ns();
    _Atomic uint64_t *cell = stats_cell(&s, c); /* what a worker caches at start-up */
    for (long i = 0; i < n; i++)
        stats_cell_add(cell, 1);
    double t3 = now_ns();
    struct stats_hist_cells *hh = stats_hist_handle(&s, h);
    for (long i = 0; i < n; i++)
        stats_hist_add(hh, (uint64_t)(i & 4095));
    double t4 = now_ns();
    printf("counter increment, by id:     %.2f ns\n"
           "counter increment, by cell:   %.2f ns\n"
           "histogram record, by id:      %.2f ns\n"
           "histogram record, by handle:  %.2f ns\n(check: %llu)\n",
           (t1 - t0) / (double)n, (t3 - t2) / (double)n, (t2 - t1) / (double)n,
           (t4 - t3) / (double)n, (unsigned long long)stats_counter_value(&s, c));
    stats_detach(&s);
    stats_unlink(name);
    return 0;
}

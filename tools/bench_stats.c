/* Micro-benchmarks, not tests: they report.
 *   bench_stats                  the cost of a counter increment and of a
 *                                histogram record, in ns per operation
 *   bench_stats --shmstat PATH   the CPU shmstat --watch 1 uses on a segment of
 *                                10,000 stats (1,000 histograms), 16 slots */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm/stats.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int shmstat_cost(const char *shmstat, const char *count)
{
    const unsigned base_id = 4000000000u + (unsigned)getpid() % 1000000u;
    char name[64];
    stats_shm_name(base_id, name, sizeof(name));
    struct stats s;
    struct stats_layout l = {
        .max_stats = 10000, .max_histograms = 1000, .n_slots = 16, .arena_size = 1 << 20};
    if (stats_create(&s, name, &l, base_id, 0) != 0) {
        perror("stats_create");
        return 1;
    }
    for (int i = 0; i < 10000; i++) {
        char stat[96];
        bool hist = i % 10 == 0;
        snprintf(stat, sizeof(stat), "cluster.c%04d.upstream_%s_%d", i / 40, hist ? "time" : "rq",
                 i);
        stats_set_slot(&s, (uint32_t)(i % 16));
        int id = stats_register(&s, stat, hist ? STAT_HISTOGRAM : STAT_COUNTER);
        for (int k = 0; k < 50; k++)
            hist ? stats_hist_record(&s, id, (uint64_t)(k * 37 % 5000))
                 : stats_inc(&s, id, (uint64_t)k);
    }
    char base[16];
    snprintf(base, sizeof(base), "%u", base_id);
    double t0 = now_ns();
    pid_t pid = fork();
    if (pid == 0) {
        if (freopen("/dev/null", "w", stdout) == NULL)
            _exit(127);
        execl(shmstat, "shmstat", "--base-id", base, "--watch", "1", "--count", count,
              (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    double wall = (now_ns() - t0) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("shmstat --watch 1 on 10,000 stats x 16 slots: %.3f s CPU over %.1f s = %.2f%% of a "
           "core (exit %d)\n",
           cpu, wall, 100 * cpu / wall, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    stats_detach(&s);
    stats_unlink(name);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--shmstat") == 0)
        return shmstat_cost(argv[2], argc > 3 ? argv[3] : "11");
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

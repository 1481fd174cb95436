/* What every process reports about itself each second, in its own slot:
 * memory (so the gauges sum to the whole proxy's), and for the supervisor the
 * server's uptime. Envoy's names: server.memory_allocated, server.memory_heap_size,
 * server.memory_physical_size, server.uptime. */
#ifndef LEGATE_SHM_PROC_STATS_H
#define LEGATE_SHM_PROC_STATS_H

#include <stdbool.h>

#include <ev.h>

#include "shm/stats.h"

struct proc_stats {
    struct stats *stats;
    ev_timer tick;
    int statm_fd; /* /proc/self/statm, opened once: later this process may be chrooted */
    int allocated, heap_size, physical_size, uptime;
    ev_tstamp started;
    bool with_uptime;
};

/* Register the gauges, set them now, and keep them current every second.
 * `with_uptime`: this process also sets server.uptime (the supervisor). */
void proc_stats_start(struct proc_stats *ps, struct ev_loop *loop, struct stats *stats,
                      bool with_uptime);
void proc_stats_stop(struct proc_stats *ps, struct ev_loop *loop);
/* A supervisor that hands over to the next generation: the uptime is the
 * serving generation's, so this one's stops counting and reads 0. */
void proc_stats_drop_uptime(struct proc_stats *ps);

#endif

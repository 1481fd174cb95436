#include "shm/proc_stats.h"

#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/buf.h"

#ifdef __SANITIZE_ADDRESS__
/* The sanitizer runtime's allocator statistics (GCC 12 ships no header for them). */
size_t __sanitizer_get_current_allocated_bytes(void);
size_t __sanitizer_get_heap_size(void);
#endif

static long resident_bytes(int fd)
{
    char text[128];
    ssize_t n = fd >= 0 ? pread(fd, text, sizeof(text) - 1, 0) : -1;
    if (n <= 0)
        return 0;
    text[n] = '\0';
    long size = 0, resident = 0;
    if (sscanf(text, "%ld %ld", &size, &resident) != 2)
        return 0;
    return resident * sysconf(_SC_PAGESIZE);
}

/* Bytes the program holds and bytes the allocator holds. mallinfo2 walks
 * glibc's arenas: cheap for a proxy's few, and once a second. Under ASan the
 * sanitizer's allocator replaces glibc's, and only it can say. */
static void heap_usage(size_t *allocated, size_t *heap)
{
#ifdef __SANITIZE_ADDRESS__
    *allocated = __sanitizer_get_current_allocated_bytes();
    *heap = __sanitizer_get_heap_size();
#else
    struct mallinfo2 mi = mallinfo2();
    *allocated = mi.uordblks + mi.hblkhd;
    *heap = mi.arena + mi.hblkhd;
#endif
}

/* Free heap beyond this is given back to the kernel at the next tick. */
#define TRIM_SLACK (8u << 20)

static void proc_stats_update(struct proc_stats *ps, ev_tstamp now)
{
    size_t allocated, heap;
    buf_block_cache_decay();
    heap_usage(&allocated, &heap);
#ifndef __SANITIZE_ADDRESS__
    /* A burst (thousands of requests in flight at once) leaves the heap full
     * of freed chunks that glibc keeps resident; idle connections would then
     * cost the memory of the busiest second. malloc_trim returns every free
     * page, wherever it lies in the heap, at most once a second. */
    if (heap > allocated + TRIM_SLACK) {
        malloc_trim(0);
        heap_usage(&allocated, &heap);
    }
#endif
    stats_gauge_set(ps->stats, ps->allocated, (int64_t)allocated);
    stats_gauge_set(ps->stats, ps->heap_size, (int64_t)heap);
    stats_gauge_set(ps->stats, ps->physical_size, resident_bytes(ps->statm_fd));
    if (ps->with_uptime)
        stats_gauge_set(ps->stats, ps->uptime, (int64_t)(now - ps->started));
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    proc_stats_update(t->data, ev_now(loop));
}

void proc_stats_start(struct proc_stats *ps, struct ev_loop *loop, struct stats *stats,
                      bool with_uptime)
{
    ps->stats = stats;
    ps->with_uptime = with_uptime;
    ps->started = ev_now(loop);
    ps->statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    ps->allocated = stats_register(stats, "server.memory_allocated", STAT_GAUGE);
    ps->heap_size = stats_register(stats, "server.memory_heap_size", STAT_GAUGE);
    ps->physical_size = stats_register(stats, "server.memory_physical_size", STAT_GAUGE);
    ps->uptime = with_uptime ? stats_register(stats, "server.uptime", STAT_GAUGE) : -1;
    proc_stats_update(ps, ps->started);
    ev_timer_init(&ps->tick, on_tick, 1., 1.);
    ps->tick.data = ps;
    ev_timer_start(loop, &ps->tick);
    ev_unref(loop); /* the tick alone must not keep a stopping loop running */
}

void proc_stats_stop(struct proc_stats *ps, struct ev_loop *loop)
{
    if (!ev_is_active(&ps->tick))
        return;
    ev_ref(loop);
    ev_timer_stop(loop, &ps->tick);
    if (ps->statm_fd >= 0)
        close(ps->statm_fd);
    ps->statm_fd = -1;
}

void proc_stats_drop_uptime(struct proc_stats *ps)
{
    ps->with_uptime = false;
    if (ps->uptime >= 0)
        stats_gauge_set(ps->stats, ps->uptime, 0);
}

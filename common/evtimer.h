/* One-shot libev timers, (re)armed in one call. */
#ifndef LEGATE_COMMON_EVTIMER_H
#define LEGATE_COMMON_EVTIMER_H

#include <ev.h>

/* Fire `t` once, `after` seconds from now, whether or not it was running
 * (libev forbids ev_timer_set on an active watcher, hence the stop). */
static inline void timer_rearm(struct ev_loop *loop, ev_timer *t, double after)
{
    ev_timer_stop(loop, t);
    ev_timer_set(t, after, 0.);
    ev_timer_start(loop, t);
}

#endif

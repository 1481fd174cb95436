/* Per-worker, per-upstream-host connection pool bookkeeping. The pool does not
 * own sockets; it keeps idle connections (most recently used first, so warm
 * ones are reused and cold ones time out) and counts active ones. */
#ifndef LEGATE_WORKER_POOL_H
#define LEGATE_WORKER_POOL_H

#include <stdbool.h>
#include <stddef.h>

struct pool_link {
    struct pool_link *prev, *next;
};

struct pool {
    struct pool_link idle; /* sentinel of the idle list, most recent first */
    size_t n_idle;
    size_t n_active;
    size_t max_idle; /* idle connections beyond this are closed, not kept */
};

void pool_init(struct pool *p, size_t max_idle);
/* Take the most recently used idle connection (it becomes active), or NULL. */
struct pool_link *pool_acquire(struct pool *p);
/* A freshly connected connection becomes active. */
void pool_add_active(struct pool *p);
/* An active connection finished its request and may be reused: true if the
 * pool kept it idle, false if the caller must close it (pool full). */
bool pool_release(struct pool *p, struct pool_link *c);
/* An active connection is closed. */
void pool_drop_active(struct pool *p);
/* An idle connection is closed (by its peer, or after its idle timeout). */
void pool_drop_idle(struct pool *p, struct pool_link *c);

#endif

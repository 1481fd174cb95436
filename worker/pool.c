#include "worker/pool.h"

void pool_init(struct pool *p, size_t max_idle)
{
    p->idle.prev = p->idle.next = &p->idle;
    p->n_idle = p->n_active = 0;
    p->max_idle = max_idle;
}

static void unlink_idle(struct pool *p, struct pool_link *c)
{
    c->prev->next = c->next;
    c->next->prev = c->prev;
    c->prev = c->next = NULL;
    p->n_idle--;
}

struct pool_link *pool_acquire(struct pool *p)
{
    if (p->n_idle == 0)
        return NULL;
    struct pool_link *c = p->idle.next;
    unlink_idle(p, c);
    p->n_active++;
    return c;
}

void pool_add_active(struct pool *p)
{
    p->n_active++;
}

bool pool_release(struct pool *p, struct pool_link *c)
{
    p->n_active--;
    if (p->n_idle >= p->max_idle)
        return false;
    c->prev = &p->idle;
    c->next = p->idle.next;
    p->idle.next->prev = c;
    p->idle.next = c;
    p->n_idle++;
    return true;
}

void pool_drop_active(struct pool *p)
{
    p->n_active--;
}

void pool_drop_idle(struct pool *p, struct pool_link *c)
{
    unlink_idle(p, c);
}

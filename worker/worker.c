/* The worker role: accepts downstream connections on the sockets the listener
 * hands it and proxies them. One libev loop, no threads. */
#include "worker/worker.h"

#include <errno.h>
#include <stdarg.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/evtimer.h"
#include "common/log.h"
#include "common/proc.h"
#include "listener/handoff.h"
#include "upstream/priority.h"

#define ACCEPT_BATCH 64

static struct host *host_create(struct worker *w, struct cluster_rt *cl, uint32_t slot,
                                const struct sockaddr_storage *addr, socklen_t addrlen,
                                const char *name);
static void host_retire(struct cluster_rt *cl, struct host *h);

const char *worker_date(struct worker *w)
{
    time_t now = (time_t)ev_now(w->loop);
    if (now != w->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        w->date_sec = now;
    }
    return w->date;
}

/* A host's requests in flight, from every worker (LEAST_REQUEST's view is
 * global, where Envoy's balancer sees only its own worker's). */
struct level_ctx {
    struct cluster_rt *cl;
    const struct lb_level *lv;
};

static uint64_t host_active(void *ctx, size_t i)
{
    const struct level_ctx *x = ctx;
    struct host *h = x->cl->slots[x->lv->members[i]];
    int64_t v = stats_gauge_value_all(x->cl->stats_seg, &h->rq_active);
    return v > 0 ? (uint64_t)v : 0;
}

/* Rebuild this worker's per-level host lists from the view. */
static void build_levels(struct worker *w, struct cluster_rt *cl)
{
    for (uint32_t l = 0; l < HOSTS_MAX_LEVELS; l++) {
        struct lb_level *lv = &cl->levels[l];
        lb_rr_free(&lv->rr);
        lv->n = 0;
        if (l >= cl->plan.n)
            continue;
        for (uint32_t b = 0; b < cl->n_view; b++) {
            const struct hosts_entry *e = &cl->view[b];
            if (e->priority != l || cl->bank_to_host[b] == UINT32_MAX)
                continue;
            if (!cl->plan.panic[l] && (e->flags & HOST_UNAVAILABLE))
                continue;
            lv->members[lv->n] = cl->bank_to_host[b];
            lv->weights[lv->n] = e->weight > 0 ? e->weight : 1;
            lv->n++;
        }
        lb_cumulative(lv->weights, lv->n, lv->cum);
        if (lb_rr_init(&lv->rr, lv->weights, lv->n) != 0)
            log_fatal("out of memory");
        /* Each worker starts at a different point of the round, so that N
         * workers with one request each do not all pick the first host. */
        for (int k = 0; k < w->ctx->index && lv->n > 0; k++)
            lb_rr_pick(&lv->rr);
    }
}

/* Take what the upstream manager published last: hosts new to a slot are
 * made, hosts gone from theirs retired. */
static void cluster_resync(struct worker *w, struct cluster_rt *cl)
{
    struct hosts_view v = {.hosts = cl->view};
    hosts_read(cl->shm, &v);
    cl->gen = v.gen;
    cl->bank = v.bank;
    /* Once here, rather than on every pick: the form prio_pick takes. */
    memset(&cl->plan, 0, sizeof(cl->plan));
    cl->plan.n = v.plan.n_levels < HOSTS_MAX_LEVELS ? v.plan.n_levels : HOSTS_MAX_LEVELS;
    cl->plan.none_available = v.plan.none_available;
    for (size_t l = 0; l < cl->plan.n; l++) {
        cl->plan.load[l] = v.plan.load[l];
        cl->plan.panic[l] = v.plan.panic[l];
    }
    cl->n_view = v.n_hosts;
    bool *present = calloc(cl->cap ? cl->cap : 1, sizeof(bool));
    if (present == NULL)
        log_fatal("out of memory");
    for (uint32_t b = 0; b < cl->n_view; b++) {
        const struct hosts_entry *e = &cl->view[b];
        cl->bank_to_host[b] = UINT32_MAX;
        if (e->live >= cl->cap || present[e->live] || e->addrlen == 0 ||
            e->addrlen > sizeof(struct sockaddr_storage))
            continue; /* not from a sane manager: ignore */
        struct host *h = cl->slots[e->live];
        if (h != NULL && (h->addrlen != e->addrlen || memcmp(&h->addr, &e->addr, e->addrlen) != 0))
            host_retire(cl, h); /* the slot went to another address */
        if (cl->slots[e->live] == NULL &&
            host_create(w, cl, e->live, &e->addr, (socklen_t)e->addrlen, e->name) == NULL)
            continue;
        present[e->live] = true;
        cl->bank_to_host[b] = e->live;
    }
    for (uint32_t k = 0; k < cl->cap; k++)
        if (cl->slots[k] != NULL && !present[k])
            host_retire(cl, cl->slots[k]);
    free(present);
    build_levels(w, cl);
}

/* Before the manager's first word: every configured address (a static
 * cluster's) is a healthy host, in the slot the manager will give it. */
static void cluster_assume_healthy(struct worker *w, struct cluster_rt *cl)
{
    struct prio_level levels[PRIO_MAX_LEVELS] = {{0, 0}};
    cl->n_view = 0;
    for (size_t i = 0; i < cl->cfg->n_endpoints && i < cl->cap; i++) {
        const struct cfg_endpoint *ep = &cl->cfg->endpoints[i];
        if (ep->hostname)
            continue; /* resolved by the manager */
        char name[64];
        hosts_addr_format(&ep->addr.ss, NULL, 0, name, sizeof(name));
        if (host_create(w, cl, (uint32_t)i, &ep->addr.ss, ep->addr.sslen, name) == NULL)
            continue;
        struct hosts_entry *e = &cl->view[cl->n_view];
        memset(e, 0, sizeof(*e));
        e->live = (uint32_t)i;
        e->weight = ep->weight;
        e->priority = ep->priority;
        cl->bank_to_host[cl->n_view++] = (uint32_t)i;
        levels[ep->priority].hosts++;
        levels[ep->priority].healthy++;
    }
    prio_plan_compute(levels, cl->cfg->max_priority + 1, cl->cfg->healthy_panic_threshold,
                      PRIO_DEFAULT_OVERPROVISIONING, &cl->plan);
    cl->gen = 0;
    build_levels(w, cl);
}

static uint32_t pick_in_level(struct cluster_rt *cl, uint32_t level, const uint64_t *hash)
{
    struct lb_level *lv = &cl->levels[level];
    if (lv->n == 0)
        return UINT32_MAX;
    size_t i;
    switch (cl->cfg->lb_policy) {
    case LB_RANDOM:
        i = lb_random_pick(lv->cum, lv->n, &cl->rng);
        break;
    case LB_LEAST_REQUEST: {
        struct level_ctx x = {cl, lv};
        i = lb_least_request_pick_fn(lv->weights, lv->cum, lv->n, cl->cfg->choice_count, &cl->rng,
                                     host_active, &x);
        break;
    }
    case LB_RING_HASH:
    case LB_MAGLEV: {
        /* No hash from the request: a random host, as Envoy. */
        uint64_t key = hash != NULL ? *hash : lb_rng_next(&cl->rng);
        if (cl->gen > 0) {
            uint32_t b = hosts_table_pick(cl->shm, cl->gen, cl->bank, level, key);
            if (b == HOSTS_PICK_STALE)
                return HOSTS_PICK_STALE;
            if (b < cl->n_view && cl->bank_to_host[b] != UINT32_MAX &&
                cl->slots[cl->bank_to_host[b]] != NULL)
                return cl->bank_to_host[b];
            return UINT32_MAX;
        }
        /* Nothing published yet: no table to read; spread by the key. */
        i = lb_random_pick(lv->cum, lv->n, &(struct lb_rng){key | 1});
        break;
    }
    default:
        i = lb_rr_pick(&lv->rr);
        break;
    }
    return i == LB_NONE ? UINT32_MAX : lv->members[i];
}

void worker_cluster_refresh(struct worker *w, struct cluster_rt *cl)
{
    if (cl->shm != NULL && hosts_generation(cl->shm) != cl->gen)
        cluster_resync(w, cl);
}

struct host *worker_pick_host(struct worker *w, size_t cluster_index, const uint64_t *hash)
{
    struct cluster_rt *cl = &w->clusters[cluster_index];
    for (int attempt = 0; attempt < 4; attempt++) {
        if (cl->shm != NULL && hosts_generation(cl->shm) != cl->gen)
            cluster_resync(w, cl);
        if (cl->plan.none_available) {
            stats_cell_add(cl->stats.cx_none_healthy, 1);
            return NULL;
        }
        /* The level: by the request's hash when there is one (the same key
         * lands on the same level), else at random, by the plan's loads. */
        size_t level = 0;
        if (cl->plan.n > 1)
            level = prio_pick(&cl->plan, hash != NULL ? *hash : lb_rng_next(&cl->rng));
        if (level == PRIO_NONE || level >= cl->plan.n) {
            stats_cell_add(cl->stats.cx_none_healthy, 1);
            return NULL;
        }
        uint32_t h = pick_in_level(cl, (uint32_t)level, hash);
        if (h == HOSTS_PICK_STALE)
            continue; /* the manager published meanwhile: read again */
        if (h >= cl->cap || cl->slots[h] == NULL) {
            stats_cell_add(cl->stats.cx_none_healthy, 1);
            return NULL;
        }
        if (cl->plan.panic[level])
            stats_cell_add(cl->stats.lb_healthy_panic, 1);
        if (cl->shm != NULL)
            hosts_mark_traffic(cl->shm);
        return cl->slots[h];
    }
    stats_cell_add(cl->stats.cx_none_healthy, 1);
    return NULL;
}

/* Ring the manager's doorbell when a counter reaches its threshold exactly:
 * once per run of failures, whatever the number of workers. */
static void count_consecutive(struct cluster_rt *cl, _Atomic uint32_t *counter, uint32_t threshold)
{
    uint32_t now = atomic_fetch_add_explicit(counter, 1, memory_order_relaxed) + 1;
    if (threshold > 0 && now == threshold && cl->bell_fd >= 0) {
        uint64_t one = 1;
        ssize_t n = write(cl->bell_fd, &one, sizeof(one));
        (void)n; /* a full eventfd has rung already */
    }
}

void worker_host_response(struct cluster_rt *cl, struct host *h, int status)
{
    if (h == NULL || h->live == NULL || !cl->cfg->outlier.enabled || status < 200)
        return;
    const struct cfg_outlier *o = &cl->cfg->outlier;
    struct hosts_live *lv = h->live;
    if (o->split_external_local_origin_errors) {
        /* The connection worked: a local-origin success. */
        atomic_store_explicit(&lv->consecutive_local, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&lv->local_total, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&lv->local_success, 1, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&lv->total, 1, memory_order_relaxed);
    if (status >= 500) {
        count_consecutive(cl, &lv->consecutive_5xx, o->consecutive_5xx);
        if (status == 502 || status == 503 || status == 504)
            count_consecutive(cl, &lv->consecutive_gateway, o->consecutive_gateway_failure);
        else
            atomic_store_explicit(&lv->consecutive_gateway, 0, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&lv->success, 1, memory_order_relaxed);
        atomic_store_explicit(&lv->consecutive_5xx, 0, memory_order_relaxed);
        atomic_store_explicit(&lv->consecutive_gateway, 0, memory_order_relaxed);
    }
}

void worker_host_local_failure(struct cluster_rt *cl, struct host *h)
{
    if (h == NULL || h->live == NULL || !cl->cfg->outlier.enabled)
        return;
    const struct cfg_outlier *o = &cl->cfg->outlier;
    struct hosts_live *lv = h->live;
    if (o->split_external_local_origin_errors) {
        atomic_fetch_add_explicit(&lv->local_total, 1, memory_order_relaxed);
        count_consecutive(cl, &lv->consecutive_local, o->consecutive_local_origin_failure);
        return;
    }
    /* Not split: what the router answers in the host's place (a 503) counts
     * as the host's 5xx and gateway failure, as Envoy. */
    atomic_fetch_add_explicit(&lv->total, 1, memory_order_relaxed);
    count_consecutive(cl, &lv->consecutive_5xx, o->consecutive_5xx);
    count_consecutive(cl, &lv->consecutive_gateway, o->consecutive_gateway_failure);
}

size_t worker_cluster_connections(const struct cluster_rt *cl)
{
    size_t n = 0;
    for (uint32_t i = 0; i < cl->cap; i++)
        if (cl->slots[i] != NULL)
            n += cl->slots[i]->pool.n_active + cl->slots[i]->pool.n_idle;
    for (const struct host *h = cl->retired; h != NULL; h = h->next_retired)
        n += h->pool.n_active + h->pool.n_idle;
    return n;
}

static void flush_access_logs(struct worker *w)
{
    for (size_t i = 0; i < w->n_listeners; i++)
        for (size_t j = 0; j < w->listeners[i].n_sinks; j++)
            al_sink_flush(&w->listeners[i].sinks[j]);
}

/* Every half second: access logs out, and the host table read again by a
 * worker that picked nothing meanwhile (a busy one reads it on every pick),
 * so that the idle connections of hosts that left are closed. */
static void on_flush_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = t->data;
    flush_access_logs(w);
    for (size_t i = 0; i < w->n_clusters; i++)
        worker_cluster_refresh(w, &w->clusters[i]);
}

static void worker_exit_loop(struct worker *w)
{
    flush_access_logs(w);
    ev_break(w->loop, EVBREAK_ALL);
}

void worker_conn_closed(struct worker *w)
{
    if (w->draining && w->n_conns == 0)
        worker_exit_loop(w);
}

static void stop_accepting(struct worker *w)
{
    for (size_t i = 0; i < w->n_listeners; i++)
        ev_io_stop(w->loop, &w->listeners[i].io);
}

static void on_accept_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct worker *w = t->data;
    if (w->draining)
        return;
    for (size_t i = 0; i < w->n_listeners; i++)
        ev_io_start(loop, &w->listeners[i].io);
}

/* Accept up to `max` connections. Out of descriptors (or memory), the listening
 * socket stays readable: stop watching it for a moment instead of spinning. */
static void accept_batch(struct worker *w, struct listener_rt *l, int max)
{
    for (int i = 0; i < max; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            http_server_accept(w, l, fd, &peer);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EAGAIN)
            return;
        if (ev_now(w->loop) - w->accept_error_logged >= 1.0) {
            w->accept_error_logged = ev_now(w->loop);
            log_warn("accept: %s; pausing accepts for 200 ms (%zu connections open)",
                     strerror(errno), w->n_conns);
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            stop_accepting(w);
            timer_rearm(w->loop, &w->accept_retry, 0.2);
        }
        return;
    }
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct listener_rt *l = io->data;
    struct epoll_event ev;
    epoll_wait(l->epfd, &ev, 1, 0); /* level-triggered: just acknowledge the wake-up */
    if (!l->w->draining)
        accept_batch(l->w, l, ACCEPT_BATCH);
}

static void on_drain_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = t->data;
    log_info("drain deadline: closing %zu connections", w->n_conns);
    http_server_close_all(w);
    worker_exit_loop(w);
}

/* Gradual drain: at each tick, the idle connections whose share of the drain
 * time has come are closed, so that their clients move to the next
 * generation spread over the drain time rather than all at its end. */
static void on_gradual_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct worker *w = t->data;
    double elapsed = ev_now(loop) - w->drain_started;
    double fraction = w->drain_length > 0 ? elapsed / w->drain_length : 1.0;
    size_t closed = http_server_close_idle(w, fraction);
    if (closed > 0)
        log_debug("gradual drain at %.0f%%: closed %zu idle connections", fraction * 100, closed);
}

static void begin_drain(struct worker *w, uint32_t deadline_ms, uint32_t flags)
{
    if (w->draining)
        return;
    bool keep_idle = (flags & IPC_DRAIN_KEEP_IDLE) != 0;
    /* On a stop, connections already in the accept queue were promised
     * service by the kernel: take them (they will be answered with connection:
     * close) before the listener goes and the queue with it. On a hot restart
     * the next generation holds the same sockets and takes them. */
    if (!keep_idle)
        for (size_t i = 0; i < w->n_listeners; i++)
            accept_batch(w, &w->listeners[i], 4096);
    w->draining = true;
    stop_accepting(w);
    ev_timer_stop(w->loop, &w->accept_retry);
    /* Out of the sockets' wait queues: an exclusive wake-up must go to a
     * worker that still accepts. */
    for (size_t i = 0; i < w->n_listeners; i++)
        if (w->listeners[i].epfd >= 0) {
            close(w->listeners[i].epfd);
            w->listeners[i].epfd = -1;
        }
    log_debug("draining %zu connections (deadline %u ms%s%s)", w->n_conns, deadline_ms,
              keep_idle ? ", idle ones kept" : "", (flags & IPC_DRAIN_GRADUAL) ? ", gradual" : "");
    /* On a stop there is no next generation to take idle keep-alive
     * connections: close them now; busy ones close after their response. */
    http_server_drain(w, !keep_idle);
    if (w->n_conns == 0) {
        worker_exit_loop(w);
        return;
    }
    timer_rearm(w->loop, &w->drain_timer, (double)deadline_ms / 1000.0);
    if (keep_idle && (flags & IPC_DRAIN_GRADUAL) && deadline_ms > 0) {
        w->drain_started = ev_now(w->loop);
        w->drain_length = (double)deadline_ms / 1000.0;
        double tick = w->drain_length / 100;
        ev_timer_set(&w->gradual_timer, tick < 0.05 ? 0.05 : tick, tick < 0.05 ? 0.05 : tick);
        ev_timer_start(w->loop, &w->gradual_timer);
    }
}

static void on_control(struct ipc_chan *ch, const char *peer, size_t peer_len,
                       const struct ipc_msg *msg)
{
    (void)peer;
    (void)peer_len;
    struct worker *w = ch->data;
    switch (msg->hdr.type) {
    case IPC_DRAIN:
        begin_drain(w, msg->u.DRAIN.deadline_ms, msg->u.DRAIN.flags);
        break;
    case IPC_STOP:
        http_server_close_all(w);
        worker_exit_loop(w);
        break;
    default:
        log_fatal("protocol violation: unexpected %s from the supervisor",
                  ipc_type_name(msg->hdr.type));
    }
}

static void on_sigterm(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = s->data;
    begin_drain(w, w->ctx->drain_time_ms, 0);
}

/* Ask the listener for the listening sockets and wait (bounded) for them. */
static int receive_sockets(struct worker *w, int *fds, size_t max, size_t *n, bool *has_admin)
{
    uint32_t nonce;
    if (getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce))
        nonce = (uint32_t)proc_now_ns();
    struct handoff_request req = {.magic = HANDOFF_MAGIC, .nonce = nonce};
    if (ipc_send_fds(w->ctx->fd_sock, &req, sizeof(req), NULL, 0) != 0)
        return -1;
    uint64_t deadline = proc_now_ms() + 10000;
    for (;;) {
        uint64_t now = proc_now_ms();
        if (now >= deadline) {
            log_error("the listener did not hand over its sockets within 10 s");
            return -1;
        }
        struct pollfd p = {.fd = w->ctx->fd_sock, .events = POLLIN};
        int rc = poll(&p, 1, (int)(deadline - now));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            continue;
        struct handoff_reply rep;
        ssize_t got = ipc_recv_fds(w->ctx->fd_sock, &rep, sizeof(rep), fds, max, n);
        if (got != (ssize_t)sizeof(rep) || rep.magic != HANDOFF_MAGIC || rep.nonce != nonce ||
            rep.n_sockets != *n) {
            /* An answer meant for our predecessor, or garbage: drop it. */
            for (size_t i = 0; i < *n; i++)
                close(fds[i]);
            *n = 0;
            continue;
        }
        *has_admin = rep.has_admin != 0;
        return 0;
    }
}

static void register_hcm_stats(struct worker *w, struct listener_rt *l);

static int setup_listener(struct worker *w, struct listener_rt *l, int fd,
                          const struct cfg_listener *cfg)
{
    l->w = w;
    l->cfg = cfg;
    l->fd = fd;
    /* One shared accept queue for all workers; EPOLLEXCLUSIVE wakes one worker
     * per connection instead of all of them (libev's own epoll cannot set the
     * flag, so a private epoll set is watched through its descriptor). */
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE};
    if (l->epfd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        log_error("epoll for a listening socket: %s", strerror(errno));
        return -1;
    }
    ev_io_init(&l->io, on_accept, l->epfd, EV_READ);
    l->io.data = l;
    if (cfg != NULL) {
        register_hcm_stats(w, l);
        l->n_sinks = cfg->hcm.n_access_logs;
        l->sinks = calloc(l->n_sinks ? l->n_sinks : 1, sizeof(*l->sinks));
        for (size_t i = 0; i < l->n_sinks; i++) {
            char err[256];
            l->sinks[i].fd = cfg->hcm.access_logs[i].fd;
            l->sinks[i].fmt =
                access_log_format_compile(cfg->hcm.access_logs[i].format, err, sizeof(err));
            if (l->sinks[i].fmt == NULL) {
                log_error("access log format: %s", err);
                return -1;
            }
        }
    }
    ev_io_start(w->loop, &l->io);
    return 0;
}

/* Register (or find) a stat named by a printf format; -1 if the segment is full. */
static int stat_id(struct worker *w, enum stat_kind kind, uint32_t flags, const char *fmt,
                   va_list ap)
{
    char name[512];
    vsnprintf(name, sizeof(name), fmt, ap);
    int id = stats_register_flags(w->ctx->stats, name, kind, flags);
    if (id < 0)
        log_warn("statistics segment full: %s is not counted", name);
    return id;
}

/* This worker's cell of a counter or gauge. */
static _Atomic uint64_t *stat_cell(struct worker *w, enum stat_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static _Atomic uint64_t *stat_cell(struct worker *w, enum stat_kind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int id = stat_id(w, kind, 0, fmt, ap);
    va_end(ap);
    return stats_cell(w->ctx->stats, id);
}

/* A per-host counter or gauge: listed by /clusters, not by /stats. */
static _Atomic uint64_t *host_cell(struct worker *w, enum stat_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static _Atomic uint64_t *host_cell(struct worker *w, enum stat_kind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int id = stat_id(w, kind, STAT_FLAG_HOST, fmt, ap);
    va_end(ap);
    return stats_cell(w->ctx->stats, id);
}

/* This worker's block of a histogram. */
static struct stats_hist_cells *stat_hist(struct worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static struct stats_hist_cells *stat_hist(struct worker *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int id = stat_id(w, STAT_HISTOGRAM, 0, fmt, ap);
    va_end(ap);
    return stats_hist_handle(w->ctx->stats, id);
}

static void register_cluster_stats(struct worker *w, struct cluster_rt *cl)
{
    struct cluster_stats *st = &cl->stats;
    const char *n = cl->cfg->name;
    st->cx_total = stat_cell(w, STAT_COUNTER, "cluster.%s.upstream_cx_total", n);
    st->cx_active = stat_cell(w, STAT_GAUGE, "cluster.%s.upstream_cx_active", n);
    st->cx_connect_fail = stat_cell(w, STAT_COUNTER, "cluster.%s.upstream_cx_connect_fail", n);
    st->cx_connect_timeout =
        stat_cell(w, STAT_COUNTER, "cluster.%s.upstream_cx_connect_timeout", n);
    st->cx_destroy_local = stat_cell(w, STAT_COUNTER, "cluster.%s.upstream_cx_destroy_local", n);
    st->cx_destroy_remote = stat_cell(w, STAT_COUNTER, "cluster.%s.upstream_cx_destroy_remote", n);
    st->rq_total = stat_cell(w, STAT_COUNTER, "cluster.%s.upstream_rq_total", n);
    st->rq_active = stat_cell(w, STAT_GAUGE, "cluster.%s.upstream_rq_active", n);
    st->rq_timeout = stat_cell(w, STAT_COUNTER, "cluster.%s.upstream_rq_timeout", n);
    for (int k = 0; k < 5; k++)
        st->rq_xx[k] = stat_cell(w, STAT_COUNTER, "cluster.%s.upstream_rq_%dxx", n, k + 1);
    st->lb_healthy_panic = stat_cell(w, STAT_COUNTER, "cluster.%s.lb_healthy_panic", n);
    st->cx_none_healthy = stat_cell(w, STAT_COUNTER, "cluster.%s.upstream_cx_none_healthy", n);
    st->rq_time = stat_hist(w, "cluster.%s.upstream_rq_time", n);
    st->connect_ms = stat_hist(w, "cluster.%s.upstream_cx_connect_ms", n);
}

_Atomic uint64_t *worker_rq_code_cell(struct worker *w, struct cluster_stats *st,
                                      const char *cluster, int status)
{
    static _Atomic uint64_t nowhere; /* for a code the segment had no room for */
    if (status < 100 || status > 599)
        return NULL;
    _Atomic uint64_t **slot = &st->rq_code[status - 100];
    if (*slot == NULL) {
        *slot = stat_cell(w, STAT_COUNTER, "cluster.%s.upstream_rq_%d", cluster, status);
        if (*slot == NULL)
            *slot = &nowhere; /* do not look it up again on every request */
    }
    return *slot;
}

static void register_host_stats(struct worker *w, struct host *h)
{
    struct host_stats *st = &h->hstats;
    const char *c = h->cluster->name, *a = h->name;
    st->cx_total = host_cell(w, STAT_COUNTER, "cluster.%s.host.%s.cx_total", c, a);
    st->cx_active = host_cell(w, STAT_GAUGE, "cluster.%s.host.%s.cx_active", c, a);
    st->cx_connect_fail = host_cell(w, STAT_COUNTER, "cluster.%s.host.%s.cx_connect_fail", c, a);
    st->rq_total = host_cell(w, STAT_COUNTER, "cluster.%s.host.%s.rq_total", c, a);
    st->rq_active = host_cell(w, STAT_GAUGE, "cluster.%s.host.%s.rq_active", c, a);
    st->rq_success = host_cell(w, STAT_COUNTER, "cluster.%s.host.%s.rq_success", c, a);
    st->rq_error = host_cell(w, STAT_COUNTER, "cluster.%s.host.%s.rq_error", c, a);
    st->rq_timeout = host_cell(w, STAT_COUNTER, "cluster.%s.host.%s.rq_timeout", c, a);
}

static void register_hcm_stats(struct worker *w, struct listener_rt *l)
{
    struct hcm_stats *st = &l->stats;
    const char *p = l->cfg->hcm.stat_prefix;
    st->cx_total = stat_cell(w, STAT_COUNTER, "http.%s.downstream_cx_total", p);
    st->cx_active = stat_cell(w, STAT_GAUGE, "http.%s.downstream_cx_active", p);
    st->cx_http1_total = stat_cell(w, STAT_COUNTER, "http.%s.downstream_cx_http1_total", p);
    st->cx_http1_active = stat_cell(w, STAT_GAUGE, "http.%s.downstream_cx_http1_active", p);
    st->cx_destroy = stat_cell(w, STAT_COUNTER, "http.%s.downstream_cx_destroy", p);
    st->cx_destroy_local = stat_cell(w, STAT_COUNTER, "http.%s.downstream_cx_destroy_local", p);
    st->cx_destroy_remote = stat_cell(w, STAT_COUNTER, "http.%s.downstream_cx_destroy_remote", p);
    st->cx_length = stat_hist(w, "http.%s.downstream_cx_length_ms", p);
    st->server_connections = stat_cell(w, STAT_GAUGE, "server.total_connections");
    /* Envoy's listener names: 127.0.0.1_10000, and [__1]_10000 for IPv6 */
    char lname[96];
    const struct cfg_addr *a = &l->cfg->addr;
    if (a->ss.ss_family == AF_INET6) {
        char v6[64];
        snprintf(v6, sizeof(v6), "%s", a->address);
        for (char *q = v6; *q; q++)
            if (*q == ':')
                *q = '_';
        snprintf(lname, sizeof(lname), "[%s]_%u", v6, a->port);
    } else
        snprintf(lname, sizeof(lname), "%s_%u", a->address, a->port);
    st->listener_cx_total = stat_cell(w, STAT_COUNTER, "listener.%s.downstream_cx_total", lname);
    st->listener_cx_active = stat_cell(w, STAT_GAUGE, "listener.%s.downstream_cx_active", lname);
    st->listener_cx_destroy =
        stat_cell(w, STAT_COUNTER, "listener.%s.downstream_cx_destroy", lname);
    char name[256];
    snprintf(name, sizeof(name), "listener.%s.downstream_cx_active", lname);
    st->listener_cx_active_id = stats_register(w->ctx->stats, name, STAT_GAUGE);
    stats_same_name_init(&st->listener_cx_active_all, st->listener_cx_active_id);
    st->cx_overflow = stat_cell(w, STAT_COUNTER, "listener.%s.downstream_cx_overflow", lname);
    st->global_cx_overflow =
        stat_cell(w, STAT_COUNTER, "listener.%s.downstream_global_cx_overflow", lname);
    if (l->cfg->conn_limit.enabled) {
        const char *cp = l->cfg->conn_limit.stat_prefix;
        st->cl_limited = stat_cell(w, STAT_COUNTER, "connection_limit.%s.limited_connections", cp);
        st->cl_active = stat_cell(w, STAT_GAUGE, "connection_limit.%s.active_connections", cp);
    }
    st->rq_total = stat_cell(w, STAT_COUNTER, "http.%s.downstream_rq_total", p);
    st->rq_active = stat_cell(w, STAT_GAUGE, "http.%s.downstream_rq_active", p);
    for (int k = 0; k < 5; k++)
        st->rq_xx[k] = stat_cell(w, STAT_COUNTER, "http.%s.downstream_rq_%dxx", p, k + 1);
    st->rq_timeout = stat_cell(w, STAT_COUNTER, "http.%s.downstream_rq_timeout", p);
    st->rq_header_timeout = stat_cell(w, STAT_COUNTER, "http.%s.downstream_rq_header_timeout", p);
    st->rq_idle_timeout = stat_cell(w, STAT_COUNTER, "http.%s.downstream_rq_idle_timeout", p);
    st->rq_rx_reset = stat_cell(w, STAT_COUNTER, "http.%s.downstream_rq_rx_reset", p);
    st->no_route = stat_cell(w, STAT_COUNTER, "http.%s.no_route", p);
    st->no_cluster = stat_cell(w, STAT_COUNTER, "http.%s.no_cluster", p);
    st->rq_direct_response = stat_cell(w, STAT_COUNTER, "http.%s.rq_direct_response", p);
    st->rq_time = stat_hist(w, "http.%s.downstream_rq_time", p);
}

static void *alloc_or_die(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (p == NULL)
        log_fatal("out of memory");
    return p;
}

static struct host *host_create(struct worker *w, struct cluster_rt *cl, uint32_t slot,
                                const struct sockaddr_storage *addr, socklen_t addrlen,
                                const char *name)
{
    struct host *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        log_error("cluster %s: out of memory for host %s", cl->cfg->name, name);
        return NULL;
    }
    h->cl = cl;
    h->cluster = cl->cfg;
    h->stats = &cl->stats;
    h->slot = slot;
    memcpy(&h->addr, addr, addrlen);
    h->addrlen = addrlen;
    h->live = cl->shm != NULL ? hosts_live(cl->shm, slot) : NULL;
    snprintf(h->name, sizeof(h->name), "%s", name);
    pool_init(&h->pool, WORKER_POOL_MAX_IDLE);
    register_host_stats(w, h);
    char stat[256];
    snprintf(stat, sizeof(stat), "cluster.%s.host.%s.rq_active", cl->cfg->name, h->name);
    h->rq_active_id = stats_register_flags(w->ctx->stats, stat, STAT_GAUGE, STAT_FLAG_HOST);
    stats_same_name_init(&h->rq_active, h->rq_active_id);
    cl->slots[slot] = h;
    return h;
}

static void host_retire(struct cluster_rt *cl, struct host *h)
{
    cl->slots[h->slot] = NULL;
    h->live = NULL; /* the slot's counters are the next host's */
    log_debug("cluster %s: host %s left the table", cl->cfg->name, h->name);
    /* Streams on it finish; idle connections have nothing left to do. Closed
     * before it is marked removed, so that the last one does not free it
     * under our feet. */
    upstream_close_idle_of(h);
    h->removed = true;
    h->next_retired = cl->retired;
    cl->retired = h;
    worker_host_maybe_free(h);
}

void worker_host_maybe_free(struct host *h)
{
    if (h == NULL || !h->removed || h->n_streams > 0 || h->pool.n_active > 0 || h->pool.n_idle > 0)
        return;
    struct host **p = &h->cl->retired;
    while (*p != NULL && *p != h)
        p = &(*p)->next_retired;
    if (*p == h)
        *p = h->next_retired;
    free(h);
}

static void setup_clusters(struct worker *w)
{
    const struct config *cfg = w->cfg;
    w->n_clusters = cfg->n_clusters;
    w->clusters = alloc_or_die(cfg->n_clusters, sizeof(*w->clusters));
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        struct cluster_rt *cl = &w->clusters[i];
        cl->cfg = &cfg->clusters[i];
        cl->stats_seg = w->ctx->stats;
        cl->shm = w->ctx->hosts != NULL ? hosts_cluster(w->ctx->hosts, i) : NULL;
        cl->cap = cl->shm != NULL ? hosts_capacity(cl->shm) : (uint32_t)cl->cfg->n_endpoints;
        cl->slots = alloc_or_die(cl->cap, sizeof(*cl->slots));
        cl->bell_fd = w->ctx->hosts_bell_fd;
        cl->view = alloc_or_die(cl->cap, sizeof(*cl->view));
        cl->bank_to_host = alloc_or_die(cl->cap, sizeof(*cl->bank_to_host));
        for (uint32_t l = 0; l < HOSTS_MAX_LEVELS; l++) {
            cl->levels[l].members = alloc_or_die(cl->cap, sizeof(uint32_t));
            cl->levels[l].weights = alloc_or_die(cl->cap, sizeof(uint32_t));
            cl->levels[l].cum = alloc_or_die(cl->cap, sizeof(uint64_t));
        }
        uint64_t seed;
        if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
            seed = proc_now_ns();
        lb_rng_seed(&cl->rng, seed ^ (uint64_t)w->ctx->index);
        register_cluster_stats(w, cl);
        if (cl->shm != NULL && hosts_generation(cl->shm) > 0)
            cluster_resync(w, cl);
        else
            cluster_assume_healthy(w, cl);
    }
}

int worker_run(const struct child_ctx *ctx)
{
    static struct worker w;
    w.ctx = ctx;
    w.global_cx_id = stats_register(ctx->stats, "server.total_connections", STAT_GAUGE);
    stats_same_name_init(&w.global_cx, w.global_cx_id);
    w.cfg = ctx->cfg;
    char title[48];
    snprintf(title, sizeof(title), "legate: worker %d", ctx->index);
    w.loop = child_start(ctx, title, &w.ctl, on_control, &w);

    int fds[IPC_MAX_FDS];
    size_t n = 0;
    bool has_admin = false;
    if (receive_sockets(&w, fds, IPC_MAX_FDS, &n, &has_admin) != 0)
        return 1;
    if (n != w.cfg->n_listeners + (has_admin ? 1 : 0)) {
        log_error("the listener handed %zu sockets, expected %zu", n, w.cfg->n_listeners);
        return 1;
    }
    setup_clusters(&w);
    w.n_listeners = n;
    w.listeners = calloc(n ? n : 1, sizeof(*w.listeners));
    for (size_t i = 0; i < n; i++)
        if (setup_listener(&w, &w.listeners[i], fds[i],
                           i < w.cfg->n_listeners ? &w.cfg->listeners[i] : NULL) != 0)
            return 1;

    ev_timer_init(&w.drain_timer, on_drain_deadline, 0., 0.);
    w.drain_timer.data = &w;
    ev_timer_init(&w.gradual_timer, on_gradual_tick, 0., 0.);
    w.gradual_timer.data = &w;
    ev_timer_init(&w.accept_retry, on_accept_retry, 0., 0.);
    w.accept_retry.data = &w;
    ev_timer_init(&w.flush_timer, on_flush_timer, 0.5, 0.5);
    w.flush_timer.data = &w;
    ev_timer_start(w.loop, &w.flush_timer);
    ev_signal_init(&w.sig_term, on_sigterm, SIGTERM);
    w.sig_term.data = &w;
    ev_signal_start(w.loop, &w.sig_term);
    if (worker_sup_link_start(&w) != 0)
        return 1;

    child_ready(&w.ctl);
    ev_run(w.loop, 0);
    flush_access_logs(&w);
    log_debug("exiting");
    ipc_close(&w.ctl);
    return 0;
}

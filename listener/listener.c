/* The listener role: owns every listening socket and hands them to workers.
 * It never reads a byte from a client. */
#include <errno.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/role.h"
#include "listener/handoff.h"

struct listener_state {
    const struct child_ctx *ctx;
    struct ev_loop *loop;
    struct ipc_chan ctl;
    int *fds; /* listening sockets: config listeners, then admin */
    size_t n_fds;
    int **worker_fds; /* reuseport: each worker's own set, laid out like fds */
    bool has_admin;
    ev_io *worker_io; /* one per worker slot */
    ev_signal sig_term;
};

static int bind_listener(const struct cfg_addr *a, const char *what, bool reuseport)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("%s: socket: %s", what, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        log_error("%s: SO_REUSEPORT: %s", what, strerror(errno));
        close(fd);
        return -1;
    }
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->sslen) != 0) {
        log_error("%s: cannot bind %s port %u: %s", what, a->address, a->port, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, 4096) != 0) {
        log_error("%s: listen on %s port %u: %s", what, a->address, a->port, strerror(errno));
        close(fd);
        return -1;
    }
    /* Every listener speaks HTTP, where the client talks first and our first
     * bytes answer it: accepted connections start in delayed-ACK mode, so
     * the request's ACK rides on the response instead of costing a segment
     * of its own (one segment fewer per connection; HAProxy does the same in
     * HTTP mode). A slow response still gets its ACK from the delayed-ACK
     * timer. After listen(), which resets the ACK mode. */
    int zero = 0;
    setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &zero, sizeof(zero));
    log_debug("%s listening on %s port %u", what, a->address, a->port);
    return fd;
}

static void on_worker_request(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct listener_state *st = w->data;
    struct handoff_request req;
    size_t n_fds = 0;
    int junk[4];
    ssize_t n = ipc_recv_fds(w->fd, &req, sizeof(req), junk, 4, &n_fds);
    for (size_t i = 0; i < n_fds; i++)
        close(junk[i]); /* workers never send descriptors */
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        /* n == 0 cannot happen while the supervisor holds the worker's end. */
        return;
    }
    if ((size_t)n != sizeof(req) || req.magic != HANDOFF_MAGIC) {
        log_warn("malformed hand-off request (%zd bytes) ignored", n);
        return;
    }
    struct handoff_reply rep = {.magic = HANDOFF_MAGIC,
                                .nonce = req.nonce,
                                .n_sockets = (uint32_t)st->n_fds,
                                .has_admin = st->has_admin};
    size_t slot = (size_t)(w - st->worker_io);
    const int *fds = st->worker_fds != NULL ? st->worker_fds[slot] : st->fds;
    if (ipc_send_fds(w->fd, &rep, sizeof(rep), fds, st->n_fds) != 0)
        log_warn("cannot hand sockets to a worker: %s", strerror(errno));
    else
        log_debug("handed %zu sockets to a worker", st->n_fds);
}

/* The socket for (index, shard): the one the supervisor handed us if there is
 * one (the same socket, accept queue and all), else a fresh bind. */
static int take_or_bind(const struct child_ctx *ctx, uint16_t index, uint16_t shard,
                        const struct cfg_addr *a, const char *what, bool reuseport)
{
    for (size_t i = 0; i < ctx->n_listen_fds; i++) {
        struct listen_fd *lf = &ctx->listen_fds[i];
        if (lf->fd >= 0 && lf->index == index && lf->shard == shard) {
            int fd = lf->fd;
            lf->fd = -1;
            log_debug("%s: inherited socket %d", what, fd);
            return fd;
        }
    }
    return bind_listener(a, what, reuseport);
}

/* Give the supervisor a copy of every socket (see listener/handoff.h). */
static void send_sockets_to_supervisor(const struct listener_state *st, int sup_sock)
{
    struct listen_socks_msg m = {.magic = LISTEN_SOCKS_MAGIC};
    int fds[LISTEN_SOCKS_MAX];
    size_t shards = st->worker_fds != NULL ? st->ctx->n_worker_socks : 1;
    for (size_t wk = 0; wk < shards; wk++)
        for (size_t i = 0; i < st->n_fds; i++) {
            int fd = st->worker_fds != NULL ? st->worker_fds[wk][i] : st->fds[i];
            if (wk > 0 && fd == st->fds[i])
                continue; /* the admin socket is not sharded */
            if (m.n == LISTEN_SOCKS_MAX) {
                log_warn("more than %d listening sockets: the supervisor keeps the first %d",
                         LISTEN_SOCKS_MAX, LISTEN_SOCKS_MAX);
                goto send;
            }
            m.ids[m.n] = (struct listen_sock_id){.index = (uint16_t)i, .shard = (uint16_t)wk};
            fds[m.n++] = fd;
        }
send:
    if (ipc_send_fds(sup_sock, &m, offsetof(struct listen_socks_msg, ids) + m.n * sizeof(m.ids[0]),
                     fds, m.n) != 0)
        log_warn("cannot give the supervisor the listening sockets: %s", strerror(errno));
}

int listener_run(const struct child_ctx *ctx)
{
    static struct listener_state st;
    st.ctx = ctx;
    st.loop = child_start(ctx, "legate: listener", &st.ctl, child_stop_on_control, &st);
    const struct config *cfg = ctx->cfg;
    st.has_admin = cfg->admin.enabled;
    st.fds = calloc(cfg->n_listeners + 1, sizeof(int));
    if (st.fds == NULL)
        log_fatal("out of memory");
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        char what[160];
        snprintf(what, sizeof(what), "listener '%s'", cfg->listeners[i].name);
        int fd = take_or_bind(ctx, (uint16_t)i, 0, &cfg->listeners[i].addr, what, ctx->reuseport);
        if (fd < 0)
            return 1;
        st.fds[st.n_fds++] = fd;
        log_info("%s listening on %s port %u", what, cfg->listeners[i].addr.address,
                 cfg->listeners[i].addr.port);
    }
    if (st.has_admin) {
        /* The admin listener is never sharded: it is not on the hot path. */
        int fd = take_or_bind(ctx, (uint16_t)cfg->n_listeners, 0, &cfg->admin.addr, "admin", false);
        if (fd < 0)
            return 1;
        st.fds[st.n_fds++] = fd;
        log_info("admin listening on %s port %u", cfg->admin.addr.address, cfg->admin.addr.port);
    }
    if (ctx->reuseport) {
        /* One more socket per listener and worker, all in one SO_REUSEPORT
         * group; worker 0 takes the first ones bound above. The kernel then
         * spreads connections over the workers' own accept queues. */
        st.worker_fds = calloc(ctx->n_worker_socks, sizeof(int *));
        for (size_t wk = 0; wk < ctx->n_worker_socks; wk++) {
            st.worker_fds[wk] = calloc(st.n_fds, sizeof(int));
            for (size_t i = 0; i < st.n_fds; i++) {
                bool shard = i < cfg->n_listeners && wk > 0;
                int fd = shard ? take_or_bind(ctx, (uint16_t)i, (uint16_t)wk,
                                              &cfg->listeners[i].addr, "listener shard", true)
                               : st.fds[i];
                if (fd < 0)
                    return 1;
                st.worker_fds[wk][i] = fd;
            }
        }
    }
    /* Handed sockets this configuration has no use for are not ours to keep. */
    for (size_t i = 0; i < ctx->n_listen_fds; i++)
        if (ctx->listen_fds[i].fd >= 0)
            close(ctx->listen_fds[i].fd);
    if (ctx->sup_sock >= 0)
        send_sockets_to_supervisor(&st, ctx->sup_sock);
    st.worker_io = calloc(ctx->n_worker_socks, sizeof(ev_io));
    for (size_t i = 0; i < ctx->n_worker_socks; i++) {
        ev_io_init(&st.worker_io[i], on_worker_request, ctx->worker_socks[i], EV_READ);
        st.worker_io[i].data = &st;
        ev_io_start(st.loop, &st.worker_io[i]);
    }
    ev_signal_init(&st.sig_term, child_stop_on_sigterm, SIGTERM);
    ev_signal_start(st.loop, &st.sig_term);
    child_ready(&st.ctl);
    ev_run(st.loop, 0);
    log_debug("exiting");
    ipc_close(&st.ctl);
    return 0;
}

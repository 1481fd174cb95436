#include "worker/upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/evtimer.h"
#include "common/log.h"
#include "common/proc.h"

enum upstream_state {
    UP_CONNECTING, /* connect() in progress; the owner may already queue the request */
    UP_ACTIVE,     /* connected and owned by a stream */
    UP_IDLE,       /* in the pool, owned by nobody */
    UP_FAILED,     /* failed before the owner could be told; a zero timer tells it */
};

struct upstream {
    struct pool_link link; /* first: the pool hands back &link */
    struct worker *w;
    struct host *host;
    int fd;
    enum upstream_state state;
    ev_io rio, wio;
    ev_timer timer; /* connect timeout, idle timeout, or deferred failure */
    struct buf in, out;
    struct h1_parser *parser;
    const struct upstream_callbacks *cb;
    void *owner;
    enum upstream_failure failed_why;
    bool interim;        /* the response being parsed is a 1xx: not for the owner */
    bool complete;       /* the final response is complete */
    bool keep_alive;     /* the response allows reuse */
    bool paused;         /* the owner asked us to stop reading */
    bool over_watermark; /* queued request bytes went above the high watermark */
    bool dispatching;    /* inside a callback into the owner */
    bool release_pending;
    bool release_reusable;
    bool peer_closed;    /* the upstream closed or reset it: a remote destroy */
    uint64_t connect_ns; /* when connect() was called */
};

static struct upstream *from_link(struct pool_link *l)
{
    return (struct upstream *)((char *)l - offsetof(struct upstream, link));
}

static void count_connect_fail(struct upstream *u)
{
    stats_cell_add(u->host->stats->cx_connect_fail, 1);
    stats_cell_add(u->host->hstats.cx_connect_fail, 1);
}

static void upstream_destroy(struct upstream *u)
{
    stats_cell_add(u->host->stats->cx_active, (uint64_t)-1);
    stats_cell_add(u->host->hstats.cx_active, (uint64_t)-1);
    /* A connection that never connected is a connect failure, not a destroy. */
    if (u->state != UP_CONNECTING && u->state != UP_FAILED)
        stats_cell_add(u->peer_closed ? u->host->stats->cx_destroy_remote
                                      : u->host->stats->cx_destroy_local,
                       1);
    ev_io_stop(u->w->loop, &u->rio);
    ev_io_stop(u->w->loop, &u->wio);
    ev_timer_stop(u->w->loop, &u->timer);
    if (u->fd >= 0)
        close(u->fd);
    h1_parser_free(u->parser);
    buf_release(&u->in);
    buf_release(&u->out);
    struct host *h = u->host;
    free(u);
    worker_host_maybe_free(h); /* its last connection, if it was retired */
}

/* Close an active (or connecting) connection and tell the owner, if any. */
static void upstream_fail(struct upstream *u, enum upstream_failure why)
{
    if (why == UPSTREAM_CONNECT_FAILED || why == UPSTREAM_CONNECT_TIMEOUT)
        count_connect_fail(u);
    if (why == UPSTREAM_CONNECT_TIMEOUT)
        stats_cell_add(u->host->stats->cx_connect_timeout, 1);
    if (why == UPSTREAM_RESET)
        u->peer_closed = true;
    const struct upstream_callbacks *cb = u->cb;
    void *owner = u->owner;
    pool_drop_active(&u->host->pool);
    u->owner = NULL;
    upstream_destroy(u);
    if (owner != NULL)
        cb->on_failure(owner, why);
}

static void upstream_close_idle(struct upstream *u)
{
    pool_drop_idle(&u->host->pool, &u->link);
    upstream_destroy(u);
}

void upstream_close_idle_of(struct host *h)
{
    while (h->pool.n_idle > 0) {
        struct pool_link *l = h->pool.idle.next;
        upstream_close_idle(from_link(l));
    }
}

static int on_head(void *ctx, const struct h1_head *head)
{
    struct upstream *u = ctx;
    if (u->owner == NULL)
        return -1;
    /* legate never asks for an upgrade (no Upgrade header is forwarded), so a
     * 101 is a protocol error: the connection is not HTTP any more. */
    if (head->status == 101)
        return -1;
    /* 1xx interim responses (100 Continue, 103) are consumed here: legate
     * answers Expect itself, and the owner wants the final response. */
    if (head->status >= 100 && head->status < 200) {
        u->interim = true;
        return 0;
    }
    u->interim = false;
    u->keep_alive = head->keep_alive && head->body != H1_BODY_EOF;
    u->cb->on_head(u->owner, head);
    return u->owner == NULL ? -1 : 0;
}

static int on_body(void *ctx, const char *data, size_t len)
{
    struct upstream *u = ctx;
    if (u->owner == NULL)
        return -1;
    if (u->interim)
        return 0;
    u->cb->on_body(u->owner, data, len);
    return u->owner == NULL ? -1 : 0;
}

static int on_complete(void *ctx)
{
    struct upstream *u = ctx;
    if (u->owner == NULL)
        return -1;
    if (u->interim)
        return 0;
    u->complete = true;
    u->cb->on_complete(u->owner);
    return 0;
}

static const struct h1_callbacks parser_callbacks = {on_head, on_body, on_complete};

static void finish_dispatch(struct upstream *u);

/* Feed what is buffered; returns -1 if the connection is gone. */
static int upstream_parse(struct upstream *u)
{
    while (buf_len(&u->in) > 0 && !u->complete) {
        u->dispatching = true;
        ssize_t n = h1_parser_feed(u->parser, buf_head(&u->in), buf_len(&u->in));
        u->dispatching = false;
        if (n < 0) {
            if (u->release_pending) {
                finish_dispatch(u);
                return -1;
            }
            log_debug("upstream %s: bad response: %s", u->host->name,
                      h1_parser_error_reason(u->parser));
            upstream_fail(u, UPSTREAM_PROTOCOL_ERROR);
            return -1;
        }
        buf_consume(&u->in, (size_t)n);
        if (u->release_pending) {
            finish_dispatch(u);
            return -1;
        }
        if (!u->complete && h1_parser_is_stopped(u->parser)) {
            /* An interim response ended: the final one follows. */
            h1_parser_resume(u->parser);
            continue;
        }
        if (n == 0)
            break;
    }
    return 0;
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct upstream *u = w->data;
    ssize_t n = buf_read_from(&u->in, u->fd, WORKER_READ_SIZE);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0) {
        u->peer_closed = true;
        if (u->complete) {
            /* The response was already whole; the peer just closed. */
            u->keep_alive = false;
            ev_io_stop(u->w->loop, &u->rio);
            return;
        }
        u->dispatching = true;
        int rc = n == 0 ? h1_parser_finish(u->parser) : -1;
        u->dispatching = false;
        if (u->release_pending) {
            finish_dispatch(u);
            return;
        }
        if (rc == 0 && u->complete) {
            u->keep_alive = false;
            ev_io_stop(u->w->loop, &u->rio);
            return;
        }
        upstream_fail(u, UPSTREAM_RESET);
        return;
    }
    if (upstream_parse(u) != 0)
        return;
    if (u->complete && buf_len(&u->in) > 0)
        u->keep_alive = false; /* bytes after the response: never reuse this one */
    if (u->owner != NULL && u->cb->on_read_end != NULL)
        u->cb->on_read_end(u->owner);
}

static void on_idle_event(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    /* Anything on an idle connection (EOF, a stray byte, an error) ends it;
     * almost always the upstream closing it. */
    struct upstream *u = w->data;
    u->peer_closed = true;
    upstream_close_idle(u);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct upstream *u = w->data;
    switch (u->state) {
    case UP_CONNECTING:
        upstream_fail(u, UPSTREAM_CONNECT_TIMEOUT);
        break;
    case UP_IDLE:
        upstream_close_idle(u);
        break;
    case UP_FAILED:
        upstream_fail(u, u->failed_why);
        break;
    case UP_ACTIVE:
        break;
    }
}

static void update_watermark(struct upstream *u)
{
    size_t pending = buf_len(&u->out);
    if (pending > WORKER_HIGH_WATERMARK)
        u->over_watermark = true;
    else if (u->over_watermark && pending < WORKER_LOW_WATERMARK) {
        u->over_watermark = false;
        if (u->owner != NULL && u->cb->on_drained != NULL)
            u->cb->on_drained(u->owner);
    }
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct upstream *u = w->data;
    if (u->state == UP_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            log_debug("upstream %s: connect failed: %s", u->host->name,
                      strerror(err ? err : errno));
            upstream_fail(u, UPSTREAM_CONNECT_FAILED);
            return;
        }
        u->state = UP_ACTIVE;
        stats_hist_add(u->host->stats->connect_ms, (proc_now_ns() - u->connect_ns) / 1000000u);
        ev_timer_stop(loop, &u->timer);
        if (!u->paused)
            ev_io_start(loop, &u->rio);
    }
    upstream_flush(u);
}

void upstream_flush(struct upstream *u)
{
    if (u->state != UP_ACTIVE) {
        /* Still connecting: the request piles up here, and the owner must see
         * the watermark now, or on_drained would never come after the connect. */
        update_watermark(u);
        return;
    }
    if (buf_write_to(&u->out, u->fd) < 0) {
        log_debug("upstream %s: write failed: %s", u->host->name, strerror(errno));
        /* Let the read side report it: the response may already be there. */
        ev_io_stop(u->w->loop, &u->wio);
        if (u->owner != NULL && !u->dispatching)
            upstream_fail(u, UPSTREAM_RESET);
        return;
    }
    if (buf_len(&u->out) > 0)
        ev_io_start(u->w->loop, &u->wio);
    else
        ev_io_stop(u->w->loop, &u->wio);
    update_watermark(u);
}

static struct upstream *upstream_connect(struct worker *w, struct host *h)
{
    struct upstream *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return NULL;
    u->w = w;
    u->host = h;
    u->parser = h1_parser_new(H1_RESPONSE, &parser_callbacks, u);
    if (u->parser == NULL) {
        free(u);
        return NULL;
    }
    ev_io_init(&u->rio, on_readable, -1, EV_READ);
    ev_io_init(&u->wio, on_writable, -1, EV_WRITE);
    ev_timer_init(&u->timer, on_timer, 0., 0.);
    u->rio.data = u->wio.data = u->timer.data = u;
    pool_add_active(&h->pool);
    stats_cell_add(h->stats->cx_total, 1);
    stats_cell_add(h->stats->cx_active, 1);
    stats_cell_add(h->hstats.cx_total, 1);
    stats_cell_add(h->hstats.cx_active, 1);
    u->connect_ns = proc_now_ns();
    u->fd = socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = -1;
    if (u->fd >= 0) {
        int one = 1;
        setsockopt(u->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        rc = connect(u->fd, (const struct sockaddr *)&h->addr, h->addrlen);
    }
    ev_io_set(&u->rio, u->fd, EV_READ);
    ev_io_set(&u->wio, u->fd, EV_WRITE);
    if (rc == 0 || errno == EINPROGRESS) {
        u->state = UP_CONNECTING;
        ev_io_start(w->loop, &u->wio); /* writable = connected (or failed) */
        double t = (double)h->cluster->connect_timeout_ms / 1000.0;
        ev_timer_set(&u->timer, t > 0 ? t : 5.0, 0.);
    } else {
        /* Failed at once (often ECONNREFUSED on loopback): report it from the
         * loop, never from inside upstream_open where the owner is not ready. */
        log_debug("upstream %s: connect failed: %s", h->name, strerror(errno));
        u->state = UP_FAILED;
        u->failed_why = UPSTREAM_CONNECT_FAILED;
        ev_timer_set(&u->timer, 0., 0.);
    }
    ev_timer_start(w->loop, &u->timer);
    return u;
}

struct upstream *upstream_open(struct worker *w, struct host *h,
                               const struct upstream_callbacks *cb, void *owner)
{
    struct upstream *u;
    struct pool_link *l = pool_acquire(&h->pool);
    if (l != NULL) {
        u = from_link(l);
        ev_timer_stop(w->loop, &u->timer);
        ev_io_stop(w->loop, &u->rio);
        ev_set_cb(&u->rio, on_readable);
        ev_io_start(w->loop, &u->rio);
        u->state = UP_ACTIVE;
    } else {
        u = upstream_connect(w, h);
        if (u == NULL)
            return NULL;
    }
    u->cb = cb;
    u->owner = owner;
    u->interim = u->complete = u->keep_alive = false;
    u->paused = u->over_watermark = u->release_pending = false;
    return u;
}

struct buf *upstream_out(struct upstream *u)
{
    return &u->out;
}

bool upstream_over_watermark(const struct upstream *u)
{
    return u->over_watermark;
}

void upstream_expect_head_response(struct upstream *u, bool is_head)
{
    h1_parser_expect_head_response(u->parser, is_head);
}

void upstream_pause(struct upstream *u, bool paused)
{
    u->paused = paused;
    if (u->state != UP_ACTIVE)
        return;
    if (paused)
        ev_io_stop(u->w->loop, &u->rio);
    else if (!u->complete)
        ev_io_start(u->w->loop, &u->rio);
}

/* True if the response ended in a way that allows another request. */
static bool upstream_reusable(const struct upstream *u)
{
    return u->complete && u->keep_alive && buf_len(&u->in) == 0 && buf_len(&u->out) == 0;
}

static void do_release(struct upstream *u, bool reusable)
{
    u->owner = NULL;
    if (reusable && upstream_reusable(u) && !u->w->draining && !u->host->removed) {
        h1_parser_resume(u->parser);
        if (pool_release(&u->host->pool, &u->link)) {
            u->state = UP_IDLE;
            ev_io_stop(u->w->loop, &u->wio);
            ev_io_stop(u->w->loop, &u->rio);
            ev_set_cb(&u->rio, on_idle_event);
            ev_io_start(u->w->loop, &u->rio);
            /* The cluster's idle_timeout; 0 keeps the connection until either
             * side closes it (the read watcher still notices that). */
            if (u->host->cluster->idle_timeout_ms > 0)
                timer_rearm(u->w->loop, &u->timer,
                            (double)u->host->cluster->idle_timeout_ms / 1000.0);
            else
                ev_timer_stop(u->w->loop, &u->timer);
            /* An idle connection keeps no buffers. */
            buf_release(&u->in);
            buf_release(&u->out);
            return;
        }
        upstream_destroy(u); /* pool full: pool_release already uncounted it */
        return;
    }
    /* Given up before it was connected: Envoy counts a local destroy; one whose
     * failure was still to be reported is a connect failure. */
    if (u->state == UP_CONNECTING)
        stats_cell_add(u->host->stats->cx_destroy_local, 1);
    else if (u->state == UP_FAILED)
        count_connect_fail(u);
    pool_drop_active(&u->host->pool);
    upstream_destroy(u);
}

static void finish_dispatch(struct upstream *u)
{
    u->release_pending = false;
    do_release(u, u->release_reusable);
}

void upstream_release(struct upstream *u, bool reusable)
{
    if (u->dispatching) {
        /* Called from inside our own parser callback: finish after it returns. */
        u->release_pending = true;
        u->release_reusable = reusable;
        u->owner = NULL;
        return;
    }
    do_release(u, reusable);
}

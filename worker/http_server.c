/* Downstream HTTP/1.1 connections and the stream each one carries.
 *
 * One connection has at most one stream at a time; a pipelined request waits
 * in the input buffer (the codec stops after each message) until the current
 * response is written. Every stream ends in one place, stream_end(), which
 * writes its access-log line. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/evtimer.h"
#include "common/log.h"
#include "common/proc.h"
#include "worker/http1.h"
#include "worker/router.h"
#include "worker/upstream.h"
#include "worker/worker.h"

enum resp_framing {
    FRAME_NONE,    /* no body (HEAD, 204, 304, or a local reply written whole) */
    FRAME_LENGTH,  /* Content-Length */
    FRAME_CHUNKED, /* legate's own chunking */
    FRAME_CLOSE,   /* HTTP/1.0 client: body ends when the connection closes */
};

struct stream {
    bool active;
    const struct h1_head *req; /* valid until the parser resumes (after stream_end) */
    uint64_t start_us;         /* wall clock, for %START_TIME% */
    uint64_t start_ns;         /* monotonic, for %DURATION% */
    uint64_t upstream_start_ns;
    long service_time_ms; /* -1 until the upstream answered */
    const struct cfg_route *route;
    struct cluster_rt *cluster;
    struct host *host; /* the upstream host chosen, once counted */
    bool counted;      /* counted in cluster->n_active_rq (circuit breaker) and rq_active */
    struct upstream *up;
    const char *upstream_host;
    bool request_complete;
    bool response_started;  /* a response head went (or is queued) downstream */
    bool response_complete; /* the whole response is queued downstream */
    bool upstream_paused;   /* we paused the upstream for downstream back-pressure */
    bool is_head;
    enum h1_body req_body;
    enum resp_framing framing;
    int status;
    uint64_t bytes_received;
    uint64_t bytes_sent;
    char flags[24];
    char request_id[40];
    bool request_id_generated;
    ev_timer route_timer;
};

struct conn {
    struct conn *prev, *next;
    struct worker *w;
    struct listener_rt *l;
    int fd;
    ev_io rio, wio;
    ev_timer idle_timer;    /* no stream: hcm idle_timeout */
    ev_timer header_timer;  /* first byte of a request head to its end: request_headers_timeout */
    ev_timer stream_timer;  /* no progress on a stream (stream_idle_timeout), or on the last
                               bytes of a closing connection whose client stopped reading */
    ev_timer resume_timer;  /* zero delay: parse a pipelined request after the loop turns */
    ev_timer request_timer; /* stream start to the whole request received: request_timeout */
    uint64_t accepted_ns;
    ev_tstamp last_activity;
    struct buf in, out;
    struct h1_parser *parser;
    char peer[64];     /* "ip:port" */
    char peer_ip[48];  /* for x-forwarded-for */
    bool backpressure; /* upstream side is full: stop reading */
    bool close_after;  /* close once the current response is written */
    bool closing;      /* writing the last bytes, then close */
    bool lingering;    /* output done and shut down: discarding input until EOF */
    bool clean_close;  /* the client asked to close and sent nothing more: no lingering */
    size_t linger_bytes;
    bool peer_gone; /* the client closed or reset: a remote destroy */
    bool dead;      /* closed; freed when the outermost handler returns */
    int busy;       /* nesting depth of handlers running on this connection */
    bool processing;
    bool process_again;
    struct stream st;
};

static void conn_process(struct conn *c);
static void conn_flush(struct conn *c);
static void stream_end(struct conn *c);
static void stream_response_done(struct conn *c);

/* --- lifetime ------------------------------------------------------------ */

static void conn_enter(struct conn *c)
{
    c->busy++;
}

static void conn_free(struct conn *c)
{
    struct worker *w = c->w;
    h1_parser_free(c->parser);
    buf_release(&c->in);
    buf_release(&c->out);
    free(c);
    worker_conn_closed(w);
}

static void conn_leave(struct conn *c)
{
    if (--c->busy == 0 && c->dead)
        conn_free(c);
}

/* Close now. The memory goes when the outermost handler leaves. */
static void conn_close(struct conn *c)
{
    if (c->dead)
        return;
    struct worker *w = c->w;
    c->dead = true; /* first: stream_end must not try to flush or continue */
    struct hcm_stats *hs = &c->l->stats;
    stats_cell_add(hs->cx_active, (uint64_t)-1);
    stats_cell_add(hs->cx_http1_active, (uint64_t)-1);
    stats_cell_add(hs->listener_cx_active, (uint64_t)-1);
    stats_cell_add(hs->server_connections, (uint64_t)-1);
    stats_cell_add(hs->cl_active, (uint64_t)-1);
    stats_cell_add(hs->cx_destroy, 1);
    stats_cell_add(hs->listener_cx_destroy, 1);
    stats_cell_add(c->peer_gone ? hs->cx_destroy_remote : hs->cx_destroy_local, 1);
    stats_hist_add(hs->cx_length, (proc_now_ns() - c->accepted_ns) / 1000000u);
    if (c->st.active)
        stream_end(c);
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    ev_timer_stop(w->loop, &c->idle_timer);
    ev_timer_stop(w->loop, &c->header_timer);
    ev_timer_stop(w->loop, &c->stream_timer);
    ev_timer_stop(w->loop, &c->resume_timer);
    ev_timer_stop(w->loop, &c->request_timer);
    close(c->fd);
    c->fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_conns--;
    if (c->busy == 0) {
        c->busy = 1;
        conn_leave(c);
    }
}

static void add_flag(struct stream *st, const char *flag)
{
    size_t n = strlen(st->flags);
    snprintf(st->flags + n, sizeof(st->flags) - n, "%s%s", n ? "," : "", flag);
}

/* --- reading control -------------------------------------------------------- */

/* Pipelined requests buffered behind the one being answered, as far as their
 * heads show (a body with an empty line in it counts as more: the safe way). */
static size_t pipelined_heads(const struct conn *c, size_t stop_at)
{
    if (buf_len(&c->in) == 0)
        return 0; /* and the buffer may have no storage at all */
    const char *p = buf_head(&c->in), *end = p + buf_len(&c->in);
    size_t n = 0;
    while (n < stop_at && (p = memmem(p, (size_t)(end - p), "\r\n\r\n", 4)) != NULL) {
        n++;
        p += 4;
    }
    return n;
}

static void conn_update_read(struct conn *c)
{
    if (c->dead || c->lingering)
        return;
    /* A complete request waiting for its response: read on only while little
     * is buffered. Reading notices a client that gives up (its FIN aborts the
     * upstream request, as nginx and Envoy do), and the bounds (bytes, and
     * WORKER_PIPELINE_MAX requests) keep a client pipelining without end from
     * growing our buffer or our queue. */
    bool waiting = h1_parser_is_stopped(c->parser) && c->st.active;
    bool want = !c->closing && !c->backpressure &&
                !(waiting && (buf_len(&c->in) >= WORKER_READ_SIZE ||
                              pipelined_heads(c, WORKER_PIPELINE_MAX) >= WORKER_PIPELINE_MAX));
    if (want && !ev_is_active(&c->rio))
        ev_io_start(c->w->loop, &c->rio);
    else if (!want && ev_is_active(&c->rio))
        ev_io_stop(c->w->loop, &c->rio);
}

static void conn_start_idle(struct conn *c)
{
    uint64_t ms = c->l->cfg ? c->l->cfg->hcm.idle_timeout_ms : 60000;
    if (ms == 0)
        return;
    timer_rearm(c->w->loop, &c->idle_timer, (double)ms / 1000.0);
}

/* --- access log --------------------------------------------------------------- */

static const char *find_req_header(const struct h1_head *h, const char *name, size_t *len)
{
    for (size_t i = 0; i < h->n_headers; i++)
        if (h1_header_is(&h->headers[i], name)) {
            *len = h->headers[i].value_len;
            return h->headers[i].value;
        }
    return NULL;
}

static const char *al_req_header(void *ctx, const char *name, size_t *len)
{
    struct stream *st = ctx;
    const struct h1_head *h = st->req;
    if (h == NULL)
        return NULL;
    if (strcmp(name, ":method") == 0)
        return *len = strlen(h->method), h->method;
    if (strcmp(name, ":path") == 0)
        return *len = h->path_len, h->path;
    if (strcmp(name, ":authority") == 0 || strcmp(name, "host") == 0)
        return h->authority ? (*len = h->authority_len, h->authority) : NULL;
    if (strcmp(name, "x-request-id") == 0 && st->request_id_generated)
        return *len = strlen(st->request_id), st->request_id;
    return find_req_header(h, name, len);
}

static const char *al_resp_header(void *ctx, const char *name, size_t *len)
{
    struct stream *st = ctx;
    static char tmp[24]; /* one process, one thread: a static buffer is enough */
    if (strcmp(name, "x-envoy-upstream-service-time") == 0 && st->service_time_ms >= 0) {
        *len = (size_t)snprintf(tmp, sizeof(tmp), "%ld", st->service_time_ms);
        return tmp;
    }
    return NULL;
}

static void write_access_log(struct conn *c)
{
    struct stream *st = &c->st;
    if (c->l->n_sinks == 0)
        return;
    /* A request whose head did not parse is logged too, with "-" for the unknown. */
    char protocol[16] = "-";
    if (st->req != NULL)
        snprintf(protocol, sizeof(protocol), "HTTP/%d.%d", st->req->version_major,
                 st->req->version_minor);
    struct access_log_info info = {
        .start_time_us = st->start_us,
        .req_header = al_req_header,
        .resp_header = al_resp_header,
        .ctx = st,
        .protocol = st->req != NULL ? protocol : NULL,
        .response_code = st->status,
        .response_flags = st->flags[0] ? st->flags : "-",
        .bytes_received = st->bytes_received,
        .bytes_sent = st->bytes_sent,
        .duration_ms = (proc_now_ns() - st->start_ns) / 1000000u,
        .upstream_host = st->upstream_host,
        .upstream_cluster = st->cluster ? st->cluster->cfg->name : NULL,
        .downstream_remote = c->peer,
    };
    for (size_t i = 0; i < c->l->n_sinks; i++) {
        struct al_sink *s = &c->l->sinks[i];
        access_log_format_render(s->fmt, &info, &s->out);
    }
}

/* The stream lets go of its upstream, whatever the reason. Nothing can drain
 * the request buffer any more, so back-pressure on the client ends here. */
static void stream_drop_upstream(struct conn *c, bool reusable)
{
    struct stream *st = &c->st;
    if (st->up != NULL) {
        upstream_release(st->up, reusable);
        st->up = NULL;
    }
    st->upstream_paused = false;
    if (c->backpressure) {
        c->backpressure = false;
        conn_update_read(c);
    }
}

/* --- responses ------------------------------------------------------------------- */

static bool client_keeps_alive(const struct conn *c)
{
    return !c->close_after && !c->w->draining && c->st.req != NULL && c->st.req->keep_alive;
}

/* Connection management headers for a response head about to be written. */
static void put_connection_header(struct conn *c)
{
    if (!client_keeps_alive(c)) {
        c->close_after = true;
        buf_append(&c->out, "connection: close\r\n", 19);
    } else if (c->st.req->version_minor == 0) {
        buf_append(&c->out, "connection: keep-alive\r\n", 24);
    }
}

/* A response generated by legate itself (direct_response, errors). */
static void send_local_reply(struct conn *c, int status, const char *body, size_t body_len,
                             const char *content_type, const char *flag)
{
    struct stream *st = &c->st;
    if (flag)
        add_flag(st, flag);
    st->status = status;
    st->response_started = true;
    /* The rest of a request body we will not use is not worth reading. */
    if (!st->request_complete && st->req_body != H1_BODY_NONE)
        c->close_after = true;
    buf_printf(&c->out, "HTTP/1.1 %d %s\r\ncontent-length: %zu\r\n", status,
               h1_reason_phrase(status), body_len);
    if (body_len > 0)
        buf_printf(&c->out, "content-type: %s\r\n", content_type ? content_type : "text/plain");
    buf_printf(&c->out, "date: %s\r\nserver: legate\r\n", worker_date(c->w));
    if (st->req == NULL) {
        c->close_after = true;
        buf_append(&c->out, "connection: close\r\n", 19);
    } else {
        put_connection_header(c);
    }
    buf_append(&c->out, "\r\n", 2);
    if (!st->is_head && body_len > 0) {
        buf_append(&c->out, body, body_len);
        st->bytes_sent += body_len;
    }
    stream_response_done(c);
}

static void send_local_text(struct conn *c, int status, const char *text, const char *flag)
{
    send_local_reply(c, status, text, text ? strlen(text) : 0, "text/plain", flag);
}

/* --- stream end ---------------------------------------------------------------- */

/* stream_idle_timeout, or a minute where it is disabled (admin, or 0s): the
 * bound on a closing connection that makes no progress. */
static double stream_idle_seconds(const struct conn *c)
{
    uint64_t ms = c->l->cfg ? c->l->cfg->hcm.stream_idle_timeout_ms : 0;
    return ms ? (double)ms / 1000.0 : 60.0;
}

static void stream_end(struct conn *c)
{
    struct stream *st = &c->st;
    if (!st->active)
        return;
    ev_timer_stop(c->w->loop, &st->route_timer);
    ev_timer_stop(c->w->loop, &c->stream_timer);
    ev_timer_stop(c->w->loop, &c->request_timer);
    stream_drop_upstream(c, false);
    if (st->counted) {
        st->cluster->n_active_rq--;
        st->counted = false;
        stats_cell_add(st->cluster->stats.rq_active, (uint64_t)-1);
        struct host_stats *h = &st->host->hstats;
        stats_cell_add(h->rq_active, (uint64_t)-1);
        stats_cell_add(st->status >= 100 && st->status < 500 ? h->rq_success : h->rq_error, 1);
    }
    struct hcm_stats *hs = &c->l->stats;
    stats_cell_add(hs->rq_active, (uint64_t)-1);
    if (st->status >= 100 && st->status < 600)
        stats_cell_add(hs->rq_xx[st->status / 100 - 1], 1);
    stats_hist_add(hs->rq_time, (proc_now_ns() - st->start_ns) / 1000000u);
    write_access_log(c);
    /* The client itself asked to close, and its request was read whole. */
    bool client_closes = st->req != NULL && !st->req->keep_alive && st->request_complete;
    st->active = false;
    st->req = NULL;
    if (st->host != NULL) {
        st->host->n_streams--;
        worker_host_maybe_free(st->host); /* a retired host's last stream */
        st->host = NULL;
    }
    if (c->dead)
        return;
    /* An idle keep-alive connection holds no buffers: nothing is pending
     * either way, and most connections wait far longer than they work. */
    if (buf_len(&c->in) == 0 && !c->close_after) {
        h1_parser_resume(c->parser);
        h1_parser_trim(c->parser);
        buf_release(&c->in);
    }
    if (buf_len(&c->out) == 0)
        buf_release(&c->out);
    if (c->close_after) {
        c->closing = true;
        /* Nothing more of the client's can arrive to turn our close into a
         * reset (RFC 9112: no request after "close"), so close at once, as
         * nginx and HAProxy do: no shutdown, no wait for its FIN. */
        c->clean_close = client_closes && buf_len(&c->in) == 0;
        conn_update_read(c);
        /* A client that stops reading must not hold the connection for ever:
         * the stream idle timer now watches the last bytes' progress. */
        timer_rearm(c->w->loop, &c->stream_timer, stream_idle_seconds(c));
        conn_flush(c); /* closes once the output is written */
        return;
    }
    conn_start_idle(c);
    conn_update_read(c);
    /* A pipelined request may already be buffered. Parse it on the next turn
     * of the loop, once whoever ended this stream (an upstream callback, say)
     * has finished: its connection is then back in the pool for the next one. */
    if (buf_len(&c->in) > 0)
        ev_timer_start(c->w->loop, &c->resume_timer);
}

/* The whole response is queued for the client. */
static void stream_response_done(struct conn *c)
{
    struct stream *st = &c->st;
    st->response_complete = true;
    if (!st->request_complete && st->req_body != H1_BODY_NONE) {
        /* The rest of the request body is of no use, and could be endless: do
         * not wait for it; close once the response is out. */
        c->close_after = true;
        st->request_complete = true;
    }
    conn_flush(c);
    if (!c->dead && st->active && st->request_complete)
        stream_end(c);
}

/* The downstream connection must go now (a reset mid-response, a dead client). */
static void conn_abort(struct conn *c, const char *flag)
{
    if (flag && c->st.active)
        add_flag(&c->st, flag);
    conn_close(c);
}

/* The client went away: its EOF or reset on read, or a failed write. An
 * unfinished stream is a downstream reset. */
static void conn_peer_gone(struct conn *c)
{
    c->peer_gone = true;
    if (c->st.active)
        stats_cell_add(c->l->stats.rq_rx_reset, 1);
    conn_abort(c, "DC");
}

/* --- upstream callbacks ----------------------------------------------------------- */

static void up_on_head(void *owner, const struct h1_head *resp)
{
    struct conn *c = owner;
    struct stream *st = &c->st;
    conn_enter(c);
    c->last_activity = ev_now(c->w->loop);
    st->service_time_ms = (long)((proc_now_ns() - st->upstream_start_ns) / 1000000u);
    st->status = resp->status;
    worker_host_response(st->cluster, st->host, resp->status);
    if (resp->status >= 100 && resp->status < 600) {
        stats_cell_add(st->cluster->stats.rq_xx[resp->status / 100 - 1], 1);
        stats_cell_add(
            worker_rq_code_cell(c->w, &st->cluster->stats, st->cluster->cfg->name, resp->status),
            1);
    }
    st->response_started = true;
    bool no_body = st->is_head || resp->status == 204 || resp->status == 304 ||
                   (resp->status >= 100 && resp->status < 200);
    if (no_body)
        st->framing = FRAME_NONE;
    else if (resp->body == H1_BODY_LENGTH)
        st->framing = FRAME_LENGTH;
    else if (resp->body == H1_BODY_NONE)
        st->framing = FRAME_LENGTH; /* an empty body: say so with content-length: 0 */
    else if (st->req->version_minor >= 1)
        st->framing = FRAME_CHUNKED;
    else
        st->framing = FRAME_CLOSE;
    if (st->framing == FRAME_CLOSE)
        c->close_after = true;

    const char *reason =
        resp->reason && resp->reason[0] ? resp->reason : h1_reason_phrase(resp->status);
    buf_append(&c->out, "HTTP/1.1 ", 9);
    buf_append_u64(&c->out, (uint64_t)resp->status);
    buf_append(&c->out, " ", 1);
    buf_append(&c->out, reason, strlen(reason));
    buf_append(&c->out, "\r\n", 2);
    for (size_t i = 0; i < resp->n_headers; i++) {
        const struct h1_header *h = &resp->headers[i];
        /* HEAD and 304 responses describe the body they did not send: keep it. */
        if (no_body && h1_header_is(h, "content-length")) {
            if (resp->status != 204)
                buf_append_field(&c->out, h->name, h->name_len, h->value, h->value_len);
            continue;
        }
        if (h1_header_is_hop_by_hop(resp, h))
            continue;
        buf_append_field(&c->out, h->name, h->name_len, h->value, h->value_len);
    }
    if (st->framing == FRAME_LENGTH) {
        buf_append(&c->out, "content-length: ", 16);
        buf_append_u64(&c->out, resp->body == H1_BODY_LENGTH ? resp->content_length : 0);
        buf_append(&c->out, "\r\n", 2);
    } else if (st->framing == FRAME_CHUNKED)
        buf_append(&c->out, "transfer-encoding: chunked\r\n", 28);
    buf_append(&c->out, "x-envoy-upstream-service-time: ", 31);
    buf_append_u64(&c->out, (uint64_t)(st->service_time_ms > 0 ? st->service_time_ms : 0));
    buf_append(&c->out, "\r\n", 2);
    put_connection_header(c);
    buf_append(&c->out, "\r\n", 2);
    conn_leave(c); /* written at on_read_end (or on completion), with what follows */
}

static void up_on_body(void *owner, const char *data, size_t len)
{
    struct conn *c = owner;
    struct stream *st = &c->st;
    if (len == 0 || st->framing == FRAME_NONE)
        return;
    conn_enter(c);
    c->last_activity = ev_now(c->w->loop);
    if (st->framing == FRAME_CHUNKED) {
        buf_printf(&c->out, "%zx\r\n", len);
        buf_append(&c->out, data, len);
        buf_append(&c->out, "\r\n", 2);
    } else if (len >= WORKER_DIRECT_WRITE_MIN && !ev_is_active(&c->wio)) {
        /* A large piece of body, and the socket was taking what we wrote:
         * send it from the upstream's buffer, with whatever was buffered
         * before it (the head), in one call; only what the socket does not
         * take is copied. */
        size_t done = 0;
        ssize_t n = buf_write_with(&c->out, c->fd, data, len, &done);
        if (n < 0) {
            conn_peer_gone(c);
            conn_leave(c);
            return;
        }
        if (n > 0)
            c->last_activity = ev_now(c->w->loop);
        buf_append(&c->out, data + done, len - done);
        if (buf_len(&c->out) > 0 && !ev_is_active(&c->wio))
            ev_io_start(c->w->loop, &c->wio);
    } else {
        buf_append(&c->out, data, len);
    }
    st->bytes_sent += len;
    if (buf_len(&c->out) > WORKER_HIGH_WATERMARK)
        conn_flush(c); /* a big read: write what we can before pausing */
    if (!c->dead && st->up != NULL && buf_len(&c->out) > WORKER_HIGH_WATERMARK &&
        !st->upstream_paused) {
        st->upstream_paused = true;
        upstream_pause(st->up, true);
    }
    conn_leave(c);
}

static void up_on_complete(void *owner)
{
    struct conn *c = owner;
    struct stream *st = &c->st;
    conn_enter(c);
    if (st->framing == FRAME_CHUNKED)
        buf_append(&c->out, "0\r\n\r\n", 5);
    ev_timer_stop(c->w->loop, &st->route_timer);
    stats_hist_add(st->cluster->stats.rq_time, (proc_now_ns() - st->upstream_start_ns) / 1000000u);
    /* A connection whose request was not fully sent cannot carry another. */
    stream_drop_upstream(c, st->request_complete);
    stream_response_done(c);
    conn_leave(c);
}

static void up_on_failure(void *owner, enum upstream_failure why)
{
    struct conn *c = owner;
    struct stream *st = &c->st;
    conn_enter(c);
    st->up = NULL; /* already gone */
    stream_drop_upstream(c, false);
    if (!st->response_started)
        worker_host_local_failure(st->cluster, st->host);
    if (st->response_started) {
        /* Mid-response: close without a terminating chunk or the missing bytes,
         * so the client can tell the body is incomplete. */
        conn_abort(c, "UC");
    } else {
        switch (why) {
        case UPSTREAM_CONNECT_FAILED:
            send_local_text(c, 503,
                            "upstream connect error or disconnect/reset before headers. reset "
                            "reason: connection failure",
                            "UF");
            break;
        case UPSTREAM_CONNECT_TIMEOUT:
            send_local_text(c, 503,
                            "upstream connect error or disconnect/reset before headers. reset "
                            "reason: connection timeout",
                            "UF");
            break;
        case UPSTREAM_RESET:
            send_local_text(c, 503,
                            "upstream connect error or disconnect/reset before headers. reset "
                            "reason: connection termination",
                            "UC");
            break;
        case UPSTREAM_PROTOCOL_ERROR:
            send_local_text(c, 502, "upstream sent an invalid HTTP response", "UPE");
            break;
        }
    }
    conn_leave(c);
}

static void up_on_drained(void *owner)
{
    struct conn *c = owner;
    conn_enter(c);
    if (c->backpressure) {
        c->backpressure = false;
        conn_update_read(c);
        /* Bytes may be waiting in our own input buffer. */
        conn_process(c);
    }
    conn_leave(c);
}

static void up_on_read_end(void *owner)
{
    struct conn *c = owner;
    conn_enter(c);
    conn_flush(c);
    conn_leave(c);
}

static const struct upstream_callbacks up_callbacks = {
    .on_read_end = up_on_read_end,
    .on_head = up_on_head,
    .on_body = up_on_body,
    .on_complete = up_on_complete,
    .on_failure = up_on_failure,
    .on_drained = up_on_drained,
};

static void on_route_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = t->data;
    struct stream *st = &c->st;
    conn_enter(c);
    stats_cell_add(st->cluster->stats.rq_timeout, 1);
    if (st->host != NULL)
        stats_cell_add(st->host->hstats.rq_timeout, 1);
    if (!st->response_started)
        worker_host_local_failure(st->cluster, st->host);
    stream_drop_upstream(c, false);
    if (st->response_started)
        conn_abort(c, "UT");
    else
        send_local_text(c, 504, "upstream request timeout", "UT");
    conn_leave(c);
}

/* --- request forwarding ---------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    /* xorshift64*: request ids need uniqueness, not secrecy. */
    if (rng_state == 0 && getrandom(&rng_state, sizeof(rng_state), 0) != sizeof(rng_state))
        rng_state = proc_now_ns() ^ (uint64_t)getpid();
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void make_uuid(char out[37])
{
    uint64_t a = rng_next(), b = rng_next();
    a = (a & ~0xf000ull) | 0x4000ull;                 /* version 4 */
    b = (b & ~(0xc000ull << 48)) | (0x8000ull << 48); /* RFC 4122 variant */
    snprintf(out, 37, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(a >> 32),
             (unsigned)((a >> 16) & 0xffff), (unsigned)(a & 0xffff), (unsigned)(b >> 48),
             (unsigned long long)(b & 0xffffffffffffull));
}

static void write_upstream_head(struct conn *c, struct buf *out, const char *path, size_t path_len)
{
    struct stream *st = &c->st;
    const struct h1_head *h = st->req;
    buf_append(out, h->method, strlen(h->method));
    buf_append(out, " ", 1);
    buf_append(out, path, path_len);
    buf_append(out, " HTTP/1.1\r\n", 11);
    if (h->authority != NULL)
        buf_append_field(out, "host", 4, h->authority, h->authority_len);
    else
        buf_append_field(out, "host", 4, st->upstream_host, strlen(st->upstream_host));
    bool have_xfp = false, have_rid = false;
    enum { XFF_MERGED_MAX = 1024 }; /* the client's values, merged; ours always fits after */
    char xff[XFF_MERGED_MAX + sizeof(c->peer_ip)];
    size_t xff_len = 0;
    for (size_t i = 0; i < h->n_headers; i++) {
        const struct h1_header *hd = &h->headers[i];
        if (h1_header_is_hop_by_hop(h, hd) || h1_header_is(hd, "host") ||
            h1_header_is(hd, "expect"))
            continue;
        if (h1_header_is(hd, "x-forwarded-for")) {
            /* Merge every x-forwarded-for into one, ours appended last. */
            /* A value that does not fit is dropped. */
            if (hd->value_len + 2 < XFF_MERGED_MAX - xff_len) {
                memcpy(xff + xff_len, hd->value, hd->value_len);
                memcpy(xff + xff_len + hd->value_len, ", ", 2);
                xff_len += hd->value_len + 2;
            }
            continue;
        }
        if (h1_header_is(hd, "x-forwarded-proto"))
            have_xfp = true;
        if (h1_header_is(hd, "x-request-id"))
            have_rid = true;
        buf_append_field(out, hd->name, hd->name_len, hd->value, hd->value_len);
    }
    /* Our address after what the client sent: "a, b, ours". */
    size_t ip_len = strlen(c->peer_ip);
    memcpy(xff + xff_len, c->peer_ip, ip_len);
    buf_append_field(out, "x-forwarded-for", 15, xff, xff_len + ip_len);
    if (!have_xfp)
        buf_append(out, "x-forwarded-proto: http\r\n", 25);
    if (!have_rid && c->l->cfg->hcm.generate_request_id) {
        make_uuid(st->request_id);
        st->request_id_generated = true;
        buf_printf(out, "x-request-id: %s\r\n", st->request_id);
    }
    if (h->body == H1_BODY_LENGTH) {
        buf_append(out, "content-length: ", 16);
        buf_append_u64(out, h->content_length);
        buf_append(out, "\r\n", 2);
    } else if (h->body == H1_BODY_CHUNKED)
        buf_append(out, "transfer-encoding: chunked\r\n", 28);
    buf_append(out, "\r\n", 2);
}

/* --- the route's hash_policy ------------------------------------------------------- */

static bool name_is(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && strncasecmp(a, b, alen) == 0;
}

/* The value of cookie `name` in the request's Cookie headers. */
static bool find_cookie(const struct h1_head *h, const char *name, size_t name_len,
                        const char **val, size_t *len)
{
    for (size_t i = 0; i < h->n_headers; i++) {
        const struct h1_header *f = &h->headers[i];
        if (!name_is(f->name, f->name_len, "cookie", 6))
            continue;
        const char *p = f->value, *end = f->value + f->value_len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *pair = p;
            while (p < end && *p != ';')
                p++;
            const char *eq = memchr(pair, '=', (size_t)(p - pair));
            if (eq != NULL && (size_t)(eq - pair) == name_len &&
                memcmp(pair, name, name_len) == 0) {
                *val = eq + 1;
                *len = (size_t)(p - eq - 1);
                return true;
            }
        }
    }
    return false;
}

/* The value of query parameter `name` (the first one), as sent (not decoded). */
static bool find_query_parameter(const struct h1_head *h, const char *name, size_t name_len,
                                 const char **val, size_t *len)
{
    const char *q = memchr(h->path, '?', h->path_len);
    if (q == NULL)
        return false;
    const char *p = q + 1, *end = h->path + h->path_len;
    while (p < end) {
        const char *item = p;
        while (p < end && *p != '&')
            p++;
        const char *eq = memchr(item, '=', (size_t)(p - item));
        size_t klen = eq != NULL ? (size_t)(eq - item) : (size_t)(p - item);
        if (klen == name_len && memcmp(item, name, name_len) == 0) {
            *val = eq != NULL ? eq + 1 : p;
            *len = eq != NULL ? (size_t)(p - eq - 1) : 0;
            return true;
        }
        if (p < end)
            p++;
    }
    return false;
}

/* Envoy's way: each policy that finds its value mixes its hash in (the
 * running hash rotated left by one, then xor); a terminal one that found a
 * value ends the list. False when no policy found anything. */
static bool request_hash(const struct conn *c, const struct cfg_route *r, uint64_t *out)
{
    const struct h1_head *h = c->st.req;
    bool any = false;
    uint64_t hash = 0;
    for (size_t i = 0; i < r->n_hash_policy; i++) {
        const struct cfg_hash_policy *hp = &r->hash_policy[i];
        const char *val = NULL;
        size_t len = 0;
        bool found = false;
        switch (hp->kind) {
        case HASH_HEADER:
            for (size_t k = 0; k < h->n_headers && !found; k++)
                if (name_is(h->headers[k].name, h->headers[k].name_len, hp->name, hp->name_len)) {
                    val = h->headers[k].value;
                    len = h->headers[k].value_len;
                    found = true;
                }
            break;
        case HASH_COOKIE:
            found = find_cookie(h, hp->name, hp->name_len, &val, &len);
            break;
        case HASH_QUERY_PARAMETER:
            found = find_query_parameter(h, hp->name, hp->name_len, &val, &len);
            break;
        case HASH_SOURCE_IP:
            val = c->peer_ip;
            len = strlen(c->peer_ip);
            found = len > 0;
            break;
        }
        if (!found)
            continue;
        uint64_t one = lb_hash(val, len, 0);
        hash = any ? ((hash << 1) | (hash >> 63)) ^ one : one;
        any = true;
        if (hp->terminal)
            break;
    }
    *out = hash;
    return any;
}

static void forward_to_cluster(struct conn *c)
{
    struct stream *st = &c->st;
    const struct cfg_route *r = st->route;
    if (r->cluster_index >= c->w->n_clusters) { /* the loader resolves names: never, today */
        stats_cell_add(c->l->stats.no_cluster, 1);
        send_local_text(c, 503, "no cluster", "NC");
        return;
    }
    uint64_t hash;
    bool hashed = r->n_hash_policy > 0 && request_hash(c, r, &hash);
    struct host *host = worker_pick_host(c->w, r->cluster_index, hashed ? &hash : NULL);
    struct cluster_rt *cl = &c->w->clusters[r->cluster_index];
    st->cluster = cl;
    if (host == NULL) {
        send_local_text(c, 503, "no healthy upstream", "UH");
        return;
    }
    /* Circuit breakers, enforced per worker (see docs/design.md): no request
     * queues for a connection, so max_pending_requests is not reached here. */
    const struct cfg_circuit_breakers *cb = &cl->cfg->cb;
    if (cl->n_active_rq >= cb->max_requests ||
        (host->pool.n_idle == 0 && worker_cluster_connections(cl) >= cb->max_connections)) {
        send_local_text(c, 503,
                        "upstream connect error or disconnect/reset before headers. reset "
                        "reason: overflow",
                        "UO");
        return;
    }
    st->upstream_host = host->name;
    char path[8192];
    long plen = router_rewrite_path(r, st->req->path, st->req->path_len, path, sizeof(path));
    if (plen < 0) {
        send_local_text(c, 414, "the rewritten path is too long", "DPE");
        return;
    }
    st->up = upstream_open(c->w, host, &up_callbacks, c);
    if (st->up == NULL) {
        send_local_text(c, 503, "upstream connect error: out of resources", "UO");
        return;
    }
    cl->n_active_rq++;
    st->counted = true;
    st->host = host;
    host->n_streams++;
    stats_cell_add(cl->stats.rq_total, 1);
    stats_cell_add(cl->stats.rq_active, 1);
    stats_cell_add(host->hstats.rq_total, 1);
    stats_cell_add(host->hstats.rq_active, 1);
    st->upstream_start_ns = proc_now_ns();
    upstream_expect_head_response(st->up, st->is_head);
    write_upstream_head(c, upstream_out(st->up), path, (size_t)plen);
    upstream_flush(st->up);
    /* Legate answers Expect: 100-continue itself (RFC 9110 §10.1.1) and sends
     * the upstream the request without Expect, body following at once. */
    if (st->up != NULL && !st->response_started && st->req->expect_continue &&
        st->req->body != H1_BODY_NONE)
        buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    conn_flush(c);
}

static void handle_admin(struct conn *c)
{
    struct stream *st = &c->st;
    int status = 404;
    struct buf body = {0};
    const char *ctype = "text/plain";
    admin_handle(c->w, st->req->method, st->req->path, &status, &body, &ctype);
    send_local_reply(c, status, buf_head(&body), buf_len(&body), ctype, NULL);
    buf_release(&body);
}

/* --- codec callbacks (downstream request) ------------------------------------------ */

/* A new stream on the connection; `head` is NULL for a request whose head never
 * parsed (it exists to be answered and logged). */
static void stream_begin(struct conn *c, const struct h1_head *head)
{
    struct stream *st = &c->st;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    memset(st, 0, offsetof(struct stream, route_timer));
    st->active = true;
    st->req = head;
    st->start_us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    st->start_ns = proc_now_ns();
    st->service_time_ms = -1;
    st->is_head = head != NULL && head->method_id == HTTP_HEAD;
    st->req_body = head != NULL ? head->body : H1_BODY_NONE;
    stats_cell_add(c->l->stats.rq_total, 1);
    stats_cell_add(c->l->stats.rq_active, 1);
}

static int req_on_head(void *ctx, const struct h1_head *head)
{
    struct conn *c = ctx;
    struct stream *st = &c->st;
    ev_timer_stop(c->w->loop, &c->idle_timer);
    ev_timer_stop(c->w->loop, &c->header_timer);
    c->last_activity = ev_now(c->w->loop);
    uint64_t idle_ms = c->l->cfg ? c->l->cfg->hcm.stream_idle_timeout_ms : 0;
    if (idle_ms > 0) {
        timer_rearm(c->w->loop, &c->stream_timer, (double)idle_ms / 1000.0);
    }
    stream_begin(c, head);
    uint64_t rq_ms = c->l->cfg ? c->l->cfg->hcm.request_timeout_ms : 0;
    if (rq_ms > 0)
        timer_rearm(c->w->loop, &c->request_timer, (double)rq_ms / 1000.0);
    if (c->w->draining)
        c->close_after = true;

    if (c->l->cfg == NULL) {
        /* Admin requests are answered once their (small) body is read. */
        return 0;
    }
    const struct cfg_hcm *hcm = &c->l->cfg->hcm;
    const char *host = head->authority ? head->authority : "";
    size_t host_len = head->authority ? head->authority_len : 0;
    const struct cfg_vhost *vh = router_match_vhost(&hcm->routes, host, host_len);
    st->route = vh ? router_match_route(vh, head->path, head->path_len) : NULL;
    if (st->route == NULL) {
        stats_cell_add(c->l->stats.no_route, 1);
        send_local_text(c, 404, NULL, "NR");
        return 0;
    }
    if (st->route->action == ROUTE_ACTION_DIRECT) {
        stats_cell_add(c->l->stats.rq_direct_response, 1);
        send_local_reply(c, st->route->direct_status, st->route->direct_body,
                         st->route->direct_body_len, "text/plain", NULL);
        return 0;
    }
    forward_to_cluster(c);
    return 0;
}

static int req_on_body(void *ctx, const char *data, size_t len)
{
    struct conn *c = ctx;
    struct stream *st = &c->st;
    st->bytes_received += len;
    if (st->up == NULL || len == 0)
        return 0; /* answered locally, or the upstream is gone: discard */
    struct buf *out = upstream_out(st->up);
    if (st->req_body == H1_BODY_CHUNKED) {
        buf_printf(out, "%zx\r\n", len);
        buf_append(out, data, len);
        buf_append(out, "\r\n", 2);
    } else {
        buf_append(out, data, len);
    }
    upstream_flush(st->up);
    if (st->up != NULL && upstream_over_watermark(st->up))
        c->backpressure = true;
    return 0;
}

static int req_on_complete(void *ctx)
{
    struct conn *c = ctx;
    struct stream *st = &c->st;
    st->request_complete = true;
    if (c->l->cfg == NULL && !st->response_started) {
        handle_admin(c);
        return 0;
    }
    if (st->up != NULL) {
        if (st->req_body == H1_BODY_CHUNKED) {
            buf_append(upstream_out(st->up), "0\r\n\r\n", 5);
            upstream_flush(st->up);
        }
        /* Envoy's route timeout runs from the end of the request to the end of
         * the response. */
        if (st->up != NULL && st->route->timeout_ms > 0) {
            timer_rearm(c->w->loop, &st->route_timer, (double)st->route->timeout_ms / 1000.0);
        }
    }
    if (st->response_complete)
        stream_end(c);
    return 0;
}

static const struct h1_callbacks req_callbacks = {req_on_head, req_on_body, req_on_complete};

/* --- I/O ------------------------------------------------------------------------------ */

static void conn_protocol_error(struct conn *c)
{
    int status = h1_parser_error_status(c->parser);
    const char *reason = h1_parser_error_reason(c->parser);
    log_debug("%s: bad request: %s", c->peer, reason ? reason : "?");
    if (c->st.response_started || status == 0) {
        conn_abort(c, "DPE");
        return;
    }
    if (!c->st.active) {
        /* The head did not parse: a stream exists only to be logged. */
        stream_begin(c, NULL);
    }
    stream_drop_upstream(c, false);
    c->close_after = true;
    c->st.request_complete = true;
    char body[160];
    snprintf(body, sizeof(body), "%s: %s\n", h1_reason_phrase(status), reason ? reason : "");
    send_local_text(c, status, body, "DPE");
}

/* Once drained, the read buffer goes back to the cache, also while a stream
 * whose request is whole waits for its response: the parser keeps its own
 * copy of the head, and 50 busy connections each holding 32 KiB here made
 * the cache miss. An upload in progress keeps it (releasing it between reads
 * churned the allocator). Idle connections hold no buffers. */
static void release_drained_input(struct conn *c)
{
    if (buf_len(&c->in) == 0 && (!c->st.active || c->st.request_complete))
        buf_release(&c->in);
}

static void conn_process(struct conn *c)
{
    if (c->processing) {
        c->process_again = true;
        return;
    }
    c->processing = true;
    conn_enter(c);
    do {
        c->process_again = false;
        while (!c->dead && !c->closing && !c->backpressure) {
            if (h1_parser_is_stopped(c->parser)) {
                if (c->st.active)
                    break; /* the response to the last request is not done */
                h1_parser_resume(c->parser);
            }
            if (buf_len(&c->in) == 0)
                break;
            ssize_t n = h1_parser_feed(c->parser, buf_head(&c->in), buf_len(&c->in));
            if (c->dead)
                break;
            if (n < 0) {
                conn_protocol_error(c);
                break;
            }
            buf_consume(&c->in, (size_t)n);
            if (n == 0 && !h1_parser_is_stopped(c->parser))
                break;
        }
    } while (c->process_again && !c->dead);
    c->processing = false;
    if (!c->dead) {
        release_drained_input(c);
        conn_update_read(c);
    }
    conn_leave(c);
}

static void on_conn_readable(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = io->data;
    conn_enter(c);
    ssize_t n = buf_read_from(&c->in, c->fd, WORKER_READ_SIZE);
    if (n < 0 && errno == EAGAIN) {
        release_drained_input(c); /* reading reserved one even for nothing */
        conn_leave(c);
        return;
    }
    if (n > 0) {
        /* Bytes pipelined behind a request that awaits its response are no
         * progress on that stream: they must not hold off stream_idle_timeout. */
        if (!(h1_parser_is_stopped(c->parser) && c->st.active))
            c->last_activity = ev_now(c->w->loop);
        uint64_t hdr_ms = c->l->cfg ? c->l->cfg->hcm.request_headers_timeout_ms : 0;
        if (!c->st.active && hdr_ms > 0 && !ev_is_active(&c->header_timer)) {
            timer_rearm(c->w->loop, &c->header_timer, (double)hdr_ms / 1000.0);
        }
    }
    if (n <= 0) {
        /* The client went away (or half-closed, which HTTP/1.1 proxies treat
         * the same way). */
        conn_peer_gone(c);
        conn_leave(c);
        return;
    }
    conn_process(c);
    conn_leave(c);
}

#define LINGER_SECONDS 2.0
#define LINGER_MAX_BYTES (1024 * 1024)

static void on_linger_readable(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = io->data;
    char sink[16384];
    for (;;) {
        ssize_t n = read(c->fd, sink, sizeof(sink));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        c->linger_bytes += n > 0 ? (size_t)n : 0;
        if (n <= 0 || c->linger_bytes > LINGER_MAX_BYTES)
            break;
    }
    conn_enter(c);
    conn_close(c);
    conn_leave(c);
}

/* All output is written: send our FIN, but keep reading (and dropping) what
 * the client still sends for a moment. Closing a socket with unread input
 * makes the kernel send a reset, which can destroy the response still on its
 * way to the client (the lingering close of RFC 9112 §9.6). */
static void conn_linger(struct conn *c)
{
    c->lingering = true;
    shutdown(c->fd, SHUT_WR);
    ev_io_stop(c->w->loop, &c->rio);
    ev_timer_stop(c->w->loop, &c->stream_timer);
    ev_set_cb(&c->rio, on_linger_readable);
    ev_io_start(c->w->loop, &c->rio);
    /* The idle timer closes a connection without a stream: reuse it as the bound. */
    timer_rearm(c->w->loop, &c->idle_timer, LINGER_SECONDS);
}

static void conn_flush(struct conn *c)
{
    if (c->dead)
        return;
    if (buf_len(&c->out) > 0) {
        ssize_t n = buf_write_to(&c->out, c->fd);
        if (n < 0) {
            conn_peer_gone(c);
            return;
        }
        if (n > 0)
            c->last_activity = ev_now(c->w->loop);
    }
    if (buf_len(&c->out) > 0) {
        if (!ev_is_active(&c->wio))
            ev_io_start(c->w->loop, &c->wio);
    } else {
        if (ev_is_active(&c->wio))
            ev_io_stop(c->w->loop, &c->wio);
        if (!c->st.active)
            buf_release(&c->out);
    }
    struct stream *st = &c->st;
    if (st->upstream_paused && st->up != NULL && buf_len(&c->out) < WORKER_LOW_WATERMARK) {
        st->upstream_paused = false;
        upstream_pause(st->up, false);
    }
    if (c->closing && !c->lingering && buf_len(&c->out) == 0) {
        if (c->clean_close)
            conn_close(c);
        else
            conn_linger(c);
    }
}

static void on_conn_writable(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = io->data;
    conn_enter(c);
    conn_flush(c);
    conn_leave(c);
}

static void on_idle_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = t->data;
    conn_enter(c);
    if (!c->st.active)
        conn_close(c);
    conn_leave(c);
}

static void on_header_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = t->data;
    conn_enter(c);
    if (!c->st.active) {
        /* A head trickling in too slowly (slowloris): refuse and close. */
        stats_cell_add(c->l->stats.rq_header_timeout, 1);
        stream_begin(c, NULL);
        c->st.request_complete = true;
        c->close_after = true;
        send_local_text(c, 408, "request headers timeout\n", "DPE");
    }
    conn_leave(c);
}

static void on_stream_idle(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct conn *c = t->data;
    struct stream *st = &c->st;
    if (!st->active && !c->closing)
        return;
    double timeout = stream_idle_seconds(c);
    double idle = ev_now(loop) - c->last_activity;
    if (idle < timeout) {
        /* Activity since the timer was set: sleep for the rest only. */
        timer_rearm(loop, t, timeout - idle);
        return;
    }
    conn_enter(c);
    if (st->active)
        stats_cell_add(c->l->stats.rq_idle_timeout, 1);
    if (!st->active)
        conn_close(c); /* closing, and the client stopped reading */
    else if (st->response_started) {
        stream_drop_upstream(c, false);
        conn_abort(c, "SI");
    } else {
        stream_drop_upstream(c, false);
        c->close_after = true;
        send_local_text(c, 408, "stream timeout", "SI");
    }
    conn_leave(c);
}

/* request_timeout: the whole request must arrive in time, whatever the pace
 * of its bytes (a slow body trickle that stream_idle_timeout never catches). */
static void on_request_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = t->data;
    struct stream *st = &c->st;
    if (!st->active || st->request_complete)
        return;
    conn_enter(c);
    stats_cell_add(c->l->stats.rq_timeout, 1);
    stream_drop_upstream(c, false);
    if (st->response_started)
        conn_abort(c, NULL);
    else {
        c->close_after = true;
        send_local_text(c, 408, "request timeout", NULL);
    }
    conn_leave(c);
}

static void on_resume(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    conn_process(t->data);
}

/* Overload (Envoy's global_downstream_max_connections resource monitor and
 * connection_limit filter): over a limit, a new connection is closed at once,
 * before anything is allocated for it; open ones go on. The counts are the
 * gauges every worker keeps, summed over the segment's slots. The admin
 * listener is exempt, so that an operator can still look. */
static bool over_connection_limit(struct worker *w, struct listener_rt *l)
{
    const struct cfg_listener *cfg = l->cfg;
    if (cfg == NULL)
        return false;
    uint32_t global = w->ctx->cfg->max_active_downstream_connections;
    if (global > 0 && stats_gauge_value_all(w->ctx->stats, &w->global_cx) >= (int64_t)global) {
        stats_cell_add(l->stats.global_cx_overflow, 1);
        return true;
    }
    if (cfg->conn_limit.enabled &&
        stats_gauge_value_all(w->ctx->stats, &l->stats.listener_cx_active_all) >=
            (int64_t)cfg->conn_limit.max_connections) {
        stats_cell_add(l->stats.cl_limited, 1);
        stats_cell_add(l->stats.cx_overflow, 1);
        return true;
    }
    return false;
}

void http_server_accept(struct worker *w, struct listener_rt *l, int fd,
                        const struct sockaddr_storage *peer)
{
    if (over_connection_limit(w, l)) {
        close(fd);
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (c != NULL)
        c->parser = h1_parser_new(H1_REQUEST, &req_callbacks, c);
    if (c == NULL || c->parser == NULL) {
        free(c);
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->w = w;
    c->l = l;
    c->fd = fd;
    hosts_addr_format(peer, c->peer_ip, sizeof(c->peer_ip), c->peer, sizeof(c->peer));
    ev_io_init(&c->rio, on_conn_readable, fd, EV_READ);
    ev_io_init(&c->wio, on_conn_writable, fd, EV_WRITE);
    ev_timer_init(&c->idle_timer, on_idle_timeout, 0., 0.);
    ev_timer_init(&c->st.route_timer, on_route_timeout, 0., 0.);
    ev_timer_init(&c->header_timer, on_header_timeout, 0., 0.);
    ev_timer_init(&c->stream_timer, on_stream_idle, 0., 0.);
    ev_timer_init(&c->resume_timer, on_resume, 0., 0.);
    ev_timer_init(&c->request_timer, on_request_timeout, 0., 0.);
    c->request_timer.data = c;
    c->accepted_ns = proc_now_ns();
    c->rio.data = c->wio.data = c->idle_timer.data = c->st.route_timer.data = c;
    c->header_timer.data = c->stream_timer.data = c->resume_timer.data = c;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    ev_io_start(w->loop, &c->rio);
    conn_start_idle(c);
    stats_cell_add(l->stats.cx_total, 1);
    stats_cell_add(l->stats.cx_active, 1);
    stats_cell_add(l->stats.cx_http1_total, 1);
    stats_cell_add(l->stats.cx_http1_active, 1);
    stats_cell_add(l->stats.server_connections, 1);
    stats_cell_add(l->stats.cl_active, 1);
    stats_cell_add(l->stats.listener_cx_total, 1);
    stats_cell_add(l->stats.listener_cx_active, 1);
    /* A client usually sends its request right behind the handshake, so it
     * is often here already: read it now rather than after another turn of
     * the loop (and perhaps a sleep and a wake-up). Nothing there costs one
     * read that says EAGAIN. */
    on_conn_readable(w->loop, &c->rio, EV_READ);
}

/* Idle means nothing buffered here and nothing waiting in the socket: a
 * request the client already sent is answered (with connection: close), not
 * reset. */
static bool conn_is_idle(struct conn *c)
{
    int unread = 0;
    return !c->st.active && h1_parser_is_idle(c->parser) && buf_len(&c->in) == 0 &&
           ioctl(c->fd, FIONREAD, &unread) == 0 && unread == 0;
}

void http_server_drain(struct worker *w, bool close_idle)
{
    struct conn *next;
    for (struct conn *c = w->conns; c != NULL; c = next) {
        next = c->next;
        conn_enter(c);
        c->close_after = true;
        if (close_idle && conn_is_idle(c))
            conn_close(c);
        conn_leave(c);
    }
}

size_t http_server_close_idle(struct worker *w, double fraction)
{
    size_t closed = 0;
    struct conn *next;
    for (struct conn *c = w->conns; c != NULL; c = next) {
        next = c->next;
        /* Fibonacci hashing of the address: a fixed, well-spread place per
         * connection, so each is closed once its share of the time is up. */
        uint64_t h = (uint64_t)(uintptr_t)c * 0x9e3779b97f4a7c15ull;
        if ((double)(h >> 11) / (double)(1ull << 53) >= fraction)
            continue;
        conn_enter(c);
        if (conn_is_idle(c)) {
            conn_close(c);
            closed++;
        }
        conn_leave(c);
    }
    return closed;
}

void http_server_close_all(struct worker *w)
{
    while (w->conns != NULL) {
        struct conn *c = w->conns;
        conn_enter(c);
        conn_close(c);
        conn_leave(c);
    }
}

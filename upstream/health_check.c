#include "upstream/health_check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <http_parser.h>

#include "common/evtimer.h"
#include "common/log.h"
#include "upstream/lb.h"

#define HC_DEFAULT_NO_TRAFFIC_MS 60000u
#define HC_TCP_RECEIVE_MAX (64 * 1024) /* a TCP answer without the pieces in this much fails */
#define HC_HTTP_READ_CHUNK 4096        /* the HTTP body is parsed through, never kept */

enum hc_phase {
    PHASE_WAITING,    /* between attempts; an HTTP keep-alive connection may stay open */
    PHASE_CONNECTING, /* connect() in progress */
    PHASE_SENDING,    /* writing the request (HTTP) or the send bytes (TCP) */
    PHASE_RECEIVING,  /* reading the answer */
};

/* How an attempt moved the host's health, as Envoy names it. */
enum hc_transition {
    TRANSITION_NONE,    /* the result agrees with the current health */
    TRANSITION_PENDING, /* it disagrees, but the threshold is not reached yet */
    TRANSITION_CHANGED,
};

struct hc_host {
    struct ev_loop *loop;
    const struct cfg_health_check *cfg;
    const struct hc_callbacks *cb;
    void *owner;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char name[128]; /* "cluster/address" for log lines */
    struct lb_rng rng;

    ev_timer next_attempt; /* between attempts */
    ev_timer deadline;     /* bounds the attempt in progress: timeout_ms */
    ev_io rio, wio;
    int fd; /* -1: no connection */
    enum hc_phase phase;

    /* What every attempt sends, built once: the HTTP request, or TCP's send bytes. */
    char *request;
    size_t request_len;
    size_t request_sent;

    http_parser parser;
    int status;      /* the final response's status, once complete */
    bool keep_alive; /* ... and whether its connection may serve the next attempt */
    bool response_complete;

    uint8_t *received; /* TCP: the answer so far (only when pieces are expected) */
    size_t received_len;
    size_t next_piece;  /* the first receive piece not found yet */
    size_t search_from; /* where it may start in `received` */

    bool healthy;
    bool first_check; /* no result yet: one pass is enough */
    bool had_traffic;
    uint32_t consecutive_passes;   /* while unhealthy */
    uint32_t consecutive_failures; /* while healthy */

    bool dispatching;    /* inside a callback into the owner */
    bool stop_requested; /* hc_host_stop was called from one */
};

static uint64_t or_fallback(uint64_t ms, uint64_t fallback)
{
    return ms != 0 ? ms : fallback;
}

static uint64_t with_jitter(struct hc_host *h, uint64_t base_ms)
{
    uint64_t ms = base_ms;
    uint64_t percent_span = (uint64_t)h->cfg->interval_jitter_percent * base_ms / 100;
    if (percent_span > 0)
        ms += lb_rng_next(&h->rng) % percent_span;
    if (h->cfg->interval_jitter_ms > 0)
        ms += lb_rng_next(&h->rng) % h->cfg->interval_jitter_ms;
    return ms > 0 ? ms : 1; /* never a zero wait: no busy loop on a bad config */
}

/* Envoy's choice (HealthCheckerImplBase::interval): the edge intervals apply
 * while a transition is pending (a result disagreed with the health but the
 * threshold is not reached), to confirm it sooner; once changed, the new
 * state's own interval. Without traffic, the slow no_traffic interval. */
static uint64_t base_interval_ms(const struct hc_host *h, bool passed,
                                 enum hc_transition transition)
{
    const struct cfg_health_check *c = h->cfg;
    uint64_t unhealthy_ms = or_fallback(c->unhealthy_interval_ms, c->interval_ms);
    if (!h->had_traffic)
        return or_fallback(c->no_traffic_interval_ms, HC_DEFAULT_NO_TRAFFIC_MS);
    if (passed)
        return transition == TRANSITION_PENDING
                   ? or_fallback(c->healthy_edge_interval_ms, c->interval_ms)
                   : c->interval_ms;
    return transition == TRANSITION_PENDING
               ? or_fallback(c->unhealthy_edge_interval_ms, unhealthy_ms)
               : unhealthy_ms;
}

static void schedule_next(struct hc_host *h, bool passed, enum hc_transition transition)
{
    uint64_t ms = with_jitter(h, base_interval_ms(h, passed, transition));
    timer_rearm(h->loop, &h->next_attempt, (double)ms / 1000.0);
}

static void close_connection(struct hc_host *h)
{
    ev_io_stop(h->loop, &h->rio);
    ev_io_stop(h->loop, &h->wio);
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
}

static void destroy(struct hc_host *h)
{
    close_connection(h);
    ev_timer_stop(h->loop, &h->next_attempt);
    ev_timer_stop(h->loop, &h->deadline);
    free(h->request);
    free(h->received);
    free(h);
}

static enum hc_transition update_health(struct hc_host *h, enum hc_result r)
{
    bool first = h->first_check;
    h->first_check = false;
    if (r == HC_PASS) {
        h->consecutive_failures = 0;
        if (h->healthy)
            return TRANSITION_NONE;
        if (!first && ++h->consecutive_passes < h->cfg->healthy_threshold)
            return TRANSITION_PENDING;
        h->healthy = true;
        h->consecutive_passes = 0;
        return TRANSITION_CHANGED;
    }
    h->consecutive_passes = 0;
    if (!h->healthy)
        return TRANSITION_NONE;
    /* Envoy: an HTTP answer with an unexpected status is the host's own
     * verdict and counts at once; anything else may be a passing glitch. */
    bool at_once = h->cfg->kind == HC_HTTP && r == HC_FAIL;
    if (!at_once && ++h->consecutive_failures < h->cfg->unhealthy_threshold)
        return TRANSITION_PENDING;
    h->healthy = false;
    h->consecutive_failures = 0;
    return TRANSITION_CHANGED;
}

/* The attempt is over; the caller has already closed the connection or left
 * a reusable one open. Everything is consistent before the owner hears of it,
 * so the owner may stop us from its callbacks. */
static void attempt_done(struct hc_host *h, enum hc_result r, const char *why)
{
    ev_timer_stop(h->loop, &h->deadline);
    ev_io_stop(h->loop, &h->wio);
    h->phase = PHASE_WAITING;
    if (r != HC_PASS)
        log_debug("health check %s: %s", h->name, why);
    enum hc_transition transition = update_health(h, r);
    schedule_next(h, r == HC_PASS, transition);

    h->dispatching = true;
    h->cb->on_result(h->owner, r);
    if (transition == TRANSITION_CHANGED && !h->stop_requested && h->cb->on_change != NULL)
        h->cb->on_change(h->owner, h->healthy);
    h->dispatching = false;
    if (h->stop_requested)
        destroy(h);
}

static void fail_attempt(struct hc_host *h, enum hc_result r, const char *why)
{
    close_connection(h);
    attempt_done(h, r, why);
}

/* --- HTTP ---------------------------------------------------------------------------- */

static int on_message_complete(http_parser *p)
{
    struct hc_host *h = p->data;
    /* 1xx interim answers (100, 103) are skipped: the final one follows. A
     * 101 is final: the connection speaks something else after it. */
    if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101)
        return 0;
    h->status = (int)p->status_code;
    /* reuse_connection: false asks for a new connection per check. */
    h->keep_alive = h->cfg->reuse_connection && http_should_keep_alive(p) && !p->upgrade;
    h->response_complete = true;
    http_parser_pause(p, 1); /* stop here: bytes after the response are not ours */
    return 0;
}

static const http_parser_settings response_settings = {
    .on_message_complete = on_message_complete,
};

static bool status_expected(const struct cfg_health_check *c, int status)
{
    if (c->n_expected_statuses == 0)
        return status == 200;
    for (size_t i = 0; i < c->n_expected_statuses; i++)
        if (status >= 0 && (uint32_t)status >= c->expected_statuses[i].start &&
            (uint32_t)status < c->expected_statuses[i].end)
            return true;
    return false;
}

static void http_response_complete(struct hc_host *h)
{
    /* Envoy keeps the connection even after a failing status, if allowed. */
    if (h->keep_alive)
        ev_io_start(h->loop, &h->rio); /* idle: anything read now ends it */
    else
        close_connection(h);
    attempt_done(h, status_expected(h->cfg, h->status) ? HC_PASS : HC_FAIL, "unexpected status");
}

/* Feed `len` bytes (0: the end of the stream) to the parser. */
static void http_feed(struct hc_host *h, const char *data, size_t len)
{
    size_t parsed = http_parser_execute(&h->parser, &response_settings, data, len);
    if (h->response_complete) {
        if (parsed < len || len == 0)
            h->keep_alive = false; /* bytes after the response, or closed: never reuse */
        http_response_complete(h);
        return;
    }
    if (HTTP_PARSER_ERRNO(&h->parser) != HPE_OK) {
        log_debug("health check %s: bad response: %s", h->name,
                  http_errno_name(HTTP_PARSER_ERRNO(&h->parser)));
        fail_attempt(h, HC_NETWORK_FAIL, "unparseable response");
        return;
    }
    if (len == 0)
        fail_attempt(h, HC_NETWORK_FAIL, "closed before the response was complete");
}

static void http_receive(struct hc_host *h)
{
    char chunk[HC_HTTP_READ_CHUNK];
    ssize_t n = recv(h->fd, chunk, sizeof(chunk), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        fail_attempt(h, HC_NETWORK_FAIL, strerror(errno));
        return;
    }
    http_feed(h, chunk, (size_t)n);
}

/* --- TCP ----------------------------------------------------------------------------- */

/* Envoy's fuzzy match: every piece, in order, each after the previous one,
 * not necessarily adjacent. Resumable as bytes arrive. */
static bool tcp_pieces_found(struct hc_host *h)
{
    const struct cfg_health_check *c = h->cfg;
    while (h->next_piece < c->n_receive) {
        const uint8_t *piece = c->receive[h->next_piece];
        size_t piece_len = c->receive_len[h->next_piece];
        if (piece_len == 0) {
            h->next_piece++;
            continue;
        }
        if (h->received_len - h->search_from < piece_len)
            return false;
        const uint8_t *at = memmem(h->received + h->search_from, h->received_len - h->search_from,
                                   piece, piece_len);
        if (at == NULL) {
            /* A match arriving later cannot start before this. */
            h->search_from = h->received_len - piece_len + 1;
            return false;
        }
        h->search_from = (size_t)(at - h->received) + piece_len;
        h->next_piece++;
    }
    return true;
}

static void tcp_receive(struct hc_host *h)
{
    ssize_t n = recv(h->fd, h->received + h->received_len, HC_TCP_RECEIVE_MAX - h->received_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        fail_attempt(h, HC_NETWORK_FAIL, strerror(errno));
        return;
    }
    if (n == 0) {
        if (h->received_len == 0)
            fail_attempt(h, HC_NETWORK_FAIL, "closed without answering");
        else
            fail_attempt(h, HC_FAIL, "the answer lacks the expected pieces");
        return;
    }
    h->received_len += (size_t)n;
    if (tcp_pieces_found(h)) {
        close_connection(h);
        attempt_done(h, HC_PASS, NULL);
    } else if (h->received_len == HC_TCP_RECEIVE_MAX) {
        fail_attempt(h, HC_FAIL, "the answer lacks the expected pieces");
    }
}

/* --- one attempt ----------------------------------------------------------------------- */

static void expect_answer(struct hc_host *h)
{
    ev_io_stop(h->loop, &h->wio);
    if (h->cfg->kind == HC_TCP && h->cfg->n_receive == 0) {
        close_connection(h); /* connected (and sent): that is all a plain TCP check asks */
        attempt_done(h, HC_PASS, NULL);
        return;
    }
    h->phase = PHASE_RECEIVING;
    ev_io_start(h->loop, &h->rio);
}

static void send_request(struct hc_host *h)
{
    while (h->request_sent < h->request_len) {
        ssize_t n = send(h->fd, h->request + h->request_sent, h->request_len - h->request_sent,
                         MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(h->loop, &h->wio);
            return;
        }
        if (n < 0) {
            fail_attempt(h, HC_NETWORK_FAIL, strerror(errno));
            return;
        }
        h->request_sent += (size_t)n;
    }
    expect_answer(h);
}

static void start_sending(struct hc_host *h)
{
    h->phase = PHASE_SENDING;
    h->request_sent = 0;
    send_request(h);
}

static void open_connection(struct hc_host *h)
{
    h->fd = socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h->fd < 0) {
        fail_attempt(h, HC_NETWORK_FAIL, strerror(errno));
        return;
    }
    ev_io_set(&h->rio, h->fd, EV_READ);
    ev_io_set(&h->wio, h->fd, EV_WRITE);
    if (connect(h->fd, (const struct sockaddr *)&h->addr, h->addrlen) == 0) {
        start_sending(h);
    } else if (errno == EINPROGRESS) {
        h->phase = PHASE_CONNECTING;
        ev_io_start(h->loop, &h->wio); /* writable: connected, or failed */
    } else {
        fail_attempt(h, HC_NETWORK_FAIL, strerror(errno)); /* often ECONNREFUSED on loopback */
    }
}

static void on_next_attempt(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct hc_host *h = w->data;
    double timeout_ms = (double)or_fallback(h->cfg->timeout_ms, h->cfg->interval_ms);
    timer_rearm(loop, &h->deadline, timeout_ms / 1000.0);
    h->response_complete = false;
    h->received_len = 0;
    h->next_piece = 0;
    h->search_from = 0;
    http_parser_init(&h->parser, HTTP_RESPONSE);
    h->parser.data = h;
    if (h->fd >= 0) {
        ev_io_stop(loop, &h->rio); /* the idle watch; reading resumes after the request */
        start_sending(h);
    } else {
        open_connection(h);
    }
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    fail_attempt(w->data, HC_NETWORK_FAIL, "timed out");
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct hc_host *h = w->data;
    if (h->phase == PHASE_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err != 0) {
            fail_attempt(h, HC_NETWORK_FAIL, strerror(err));
            return;
        }
        start_sending(h);
        return;
    }
    send_request(h);
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct hc_host *h = w->data;
    if (h->phase == PHASE_WAITING) {
        /* An idle keep-alive connection: EOF, an error or a stray byte all
         * end it (almost always the upstream closing it); the next attempt
         * connects afresh. */
        close_connection(h);
        return;
    }
    if (h->cfg->kind == HC_HTTP)
        http_receive(h);
    else
        tcp_receive(h);
}

/* --- set-up -------------------------------------------------------------------------- */

static bool has_line_break(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

/* "GET <path> HTTP/1.1", Host, User-Agent as Envoy sends them, then the added
 * headers; no body. A header with a line break in it is left out: it would
 * forge a header or a request. */
static char *build_http_request(const struct cfg_health_check *c, const char *host, size_t *len)
{
    static const char user_agent[] = "User-Agent: Envoy/HC\r\n";
    const char *path = c->path != NULL && c->path[0] != '\0' ? c->path : "/";
    size_t size = strlen("GET  HTTP/1.1\r\nHost: \r\n") + strlen(path) + strlen(host) +
                  strlen(user_agent) + strlen("\r\n") + 1;
    for (size_t i = 0; i < c->n_headers; i++)
        size += strlen(c->headers[i].key) + strlen(": \r\n") + strlen(c->headers[i].value);
    char *req = malloc(size);
    if (req == NULL)
        return NULL;
    int n = snprintf(req, size, "GET %s HTTP/1.1\r\nHost: %s\r\n%s", path, host, user_agent);
    size_t used = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; i < c->n_headers; i++) {
        const struct cfg_header *hd = &c->headers[i];
        if (has_line_break(hd->key) || has_line_break(hd->value))
            continue;
        n = snprintf(req + used, size - used, "%s: %s\r\n", hd->key, hd->value);
        used += n > 0 ? (size_t)n : 0;
    }
    n = snprintf(req + used, size - used, "\r\n");
    used += n > 0 ? (size_t)n : 0;
    *len = used;
    return req;
}

static void describe_address(struct hc_host *h, const char *cluster_name)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (h->addr.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&h->addr;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        port = ntohs(a->sin_port);
    } else if (h->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&h->addr;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        port = ntohs(a->sin6_port);
    }
    snprintf(h->name, sizeof(h->name), "%s/%s:%u", cluster_name, ip, port);
}

struct hc_host *hc_host_start(struct ev_loop *loop, const struct cfg_health_check *cfg,
                              const char *cluster_name, const struct sockaddr *addr,
                              socklen_t addrlen, const struct hc_callbacks *cb, void *owner,
                              uint64_t seed)
{
    struct hc_host *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->loop = loop;
    h->cfg = cfg;
    h->cb = cb;
    h->owner = owner;
    h->fd = -1;
    if (cluster_name == NULL)
        cluster_name = "";
    h->addrlen = addrlen <= sizeof(h->addr) ? addrlen : sizeof(h->addr);
    memcpy(&h->addr, addr, h->addrlen);
    describe_address(h, cluster_name);
    lb_rng_seed(&h->rng, seed);
    h->healthy = false; /* Envoy's FAILED_ACTIVE_HC until the first check says otherwise */
    h->first_check = true;
    h->had_traffic = true;

    if (cfg->kind == HC_HTTP) {
        h->request =
            build_http_request(cfg, cfg->host != NULL ? cfg->host : cluster_name, &h->request_len);
        if (h->request == NULL)
            goto out_of_memory;
    } else {
        if (cfg->send_len > 0) {
            h->request = malloc(cfg->send_len);
            if (h->request == NULL)
                goto out_of_memory;
            memcpy(h->request, cfg->send, cfg->send_len);
            h->request_len = cfg->send_len;
        }
        if (cfg->n_receive > 0) {
            h->received = malloc(HC_TCP_RECEIVE_MAX);
            if (h->received == NULL)
                goto out_of_memory;
        }
    }

    ev_io_init(&h->rio, on_readable, -1, EV_READ);
    ev_io_init(&h->wio, on_writable, -1, EV_WRITE);
    ev_timer_init(&h->deadline, on_deadline, 0., 0.);
    ev_timer_init(&h->next_attempt, on_next_attempt, 0., 0.); /* at once: next iteration */
    h->rio.data = h->wio.data = h->deadline.data = h->next_attempt.data = h;
    ev_timer_start(loop, &h->next_attempt);
    return h;

out_of_memory:
    free(h->request);
    free(h->received);
    free(h);
    return NULL;
}

void hc_host_stop(struct hc_host *h)
{
    if (h == NULL)
        return;
    if (h->dispatching) {
        h->stop_requested = true; /* attempt_done frees it once the callback returns */
        return;
    }
    destroy(h);
}

bool hc_host_healthy(const struct hc_host *h)
{
    return h->healthy;
}

void hc_host_set_traffic(struct hc_host *h, bool had_traffic)
{
    bool resumed = had_traffic && !h->had_traffic;
    h->had_traffic = had_traffic;
    if (!resumed || h->phase != PHASE_WAITING || !ev_is_active(&h->next_attempt))
        return;
    /* Back from the slow no-traffic pace: do not sit out its long wait. */
    uint64_t ms = with_jitter(h, base_interval_ms(h, h->healthy, TRANSITION_NONE));
    double after = (double)ms / 1000.0;
    if (ev_timer_remaining(h->loop, &h->next_attempt) > after)
        timer_rearm(h->loop, &h->next_attempt, after);
}

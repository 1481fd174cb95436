/* Active health checks against a fake upstream on 127.0.0.1, both driven by
 * one libev loop: thresholds, the immediate failure on an unexpected status,
 * timeouts, the request's headers, keep-alive reuse, body framing, TCP's
 * fuzzy matching, and the traffic-dependent interval. Every run is bounded by
 * a deadline timer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "upstream/health_check.h"

/* --- the fake upstream ---------------------------------------------------------------- */

/* One answer. HTTP: to the n-th request head; TCP: once `tcp_expect` bytes came. */
struct reply {
    const char *text; /* NULL: never answer */
    size_t split;     /* > 0: the bytes from here on come SPLIT_DELAY later */
    bool close_after; /* close the connection once it is sent */
};

#define SPLIT_DELAY 0.03
#define MAX_CONNS 64

struct fake;

struct fake_conn {
    struct fake *srv;
    int fd;
    ev_io io;
    ev_timer tail_timer;
    const struct reply *pending_tail; /* the rest of a split reply */
    char in[8192];
    size_t in_len;
};

struct fake {
    struct ev_loop *loop;
    int lfd;
    uint16_t port;
    ev_io accept_io;
    bool tcp;                    /* answer after tcp_expect bytes instead of after request heads */
    size_t tcp_expect;           /* 0: at once on accept */
    const struct reply *replies; /* the last one repeats */
    size_t n_replies;
    int accepts;
    int requests;    /* HTTP heads, or TCP answers triggered */
    int peer_closes; /* connections the checker closed (EOF seen here) */
    char last_request[4096];
    struct fake_conn *conns[MAX_CONNS];
};

static void conn_close(struct fake_conn *fc)
{
    struct fake *s = fc->srv;
    ev_io_stop(s->loop, &fc->io);
    ev_timer_stop(s->loop, &fc->tail_timer);
    close(fc->fd);
    for (size_t i = 0; i < MAX_CONNS; i++)
        if (s->conns[i] == fc)
            s->conns[i] = NULL;
    free(fc);
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the checker is gone: nothing to do */
        p += w;
        n -= (size_t)w;
    }
}

static void on_tail(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct fake_conn *fc = w->data;
    const struct reply *r = fc->pending_tail;
    fc->pending_tail = NULL;
    send_all(fc->fd, r->text + r->split, strlen(r->text) - r->split);
    if (r->close_after)
        conn_close(fc);
}

/* Returns false if the connection was closed. */
static bool answer(struct fake_conn *fc)
{
    struct fake *s = fc->srv;
    size_t idx = (size_t)s->requests < s->n_replies ? (size_t)s->requests : s->n_replies - 1;
    const struct reply *r = &s->replies[idx];
    s->requests++;
    if (r->text == NULL)
        return true;
    if (r->split > 0) {
        send_all(fc->fd, r->text, r->split);
        fc->pending_tail = r;
        ev_timer_set(&fc->tail_timer, SPLIT_DELAY, 0.);
        ev_timer_start(s->loop, &fc->tail_timer);
        return true;
    }
    send_all(fc->fd, r->text, strlen(r->text));
    if (r->close_after) {
        conn_close(fc);
        return false;
    }
    return true;
}

static void on_conn_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct fake_conn *fc = w->data;
    struct fake *s = fc->srv;
    if (fc->in_len == sizeof(fc->in))
        fc->in_len = 0; /* not a test's concern: keep reading */
    ssize_t n = recv(fc->fd, fc->in + fc->in_len, sizeof(fc->in) - fc->in_len, 0);
    if (n <= 0) {
        s->peer_closes++;
        conn_close(fc);
        return;
    }
    fc->in_len += (size_t)n;
    if (s->tcp) {
        if (s->tcp_expect > 0 && fc->in_len >= s->tcp_expect) {
            size_t keep =
                fc->in_len < sizeof(s->last_request) ? fc->in_len : sizeof(s->last_request) - 1;
            memcpy(s->last_request, fc->in, keep);
            s->last_request[keep] = '\0';
            fc->in_len = 0;
            answer(fc);
        }
        return;
    }
    char *end;
    while ((end = memmem(fc->in, fc->in_len, "\r\n\r\n", 4)) != NULL) {
        size_t head_len = (size_t)(end - fc->in) + 4;
        size_t keep = head_len < sizeof(s->last_request) ? head_len : sizeof(s->last_request) - 1;
        memcpy(s->last_request, fc->in, keep);
        s->last_request[keep] = '\0';
        memmove(fc->in, fc->in + head_len, fc->in_len - head_len);
        fc->in_len -= head_len;
        if (!answer(fc))
            return;
    }
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct fake *s = w->data;
    int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct fake_conn *fc = calloc(1, sizeof(*fc));
    assert_non_null(fc);
    fc->srv = s;
    fc->fd = fd;
    ev_io_init(&fc->io, on_conn_readable, fd, EV_READ);
    ev_timer_init(&fc->tail_timer, on_tail, 0., 0.);
    fc->io.data = fc->tail_timer.data = fc;
    size_t i = 0;
    while (i < MAX_CONNS && s->conns[i] != NULL)
        i++;
    assert_true(i < MAX_CONNS);
    s->conns[i] = fc;
    s->accepts++;
    ev_io_start(loop, &fc->io);
    if (s->tcp && s->tcp_expect == 0)
        answer(fc);
}

/* Listen on 127.0.0.1:port (0: any free port). */
static void fake_listen(struct fake *s, uint16_t port)
{
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 16), 0);
    socklen_t len = sizeof(a);
    getsockname(s->lfd, (struct sockaddr *)&a, &len);
    s->port = ntohs(a.sin_port);
    ev_io_init(&s->accept_io, on_accept, s->lfd, EV_READ);
    s->accept_io.data = s;
    ev_io_start(s->loop, &s->accept_io);
}

/* Stop listening and drop every connection: the port now refuses. */
static void fake_shut(struct fake *s)
{
    if (s->lfd >= 0) {
        ev_io_stop(s->loop, &s->accept_io);
        close(s->lfd);
        s->lfd = -1;
    }
    for (size_t i = 0; i < MAX_CONNS; i++)
        if (s->conns[i] != NULL)
            conn_close(s->conns[i]);
}

/* --- the checker's owner ----------------------------------------------------------------- */

struct run {
    struct ev_loop *loop;
    struct fake srv;
    struct hc_host *hc;
    enum hc_result results[64];
    double result_at[64]; /* ev_now when it came */
    int n_results;
    int change_after[16]; /* how many results there were at each change */
    bool change_to[16];
    int n_changes;
    int stop_at;                 /* break the loop at this many results */
    void (*step)(struct run *r); /* after each result */
    bool stop_in_on_change;      /* the owner stops the checker from on_change */
    bool timed_out;
    ev_timer deadline;
};

static void on_result(void *owner, enum hc_result res)
{
    struct run *r = owner;
    assert_true(r->n_results < 64);
    r->result_at[r->n_results] = ev_now(r->loop);
    r->results[r->n_results++] = res;
    if (r->step != NULL)
        r->step(r);
    if (r->n_results >= r->stop_at)
        ev_break(r->loop, EVBREAK_ALL);
}

static void on_change(void *owner, bool healthy)
{
    struct run *r = owner;
    assert_true(r->n_changes < 16);
    r->change_after[r->n_changes] = r->n_results;
    r->change_to[r->n_changes++] = healthy;
    if (r->stop_in_on_change) {
        hc_host_stop(r->hc);
        r->hc = NULL;
        ev_break(r->loop, EVBREAK_ALL);
    }
}

static const struct hc_callbacks callbacks = {.on_result = on_result, .on_change = on_change};

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct run *r = w->data;
    r->timed_out = true;
    ev_break(loop, EVBREAK_ALL);
}

static void run_setup(struct run *r)
{
    memset(r, 0, sizeof(*r));
    r->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(r->loop);
    r->srv.loop = r->loop;
    r->srv.lfd = -1;
    ev_timer_init(&r->deadline, on_deadline, 0., 0.);
    r->deadline.data = r;
}

static void run_teardown(struct run *r)
{
    hc_host_stop(r->hc);
    fake_shut(&r->srv);
    ev_timer_stop(r->loop, &r->deadline);
    ev_loop_destroy(r->loop);
}

/* Run until `stop_at` results, or `seconds` pass. */
static void run_for(struct run *r, int stop_at, double seconds)
{
    r->stop_at = stop_at;
    r->timed_out = false;
    ev_timer_stop(r->loop, &r->deadline);
    ev_timer_set(&r->deadline, seconds, 0.);
    ev_timer_start(r->loop, &r->deadline);
    ev_now_update(r->loop);
    ev_run(r->loop, 0);
}

/* Stop the checker and let the fake see what is still in flight. */
static void drain(struct run *r)
{
    hc_host_stop(r->hc);
    r->hc = NULL;
    run_for(r, 1000, 0.03);
}

static struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static void start_checker(struct run *r, const struct cfg_health_check *cfg)
{
    struct sockaddr_in a = loopback(r->srv.port);
    r->hc =
        hc_host_start(r->loop, cfg, "backend", (struct sockaddr *)&a, sizeof(a), &callbacks, r, 42);
    assert_non_null(r->hc);
}

static struct cfg_health_check http_cfg(void)
{
    struct cfg_health_check c = {0};
    c.enabled = true;
    c.kind = HC_HTTP;
    c.timeout_ms = 200;
    c.interval_ms = 10;
    c.unhealthy_threshold = 2;
    c.healthy_threshold = 2;
    c.path = (char *)"/health";
    c.reuse_connection = true; /* the configuration's default */
    return c;
}

#define OK_200 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

/* --- HTTP ------------------------------------------------------------------------------ */

static void test_first_pass_turns_healthy(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {{OK_200, 0, false}};
    r.srv.replies = replies;
    r.srv.n_replies = 1;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    cfg.healthy_threshold = 3; /* not needed at start-up */
    start_checker(&r, &cfg);
    assert_false(hc_host_healthy(r.hc)); /* pending its first check */
    run_for(&r, 1, 1.0);
    assert_false(r.timed_out);
    assert_int_equal(r.results[0], HC_PASS);
    assert_true(hc_host_healthy(r.hc));
    assert_int_equal(r.n_changes, 1);
    assert_true(r.change_to[0]);
    run_teardown(&r);
}

static void test_unexpected_status_fails_at_once(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {
        {OK_200, 0, false},
        {"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy", 0, false},
    };
    r.srv.replies = replies;
    r.srv.n_replies = 2;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    cfg.unhealthy_threshold = 5;
    start_checker(&r, &cfg);
    run_for(&r, 2, 1.0);
    assert_false(r.timed_out);
    assert_int_equal(r.results[0], HC_PASS);
    assert_int_equal(r.results[1], HC_FAIL);
    assert_false(hc_host_healthy(r.hc));
    assert_int_equal(r.n_changes, 2);
    assert_false(r.change_to[1]);
    assert_int_equal(r.change_after[1], 2); /* the first failure, threshold or not */
    assert_int_equal(r.srv.accepts, 1);     /* a failing status still keeps the connection */
    run_teardown(&r);
}

/* Pass, then the port refuses (two network failures before unhealthy), then
 * it listens again (two passes before healthy). */
static void refused_step(struct run *r)
{
    switch (r->n_results) {
    case 1:
        assert_true(hc_host_healthy(r->hc));
        fake_shut(&r->srv);
        break;
    case 2:
        assert_true(hc_host_healthy(r->hc)); /* one failure of two */
        break;
    case 3:
        assert_false(hc_host_healthy(r->hc));
        fake_listen(&r->srv, r->srv.port);
        break;
    case 4:
        assert_false(hc_host_healthy(r->hc)); /* one pass of two */
        break;
    default:
        break;
    }
}

static void test_refused_needs_threshold_and_recovery_needs_passes(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 0, true}};
    r.srv.replies = replies;
    r.srv.n_replies = 1;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    start_checker(&r, &cfg);
    r.step = refused_step;
    run_for(&r, 5, 2.0);
    assert_false(r.timed_out);
    enum hc_result want[] = {HC_PASS, HC_NETWORK_FAIL, HC_NETWORK_FAIL, HC_PASS, HC_PASS};
    for (int i = 0; i < 5; i++)
        assert_int_equal(r.results[i], want[i]);
    assert_int_equal(r.n_changes, 3);
    assert_int_equal(r.change_after[0], 1);
    assert_int_equal(r.change_after[1], 3);
    assert_false(r.change_to[1]);
    assert_int_equal(r.change_after[2], 5);
    assert_true(r.change_to[2]);
    assert_true(hc_host_healthy(r.hc));
    run_teardown(&r);
}

/* A first check that fails leaves the host unhealthy, and then the full
 * healthy_threshold is needed: the single-pass rule is for the first result only. */
static void test_startup_failure_then_threshold(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    fake_listen(&r.srv, 0);
    uint16_t port = r.srv.port;
    fake_shut(&r.srv); /* nothing listens there now */
    r.srv.port = port;
    static const struct reply replies[] = {{OK_200, 0, false}};
    r.srv.replies = replies;
    r.srv.n_replies = 1;
    struct cfg_health_check cfg = http_cfg();
    cfg.healthy_threshold = 3;
    start_checker(&r, &cfg);
    run_for(&r, 1, 1.0);
    assert_int_equal(r.results[0], HC_NETWORK_FAIL);
    assert_int_equal(r.n_changes, 0);
    fake_listen(&r.srv, port);
    run_for(&r, 3, 1.0);
    assert_false(r.timed_out);
    assert_int_equal(r.results[1], HC_PASS);
    assert_int_equal(r.results[2], HC_PASS);
    assert_false(hc_host_healthy(r.hc));
    run_for(&r, 4, 1.0);
    assert_true(hc_host_healthy(r.hc));
    assert_int_equal(r.n_changes, 1);
    assert_int_equal(r.change_after[0], 4);
    run_teardown(&r);
}

static void test_timeout_is_network_failure(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {{OK_200, 0, false}, {NULL, 0, false}};
    r.srv.replies = replies;
    r.srv.n_replies = 2;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    cfg.timeout_ms = 50;
    start_checker(&r, &cfg);
    run_for(&r, 3, 2.0);
    assert_false(r.timed_out);
    assert_int_equal(r.results[0], HC_PASS);
    assert_int_equal(r.results[1], HC_NETWORK_FAIL);
    assert_int_equal(r.results[2], HC_NETWORK_FAIL);
    /* each attempt waited out its timeout, after a 10 ms interval */
    assert_true(r.result_at[1] - r.result_at[0] >= 0.05);
    assert_true(r.result_at[2] - r.result_at[1] >= 0.05);
    assert_false(hc_host_healthy(r.hc)); /* two network failures of two */
    assert_int_equal(r.n_changes, 2);
    assert_int_equal(r.change_after[1], 3);
    /* the silent connection was closed, and the next attempt connected anew */
    drain(&r);
    assert_int_equal(r.srv.peer_closes, 2);
    assert_int_equal(r.srv.accepts, 2);
    run_teardown(&r);
}

static void test_expected_status_ranges(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {
        {"HTTP/1.1 204 No Content\r\n\r\n", 0, false},
        {"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnah", 0, false},
        {"HTTP/1.1 299 Odd\r\nContent-Length: 0\r\n\r\n", 0, false},
        {"HTTP/1.1 300 Multiple Choices\r\nContent-Length: 0\r\n\r\n", 0, false},
        {"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n", 0, false},
    };
    r.srv.replies = replies;
    r.srv.n_replies = 5;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    struct cfg_status_range ranges[] = {{200, 300}, {404, 405}};
    cfg.expected_statuses = ranges;
    cfg.n_expected_statuses = 2;
    start_checker(&r, &cfg);
    run_for(&r, 5, 1.0);
    assert_false(r.timed_out);
    enum hc_result want[] = {HC_PASS, HC_PASS, HC_PASS, HC_FAIL, HC_FAIL};
    for (int i = 0; i < 5; i++)
        assert_int_equal(r.results[i], want[i]);
    run_teardown(&r);
}

static void test_default_expected_status_is_200(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {
        {"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 0, false}};
    r.srv.replies = replies;
    r.srv.n_replies = 1;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    start_checker(&r, &cfg);
    run_for(&r, 1, 1.0);
    assert_int_equal(r.results[0], HC_FAIL);
    assert_false(hc_host_healthy(r.hc));
    run_teardown(&r);
}

static void test_request_carries_host_user_agent_and_added_headers(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {{OK_200, 0, false}};
    r.srv.replies = replies;
    r.srv.n_replies = 1;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    cfg.path = (char *)"/healthz?full=1";
    cfg.host = (char *)"hc.example";
    struct cfg_header headers[] = {
        {(char *)"x-check", (char *)"1"},
        {(char *)"x-evil", (char *)"a\r\nInjected: yes"}, /* left out */
        {(char *)"Authorization", (char *)"Bearer t"},
    };
    cfg.headers = headers;
    cfg.n_headers = 3;
    start_checker(&r, &cfg);
    run_for(&r, 1, 1.0);
    assert_int_equal(r.results[0], HC_PASS);
    assert_string_equal(r.srv.last_request, "GET /healthz?full=1 HTTP/1.1\r\n"
                                            "Host: hc.example\r\n"
                                            "User-Agent: Envoy/HC\r\n"
                                            "x-check: 1\r\n"
                                            "Authorization: Bearer t\r\n"
                                            "\r\n");
    run_teardown(&r);
}

static void test_host_defaults_to_cluster_name(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {{OK_200, 0, false}};
    r.srv.replies = replies;
    r.srv.n_replies = 1;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    start_checker(&r, &cfg);
    run_for(&r, 1, 1.0);
    assert_non_null(strstr(r.srv.last_request, "\r\nHost: backend\r\n"));
    assert_true(strncmp(r.srv.last_request, "GET /health HTTP/1.1\r\n", 22) == 0);
    run_teardown(&r);
}

static void test_keep_alive_reuses_the_connection(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {{OK_200, 0, false}};
    r.srv.replies = replies;
    r.srv.n_replies = 1;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    start_checker(&r, &cfg);
    run_for(&r, 4, 1.0);
    assert_false(r.timed_out);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r.results[i], HC_PASS);
    assert_int_equal(r.srv.accepts, 1);
    assert_int_equal(r.srv.requests, 4);
    run_teardown(&r);
}

/* reuse_connection: false: a new connection for every check. */
static void test_no_reuse_connects_every_time(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {{OK_200, 0, false}};
    r.srv.replies = replies;
    r.srv.n_replies = 1;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    cfg.reuse_connection = false;
    start_checker(&r, &cfg);
    run_for(&r, 3, 1.0);
    assert_false(r.timed_out);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r.results[i], HC_PASS);
    assert_int_equal(r.srv.accepts, 3);
    run_teardown(&r);
}

static void test_connection_close_reconnects(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    /* Connection: close and HTTP/1.0 (the fake keeps those open: the checker
     * must close them itself), then a body delimited by the server's close */
    static const struct reply replies[] = {
        {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 0, false},
        {"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 0, false},
        {"HTTP/1.1 200 OK\r\n\r\nuntil the end", 0, true},
    };
    r.srv.replies = replies;
    r.srv.n_replies = 3;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    start_checker(&r, &cfg);
    run_for(&r, 4, 1.0);
    assert_false(r.timed_out);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r.results[i], HC_PASS);
    assert_int_equal(r.srv.accepts, 4);
    run_teardown(&r);
}

/* The check completes only once the body is whole, and the connection is
 * reused after it (chunked, then Content-Length, each split in two). */
static void test_split_bodies_read_fully(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const char chunked[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    static const char sized[] = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world";
    static const struct reply replies[] = {
        {chunked, sizeof("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe") - 1,
         false},
        {sized, sizeof("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello") - 1, false},
        {OK_200, 0, false},
    };
    r.srv.replies = replies;
    r.srv.n_replies = 3;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    start_checker(&r, &cfg);
    ev_now_update(r.loop);
    double t0 = ev_now(r.loop);
    run_for(&r, 3, 1.0);
    assert_false(r.timed_out);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r.results[i], HC_PASS);
    assert_true(r.result_at[0] - t0 >= SPLIT_DELAY - 0.002);
    assert_true(r.result_at[1] - r.result_at[0] >= SPLIT_DELAY);
    assert_int_equal(r.srv.accepts, 1); /* the body was consumed: still in step */
    run_teardown(&r);
}

static void test_garbage_and_truncated_answers_are_network_failures(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {
        {"SSH-2.0-OpenSSH_9.2\r\n\r\n", 0, true},
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 0, true},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, false},
        {"", 0, true}, /* closed without a byte */
    };
    r.srv.replies = replies;
    r.srv.n_replies = 4;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    start_checker(&r, &cfg);
    run_for(&r, 4, 1.0);
    assert_false(r.timed_out);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r.results[i], HC_NETWORK_FAIL);
    run_teardown(&r);
}

static void test_interim_response_is_skipped(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {
        {"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" OK_200, 0, false}};
    r.srv.replies = replies;
    r.srv.n_replies = 1;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    start_checker(&r, &cfg);
    run_for(&r, 2, 1.0);
    assert_int_equal(r.results[0], HC_PASS);
    assert_int_equal(r.results[1], HC_PASS);
    assert_int_equal(r.srv.accepts, 1);
    run_teardown(&r);
}

/* Bytes after the response (here a second, unsolicited one) are not the next
 * check's answer: the connection is dropped rather than reused. */
static void test_bytes_after_the_response_end_the_connection(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {
        {OK_200 "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", 0, false},
        {OK_200, 0, false},
    };
    r.srv.replies = replies;
    r.srv.n_replies = 2;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    start_checker(&r, &cfg);
    run_for(&r, 3, 1.0);
    assert_false(r.timed_out);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r.results[i], HC_PASS);
    assert_int_equal(r.srv.accepts, 2);
    run_teardown(&r);
}

/* --- TCP ------------------------------------------------------------------------------- */

static uint8_t piece_ab[] = {'A', 'B'};
static uint8_t piece_cd[] = {'C', 'D'};
static uint8_t *pieces[] = {piece_ab, piece_cd};
static size_t piece_lens[] = {2, 2};

static struct cfg_health_check tcp_cfg(void)
{
    struct cfg_health_check c = http_cfg();
    c.kind = HC_TCP;
    c.path = NULL;
    c.send = (uint8_t *)"PING";
    c.send_len = 4;
    c.receive = pieces;
    c.receive_len = piece_lens;
    c.n_receive = 2;
    return c;
}

static void test_tcp_pieces_in_order_pass(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    /* around and between the pieces, CD split across two writes */
    static const struct reply replies[] = {{"..A|B..AB..CD..", 12, false}};
    r.srv.replies = replies;
    r.srv.n_replies = 1;
    r.srv.tcp = true;
    r.srv.tcp_expect = 4;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = tcp_cfg();
    start_checker(&r, &cfg);
    ev_now_update(r.loop);
    double t0 = ev_now(r.loop);
    run_for(&r, 2, 1.0);
    assert_false(r.timed_out);
    assert_string_equal(r.srv.last_request, "PING");
    assert_int_equal(r.results[0], HC_PASS);
    assert_int_equal(r.results[1], HC_PASS);
    assert_true(r.result_at[0] - t0 >= SPLIT_DELAY - 0.002); /* waited for the D */
    run_teardown(&r);
}

static void test_tcp_pieces_out_of_order_fail(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {{"CD..AB", 0, true}};
    r.srv.replies = replies;
    r.srv.n_replies = 1;
    r.srv.tcp = true;
    r.srv.tcp_expect = 4;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = tcp_cfg();
    start_checker(&r, &cfg);
    run_for(&r, 3, 1.0);
    assert_false(r.timed_out);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r.results[i], HC_FAIL);
    assert_int_equal(r.n_changes, 0); /* never healthy */
    run_teardown(&r);
}

/* A wrong TCP answer counts toward unhealthy_threshold (unlike an HTTP status). */
static void test_tcp_wrong_answer_counts_toward_threshold(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {{"ABCD", 0, true}, {"nope", 0, true}};
    r.srv.replies = replies;
    r.srv.n_replies = 2;
    r.srv.tcp = true;
    r.srv.tcp_expect = 4;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = tcp_cfg();
    cfg.unhealthy_threshold = 3;
    start_checker(&r, &cfg);
    run_for(&r, 3, 1.0);
    assert_int_equal(r.results[0], HC_PASS);
    assert_int_equal(r.results[1], HC_FAIL);
    assert_int_equal(r.results[2], HC_FAIL);
    assert_true(hc_host_healthy(r.hc));
    run_for(&r, 4, 1.0);
    assert_false(hc_host_healthy(r.hc));
    assert_int_equal(r.change_after[1], 4);
    run_teardown(&r);
}

static void test_tcp_plain_connect(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {{NULL, 0, false}};
    r.srv.replies = replies;
    r.srv.n_replies = 1;
    r.srv.tcp = true;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    cfg.kind = HC_TCP;
    start_checker(&r, &cfg);
    run_for(&r, 3, 1.0);
    assert_false(r.timed_out);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r.results[i], HC_PASS);
    assert_true(hc_host_healthy(r.hc));
    drain(&r);
    assert_int_equal(r.srv.accepts, 3); /* a new connection each time */
    assert_int_equal(r.srv.peer_closes, 3);
    run_teardown(&r);
}

/* --- scheduling and ownership ---------------------------------------------------------- */

static void test_no_traffic_interval_and_resume(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {{OK_200, 0, false}};
    r.srv.replies = replies;
    r.srv.n_replies = 1;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    cfg.no_traffic_interval_ms = 100;
    start_checker(&r, &cfg);
    hc_host_set_traffic(r.hc, false);
    run_for(&r, 1000, 0.25); /* at 0, 100 and 200 ms: not every 10 ms */
    assert_true(r.timed_out);
    assert_true(r.n_results >= 2 && r.n_results <= 4);
    int before = r.n_results;
    hc_host_set_traffic(r.hc, true); /* the 100 ms wait is cut short */
    ev_now_update(r.loop);
    double t = ev_now(r.loop);
    run_for(&r, before + 1, 1.0);
    assert_false(r.timed_out);
    assert_true(r.result_at[before] - t < 0.05);
    run_teardown(&r);
}

static void test_unhealthy_interval_used_while_unhealthy(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    fake_listen(&r.srv, 0);
    uint16_t port = r.srv.port;
    fake_shut(&r.srv);
    r.srv.port = port;
    struct cfg_health_check cfg = http_cfg();
    cfg.unhealthy_interval_ms = 100;
    start_checker(&r, &cfg);
    run_for(&r, 1000, 0.25);
    assert_true(r.n_results >= 2 && r.n_results <= 4);
    run_teardown(&r);
}

static void test_stop_from_on_change(void **state)
{
    (void)state;
    struct run r;
    run_setup(&r);
    static const struct reply replies[] = {{OK_200, 0, false}};
    r.srv.replies = replies;
    r.srv.n_replies = 1;
    fake_listen(&r.srv, 0);
    struct cfg_health_check cfg = http_cfg();
    r.stop_in_on_change = true;
    start_checker(&r, &cfg);
    run_for(&r, 1000, 0.2);
    assert_false(r.timed_out); /* broken by on_change, which freed the checker */
    assert_null(r.hc);
    assert_int_equal(r.n_results, 1);
    run_teardown(&r);
}

static void test_ipv6(void **state)
{
    (void)state;
    int lfd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 4) != 0) {
        if (lfd >= 0)
            close(lfd);
        skip(); /* no IPv6 loopback here */
    }
    socklen_t len = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &len);
    struct run r;
    run_setup(&r);
    struct cfg_health_check cfg = http_cfg();
    cfg.kind = HC_TCP;
    r.hc = hc_host_start(r.loop, &cfg, "v6", (struct sockaddr *)&a, sizeof(a), &callbacks, &r, 7);
    assert_non_null(r.hc);
    run_for(&r, 1, 1.0);
    assert_int_equal(r.results[0], HC_PASS);
    run_teardown(&r);
    close(lfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_pass_turns_healthy),
        cmocka_unit_test(test_unexpected_status_fails_at_once),
        cmocka_unit_test(test_refused_needs_threshold_and_recovery_needs_passes),
        cmocka_unit_test(test_startup_failure_then_threshold),
        cmocka_unit_test(test_timeout_is_network_failure),
        cmocka_unit_test(test_expected_status_ranges),
        cmocka_unit_test(test_default_expected_status_is_200),
        cmocka_unit_test(test_request_carries_host_user_agent_and_added_headers),
        cmocka_unit_test(test_host_defaults_to_cluster_name),
        cmocka_unit_test(test_keep_alive_reuses_the_connection),
        cmocka_unit_test(test_no_reuse_connects_every_time),
        cmocka_unit_test(test_connection_close_reconnects),
        cmocka_unit_test(test_split_bodies_read_fully),
        cmocka_unit_test(test_garbage_and_truncated_answers_are_network_failures),
        cmocka_unit_test(test_interim_response_is_skipped),
        cmocka_unit_test(test_bytes_after_the_response_end_the_connection),
        cmocka_unit_test(test_tcp_pieces_in_order_pass),
        cmocka_unit_test(test_tcp_pieces_out_of_order_fail),
        cmocka_unit_test(test_tcp_wrong_answer_counts_toward_threshold),
        cmocka_unit_test(test_tcp_plain_connect),
        cmocka_unit_test(test_no_traffic_interval_and_resume),
        cmocka_unit_test(test_unhealthy_interval_used_while_unhealthy),
        cmocka_unit_test(test_stop_from_on_change),
        cmocka_unit_test(test_ipv6),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

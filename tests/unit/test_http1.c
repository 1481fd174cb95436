/* Unit tests for the HTTP/1 codec (worker/http1.c).
 *
 * Every message is run several ways: in one feed, one byte per feed, and in
 * random splits; the recorded events (head, coalesced body, completion, error
 * status and reason) must be identical. Each feed gets its own heap copy of the
 * bytes, freed right after the call, so ASan catches a parser that keeps
 * pointers into the caller's buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "worker/http1.h"

#define S(lit) lit, sizeof(lit) - 1
#define N_RANDOM_SPLITS 16

/* ---- growable string ---- */

struct str {
    char *s;
    size_t len, cap;
};

static void str_add(struct str *b, const char *d, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->s = realloc(b->s, cap);
        assert_non_null(b->s);
        b->cap = cap;
    }
    memcpy(b->s + b->len, d, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void str_fmt(struct str *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    char *tmp = malloc((size_t)n + 1);
    assert_non_null(tmp);
    va_start(ap, fmt);
    vsnprintf(tmp, (size_t)n + 1, fmt, ap);
    va_end(ap);
    str_add(b, tmp, (size_t)n);
    free(tmp);
}

/* ---- event recorder ---- */

struct rec {
    struct str log;
    struct str head_text; /* the head as serialized in on_head */
    const struct h1_head *head;
    struct h1_parser *parser;
    int heads, bodies, completes;
    bool in_body;
    int stop_in; /* 1: on_head returns -1, 2: on_body, 3: on_complete */
    bool resume_in_complete;
};

static const char *body_kind(enum h1_body b)
{
    switch (b) {
    case H1_BODY_NONE:
        return "none";
    case H1_BODY_LENGTH:
        return "len";
    case H1_BODY_CHUNKED:
        return "chunked";
    case H1_BODY_EOF:
        return "eof";
    }
    return "?";
}

static void serialize_head(struct str *b, const struct h1_head *h)
{
    if (h->method != NULL) {
        assert_int_equal(strlen(h->path), h->path_len);
        str_fmt(b, "REQ %s %s host=%s", h->method, h->path, h->authority ? h->authority : "-");
        if (h->authority)
            assert_int_equal(strlen(h->authority), h->authority_len);
    } else {
        str_fmt(b, "RES %d [%s]", h->status, h->reason);
    }
    str_fmt(b, " %d.%d ka=%d exp=%d up=%d body=%s", h->version_major, h->version_minor,
            h->keep_alive, h->expect_continue, h->upgrade, body_kind(h->body));
    if (h->body == H1_BODY_LENGTH)
        str_fmt(b, ":%llu", (unsigned long long)h->content_length);
    str_add(b, S("\n"));
    for (size_t i = 0; i < h->n_headers; i++) {
        str_add(b, S("  "));
        str_add(b, h->headers[i].name, h->headers[i].name_len);
        str_add(b, S(": ["));
        str_add(b, h->headers[i].value, h->headers[i].value_len);
        str_add(b, S("]\n"));
    }
}

static int rec_on_head(void *ctx, const struct h1_head *h)
{
    struct rec *r = ctx;
    r->heads++;
    r->in_body = false;
    r->head = h;
    r->head_text.len = 0;
    serialize_head(&r->head_text, h);
    str_add(&r->log, r->head_text.s, r->head_text.len);
    return r->stop_in == 1 ? -1 : 0;
}

static int rec_on_body(void *ctx, const char *d, size_t n)
{
    struct rec *r = ctx;
    r->bodies++;
    if (!r->in_body)
        str_add(&r->log, S("BODY["));
    r->in_body = true;
    str_add(&r->log, d, n);
    return r->stop_in == 2 ? -1 : 0;
}

static int rec_on_complete(void *ctx)
{
    struct rec *r = ctx;
    r->completes++;
    if (r->in_body)
        str_add(&r->log, S("]\n"));
    r->in_body = false;
    /* The head must still be intact although the caller's buffers that held it
     * are long gone (ASan would flag a use-after-free). */
    struct str again = {0};
    serialize_head(&again, r->head);
    assert_string_equal(again.s, r->head_text.s);
    free(again.s);
    str_add(&r->log, S("DONE\n"));
    if (r->resume_in_complete)
        h1_parser_resume(r->parser);
    return r->stop_in == 3 ? -1 : 0;
}

static const struct h1_callbacks rec_cb = {rec_on_head, rec_on_body, rec_on_complete};

static void rec_free(struct rec *r)
{
    free(r->log.s);
    free(r->head_text.s);
}

/* ---- drivers ---- */

struct outcome {
    struct str log; /* events, then the error/finish result */
    int heads, completes;
    int status;
};

static uint64_t rng_state;

static size_t rng(size_t bound)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (size_t)((rng_state >> 33) % bound);
}

enum split { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM };

/* Deliver msg like a connection would: reads of some size appended to a read
 * buffer; the parser is fed from it, consumed bytes are dropped, and a stopped
 * parser is resumed (pipelining). At the end, optionally, the peer closes. */
static void drive(enum h1_kind kind, const char *msg, size_t len, enum split split, bool finish,
                  bool is_head, struct outcome *out)
{
    struct rec r = {0};
    struct h1_parser *p = h1_parser_new(kind, &rec_cb, &r);
    assert_non_null(p);
    r.parser = p;
    h1_parser_expect_head_response(p, is_head);
    char *pend = NULL;
    size_t plen = 0, off = 0;
    bool failed = false;
    while (off < len && !failed) {
        size_t n = split == SPLIT_WHOLE ? len - off : split == SPLIT_BYTES ? 1 : 1 + rng(64);
        if (n > len - off)
            n = len - off;
        pend = realloc(pend, plen + n);
        assert_non_null(pend);
        memcpy(pend + plen, msg + off, n);
        plen += n;
        off += n;
        for (;;) {
            /* A fresh heap copy per call, freed afterwards. */
            char *copy = malloc(plen ? plen : 1);
            assert_non_null(copy);
            memcpy(copy, pend, plen);
            ssize_t c = h1_parser_feed(p, copy, plen);
            free(copy);
            if (c < 0) {
                failed = true;
                break;
            }
            assert_true((size_t)c <= plen);
            memmove(pend, pend + c, plen - (size_t)c);
            plen -= (size_t)c;
            if (h1_parser_is_stopped(p)) {
                h1_parser_resume(p);
                continue;
            }
            assert_int_equal(plen, 0); /* a running parser takes everything */
            break;
        }
    }
    free(pend);
    int frc = 0;
    if (!failed && finish)
        frc = h1_parser_finish(p); /* may complete a message: DONE goes to r.log */
    if (r.in_body)
        str_add(&r.log, S("]\n"));
    str_add(&out->log, r.log.s ? r.log.s : "", r.log.len);
    if (failed) {
        out->status = h1_parser_error_status(p);
        str_fmt(&out->log, "ERROR %d %s\n", out->status, h1_parser_error_reason(p));
    } else if (finish) {
        str_fmt(&out->log, "FINISH %d", frc);
        if (frc < 0) {
            out->status = h1_parser_error_status(p);
            str_fmt(&out->log, " %d %s", out->status, h1_parser_error_reason(p));
        }
        str_fmt(&out->log, " completes=%d\n", r.completes);
    }
    out->heads = r.heads;
    out->completes = r.completes;
    h1_parser_free(p);
    rec_free(&r);
}

/* Run all the ways; check they agree; return the whole-feed outcome. */
static void run_all(enum h1_kind kind, const char *msg, size_t len, bool finish, bool is_head,
                    struct outcome *out)
{
    memset(out, 0, sizeof(*out));
    drive(kind, msg, len, SPLIT_WHOLE, finish, is_head, out);
    struct outcome o = {0};
    drive(kind, msg, len, SPLIT_BYTES, finish, is_head, &o);
    assert_string_equal(o.log.s, out->log.s);
    free(o.log.s);
    for (int i = 0; i < N_RANDOM_SPLITS; i++) {
        memset(&o, 0, sizeof(o));
        rng_state = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1) + len;
        drive(kind, msg, len, SPLIT_RANDOM, finish, is_head, &o);
        assert_string_equal(o.log.s, out->log.s);
        free(o.log.s);
    }
}

static void expect_log(enum h1_kind kind, const char *msg, size_t len, bool finish, bool is_head,
                       const char *want)
{
    struct outcome o;
    run_all(kind, msg, len, finish, is_head, &o);
    assert_string_equal(o.log.s, want);
    free(o.log.s);
}

/* ---- error cases: table-driven, one cmocka test each ---- */

struct bad {
    const char *name;
    enum h1_kind kind;
    const char *msg;
    size_t len;
    int status;
    const char *reason; /* expected reason (substring), or NULL */
    bool after_head;    /* a body-framing error: the (valid) head was reported */
};

#define REQ(name, msg, status, reason)                                                             \
    {                                                                                              \
        name, H1_REQUEST, S(msg), status, reason, false                                            \
    }
#define RES(name, msg, status, reason)                                                             \
    {                                                                                              \
        name, H1_RESPONSE, S(msg), status, reason, false                                           \
    }
#define REQ_BODY(name, msg, reason)                                                                \
    {                                                                                              \
        name, H1_REQUEST, S(msg), 400, reason, true                                                \
    }
#define RES_BODY(name, msg, reason)                                                                \
    {                                                                                              \
        name, H1_RESPONSE, S(msg), 400, reason, true                                               \
    }
#define POST_TE "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
#define POST_H "POST / HTTP/1.1\r\nHost: a\r\n"
#define GET_H "GET / HTTP/1.1\r\nHost: a\r\n"

static const struct bad bad_cases[] = {
    /* RFC 9112 §6.3: Content-Length and Transfer-Encoding together */
    REQ("cl_then_te", POST_H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400, "Content-Length with Transfer-Encoding"),
    REQ("te_then_cl", POST_H "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400, "Content-Length with Transfer-Encoding"),
    REQ("te_gzip_with_cl", POST_H "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello", 400,
        NULL),
    /* Content-Length syntax (RFC 9110 §8.6, RFC 9112 §6.3) */
    REQ("cl_duplicate_equal", POST_H "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400,
        "duplicate Content-Length"),
    REQ("cl_duplicate_differ", POST_H "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400,
        "duplicate Content-Length"),
    REQ("cl_list", POST_H "Content-Length: 5, 5\r\n\r\nhello", 400, "invalid Content-Length"),
    REQ("cl_list_nospace", POST_H "Content-Length: 5,5\r\n\r\nhello", 400,
        "invalid Content-Length"),
    REQ("cl_empty", POST_H "Content-Length: \r\n\r\n", 400, "invalid Content-Length"),
    REQ("cl_empty_nospace", POST_H "Content-Length:\r\n\r\n", 400, "invalid Content-Length"),
    REQ("cl_plus", POST_H "Content-Length: +5\r\n\r\nhello", 400, "invalid Content-Length"),
    REQ("cl_minus", POST_H "Content-Length: -5\r\n\r\nhello", 400, "invalid Content-Length"),
    REQ("cl_hex", POST_H "Content-Length: 0x5\r\n\r\nhello", 400, "invalid Content-Length"),
    REQ("cl_alpha", POST_H "Content-Length: abc\r\n\r\n", 400, "invalid Content-Length"),
    REQ("cl_trailing_junk", POST_H "Content-Length: 5a\r\n\r\nhello", 400,
        "invalid Content-Length"),
    REQ("cl_inner_space", POST_H "Content-Length: 5 5\r\n\r\nhello", 400, "invalid Content-Length"),
    REQ("cl_20_digits_leading_zeros", POST_H "Content-Length: 00000000000000000005\r\n\r\nhello",
        400, "invalid Content-Length"),
    REQ("cl_u64_max", POST_H "Content-Length: 18446744073709551615\r\n\r\n", 400,
        "invalid Content-Length"),
    REQ("cl_overflow", POST_H "Content-Length: 18446744073709551616\r\n\r\n", 400,
        "invalid Content-Length"),
    REQ("cl_huge", POST_H "Content-Length: 99999999999999999999999\r\n\r\n", 400,
        "invalid Content-Length"),
    /* Transfer-Encoding (RFC 9112 §6.1, §6.3): exactly one "chunked" */
    REQ("te_xchunked", POST_H "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400,
        "invalid Transfer-Encoding"),
    REQ("te_chunked_identity", POST_H "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400,
        "invalid Transfer-Encoding"),
    REQ("te_identity_chunked", POST_H "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", 400,
        "invalid Transfer-Encoding"),
    REQ("te_chunked_chunked", POST_H "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400,
        "invalid Transfer-Encoding"),
    REQ("te_two_headers",
        POST_H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
        "duplicate Transfer-Encoding"),
    REQ("te_two_headers_gzip",
        POST_H "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, NULL),
    REQ("te_gzip_chunked", POST_H "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400,
        "invalid Transfer-Encoding"),
    REQ("te_gzip", POST_H "Transfer-Encoding: gzip\r\n\r\n", 400, NULL),
    REQ("te_identity", POST_H "Transfer-Encoding: identity\r\n\r\n", 400, NULL),
    REQ("te_empty", POST_H "Transfer-Encoding: \r\n\r\n", 400, NULL),
    REQ("te_chunked_semicolon", POST_H "Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", 400,
        NULL),
    REQ("te_vt",
        POST_H "Transfer-Encoding: \x0b"
               "chunked\r\n\r\n0\r\n\r\n",
        400, "invalid character in header value"),
    REQ("te_ff",
        POST_H "Transfer-Encoding: \x0c"
               "chunked\r\n\r\n0\r\n\r\n",
        400, "invalid character in header value"),
    REQ("te_vt_no_space",
        POST_H "Transfer-Encoding:\x0b"
               "chunked\r\n\r\n0\r\n\r\n",
        400, "invalid character in header value"),
    REQ("te_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
        "Transfer-Encoding in HTTP/1.0"),
    /* Field syntax (RFC 9112 §2.2, §5) */
    REQ("space_before_colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "whitespace before colon"),
    REQ("tab_before_colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400, "whitespace before colon"),
    REQ("cl_space_before_colon", POST_H "Content-Length : 5\r\n\r\nhello", 400,
        "whitespace before colon"),
    REQ("te_space_before_colon", POST_H "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400,
        "whitespace before colon"),
    REQ("obs_fold_space", GET_H "X-A: b\r\n c\r\n\r\n", 400, "obs-fold is not allowed"),
    REQ("obs_fold_tab", GET_H "X-A: b\r\n\tc\r\n\r\n", 400, "obs-fold is not allowed"),
    REQ("obs_fold_te", POST_H "Transfer-Encoding: gzip\r\n chunked\r\n\r\n0\r\n\r\n", 400,
        "obs-fold is not allowed"),
    REQ("ws_before_first_header_sp", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400,
        "whitespace before the first header field"),
    REQ("ws_before_first_header_tab", "GET / HTTP/1.1\r\n\tHost: a\r\nHost: a\r\n\r\n", 400,
        "whitespace before the first header field"),
    REQ("bare_cr_request_line", "GET / HTTP/1.1\rHost: a\r\n\r\n", 400, "bare CR"),
    REQ("bare_cr_in_target", "GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare CR"),
    REQ("bare_cr_value", GET_H "X-A: a\rb\r\n\r\n", 400, "bare CR"),
    REQ("bare_cr_value_end", GET_H "X-A: a\r\r\n\r\n", 400, "bare CR"),
    REQ("bare_cr_name", GET_H "X-A\r: a\r\n\r\n", 400, NULL),
    REQ("bare_cr_end_of_head", GET_H "\rX", 400, "bare CR"),
    REQ("bare_cr_before_request", "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare CR"),
    REQ("bare_lf_request_line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "bare LF"),
    REQ("bare_lf_header_line", "GET / HTTP/1.1\r\nHost: a\n\r\n", 400, "bare LF"),
    REQ("bare_lf_end_of_head", GET_H "\n", 400, "bare LF"),
    REQ("bare_lf_all", "GET / HTTP/1.1\nHost: a\n\n", 400, "bare LF"),
    REQ("bare_lf_before_request", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare LF"),
    REQ("lf_in_value", GET_H "X-A: a\nb: c\r\n\r\n", 400, "bare LF"),
    REQ("nul_in_value", GET_H "X-A: a\0b\r\n\r\n", 400, "NUL in header value"),
    REQ("nul_in_name", GET_H "X\0A: b\r\n\r\n", 400, "invalid header name"),
    REQ("nul_in_request_line", "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", 400,
        "invalid character in the request line"),
    REQ("del_in_value", GET_H "X-A: a\x7f\r\n\r\n", 400, "invalid character in header value"),
    REQ("esc_in_value", GET_H "X-A: a\x1b[0m\r\n\r\n", 400, "invalid character in header value"),
    REQ("invalid_name_paren", GET_H "X(A): b\r\n\r\n", 400, "invalid header name"),
    REQ("invalid_name_slash", GET_H "X/A: b\r\n\r\n", 400, "invalid header name"),
    REQ("invalid_name_utf8", GET_H "X\xc3\xa9: b\r\n\r\n", 400, "invalid header name"),
    REQ("invalid_name_at_start", GET_H "@A: b\r\n\r\n", 400, "invalid header name"),
    REQ("empty_name", GET_H ": b\r\n\r\n", 400, "empty header name"),
    REQ("name_without_colon", GET_H "X-A\r\n\r\n", 400, "header line without colon"),
    /* Host (RFC 9112 §3.2) */
    REQ("missing_host", "GET / HTTP/1.1\r\n\r\n", 400, "missing Host"),
    REQ("missing_host_absolute", "GET http://a/ HTTP/1.1\r\n\r\n", 400, "missing Host"),
    REQ("two_hosts", GET_H "Host: a\r\n\r\n", 400, "duplicate Host"),
    REQ("two_hosts_http10", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, "duplicate Host"),
    REQ("host_empty", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400, "invalid Host"),
    REQ("host_empty_nospace", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400, "invalid Host"),
    REQ("host_space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host"),
    REQ("host_slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "invalid Host"),
    REQ("host_at", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400, "invalid Host"),
    REQ("host_comma", "GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", 400, "invalid Host"),
    REQ("host_comma_space", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400, "invalid Host"),
    REQ("host_bad_port", "GET / HTTP/1.1\r\nHost: a:x\r\n\r\n", 400, "invalid Host"),
    REQ("host_port_too_big", "GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", 400, "invalid Host"),
    REQ("host_port_too_long", "GET / HTTP/1.1\r\nHost: a:000080\r\n\r\n", 400, "invalid Host"),
    REQ("host_empty_port", "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", 400, "invalid Host"),
    REQ("host_only_port", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400, "invalid Host"),
    REQ("host_two_ports", "GET / HTTP/1.1\r\nHost: a:80:81\r\n\r\n", 400, "invalid Host"),
    REQ("host_bad_ipv6", "GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", 400, "invalid Host"),
    REQ("host_unclosed_ipv6", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, "invalid Host"),
    REQ("host_ipv6_junk", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 400, "invalid Host"),
    REQ("host_bad_pct", "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", 400, "invalid Host"),
    REQ("host_backslash", "GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n", 400, "invalid Host"),
    REQ("host_http10_invalid", "GET / HTTP/1.0\r\nHost: a b\r\n\r\n", 400, "invalid Host"),
    REQ("absolute_bad_host_header", "GET http://a/ HTTP/1.1\r\nHost: a/b\r\n\r\n", 400,
        "invalid Host"),
    /* Versions (RFC 9112 §2.3) */
    REQ("http2_request_line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "unsupported HTTP version"),
    REQ("http3_request_line", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505, "unsupported HTTP version"),
    REQ("http09_request_line", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505,
        "unsupported HTTP version"),
    REQ("version_two_digits", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400, "invalid HTTP version"),
    REQ("version_no_minor", "GET / HTTP/1\r\nHost: a\r\n\r\n", 400, "invalid HTTP version"),
    REQ("version_lowercase", "GET / http/1.1\r\nHost: a\r\n\r\n", 400, "invalid HTTP version"),
    REQ("version_missing", "GET /\r\nHost: a\r\n\r\n", 400, "invalid request line"),
    REQ("version_junk", "GET / HTTP/1.1x\r\nHost: a\r\n\r\n", 400, "invalid HTTP version"),
    /* Request line and target (RFC 9112 §3) */
    REQ("double_space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request line"),
    REQ("trailing_space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "invalid HTTP version"),
    REQ("tab_separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400,
        "invalid character in the request line"),
    REQ("leading_space", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid method"),
    REQ("target_space", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL),
    REQ("tls_client_hello", "\x16\x03\x01\x00\xa5\x01\x00", 400, "invalid method"),
    REQ("binary_after_method", "GET \x01", 400, "invalid character in the request line"),
    REQ("target_utf8", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400,
        "invalid character in the request line"),
    REQ("asterisk_with_get", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL),
    REQ("authority_form_with_get", "GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL),
    REQ("relative_target", "GET foo/bar HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL),
    REQ("fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "fragment in request target"),
    REQ("absolute_fragment", "GET http://a/b#c HTTP/1.1\r\nHost: a\r\n\r\n", 400,
        "fragment in request target"),
    REQ("absolute_userinfo", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL),
    REQ("absolute_ftp", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL),
    REQ("absolute_bad_authority", "GET http://a,b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL),
    REQ("absolute_empty_authority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL),
    REQ("connect", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501,
        "CONNECT is not supported"),
    REQ("connect_origin_form", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 501,
        "CONNECT is not supported"),
    REQ("unknown_method", "FOO / HTTP/1.1\r\nHost: a\r\n\r\n", 501, "unknown method"),
    REQ("unknown_method_prefix", "GE / HTTP/1.1\r\nHost: a\r\n\r\n", 501, "unknown method"),
    REQ("lowercase_method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", 501, "unknown method"),
    REQ("method_not_token", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request line"),
    /* Limits */
    /* (101 headers and 60 KiB + 1 are built at run time: see test_limits) */
    /* Chunked framing (RFC 9112 §7.1): the head is valid and was reported */
    REQ_BODY("chunk_17_digits_leading_zeros", POST_TE "00000000000000005\r\nhello\r\n0\r\n\r\n",
             "chunk size too long"),
    REQ_BODY("chunk_17_digits", POST_TE "10000000000000000\r\n", "chunk size too long"),
    REQ_BODY("chunk_junk_after_size", POST_TE "5x\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    REQ_BODY("chunk_space_then_junk", POST_TE "5 x\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    REQ_BODY("chunk_trailing_space", POST_TE "5 \r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    REQ_BODY("chunk_empty_size_line", POST_TE "\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    REQ_BODY("chunk_negative", POST_TE "-5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    REQ_BODY("chunk_0x", POST_TE "0x5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    REQ_BODY("chunk_plus", POST_TE "+5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    REQ_BODY("chunk_missing_crlf", POST_TE "5\r\nhelloX", "missing CRLF after chunk data"),
    REQ_BODY("chunk_data_too_long", POST_TE "5\r\nhello!\r\n0\r\n\r\n",
             "missing CRLF after chunk data"),
    REQ_BODY("chunk_data_lf_only", POST_TE "5\r\nhello\n0\r\n\r\n",
             "missing CRLF after chunk data"),
    REQ_BODY("chunk_data_cr_only", POST_TE "5\r\nhello\r0\r\n\r\n",
             "missing CRLF after chunk data"),
    REQ_BODY("chunk_size_bare_lf", POST_TE "5\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    REQ_BODY("chunk_size_bare_cr", POST_TE "5\rhello\r\n0\r\n\r\n", "bare CR in chunked framing"),
    REQ_BODY("chunk_last_bare_lf", POST_TE "0\n\r\n", "invalid chunk size"),
    REQ_BODY("chunk_trailer_end_bare_lf", POST_TE "0\r\n\n", "bare LF"),
    REQ_BODY("chunk_ext_bare_lf", POST_TE "5;a=b\nhello\r\n0\r\n\r\n",
             "bare LF in chunked framing"),
    REQ_BODY("chunk_ext_ctl", POST_TE "5;a=\x01\r\nhello\r\n0\r\n\r\n", "invalid chunk extension"),
    REQ_BODY("chunk_ext_nul", POST_TE "5;a\0\r\nhello\r\n0\r\n\r\n", "invalid chunk extension"),
    REQ_BODY("chunk_ws_then_digit", POST_TE "5 5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    REQ_BODY("trailer_obs_fold", POST_TE "0\r\nX-T: a\r\n b\r\n\r\n", "obs-fold is not allowed"),
    REQ_BODY("trailer_bare_cr", POST_TE "0\r\nX-T: a\rb\r\n\r\n", "bare CR"),
    REQ_BODY("trailer_bare_lf", POST_TE "0\r\nX-T: a\n\r\n", "bare LF"),
    REQ_BODY("trailer_space_before_colon", POST_TE "0\r\nX-T : a\r\n\r\n",
             "whitespace before colon"),
    REQ_BODY("trailer_nul", POST_TE "0\r\nX-T: a\0\r\n\r\n", "NUL in header value"),
    REQ_BODY("trailer_leading_ws", POST_TE "0\r\n X-T: a\r\n\r\n", "obs-fold is not allowed"),
    /* Responses get the same syntax checks */
    RES("res_bare_cr", "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n", 400, "bare CR"),
    RES("res_bare_lf", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", 400, "bare LF"),
    RES("res_nul", "HTTP/1.1 200 OK\r\nX-A: a\0\r\nContent-Length: 0\r\n\r\n", 400,
        "NUL in header value"),
    RES("res_obs_fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", 400,
        "obs-fold is not allowed"),
    RES("res_space_before_colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", 400,
        "whitespace before colon"),
    RES("res_cl_te",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
        "Content-Length with Transfer-Encoding"),
    RES("res_cl_differ", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400, "duplicate Content-Length"),
    RES("res_cl_equal", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        400, "duplicate Content-Length"),
    RES("res_cl_invalid", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", 400,
        "invalid Content-Length"),
    RES("res_te_gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", 400,
        "invalid Transfer-Encoding"),
    RES("res_te_chunked_gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400,
        "invalid Transfer-Encoding"),
    RES("res_te_http10", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
        "Transfer-Encoding in HTTP/1.0"),
    RES("res_http2", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", 505,
        "unsupported HTTP version"),
    RES("res_status_2_digits", "HTTP/1.1 99 OK\r\n\r\n", 400, NULL),
    RES("res_status_099", "HTTP/1.1 099 OK\r\n\r\n", 400, "invalid status code"),
    RES("res_status_600", "HTTP/1.1 600 OK\r\n\r\n", 400, "invalid status code"),
    RES("res_status_letters", "HTTP/1.1 2xx OK\r\n\r\n", 400, "invalid status line"),
    RES("res_status_4_digits", "HTTP/1.1 2000 OK\r\n\r\n", 400, "invalid status line"),
    RES("res_reason_ctl", "HTTP/1.1 200 O\x01K\r\n\r\n", 400, "invalid reason phrase"),
    RES("res_ws_before_first_header", "HTTP/1.1 200 OK\r\n Content-Length: 0\r\n\r\n", 400,
        "whitespace before the first header field"),
    RES_BODY("res_chunk_missing_crlf",
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX",
             "missing CRLF after chunk data"),
    RES_BODY("res_chunk_too_long",
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000\r\n",
             "chunk size too long"),
};

static void check_bad(const struct bad *c, const char *msg, size_t len)
{
    struct outcome o;
    run_all(c->kind, msg, len, false, false, &o);
    if (o.status != c->status || (c->reason != NULL && strstr(o.log.s, c->reason) == NULL))
        print_error("case %s: got\n%s", c->name, o.log.s);
    assert_int_equal(o.status, c->status);
    if (c->reason != NULL)
        assert_non_null(strstr(o.log.s, c->reason));
    assert_non_null(strstr(o.log.s, "ERROR "));
    assert_int_equal(o.completes, 0);
    /* Nothing would be forwarded: a head error is found before on_head. */
    assert_int_equal(o.heads, c->after_head ? 1 : 0);
    free(o.log.s);
}

static void test_bad(void **state)
{
    const struct bad *c = *state;
    check_bad(c, c->msg, c->len);
}

/* ---- valid requests ---- */

static void test_simple_get(void **state)
{
    (void)state;
    expect_log(H1_REQUEST,
               S("GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n"
                 "User-Agent:  curl/8 \t\r\nAccept: */*\r\n\r\n"),
               false, false,
               "REQ GET /index.html?q=1 host=example.com 1.1 ka=1 exp=0 up=0 body=none\n"
               "  Host: [example.com]\n"
               "  User-Agent: [curl/8]\n"
               "  Accept: [*/*]\n"
               "DONE\n");
}

static void test_keep_alive_rules(void **state)
{
    (void)state;
    expect_log(H1_REQUEST, S("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), false,
               false,
               "REQ GET / host=a 1.1 ka=0 exp=0 up=0 body=none\n"
               "  Host: [a]\n  Connection: [close]\nDONE\n");
    expect_log(H1_REQUEST, S("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n"), false,
               false,
               "REQ GET / host=a 1.1 ka=0 exp=0 up=0 body=none\n"
               "  Host: [a]\n  Connection: [foo, CLOSE]\nDONE\n");
    expect_log(H1_REQUEST, S("GET / HTTP/1.0\r\n\r\n"), false, false,
               "REQ GET / host=- 1.0 ka=0 exp=0 up=0 body=none\nDONE\n");
    expect_log(H1_REQUEST, S("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), false, false,
               "REQ GET / host=- 1.0 ka=1 exp=0 up=0 body=none\n"
               "  Connection: [Keep-Alive]\nDONE\n");
    expect_log(H1_REQUEST,
               S("GET / HTTP/1.0\r\nConnection: x,keep-alive\r\nConnection: close\r\n\r\n"), false,
               false,
               "REQ GET / host=- 1.0 ka=0 exp=0 up=0 body=none\n"
               "  Connection: [x,keep-alive]\n  Connection: [close]\nDONE\n");
    /* HTTP/1.2: a later 1.x minor is treated as 1.1 (RFC 9112 §2.3). */
    expect_log(H1_REQUEST, S("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), false, false,
               "REQ GET / host=a 1.2 ka=1 exp=0 up=0 body=none\n  Host: [a]\nDONE\n");
}

static void test_absolute_form(void **state)
{
    (void)state;
    expect_log(H1_REQUEST, S("GET http://example.com:8080/x?y HTTP/1.1\r\nHost: other\r\n\r\n"),
               false, false,
               "REQ GET /x?y host=example.com:8080 1.1 ka=1 exp=0 up=0 body=none\n"
               "  Host: [other]\nDONE\n");
    expect_log(H1_REQUEST, S("GET HTTP://Example.com HTTP/1.1\r\nHost: other\r\n\r\n"), false,
               false,
               "REQ GET / host=Example.com 1.1 ka=1 exp=0 up=0 body=none\n"
               "  Host: [other]\nDONE\n");
    expect_log(H1_REQUEST, S("GET https://a.b?q=1 HTTP/1.1\r\nHost: a.b\r\n\r\n"), false, false,
               "REQ GET /?q=1 host=a.b 1.1 ka=1 exp=0 up=0 body=none\n"
               "  Host: [a.b]\nDONE\n");
    expect_log(H1_REQUEST, S("GET http://[::1]:80/p HTTP/1.0\r\n\r\n"), false, false,
               "REQ GET /p host=[::1]:80 1.0 ka=0 exp=0 up=0 body=none\nDONE\n");
}

/* A maximal absolute-form target whose path must be synthesized ("/?...") and
 * whose authority is copied: the derived strings fit the storage reserved. */
static void test_absolute_form_large(void **state)
{
    (void)state;
    struct str b = {0};
    str_add(&b, S("GET http://"));
    for (int i = 0; i < 20000; i++)
        str_add(&b, S("h"));
    str_add(&b, S("?"));
    size_t tail = strlen(" HTTP/1.1\r\nHost: h\r\n\r\n");
    while (b.len + tail < H1_MAX_HEAD_BYTES)
        str_add(&b, S("q"));
    str_add(&b, S(" HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert_int_equal(b.len, H1_MAX_HEAD_BYTES);
    struct outcome o;
    run_all(H1_REQUEST, b.s, b.len, false, false, &o);
    assert_int_equal(o.status, 0);
    assert_int_equal(o.completes, 1);
    assert_non_null(strstr(o.log.s, "REQ GET /?qqq"));
    free(o.log.s);
    free(b.s);
}

static void test_other_targets_and_hosts(void **state)
{
    (void)state;
    expect_log(H1_REQUEST, S("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), false, false,
               "REQ OPTIONS * host=a 1.1 ka=1 exp=0 up=0 body=none\n  Host: [a]\nDONE\n");
    expect_log(H1_REQUEST, S("GET // HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n"), false, false,
               "REQ GET // host=[2001:db8::1]:8443 1.1 ka=1 exp=0 up=0 body=none\n"
               "  Host: [[2001:db8::1]:8443]\nDONE\n");
    expect_log(H1_REQUEST, S("GET / HTTP/1.1\r\nHost: 10.0.0.1:65535\r\n\r\n"), false, false,
               "REQ GET / host=10.0.0.1:65535 1.1 ka=1 exp=0 up=0 body=none\n"
               "  Host: [10.0.0.1:65535]\nDONE\n");
    expect_log(H1_REQUEST, S("GET / HTTP/1.1\r\nHost: xn--bcher-kva.example%41\t \r\n\r\n"), false,
               false,
               "REQ GET / host=xn--bcher-kva.example%41 1.1 ka=1 exp=0 up=0 body=none\n"
               "  Host: [xn--bcher-kva.example%41]\nDONE\n");
    /* Empty lines before the request line are skipped (RFC 9112 §2.2). */
    expect_log(H1_REQUEST, S("\r\n\r\nDELETE /x HTTP/1.1\r\nHost: a\r\n\r\n"), false, false,
               "REQ DELETE /x host=a 1.1 ka=1 exp=0 up=0 body=none\n  Host: [a]\nDONE\n");
    /* Empty values, obs-text in a value, odd-but-legal name characters. */
    expect_log(H1_REQUEST,
               S("GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Sp:   \r\n"
                 "X-Latin: caf\xe9\r\n!#$%&'*+-.^_`|~: v\r\n\r\n"),
               false, false,
               "REQ GET / host=a 1.1 ka=1 exp=0 up=0 body=none\n"
               "  Host: [a]\n  X-Empty: []\n  X-Sp: []\n  X-Latin: [caf\xe9]\n"
               "  !#$%&'*+-.^_`|~: [v]\nDONE\n");
}

static void test_tab_before_chunked(void **state)
{
    (void)state;
    expect_log(H1_REQUEST,
               S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n"
                 "3\r\nabc\r\n0\r\n\r\n"),
               false, false,
               "REQ POST / host=a 1.1 ka=1 exp=0 up=0 body=chunked\n"
               "  Host: [a]\n  Transfer-Encoding: [chunked]\nBODY[abc]\nDONE\n");
    expect_log(H1_REQUEST,
               S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked \t\r\n\r\n"
                 "3\r\nabc\r\n0\r\n\r\n"),
               false, false,
               "REQ POST / host=a 1.1 ka=1 exp=0 up=0 body=chunked\n"
               "  Host: [a]\n  Transfer-Encoding: [Chunked]\nBODY[abc]\nDONE\n");
    /* HTAB in trailing OWS is legal too (http_parser needs our help there). */
    expect_log(H1_REQUEST,
               S("POST / HTTP/1.1\r\nHost: a\t\r\nTransfer-Encoding: chunked\t\r\n\r\n"
                 "3\r\nabc\r\n0\r\n\r\n"),
               false, false,
               "REQ POST / host=a 1.1 ka=1 exp=0 up=0 body=chunked\n"
               "  Host: [a]\n  Transfer-Encoding: [chunked]\nBODY[abc]\nDONE\n");
    expect_log(H1_REQUEST,
               S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\t3 \t \r\nX-A: \tb\t\r\n\r\nabc"),
               false, false,
               "REQ POST / host=a 1.1 ka=1 exp=0 up=0 body=len:3\n"
               "  Host: [a]\n  Content-Length: [3]\n  X-A: [b]\nBODY[abc]\nDONE\n");
}

static void test_chunked_extensions_trailers(void **state)
{
    (void)state;
    expect_log(H1_REQUEST,
               S("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5;foo=bar\r\nhello\r\n"
                 "6 ; x=\"y z\";flag\r\n world\r\n"
                 "A\r\n0123456789\r\n"
                 "0000000000000001\r\n!\r\n"
                 "0;last\r\nX-Trailer: t\r\nX-Other:  u \r\n\r\n"),
               false, false,
               "REQ POST /up host=a 1.1 ka=1 exp=0 up=0 body=chunked\n"
               "  Host: [a]\n  Transfer-Encoding: [chunked]\n"
               "BODY[hello world0123456789!]\nDONE\n");
    /* An empty chunked body, no trailers. */
    expect_log(H1_REQUEST,
               S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
               false, false,
               "REQ POST / host=a 1.1 ka=1 exp=0 up=0 body=chunked\n"
               "  Host: [a]\n  Transfer-Encoding: [chunked]\nDONE\n");
}

/* http_parser only accepts SP before a chunk extension; HT is refused there
 * (stricter than RFC 9112's BWS, which is fine for a proxy). */
static void test_chunk_ext_after_tab(void **state)
{
    (void)state;
    struct outcome o;
    run_all(H1_REQUEST,
            S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5\t;a=b\r\nhello\r\n0\r\n\r\n"),
            false, false, &o);
    assert_int_equal(o.status, 400);
    assert_int_equal(o.completes, 0);
    free(o.log.s);
}

static void test_content_length_body(void **state)
{
    (void)state;
    expect_log(H1_REQUEST,
               S("PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length:  11 \r\n\r\nhello world"), false,
               false,
               "REQ PUT /f host=a 1.1 ka=1 exp=0 up=0 body=len:11\n"
               "  Host: [a]\n  Content-Length: [11]\nBODY[hello world]\nDONE\n");
    expect_log(H1_REQUEST, S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), false,
               false,
               "REQ POST / host=a 1.1 ka=1 exp=0 up=0 body=len:0\n"
               "  Host: [a]\n  Content-Length: [0]\nDONE\n");
    expect_log(H1_REQUEST,
               S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0000000000000000003\r\n\r\nabc"),
               false, false,
               "REQ POST / host=a 1.1 ka=1 exp=0 up=0 body=len:3\n"
               "  Host: [a]\n  Content-Length: [0000000000000000003]\nBODY[abc]\nDONE\n");
}

static void test_pipelined_in_driver(void **state)
{
    (void)state;
    expect_log(H1_REQUEST,
               S("POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                 "GET /2 HTTP/1.1\r\nHost: b\r\n\r\n"
                 "\r\nPOST /3 HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "1\r\nx\r\n0\r\n\r\n"),
               false, false,
               "REQ POST /1 host=a 1.1 ka=1 exp=0 up=0 body=len:3\n"
               "  Host: [a]\n  Content-Length: [3]\nBODY[abc]\nDONE\n"
               "REQ GET /2 host=b 1.1 ka=1 exp=0 up=0 body=none\n  Host: [b]\nDONE\n"
               "REQ POST /3 host=c 1.1 ka=1 exp=0 up=0 body=chunked\n"
               "  Host: [c]\n  Transfer-Encoding: [chunked]\nBODY[x]\nDONE\n");
}

static void test_pipelined_api(void **state)
{
    (void)state;
    static const char two[] =
        "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\n";
    size_t first = strlen("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
    struct rec r = {0};
    struct h1_parser *p = h1_parser_new(H1_REQUEST, &rec_cb, &r);
    r.parser = p;
    assert_true(h1_parser_is_idle(p));
    assert_false(h1_parser_is_stopped(p));
    assert_int_equal(h1_parser_feed(p, two, sizeof(two) - 1), first);
    assert_true(h1_parser_is_stopped(p));
    assert_int_equal(r.heads, 1);
    assert_int_equal(r.completes, 1);
    /* Stopped: consumes nothing. */
    assert_int_equal(h1_parser_feed(p, two + first, sizeof(two) - 1 - first), 0);
    assert_int_equal(r.heads, 1);
    assert_int_equal(h1_parser_finish(p), 0);
    h1_parser_resume(p);
    assert_false(h1_parser_is_stopped(p));
    assert_true(h1_parser_is_idle(p));
    assert_int_equal(h1_parser_feed(p, two + first, 5), 5);
    assert_false(h1_parser_is_idle(p));
    assert_int_equal(h1_parser_finish(p), -1); /* closed mid-head */
    assert_int_equal(h1_parser_error_status(p), 400);
    assert_int_equal(h1_parser_feed(p, two, 3), -1); /* errors are sticky */
    h1_parser_free(p);
    rec_free(&r);

    /* Second message parsed after resume; the head storage is reused. */
    memset(&r, 0, sizeof(r));
    p = h1_parser_new(H1_REQUEST, &rec_cb, &r);
    r.parser = p;
    assert_int_equal(h1_parser_feed(p, two, sizeof(two) - 1), first);
    const char *name1 = r.head->headers[0].name;
    h1_parser_resume(p);
    assert_int_equal(h1_parser_feed(p, two + first, sizeof(two) - 1 - first),
                     sizeof(two) - 1 - first);
    assert_int_equal(r.heads, 2);
    assert_ptr_equal(r.head->headers[0].name, name1);
    assert_string_equal(r.head->path, "/2");
    assert_string_equal(r.head->authority, "b");
    h1_parser_free(p);
    rec_free(&r);
}

static void test_resume_inside_on_complete(void **state)
{
    (void)state;
    static const char two[] =
        "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\n";
    size_t first = strlen("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
    struct rec r = {0};
    r.resume_in_complete = true;
    struct h1_parser *p = h1_parser_new(H1_REQUEST, &rec_cb, &r);
    r.parser = p;
    /* Still returns at the end of the first message, but is ready for more. */
    assert_int_equal(h1_parser_feed(p, two, sizeof(two) - 1), first);
    assert_false(h1_parser_is_stopped(p));
    assert_int_equal(h1_parser_feed(p, two + first, sizeof(two) - 1 - first),
                     sizeof(two) - 1 - first);
    assert_int_equal(r.heads, 2);
    assert_int_equal(r.completes, 2);
    h1_parser_free(p);
    rec_free(&r);
}

static void test_expect_continue(void **state)
{
    (void)state;
    expect_log(H1_REQUEST,
               S("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx"),
               false, false,
               "REQ PUT / host=a 1.1 ka=1 exp=1 up=0 body=len:1\n"
               "  Host: [a]\n  Expect: [100-Continue]\n  Content-Length: [1]\nBODY[x]\nDONE\n");
    expect_log(H1_REQUEST,
               S("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx"), false,
               false,
               "REQ PUT / host=- 1.0 ka=0 exp=0 up=0 body=len:1\n"
               "  Expect: [100-continue]\n  Content-Length: [1]\nBODY[x]\nDONE\n");
    expect_log(H1_REQUEST, S("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"), false, false,
               "REQ PUT / host=a 1.1 ka=1 exp=0 up=0 body=none\n"
               "  Host: [a]\n  Expect: [200-ok]\nDONE\n");
}

static void test_upgrade(void **state)
{
    (void)state;
    expect_log(H1_REQUEST,
               S("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
                 "Upgrade: websocket\r\n\r\n"),
               false, false,
               "REQ GET /ws host=a 1.1 ka=1 exp=0 up=1 body=none\n"
               "  Host: [a]\n  Connection: [keep-alive, Upgrade]\n  Upgrade: [websocket]\nDONE\n");
    /* Upgrade without the Connection token is not an upgrade. */
    expect_log(H1_REQUEST, S("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"), false,
               false,
               "REQ GET /ws host=a 1.1 ka=1 exp=0 up=0 body=none\n"
               "  Host: [a]\n  Upgrade: [websocket]\nDONE\n");
}

/* Builds "GET / HTTP/1.1" + Host + n-1 more fields, padded to total bytes. */
static char *build_head(size_t n_fields, size_t total, size_t *len)
{
    struct str b = {0};
    str_add(&b, S("GET / HTTP/1.1\r\nHost: a\r\n"));
    for (size_t i = 1; i < n_fields; i++)
        str_fmt(&b, "X-F%zu: v\r\n", i);
    if (total > 0) {
        /* One padding field brings the head (through the final CRLF) to total. */
        size_t fixed = b.len + strlen("X-Pad: ") + 2 + 2;
        assert_true(total >= fixed);
        str_add(&b, S("X-Pad: "));
        for (size_t i = fixed; i < total; i++)
            str_add(&b, S("p"));
        str_add(&b, S("\r\n"));
    }
    str_add(&b, S("\r\n"));
    if (total > 0)
        assert_int_equal(b.len, total);
    *len = b.len;
    return b.s;
}

static void test_limits(void **state)
{
    (void)state;
    size_t len;
    struct outcome o;

    char *m = build_head(100, 0, &len);
    run_all(H1_REQUEST, m, len, false, false, &o);
    assert_int_equal(o.status, 0);
    assert_int_equal(o.completes, 1);
    free(o.log.s);
    free(m);

    m = build_head(101, 0, &len);
    struct bad c = {"101_headers", H1_REQUEST, NULL, 0, 431, "too many headers", false};
    check_bad(&c, m, len);
    free(m);

    /* Exactly 60 KiB of head (with the padding field: 100 fields in all). */
    m = build_head(99, H1_MAX_HEAD_BYTES, &len);
    run_all(H1_REQUEST, m, len, false, false, &o);
    assert_int_equal(o.status, 0);
    assert_int_equal(o.completes, 1);
    free(o.log.s);
    free(m);

    m = build_head(1, H1_MAX_HEAD_BYTES + 1, &len);
    struct bad c2 = {"head_too_large", H1_REQUEST, NULL, 0, 431, "header too large", false};
    check_bad(&c2, m, len);
    free(m);

    /* Same limits on responses. */
    struct str b = {0};
    str_add(&b, S("HTTP/1.1 200 OK\r\n"));
    for (int i = 0; i < 101; i++)
        str_fmt(&b, "X-F%d: v\r\n", i);
    str_add(&b, S("Content-Length: 0\r\n\r\n"));
    struct bad c3 = {"res_101_headers", H1_RESPONSE, NULL, 0, 431, "too many headers", false};
    check_bad(&c3, b.s, b.len);
    b.len = 0;
    str_add(&b, S("HTTP/1.1 200 OK\r\nX-Big: "));
    while (b.len < H1_MAX_HEAD_BYTES)
        str_add(&b, S("x"));
    str_add(&b, S("\r\n\r\n"));
    struct bad c4 = {"res_too_large", H1_RESPONSE, NULL, 0, 431, "header too large", false};
    check_bad(&c4, b.s, b.len);

    /* Trailer section: same bounds. */
    b.len = 0;
    str_add(&b, S(POST_TE "0\r\n"));
    for (int i = 0; i < 101; i++)
        str_fmt(&b, "X-T%d: v\r\n", i);
    str_add(&b, S("\r\n"));
    struct bad c5 = {"too_many_trailers", H1_REQUEST, NULL, 0, 400, NULL, true};
    c5.status = 431;
    c5.reason = "too many trailer fields";
    check_bad(&c5, b.s, b.len);

    /* An over-long chunk extension. */
    b.len = 0;
    str_add(&b, S(POST_TE "1;x="));
    for (int i = 0; i < 5000; i++)
        str_add(&b, S("e"));
    str_add(&b, S("\r\nx\r\n0\r\n\r\n"));
    struct bad c6 = {"chunk_ext_too_long",       H1_REQUEST, NULL, 0, 400,
                     "chunk extension too long", true};
    check_bad(&c6, b.s, b.len);
    free(b.s);
}

/* ---- responses ---- */

static void test_response_content_length(void **state)
{
    (void)state;
    expect_log(H1_RESPONSE, S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), false, false,
               "RES 200 [OK] 1.1 ka=1 exp=0 up=0 body=len:5\n"
               "  Content-Length: [5]\nBODY[hello]\nDONE\n");
    expect_log(H1_RESPONSE, S("HTTP/1.1 404 Not  Found \r\nContent-Length: 0\r\n\r\n"), false,
               false,
               "RES 404 [Not  Found ] 1.1 ka=1 exp=0 up=0 body=len:0\n"
               "  Content-Length: [0]\nDONE\n");
    expect_log(H1_RESPONSE, S("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), false, false,
               "RES 200 [] 1.1 ka=1 exp=0 up=0 body=len:0\n  Content-Length: [0]\nDONE\n");
    expect_log(H1_RESPONSE,
               S("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"), false,
               false,
               "RES 200 [OK] 1.0 ka=1 exp=0 up=0 body=len:2\n"
               "  Connection: [keep-alive]\n  Content-Length: [2]\nBODY[ok]\nDONE\n");
}

static void test_response_chunked(void **state)
{
    (void)state;
    expect_log(H1_RESPONSE,
               S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "4\r\nWiki\r\n5;x\r\npedia\r\n0\r\nExpires: never\r\n\r\n"),
               false, false,
               "RES 200 [OK] 1.1 ka=1 exp=0 up=0 body=chunked\n"
               "  Transfer-Encoding: [chunked]\nBODY[Wikipedia]\nDONE\n");
}

static void test_response_close_delimited(void **state)
{
    (void)state;
    expect_log(H1_RESPONSE, S("HTTP/1.1 200 OK\r\nServer: x\r\n\r\nall of this is body"), true,
               false,
               "RES 200 [OK] 1.1 ka=0 exp=0 up=0 body=eof\n"
               "  Server: [x]\nBODY[all of this is body]\nDONE\nFINISH 0 completes=1\n");
    expect_log(H1_RESPONSE, S("HTTP/1.0 200 OK\r\n\r\n"), true, false,
               "RES 200 [OK] 1.0 ka=0 exp=0 up=0 body=eof\nDONE\nFINISH 0 completes=1\n");
}

static void test_response_no_body(void **state)
{
    (void)state;
    /* HEAD: Content-Length describes the GET response; nothing follows. */
    expect_log(H1_RESPONSE,
               S("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
               false, true,
               "RES 200 [OK] 1.1 ka=1 exp=0 up=0 body=none\n  Content-Length: [1234]\nDONE\n"
               "RES 200 [OK] 1.1 ka=1 exp=0 up=0 body=none\n"
               "  Transfer-Encoding: [chunked]\nDONE\n");
    expect_log(H1_RESPONSE, S("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"), false, false,
               "RES 204 [No Content] 1.1 ka=1 exp=0 up=0 body=none\n"
               "  Content-Length: [7]\nDONE\n");
    expect_log(H1_RESPONSE, S("HTTP/1.1 204 No Content\r\n\r\n"), true, false,
               "RES 204 [No Content] 1.1 ka=1 exp=0 up=0 body=none\nDONE\nFINISH 0 completes=1\n");
    expect_log(H1_RESPONSE,
               S("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: \"x\"\r\n\r\n"), false,
               false,
               "RES 304 [Not Modified] 1.1 ka=1 exp=0 up=0 body=none\n"
               "  Content-Length: [99]\n  ETag: [\"x\"]\nDONE\n");
}

static void test_response_interim(void **state)
{
    (void)state;
    expect_log(H1_RESPONSE,
               S("HTTP/1.1 100 Continue\r\n\r\n"
                 "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
               false, false,
               "RES 100 [Continue] 1.1 ka=1 exp=0 up=0 body=none\nDONE\n"
               "RES 103 [Early Hints] 1.1 ka=1 exp=0 up=0 body=none\n"
               "  Link: [</s.css>; rel=preload]\nDONE\n"
               "RES 200 [OK] 1.1 ka=1 exp=0 up=0 body=len:2\n"
               "  Content-Length: [2]\nBODY[ok]\nDONE\n");
    /* 1xx to a HEAD request, then the final HEAD response: the flag stays. */
    expect_log(H1_RESPONSE,
               S("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"),
               false, true,
               "RES 100 [Continue] 1.1 ka=1 exp=0 up=0 body=none\nDONE\n"
               "RES 200 [OK] 1.1 ka=1 exp=0 up=0 body=none\n  Content-Length: [9]\nDONE\n");
    expect_log(H1_RESPONSE,
               S("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                 "Upgrade: websocket\r\n\r\n"),
               false, false,
               "RES 101 [Switching Protocols] 1.1 ka=1 exp=0 up=1 body=none\n"
               "  Connection: [Upgrade]\n  Upgrade: [websocket]\nDONE\n");
}

static void test_response_truncated(void **state)
{
    (void)state;
    expect_log(H1_RESPONSE, S("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"), true, false,
               "RES 200 [OK] 1.1 ka=1 exp=0 up=0 body=len:10\n"
               "  Content-Length: [10]\nBODY[hello]\n"
               "FINISH -1 400 connection closed in the message body completes=0\n");
    expect_log(H1_RESPONSE,
               S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"), true,
               false,
               "RES 200 [OK] 1.1 ka=1 exp=0 up=0 body=chunked\n"
               "  Transfer-Encoding: [chunked]\nBODY[hello]\n"
               "FINISH -1 400 connection closed in the message body completes=0\n");
    expect_log(H1_RESPONSE, S("HTTP/1.1 200 OK\r\nContent-"), true, false,
               "FINISH -1 400 connection closed in the message head completes=0\n");
    expect_log(H1_RESPONSE, S("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), true, false,
               "RES 200 [OK] 1.1 ka=1 exp=0 up=0 body=len:0\n"
               "  Content-Length: [0]\nDONE\nFINISH 0 completes=1\n");
    expect_log(H1_REQUEST, S(""), true, false, "FINISH 0 completes=0\n");
}

/* ---- callbacks stopping the parser, zero copy ---- */

static void test_callback_stop(void **state)
{
    (void)state;
    static const char m[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    for (int where = 1; where <= 3; where++) {
        struct rec r = {0};
        r.stop_in = where;
        struct h1_parser *p = h1_parser_new(H1_REQUEST, &rec_cb, &r);
        r.parser = p;
        assert_int_equal(h1_parser_feed(p, m, sizeof(m) - 1), -1);
        assert_int_equal(h1_parser_error_status(p), 0);
        assert_int_equal(h1_parser_feed(p, m, 1), -1);
        h1_parser_free(p);
        rec_free(&r);
    }
}

static const char *zc_base;
static size_t zc_len;
static int zc_calls;

static int zc_on_body(void *ctx, const char *d, size_t n)
{
    (void)ctx;
    assert_true(d >= zc_base && d + n <= zc_base + zc_len);
    zc_calls++;
    return 0;
}

static void test_body_zero_copy(void **state)
{
    (void)state;
    static const char m[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    struct h1_callbacks cb = {NULL, zc_on_body, NULL};
    struct h1_parser *p = h1_parser_new(H1_REQUEST, &cb, NULL);
    zc_base = m;
    zc_len = sizeof(m) - 1;
    assert_int_equal(h1_parser_feed(p, m, sizeof(m) - 1), sizeof(m) - 1);
    assert_int_equal(zc_calls, 2);
    h1_parser_free(p);
}

/* ---- mutation: hostile variants of valid messages ---- */

/* Valid messages, mutated at random (bytes replaced or inserted from a set of
 * framing-relevant characters, or removed): whatever the result, every way of
 * splitting it must give the same events and the same verdict, and the
 * sanitizers must stay quiet. */
static void test_mutations(void **state)
{
    (void)state;
    static const struct {
        enum h1_kind kind;
        const char *msg;
    } seeds[] = {
        {H1_REQUEST, "POST /a?b HTTP/1.1\r\nHost: h:1\r\nContent-Length: 5\r\n\r\nhello"
                     "GET / HTTP/1.1\r\nHost: h\r\n\r\n"},
        {H1_REQUEST, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.0\r\n\r\n"},
        {H1_REQUEST, "GET http://h:8/p HTTP/1.1\r\nHost: h\r\nConnection: a, close\r\n"
                     "Expect: 100-continue\r\n\r\n"},
        {H1_RESPONSE, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                      "HTTP/1.1 204 No Content\r\n\r\n"},
        {H1_RESPONSE, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
                      "HTTP/1.0 200 OK\r\n\r\nrest"},
    };
    static const char alphabet[] = "\r\n \t\0:;,0aF\x0b\x7f\xff/?#@[]";
    rng_state = 42;
    for (int round = 0; round < 400; round++) {
        size_t si = rng(sizeof(seeds) / sizeof(seeds[0]));
        struct str m = {0};
        str_add(&m, seeds[si].msg, strlen(seeds[si].msg));
        int edits = 1 + (int)rng(3);
        for (int e = 0; e < edits; e++) {
            size_t pos = rng(m.len);
            char c = alphabet[rng(sizeof(alphabet) - 1)];
            switch (rng(3)) {
            case 0:
                m.s[pos] = c;
                break;
            case 1:
                str_add(&m, " ", 1); /* grow by one, then shift */
                memmove(m.s + pos + 1, m.s + pos, m.len - pos - 1);
                m.s[pos] = c;
                break;
            default:
                memmove(m.s + pos, m.s + pos + 1, m.len - pos - 1);
                m.len--;
                break;
            }
        }
        uint64_t saved = rng_state;
        struct outcome o;
        run_all(seeds[si].kind, m.s, m.len, true, false, &o);
        rng_state = saved;
        free(o.log.s);
        free(m.s);
    }
}

/* ---- helpers ---- */

struct hop_probe {
    bool seen, secret_hop, public_hop;
};

static int hop_probe_on_head(void *ctx, const struct h1_head *h)
{
    struct hop_probe *pr = ctx;
    pr->seen = true;
    for (size_t i = 0; i < h->n_headers; i++) {
        if (h1_header_is(&h->headers[i], "x-secret"))
            pr->secret_hop = h1_header_is_hop_by_hop(h, &h->headers[i]);
        if (h1_header_is(&h->headers[i], "x-public"))
            pr->public_hop = h1_header_is_hop_by_hop(h, &h->headers[i]);
    }
    return 0;
}

static void parse_hop_probe(struct hop_probe *pr, const char *request)
{
    struct h1_callbacks cb = {.on_head = hop_probe_on_head};
    struct h1_parser *p = h1_parser_new(H1_REQUEST, &cb, pr);
    assert_non_null(p);
    assert_true(h1_parser_feed(p, request, strlen(request)) > 0);
    h1_parser_free(p);
}

static struct h1_header hdr(const char *name, const char *value)
{
    struct h1_header h = {name, strlen(name), value, strlen(value)};
    return h;
}

static void test_helpers(void **state)
{
    (void)state;
    struct h1_header hs[] = {
        hdr("Host", "a"),
        hdr("Connection", "keep-alive, X-Secret ,"),
        hdr("connection", "close"),
        hdr("X-Secret", "s"),
        hdr("X-Public", "p"),
        hdr("Keep-Alive", "timeout=5"),
        hdr("TE", "trailers"),
        hdr("Trailer", "X"),
        hdr("Proxy-Connection", "x"),
        hdr("Upgrade", "h2c"),
        hdr("Transfer-Encoding", "chunked"),
        hdr("Content-Length", "1"),
        hdr("Close", "?"),
        hdr("X-Secret-2", "s"),
    };
    struct h1_head head = {0};
    head.headers = hs;
    head.n_headers = sizeof(hs) / sizeof(hs[0]);
    head.connection_names_fields = true; /* as the parser sets it for this head */

    assert_true(h1_header_is(&hs[0], "host"));
    assert_true(h1_header_is(&hs[0], "HOST"));
    assert_false(h1_header_is(&hs[0], "hos"));
    assert_false(h1_header_is(&hs[0], "hostx"));

    bool want[] = {false, true, true, true, false, true, true,
                   true,  true, true, true, true,  true, false};
    for (size_t i = 0; i < head.n_headers; i++)
        assert_int_equal(h1_header_is_hop_by_hop(&head, &hs[i]), want[i]);

    /* Through the parser: a field named by Connection is hop-by-hop; without
     * a Connection field, or with one that says only keep-alive, only the
     * fixed ones are. */
    struct hop_probe pr = {0};
    parse_hop_probe(&pr, "GET / HTTP/1.1\r\nHost: a\r\nX-Secret: s\r\nX-Public: p\r\n"
                         "Connection: x-secret\r\n\r\n");
    assert_true(pr.seen);
    assert_true(pr.secret_hop);
    assert_false(pr.public_hop);
    pr = (struct hop_probe){0};
    parse_hop_probe(&pr, "GET / HTTP/1.1\r\nHost: a\r\nX-Secret: s\r\nX-Public: p\r\n\r\n");
    assert_true(pr.seen);
    assert_false(pr.secret_hop);
    assert_false(pr.public_hop);
    pr = (struct hop_probe){0};
    parse_hop_probe(&pr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive\r\n"
                         "X-Secret: s\r\nConnection: upgrade, X-SECRET\r\n\r\n");
    assert_true(pr.seen);
    assert_true(pr.secret_hop);

    assert_string_equal(h1_reason_phrase(100), "Continue");
    assert_string_equal(h1_reason_phrase(200), "OK");
    assert_string_equal(h1_reason_phrase(204), "No Content");
    assert_string_equal(h1_reason_phrase(304), "Not Modified");
    assert_string_equal(h1_reason_phrase(400), "Bad Request");
    assert_string_equal(h1_reason_phrase(404), "Not Found");
    assert_string_equal(h1_reason_phrase(431), "Request Header Fields Too Large");
    assert_string_equal(h1_reason_phrase(501), "Not Implemented");
    assert_string_equal(h1_reason_phrase(502), "Bad Gateway");
    assert_string_equal(h1_reason_phrase(503), "Service Unavailable");
    assert_string_equal(h1_reason_phrase(504), "Gateway Timeout");
    assert_string_equal(h1_reason_phrase(505), "HTTP Version Not Supported");
    assert_string_equal(h1_reason_phrase(599), "Unknown");
    assert_string_equal(h1_reason_phrase(0), "Unknown");
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_absolute_form_large),
        cmocka_unit_test(test_other_targets_and_hosts),
        cmocka_unit_test(test_tab_before_chunked),
        cmocka_unit_test(test_chunked_extensions_trailers),
        cmocka_unit_test(test_chunk_ext_after_tab),
        cmocka_unit_test(test_content_length_body),
        cmocka_unit_test(test_pipelined_in_driver),
        cmocka_unit_test(test_pipelined_api),
        cmocka_unit_test(test_resume_inside_on_complete),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_upgrade),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_response_content_length),
        cmocka_unit_test(test_response_chunked),
        cmocka_unit_test(test_response_close_delimited),
        cmocka_unit_test(test_response_no_body),
        cmocka_unit_test(test_response_interim),
        cmocka_unit_test(test_response_truncated),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_body_zero_copy),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_mutations),
    };
    size_t n_fixed = sizeof(fixed) / sizeof(fixed[0]);
    size_t n_bad = sizeof(bad_cases) / sizeof(bad_cases[0]);
    struct CMUnitTest *tests = calloc(n_fixed + n_bad, sizeof(*tests));
    if (tests == NULL)
        return 1;
    memcpy(tests, fixed, sizeof(fixed));
    for (size_t i = 0; i < n_bad; i++) {
        tests[n_fixed + i].name = bad_cases[i].name;
        tests[n_fixed + i].test_func = test_bad;
        tests[n_fixed + i].initial_state = (void *)&bad_cases[i];
    }
    int rc = _cmocka_run_group_tests("http1", tests, n_fixed + n_bad, NULL, NULL);
    free(tests);
    return rc;
}

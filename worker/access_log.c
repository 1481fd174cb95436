#include "worker/access_log.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/config.h"

enum piece_kind {
    P_LITERAL,
    P_START_TIME,
    P_REQ,
    P_RESP,
    P_PROTOCOL,
    P_RESPONSE_CODE,
    P_RESPONSE_FLAGS,
    P_BYTES_RECEIVED,
    P_BYTES_SENT,
    P_DURATION,
    P_UPSTREAM_HOST,
    P_UPSTREAM_CLUSTER,
    P_DOWNSTREAM_REMOTE_ADDRESS,
    P_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT,
};

struct piece {
    enum piece_kind kind;
    char *text; /* literal text, or the header name for REQ/RESP */
    size_t len;
    char *alt;      /* REQ(X?Y): the fallback header, or NULL */
    size_t max_len; /* :N truncation, 0 = none */
};

struct access_log_format {
    struct piece *pieces;
    size_t n;
};

static const struct {
    const char *name;
    enum piece_kind kind;
} simple_ops[] = {
    {"START_TIME", P_START_TIME},
    {"PROTOCOL", P_PROTOCOL},
    {"RESPONSE_CODE", P_RESPONSE_CODE},
    {"RESPONSE_FLAGS", P_RESPONSE_FLAGS},
    {"BYTES_RECEIVED", P_BYTES_RECEIVED},
    {"BYTES_SENT", P_BYTES_SENT},
    {"DURATION", P_DURATION},
    {"UPSTREAM_HOST", P_UPSTREAM_HOST},
    {"UPSTREAM_CLUSTER", P_UPSTREAM_CLUSTER},
    {"DOWNSTREAM_REMOTE_ADDRESS", P_DOWNSTREAM_REMOTE_ADDRESS},
    {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", P_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT},
};

void access_log_format_free(struct access_log_format *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n; i++) {
        free(f->pieces[i].text);
        free(f->pieces[i].alt);
    }
    free(f->pieces);
    free(f);
}

static struct piece *add_piece(struct access_log_format *f, enum piece_kind kind)
{
    struct piece *p = realloc(f->pieces, (f->n + 1) * sizeof(*p));
    if (p == NULL)
        return NULL;
    f->pieces = p;
    p = &f->pieces[f->n++];
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    return p;
}

static char *lower_dup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        d[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
    d[n] = '\0';
    return d;
}

/* Parse the body of %REQ(...)% / %RESP(...)%: "X", "X?Y", then optional ":N". */
static int parse_header_op(struct piece *p, const char *arg, size_t arg_len, const char *after,
                           size_t after_len, char *err, size_t err_cap)
{
    const char *q = memchr(arg, '?', arg_len);
    size_t first = q ? (size_t)(q - arg) : arg_len;
    if (first == 0 || (q && (size_t)(q - arg) + 1 == arg_len)) {
        snprintf(err, err_cap, "empty header name in %%%.*s%%", (int)arg_len, arg);
        return -1;
    }
    p->text = lower_dup(arg, first);
    p->len = first;
    if (q)
        p->alt = lower_dup(q + 1, arg_len - first - 1);
    if (after_len > 0) {
        if (after[0] != ':' || after_len < 2) {
            snprintf(err, err_cap, "bad suffix '%.*s' after a header operator", (int)after_len,
                     after);
            return -1;
        }
        size_t v = 0;
        for (size_t i = 1; i < after_len; i++) {
            if (after[i] < '0' || after[i] > '9' || v > 1000000) {
                snprintf(err, err_cap, "bad length '%.*s' after a header operator", (int)after_len,
                         after);
                return -1;
            }
            v = v * 10 + (size_t)(after[i] - '0');
        }
        p->max_len = v;
    }
    return 0;
}

static int compile_op(struct access_log_format *f, const char *op, size_t len, char *err,
                      size_t err_cap)
{
    for (size_t i = 0; i < sizeof(simple_ops) / sizeof(simple_ops[0]); i++)
        if (strlen(simple_ops[i].name) == len && memcmp(simple_ops[i].name, op, len) == 0)
            return add_piece(f, simple_ops[i].kind) ? 0 : -1;
    bool req = len > 4 && memcmp(op, "REQ(", 4) == 0;
    bool resp = len > 5 && memcmp(op, "RESP(", 5) == 0;
    if (req || resp) {
        const char *arg = op + (req ? 4 : 5);
        const char *close = memchr(arg, ')', len - (size_t)(arg - op));
        if (close == NULL) {
            snprintf(err, err_cap, "unterminated %%%.*s%%", (int)len, op);
            return -1;
        }
        struct piece *p = add_piece(f, req ? P_REQ : P_RESP);
        if (p == NULL)
            return -1;
        return parse_header_op(p, arg, (size_t)(close - arg), close + 1,
                               len - (size_t)(close + 1 - op), err, err_cap);
    }
    snprintf(err, err_cap, "unsupported access log operator %%%.*s%%", (int)len, op);
    return -1;
}

struct access_log_format *access_log_format_compile(const char *format, char *err, size_t err_cap)
{
    if (format == NULL)
        format = ACCESS_LOG_DEFAULT_FORMAT;
    struct access_log_format *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    const char *s = format;
    while (*s) {
        const char *pct = strchr(s, '%');
        if (pct == NULL)
            pct = s + strlen(s);
        if (pct > s) {
            struct piece *p = add_piece(f, P_LITERAL);
            if (p == NULL || (p->text = strndup(s, (size_t)(pct - s))) == NULL)
                goto fail;
            p->len = (size_t)(pct - s);
        }
        if (*pct == '\0')
            break;
        const char *end = strchr(pct + 1, '%');
        if (end == NULL) {
            snprintf(err, err_cap, "unterminated operator at '%s'", pct);
            goto fail;
        }
        if (end == pct + 1) { /* "%%" is a literal percent sign */
            struct piece *p = add_piece(f, P_LITERAL);
            if (p == NULL || (p->text = strdup("%")) == NULL)
                goto fail;
            p->len = 1;
        } else if (compile_op(f, pct + 1, (size_t)(end - pct - 1), err, err_cap) != 0) {
            goto fail;
        }
        s = end + 1;
    }
    return f;
fail:
    access_log_format_free(f);
    return NULL;
}

static void put(struct buf *out, const char *s, size_t len, size_t max_len)
{
    if (s == NULL || len == 0) {
        buf_append(out, "-", 1);
        return;
    }
    if (max_len && len > max_len)
        len = max_len;
    buf_append(out, s, len);
}

static void put_str(struct buf *out, const char *s)
{
    put(out, s, s ? strlen(s) : 0, 0);
}

static void put_start_time(struct buf *out, uint64_t us)
{
    time_t sec = (time_t)(us / 1000000u);
    struct tm tm;
    gmtime_r(&sec, &tm);
    buf_printf(out, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
               tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)((us / 1000u) % 1000u));
}

int access_log_format_render(const struct access_log_format *f, const struct access_log_info *in,
                             struct buf *out)
{
    for (size_t i = 0; i < f->n; i++) {
        const struct piece *p = &f->pieces[i];
        size_t len = 0;
        const char *v;
        switch (p->kind) {
        case P_LITERAL:
            buf_append(out, p->text, p->len);
            break;
        case P_START_TIME:
            put_start_time(out, in->start_time_us);
            break;
        case P_REQ:
        case P_RESP: {
            const char *(*get)(void *, const char *, size_t *) =
                p->kind == P_REQ ? in->req_header : in->resp_header;
            v = get ? get(in->ctx, p->text, &len) : NULL;
            if (v == NULL && p->alt && get)
                v = get(in->ctx, p->alt, &len);
            put(out, v, v ? len : 0, p->max_len);
            break;
        }
        case P_PROTOCOL:
            put_str(out, in->protocol);
            break;
        case P_RESPONSE_CODE:
            buf_printf(out, "%d", in->response_code);
            break;
        case P_RESPONSE_FLAGS:
            put_str(out, in->response_flags);
            break;
        case P_BYTES_RECEIVED:
            buf_printf(out, "%llu", (unsigned long long)in->bytes_received);
            break;
        case P_BYTES_SENT:
            buf_printf(out, "%llu", (unsigned long long)in->bytes_sent);
            break;
        case P_DURATION:
            buf_printf(out, "%llu", (unsigned long long)in->duration_ms);
            break;
        case P_UPSTREAM_HOST:
            put_str(out, in->upstream_host);
            break;
        case P_UPSTREAM_CLUSTER:
            put_str(out, in->upstream_cluster);
            break;
        case P_DOWNSTREAM_REMOTE_ADDRESS:
            put_str(out, in->downstream_remote);
            break;
        case P_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT: {
            v = in->downstream_remote;
            const char *colon = v ? strrchr(v, ':') : NULL;
            if (v && v[0] == '[' && colon && colon > v + 1 && colon[-1] == ']')
                put(out, v + 1, (size_t)(colon - v - 2), 0);
            else
                put(out, v, colon ? (size_t)(colon - v) : (v ? strlen(v) : 0), 0);
            break;
        }
        }
    }
    return 0;
}

int access_log_check_config(const struct config *cfg, char *err, size_t err_cap)
{
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct cfg_hcm *h = &cfg->listeners[i].hcm;
        for (size_t j = 0; j < h->n_access_logs; j++) {
            char why[256];
            struct access_log_format *f =
                access_log_format_compile(h->access_logs[j].format, why, sizeof(why));
            if (f == NULL) {
                snprintf(err, err_cap, "%s: static_resources.listeners[%zu] access_log[%zu]: %s",
                         cfg->source, i, j, why);
                return -1;
            }
            access_log_format_free(f);
        }
    }
    return 0;
}

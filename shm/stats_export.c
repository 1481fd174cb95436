#include "shm/stats_export.h"

#include "shm/hosts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double stats_quantiles[10] = {0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1};

int stats_filter_compile(regex_t *re, const char *pattern, char *err, size_t cap)
{
    if (strlen(pattern) > STATS_FILTER_MAX) {
        snprintf(err, cap, "longer than %d bytes", STATS_FILTER_MAX);
        return -1;
    }
    for (const char *c = pattern; *c; c++) {
        if (*c == '\\' && c[1] >= '1' && c[1] <= '9') {
            snprintf(err, cap, "backreferences (\\%c) are not supported", c[1]);
            return -1;
        }
        if (*c == '\\' && c[1] != '\0') {
            c++; /* an escaped character, \{ included, is literal */
            continue;
        }
        if (*c == '{') {
            snprintf(err, cap, "bounded repeats ({n,m}) are not supported; \\{ is a brace");
            return -1;
        }
    }
    int rc = regcomp(re, pattern, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        regerror(rc, re, err, cap);
        return -1;
    }
    return 0;
}

/* --- the view ------------------------------------------------------------------------- */

/* The length of the valid UTF-8 sequence at s (at most len bytes), or 0. */
static size_t utf8_sequence(const unsigned char *s, size_t len)
{
    size_t n = s[0] >= 0xf5 ? 0 : s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (n == 0 || n > len)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((n == 3 && s[0] == 0xe0 && s[1] < 0xa0) || (n == 3 && s[0] == 0xed && s[1] >= 0xa0) ||
        (n == 4 && s[0] == 0xf0 && s[1] < 0x90) || (n == 4 && s[0] == 0xf4 && s[1] >= 0x90))
        return 0; /* overlong, surrogate, or beyond U+10FFFF */
    return n;
}

/* A name fit for every output: valid UTF-8, no control bytes. Names legate
 * registers always are; a name that is not comes from a damaged or hostile
 * segment and is left out. */
static bool printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f)
            return false;
        if (ch >= 0x80) {
            size_t n = utf8_sequence((const unsigned char *)s + i, len - i);
            if (n == 0)
                return false;
            i += n - 1;
        }
    }
    return true;
}

struct pending {
    char *name;
    int id;
    enum stat_kind kind;
    uint32_t flags;
};

static int by_name(const void *a, const void *b)
{
    const struct pending *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : x->id - y->id;
}

static void row_add_values(const struct stats *s, const struct stats_view_opts *opts,
                           struct stat_row *r, int id)
{
    if (r->kind == STAT_COUNTER)
        r->value += stats_counter_value(s, id);
    else if (r->kind == STAT_GAUGE)
        r->value += (uint64_t)stats_gauge_value(s, id);
    else {
        struct stats_hist_snapshot h;
        stats_hist_read(s, id, &h);
        r->hist->count += h.count;
        r->hist->sum += h.sum;
        for (uint32_t b = 0; b < STATS_HIST_BUCKETS; b++)
            r->hist->buckets[b] += h.buckets[b];
    }
    if (opts->per_slot)
        for (uint32_t slot = 0; slot < s->g.n_slots; slot++)
            r->per_slot[slot] += r->kind == STAT_HISTOGRAM ? stats_hist_slot_count(s, id, slot)
                                                           : stats_slot_value(s, id, slot);
}

static bool row_unused(const struct stat_row *r)
{
    return r->kind == STAT_HISTOGRAM ? r->hist->count == 0 : r->value == 0;
}

static void row_free(struct stat_row *r)
{
    free(r->name);
    free(r->hist);
    free(r->per_slot);
}

int stats_view_take(const struct stats *s, const struct stats_view_opts *opts,
                    struct stats_view *out)
{
    static const struct stats_view_opts defaults;
    if (opts == NULL)
        opts = &defaults;
    memset(out, 0, sizeof(*out));
    out->n_slots = s->g.n_slots;
    uint32_t n = stats_count(s);
    struct pending *p = calloc(n ? n : 1, sizeof(*p));
    if (p == NULL)
        return -1;
    size_t np = 0;
    for (uint32_t id = 0; id < n; id++) {
        enum stat_kind kind;
        uint32_t flags;
        const struct stats_entry *e = stats_entry_at(s, id);
        size_t len = 0;
        const char *name = e != NULL ? stats_name(s, e, &len) : NULL;
        if (name == NULL || !stats_entry_info(s, id, &kind, &flags)) {
            out->partial = true; /* perhaps published later: a refresh must look again */
            continue;
        }
        if (((flags & STAT_FLAG_HOST) != 0) != opts->hosts)
            continue;
        char *copy = strndup(name, len);
        if (copy == NULL)
            goto fail;
        if (!printable(copy, len) ||
            (opts->filter && regexec(opts->filter, copy, 0, NULL, 0) != 0)) {
            free(copy); /* a NUL or a control byte in a name (a hostile segment), or filtered */
            continue;
        }
        p[np++] = (struct pending){copy, (int)id, kind, flags};
    }
    qsort(p, np, sizeof(*p), by_name);
    out->rows = calloc(np ? np : 1, sizeof(*out->rows));
    if (out->rows == NULL)
        goto fail;
    for (size_t i = 0; i < np; i++) {
        struct stat_row *r = out->n > 0 ? &out->rows[out->n - 1] : NULL;
        if (r == NULL || strcmp(r->name, p[i].name) != 0 || r->kind != p[i].kind) {
            r = &out->rows[out->n++];
            r->name = p[i].name;
            p[i].name = NULL;
            r->kind = p[i].kind;
            r->flags = p[i].flags;
            r->ids[0] = r->ids[1] = -1;
            if (r->kind == STAT_HISTOGRAM && (r->hist = calloc(1, sizeof(*r->hist))) == NULL)
                goto fail;
            if (opts->per_slot && (r->per_slot = calloc(out->n_slots, sizeof(uint64_t))) == NULL)
                goto fail;
        }
        row_add_values(s, opts, r, p[i].id);
        if (r->ids[0] < 0)
            r->ids[0] = p[i].id;
        else if (r->ids[1] < 0)
            r->ids[1] = p[i].id;
        else
            out->partial = true;
    }
    out->n_entries = n;
    if (opts->used_only) {
        out->partial = true;
        size_t kept = 0;
        for (size_t i = 0; i < out->n; i++) {
            if (row_unused(&out->rows[i]))
                row_free(&out->rows[i]);
            else
                out->rows[kept++] = out->rows[i];
        }
        out->n = kept;
    }
    for (size_t i = 0; i < np; i++)
        free(p[i].name);
    free(p);
    return 0;
fail:
    for (size_t i = 0; i < np; i++)
        free(p[i].name);
    free(p);
    stats_view_free(out);
    return -1;
}

int stats_view_refresh(const struct stats *s, const struct stats_view_opts *opts,
                       struct stats_view *v)
{
    static const struct stats_view_opts defaults;
    if (opts == NULL)
        opts = &defaults;
    if (v->partial || stats_count(s) != v->n_entries) {
        stats_view_free(v);
        return stats_view_take(s, opts, v);
    }
    for (size_t i = 0; i < v->n; i++) {
        struct stat_row *r = &v->rows[i];
        r->value = 0;
        if (r->hist != NULL)
            memset(r->hist, 0, sizeof(*r->hist));
        if (r->per_slot != NULL)
            memset(r->per_slot, 0, v->n_slots * sizeof(uint64_t));
        for (int k = 0; k < 2 && r->ids[k] >= 0; k++)
            row_add_values(s, opts, r, r->ids[k]);
    }
    return 0;
}

void stats_view_free(struct stats_view *v)
{
    for (size_t i = 0; i < v->n; i++)
        row_free(&v->rows[i]);
    free(v->rows);
    v->rows = NULL;
    v->n = 0;
}

const struct stat_row *stats_view_find(const struct stats_view *v, const char *name)
{
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(v->rows[mid].name, name);
        if (c == 0)
            return &v->rows[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* --- text and JSON (Envoy's admin formats) ----------------------------------------------- */

static void put_value(struct buf *out, const struct stat_row *r)
{
    if (r->kind == STAT_GAUGE)
        buf_printf(out, "%lld", (long long)(int64_t)r->value);
    else
        buf_printf(out, "%llu", (unsigned long long)r->value);
}

static const char *quantile_label(size_t i)
{
    static const char *labels[10] = {"P0",  "P25", "P50",   "P75",   "P90",
                                     "P95", "P99", "P99.5", "P99.9", "P100"};
    return labels[i];
}

void stats_render_text(const struct stats_view *v, struct buf *out)
{
    for (size_t i = 0; i < v->n; i++) {
        const struct stat_row *r = &v->rows[i];
        if (r->kind == STAT_HISTOGRAM)
            continue;
        buf_printf(out, "%s: ", r->name);
        put_value(out, r);
        /* A host's health flags (the upstream manager's gauge), spelled out
         * as /clusters spells them. */
        size_t len = strlen(r->name);
        if (r->kind == STAT_GAUGE && len > 13 && strcmp(r->name + len - 13, ".health_flags") == 0) {
            char text[160];
            host_flags_text((int64_t)r->value > 0 ? (uint32_t)r->value : 0, text, sizeof(text));
            buf_printf(out, " (%s)", text);
        }
        buf_append(out, "\n", 1);
    }
    for (size_t i = 0; i < v->n; i++) {
        const struct stat_row *r = &v->rows[i];
        if (r->kind != STAT_HISTOGRAM)
            continue;
        buf_printf(out, "%s:", r->name);
        if (r->hist->count == 0)
            buf_printf(out, " No recorded values");
        for (size_t q = 0; r->hist->count > 0 && q < 10; q++)
            buf_printf(out, " %s(nan,%llu)", quantile_label(q),
                       (unsigned long long)stats_hist_quantile(r->hist, stats_quantiles[q]));
        buf_append(out, "\n", 1);
    }
}

void json_append_string(struct buf *out, const char *s, size_t len)
{
    buf_append(out, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            buf_printf(out, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            buf_printf(out, "\\u%04x", ch);
        else if (ch < 0x80)
            buf_append(out, &s[i], 1);
        else {
            /* Names come from shared memory: anything not UTF-8 is replaced,
             * so that the output is always valid JSON. */
            size_t n = utf8_sequence((const unsigned char *)s + i, len - i);
            if (n == 0)
                buf_append(out, "\\ufffd", 6);
            else
                buf_append(out, &s[i], n);
            i += n > 0 ? n - 1 : 0;
        }
    }
    buf_append(out, "\"", 1);
}

void stats_render_json(const struct stats_view *v, struct buf *out)
{
    bool first = true;
    buf_append(out, "{\"stats\":[", 10);
    for (size_t i = 0; i < v->n; i++) {
        const struct stat_row *r = &v->rows[i];
        if (r->kind == STAT_HISTOGRAM)
            continue;
        buf_printf(out, "%s{\"name\":", first ? "" : ",");
        json_append_string(out, r->name, strlen(r->name));
        buf_append(out, ",\"value\":", 9);
        put_value(out, r);
        buf_append(out, "}", 1);
        first = false;
    }
    buf_printf(out,
               "%s{\"histograms\":{\"supported_quantiles\":[0,25,50,75,90,95,99,99.5,99.9,100],"
               "\"computed_quantiles\":[",
               first ? "" : ",");
    bool first_h = true;
    for (size_t i = 0; i < v->n; i++) {
        const struct stat_row *r = &v->rows[i];
        if (r->kind != STAT_HISTOGRAM)
            continue;
        buf_printf(out, "%s{\"name\":", first_h ? "" : ",");
        json_append_string(out, r->name, strlen(r->name));
        buf_append(out, ",\"values\":[", 11);
        for (size_t q = 0; q < 10; q++) {
            buf_printf(out, "%s{\"interval\":null,\"cumulative\":", q ? "," : "");
            if (r->hist->count == 0)
                buf_append(out, "null}", 5);
            else
                buf_printf(out, "%llu}",
                           (unsigned long long)stats_hist_quantile(r->hist, stats_quantiles[q]));
        }
        buf_printf(out, "],\"count\":%llu,\"sum\":%llu}", (unsigned long long)r->hist->count,
                   (unsigned long long)r->hist->sum);
        first_h = false;
    }
    buf_append(out, "]}}]}\n", 6);
}

/* --- Prometheus ------------------------------------------------------------------------------ */

#define PROM_MAX_LABELS 3

/* A stat name taken apart as Envoy's default tag extractors do: the cluster
 * name, the connection manager prefix and the listener address from the
 * front, the response code (class) from the end. */
struct prom_series {
    char family[256];
    char labels[PROM_MAX_LABELS][2][128]; /* key, value */
    int n_labels;
    const struct stat_row *row;
    double scale; /* 0.001 for a histogram in ms reported in seconds */
};

static void add_label(struct prom_series *p, const char *key, const char *val, size_t len)
{
    if (p->n_labels >= PROM_MAX_LABELS)
        return;
    snprintf(p->labels[p->n_labels][0], sizeof(p->labels[0][0]), "%s", key);
    snprintf(p->labels[p->n_labels][1], sizeof(p->labels[0][1]), "%.*s", (int)len, val);
    p->n_labels++;
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* "listener.127.0.0.1_10000.downstream_cx_total": the address is the longest
 * run of address characters that ends before a dot. */
static size_t listener_address_len(const char *s)
{
    size_t run = strspn(s, "0123456789abcdefABCDEF._[]");
    while (run > 0 && s[run - 1] != '.')
        run--;
    return run > 0 ? run - 1 : 0;
}

static void prom_parse(const struct stat_row *r, struct prom_series *p)
{
    memset(p, 0, sizeof(*p));
    p->row = r;
    p->scale = 1;
    char stem[256];
    const char *name = r->name;
    static const struct {
        const char *prefix, *label;
    } fronts[] = {{"cluster.", "envoy_cluster_name"},
                  {"http.", "envoy_http_conn_manager_prefix"},
                  {"listener.", "envoy_listener_address"}};
    snprintf(stem, sizeof(stem), "%s", name);
    for (size_t i = 0; i < sizeof(fronts) / sizeof(fronts[0]); i++) {
        size_t pl = strlen(fronts[i].prefix);
        if (strncmp(name, fronts[i].prefix, pl) != 0)
            continue;
        const char *rest = name + pl;
        size_t tag = i == 2 ? listener_address_len(rest) : strcspn(rest, ".");
        if (tag == 0 || rest[tag] != '.')
            break;
        add_label(p, fronts[i].label, rest, tag);
        snprintf(stem, sizeof(stem), "%.*s%s", (int)(pl - 1), name, rest + tag);
        break;
    }
    size_t len = strlen(stem);
    /* _rq_200 and _rq_2xx: the code becomes a label; the family keeps a
     * distinct stem so that it cannot merge with _rq_total. */
    if (len > 8 && ends_with(stem, len - 4, "_rq") && stem[len - 4] == '_' &&
        is_digit(stem[len - 3]) && is_digit(stem[len - 2]) && is_digit(stem[len - 1])) {
        add_label(p, "envoy_response_code", stem + len - 3, 3);
        snprintf(stem + len - 4, sizeof(stem) - (len - 4), "_code");
    } else if (len > 8 && ends_with(stem, len - 4, "_rq") && stem[len - 4] == '_' &&
               is_digit(stem[len - 3]) && stem[len - 2] == 'x' && stem[len - 1] == 'x') {
        add_label(p, "envoy_response_code_class", stem + len - 3, 1);
        snprintf(stem + len - 4, sizeof(stem) - (len - 4), "_xx");
    }
    len = strlen(stem);
    if (r->kind == STAT_HISTOGRAM && ends_with(stem, len, "_ms")) {
        snprintf(stem + len - 3, sizeof(stem) - (len - 3), "_seconds");
        p->scale = 0.001;
    }
    if (r->kind == STAT_GAUGE && ends_with(stem, strlen(stem), "_total"))
        stem[strlen(stem) - 6] = '\0'; /* a gauge must not look like a counter */
    size_t o = 0;
    o += (size_t)snprintf(p->family, sizeof(p->family), "envoy_");
    for (const char *c = stem; *c && o + 1 < sizeof(p->family); c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || is_digit(*c) || *c == '_';
        p->family[o++] = ok ? *c : '_';
    }
    p->family[o] = '\0';
    if (r->kind == STAT_COUNTER && !ends_with(p->family, o, "_total"))
        snprintf(p->family + o, sizeof(p->family) - o, "_total");
}

static int by_series(const void *a, const void *b)
{
    const struct prom_series *x = a, *y = b;
    int c = strcmp(x->family, y->family);
    if (c != 0)
        return c;
    return strcmp(x->row->name, y->row->name);
}

static void put_label_value(struct buf *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            buf_printf(out, "\\%c", *v);
        else if (*v == '\n')
            buf_append(out, "\\n", 2);
        else
            buf_append(out, v, 1);
    }
}

/* HELP text allows two escapes only: backslash and newline. */
static void put_help_text(struct buf *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            buf_append(out, "\\\\", 2);
        else if (*v == '\n')
            buf_append(out, "\\n", 2);
        else
            buf_append(out, v, 1);
    }
}

/* {a="x",b="y"} plus an optional le; nothing when there are no labels. */
static void put_labels(struct buf *out, const struct prom_series *p, const char *le)
{
    if (p->n_labels == 0 && le == NULL)
        return;
    buf_append(out, "{", 1);
    for (int i = 0; i < p->n_labels; i++) {
        buf_printf(out, "%s%s=\"", i ? "," : "", p->labels[i][0]);
        put_label_value(out, p->labels[i][1]);
        buf_append(out, "\"", 1);
    }
    if (le != NULL)
        buf_printf(out, "%sle=\"%s\"", p->n_labels ? "," : "", le);
    buf_append(out, "}", 1);
}

/* Envoy's default histogram bucket bounds (ms). */
static const double prom_bounds[] = {0.5,   1,      5,      10,      25,     50,    100,
                                     250,   500,    1000,   2500,    5000,   10000, 30000,
                                     60000, 300000, 600000, 1800000, 3600000};

static void put_histogram(struct buf *out, const struct prom_series *p)
{
    const struct stats_hist_snapshot *h = p->row->hist;
    /* A legate bucket counts under a bound when all of it is at or below the
     * bound: exact to a bucket (one part in eight), never overstated. */
    uint32_t b = 0;
    uint64_t cum = 0;
    for (size_t i = 0; i < sizeof(prom_bounds) / sizeof(prom_bounds[0]); i++) {
        while (b < STATS_HIST_BUCKETS && (double)stats_hist_bucket_upper(b) <= prom_bounds[i])
            cum += h->buckets[b++];
        char le[32];
        snprintf(le, sizeof(le), "%g", prom_bounds[i] * p->scale);
        buf_printf(out, "%s_bucket", p->family);
        put_labels(out, p, le);
        buf_printf(out, " %llu\n", (unsigned long long)cum);
    }
    buf_printf(out, "%s_bucket", p->family);
    put_labels(out, p, "+Inf");
    buf_printf(out, " %llu\n", (unsigned long long)h->count);
    buf_printf(out, "%s_sum", p->family);
    put_labels(out, p, NULL);
    buf_printf(out, " %.17g\n", (double)h->sum * p->scale);
    buf_printf(out, "%s_count", p->family);
    put_labels(out, p, NULL);
    buf_printf(out, " %llu\n", (unsigned long long)h->count);
}

void stats_render_prometheus(const struct stats_view *v, struct buf *out)
{
    struct prom_series *ps = calloc(v->n ? v->n : 1, sizeof(*ps));
    if (ps == NULL)
        return;
    for (size_t i = 0; i < v->n; i++)
        prom_parse(&v->rows[i], &ps[i]);
    qsort(ps, v->n, sizeof(*ps), by_series);
    static const char *types[] = {"", "counter", "gauge", "histogram"};
    const char *family = "";
    enum stat_kind kind = 0;
    for (size_t i = 0; i < v->n; i++) {
        const struct prom_series *p = &ps[i];
        if (strcmp(p->family, family) != 0) {
            family = p->family;
            kind = p->row->kind;
            buf_printf(out, "# HELP %s legate %s ", p->family, types[kind]);
            put_help_text(out, p->row->name);
            buf_append(out, "\n", 1);
            buf_printf(out, "# TYPE %s %s\n", p->family, types[kind]);
        } else if (p->row->kind != kind) {
            continue; /* one family, one type: the first kind wins */
        }
        if (p->row->kind == STAT_HISTOGRAM) {
            put_histogram(out, p);
            continue;
        }
        buf_append(out, p->family, strlen(p->family));
        put_labels(out, p, NULL);
        buf_append(out, " ", 1);
        put_value(out, p->row);
        buf_append(out, "\n", 1);
    }
    free(ps);
}

/* YAML to compact JSON, driven by libyaml's event parser.
 *
 * Events are translated as they arrive, with an explicit stack of open
 * collections (no recursion). An anchored collection is remembered as the span
 * of JSON it produced, so an alias is a copy of bytes already written; an
 * anchored scalar keeps its text, because an alias may use it as a key (a
 * string) or as a value (typed). */
#include "common/yaml_json.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#define MAX_ANCHORS 1024 /* far more than any config needs; bounds the table */

#define YAML_STR_TAG "tag:yaml.org,2002:str"

/* An open mapping or sequence. */
struct frame {
    bool map;        /* a mapping (else a sequence) */
    bool want_key;   /* mapping: the next node is a key */
    size_t items;    /* nodes seen so far (keys and values alike) */
    size_t pos;      /* where its JSON starts, as an offset from the output head */
    long anchor;     /* the anchor it defines, or -1 */
    unsigned height; /* levels of nesting it holds, itself included */
};

/* A node defined with &name. */
struct anchor {
    char *name;
    bool done;   /* its node has ended (an alias inside it would recurse) */
    bool scalar; /* a scalar (else a collection) */
    /* A scalar: its text, rendered again on each use. */
    char *text;
    size_t text_len;
    bool typed; /* resolved by the core schema (plain, no string tag) */
    /* A collection: its JSON, in the output. */
    size_t pos, len;
    unsigned height;
};

struct conv {
    struct buf *out;
    size_t base; /* output length before this call: the size cap counts from here */
    struct frame stack[YAML_JSON_MAX_DEPTH];
    size_t depth; /* open frames */
    bool have_root;
    struct anchor *anchors;
    size_t n_anchors, cap_anchors;
    char *err;
    size_t err_cap;
    yaml_mark_t mark; /* start of the event being handled, for errors */
};

static int fail(struct conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct conv *c, const char *fmt, ...)
{
    if (c->err == NULL || c->err_cap == 0)
        return -1;
    int n = snprintf(c->err, c->err_cap, "%zu:%zu: ", c->mark.line + 1, c->mark.column + 1);
    if (n >= 0 && (size_t)n < c->err_cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->err_cap - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- output ------------------------------------------------------------------------------ */

static int room_for(struct conv *c, size_t n)
{
    if (buf_len(c->out) - c->base + n > YAML_JSON_MAX_OUTPUT)
        return fail(c, "JSON output would exceed %u bytes", YAML_JSON_MAX_OUTPUT);
    return 0;
}

static int put(struct conv *c, const char *s, size_t n)
{
    if (room_for(c, n) < 0)
        return -1;
    if (buf_append(c->out, s, n) < 0)
        return fail(c, "out of memory");
    return 0;
}

static int put_str(struct conv *c, const char *s)
{
    return put(c, s, strlen(s));
}

/* Append a copy of output already written (an alias of a collection). Offsets
 * are from the head, which stays valid if buf_reserve slides the content. */
static int put_copy(struct conv *c, size_t pos, size_t len)
{
    if (room_for(c, len) < 0)
        return -1;
    char *dst = buf_reserve(c->out, len);
    if (dst == NULL)
        return fail(c, "out of memory");
    memcpy(dst, buf_head(c->out) + pos, len);
    buf_commit(c->out, len);
    return 0;
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t len;

    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        if (s[0] == 0xe0)
            lo = 0xa0; /* overlong */
        else if (s[0] == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        if (s[0] == 0xf0)
            lo = 0x90; /* overlong */
        else if (s[0] == 0xf4)
            hi = 0x8f; /* beyond U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* A JSON string. libyaml hands out UTF-8 only, but a stray invalid byte would
 * make the whole document unparsable, so it becomes U+FFFD rather than leaking. */
static int put_string(struct conv *c, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0; /* start of the bytes that pass through unchanged */
    size_t i = 0;

    if (put(c, "\"", 1) < 0)
        return -1;
    while (i < n) {
        if (u[i] >= 0x20 && u[i] < 0x80 && u[i] != '"' && u[i] != '\\') {
            i++;
            continue;
        }
        size_t ulen = u[i] >= 0x80 ? utf8_len(u + i, n - i) : 0;
        if (ulen > 0) {
            i += ulen;
            continue;
        }
        char esc[8];
        switch (u[i]) {
        case '"':
            strcpy(esc, "\\\"");
            break;
        case '\\':
            strcpy(esc, "\\\\");
            break;
        case '\b':
            strcpy(esc, "\\b");
            break;
        case '\f':
            strcpy(esc, "\\f");
            break;
        case '\n':
            strcpy(esc, "\\n");
            break;
        case '\r':
            strcpy(esc, "\\r");
            break;
        case '\t':
            strcpy(esc, "\\t");
            break;
        default:
            if (u[i] < 0x20)
                snprintf(esc, sizeof esc, "\\u%04x", u[i]);
            else
                strcpy(esc, "\\ufffd");
        }
        if (put(c, s + run, i - run) < 0 || put_str(c, esc) < 0)
            return -1;
        run = ++i;
    }
    if (put(c, s + run, n - run) < 0)
        return -1;
    return put(c, "\"", 1);
}

/* ---- plain scalars: the YAML 1.2 core schema ----------------------------------------------- */

static bool text_is(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static bool is_one_of(const char *s, size_t n, const char *const *lits)
{
    for (; *lits; lits++)
        if (text_is(s, n, *lits))
            return true;
    return false;
}

static size_t count_digits(const char *s, size_t n, size_t i)
{
    size_t start = i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    return i - start;
}

/* [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?, written
 * back as a JSON number: no '+', no leading zeros, a digit on both sides of
 * the point. Works on the text, so any length keeps its exact value. */
static bool put_decimal(struct conv *c, const char *s, size_t n, int *rc)
{
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    size_t int_at = i, int_len = count_digits(s, n, i);
    i += int_len;
    bool point = i < n && s[i] == '.';
    size_t frac_at = i + 1, frac_len = 0;
    if (point) {
        frac_len = count_digits(s, n, frac_at);
        i = frac_at + frac_len;
    }
    if (int_len == 0 && frac_len == 0)
        return false;
    size_t exp_at = i;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t exp_digits = count_digits(s, n, i);
        if (exp_digits == 0)
            return false;
        i += exp_digits;
    }
    if (i != n)
        return false;

    while (int_len > 1 && s[int_at] == '0') {
        int_at++;
        int_len--;
    }
    bool integer = !point && exp_at == n;
    if (integer && int_len == 1 && s[int_at] == '0')
        neg = false; /* -0 is the integer 0 */
    *rc = -1;
    if (neg && put(c, "-", 1) < 0)
        return true;
    if (int_len == 0 ? put(c, "0", 1) < 0 : put(c, s + int_at, int_len) < 0)
        return true;
    if (point && (put(c, ".", 1) < 0 ||
                  (frac_len == 0 ? put(c, "0", 1) < 0 : put(c, s + frac_at, frac_len) < 0)))
        return true;
    if (put(c, s + exp_at, n - exp_at) < 0)
        return true;
    *rc = 0;
    return true;
}

/* 0x[0-9a-fA-F]+ or 0o[0-7]+, written in decimal. One that does not fit 64
 * bits is left to be a string rather than be silently rounded. */
static bool put_radix(struct conv *c, const char *s, size_t n, int *rc)
{
    if (n < 3 || s[0] != '0' || (s[1] != 'x' && s[1] != 'o'))
        return false;
    unsigned base = s[1] == 'x' ? 16 : 8;
    uint64_t v = 0;
    for (size_t i = 2; i < n; i++) {
        unsigned d;
        if (s[i] >= '0' && s[i] <= '9')
            d = (unsigned)(s[i] - '0');
        else if (s[i] >= 'a' && s[i] <= 'f')
            d = (unsigned)(s[i] - 'a' + 10);
        else if (s[i] >= 'A' && s[i] <= 'F')
            d = (unsigned)(s[i] - 'A' + 10);
        else
            return false;
        if (d >= base || v > (UINT64_MAX - d) / base)
            return false;
        v = v * base + d;
    }
    char num[24];
    int len = snprintf(num, sizeof num, "%" PRIu64, v);
    *rc = put(c, num, (size_t)len);
    return true;
}

static int put_plain(struct conv *c, const char *s, size_t n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    static const char *const infs[] = {".inf", ".Inf", ".INF", NULL};
    static const char *const nans[] = {".nan", ".NaN", ".NAN", NULL};
    int rc = 0;

    if (is_one_of(s, n, nulls))
        return put_str(c, "null");
    if (is_one_of(s, n, trues))
        return put_str(c, "true");
    if (is_one_of(s, n, falses))
        return put_str(c, "false");
    /* JSON has no infinity or NaN: say it in a string rather than emit invalid JSON. */
    if (n > 0 && (s[0] == '+' || s[0] == '-') && is_one_of(s + 1, n - 1, infs))
        return put_str(c, s[0] == '-' ? "\"-inf\"" : "\"inf\"");
    if (is_one_of(s, n, infs))
        return put_str(c, "\"inf\"");
    if (is_one_of(s, n, nans))
        return put_str(c, "\"nan\"");
    if (put_decimal(c, s, n, &rc) || put_radix(c, s, n, &rc))
        return rc;
    return put_string(c, s, n);
}

/* A key is always a string, whatever the schema would make of it. */
static int put_scalar(struct conv *c, const char *s, size_t n, bool typed, bool key)
{
    return typed && !key ? put_plain(c, s, n) : put_string(c, s, n);
}

/* ---- structure ----------------------------------------------------------------------------- */

/* Write what goes before a node (',' or ':') and tell whether it is a key. */
static int begin_node(struct conv *c, bool *key)
{
    *key = false;
    if (c->depth == 0) {
        c->have_root = true;
        return 0;
    }
    struct frame *f = &c->stack[c->depth - 1];
    const char *sep = f->items == 0 ? "" : ",";
    if (f->map) {
        *key = f->want_key;
        if (!f->want_key)
            sep = ":";
        f->want_key = !f->want_key;
    }
    f->items++;
    return put_str(c, sep);
}

static struct anchor *find_anchor(struct conv *c, const char *name)
{
    /* The latest definition wins: YAML lets a name be anchored again. */
    for (size_t i = c->n_anchors; i-- > 0;)
        if (strcmp(c->anchors[i].name, name) == 0)
            return &c->anchors[i];
    return NULL;
}

static long add_anchor(struct conv *c, const char *name)
{
    if (c->n_anchors == MAX_ANCHORS)
        return fail(c, "more than %d anchors", MAX_ANCHORS);
    if (c->n_anchors == c->cap_anchors) {
        size_t cap = c->cap_anchors ? 2 * c->cap_anchors : 16;
        struct anchor *grown = realloc(c->anchors, cap * sizeof *grown);
        if (grown == NULL)
            return fail(c, "out of memory");
        c->anchors = grown;
        c->cap_anchors = cap;
    }
    struct anchor *a = &c->anchors[c->n_anchors];
    *a = (struct anchor){0};
    a->name = strdup(name);
    if (a->name == NULL)
        return fail(c, "out of memory");
    return (long)c->n_anchors++;
}

/* A collection of `height` levels ends inside the innermost open frame. */
static void nest(struct conv *c, unsigned height)
{
    if (c->depth > 0 && c->stack[c->depth - 1].height < height + 1)
        c->stack[c->depth - 1].height = height + 1;
}

static int on_scalar(struct conv *c, const yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    /* A quoted or block scalar is a string; so is a plain one tagged ! or !!str. */
    bool typed = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                 (tag == NULL || (strcmp(tag, "!") != 0 && strcmp(tag, YAML_STR_TAG) != 0));
    bool key;

    if (ev->data.scalar.anchor) {
        long i = add_anchor(c, (const char *)ev->data.scalar.anchor);
        if (i < 0)
            return -1;
        struct anchor *a = &c->anchors[i];
        a->done = a->scalar = true;
        a->typed = typed;
        a->text = malloc(n + 1);
        if (a->text == NULL)
            return fail(c, "out of memory");
        memcpy(a->text, s, n);
        a->text[n] = '\0';
        a->text_len = n;
    }
    if (begin_node(c, &key) < 0)
        return -1;
    return put_scalar(c, s, n, typed, key);
}

static int on_collection_start(struct conv *c, bool map, const yaml_char_t *anchor)
{
    bool key;

    if (begin_node(c, &key) < 0)
        return -1;
    if (key)
        return fail(c, "a mapping key must be a scalar (JSON keys are strings)");
    if (c->depth == YAML_JSON_MAX_DEPTH)
        return fail(c, "nesting deeper than %d levels", YAML_JSON_MAX_DEPTH);
    long i = -1;
    if (anchor && (i = add_anchor(c, (const char *)anchor)) < 0)
        return -1;
    c->stack[c->depth++] = (struct frame){
        .map = map, .want_key = map, .pos = buf_len(c->out), .anchor = i, .height = 1};
    return put(c, map ? "{" : "[", 1);
}

static int on_collection_end(struct conv *c)
{
    if (c->depth == 0)
        return fail(c, "unbalanced collection end");
    struct frame f = c->stack[--c->depth];
    if (put(c, f.map ? "}" : "]", 1) < 0)
        return -1;
    if (f.anchor >= 0) {
        struct anchor *a = &c->anchors[f.anchor];
        a->done = true;
        a->pos = f.pos;
        a->len = buf_len(c->out) - f.pos;
        a->height = f.height;
    }
    nest(c, f.height);
    return 0;
}

static int on_alias(struct conv *c, const char *name)
{
    struct anchor *a = find_anchor(c, name);
    bool key;

    if (a == NULL)
        return fail(c, "alias *%.64s names no anchor", name);
    if (!a->done)
        return fail(c, "alias *%.64s is inside its own anchor", name);
    if (begin_node(c, &key) < 0)
        return -1;
    if (a->scalar)
        return put_scalar(c, a->text, a->text_len, a->typed, key);
    if (key)
        return fail(c, "a mapping key must be a scalar (JSON keys are strings)");
    if (c->depth + a->height > YAML_JSON_MAX_DEPTH)
        return fail(c, "nesting deeper than %d levels", YAML_JSON_MAX_DEPTH);
    if (put_copy(c, a->pos, a->len) < 0)
        return -1;
    nest(c, a->height);
    return 0;
}

static int on_event(struct conv *c, const yaml_event_t *ev, bool *done)
{
    c->mark = ev->start_mark;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return on_scalar(c, ev);
    case YAML_SEQUENCE_START_EVENT:
        return on_collection_start(c, false, ev->data.sequence_start.anchor);
    case YAML_MAPPING_START_EVENT:
        return on_collection_start(c, true, ev->data.mapping_start.anchor);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return on_collection_end(c);
    case YAML_ALIAS_EVENT:
        return on_alias(c, (const char *)ev->data.alias.anchor);
    case YAML_DOCUMENT_END_EVENT:
    case YAML_STREAM_END_EVENT:
        *done = true; /* only the first document */
        return 0;
    default:
        return 0;
    }
}

static int parser_error(struct conv *c, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR)
        return fail(c, "out of memory");
    if (p->error == YAML_READER_ERROR) {
        /* The reader knows a byte offset, not a line. */
        if (c->err && c->err_cap)
            snprintf(c->err, c->err_cap, "byte %zu: %s", p->problem_offset,
                     p->problem ? p->problem : "unreadable input");
        return -1;
    }
    c->mark = p->problem_mark;
    if (p->context)
        return fail(c, "%s (%s)", p->problem ? p->problem : "invalid YAML", p->context);
    return fail(c, "%s", p->problem ? p->problem : "invalid YAML");
}

int yaml_to_json(const char *yaml, size_t len, struct buf *out, char *err, size_t cap)
{
    struct conv c = {.out = out, .base = buf_len(out), .err = err, .err_cap = cap};
    yaml_parser_t parser;
    bool done = false;
    int rc = 0;

    if (err && cap)
        err[0] = '\0';
    if (!yaml_parser_initialize(&parser))
        return fail(&c, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    while (!done && rc == 0) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = parser_error(&c, &parser);
            break;
        }
        rc = on_event(&c, &ev, &done);
        yaml_event_delete(&ev);
    }
    /* No document at all (empty text, only comments) is null, as an empty one is. */
    if (rc == 0 && !c.have_root)
        rc = put_str(&c, "null");
    for (size_t i = 0; i < c.n_anchors; i++) {
        free(c.anchors[i].name);
        free(c.anchors[i].text);
    }
    free(c.anchors);
    yaml_parser_delete(&parser);
    return rc;
}

/* The configuration loader: Envoy's v3 bootstrap subset of config.h, from YAML.
 *
 * libyaml composes the file into a document; the loader then walks it with one
 * schema per Envoy message: a table of {field name, handler, offset} plus the
 * names of real Envoy fields that legate does not implement, so every key in
 * the file is either understood or reported ("nothing is silently ignored").
 * Errors carry the node's line:column and the dotted field path; they are
 * collected, never fatal, and sorted by position at the end. Checks that need
 * the whole file (a route's cluster, duplicate addresses) run after the walk. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf, vasprintf */
#endif

#include "common/config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#define HCM_NAME "envoy.filters.network.http_connection_manager"
#define HCM_TYPE                                                                                   \
    "type.googleapis.com/"                                                                         \
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
#define ROUTER_NAME "envoy.filters.http.router"
#define ROUTER_TYPE "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
#define FILE_LOG_NAME "envoy.access_loggers.file"
#define FILE_LOG_TYPE "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"

#define PATH_CAP 512                   /* longest dotted path kept (truncated beyond) */
#define MAX_DIRECT_BODY 4096           /* Envoy's max_direct_response_body_size_bytes default */
#define MAX_DURATION_S 315576000000ULL /* protobuf Duration's limit: 10000 years */
#define MAX_CONFIG_BYTES (64 * 1024 * 1024) /* a bigger "config" is a mistake */

#define ROUTE_TIMEOUT_DEFAULT_MS 15000
#define STREAM_IDLE_TIMEOUT_DEFAULT_MS 300000
#define IDLE_TIMEOUT_DEFAULT_MS 3600000
#define CONNECT_TIMEOUT_DEFAULT_MS 5000
#define UPSTREAM_IDLE_TIMEOUT_DEFAULT_MS 3600000 /* Envoy's 1 h */
#define RING_SIZE_MAX 8388608                    /* Envoy's maximum_ring_size limit */
#define MAGLEV_SIZE_MAX 5000011                  /* Envoy's table_size limit */
#define PRIORITY_MAX 15                          /* locality priorities 0..15 */

/* ---- the loader's state ---------------------------------------------------------------- */

struct load_error {
    struct cfg_mark at;
    size_t seq; /* discovery order, so sorting by position is stable */
    char *msg;
};

/* A route's cluster name, resolved once every cluster is known (clusters may
 * come after listeners in the file). */
struct cluster_ref {
    struct cfg_route *route;
    struct cfg_mark at;
    char *path;
};

struct loader {
    const char *source; /* the name errors are reported against */
    yaml_document_t *doc;
    struct config *cfg;
    char path[PATH_CAP]; /* dotted path of the field being walked */
    size_t path_len;
    struct load_error *errors;
    size_t n_errors, cap_errors;
    struct cluster_ref *refs;
    size_t n_refs, cap_refs;
    bool oom; /* an allocation failed: the result is a single "out of memory" */
    /* Where the walk is, for checks against the siblings loaded before. */
    size_t listener_index;
    size_t cluster_index;
    struct cfg_route_config *route_config;
    size_t vhost_index;
    uint32_t locality_priority; /* of the locality being walked */
};

/* ---- paths, marks and errors --------------------------------------------------------------- */

static void path_advance(struct loader *ld, int written)
{
    if (written < 0)
        return;
    if (ld->path_len + (size_t)written >= PATH_CAP)
        ld->path_len = PATH_CAP - 1; /* snprintf truncated it */
    else
        ld->path_len += (size_t)written;
}

/* Append ".name" (or "name" at the top) and return the length to restore. */
static size_t path_push_field(struct loader *ld, const char *name)
{
    size_t saved = ld->path_len;
    int n = snprintf(ld->path + ld->path_len, PATH_CAP - ld->path_len, "%s%s",
                     ld->path_len ? "." : "", name);
    path_advance(ld, n);
    return saved;
}

static size_t path_push_index(struct loader *ld, size_t index)
{
    size_t saved = ld->path_len;
    int n = snprintf(ld->path + ld->path_len, PATH_CAP - ld->path_len, "[%zu]", index);
    path_advance(ld, n);
    return saved;
}

static void path_pop(struct loader *ld, size_t saved)
{
    ld->path_len = saved;
    ld->path[saved] = '\0';
}

static struct cfg_mark mark_of(const yaml_node_t *node)
{
    return (struct cfg_mark){.line = (int)node->start_mark.line + 1,
                             .col = (int)node->start_mark.column + 1};
}

__attribute__((format(printf, 4, 0))) static void
report_va(struct loader *ld, struct cfg_mark at, const char *path, const char *fmt, va_list ap)
{
    char *what = NULL, *msg = NULL;

    if (ld->oom)
        return;
    if (vasprintf(&what, fmt, ap) < 0) {
        ld->oom = true;
        return;
    }
    if (asprintf(&msg, "%s:%d:%d: %s: %s", ld->source, at.line, at.col, path[0] ? path : "(root)",
                 what) < 0) {
        msg = NULL;
        goto fail;
    }
    if (ld->n_errors == ld->cap_errors) {
        size_t cap = ld->cap_errors ? ld->cap_errors * 2 : 8;
        struct load_error *grown = reallocarray(ld->errors, cap, sizeof *grown);
        if (!grown)
            goto fail;
        ld->errors = grown;
        ld->cap_errors = cap;
    }
    ld->errors[ld->n_errors] = (struct load_error){.at = at, .seq = ld->n_errors, .msg = msg};
    ld->n_errors++;
    free(what);
    return;
fail:
    ld->oom = true;
    free(what);
    free(msg);
}

/* An error at an explicit position and path (for checks made after the walk). */
__attribute__((format(printf, 4, 5))) static void report_at(struct loader *ld, struct cfg_mark at,
                                                            const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report_va(ld, at, path, fmt, ap);
    va_end(ap);
}

/* An error about `node`, at the current path. */
__attribute__((format(printf, 3, 4))) static void report(struct loader *ld, const yaml_node_t *node,
                                                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report_va(ld, mark_of(node), ld->path, fmt, ap);
    va_end(ap);
}

/* "required field is missing", reported at the map that lacks it. */
static void report_missing(struct loader *ld, const yaml_node_t *map, const char *name)
{
    size_t saved = path_push_field(ld, name);
    report(ld, map, "required field is missing");
    path_pop(ld, saved);
}

/* ---- node helpers -------------------------------------------------------------------------- */

static const char *scalar_text(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

/* A plain null ("", "~", "null"): protobuf JSON reads it as "not set". */
static bool is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = scalar_text(node);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static void report_type(struct loader *ld, const yaml_node_t *node, const char *expected)
{
    if (node->type == YAML_MAPPING_NODE)
        report(ld, node, "expected %s, got a map", expected);
    else if (node->type == YAML_SEQUENCE_NODE)
        report(ld, node, "expected %s, got a list", expected);
    else if (is_null(node))
        report(ld, node, "expected %s, got null", expected);
    else
        report(ld, node, "expected %s, got \"%.60s\"", expected, scalar_text(node));
}

/* The text of a scalar, or NULL (reported) for a map, a list or null. */
static const char *expect_scalar(struct loader *ld, const yaml_node_t *node, const char *expected)
{
    if (node->type != YAML_SCALAR_NODE || is_null(node)) {
        report_type(ld, node, expected);
        return NULL;
    }
    return scalar_text(node);
}

/* The number of items of a list (null counts as empty); -1 (reported) otherwise. */
static int expect_list(struct loader *ld, const yaml_node_t *node, size_t *n)
{
    if (is_null(node)) {
        *n = 0;
        return 0;
    }
    if (node->type != YAML_SEQUENCE_NODE) {
        report_type(ld, node, "a list");
        return -1;
    }
    *n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    return 0;
}

static yaml_node_t *list_item(struct loader *ld, const yaml_node_t *list, size_t i)
{
    return yaml_document_get_node(ld->doc, list->data.sequence.items.start[i]);
}

/* The value of `key` in a map, or NULL. */
static yaml_node_t *map_get(struct loader *ld, const yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp(scalar_text(k), key))
            return yaml_document_get_node(ld->doc, p->value);
    }
    return NULL;
}

static void *alloc_items(struct loader *ld, size_t n, size_t size)
{
    if (n == 0)
        return NULL;
    void *p = calloc(n, size);
    if (!p)
        ld->oom = true;
    return p;
}

static char *dup_bytes(struct loader *ld, const char *s, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy) {
        ld->oom = true;
        return NULL;
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

static char *dup_string(struct loader *ld, const char *s)
{
    return dup_bytes(ld, s, strlen(s));
}

/* ---- schemas ------------------------------------------------------------------------------- */

/* A field handler gets the value node and its slot: the object plus the
 * field's offset (the object itself for handlers with offset 0). */
typedef int (*field_fn)(struct loader *ld, const yaml_node_t *node, void *slot);

struct schema;

struct field {
    const char *name;
    field_fn parse;              /* or NULL with `nested` */
    const struct schema *nested; /* a sub-message walked into the same slot */
    size_t offset;
    bool required;
};

struct schema {
    const struct field *fields; /* NULL-terminated; at most 32 */
    const char *unimplemented;  /* Envoy fields legate rejects by name, space-separated */
};

/* Levenshtein distance, for "did you mean" hints (SIZE_MAX for very long names). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[65];

    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* "unknown field", with a suggestion when a known name is a typo away. */
static void report_unknown(struct loader *ld, const yaml_node_t *key, const struct schema *schema,
                           const char *name)
{
    const char *best = NULL;
    size_t best_distance = 3; /* more than two edits away is not a typo */

    for (const struct field *f = schema->fields; f->name; f++) {
        size_t d = edit_distance(name, f->name);
        if (d < best_distance) {
            best = f->name;
            best_distance = d;
        }
    }
    if (best && strlen(name) > 3)
        report(ld, key, "unknown field (did you mean \"%s\"?)", best);
    else
        report(ld, key, "unknown field");
}

/* Is `name` one of the space-separated words of `words`? */
static bool name_in(const char *words, const char *name)
{
    size_t len = strlen(name);
    for (const char *w = words; w && *w;) {
        size_t wlen = strcspn(w, " ");
        if (wlen == len && !memcmp(w, name, len))
            return true;
        w += wlen;
        w += strspn(w, " ");
    }
    return false;
}

/* Walk a map with a schema, filling `obj`. `present` (optional) gets bit i set
 * for each fields[i] found. Returns -1 (reported) if `node` is not a map; a
 * null is the empty map, as in protobuf JSON. */
static int walk_map(struct loader *ld, const yaml_node_t *node, const struct schema *schema,
                    void *obj, uint32_t *present)
{
    uint32_t seen = 0;

    if (present)
        *present = 0;
    if (node->type != YAML_MAPPING_NODE && !is_null(node)) {
        report_type(ld, node, "a map");
        return -1;
    }
    if (node->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
             p++) {
            yaml_node_t *key = yaml_document_get_node(ld->doc, p->key);
            yaml_node_t *value = yaml_document_get_node(ld->doc, p->value);
            if (key->type != YAML_SCALAR_NODE) {
                report(ld, key, "a field name must be a string");
                continue;
            }
            const char *name = scalar_text(key);
            size_t saved = path_push_field(ld, name);
            int i = 0;
            while (schema->fields[i].name && strcmp(schema->fields[i].name, name))
                i++;
            assert(i < 32); /* `seen` has a bit per field */
            const struct field *f = &schema->fields[i];
            if (f->name && (seen & (1u << i))) {
                report(ld, key, "duplicate field");
            } else if (f->name) {
                /* A schema walked without an object (the router's typed_config)
                 * only checks its fields: no slot. */
                void *slot = obj != NULL ? (char *)obj + f->offset : NULL;
                seen |= 1u << i;
                if (f->parse)
                    f->parse(ld, value, slot);
                else
                    walk_map(ld, value, f->nested, slot, NULL);
            } else if (name_in(schema->unimplemented, name)) {
                report(ld, key, "not implemented by legate");
            } else {
                report_unknown(ld, key, schema, name);
            }
            path_pop(ld, saved);
        }
    }
    for (int i = 0; schema->fields[i].name; i++)
        if (schema->fields[i].required && !(seen & (1u << i)))
            report_missing(ld, node, schema->fields[i].name);
    if (present)
        *present = seen;
    return 0;
}

static bool has_field(const struct schema *schema, uint32_t present, const char *name)
{
    for (int i = 0; schema->fields[i].name; i++)
        if (!strcmp(schema->fields[i].name, name))
            return present & (1u << i);
    return false;
}

/* ---- scalar handlers ----------------------------------------------------------------------- */

static int set_string(struct loader *ld, const yaml_node_t *node, void *slot)
{
    char **dst = slot;
    const char *s = expect_scalar(ld, node, "a string");
    if (!s)
        return -1;
    char *copy = dup_bytes(ld, s, node->data.scalar.length);
    if (!copy)
        return -1;
    free(*dst);
    *dst = copy;
    return 0;
}

/* A string Envoy requires to be non-empty (names, stat_prefix, paths). */
static int set_name(struct loader *ld, const yaml_node_t *node, void *slot)
{
    const char *s = expect_scalar(ld, node, "a string");
    if (!s)
        return -1;
    if (!*s) {
        report(ld, node, "must not be empty");
        return -1;
    }
    return set_string(ld, node, slot);
}

/* A string legate validates but has no use for (a route's name, the
 * cluster_name of a static cluster's load_assignment). */
static int check_string(struct loader *ld, const yaml_node_t *node, void *slot)
{
    (void)slot;
    return expect_scalar(ld, node, "a string") ? 0 : -1;
}

/* "@type", already checked by load_typed_config. */
static int skip_type_url(struct loader *ld, const yaml_node_t *node, void *slot)
{
    (void)ld, (void)node, (void)slot;
    return 0;
}

/* An unsigned integer, written plainly or (as protobuf JSON allows) quoted. */
static int scan_uint(struct loader *ld, const yaml_node_t *node, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    const char *s = expect_scalar(ld, node, "an integer");
    if (!s)
        return -1;
    const char *digits = s[0] == '-' ? s + 1 : s;
    uint64_t value = 0;
    bool overflow = false;

    if (!*digits)
        goto not_integer;
    for (const char *p = digits; *p; p++) {
        if (*p < '0' || *p > '9')
            goto not_integer;
        unsigned d = (unsigned)(*p - '0');
        if (value > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            value = value * 10 + d;
    }
    if (digits != s || overflow || value < min || value > max) {
        report(ld, node, "%.60s is out of range (%" PRIu64 "-%" PRIu64 ")", s, min, max);
        return -1;
    }
    *out = value;
    return 0;
not_integer:
    report(ld, node, "expected an integer, got \"%.60s\"", s);
    return -1;
}

static int set_u32(struct loader *ld, const yaml_node_t *node, void *slot)
{
    uint64_t value;
    if (scan_uint(ld, node, 0, UINT32_MAX, &value) < 0)
        return -1;
    *(uint32_t *)slot = (uint32_t)value;
    return 0;
}

static int set_bool(struct loader *ld, const yaml_node_t *node, void *slot)
{
    const char *s = expect_scalar(ld, node, "true or false");
    if (!s)
        return -1;
    if (!strcmp(s, "true"))
        *(bool *)slot = true;
    else if (!strcmp(s, "false"))
        *(bool *)slot = false;
    else {
        report(ld, node, "expected true or false, got \"%.60s\"", s);
        return -1;
    }
    return 0;
}

/* A protobuf JSON duration ("5s", "0.25s") in milliseconds. A positive value
 * under a millisecond rounds up to 1 ms, so that it does not read as 0 ("off"). */
static int scan_duration(struct loader *ld, const yaml_node_t *node, uint64_t *ms)
{
    const char *s = expect_scalar(ld, node, "a duration like \"5s\"");
    if (!s)
        return -1;
    const char *p = s;
    uint64_t seconds = 0, nanos = 0;
    int frac_digits = 0;

    if (*p == '-') {
        report(ld, node, "must not be negative");
        return -1;
    }
    if (*p < '0' || *p > '9')
        goto bad;
    for (; *p >= '0' && *p <= '9'; p++) {
        seconds = seconds * 10 + (uint64_t)(*p - '0');
        if (seconds > MAX_DURATION_S) {
            report(ld, node, "%.60s is too long", s);
            return -1;
        }
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            if (++frac_digits > 9)
                goto bad;
            nanos = nanos * 10 + (uint64_t)(*p - '0');
        }
        if (frac_digits == 0)
            goto bad;
        for (int i = frac_digits; i < 9; i++)
            nanos *= 10;
    }
    if (p[0] != 's' || p[1] != '\0')
        goto bad;
    *ms = seconds * 1000 + nanos / 1000000 + (nanos % 1000000 != 0);
    return 0;
bad:
    report(ld, node, "must be a duration like \"5s\", got \"%.60s\"", s);
    return -1;
}

static int set_duration(struct loader *ld, const yaml_node_t *node, void *slot)
{
    return scan_duration(ld, node, slot);
}

struct enum_name {
    const char *name;
    int value;
    bool implemented;
};

static int scan_enum(struct loader *ld, const yaml_node_t *node, const struct enum_name *names,
                     int *out)
{
    const char *s = expect_scalar(ld, node, "a name");
    char expected[256] = "";
    size_t used = 0;

    if (!s)
        return -1;
    for (const struct enum_name *e = names; e->name; e++) {
        if (strcmp(s, e->name))
            continue;
        if (!e->implemented) {
            report(ld, node, "%s is not implemented by legate yet", s);
            return -1;
        }
        *out = e->value;
        return 0;
    }
    for (const struct enum_name *e = names; e->name; e++) {
        int n =
            snprintf(expected + used, sizeof expected - used, "%s%s", used ? ", " : "", e->name);
        if (n < 0 || (size_t)n >= sizeof expected - used)
            break;
        used += (size_t)n;
    }
    report(ld, node, "unknown value \"%.60s\" (one of %s)", s, expected);
    return -1;
}

/* ---- addresses ----------------------------------------------------------------------------- */

/* What an Address walk fills: the address and what the walk saw. */
struct addr_ctx {
    struct cfg_addr *addr;
    uint64_t min_port;   /* 0 for listeners and admin, 1 for upstream endpoints */
    bool allow_hostname; /* an endpoint's: DNS clusters resolve names */
    bool have_ip;
    bool have_port;
    bool hostname;             /* the address was a DNS name */
    struct cfg_mark name_mark; /* where */
};

/* RFC 1123 host name syntax: dot-separated labels of letters, digits and
 * hyphens, not starting or ending with a hyphen; 253 characters at most. */
static bool is_dns_name(const char *s)
{
    size_t len = strlen(s), label = 0;
    if (len > 0 && s[len - 1] == '.')
        len--; /* fully qualified */
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if (isalnum((unsigned char)c) || (c == '-' && label > 0)) {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0 && s[len - 1] != '-';
}

static int set_ip(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct addr_ctx *ctx = slot;
    struct cfg_addr *addr = ctx->addr;
    struct in_addr v4;
    struct in6_addr v6;

    if (set_string(ld, node, &addr->address) < 0)
        return -1;
    memset(&addr->ss, 0, sizeof addr->ss);
    if (inet_pton(AF_INET, addr->address, &v4) == 1) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&addr->ss;
        sin->sin_family = AF_INET;
        sin->sin_addr = v4;
        addr->sslen = sizeof *sin;
    } else if (inet_pton(AF_INET6, addr->address, &v6) == 1) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&addr->ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = v6;
        addr->sslen = sizeof *sin6;
    } else if (ctx->allow_hostname && is_dns_name(addr->address)) {
        ctx->hostname = true; /* resolved by the upstream manager (STRICT_DNS, LOGICAL_DNS) */
        ctx->name_mark = mark_of(node);
    } else {
        report(ld, node, "\"%.60s\" must be a numeric IP address%s", addr->address,
               ctx->allow_hostname ? " or a host name" : "");
        return -1;
    }
    ctx->have_ip = true;
    return 0;
}

static int set_port(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct addr_ctx *ctx = slot;
    uint64_t port;

    ctx->have_port = true; /* given, even if wrong: not also "missing" */
    if (scan_uint(ld, node, ctx->min_port, 65535, &port) < 0)
        return -1;
    ctx->addr->port = (uint16_t)port;
    return 0;
}

static int check_protocol(struct loader *ld, const yaml_node_t *node, void *slot)
{
    static const struct enum_name protocols[] = {
        {"TCP", 0, true},
        {"UDP", 1, false},
        {NULL, 0, false},
    };
    int protocol;
    (void)slot;
    return scan_enum(ld, node, protocols, &protocol);
}

static const struct schema socket_address_schema = {
    .fields =
        (const struct field[]){
            {.name = "address", .parse = set_ip, .required = true},
            {.name = "port_value", .parse = set_port},
            {.name = "protocol", .parse = check_protocol},
            {0},
        },
    .unimplemented = "named_port resolver_name ipv4_compat network_namespace_filepath",
};

static int parse_socket_address(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct addr_ctx *ctx = slot;

    ctx->addr->mark = mark_of(node);
    if (walk_map(ld, node, &socket_address_schema, ctx, NULL) < 0)
        return -1;
    if (!ctx->have_port && ctx->min_port > 0) {
        report_missing(ld, node, "port_value");
        return -1;
    }
    if (!ctx->have_ip)
        return -1;
    if (ctx->addr->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ctx->addr->ss)->sin_port = htons(ctx->addr->port);
    else if (ctx->addr->ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&ctx->addr->ss)->sin6_port = htons(ctx->addr->port);
    return 0;
}

static const struct schema address_schema = {
    .fields =
        (const struct field[]){
            {.name = "socket_address", .parse = parse_socket_address, .required = true},
            {0},
        },
    .unimplemented = "pipe envoy_internal_address",
};

/* An envoy.config.core.v3.Address holding a numeric socket_address. */
static int load_address(struct loader *ld, const yaml_node_t *node, struct cfg_addr *addr,
                        uint64_t min_port)
{
    struct addr_ctx ctx = {.addr = addr, .min_port = min_port};
    return walk_map(ld, node, &address_schema, &ctx, NULL);
}

/* ---- extensions (a {name, typed_config} entry picked by its "@type") --------------------- */

struct extension {
    const char *what;            /* for messages: "network filter", "http filter" … */
    const char *name;            /* Envoy's canonical name */
    const char *type_url;        /* the "@type" of its typed_config */
    const struct schema *entry;  /* the wrapper: name, typed_config and friends */
    const struct schema *config; /* typed_config's fields, "@type" included */
    bool config_required;        /* false: the name alone selects it */
};

/* What an extension entry's walk saw, for load_extension to decide. */
struct ext_entry {
    const yaml_node_t *name;
    const yaml_node_t *config;
};

static int stash_ext_name(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct ext_entry *entry = slot;
    if (!expect_scalar(ld, node, "a string"))
        return -1;
    entry->name = node;
    return 0;
}

static int stash_ext_config(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct ext_entry *entry = slot;
    (void)ld;
    entry->config = node;
    return 0;
}

/* 1 if typed_config is `ext`'s (and was walked into obj), 0 if it is another
 * extension (reported), -1 if malformed (reported). */
static int load_typed_config(struct loader *ld, const yaml_node_t *node,
                             const struct extension *ext, void *obj)
{
    if (node->type != YAML_MAPPING_NODE) {
        report_type(ld, node, "a map");
        return -1;
    }
    const yaml_node_t *type = map_get(ld, node, "@type");
    if (!type) {
        report_missing(ld, node, "@type");
        return -1;
    }
    size_t saved = path_push_field(ld, "@type");
    const char *url = expect_scalar(ld, type, "a type URL");
    int rc = url ? 0 : -1;
    if (url && strcmp(url, ext->type_url)) {
        report(ld, type, "%s %.200s is not implemented by legate", ext->what, url);
        rc = 0;
    } else if (url) {
        rc = 1;
    }
    path_pop(ld, saved);
    if (rc == 1)
        walk_map(ld, node, ext->config, obj, NULL);
    return rc;
}

/* An extension entry. As in Envoy, typed_config's "@type" decides which
 * extension it is; without typed_config, the name does. Returns as
 * load_typed_config. */
static int load_extension(struct loader *ld, const yaml_node_t *node, const struct extension *ext,
                          void *obj)
{
    struct ext_entry entry = {0};
    int rc = 1;

    if (walk_map(ld, node, ext->entry, &entry, NULL) < 0)
        return -1;
    if (entry.config) {
        size_t saved = path_push_field(ld, "typed_config");
        rc = load_typed_config(ld, entry.config, ext, obj);
        path_pop(ld, saved);
    } else if (entry.name && strcmp(scalar_text(entry.name), ext->name)) {
        size_t saved = path_push_field(ld, "name");
        report(ld, entry.name, "%s %.200s is not implemented by legate", ext->what,
               scalar_text(entry.name));
        path_pop(ld, saved);
        rc = 0;
    } else if (ext->config_required) {
        report_missing(ld, node, "typed_config");
        rc = -1;
    } else if (!entry.name) {
        rc = -1; /* name is required: walk_map reported it */
    }
    return rc;
}

/* ---- access logs --------------------------------------------------------------------------- */

static const struct schema data_source_format_schema = {
    .fields =
        (const struct field[]){
            {.name = "inline_string",
             .parse = set_string,
             .offset = offsetof(struct cfg_access_log, format),
             .required = true},
            {0},
        },
    .unimplemented = "filename inline_bytes environment_variable watched_directory",
};

static const struct schema log_format_schema = {
    .fields =
        (const struct field[]){
            {.name = "text_format_source", .nested = &data_source_format_schema},
            {0},
        },
    .unimplemented = "text_format json_format omit_empty_values content_type formatters "
                     "json_format_options",
};

static const struct schema file_access_log_schema = {
    .fields =
        (const struct field[]){
            {.name = "@type", .parse = skip_type_url},
            {.name = "path",
             .parse = set_name,
             .offset = offsetof(struct cfg_access_log, path),
             .required = true},
            {.name = "log_format", .nested = &log_format_schema},
            {0},
        },
    .unimplemented = "format json_format typed_json_format",
};

static const struct schema access_log_entry_schema = {
    .fields =
        (const struct field[]){
            {.name = "name", .parse = stash_ext_name},
            {.name = "typed_config", .parse = stash_ext_config},
            {0},
        },
    .unimplemented = "filter",
};

static const struct extension file_access_log = {
    .what = "access logger",
    .name = FILE_LOG_NAME,
    .type_url = FILE_LOG_TYPE,
    .entry = &access_log_entry_schema,
    .config = &file_access_log_schema,
    .config_required = true,
};

static int parse_access_logs(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_hcm *hcm = slot;
    size_t n;

    if (expect_list(ld, node, &n) < 0)
        return -1;
    hcm->access_logs = alloc_items(ld, n, sizeof *hcm->access_logs);
    if (!hcm->access_logs)
        return -1;
    hcm->n_access_logs = n;
    for (size_t i = 0; i < n; i++) {
        hcm->access_logs[i].fd = -1;
        size_t saved = path_push_index(ld, i);
        load_extension(ld, list_item(ld, node, i), &file_access_log, &hcm->access_logs[i]);
        path_pop(ld, saved);
    }
    return 0;
}

/* ---- http filters -------------------------------------------------------------------------- */

static const struct schema router_schema = {
    .fields =
        (const struct field[]){
            {.name = "@type", .parse = skip_type_url},
            {0},
        },
    .unimplemented = "dynamic_stats start_child_span upstream_log upstream_log_options "
                     "suppress_envoy_headers strict_check_headers respect_expected_rq_timeout "
                     "suppress_grpc_request_failure_code_stats upstream_http_filters",
};

static const struct schema http_filter_entry_schema = {
    .fields =
        (const struct field[]){
            {.name = "name", .parse = stash_ext_name, .required = true},
            {.name = "typed_config", .parse = stash_ext_config},
            {0},
        },
    .unimplemented = "config_discovery is_optional disabled",
};

static const struct extension router_filter = {
    .what = "http filter",
    .name = ROUTER_NAME,
    .type_url = ROUTER_TYPE,
    .entry = &http_filter_entry_schema,
    .config = &router_schema,
    .config_required = false,
};

/* http_filters: the router is the only one implemented, and Envoy wants it last. */
static int parse_http_filters(struct loader *ld, const yaml_node_t *node, void *slot)
{
    int last = -1;
    size_t n;
    (void)slot;

    if (expect_list(ld, node, &n) < 0)
        return -1;
    if (n == 0) {
        report(ld, node, "must not be empty: the last http filter must be " ROUTER_NAME);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *item = list_item(ld, node, i);
        size_t saved = path_push_index(ld, i);
        last = load_extension(ld, item, &router_filter, NULL);
        if (last == 1 && i + 1 < n)
            report(ld, item, ROUTER_NAME " must be the last http filter");
        path_pop(ld, saved);
    }
    if (last == 0) {
        report(ld, node, "the last http filter must be " ROUTER_NAME);
        return -1;
    }
    return 0;
}

/* ---- routes -------------------------------------------------------------------------------- */

static int set_match(struct loader *ld, const yaml_node_t *node, struct cfg_route *route,
                     enum cfg_route_match kind)
{
    const char *s = expect_scalar(ld, node, "a string");
    if (!s)
        return -1;
    /* Envoy allows the empty prefix (it matches everything), not the empty path. */
    if (s[0] != '/' && (kind == ROUTE_MATCH_PATH || s[0] != '\0')) {
        report(ld, node, "must start with \"/\"");
        return -1;
    }
    if (set_string(ld, node, &route->match_value) < 0)
        return -1;
    route->match = kind;
    route->match_len = strlen(route->match_value);
    return 0;
}

static int set_match_prefix(struct loader *ld, const yaml_node_t *node, void *slot)
{
    return set_match(ld, node, slot, ROUTE_MATCH_PREFIX);
}

static int set_match_path(struct loader *ld, const yaml_node_t *node, void *slot)
{
    return set_match(ld, node, slot, ROUTE_MATCH_PATH);
}

static const struct schema match_schema = {
    .fields =
        (const struct field[]){
            {.name = "prefix", .parse = set_match_prefix},
            {.name = "path", .parse = set_match_path},
            {0},
        },
    .unimplemented = "safe_regex connect_matcher path_separated_prefix path_match_policy "
                     "case_sensitive runtime_fraction headers query_parameters grpc tls_context "
                     "dynamic_metadata filter_state cel_expression",
};

static int parse_match(struct loader *ld, const yaml_node_t *node, void *slot)
{
    uint32_t present;

    if (walk_map(ld, node, &match_schema, slot, &present) < 0)
        return -1;
    bool prefix = has_field(&match_schema, present, "prefix");
    bool path = has_field(&match_schema, present, "path");
    if (prefix && path) {
        report(ld, node, "has both prefix and path; exactly one is allowed");
        return -1;
    }
    if (!prefix && !path) {
        report(ld, node, "needs one of prefix or path");
        return -1;
    }
    return 0;
}

static int set_route_cluster(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_route *route = slot;

    if (set_name(ld, node, &route->cluster) < 0)
        return -1;
    if (ld->n_refs == ld->cap_refs) {
        size_t cap = ld->cap_refs ? ld->cap_refs * 2 : 8;
        struct cluster_ref *grown = reallocarray(ld->refs, cap, sizeof *grown);
        if (!grown) {
            ld->oom = true;
            return -1;
        }
        ld->refs = grown;
        ld->cap_refs = cap;
    }
    char *path = dup_string(ld, ld->path);
    if (!path)
        return -1;
    ld->refs[ld->n_refs++] =
        (struct cluster_ref){.route = route, .at = mark_of(node), .path = path};
    return 0;
}

/* route.hash_policy[]: what RING_HASH and MAGLEV hash. Exactly one kind per entry. */
struct hash_policy_walk {
    struct cfg_hash_policy *hp;
    int kinds; /* how many kinds the entry named */
};

static int set_hash_name(struct loader *ld, const yaml_node_t *node, struct cfg_hash_policy *hp,
                         bool lower)
{
    if (set_name(ld, node, &hp->name) < 0)
        return -1;
    hp->name_len = strlen(hp->name);
    if (lower)
        for (char *c = hp->name; *c; c++)
            *c = (char)tolower((unsigned char)*c);
    return 0;
}

static int set_hash_header_name(struct loader *ld, const yaml_node_t *node, void *slot)
{
    return set_hash_name(ld, node, slot, true);
}

static int set_hash_plain_name(struct loader *ld, const yaml_node_t *node, void *slot)
{
    return set_hash_name(ld, node, slot, false);
}

static const struct schema hash_header_schema = {
    .fields =
        (const struct field[]){
            {.name = "header_name", .parse = set_hash_header_name, .required = true}, {0}},
    .unimplemented = "regex_rewrite",
};

static const struct schema hash_cookie_schema = {
    .fields =
        (const struct field[]){{.name = "name", .parse = set_hash_plain_name, .required = true},
                               {0}},
    .unimplemented = "ttl path attributes",
};

static const struct schema hash_query_schema = {
    .fields =
        (const struct field[]){{.name = "name", .parse = set_hash_plain_name, .required = true},
                               {0}},
};

static int set_source_ip(struct loader *ld, const yaml_node_t *node, void *slot)
{
    bool on = false;
    if (set_bool(ld, node, &on) < 0)
        return -1;
    if (!on) {
        report(ld, node, "source_ip: false hashes nothing; leave the entry out");
        return -1;
    }
    (void)slot;
    return 0;
}

static const struct schema hash_connection_schema = {
    .fields =
        (const struct field[]){{.name = "source_ip", .parse = set_source_ip, .required = true},
                               {0}},
};

static int parse_hash_kind(struct loader *ld, const yaml_node_t *node, struct hash_policy_walk *w,
                           enum cfg_hash_kind kind, const struct schema *schema)
{
    w->hp->kind = kind;
    w->kinds++;
    return walk_map(ld, node, schema, w->hp, NULL);
}

static int parse_hash_header(struct loader *ld, const yaml_node_t *node, void *slot)
{
    return parse_hash_kind(ld, node, slot, HASH_HEADER, &hash_header_schema);
}

static int parse_hash_cookie(struct loader *ld, const yaml_node_t *node, void *slot)
{
    return parse_hash_kind(ld, node, slot, HASH_COOKIE, &hash_cookie_schema);
}

static int parse_hash_connection(struct loader *ld, const yaml_node_t *node, void *slot)
{
    return parse_hash_kind(ld, node, slot, HASH_SOURCE_IP, &hash_connection_schema);
}

static int parse_hash_query(struct loader *ld, const yaml_node_t *node, void *slot)
{
    return parse_hash_kind(ld, node, slot, HASH_QUERY_PARAMETER, &hash_query_schema);
}

static int set_hash_terminal(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct hash_policy_walk *w = slot;
    return set_bool(ld, node, &w->hp->terminal);
}

static const struct schema hash_policy_schema = {
    .fields =
        (const struct field[]){
            {.name = "header", .parse = parse_hash_header},
            {.name = "cookie", .parse = parse_hash_cookie},
            {.name = "connection_properties", .parse = parse_hash_connection},
            {.name = "query_parameter", .parse = parse_hash_query},
            {.name = "terminal", .parse = set_hash_terminal},
            {0},
        },
    .unimplemented = "filter_state",
};

static int parse_hash_policy(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_route *route = slot;
    size_t n;
    if (expect_list(ld, node, &n) < 0)
        return -1;
    route->hash_policy = alloc_items(ld, n, sizeof *route->hash_policy);
    if (n > 0 && !route->hash_policy)
        return -1;
    route->n_hash_policy = n;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(ld, i);
        const yaml_node_t *item = list_item(ld, node, i);
        struct hash_policy_walk w = {.hp = &route->hash_policy[i]};
        size_t before = ld->n_errors;
        walk_map(ld, item, &hash_policy_schema, &w, NULL);
        if (ld->n_errors == before && w.kinds != 1)
            report(ld, item,
                   "needs exactly one of header, cookie, connection_properties or "
                   "query_parameter");
        path_pop(ld, saved);
    }
    return 0;
}

static const struct schema route_action_schema = {
    .fields =
        (const struct field[]){
            {.name = "cluster", .parse = set_route_cluster, .required = true},
            {.name = "timeout",
             .parse = set_duration,
             .offset = offsetof(struct cfg_route, timeout_ms)},
            {.name = "prefix_rewrite",
             .parse = set_string,
             .offset = offsetof(struct cfg_route, prefix_rewrite)},
            {.name = "hash_policy", .parse = parse_hash_policy},
            {0},
        },
    .unimplemented = "cluster_header weighted_clusters cluster_specifier_plugin "
                     "inline_cluster_specifier_plugin cluster_not_found_response_code "
                     "metadata_match regex_rewrite path_rewrite_policy host_rewrite_literal "
                     "auto_host_rewrite host_rewrite_header host_rewrite_path_regex "
                     "append_x_forwarded_host idle_timeout early_data_policy retry_policy "
                     "retry_policy_typed_config request_mirror_policies priority rate_limits "
                     "include_vh_rate_limits cors max_grpc_timeout grpc_timeout_offset "
                     "upgrade_configs internal_redirect_policy internal_redirect_action "
                     "max_internal_redirects hedge_policy max_stream_duration",
};

static int parse_route_action(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_route *route = slot;
    route->action = ROUTE_ACTION_CLUSTER;
    return walk_map(ld, node, &route_action_schema, route, NULL);
}

static int set_direct_status(struct loader *ld, const yaml_node_t *node, void *slot)
{
    uint64_t status;
    if (scan_uint(ld, node, 100, 599, &status) < 0)
        return -1;
    ((struct cfg_route *)slot)->direct_status = (int)status;
    return 0;
}

static int set_direct_body(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_route *route = slot;
    const char *s = expect_scalar(ld, node, "a string");
    if (!s)
        return -1;
    size_t len = node->data.scalar.length;
    if (len > MAX_DIRECT_BODY) {
        report(ld, node, "the body is %zu bytes, more than Envoy's limit of %d", len,
               MAX_DIRECT_BODY);
        return -1;
    }
    char *copy = dup_bytes(ld, s, len);
    if (!copy)
        return -1;
    free(route->direct_body);
    route->direct_body = copy;
    route->direct_body_len = len;
    return 0;
}

static const struct schema direct_body_schema = {
    .fields =
        (const struct field[]){
            {.name = "inline_string", .parse = set_direct_body, .required = true},
            {0},
        },
    .unimplemented = "filename inline_bytes environment_variable watched_directory",
};

static const struct schema direct_response_schema = {
    .fields =
        (const struct field[]){
            {.name = "status", .parse = set_direct_status, .required = true},
            {.name = "body", .nested = &direct_body_schema},
            {0},
        },
    .unimplemented = "body_format",
};

static int parse_direct_response(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_route *route = slot;
    route->action = ROUTE_ACTION_DIRECT;
    return walk_map(ld, node, &direct_response_schema, route, NULL);
}

static const struct schema route_schema = {
    .fields =
        (const struct field[]){
            {.name = "name", .parse = check_string},
            {.name = "match", .parse = parse_match, .required = true},
            {.name = "route", .parse = parse_route_action},
            {.name = "direct_response", .parse = parse_direct_response},
            {0},
        },
    .unimplemented = "redirect filter_action non_forwarding_action metadata decorator "
                     "typed_per_filter_config request_headers_to_add request_headers_to_remove "
                     "response_headers_to_add response_headers_to_remove tracing "
                     "per_request_buffer_limit_bytes stat_prefix",
};

static int parse_routes(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_vhost *vh = slot;
    size_t n;

    if (expect_list(ld, node, &n) < 0)
        return -1;
    vh->routes = alloc_items(ld, n, sizeof *vh->routes);
    if (!vh->routes)
        return -1;
    vh->n_routes = n;
    for (size_t i = 0; i < n; i++) {
        struct cfg_route *route = &vh->routes[i];
        const yaml_node_t *item = list_item(ld, node, i);
        size_t saved = path_push_index(ld, i);
        uint32_t present;

        route->timeout_ms = ROUTE_TIMEOUT_DEFAULT_MS;
        route->mark = mark_of(item);
        if (walk_map(ld, item, &route_schema, route, &present) == 0) {
            bool forward = has_field(&route_schema, present, "route");
            bool direct = has_field(&route_schema, present, "direct_response");
            /* An unimplemented action (redirect …) was reported already. */
            bool other = item->type == YAML_MAPPING_NODE &&
                         (map_get(ld, item, "redirect") || map_get(ld, item, "filter_action") ||
                          map_get(ld, item, "non_forwarding_action"));
            if (forward && direct)
                report(ld, item, "has both route and direct_response; exactly one is allowed");
            else if (!forward && !direct && !other)
                report(ld, item, "needs an action: route or direct_response");
        }
        path_pop(ld, saved);
    }
    return 0;
}

/* ---- virtual hosts and route_config -------------------------------------------------------- */

static int set_vhost_name(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_vhost *vh = slot;

    if (set_name(ld, node, &vh->name) < 0)
        return -1;
    for (size_t i = 0; i < ld->vhost_index; i++) {
        const char *other = ld->route_config->vhosts[i].name;
        if (other && !strcmp(other, vh->name)) {
            report(ld, node, "duplicate virtual host name \"%.100s\"", vh->name);
            return -1;
        }
    }
    return 0;
}

/* The virtual host (this one included) that already lists `domain`, or NULL. */
static const struct cfg_vhost *domain_owner(struct loader *ld, const char *domain)
{
    for (size_t v = 0; v <= ld->vhost_index; v++) {
        const struct cfg_vhost *vh = &ld->route_config->vhosts[v];
        for (size_t d = 0; d < vh->n_domains; d++)
            if (vh->domains[d] && !strcmp(vh->domains[d], domain))
                return vh;
    }
    return NULL;
}

static int set_domain(struct loader *ld, const yaml_node_t *node, struct cfg_vhost *vh,
                      size_t index)
{
    const char *s = expect_scalar(ld, node, "a string");
    if (!s)
        return -1;
    size_t len = node->data.scalar.length;
    if (len == 0) {
        report(ld, node, "must not be empty");
        return -1;
    }
    char *lower = dup_bytes(ld, s, len);
    if (!lower)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)lower[i];
        if (c <= ' ' || c == 0x7f) {
            report(ld, node, "must not contain spaces or control characters");
            free(lower);
            return -1;
        }
        if (c >= 'A' && c <= 'Z')
            lower[i] = (char)(c - 'A' + 'a');
    }
    const struct cfg_vhost *owner = domain_owner(ld, lower);
    if (owner) {
        /* Envoy rejects it too: the match would depend on the order. */
        report(ld, node, "duplicate domain \"%.100s\" (also in virtual host \"%.100s\")", lower,
               owner->name ? owner->name : "");
        free(lower);
        return -1;
    }
    vh->domains[index] = lower;
    return 0;
}

static int parse_domains(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_vhost *vh = slot;
    size_t n;

    if (expect_list(ld, node, &n) < 0)
        return -1;
    if (n == 0) {
        report(ld, node, "must list at least one domain");
        return -1;
    }
    vh->domains = alloc_items(ld, n, sizeof *vh->domains);
    if (!vh->domains)
        return -1;
    vh->n_domains = n;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(ld, i);
        set_domain(ld, list_item(ld, node, i), vh, i);
        path_pop(ld, saved);
    }
    return 0;
}

static const struct schema vhost_schema = {
    .fields =
        (const struct field[]){
            {.name = "name", .parse = set_vhost_name, .required = true},
            {.name = "domains", .parse = parse_domains, .required = true},
            {.name = "routes", .parse = parse_routes},
            {0},
        },
    .unimplemented = "require_tls virtual_clusters rate_limits request_headers_to_add "
                     "request_headers_to_remove response_headers_to_add response_headers_to_remove "
                     "cors typed_per_filter_config include_request_attempt_count "
                     "include_attempt_count_in_response retry_policy retry_policy_typed_config "
                     "hedge_policy include_is_timeout_retry_header per_request_buffer_limit_bytes "
                     "request_mirror_policies matcher metadata",
};

static int parse_vhosts(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_route_config *rc = slot;
    size_t n;

    if (expect_list(ld, node, &n) < 0)
        return -1;
    rc->vhosts = alloc_items(ld, n, sizeof *rc->vhosts);
    if (!rc->vhosts)
        return -1;
    rc->n_vhosts = n;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(ld, i);
        ld->vhost_index = i;
        walk_map(ld, list_item(ld, node, i), &vhost_schema, &rc->vhosts[i], NULL);
        path_pop(ld, saved);
    }
    return 0;
}

static const struct schema route_config_schema = {
    .fields =
        (const struct field[]){
            {.name = "name",
             .parse = set_string,
             .offset = offsetof(struct cfg_route_config, name)},
            {.name = "virtual_hosts", .parse = parse_vhosts},
            {0},
        },
    .unimplemented = "vhds internal_only_headers response_headers_to_add "
                     "response_headers_to_remove request_headers_to_add request_headers_to_remove "
                     "most_specific_header_mutations_wins validate_clusters "
                     "max_direct_response_body_size_bytes cluster_specifier_plugins "
                     "request_mirror_policies ignore_port_in_host_matching "
                     "ignore_path_parameters_in_path_matching typed_per_filter_config metadata",
};

static int parse_route_config(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_route_config *rc = slot;
    ld->route_config = rc;
    int result = walk_map(ld, node, &route_config_schema, rc, NULL);
    ld->route_config = NULL;
    return result;
}

/* ---- http_connection_manager --------------------------------------------------------------- */

static int set_codec(struct loader *ld, const yaml_node_t *node, void *slot)
{
    static const struct enum_name codecs[] = {
        {"AUTO", CODEC_AUTO, true}, {"HTTP1", CODEC_HTTP1, true},
        {"HTTP2", -1, false},       {"HTTP3", -1, false},
        {NULL, 0, false},
    };
    int codec;
    if (scan_enum(ld, node, codecs, &codec) < 0)
        return -1;
    *(enum cfg_codec *)slot = (enum cfg_codec)codec;
    return 0;
}

static const struct schema common_http_options_schema = {
    .fields =
        (const struct field[]){
            {.name = "idle_timeout",
             .parse = set_duration,
             .offset = offsetof(struct cfg_hcm, idle_timeout_ms)},
            {0},
        },
    .unimplemented = "max_connection_duration max_headers_count max_response_headers_kb "
                     "max_stream_duration headers_with_underscores_action "
                     "max_requests_per_connection",
};

static const struct schema hcm_schema = {
    .fields =
        (const struct field[]){
            {.name = "@type", .parse = skip_type_url},
            {.name = "stat_prefix",
             .parse = set_name,
             .offset = offsetof(struct cfg_hcm, stat_prefix),
             .required = true},
            {.name = "codec_type", .parse = set_codec, .offset = offsetof(struct cfg_hcm, codec)},
            {.name = "generate_request_id",
             .parse = set_bool,
             .offset = offsetof(struct cfg_hcm, generate_request_id)},
            {.name = "request_headers_timeout",
             .parse = set_duration,
             .offset = offsetof(struct cfg_hcm, request_headers_timeout_ms)},
            {.name = "stream_idle_timeout",
             .parse = set_duration,
             .offset = offsetof(struct cfg_hcm, stream_idle_timeout_ms)},
            {.name = "request_timeout",
             .parse = set_duration,
             .offset = offsetof(struct cfg_hcm, request_timeout_ms)},
            {.name = "common_http_protocol_options", .nested = &common_http_options_schema},
            {.name = "route_config",
             .parse = parse_route_config,
             .offset = offsetof(struct cfg_hcm, routes),
             .required = true},
            {.name = "http_filters", .parse = parse_http_filters, .required = true},
            {.name = "access_log", .parse = parse_access_logs},
            {0},
        },
    .unimplemented = "rds scoped_routes tracing http_protocol_options http2_protocol_options "
                     "http3_protocol_options server_name server_header_transformation "
                     "scheme_header_transformation max_request_headers_kb "
                     "drain_timeout delayed_close_timeout access_log_options use_remote_address "
                     "xff_num_trusted_hops original_ip_detection_extensions "
                     "early_header_mutation_extensions internal_address_config skip_xff_append via "
                     "preserve_external_request_id always_set_request_id_in_response "
                     "forward_client_cert_details set_current_client_cert_details "
                     "proxy_100_continue represent_ipv4_remote_address_as_ipv4_mapped_ipv6 "
                     "upgrade_configs normalize_path merge_slashes "
                     "path_with_escaped_slashes_action request_id_extension local_reply_config "
                     "strip_matching_host_port strip_any_host_port "
                     "stream_error_on_invalid_http_message path_normalization_options "
                     "strip_trailing_host_dot proxy_status_config typed_header_validation_config "
                     "append_x_forwarded_port append_local_overload "
                     "add_proxy_protocol_connection_state",
};

static const struct schema network_filter_entry_schema = {
    .fields =
        (const struct field[]){
            {.name = "name", .parse = stash_ext_name, .required = true},
            {.name = "typed_config", .parse = stash_ext_config},
            {0},
        },
    .unimplemented = "config_discovery",
};

static const struct extension http_connection_manager = {
    .what = "network filter",
    .name = HCM_NAME,
    .type_url = HCM_TYPE,
    .entry = &network_filter_entry_schema,
    .config = &hcm_schema,
    .config_required = true,
};

/* ---- listeners ----------------------------------------------------------------------------- */

#define CONN_LIMIT_NAME "envoy.filters.network.connection_limit"
#define CONN_LIMIT_TYPE                                                                            \
    "type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit"

static const struct schema connection_limit_schema = {
    .fields =
        (const struct field[]){
            {.name = "@type", .parse = skip_type_url},
            {.name = "stat_prefix",
             .parse = set_string,
             .offset = offsetof(struct cfg_conn_limit, stat_prefix),
             .required = true},
            {.name = "max_connections",
             .parse = set_u32,
             .offset = offsetof(struct cfg_conn_limit, max_connections),
             .required = true},
            {0},
        },
    .unimplemented = "delay runtime_enabled",
};

static const struct extension connection_limit_filter = {
    .what = "network filter",
    .name = CONN_LIMIT_NAME,
    .type_url = CONN_LIMIT_TYPE,
    .entry = &network_filter_entry_schema,
    .config = &connection_limit_schema,
    .config_required = true,
};

/* Whether an extension entry names `ext` (by typed_config's "@type", else by
 * name), without reporting anything. */
static bool entry_is(struct loader *ld, const yaml_node_t *item, const struct extension *ext)
{
    if (item->type != YAML_MAPPING_NODE)
        return false;
    const yaml_node_t *tc = map_get(ld, item, "typed_config");
    const yaml_node_t *type =
        tc != NULL && tc->type == YAML_MAPPING_NODE ? map_get(ld, tc, "@type") : NULL;
    const yaml_node_t *name = map_get(ld, item, "name");
    if (type != NULL && type->type == YAML_SCALAR_NODE)
        return strcmp(scalar_text(type), ext->type_url) == 0;
    return name != NULL && name->type == YAML_SCALAR_NODE &&
           strcmp(scalar_text(name), ext->name) == 0;
}

/* The connection manager comes last; before it, at most one connection_limit. */
static int parse_network_filters(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_listener *listener = slot;
    size_t n;

    if (expect_list(ld, node, &n) < 0)
        return -1;
    if (n == 0) {
        report(ld, node, "needs exactly one filter: " HCM_NAME);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *item = list_item(ld, node, i);
        size_t saved = path_push_index(ld, i);
        if (i == n - 1) {
            load_extension(ld, item, &http_connection_manager, &listener->hcm);
        } else if (entry_is(ld, item, &connection_limit_filter) && !listener->conn_limit.enabled) {
            if (load_extension(ld, item, &connection_limit_filter, &listener->conn_limit) == 1) {
                listener->conn_limit.enabled = true;
                const yaml_node_t *max =
                    map_get(ld, map_get(ld, item, "typed_config"), "max_connections");
                if (listener->conn_limit.max_connections == 0 && max != NULL) /* else reported */
                    report(ld, max, "typed_config.max_connections must be at least 1");
            }
        } else {
            report(ld, item,
                   "only one " CONN_LIMIT_NAME " may come before the " HCM_NAME
                   ", which must be the last filter");
        }
        path_pop(ld, saved);
    }
    return 0;
}

static const struct schema filter_chain_schema = {
    .fields =
        (const struct field[]){
            {.name = "filters", .parse = parse_network_filters, .required = true},
            {0},
        },
    .unimplemented = "filter_chain_match transport_socket transport_socket_connect_timeout "
                     "use_proxy_proto metadata name on_demand_configuration",
};

static int parse_filter_chains(struct loader *ld, const yaml_node_t *node, void *slot)
{
    size_t n;

    if (expect_list(ld, node, &n) < 0)
        return -1;
    if (n == 0) {
        report(ld, node, "needs exactly one filter chain");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *item = list_item(ld, node, i);
        size_t saved = path_push_index(ld, i);
        if (i == 0)
            walk_map(ld, item, &filter_chain_schema, slot, NULL);
        else
            report(ld, item, "more than one filter chain is not implemented by legate");
        path_pop(ld, saved);
    }
    return 0;
}

static int set_listener_name(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_listener *listener = slot;

    if (set_name(ld, node, &listener->name) < 0)
        return -1;
    for (size_t i = 0; i < ld->listener_index; i++) {
        const char *other = ld->cfg->listeners[i].name;
        if (other && !strcmp(other, listener->name)) {
            report(ld, node, "duplicate listener name \"%.100s\" (also listeners[%zu])",
                   listener->name, i);
            return -1;
        }
    }
    return 0;
}

static int parse_listener_address(struct loader *ld, const yaml_node_t *node, void *slot)
{
    return load_address(ld, node, slot, 0);
}

static const struct schema listener_schema = {
    .fields =
        (const struct field[]){
            {.name = "name", .parse = set_listener_name, .required = true},
            {.name = "address",
             .parse = parse_listener_address,
             .offset = offsetof(struct cfg_listener, addr),
             .required = true},
            {.name = "filter_chains", .parse = parse_filter_chains, .required = true},
            {0},
        },
    .unimplemented = "additional_addresses stat_prefix metadata drain_type default_filter_chain "
                     "filter_chain_matcher use_original_dst per_connection_buffer_limit_bytes "
                     "listener_filters listener_filters_timeout "
                     "continue_on_listener_filters_timeout transparent freebind socket_options "
                     "tcp_fast_open_queue_length traffic_direction udp_listener_config "
                     "api_listener connection_balance_config reuse_port enable_reuse_port "
                     "access_log tcp_backlog_size max_connections_to_accept_per_socket_event "
                     "bind_to_port internal_listener enable_mptcp ignore_global_conn_limit "
                     "bypass_overload_manager",
};

static int parse_listeners(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct config *cfg = slot;
    size_t n;

    if (expect_list(ld, node, &n) < 0)
        return -1;
    cfg->listeners = alloc_items(ld, n, sizeof *cfg->listeners);
    if (!cfg->listeners)
        return -1;
    cfg->n_listeners = n;
    for (size_t i = 0; i < n; i++) {
        struct cfg_listener *listener = &cfg->listeners[i];
        size_t saved = path_push_index(ld, i);

        listener->hcm.codec = CODEC_AUTO;
        listener->hcm.generate_request_id = true;
        listener->hcm.stream_idle_timeout_ms = STREAM_IDLE_TIMEOUT_DEFAULT_MS;
        listener->hcm.idle_timeout_ms = IDLE_TIMEOUT_DEFAULT_MS;
        ld->listener_index = i;
        walk_map(ld, list_item(ld, node, i), &listener_schema, listener, NULL);
        path_pop(ld, saved);
    }
    return 0;
}

/* ---- clusters ------------------------------------------------------------------------------ */

static int set_cluster_name(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_cluster *cluster = slot;

    if (set_name(ld, node, &cluster->name) < 0)
        return -1;
    for (size_t i = 0; i < ld->cluster_index; i++) {
        const char *other = ld->cfg->clusters[i].name;
        if (other && !strcmp(other, cluster->name)) {
            report(ld, node, "duplicate cluster name \"%.100s\" (also clusters[%zu])",
                   cluster->name, i);
            return -1;
        }
    }
    return 0;
}

static int set_cluster_type(struct loader *ld, const yaml_node_t *node, void *slot)
{
    static const struct enum_name types[] = {
        {"STATIC", CLUSTER_STATIC, true},
        {"STRICT_DNS", CLUSTER_STRICT_DNS, true},
        {"LOGICAL_DNS", CLUSTER_LOGICAL_DNS, true},
        {"EDS", CLUSTER_EDS, true},
        {"ORIGINAL_DST", -1, false},
        {NULL, 0, false},
    };
    int type;
    if (scan_enum(ld, node, types, &type) < 0)
        return -1;
    *(enum cfg_cluster_type *)slot = (enum cfg_cluster_type)type;
    return 0;
}

static int set_lb_policy(struct loader *ld, const yaml_node_t *node, void *slot)
{
    static const struct enum_name policies[] = {
        {"ROUND_ROBIN", LB_ROUND_ROBIN, true},
        {"LEAST_REQUEST", LB_LEAST_REQUEST, true},
        {"RANDOM", LB_RANDOM, true},
        {"RING_HASH", LB_RING_HASH, true},
        {"MAGLEV", LB_MAGLEV, true},
        {"CLUSTER_PROVIDED", -1, false},
        {"LOAD_BALANCING_POLICY_CONFIG", -1, false},
        {NULL, 0, false},
    };
    int policy;
    if (scan_enum(ld, node, policies, &policy) < 0)
        return -1;
    *(enum cfg_lb_policy *)slot = (enum cfg_lb_policy)policy;
    return 0;
}

/* A duration above 0s (connect_timeout, health-check and outlier intervals ...). */
static int set_positive_duration(struct loader *ld, const yaml_node_t *node, void *slot)
{
    uint64_t ms;
    if (scan_duration(ld, node, &ms) < 0)
        return -1;
    if (ms == 0) {
        report(ld, node, "must be greater than 0s");
        return -1;
    }
    *(uint64_t *)slot = ms;
    return 0;
}

/* An endpoint's address: numeric, or (checked against the cluster's type once
 * it is known) a DNS name. */
static int parse_endpoint_address(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_endpoint *ep = slot;
    struct addr_ctx ctx = {.addr = &ep->addr, .min_port = 1, .allow_hostname = true};
    int rc = walk_map(ld, node, &address_schema, &ctx, NULL);
    ep->hostname = ctx.hostname;
    if (ctx.hostname)
        ep->addr.mark = ctx.name_mark; /* a check against the cluster's type points here */
    return rc;
}

static const struct schema endpoint_schema = {
    .fields =
        (const struct field[]){
            {.name = "address", .parse = parse_endpoint_address, .offset = 0, .required = true},
            {0},
        },
    .unimplemented = "health_check_config hostname additional_addresses",
};

/* Envoy's UInt32Value with a minimum of 1 (0 is refused, not "unset"). */
static int set_weight(struct loader *ld, const yaml_node_t *node, void *slot)
{
    uint32_t v = 0;
    if (set_u32(ld, node, &v) < 0)
        return -1;
    if (v == 0) {
        report(ld, node, "must be at least 1");
        return -1;
    }
    *(uint32_t *)slot = v;
    return 0;
}

static int set_health_status(struct loader *ld, const yaml_node_t *node, void *slot)
{
    static const struct enum_name statuses[] = {
        {"UNKNOWN", HEALTH_STATUS_UNKNOWN, true},
        {"HEALTHY", HEALTH_STATUS_HEALTHY, true},
        {"UNHEALTHY", HEALTH_STATUS_UNHEALTHY, true},
        {"DRAINING", HEALTH_STATUS_DRAINING, true},
        {"TIMEOUT", HEALTH_STATUS_TIMEOUT, true},
        {"DEGRADED", HEALTH_STATUS_DEGRADED, true},
        {NULL, 0, false},
    };
    int v;
    if (scan_enum(ld, node, statuses, &v) < 0)
        return -1;
    *(enum cfg_health_status *)slot = (enum cfg_health_status)v;
    return 0;
}

static const struct schema lb_endpoint_schema = {
    .fields =
        (const struct field[]){
            {.name = "endpoint", .nested = &endpoint_schema, .required = true},
            {.name = "load_balancing_weight",
             .parse = set_weight,
             .offset = offsetof(struct cfg_endpoint, weight)},
            {.name = "health_status",
             .parse = set_health_status,
             .offset = offsetof(struct cfg_endpoint, health_status)},
            {0},
        },
    .unimplemented = "endpoint_name metadata",
};

static int set_choice_count(struct loader *ld, const yaml_node_t *node, void *slot)
{
    uint32_t v = 0;
    if (set_u32(ld, node, &v) < 0)
        return -1;
    if (v < 2) {
        report(ld, node, "must be at least 2");
        return -1;
    }
    *(uint32_t *)slot = v;
    return 0;
}

/* A number written as text: the scalar (NULL, reported, if `node` is none),
 * with *ok set when all of it parsed. The caller says what range it wants. */
static const char *scan_double(struct loader *ld, const yaml_node_t *node, double *v, bool *ok)
{
    const char *s = expect_scalar(ld, node, "a number");
    if (!s)
        return NULL;
    char *end = NULL;
    errno = 0;
    *v = strtod(s, &end);
    *ok = end != s && *end == '\0' && errno == 0;
    return s;
}

/* type.v3.Percent: {value: 0..100}, a double. */
static int set_percent_value(struct loader *ld, const yaml_node_t *node, void *slot)
{
    double v;
    bool ok;
    const char *s = scan_double(ld, node, &v, &ok);
    if (!s)
        return -1;
    if (!ok || !(v >= 0.0 && v <= 100.0)) {
        report(ld, node, "must be a number from 0 to 100, got \"%.60s\"", s);
        return -1;
    }
    *(double *)slot = v;
    return 0;
}

static const struct schema percent_schema = {
    .fields = (const struct field[]){{.name = "value", .parse = set_percent_value}, {0}},
};

/* slow_start_config, in round_robin_lb_config or least_request_lb_config. */
static int set_aggression(struct loader *ld, const yaml_node_t *node, void *slot)
{
    double v;
    bool ok;
    const char *s = scan_double(ld, node, &v, &ok);
    if (!s)
        return -1;
    if (!ok || !(v > 0.0 && v <= 1000.0)) {
        report(ld, node, "must be a number above 0 (and at most 1000), got \"%.60s\"", s);
        return -1;
    }
    *(double *)slot = v;
    return 0;
}

static const struct schema runtime_double_schema = {
    .fields =
        (const struct field[]){
            {.name = "default_value", .parse = set_aggression, .required = true},
            {.name = "runtime_key", .parse = check_string},
            {0},
        },
};

static const struct schema slow_start_schema = {
    .fields =
        (const struct field[]){
            {.name = "slow_start_window",
             .parse = set_positive_duration,
             .offset = offsetof(struct cfg_cluster, slow_start_window_ms)},
            {.name = "aggression",
             .nested = &runtime_double_schema,
             .offset = offsetof(struct cfg_cluster, slow_start_aggression)},
            {.name = "min_weight_percent",
             .nested = &percent_schema,
             .offset = offsetof(struct cfg_cluster, slow_start_min_weight)},
            {0},
        },
};

static const struct schema round_robin_schema = {
    .fields =
        (const struct field[]){{.name = "slow_start_config", .nested = &slow_start_schema}, {0}},
    .unimplemented = "locality_lb_config",
};

static const struct schema least_request_schema = {
    .fields =
        (const struct field[]){
            {.name = "choice_count",
             .parse = set_choice_count,
             .offset = offsetof(struct cfg_cluster, choice_count)},
            {.name = "slow_start_config", .nested = &slow_start_schema},
            {0},
        },
    .unimplemented = "active_request_bias locality_lb_config "
                     "enable_full_scan selection_method",
};

/* lb_endpoints[]: appended to the cluster's flat endpoint list. */
static int parse_lb_endpoints(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_cluster *cluster = slot;
    size_t n;

    if (expect_list(ld, node, &n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct cfg_endpoint *grown =
            reallocarray(cluster->endpoints, cluster->n_endpoints + 1, sizeof *grown);
        if (!grown) {
            ld->oom = true;
            return -1;
        }
        cluster->endpoints = grown;
        struct cfg_endpoint *endpoint = &cluster->endpoints[cluster->n_endpoints++];
        memset(endpoint, 0, sizeof *endpoint);
        endpoint->weight = 1;
        size_t saved = path_push_index(ld, i);
        walk_map(ld, list_item(ld, node, i), &lb_endpoint_schema, endpoint, NULL);
        path_pop(ld, saved);
    }
    return 0;
}

/* A locality's priority, kept aside until its endpoints (in either order) are known. */
static int set_locality_priority(struct loader *ld, const yaml_node_t *node, void *slot)
{
    (void)slot;
    uint64_t v;
    if (scan_uint(ld, node, 0, PRIORITY_MAX, &v) < 0)
        return -1;
    ld->locality_priority = (uint32_t)v;
    return 0;
}

/* Which zone a locality is: accepted for Envoy configs, not used by the balancers. */
static const struct schema locality_schema = {
    .fields =
        (const struct field[]){
            {.name = "region", .parse = check_string},
            {.name = "zone", .parse = check_string},
            {.name = "sub_zone", .parse = check_string},
            {0},
        },
};

static const struct schema locality_endpoints_schema = {
    .fields =
        (const struct field[]){
            {.name = "lb_endpoints", .parse = parse_lb_endpoints},
            {.name = "priority", .parse = set_locality_priority},
            {.name = "locality", .nested = &locality_schema},
            {0},
        },
    .unimplemented = "metadata load_balancing_weight proximity "
                     "leds_cluster_locality_config load_balancer_endpoints",
};

static int parse_locality_endpoints(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_cluster *cluster = slot;
    size_t n;

    if (expect_list(ld, node, &n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(ld, i);
        size_t first = cluster->n_endpoints;
        ld->locality_priority = 0;
        walk_map(ld, list_item(ld, node, i), &locality_endpoints_schema, slot, NULL);
        for (size_t e = first; e < cluster->n_endpoints; e++)
            cluster->endpoints[e].priority = ld->locality_priority;
        if (ld->locality_priority > cluster->max_priority)
            cluster->max_priority = ld->locality_priority;
        path_pop(ld, saved);
    }
    return 0;
}

static const struct schema load_assignment_schema = {
    .fields =
        (const struct field[]){
            {.name = "cluster_name", .parse = check_string, .required = true},
            {.name = "endpoints", .parse = parse_locality_endpoints},
            {0},
        },
    .unimplemented = "named_endpoints policy",
};

enum threshold_priority {
    PRIORITY_DEFAULT,
    PRIORITY_HIGH,
};

/* One thresholds[] entry; only priority DEFAULT is kept. */
struct threshold {
    int priority;
    struct cfg_circuit_breakers limits;
};

static int set_priority(struct loader *ld, const yaml_node_t *node, void *slot)
{
    static const struct enum_name priorities[] = {
        {"DEFAULT", PRIORITY_DEFAULT, true},
        {"HIGH", PRIORITY_HIGH, false},
        {NULL, 0, false},
    };
    return scan_enum(ld, node, priorities, slot);
}

static const struct schema threshold_schema = {
    .fields =
        (const struct field[]){
            {.name = "priority",
             .parse = set_priority,
             .offset = offsetof(struct threshold, priority)},
            {.name = "max_connections",
             .parse = set_u32,
             .offset = offsetof(struct threshold, limits.max_connections)},
            {.name = "max_pending_requests",
             .parse = set_u32,
             .offset = offsetof(struct threshold, limits.max_pending_requests)},
            {.name = "max_requests",
             .parse = set_u32,
             .offset = offsetof(struct threshold, limits.max_requests)},
            {.name = "max_retries",
             .parse = set_u32,
             .offset = offsetof(struct threshold, limits.max_retries)},
            {0},
        },
    .unimplemented = "retry_budget track_remaining max_connection_pools",
};

static void set_default_limits(struct cfg_circuit_breakers *limits)
{
    *limits = (struct cfg_circuit_breakers){
        .max_connections = 1024,
        .max_pending_requests = 1024,
        .max_requests = 1024,
        .max_retries = 3,
    };
}

static int parse_thresholds(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_cluster *cluster = slot;
    bool have_default = false;
    size_t n;

    if (expect_list(ld, node, &n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *item = list_item(ld, node, i);
        struct threshold threshold = {.priority = PRIORITY_DEFAULT};
        size_t saved = path_push_index(ld, i);

        size_t errors_before = ld->n_errors;
        set_default_limits(&threshold.limits);
        walk_map(ld, item, &threshold_schema, &threshold, NULL);
        /* An entry with errors (an unimplemented priority, say) is not the DEFAULT one. */
        if (ld->n_errors == errors_before && threshold.priority == PRIORITY_DEFAULT) {
            if (have_default)
                report(ld, item, "a second thresholds entry for priority DEFAULT");
            cluster->cb = threshold.limits;
            have_default = true;
        }
        path_pop(ld, saved);
    }
    return 0;
}

static const struct schema circuit_breakers_schema = {
    .fields =
        (const struct field[]){
            {.name = "thresholds", .parse = parse_thresholds},
            {0},
        },
    .unimplemented = "per_host_thresholds",
};

/* typed_extension_protocol_options: envoy.extensions.upstreams.http.v3.HttpProtocolOptions,
 * of which legate takes the upstream idle timeout and the (HTTP/1) protocol choice. */
static const struct schema upstream_common_http_schema = {
    .fields =
        (const struct field[]){
            {.name = "idle_timeout",
             .parse = set_duration,
             .offset = offsetof(struct cfg_cluster, idle_timeout_ms)},
            {0},
        },
    .unimplemented = "max_connection_duration max_headers_count max_response_headers_kb "
                     "max_stream_duration headers_with_underscores_action "
                     "max_requests_per_connection",
};

static const struct schema http1_options_schema = {
    .fields = (const struct field[]){{0}},
    .unimplemented = "allow_absolute_url accept_http_10 default_host_for_http_10 "
                     "header_key_format enable_trailers allow_chunked_length "
                     "override_stream_error_on_invalid_http_message",
};

static const struct schema explicit_http_config_schema = {
    .fields =
        (const struct field[]){
            {.name = "http_protocol_options", .nested = &http1_options_schema},
            {0},
        },
    .unimplemented = "http2_protocol_options http3_protocol_options",
};

static const struct schema upstream_http_options_schema = {
    .fields =
        (const struct field[]){
            {.name = "@type", .parse = skip_type_url},
            {.name = "common_http_protocol_options", .nested = &upstream_common_http_schema},
            {.name = "explicit_http_config", .nested = &explicit_http_config_schema},
            {0},
        },
    .unimplemented = "upstream_http_protocol_options use_downstream_protocol_config "
                     "auto_config http_filters header_validation_config",
};

static const struct extension upstream_http_options_ext = {
    .what = "protocol options",
    .name = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    .type_url = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    .config = &upstream_http_options_schema,
};

static int parse_protocol_options(struct loader *ld, const yaml_node_t *node, void *slot)
{
    if (node->type != YAML_MAPPING_NODE) {
        report_type(ld, node, "a map");
        return -1;
    }
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = yaml_document_get_node(ld->doc, p->key);
        yaml_node_t *value = yaml_document_get_node(ld->doc, p->value);
        const char *name = key->type == YAML_SCALAR_NODE ? scalar_text(key) : "";
        size_t saved = path_push_field(ld, name);
        if (strcmp(name, upstream_http_options_ext.name) == 0)
            load_typed_config(ld, value, &upstream_http_options_ext, slot);
        else
            report(ld, key, "protocol options %.200s are not implemented by legate", name);
        path_pop(ld, saved);
    }
    return 0;
}

/* ---- health checks, outlier detection, load-balancer options -------------------------------- */

/* A percentage Envoy types as UInt32Value with a maximum of 100. */
static int set_percent_u32(struct loader *ld, const yaml_node_t *node, void *slot)
{
    uint64_t v;
    if (scan_uint(ld, node, 0, 100, &v) < 0)
        return -1;
    *(uint32_t *)slot = (uint32_t)v;
    return 0;
}

/* A threshold Envoy requires to be set and (in practice) at least 1. */
static int set_count_min1(struct loader *ld, const yaml_node_t *node, void *slot)
{
    uint64_t v;
    if (scan_uint(ld, node, 1, UINT32_MAX, &v) < 0)
        return -1;
    *(uint32_t *)slot = (uint32_t)v;
    return 0;
}

static const struct schema common_lb_schema = {
    .fields =
        (const struct field[]){
            {.name = "healthy_panic_threshold",
             .nested = &percent_schema,
             .offset = offsetof(struct cfg_cluster, healthy_panic_threshold)},
            {0},
        },
    .unimplemented = "zone_aware_lb_config locality_weighted_lb_config update_merge_window "
                     "ignore_new_hosts_until_first_hc close_connections_on_host_set_change "
                     "consistent_hashing_lb_config override_host_status",
};

static int set_ring_size(struct loader *ld, const yaml_node_t *node, void *slot)
{
    uint64_t v;
    if (scan_uint(ld, node, 1, RING_SIZE_MAX, &v) < 0)
        return -1;
    *(uint64_t *)slot = v;
    return 0;
}

static int set_ring_hash_function(struct loader *ld, const yaml_node_t *node, void *slot)
{
    static const struct enum_name fns[] = {
        {"XX_HASH", 0, true},
        {"MURMUR_HASH_2", 1, true},
        {NULL, 0, false},
    };
    int fn;
    if (scan_enum(ld, node, fns, &fn) < 0)
        return -1;
    *(bool *)slot = fn == 1;
    return 0;
}

static const struct schema ring_hash_schema = {
    .fields =
        (const struct field[]){
            {.name = "minimum_ring_size",
             .parse = set_ring_size,
             .offset = offsetof(struct cfg_cluster, ring_min_size)},
            {.name = "maximum_ring_size",
             .parse = set_ring_size,
             .offset = offsetof(struct cfg_cluster, ring_max_size)},
            {.name = "hash_function",
             .parse = set_ring_hash_function,
             .offset = offsetof(struct cfg_cluster, ring_murmur)},
            {0},
        },
    .unimplemented = "use_hostname_for_hashing hash_balance_factor consistent_hashing_lb_config "
                     "locality_weighted_lb_config",
};

static bool is_prime(uint64_t n)
{
    if (n < 2)
        return false;
    for (uint64_t d = 2; d * d <= n; d++)
        if (n % d == 0)
            return false;
    return true;
}

/* Maglev's table size must be a prime (Envoy: at most 5000011). */
static int set_maglev_size(struct loader *ld, const yaml_node_t *node, void *slot)
{
    uint64_t v;
    if (scan_uint(ld, node, 2, MAGLEV_SIZE_MAX, &v) < 0)
        return -1;
    if (!is_prime(v)) {
        report(ld, node, "%" PRIu64 " is not a prime (Maglev's table size must be one)", v);
        return -1;
    }
    *(uint64_t *)slot = v;
    return 0;
}

static const struct schema maglev_schema = {
    .fields =
        (const struct field[]){
            {.name = "table_size",
             .parse = set_maglev_size,
             .offset = offsetof(struct cfg_cluster, maglev_table_size)},
            {0},
        },
    .unimplemented = "consistent_hashing_lb_config locality_weighted_lb_config",
};

/* health_checks[0].http_health_check.request_headers_to_add[]: {header: {key, value}}. */
static int set_header_key(struct loader *ld, const yaml_node_t *node, void *slot)
{
    if (set_name(ld, node, slot) < 0)
        return -1;
    for (const char *p = *(char **)slot; *p; p++)
        if (!strchr("!#$%&'*+-.^_`|~", *p) && !isalnum((unsigned char)*p)) {
            report(ld, node, "is not a valid header name");
            return -1;
        }
    return 0;
}

static int set_header_value(struct loader *ld, const yaml_node_t *node, void *slot)
{
    if (set_string(ld, node, slot) < 0)
        return -1;
    for (const char *p = *(char **)slot; *p; p++)
        if (*p == '\r' || *p == '\n') {
            report(ld, node, "must not contain a line break");
            return -1;
        }
    return 0;
}

static const struct schema header_schema = {
    .fields =
        (const struct field[]){
            {.name = "key",
             .parse = set_header_key,
             .offset = offsetof(struct cfg_header, key),
             .required = true},
            {.name = "value",
             .parse = set_header_value,
             .offset = offsetof(struct cfg_header, value)},
            {0},
        },
    .unimplemented = "raw_value",
};

static int check_append_action(struct loader *ld, const yaml_node_t *node, void *slot)
{
    static const struct enum_name actions[] = {
        {"APPEND_IF_EXISTS_OR_ADD", 0, true},
        {"ADD_IF_ABSENT", 0, true},
        {"OVERWRITE_IF_EXISTS_OR_ADD", 0, true},
        {"OVERWRITE_IF_EXISTS", 0, true},
        {NULL, 0, false},
    };
    int unused;
    (void)slot; /* a health check request has no headers of its own to append to */
    return scan_enum(ld, node, actions, &unused);
}

static const struct schema header_option_schema = {
    .fields =
        (const struct field[]){
            {.name = "header", .nested = &header_schema, .required = true},
            {.name = "append", .parse = set_bool, .offset = 0},
            {.name = "append_action", .parse = check_append_action},
            {.name = "keep_empty_value", .parse = set_bool, .offset = 0},
            {0},
        },
};

static int parse_hc_headers(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_health_check *hc = slot;
    size_t n;
    if (expect_list(ld, node, &n) < 0)
        return -1;
    hc->headers = alloc_items(ld, n, sizeof *hc->headers);
    if (n > 0 && !hc->headers)
        return -1;
    hc->n_headers = n;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(ld, i);
        /* `append` and `keep_empty_value` change nothing in a request of our own. */
        bool ignored;
        const yaml_node_t *item = list_item(ld, node, i);
        if (item->type == YAML_MAPPING_NODE) {
            yaml_node_t *h = map_get(ld, item, "header");
            if (h != NULL) {
                size_t in = path_push_field(ld, "header");
                walk_map(ld, h, &header_schema, &hc->headers[i], NULL);
                path_pop(ld, in);
            } else {
                report_missing(ld, item, "header");
            }
            for (yaml_node_pair_t *p = item->data.mapping.pairs.start;
                 p < item->data.mapping.pairs.top; p++) {
                yaml_node_t *key = yaml_document_get_node(ld->doc, p->key);
                yaml_node_t *value = yaml_document_get_node(ld->doc, p->value);
                const char *name = key->type == YAML_SCALAR_NODE ? scalar_text(key) : "";
                size_t in = path_push_field(ld, name);
                if (!strcmp(name, "append") || !strcmp(name, "keep_empty_value"))
                    set_bool(ld, value, &ignored);
                else if (!strcmp(name, "append_action"))
                    check_append_action(ld, value, NULL);
                else if (strcmp(name, "header") != 0)
                    report_unknown(ld, key, &header_option_schema, name);
                path_pop(ld, in);
            }
        } else {
            report_type(ld, item, "a map");
        }
        path_pop(ld, saved);
    }
    return 0;
}

/* expected_statuses[]: {start, end}, [start, end) within 100..600. */
static const struct schema int64_range_schema = {
    .fields =
        (const struct field[]){
            {.name = "start",
             .parse = set_u32,
             .offset = offsetof(struct cfg_status_range, start),
             .required = true},
            {.name = "end",
             .parse = set_u32,
             .offset = offsetof(struct cfg_status_range, end),
             .required = true},
            {0},
        },
};

static int parse_expected_statuses(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_health_check *hc = slot;
    size_t n;
    if (expect_list(ld, node, &n) < 0)
        return -1;
    hc->expected_statuses = alloc_items(ld, n, sizeof *hc->expected_statuses);
    if (n > 0 && !hc->expected_statuses)
        return -1;
    hc->n_expected_statuses = n;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(ld, i);
        const yaml_node_t *item = list_item(ld, node, i);
        struct cfg_status_range *r = &hc->expected_statuses[i];
        size_t before = ld->n_errors;
        walk_map(ld, item, &int64_range_schema, r, NULL);
        if (ld->n_errors == before && (r->start < 100 || r->end > 600 || r->start >= r->end))
            report(ld, item, "must be a range [start, end) of statuses within 100 to 600");
        path_pop(ld, saved);
    }
    return 0;
}

static const struct schema http_hc_schema = {
    .fields =
        (const struct field[]){
            {.name = "path",
             .parse = set_name,
             .offset = offsetof(struct cfg_health_check, path),
             .required = true},
            {.name = "host", .parse = set_name, .offset = offsetof(struct cfg_health_check, host)},
            {.name = "request_headers_to_add", .parse = parse_hc_headers},
            {.name = "expected_statuses", .parse = parse_expected_statuses},
            {0},
        },
    .unimplemented = "send receive response_buffer_size request_headers_to_remove "
                     "retriable_statuses codec_client_type service_name_matcher method",
};

/* A Payload: {text: "<hex>"}. Bytes are appended to `out`. */
static int load_payload(struct loader *ld, const yaml_node_t *node, uint8_t **out, size_t *len)
{
    if (node->type != YAML_MAPPING_NODE) {
        report_type(ld, node, "a map with text");
        return -1;
    }
    yaml_node_t *text = NULL;
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = yaml_document_get_node(ld->doc, p->key);
        const char *name = key->type == YAML_SCALAR_NODE ? scalar_text(key) : "";
        if (!strcmp(name, "text"))
            text = yaml_document_get_node(ld->doc, p->value);
        else if (!strcmp(name, "binary"))
            report(ld, key, "not implemented by legate (write the bytes as hex in text)");
        else
            report(ld, key, "unknown field");
    }
    if (text == NULL) {
        report_missing(ld, node, "text");
        return -1;
    }
    size_t saved = path_push_field(ld, "text");
    const char *hex = expect_scalar(ld, text, "a hex string");
    size_t n = hex ? strlen(hex) : 0;
    if (hex && (n == 0 || n % 2 != 0 || strspn(hex, "0123456789abcdefABCDEF") != n))
        report(ld, text, "must be a non-empty string of hex digit pairs");
    path_pop(ld, saved);
    if (!hex || n == 0 || n % 2 != 0 || strspn(hex, "0123456789abcdefABCDEF") != n)
        return -1;
    uint8_t *bytes = malloc(n / 2);
    if (!bytes) {
        ld->oom = true;
        return -1;
    }
    for (size_t i = 0; i < n / 2; i++) {
        char pair[3] = {hex[2 * i], hex[2 * i + 1], '\0'};
        bytes[i] = (uint8_t)strtoul(pair, NULL, 16);
    }
    *out = bytes;
    *len = n / 2;
    return 0;
}

static int parse_tcp_send(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_health_check *hc = slot;
    return load_payload(ld, node, &hc->send, &hc->send_len);
}

static int parse_tcp_receive(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_health_check *hc = slot;
    size_t n;
    if (expect_list(ld, node, &n) < 0)
        return -1;
    hc->receive = alloc_items(ld, n, sizeof *hc->receive);
    hc->receive_len = alloc_items(ld, n, sizeof *hc->receive_len);
    if (n > 0 && (!hc->receive || !hc->receive_len))
        return -1;
    hc->n_receive = n;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(ld, i);
        load_payload(ld, list_item(ld, node, i), &hc->receive[i], &hc->receive_len[i]);
        path_pop(ld, saved);
    }
    return 0;
}

static const struct schema tcp_hc_schema = {
    .fields =
        (const struct field[]){
            {.name = "send", .parse = parse_tcp_send},
            {.name = "receive", .parse = parse_tcp_receive},
            {0},
        },
    .unimplemented = "proxy_protocol_config",
};

static int parse_http_hc(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_health_check *hc = slot;
    hc->kind = HC_HTTP;
    return walk_map(ld, node, &http_hc_schema, hc, NULL);
}

static int parse_tcp_hc(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_health_check *hc = slot;
    hc->kind = HC_TCP;
    return walk_map(ld, node, &tcp_hc_schema, hc, NULL);
}

static const struct schema health_check_schema = {
    .fields =
        (const struct field[]){
            {.name = "timeout",
             .parse = set_positive_duration,
             .offset = offsetof(struct cfg_health_check, timeout_ms),
             .required = true},
            {.name = "interval",
             .parse = set_positive_duration,
             .offset = offsetof(struct cfg_health_check, interval_ms),
             .required = true},
            {.name = "interval_jitter",
             .parse = set_duration,
             .offset = offsetof(struct cfg_health_check, interval_jitter_ms)},
            {.name = "interval_jitter_percent",
             .parse = set_percent_u32,
             .offset = offsetof(struct cfg_health_check, interval_jitter_percent)},
            {.name = "unhealthy_threshold",
             .parse = set_count_min1,
             .offset = offsetof(struct cfg_health_check, unhealthy_threshold),
             .required = true},
            {.name = "healthy_threshold",
             .parse = set_count_min1,
             .offset = offsetof(struct cfg_health_check, healthy_threshold),
             .required = true},
            {.name = "no_traffic_interval",
             .parse = set_positive_duration,
             .offset = offsetof(struct cfg_health_check, no_traffic_interval_ms)},
            {.name = "unhealthy_interval",
             .parse = set_positive_duration,
             .offset = offsetof(struct cfg_health_check, unhealthy_interval_ms)},
            {.name = "unhealthy_edge_interval",
             .parse = set_positive_duration,
             .offset = offsetof(struct cfg_health_check, unhealthy_edge_interval_ms)},
            {.name = "healthy_edge_interval",
             .parse = set_positive_duration,
             .offset = offsetof(struct cfg_health_check, healthy_edge_interval_ms)},
            {.name = "reuse_connection",
             .parse = set_bool,
             .offset = offsetof(struct cfg_health_check, reuse_connection)},
            {.name = "http_health_check", .parse = parse_http_hc},
            {.name = "tcp_health_check", .parse = parse_tcp_hc},
            {0},
        },
    .unimplemented = "initial_jitter alt_port grpc_health_check custom_health_check "
                     "no_traffic_healthy_interval event_log_path event_logger "
                     "always_log_health_check_failures always_log_health_check_success "
                     "tls_options transport_socket_match_criteria",
};

static int parse_health_checks(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_cluster *cluster = slot;
    size_t n;
    if (expect_list(ld, node, &n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(ld, i);
        const yaml_node_t *item = list_item(ld, node, i);
        if (i > 0) {
            report(ld, item, "legate runs one health check per cluster");
        } else {
            struct cfg_health_check *hc = &cluster->hc;
            hc->enabled = true;
            hc->reuse_connection = true;
            uint32_t present;
            if (walk_map(ld, item, &health_check_schema, hc, &present) == 0) {
                bool http = has_field(&health_check_schema, present, "http_health_check");
                bool tcp = has_field(&health_check_schema, present, "tcp_health_check");
                if (http == tcp)
                    report(ld, item, "needs exactly one of http_health_check or tcp_health_check");
            }
        }
        path_pop(ld, saved);
    }
    return 0;
}

static const struct schema outlier_schema = {
    .fields =
        (const struct field[]){
            {.name = "consecutive_5xx",
             .parse = set_u32,
             .offset = offsetof(struct cfg_outlier, consecutive_5xx)},
            {.name = "consecutive_gateway_failure",
             .parse = set_u32,
             .offset = offsetof(struct cfg_outlier, consecutive_gateway_failure)},
            {.name = "consecutive_local_origin_failure",
             .parse = set_u32,
             .offset = offsetof(struct cfg_outlier, consecutive_local_origin_failure)},
            {.name = "interval",
             .parse = set_positive_duration,
             .offset = offsetof(struct cfg_outlier, interval_ms)},
            {.name = "base_ejection_time",
             .parse = set_positive_duration,
             .offset = offsetof(struct cfg_outlier, base_ejection_time_ms)},
            {.name = "max_ejection_time",
             .parse = set_positive_duration,
             .offset = offsetof(struct cfg_outlier, max_ejection_time_ms)},
            {.name = "max_ejection_percent",
             .parse = set_percent_u32,
             .offset = offsetof(struct cfg_outlier, max_ejection_percent)},
            {.name = "enforcing_consecutive_5xx",
             .parse = set_percent_u32,
             .offset = offsetof(struct cfg_outlier, enforcing_consecutive_5xx)},
            {.name = "enforcing_consecutive_gateway_failure",
             .parse = set_percent_u32,
             .offset = offsetof(struct cfg_outlier, enforcing_consecutive_gateway_failure)},
            {.name = "enforcing_consecutive_local_origin_failure",
             .parse = set_percent_u32,
             .offset = offsetof(struct cfg_outlier, enforcing_consecutive_local_origin_failure)},
            {.name = "enforcing_success_rate",
             .parse = set_percent_u32,
             .offset = offsetof(struct cfg_outlier, enforcing_success_rate)},
            {.name = "success_rate_minimum_hosts",
             .parse = set_u32,
             .offset = offsetof(struct cfg_outlier, success_rate_minimum_hosts)},
            {.name = "success_rate_request_volume",
             .parse = set_u32,
             .offset = offsetof(struct cfg_outlier, success_rate_request_volume)},
            {.name = "success_rate_stdev_factor",
             .parse = set_u32,
             .offset = offsetof(struct cfg_outlier, success_rate_stdev_factor)},
            {.name = "split_external_local_origin_errors",
             .parse = set_bool,
             .offset = offsetof(struct cfg_outlier, split_external_local_origin_errors)},
            {0},
        },
    .unimplemented = "enforcing_local_origin_success_rate failure_percentage_threshold "
                     "enforcing_failure_percentage enforcing_failure_percentage_local_origin "
                     "failure_percentage_minimum_hosts failure_percentage_request_volume "
                     "max_ejection_time_jitter successful_active_health_check_uneject_host "
                     "monitors always_eject_one_host detector_type",
};

static void set_outlier_defaults(struct cfg_outlier *od)
{
    *od = (struct cfg_outlier){
        .consecutive_5xx = 5,
        .consecutive_gateway_failure = 5,
        .consecutive_local_origin_failure = 5,
        .interval_ms = 10000,
        .base_ejection_time_ms = 30000,
        .max_ejection_time_ms = 300000,
        .max_ejection_percent = 10,
        .enforcing_consecutive_5xx = 100,
        .enforcing_consecutive_gateway_failure = 0,
        .enforcing_consecutive_local_origin_failure = 100,
        .enforcing_success_rate = 100,
        .success_rate_minimum_hosts = 5,
        .success_rate_request_volume = 100,
        .success_rate_stdev_factor = 1900,
    };
}

static int parse_outlier(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_cluster *cluster = slot;
    set_outlier_defaults(&cluster->outlier);
    cluster->outlier.enabled = true;
    return walk_map(ld, node, &outlier_schema, &cluster->outlier, NULL);
}

/* ---- discovery: DNS and EDS ---------------------------------------------------------------- */

static int set_dns_family(struct loader *ld, const yaml_node_t *node, void *slot)
{
    static const struct enum_name families[] = {
        {"AUTO", DNS_AUTO, true},       {"V4_ONLY", DNS_V4_ONLY, true},
        {"V6_ONLY", DNS_V6_ONLY, true}, {"V4_PREFERRED", DNS_V4_PREFERRED, true},
        {"ALL", DNS_ALL, true},         {NULL, 0, false},
    };
    int v;
    if (scan_enum(ld, node, families, &v) < 0)
        return -1;
    *(enum cfg_dns_family *)slot = (enum cfg_dns_family)v;
    return 0;
}

/* A list of resolver Addresses (numeric, port optional: 53). */
static int parse_resolvers(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_cluster *cluster = slot;
    size_t n;
    if (expect_list(ld, node, &n) < 0)
        return -1;
    struct cfg_addr *grown =
        reallocarray(cluster->dns_resolvers, cluster->n_dns_resolvers + n + 1, sizeof(*grown));
    if (grown == NULL) {
        ld->oom = true;
        return -1;
    }
    cluster->dns_resolvers = grown;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(ld, i);
        struct cfg_addr *a = &cluster->dns_resolvers[cluster->n_dns_resolvers++];
        memset(a, 0, sizeof(*a));
        if (load_address(ld, list_item(ld, node, i), a, 0) == 0 && a->port == 0) {
            a->port = 53;
            if (a->ss.ss_family == AF_INET)
                ((struct sockaddr_in *)&a->ss)->sin_port = htons(53);
            else
                ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(53);
        }
        path_pop(ld, saved);
    }
    return 0;
}

static int skip_bool(struct loader *ld, const yaml_node_t *node, void *slot)
{
    bool ignored;
    (void)slot;
    return set_bool(ld, node, &ignored);
}

static const struct schema dns_resolver_options_schema = {
    .fields =
        (const struct field[]){
            {.name = "use_tcp_for_dns_lookups", .parse = skip_bool},
            {.name = "no_default_search_domain", .parse = skip_bool},
            {0},
        },
};

static const struct schema cares_schema = {
    .fields =
        (const struct field[]){
            {.name = "@type", .parse = skip_type_url},
            {.name = "resolvers", .parse = parse_resolvers},
            {.name = "dns_resolver_options", .nested = &dns_resolver_options_schema},
            {0},
        },
    .unimplemented = "use_resolvers_as_fallback filter_unroutable_families udp_max_queries "
                     "query_timeout_seconds query_tries rotate_nameservers edns0_max_payload_size",
};

static const struct schema dns_resolver_entry_schema = {
    .fields =
        (const struct field[]){
            {.name = "name", .parse = stash_ext_name, .required = true},
            {.name = "typed_config", .parse = stash_ext_config},
            {0},
        },
};

static const struct extension cares_ext = {
    .what = "DNS resolver",
    .entry = &dns_resolver_entry_schema,
    .name = "envoy.network.dns_resolver.cares",
    .type_url = "type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3."
                "CaresDnsResolverConfig",
    .config = &cares_schema,
};

static int parse_typed_dns_resolver(struct loader *ld, const yaml_node_t *node, void *slot)
{
    return load_extension(ld, node, &cares_ext, slot);
}

/* ConfigSource: only a file (path_config_source, or the older path). */
static int set_eds_path(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_cluster *cluster = slot;
    if (set_name(ld, node, &cluster->eds_path) < 0)
        return -1;
    if (cluster->eds_path[0] != '/') {
        report(ld, node, "must be an absolute path");
        return -1;
    }
    return 0;
}

static int set_watched_directory(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_cluster *cluster = slot;
    if (set_name(ld, node, &cluster->eds_watched_dir) < 0)
        return -1;
    if (cluster->eds_watched_dir[0] != '/') {
        report(ld, node, "must be an absolute path");
        return -1;
    }
    return 0;
}

static const struct schema watched_directory_schema = {
    .fields =
        (const struct field[]){{.name = "path", .parse = set_watched_directory, .required = true},
                               {0}},
};

static const struct schema path_config_source_schema = {
    .fields =
        (const struct field[]){
            {.name = "path", .parse = set_eds_path, .required = true},
            {.name = "watched_directory", .nested = &watched_directory_schema},
            {0},
        },
};

/* A duration legate accepts and has no use for (a file source is read at once). */
static int check_duration(struct loader *ld, const yaml_node_t *node, void *slot)
{
    uint64_t ms;
    (void)slot;
    return scan_duration(ld, node, &ms);
}

static int check_api_version(struct loader *ld, const yaml_node_t *node, void *slot)
{
    static const struct enum_name versions[] = {
        {"V3", 0, true}, {"AUTO", 0, true}, {"V2", 0, false}, {NULL, 0, false}};
    int v;
    (void)slot;
    return scan_enum(ld, node, versions, &v);
}

static const struct schema eds_config_schema = {
    .fields =
        (const struct field[]){
            {.name = "path_config_source", .nested = &path_config_source_schema},
            {.name = "path", .parse = set_eds_path},
            {.name = "resource_api_version", .parse = check_api_version},
            {.name = "initial_fetch_timeout", .parse = check_duration},
            {0},
        },
    .unimplemented = "api_config_source ads self authorities",
};

static int parse_eds_config(struct loader *ld, const yaml_node_t *node, void *slot)
{
    return walk_map(ld, node, &eds_config_schema, slot, NULL);
}

static const struct schema eds_cluster_schema = {
    .fields =
        (const struct field[]){
            {.name = "eds_config", .parse = parse_eds_config},
            {.name = "service_name",
             .parse = set_name,
             .offset = offsetof(struct cfg_cluster, eds_service_name)},
            {0},
        },
};

/* After a cluster's walk: what its type asks of its endpoints. */
static void check_discovery(struct loader *ld, const yaml_node_t *item, struct cfg_cluster *c)
{
    bool dns = c->type == CLUSTER_STRICT_DNS || c->type == CLUSTER_LOGICAL_DNS;
    for (size_t i = 0; i < c->n_endpoints; i++)
        if (c->endpoints[i].hostname && !dns)
            report_at(ld, c->endpoints[i].addr.mark, ld->path,
                      "endpoint address \"%.100s\" is a host name: a %s cluster needs numeric "
                      "addresses (STRICT_DNS and LOGICAL_DNS resolve names)",
                      c->endpoints[i].addr.address, c->type == CLUSTER_EDS ? "EDS" : "STATIC");
    if (c->type == CLUSTER_LOGICAL_DNS && c->n_endpoints != 1)
        report(ld, item, "a LOGICAL_DNS cluster has exactly one endpoint (it has %zu)",
               c->n_endpoints);
    if (c->type == CLUSTER_STRICT_DNS && c->n_endpoints == 0)
        report(ld, item, "a STRICT_DNS cluster needs at least one endpoint to resolve");
    if (c->type == CLUSTER_EDS && c->eds_path == NULL)
        report(ld, item,
               "an EDS cluster needs eds_cluster_config.eds_config.path_config_source.path");
    if (c->type == CLUSTER_EDS && c->n_endpoints > 0)
        report(ld, item, "an EDS cluster takes its endpoints from its file, not load_assignment");
    if (c->type != CLUSTER_EDS && c->eds_path != NULL)
        report(ld, item, "eds_cluster_config needs type: EDS");
}

static const struct schema cluster_schema = {
    .fields =
        (const struct field[]){
            {.name = "name", .parse = set_cluster_name, .required = true},
            {.name = "type",
             .parse = set_cluster_type,
             .offset = offsetof(struct cfg_cluster, type)},
            {.name = "connect_timeout",
             .parse = set_positive_duration,
             .offset = offsetof(struct cfg_cluster, connect_timeout_ms)},
            {.name = "lb_policy",
             .parse = set_lb_policy,
             .offset = offsetof(struct cfg_cluster, lb_policy)},
            {.name = "least_request_lb_config", .nested = &least_request_schema},
            {.name = "round_robin_lb_config", .nested = &round_robin_schema},
            {.name = "load_assignment", .nested = &load_assignment_schema},
            {.name = "circuit_breakers", .nested = &circuit_breakers_schema},
            {.name = "typed_extension_protocol_options", .parse = parse_protocol_options},
            {.name = "health_checks", .parse = parse_health_checks},
            {.name = "outlier_detection", .parse = parse_outlier},
            {.name = "common_lb_config", .nested = &common_lb_schema},
            {.name = "ring_hash_lb_config", .nested = &ring_hash_schema},
            {.name = "maglev_lb_config", .nested = &maglev_schema},
            {.name = "dns_refresh_rate",
             .parse = set_positive_duration,
             .offset = offsetof(struct cfg_cluster, dns_refresh_rate_ms)},
            {.name = "respect_dns_ttl",
             .parse = set_bool,
             .offset = offsetof(struct cfg_cluster, respect_dns_ttl)},
            {.name = "dns_lookup_family",
             .parse = set_dns_family,
             .offset = offsetof(struct cfg_cluster, dns_family)},
            {.name = "dns_resolvers", .parse = parse_resolvers},
            {.name = "typed_dns_resolver_config", .parse = parse_typed_dns_resolver},
            {.name = "eds_cluster_config", .nested = &eds_cluster_schema},
            {0},
        },
    .unimplemented = "transport_socket_matches alt_stat_name "
                     "per_connection_buffer_limit_bytes max_requests_per_connection "
                     "dns_jitter "
                     "dns_failure_refresh_rate "
                     "use_tcp_for_dns_lookups dns_resolution_config "
                     "wait_for_warm_on_init cleanup_interval "
                     "upstream_bind_config lb_subset_config "
                     "original_dst_lb_config "
                     "transport_socket metadata protocol_selection "
                     "upstream_connection_options close_connections_on_host_health_failure "
                     "ignore_health_on_host_removal filters load_balancing_policy lrs_server "
                     "lrs_report_endpoint_metrics track_timeout_budgets upstream_config "
                     "track_cluster_stats preconnect_policy "
                     "connection_pool_per_downstream_connection http_protocol_options "
                     "http2_protocol_options common_http_protocol_options "
                     "upstream_http_protocol_options",
};

static int parse_clusters(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct config *cfg = slot;
    size_t n;

    if (expect_list(ld, node, &n) < 0)
        return -1;
    cfg->clusters = alloc_items(ld, n, sizeof *cfg->clusters);
    if (!cfg->clusters)
        return -1;
    cfg->n_clusters = n;
    for (size_t i = 0; i < n; i++) {
        struct cfg_cluster *cluster = &cfg->clusters[i];
        const yaml_node_t *item = list_item(ld, node, i);
        size_t saved = path_push_index(ld, i);

        cluster->type = CLUSTER_STATIC;
        cluster->lb_policy = LB_ROUND_ROBIN;
        cluster->choice_count = 2;
        cluster->connect_timeout_ms = CONNECT_TIMEOUT_DEFAULT_MS;
        cluster->idle_timeout_ms = UPSTREAM_IDLE_TIMEOUT_DEFAULT_MS;
        set_default_limits(&cluster->cb);
        set_outlier_defaults(&cluster->outlier);
        cluster->healthy_panic_threshold = 50.0;
        cluster->ring_min_size = 1024;
        cluster->ring_max_size = RING_SIZE_MAX;
        cluster->maglev_table_size = 65537;
        cluster->mark = mark_of(item);
        ld->cluster_index = i;
        cluster->dns_refresh_rate_ms = 5000;
        cluster->slow_start_aggression = 1.0;
        cluster->slow_start_min_weight = 10.0;
        if (walk_map(ld, item, &cluster_schema, cluster, NULL) == 0)
            check_discovery(ld, item, cluster);
        if (cluster->ring_min_size > cluster->ring_max_size)
            report(ld, item,
                   "ring_hash_lb_config: minimum_ring_size %" PRIu64
                   " is above maximum_ring_size %" PRIu64,
                   cluster->ring_min_size, cluster->ring_max_size);
        path_pop(ld, saved);
    }
    return 0;
}

/* ---- the bootstrap ------------------------------------------------------------------------- */

static int parse_admin_address(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct cfg_admin *admin = slot;
    admin->enabled = true;
    return load_address(ld, node, &admin->addr, 0);
}

static const struct schema admin_schema = {
    .fields =
        (const struct field[]){
            {.name = "address", .parse = parse_admin_address},
            {0},
        },
    .unimplemented = "access_log_path access_log profile_path socket_options "
                     "ignore_global_conn_limit",
};

static const struct schema static_resources_schema = {
    .fields =
        (const struct field[]){
            {.name = "listeners", .parse = parse_listeners},
            {.name = "clusters", .parse = parse_clusters},
            {0},
        },
    .unimplemented = "secrets",
};

#define GLOBAL_CX_MONITOR_NAME "envoy.resource_monitors.global_downstream_max_connections"
#define GLOBAL_CX_MONITOR_TYPE                                                                     \
    "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3."            \
    "DownstreamConnectionsConfig"

static const struct schema downstream_connections_schema = {
    .fields =
        (const struct field[]){
            {.name = "@type", .parse = skip_type_url},
            {.name = "max_active_downstream_connections",
             .parse = set_u32,
             .offset = offsetof(struct config, max_active_downstream_connections),
             .required = true},
            {0},
        },
};

static const struct schema resource_monitor_entry_schema = {
    .fields =
        (const struct field[]){
            {.name = "name", .parse = stash_ext_name, .required = true},
            {.name = "typed_config", .parse = stash_ext_config},
            {0},
        },
};

static const struct extension global_cx_monitor = {
    .what = "resource monitor",
    .name = GLOBAL_CX_MONITOR_NAME,
    .type_url = GLOBAL_CX_MONITOR_TYPE,
    .entry = &resource_monitor_entry_schema,
    .config = &downstream_connections_schema,
    .config_required = true,
};

static int parse_resource_monitors(struct loader *ld, const yaml_node_t *node, void *slot)
{
    size_t n;
    if (expect_list(ld, node, &n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(ld, i);
        const yaml_node_t *item = list_item(ld, node, i);
        if (load_extension(ld, item, &global_cx_monitor, slot) == 1 &&
            ((struct config *)slot)->max_active_downstream_connections == 0) {
            const yaml_node_t *max =
                map_get(ld, map_get(ld, item, "typed_config"), "max_active_downstream_connections");
            if (max != NULL) /* else reported as missing */
                report(ld, max,
                       "typed_config.max_active_downstream_connections must be at least 1");
        }
        path_pop(ld, saved);
    }
    return 0;
}

/* Only the global connection limit: legate's overload manager has no other
 * resource monitor and no actions yet. */
static const struct schema overload_manager_schema = {
    .fields =
        (const struct field[]){
            {.name = "resource_monitors", .parse = parse_resource_monitors},
            {0},
        },
    .unimplemented = "refresh_interval actions buffer_factory_config loadshed_points",
};

static const struct schema bootstrap_schema = {
    .fields =
        (const struct field[]){
            {.name = "admin", .nested = &admin_schema, .offset = offsetof(struct config, admin)},
            {.name = "static_resources", .nested = &static_resources_schema},
            {.name = "overload_manager", .nested = &overload_manager_schema},
            {0},
        },
    .unimplemented = "node node_context_params dynamic_resources cluster_manager hds_config "
                     "flags_path stats_sinks deferred_stat_options stats_config "
                     "stats_flush_interval stats_flush_on_admin watchdog watchdogs tracing "
                     "layered_runtime enable_dispatcher_stats header_prefix "
                     "stats_server_version_override use_tcp_for_dns_lookups dns_resolution_config "
                     "typed_dns_resolver_config bootstrap_extensions fatal_actions config_sources "
                     "default_config_source default_socket_interface "
                     "certificate_provider_instances inline_headers perf_tracing_file_path "
                     "default_regex_engine xds_delegate_extension xds_config_tracker_extension "
                     "listener_manager application_log_config grpc_async_client_manager_config "
                     "memory_allocator_manager",
};

/* ---- whole-file checks --------------------------------------------------------------------- */

static void resolve_cluster_refs(struct loader *ld)
{
    for (size_t i = 0; i < ld->n_refs; i++) {
        struct cfg_route *route = ld->refs[i].route;
        const struct cfg_cluster *cluster = config_find_cluster(ld->cfg, route->cluster);
        if (cluster)
            route->cluster_index = (size_t)(cluster - ld->cfg->clusters);
        else
            report_at(ld, ld->refs[i].at, ld->refs[i].path, "unknown cluster \"%.100s\"",
                      route->cluster);
    }
}

/* Two listening addresses bind() would refuse (port 0 picks a free port, so never clashes). */
static bool same_listen_addr(const struct cfg_addr *a, const struct cfg_addr *b)
{
    if (!a->address || !b->address || a->sslen == 0 || b->sslen == 0)
        return false; /* not parsed: already reported */
    if (a->port == 0 || a->port != b->port || a->ss.ss_family != b->ss.ss_family)
        return false;
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)&b->ss)->sin_addr.s_addr;
    return !memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                   &((const struct sockaddr_in6 *)&b->ss)->sin6_addr, sizeof(struct in6_addr));
}

static void check_duplicate_addresses(struct loader *ld)
{
    const struct config *cfg = ld->cfg;

    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct cfg_addr *addr = &cfg->listeners[i].addr;
        char owner[128] = "", path[96];

        if (cfg->admin.enabled && same_listen_addr(&cfg->admin.addr, addr))
            snprintf(owner, sizeof owner, "the admin interface");
        for (size_t j = 0; !owner[0] && j < i; j++)
            if (same_listen_addr(&cfg->listeners[j].addr, addr))
                snprintf(owner, sizeof owner, "listener \"%.100s\"",
                         cfg->listeners[j].name ? cfg->listeners[j].name : "");
        if (!owner[0])
            continue;
        snprintf(path, sizeof path, "static_resources.listeners[%zu].address.socket_address", i);
        bool v6 = addr->ss.ss_family == AF_INET6;
        report_at(ld, addr->mark, path, "%s%s%s:%u is already used by %s", v6 ? "[" : "",
                  addr->address, v6 ? "]" : "", (unsigned)addr->port, owner);
    }
}

/* ---- results ------------------------------------------------------------------------------- */

static void report_syntax(struct loader *ld, const yaml_parser_t *parser, const char *text,
                          size_t len)
{
    struct cfg_mark at = {.line = (int)parser->problem_mark.line + 1,
                          .col = (int)parser->problem_mark.column + 1};

    if (parser->error == YAML_MEMORY_ERROR) {
        ld->oom = true;
        return;
    }
    if (parser->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset, not a mark. */
        at = (struct cfg_mark){.line = 1, .col = 1};
        for (size_t i = 0; i < parser->problem_offset && i < len; i++) {
            if (text[i] == '\n')
                at = (struct cfg_mark){.line = at.line + 1, .col = 1};
            else if (((unsigned char)text[i] & 0xc0) != 0x80)
                at.col++;
        }
        report_at(ld, at, "(yaml)", "%s", parser->problem ? parser->problem : "unreadable input");
    } else if (parser->context) {
        report_at(ld, at, "(yaml)", "%s (%s at %zu:%zu)", parser->problem, parser->context,
                  parser->context_mark.line + 1, parser->context_mark.column + 1);
    } else {
        report_at(ld, at, "(yaml)", "%s", parser->problem ? parser->problem : "invalid YAML");
    }
}

static int compare_errors(const void *a, const void *b)
{
    const struct load_error *x = a, *y = b;
    if (x->at.line != y->at.line)
        return x->at.line < y->at.line ? -1 : 1;
    if (x->at.col != y->at.col)
        return x->at.col < y->at.col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Hand the loader's errors to the caller, in file order. */
static void move_errors(struct loader *ld, struct config_errors *errs)
{
    if (!ld->oom) {
        qsort(ld->errors, ld->n_errors, sizeof *ld->errors, compare_errors);
        errs->msgs = calloc(ld->n_errors, sizeof *errs->msgs);
    }
    if (!ld->oom && errs->msgs) {
        for (size_t i = 0; i < ld->n_errors; i++)
            errs->msgs[i] = ld->errors[i].msg;
        errs->n = ld->n_errors;
        ld->n_errors = 0;
        return;
    }
    /* Out of memory: one message if even that can be had. */
    for (size_t i = 0; i < ld->n_errors; i++)
        free(ld->errors[i].msg);
    ld->n_errors = 0;
    free(errs->msgs);
    errs->msgs = malloc(sizeof *errs->msgs);
    if (errs->msgs && asprintf(&errs->msgs[0], "%s:1:1: (root): out of memory", ld->source) >= 0) {
        errs->n = 1;
    } else {
        free(errs->msgs);
        errs->msgs = NULL;
        errs->n = 0;
    }
}

int config_load_string(const char *source_name, const char *yaml, size_t len, struct config *cfg,
                       struct config_errors *errs)
{
    struct loader ld = {.source = source_name ? source_name : "<string>", .cfg = cfg};
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    bool have_parser = false, have_doc = false, have_extra = false;
    int result = -1;

    memset(cfg, 0, sizeof *cfg);
    memset(errs, 0, sizeof *errs);
    cfg->source = dup_string(&ld, ld.source);
    cfg->text = malloc(len + 1);
    if (cfg->text != NULL) {
        memcpy(cfg->text, yaml, len);
        cfg->text[len] = '\0';
        cfg->text_len = len;
    }
    if (!cfg->source || !cfg->text || !yaml_parser_initialize(&parser)) {
        ld.oom = true;
        goto done;
    }
    have_parser = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        report_syntax(&ld, &parser, yaml, len);
        goto done;
    }
    have_doc = true;
    ld.doc = &doc;

    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || is_null(root)) {
        report_at(&ld, (struct cfg_mark){1, 1}, "", "the configuration is empty");
        goto done;
    }
    walk_map(&ld, root, &bootstrap_schema, cfg, NULL);
    resolve_cluster_refs(&ld);
    check_duplicate_addresses(&ld);

    if (!yaml_parser_load(&parser, &extra)) {
        report_syntax(&ld, &parser, yaml, len);
    } else {
        have_extra = true;
        const yaml_node_t *next = yaml_document_get_root_node(&extra);
        if (next)
            report_at(&ld, mark_of(next), "", "only one YAML document is allowed");
    }
    if (ld.n_errors == 0 && !ld.oom)
        result = 0;
done:
    if (result < 0)
        move_errors(&ld, errs);
    for (size_t i = 0; i < ld.n_errors; i++)
        free(ld.errors[i].msg);
    free(ld.errors);
    for (size_t i = 0; i < ld.n_refs; i++)
        free(ld.refs[i].path);
    free(ld.refs);
    if (have_extra)
        yaml_document_delete(&extra);
    if (have_doc)
        yaml_document_delete(&doc);
    if (have_parser)
        yaml_parser_delete(&parser);
    if (result < 0)
        config_free(cfg);
    return result;
}

/* ---- an EDS file ------------------------------------------------------------------------------
 */

#define CLA_TYPE "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

static int check_cla_type(struct loader *ld, const yaml_node_t *node, void *slot)
{
    (void)slot;
    const char *s = expect_scalar(ld, node, "a type URL");
    if (s != NULL && strcmp(s, CLA_TYPE) != 0) {
        report(ld, node, "is not " CLA_TYPE);
        return -1;
    }
    return s != NULL ? 0 : -1;
}

static const struct schema cla_schema = {
    .fields =
        (const struct field[]){
            {.name = "@type", .parse = check_cla_type},
            {.name = "cluster_name", .parse = check_string, .required = true},
            {.name = "endpoints", .parse = parse_locality_endpoints},
            {0},
        },
    .unimplemented = "named_endpoints policy",
};

static int check_any_string(struct loader *ld, const yaml_node_t *node, void *slot)
{
    return check_string(ld, node, slot);
}

/* A DiscoveryResponse, as Envoy's filesystem subscription reads it. */
struct discovery_walk {
    struct cfg_cluster *cl;
    const char *service;
    bool found;
};

static const char *cla_name(struct loader *ld, const yaml_node_t *item)
{
    const yaml_node_t *name =
        item->type == YAML_MAPPING_NODE ? map_get(ld, item, "cluster_name") : NULL;
    return name != NULL && name->type == YAML_SCALAR_NODE ? scalar_text(name) : NULL;
}

static int parse_resources(struct loader *ld, const yaml_node_t *node, void *slot)
{
    struct discovery_walk *dw = slot;
    size_t n;
    if (expect_list(ld, node, &n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(ld, i);
        const yaml_node_t *item = list_item(ld, node, i);
        const char *name = cla_name(ld, item);
        /* Only the resource for this cluster's service is ours. */
        if (name != NULL && strcmp(name, dw->service) == 0) {
            if (dw->found)
                report(ld, item, "a second ClusterLoadAssignment for \"%.100s\"", dw->service);
            else
                walk_map(ld, item, &cla_schema, dw->cl, NULL);
            dw->found = true;
        } else if (item->type != YAML_MAPPING_NODE) {
            report_type(ld, item, "a ClusterLoadAssignment");
        }
        path_pop(ld, saved);
    }
    return 0;
}

static const struct schema discovery_response_schema = {
    .fields =
        (const struct field[]){
            {.name = "version_info", .parse = check_any_string},
            {.name = "resources", .parse = parse_resources, .required = true},
            {.name = "type_url", .parse = check_any_string},
            {.name = "nonce", .parse = check_any_string},
            {0},
        },
    .unimplemented = "canary control_plane resource_errors",
};

int config_load_assignment(const char *source, const char *text, size_t len, const char *service,
                           struct cfg_eds *out, struct config_errors *errs)
{
    struct config scratch;
    memset(&scratch, 0, sizeof(scratch));
    struct loader ld = {.source = source ? source : "<eds>", .cfg = &scratch};
    yaml_parser_t parser;
    yaml_document_t doc;
    bool have_parser = false, have_doc = false;
    struct cfg_cluster cl;
    memset(&cl, 0, sizeof(cl));
    memset(out, 0, sizeof(*out));
    memset(errs, 0, sizeof(*errs));
    int result = -1;
    if (!yaml_parser_initialize(&parser)) {
        ld.oom = true;
        goto done;
    }
    have_parser = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        report_syntax(&ld, &parser, text, len);
        goto done;
    }
    have_doc = true;
    ld.doc = &doc;
    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || is_null(root)) {
        report_at(&ld, (struct cfg_mark){1, 1}, "", "the file is empty");
        goto done;
    }
    if (root->type == YAML_MAPPING_NODE && map_get(&ld, root, "resources") != NULL) {
        struct discovery_walk dw = {.cl = &cl, .service = service};
        if (walk_map(&ld, root, &discovery_response_schema, &dw, NULL) == 0 && !dw.found &&
            ld.n_errors == 0)
            report_at(&ld, mark_of(root), "resources", "no ClusterLoadAssignment for \"%.100s\"",
                      service);
    } else if (walk_map(&ld, root, &cla_schema, &cl, NULL) == 0) {
        const char *name = cla_name(&ld, root);
        if (name != NULL && strcmp(name, service) != 0)
            report_at(&ld, mark_of(map_get(&ld, root, "cluster_name")), "cluster_name",
                      "is \"%.100s\", not \"%.100s\"", name, service);
    }
    for (size_t i = 0; i < cl.n_endpoints; i++)
        if (cl.endpoints[i].hostname)
            report_at(&ld, cl.endpoints[i].addr.mark, "",
                      "endpoint address \"%.100s\" is a host name: EDS needs numeric addresses",
                      cl.endpoints[i].addr.address);
    if (ld.n_errors == 0 && !ld.oom) {
        result = 0;
        out->endpoints = cl.endpoints;
        out->n_endpoints = cl.n_endpoints;
        cl.endpoints = NULL;
        cl.n_endpoints = 0;
    }
done:
    if (result < 0)
        move_errors(&ld, errs);
    for (size_t i = 0; i < ld.n_errors; i++)
        free(ld.errors[i].msg);
    free(ld.errors);
    for (size_t i = 0; i < cl.n_endpoints; i++)
        free(cl.endpoints[i].addr.address);
    free(cl.endpoints);
    if (have_doc)
        yaml_document_delete(&doc);
    if (have_parser)
        yaml_parser_delete(&parser);
    return result;
}

void config_eds_free(struct cfg_eds *eds)
{
    for (size_t i = 0; i < eds->n_endpoints; i++)
        free(eds->endpoints[i].addr.address);
    free(eds->endpoints);
    memset(eds, 0, sizeof(*eds));
}

/* The whole file in memory (libyaml wants the text for reader-error positions too). */
static int read_file(const char *path, char **text, size_t *len)
{
    FILE *file = fopen(path, "rb");
    char *buf = NULL;
    size_t used = 0, cap = 0;
    int err = 0;

    if (!file)
        return errno;
    for (;;) {
        if (used == cap) {
            size_t grown_cap = cap ? cap * 2 : 64 * 1024;
            char *grown = grown_cap > MAX_CONFIG_BYTES ? NULL : realloc(buf, grown_cap);
            if (!grown) {
                err = grown_cap > MAX_CONFIG_BYTES ? EFBIG : ENOMEM;
                break;
            }
            buf = grown;
            cap = grown_cap;
        }
        size_t n = fread(buf + used, 1, cap - used, file);
        used += n;
        if (n == 0) {
            if (ferror(file))
                err = errno ? errno : EIO;
            break;
        }
    }
    fclose(file);
    if (err) {
        free(buf);
        return err;
    }
    *text = buf;
    *len = used;
    return 0;
}

int config_load_file(const char *path, struct config *cfg, struct config_errors *errs)
{
    char *text = NULL;
    size_t len = 0;

    memset(cfg, 0, sizeof *cfg);
    memset(errs, 0, sizeof *errs);
    errno = 0;
    int err = read_file(path, &text, &len);
    if (!err) {
        int result = config_load_string(path, text, len, cfg, errs);
        free(text);
        return result;
    }
    errs->msgs = malloc(sizeof *errs->msgs);
    if (errs->msgs && asprintf(&errs->msgs[0], "%s:1:1: (root): cannot read the file: %s", path,
                               strerror(err)) >= 0) {
        errs->n = 1;
    } else {
        free(errs->msgs);
        errs->msgs = NULL;
    }
    return -1;
}

/* ---- freeing and lookups ------------------------------------------------------------------- */

static void free_route_config(struct cfg_route_config *rc)
{
    for (size_t v = 0; v < rc->n_vhosts; v++) {
        struct cfg_vhost *vh = &rc->vhosts[v];
        for (size_t d = 0; d < vh->n_domains; d++)
            free(vh->domains[d]);
        for (size_t r = 0; r < vh->n_routes; r++) {
            struct cfg_route *route = &vh->routes[r];
            free(route->match_value);
            free(route->cluster);
            free(route->prefix_rewrite);
            free(route->direct_body);
            for (size_t h = 0; h < route->n_hash_policy; h++)
                free(route->hash_policy[h].name);
            free(route->hash_policy);
        }
        free(vh->name);
        free(vh->domains);
        free(vh->routes);
    }
    free(rc->vhosts);
    free(rc->name);
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        struct cfg_listener *listener = &cfg->listeners[i];
        free(listener->name);
        free(listener->addr.address);
        free(listener->hcm.stat_prefix);
        free(listener->conn_limit.stat_prefix);
        free_route_config(&listener->hcm.routes);
        for (size_t j = 0; j < listener->hcm.n_access_logs; j++) {
            free(listener->hcm.access_logs[j].path);
            free(listener->hcm.access_logs[j].format);
        }
        free(listener->hcm.access_logs);
    }
    free(cfg->listeners);
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        struct cfg_cluster *cluster = &cfg->clusters[i];
        free(cluster->name);
        for (size_t j = 0; j < cluster->n_endpoints; j++)
            free(cluster->endpoints[j].addr.address);
        free(cluster->endpoints);
        for (size_t j = 0; j < cluster->n_dns_resolvers; j++)
            free(cluster->dns_resolvers[j].address);
        free(cluster->dns_resolvers);
        free(cluster->eds_path);
        free(cluster->eds_watched_dir);
        free(cluster->eds_service_name);
        struct cfg_health_check *hc = &cluster->hc;
        free(hc->path);
        free(hc->host);
        free(hc->expected_statuses);
        for (size_t j = 0; j < hc->n_headers; j++) {
            free(hc->headers[j].key);
            free(hc->headers[j].value);
        }
        free(hc->headers);
        free(hc->send);
        for (size_t j = 0; j < hc->n_receive; j++)
            free(hc->receive[j]);
        free(hc->receive);
        free(hc->receive_len);
    }
    free(cfg->clusters);
    free(cfg->admin.addr.address);
    free(cfg->source);
    free(cfg->text);
    memset(cfg, 0, sizeof *cfg);
}

void config_errors_free(struct config_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}

const struct cfg_cluster *config_find_cluster(const struct config *cfg, const char *name)
{
    if (!cfg || !name)
        return NULL;
    for (size_t i = 0; i < cfg->n_clusters; i++)
        if (cfg->clusters[i].name && !strcmp(cfg->clusters[i].name, name))
            return &cfg->clusters[i];
    return NULL;
}

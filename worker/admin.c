/* The admin listener's handler: Envoy's admin API, answered by whichever
 * worker accepted the connection. Everything it reports is read from shared
 * memory (the statistics segment) or the configuration, so every worker gives
 * the same answer. Mutating endpoints take POST only. */
#include <arpa/inet.h>
#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/proc.h"
#include "common/yaml_json.h"
#include "shm/stats_export.h"
#include "worker/worker.h"

struct admin_request {
    struct worker *w;
    const char *query; /* after '?', or "" */
    int status;
    struct buf *body;
    const char **ctype;
};

struct admin_endpoint {
    const char *path;
    const char *help;
    bool mutates; /* POST only */
    void (*handle)(struct admin_request *r);
};

static void reply(struct admin_request *r, int status, const char *ctype)
{
    r->status = status;
    *r->ctype = ctype;
}

/* --- query strings ----------------------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The value of `key` in the query, percent-decoded into out; false if the
 * key is absent. A key without '=' has the empty value. */
static bool query_param(const char *query, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    for (const char *p = query; *p;) {
        size_t plen = strcspn(p, "&");
        if (plen >= klen && strncmp(p, key, klen) == 0 && (plen == klen || p[klen] == '=')) {
            const char *v = plen == klen ? p + plen : p + klen + 1;
            size_t o = 0;
            for (; v < p + plen && o + 1 < cap; v++) {
                if (*v == '%' && v + 2 < p + plen && hex_value(v[1]) >= 0 && hex_value(v[2]) >= 0) {
                    out[o++] = (char)(hex_value(v[1]) * 16 + hex_value(v[2]));
                    v += 2;
                } else
                    out[o++] = *v;
            }
            out[o] = '\0';
            return true;
        }
        p += plen;
        if (*p == '&')
            p++;
    }
    return false;
}

/* --- stats ---------------------------------------------------------------------------- */

enum stats_format { FORMAT_TEXT, FORMAT_JSON, FORMAT_PROMETHEUS };

static void render_stats(struct admin_request *r, enum stats_format format)
{
    char value[1024];
    regex_t re;
    bool have_filter = query_param(r->query, "filter", value, sizeof(value)) && value[0];
    if (have_filter) {
        char why[128];
        if (stats_filter_compile(&re, value, why, sizeof(why)) != 0) {
            reply(r, 400, "text/plain");
            buf_printf(r->body, "invalid regex in filter: %s\n", why);
            return;
        }
    }
    if (query_param(r->query, "format", value, sizeof(value))) {
        if (strcmp(value, "json") == 0)
            format = FORMAT_JSON;
        else if (strcmp(value, "prometheus") == 0)
            format = FORMAT_PROMETHEUS;
        else if (strcmp(value, "text") != 0) {
            if (have_filter)
                regfree(&re);
            reply(r, 400, "text/plain");
            buf_printf(r->body, "unknown format '%s': use text, json or prometheus\n", value);
            return;
        }
    }
    struct stats_view_opts opts = {
        .filter = have_filter ? &re : NULL,
        .used_only = query_param(r->query, "usedonly", value, sizeof(value)),
    };
    struct stats_view v;
    int rc = stats_view_take(r->w->ctx->stats, &opts, &v);
    if (have_filter)
        regfree(&re);
    if (rc != 0) {
        reply(r, 503, "text/plain");
        buf_printf(r->body, "out of memory reading the statistics\n");
        return;
    }
    switch (format) {
    case FORMAT_TEXT:
        stats_render_text(&v, r->body);
        reply(r, 200, "text/plain");
        break;
    case FORMAT_JSON:
        stats_render_json(&v, r->body);
        reply(r, 200, "application/json");
        break;
    case FORMAT_PROMETHEUS:
        stats_render_prometheus(&v, r->body);
        reply(r, 200, "text/plain; version=0.0.4");
        break;
    }
    stats_view_free(&v);
}

static void admin_stats(struct admin_request *r)
{
    render_stats(r, FORMAT_TEXT);
}

static void admin_prometheus(struct admin_request *r)
{
    render_stats(r, FORMAT_PROMETHEUS);
}

static int64_t gauge_of(const struct stats *s, const char *name)
{
    int id = stats_find(s, name, strlen(name));
    return id >= 0 ? stats_gauge_value(s, id) : 0;
}

static void admin_reset_counters(struct admin_request *r)
{
    stats_reset_counters(r->w->ctx->stats);
    reply(r, 200, "text/plain");
    buf_printf(r->body, "OK\n");
}

/* --- server ----------------------------------------------------------------------------- */

static void admin_ready(struct admin_request *r)
{
    reply(r, r->w->draining ? 503 : 200, "text/plain");
    buf_printf(r->body, "%s\n", r->w->draining ? "DRAINING" : "LIVE");
}

static void admin_server_info(struct admin_request *r)
{
    const struct stats *s = r->w->ctx->stats;
    const struct child_ctx *ctx = r->w->ctx;
    int64_t uptime = gauge_of(s, "server.uptime");
    int64_t all_epochs = (int64_t)time(NULL) - s->hdr->created_unix;
    reply(r, 200, "application/json");
    buf_printf(r->body,
               "{\"version\":\"%s\",\"state\":\"%s\",\"hot_restart_version\":\"%u\","
               "\"uptime_current_epoch\":\"%llds\",\"uptime_all_epochs\":\"%llds\","
               "\"command_line_options\":{\"base_id\":%u,\"concurrency\":%u,"
               "\"restart_epoch\":%u,\"drain_time_s\":%u,\"config_path\":",
               LEGATE_VERSION, r->w->draining ? "DRAINING" : "LIVE", STATS_LAYOUT_VERSION,
               (long long)uptime, (long long)(all_epochs > uptime ? all_epochs : uptime),
               ctx->base_id, ctx->concurrency, ctx->restart_epoch, ctx->drain_time_ms / 1000);
    json_append_string(r->body, ctx->cfg->source, strlen(ctx->cfg->source));
    /* Every generation alive: two while a hot restart overlaps them. */
    buf_printf(r->body, "},\"epochs\":[");
    bool first = true;
    for (uint32_t slot = 0; slot < s->g.n_slots; slot++) {
        struct stats_slot_info si;
        if (!stats_slot_info(s, slot, &si) ||
            atomic_load_explicit(&si.state, memory_order_relaxed) != STATS_SLOT_ALIVE ||
            strcmp(si.title, "supervisor") != 0)
            continue;
        buf_printf(r->body,
                   "%s{\"epoch\":%u,\"supervisor_pid\":%d,\"started\":%lld,"
                   "\"serving\":%s}",
                   first ? "" : ",", si.epoch, (int)si.pid, (long long)si.started_unix,
                   si.pid == s->hdr->supervisor_pid ? "true" : "false");
        first = false;
    }
    buf_printf(r->body, "]}\n");
}

static void admin_hot_restart_version(struct admin_request *r)
{
    reply(r, 200, "text/plain");
    buf_printf(r->body, "%u\n", STATS_LAYOUT_VERSION);
}

/* The memory of every process of this legate, from each one's own gauges. The
 * totals are the sums of the very values listed, read once. */
static void admin_memory(struct admin_request *r)
{
    const struct stats *s = r->w->ctx->stats;
    static const char *names[] = {"server.memory_allocated", "server.memory_heap_size",
                                  "server.memory_physical_size"};
    int ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = stats_find(s, names[i], strlen(names[i]));
    struct buf procs = {0};
    uint64_t total[3] = {0};
    for (uint32_t slot = 0; slot < s->g.n_slots; slot++) {
        struct stats_slot_info si;
        if (!stats_slot_info(s, slot, &si) ||
            atomic_load_explicit(&si.state, memory_order_relaxed) != STATS_SLOT_ALIVE)
            continue;
        uint64_t v[3];
        for (int i = 0; i < 3; i++)
            total[i] += v[i] = stats_slot_value(s, ids[i], slot);
        buf_printf(&procs, "%s{\"process\":", buf_len(&procs) ? "," : "");
        json_append_string(&procs, si.title, strlen(si.title));
        buf_printf(&procs,
                   ",\"pid\":%d,\"allocated\":\"%llu\",\"heap_size\":\"%llu\","
                   "\"physical_bytes\":\"%llu\"}",
                   (int)si.pid, (unsigned long long)v[0], (unsigned long long)v[1],
                   (unsigned long long)v[2]);
    }
    reply(r, 200, "application/json");
    buf_printf(r->body,
               "{\"allocated\":\"%llu\",\"heap_size\":\"%llu\",\"total_physical_bytes\":"
               "\"%llu\",\"processes\":[",
               (unsigned long long)total[0], (unsigned long long)total[1],
               (unsigned long long)total[2]);
    buf_append(r->body, buf_head(&procs), buf_len(&procs));
    buf_printf(r->body, "]}\n");
    buf_release(&procs);
}

/* The answer to a request passed on to the supervisor. */
static void reply_forwarded(struct admin_request *r, int sent)
{
    if (sent != 0) {
        reply(r, 503, "text/plain");
        buf_printf(r->body, "could not reach the supervisor\n");
        return;
    }
    reply(r, 200, "text/plain");
    buf_printf(r->body, "OK\n");
}

static void admin_quit(struct admin_request *r)
{
    reply_forwarded(r, worker_request_shutdown(r->w));
}

static void admin_reopen_logs(struct admin_request *r)
{
    reply_forwarded(r, worker_request_reopen_logs(r->w));
}

/* --- clusters and listeners --------------------------------------------------------------- */

static const char *const host_stat_names[] = {"cx_active",  "cx_connect_fail", "cx_total",
                                              "rq_active",  "rq_error",        "rq_success",
                                              "rq_timeout", "rq_total"};
#define N_HOST_STATS (sizeof(host_stat_names) / sizeof(host_stat_names[0]))

static uint64_t host_stat(const struct stats_view *v, const char *cluster, const char *host,
                          const char *stat)
{
    char name[512];
    snprintf(name, sizeof(name), "cluster.%s.host.%s.%s", cluster, host, stat);
    const struct stat_row *row = stats_view_find(v, name);
    return row != NULL ? row->value : 0;
}

/* What the upstream manager published for a host (healthy, weight 1,
 * priority 0 before its first publication). */
struct host_state {
    uint32_t flags, weight, priority;
};

static struct host_state host_state(const struct cluster_rt *cl, const struct host *h)
{
    struct host_state st = {0, 1, 0};
    for (uint32_t b = 0; b < cl->n_view; b++)
        if (cl->view[b].live == h->slot) {
            st.flags = cl->view[b].flags;
            st.weight = cl->view[b].weight;
            st.priority = cl->view[b].priority;
        }
    return st;
}

static void clusters_text(struct admin_request *r, const struct stats_view *v)
{
    struct buf *b = r->body;
    for (size_t i = 0; i < r->w->n_clusters; i++) {
        const struct cluster_rt *cl = &r->w->clusters[i];
        const char *c = cl->cfg->name;
        const struct cfg_circuit_breakers *cb = &cl->cfg->cb;
        buf_printf(b, "%s::observability_name::%s\n", c, c);
        buf_printf(b, "%s::default_priority::max_connections::%u\n", c, cb->max_connections);
        buf_printf(b, "%s::default_priority::max_pending_requests::%u\n", c,
                   cb->max_pending_requests);
        buf_printf(b, "%s::default_priority::max_requests::%u\n", c, cb->max_requests);
        buf_printf(b, "%s::default_priority::max_retries::%u\n", c, cb->max_retries);
        buf_printf(b, "%s::added_via_api::false\n", c);
        for (uint32_t j = 0; j < cl->cap; j++) {
            if (cl->slots[j] == NULL)
                continue;
            const char *h = cl->slots[j]->name;
            struct host_state hs = host_state(cl, cl->slots[j]);
            char flags[160];
            host_flags_text(hs.flags, flags, sizeof(flags));
            for (size_t k = 0; k < N_HOST_STATS; k++)
                buf_printf(b, "%s::%s::%s::%llu\n", c, h, host_stat_names[k],
                           (unsigned long long)host_stat(v, c, h, host_stat_names[k]));
            buf_printf(b, "%s::%s::hostname::\n", c, h);
            buf_printf(b, "%s::%s::health_flags::%s\n", c, h, flags);
            buf_printf(b, "%s::%s::weight::%u\n", c, h, hs.weight);
            buf_printf(b, "%s::%s::priority::%u\n", c, h, hs.priority);
            buf_printf(b, "%s::%s::success_rate::-1\n", c, h);
        }
    }
}

static void json_socket_address(struct buf *b, const struct sockaddr_storage *ss)
{
    char ip[INET6_ADDRSTRLEN] = "";
    unsigned port = hosts_addr_format(ss, ip, sizeof(ip), NULL, 0);
    buf_printf(b, "{\"socket_address\":{\"address\":");
    json_append_string(b, ip, strlen(ip));
    buf_printf(b, ",\"port_value\":%u}}", port);
}

static void clusters_json(struct admin_request *r, const struct stats_view *v)
{
    struct buf *b = r->body;
    buf_printf(b, "{\"cluster_statuses\":[");
    for (size_t i = 0; i < r->w->n_clusters; i++) {
        const struct cluster_rt *cl = &r->w->clusters[i];
        const char *c = cl->cfg->name;
        buf_printf(b, "%s{\"name\":", i ? "," : "");
        json_append_string(b, c, strlen(c));
        buf_printf(b, ",\"added_via_api\":false,\"host_statuses\":[");
        bool first = true;
        for (uint32_t j = 0; j < cl->cap; j++) {
            if (cl->slots[j] == NULL)
                continue;
            const char *h = cl->slots[j]->name;
            struct host_state hs = host_state(cl, cl->slots[j]);
            buf_printf(b, "%s{\"address\":", first ? "" : ",");
            first = false;
            json_socket_address(b, &cl->slots[j]->addr);
            buf_printf(b, ",\"stats\":[");
            for (size_t k = 0; k < N_HOST_STATS; k++)
                buf_printf(b, "%s{\"name\":\"%s\",\"value\":\"%llu\",\"type\":\"%s\"}",
                           k ? "," : "", host_stat_names[k],
                           (unsigned long long)host_stat(v, c, h, host_stat_names[k]),
                           strstr(host_stat_names[k], "active") ? "GAUGE" : "COUNTER");
            buf_printf(b, "],\"health_status\":{\"eds_health_status\":\"%s\"",
                       hs.flags & HOST_FAILED_EDS_HEALTH     ? "UNHEALTHY"
                       : hs.flags & HOST_DEGRADED_EDS_HEALTH ? "DEGRADED"
                                                             : "HEALTHY");
            if (hs.flags & HOST_FAILED_ACTIVE_HC)
                buf_printf(b, ",\"failed_active_health_check\":true");
            if (hs.flags & HOST_FAILED_OUTLIER_CHECK)
                buf_printf(b, ",\"failed_outlier_check\":true");
            if (hs.flags & HOST_PENDING_DYNAMIC_REMOVAL)
                buf_printf(b, ",\"pending_dynamic_removal\":true");
            buf_printf(b, "},\"weight\":%u,\"priority\":%u}", hs.weight, hs.priority);
        }
        buf_printf(b, "]}");
    }
    buf_printf(b, "]}\n");
}

static void admin_clusters(struct admin_request *r)
{
    for (size_t i = 0; i < r->w->n_clusters; i++)
        worker_cluster_refresh(r->w, &r->w->clusters[i]);
    char format[32];
    bool json =
        query_param(r->query, "format", format, sizeof(format)) && strcmp(format, "json") == 0;
    struct stats_view_opts opts = {.hosts = true};
    struct stats_view v;
    if (stats_view_take(r->w->ctx->stats, &opts, &v) != 0) {
        reply(r, 503, "text/plain");
        buf_printf(r->body, "out of memory reading the statistics\n");
        return;
    }
    if (json) {
        clusters_json(r, &v);
        reply(r, 200, "application/json");
    } else {
        clusters_text(r, &v);
        reply(r, 200, "text/plain");
    }
    stats_view_free(&v);
}

static void admin_listeners(struct admin_request *r)
{
    char format[32];
    const struct config *cfg = r->w->cfg;
    if (query_param(r->query, "format", format, sizeof(format)) && strcmp(format, "json") == 0) {
        reply(r, 200, "application/json");
        buf_printf(r->body, "{\"listener_statuses\":[");
        for (size_t i = 0; i < cfg->n_listeners; i++) {
            buf_printf(r->body, "%s{\"name\":", i ? "," : "");
            json_append_string(r->body, cfg->listeners[i].name, strlen(cfg->listeners[i].name));
            buf_printf(r->body, ",\"local_address\":");
            json_socket_address(r->body, &cfg->listeners[i].addr.ss);
            buf_printf(r->body, "}");
        }
        buf_printf(r->body, "]}\n");
        return;
    }
    reply(r, 200, "text/plain");
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct cfg_addr *a = &cfg->listeners[i].addr;
        bool v6 = strchr(a->address, ':') != NULL;
        buf_printf(r->body, "%s::%s%s%s:%u\n", cfg->listeners[i].name, v6 ? "[" : "", a->address,
                   v6 ? "]" : "", a->port);
    }
}

/* The bootstrap exactly as validated, as JSON, in Envoy's dump envelope. */
static void admin_config_dump(struct admin_request *r)
{
    const struct config *cfg = r->w->cfg;
    struct buf json = {0};
    char err[256];
    if (yaml_to_json(cfg->text, cfg->text_len, &json, err, sizeof(err)) != 0) {
        buf_release(&json);
        reply(r, 500, "text/plain");
        buf_printf(r->body, "cannot render the configuration: %s\n", err);
        return;
    }
    reply(r, 200, "application/json");
    buf_printf(r->body, "{\"configs\":[{\"@type\":\"type.googleapis.com/"
                        "envoy.admin.v3.BootstrapConfigDump\",\"bootstrap\":");
    buf_append(r->body, buf_head(&json), buf_len(&json));
    buf_printf(r->body, ",\"last_updated\":\"");
    char when[32];
    time_t created = (time_t)r->w->ctx->stats->hdr->created_unix;
    struct tm tm;
    gmtime_r(&created, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    buf_printf(r->body, "%s\"}]}\n", when);
    buf_release(&json);
}

/* --- dispatch ------------------------------------------------------------------------------ */

void (*worker_test_forbidden_call)(const char *which) = NULL;

/* Test builds only (legate-testhooks): make this worker attempt a system call
 * outside its seccomp profile. It does not come back: the worker dies of
 * SIGSYS and the supervisor starts another. */
static void admin_test_forbidden_call(struct admin_request *r)
{
    char which[32] = "";
    if (worker_test_forbidden_call == NULL) {
        reply(r, 404, "text/plain");
        buf_printf(r->body, "not a test build\n");
        return;
    }
    query_param(r->query, "call", which, sizeof(which));
    worker_test_forbidden_call(which);
    reply(r, 500, "text/plain");
    buf_printf(r->body, "the call '%s' returned: no seccomp filter stopped it\n", which);
}

static void admin_help(struct admin_request *r);

static const struct admin_endpoint endpoints[] = {
    {"/", "this list of admin commands", false, admin_help},
    {"/clusters", "upstream cluster status (?format=json)", false, admin_clusters},
    {"/config_dump", "dump the current configuration as JSON", false, admin_config_dump},
    {"/help", "print out list of admin commands", false, admin_help},
    {"/hot_restart_version", "print the hot restart compatibility version", false,
     admin_hot_restart_version},
    {"/listeners", "print listener info (?format=json)", false, admin_listeners},
    {"/memory", "print current allocation/heap usage, per process", false, admin_memory},
    {"/quitquitquit", "exit the server gracefully (POST)", true, admin_quit},
    {"/ready", "print server state, return 200 if LIVE, otherwise 503", false, admin_ready},
    {"/reopen_logs", "reopen access logs (POST)", true, admin_reopen_logs},
    {"/reset_counters", "reset all counters to zero (POST)", true, admin_reset_counters},
    {"/server_info", "print server version/status information", false, admin_server_info},
    {"/stats", "print server stats (?format=json|prometheus, ?filter=REGEX, ?usedonly)", false,
     admin_stats},
    {"/stats/prometheus", "print server stats in prometheus format (?filter=, ?usedonly)", false,
     admin_prometheus},
    {"/test/forbidden_call", NULL, true, admin_test_forbidden_call}, /* test builds (POST) */
};
#define N_ENDPOINTS (sizeof(endpoints) / sizeof(endpoints[0]))

static void admin_help(struct admin_request *r)
{
    reply(r, 200, "text/plain");
    buf_printf(r->body, "admin commands are:\n");
    for (size_t i = 0; i < N_ENDPOINTS; i++)
        if (endpoints[i].help != NULL)
            buf_printf(r->body, "  %s: %s\n", endpoints[i].path, endpoints[i].help);
}

void admin_handle(struct worker *w, const char *method, const char *path, int *status,
                  struct buf *body, const char **content_type)
{
    size_t plen = strcspn(path, "?");
    struct admin_request r = {
        .w = w,
        .query = path[plen] == '?' ? path + plen + 1 : "",
        .status = 500,
        .body = body,
        .ctype = content_type,
    };
    for (size_t i = 0; i < N_ENDPOINTS; i++) {
        const struct admin_endpoint *e = &endpoints[i];
        if (strlen(e->path) != plen || memcmp(e->path, path, plen) != 0)
            continue;
        bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
        bool ok = e->mutates ? strcmp(method, "POST") == 0 : get;
        if (!ok) {
            *status = 405;
            *content_type = "text/plain";
            if (e->mutates)
                buf_printf(body, "%s changes the server: use POST (curl -X POST)\n", e->path);
            else
                buf_printf(body, "%s accepts GET only\n", e->path);
            return;
        }
        e->handle(&r);
        *status = r.status;
        return;
    }
    *status = 404;
    *content_type = "text/plain";
    buf_printf(body, "no admin endpoint %.*s; see /help\n", (int)plen, path);
}

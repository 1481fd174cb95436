/* Unit tests for the configuration loader (common/config.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"

#define HCM_TYPE                                                                                   \
    "type.googleapis.com/"                                                                         \
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

/* A valid config with three holes, each starting on a known line while the
 * holes before it are empty:
 *   cluster_extra  line 11: more fields of cluster "c" (indent 4) or more clusters (indent 2);
 *   listener_extra line 15: more fields of listener "l" (indent 4);
 *   routes         line 27: routes of virtual host "v" (indent 14), or more
 *                           virtual hosts (indent 12). */
#define CONFIG(cluster_extra, listener_extra, routes)                                              \
    "static_resources:\n"                                                                          \
    "  clusters:\n"                                                                                \
    "  - name: c\n"                                                                                \
    "    load_assignment:\n"                                                                       \
    "      cluster_name: c\n"                                                                      \
    "      endpoints:\n"                                                                           \
    "      - lb_endpoints:\n"                                                                      \
    "        - endpoint:\n"                                                                        \
    "            address:\n"                                                                       \
    "              socket_address: {address: 127.0.0.1, port_value: 8080}\n" cluster_extra         \
    "  listeners:\n"                                                                               \
    "  - name: l\n"                                                                                \
    "    address:\n"                                                                               \
    "      socket_address: {address: 127.0.0.1, port_value: 10000}\n" listener_extra               \
    "    filter_chains:\n"                                                                         \
    "    - filters:\n"                                                                             \
    "      - name: envoy.filters.network.http_connection_manager\n"                                \
    "        typed_config:\n"                                                                      \
    "          \"@type\": " HCM_TYPE "\n"                                                          \
    "          stat_prefix: s\n"                                                                   \
    "          http_filters: [{name: envoy.filters.http.router}]\n"                                \
    "          route_config:\n"                                                                    \
    "            virtual_hosts:\n"                                                                 \
    "            - name: v\n"                                                                      \
    "              domains: [\"*\"]\n"                                                             \
    "              routes:\n" routes

/* One listener whose http_connection_manager fields (after "@type", line 10)
 * start on line 11, indent 10. */
#define HCM_CONFIG(fields)                                                                         \
    "static_resources:\n"                                                                          \
    "  listeners:\n"                                                                               \
    "  - name: l\n"                                                                                \
    "    address:\n"                                                                               \
    "      socket_address: {address: 127.0.0.1, port_value: 10000}\n"                              \
    "    filter_chains:\n"                                                                         \
    "    - filters:\n"                                                                             \
    "      - name: envoy.filters.network.http_connection_manager\n"                                \
    "        typed_config:\n"                                                                      \
    "          \"@type\": " HCM_TYPE "\n" fields

#define HCM_BASICS                                                                                 \
    "          stat_prefix: s\n"                                                                   \
    "          route_config: {}\n"

/* A complete listener of 11 lines; its socket_address is on its third line. */
#define LISTENER(name, ip, port)                                                                   \
    "  - name: " name "\n"                                                                         \
    "    address:\n"                                                                               \
    "      socket_address: {address: " ip ", port_value: " port "}\n"                              \
    "    filter_chains:\n"                                                                         \
    "    - filters:\n"                                                                             \
    "      - name: envoy.filters.network.http_connection_manager\n"                                \
    "        typed_config:\n"                                                                      \
    "          \"@type\": " HCM_TYPE "\n"                                                          \
    "          stat_prefix: s\n"                                                                   \
    "          http_filters: [{name: envoy.filters.http.router}]\n"                                \
    "          route_config: {}\n"

/* A cluster of 8 lines; its socket_address is on its last line (address value at column
 * 41, port_value value at column 63). */
#define ENDPOINT_CLUSTER(name, ip, port)                                                           \
    "  - name: " name "\n"                                                                         \
    "    load_assignment:\n"                                                                       \
    "      cluster_name: " name "\n"                                                               \
    "      endpoints:\n"                                                                           \
    "      - lb_endpoints:\n"                                                                      \
    "        - endpoint:\n"                                                                        \
    "            address:\n"                                                                       \
    "              socket_address: {address: " ip ", port_value: " port "}\n"

/* ---- helpers ------------------------------------------------------------------------------- */

static void print_errors(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        print_message("  error: %s\n", errs->msgs[i]);
}

static int load(const char *yaml, struct config *cfg, struct config_errors *errs)
{
    return config_load_string("t.yaml", yaml, strlen(yaml), cfg, errs);
}

/* Is there an error at line:col whose text contains `needle`? */
static bool has_error(const struct config_errors *errs, int line, int col, const char *needle)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "t.yaml:%d:%d: ", line, col);
    for (size_t i = 0; i < errs->n; i++)
        if (!strncmp(errs->msgs[i], prefix, strlen(prefix)) && strstr(errs->msgs[i], needle))
            return true;
    return false;
}

/* Loading `yaml` fails with exactly `count` errors, one of them at line:col
 * containing `needle`. */
static void check_errors(const char *yaml, size_t count, int line, int col, const char *needle)
{
    struct config cfg;
    struct config_errors errs;

    assert_int_equal(load(yaml, &cfg, &errs), -1);
    if (errs.n != count || !has_error(&errs, line, col, needle)) {
        print_message("expected %zu error(s), one at %d:%d with \"%s\"; got:\n", count, line, col,
                      needle);
        print_errors(&errs);
        config_errors_free(&errs);
        fail();
    }
    /* A failed load leaves nothing to free. */
    assert_null(cfg.listeners);
    assert_null(cfg.clusters);
    assert_null(cfg.source);
    config_errors_free(&errs);
}

static void expect_error(const char *yaml, int line, int col, const char *needle)
{
    check_errors(yaml, 1, line, col, needle);
}

static void load_ok(const char *yaml, struct config *cfg)
{
    struct config_errors errs;
    int rc = load(yaml, cfg, &errs);
    if (rc != 0) {
        print_errors(&errs);
        config_errors_free(&errs);
        fail();
    }
    assert_int_equal(errs.n, 0);
}

static void assert_ipv4(const struct cfg_addr *addr, const char *ip, uint16_t port)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&addr->ss;
    struct in_addr want;

    assert_string_equal(addr->address, ip);
    assert_int_equal(addr->port, port);
    assert_int_equal(addr->sslen, sizeof(struct sockaddr_in));
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), port);
    assert_int_equal(inet_pton(AF_INET, ip, &want), 1);
    assert_memory_equal(&sin->sin_addr, &want, sizeof want);
}

static void assert_ipv6(const struct cfg_addr *addr, const char *ip, uint16_t port)
{
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&addr->ss;
    struct in6_addr want;

    assert_string_equal(addr->address, ip);
    assert_int_equal(addr->port, port);
    assert_int_equal(addr->sslen, sizeof(struct sockaddr_in6));
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(sin6->sin6_port), port);
    assert_int_equal(inet_pton(AF_INET6, ip, &want), 1);
    assert_memory_equal(&sin6->sin6_addr, &want, sizeof want);
}

/* ---- valid configurations ------------------------------------------------------------------ */

static void test_default_config(void **state)
{
    struct config cfg;
    (void)state;

    load_ok(config_default_yaml, &cfg);
    assert_string_equal(cfg.source, "t.yaml");

    assert_true(cfg.admin.enabled);
    assert_ipv4(&cfg.admin.addr, "127.0.0.1", 9901);

    assert_int_equal(cfg.n_listeners, 1);
    const struct cfg_listener *l = &cfg.listeners[0];
    assert_string_equal(l->name, "main");
    assert_ipv4(&l->addr, "127.0.0.1", 10000);
    assert_string_equal(l->hcm.stat_prefix, "ingress_http");
    assert_int_equal(l->hcm.codec, CODEC_AUTO);
    assert_true(l->hcm.generate_request_id);
    assert_int_equal(l->hcm.request_headers_timeout_ms, 0);
    assert_int_equal(l->hcm.stream_idle_timeout_ms, 300000);
    assert_int_equal(l->hcm.idle_timeout_ms, 3600000);

    assert_int_equal(l->hcm.n_access_logs, 1);
    assert_string_equal(l->hcm.access_logs[0].path, "/dev/stdout");
    assert_null(l->hcm.access_logs[0].format);
    assert_int_equal(l->hcm.access_logs[0].fd, -1);

    const struct cfg_route_config *rc = &l->hcm.routes;
    assert_string_equal(rc->name, "local_route");
    assert_int_equal(rc->n_vhosts, 1);
    assert_string_equal(rc->vhosts[0].name, "local");
    assert_int_equal(rc->vhosts[0].n_domains, 1);
    assert_string_equal(rc->vhosts[0].domains[0], "*");
    assert_int_equal(rc->vhosts[0].n_routes, 2);

    const struct cfg_route *up = &rc->vhosts[0].routes[0];
    assert_int_equal(up->match, ROUTE_MATCH_PREFIX);
    assert_string_equal(up->match_value, "/upstream/");
    assert_int_equal(up->match_len, 10);
    assert_int_equal(up->action, ROUTE_ACTION_CLUSTER);
    assert_string_equal(up->cluster, "local_upstream");
    assert_int_equal(up->cluster_index, 0);
    assert_int_equal(up->timeout_ms, 15000);
    assert_string_equal(up->prefix_rewrite, "/");

    const struct cfg_route *hello = &rc->vhosts[0].routes[1];
    assert_int_equal(hello->match, ROUTE_MATCH_PREFIX);
    assert_string_equal(hello->match_value, "/");
    assert_int_equal(hello->action, ROUTE_ACTION_DIRECT);
    assert_int_equal(hello->direct_status, 200);
    assert_string_equal(hello->direct_body, "Hello from legate\n");
    assert_int_equal(hello->direct_body_len, 18);
    assert_null(hello->cluster);

    assert_int_equal(cfg.n_clusters, 1);
    const struct cfg_cluster *c = &cfg.clusters[0];
    assert_string_equal(c->name, "local_upstream");
    assert_int_equal(c->type, CLUSTER_STATIC);
    assert_int_equal(c->lb_policy, LB_ROUND_ROBIN);
    assert_int_equal(c->connect_timeout_ms, 1000);
    assert_int_equal(c->n_endpoints, 1);
    assert_ipv4(&c->endpoints[0].addr, "127.0.0.1", 8080);
    assert_int_equal(c->cb.max_connections, 1024);
    assert_int_equal(c->cb.max_pending_requests, 1024);
    assert_int_equal(c->cb.max_requests, 1024);
    assert_int_equal(c->cb.max_retries, 3);

    assert_ptr_equal(config_find_cluster(&cfg, "local_upstream"), c);
    assert_null(config_find_cluster(&cfg, "nope"));
    config_free(&cfg);
    assert_null(cfg.listeners);
    config_free(&cfg); /* freeing twice is harmless: the struct was zeroed */
}

/* examples/quickstart.yaml is the embedded default, byte for byte, and loads from disk. */
static void test_quickstart_matches_default(void **state)
{
    struct config cfg;
    struct config_errors errs;
    char buf[16384];
    (void)state;

    FILE *f = fopen("examples/quickstart.yaml", "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(n < sizeof buf);
    assert_int_equal(n, strlen(config_default_yaml));
    assert_memory_equal(buf, config_default_yaml, n);

    assert_int_equal(config_load_file("examples/quickstart.yaml", &cfg, &errs), 0);
    assert_int_equal(errs.n, 0);
    assert_string_equal(cfg.source, "examples/quickstart.yaml");
    config_free(&cfg);
}

static const char multi_yaml[] =
    "admin:\n"
    "  address:\n"
    "    socket_address: {address: \"::1\", port_value: 9901}\n"
    "static_resources:\n"
    "  listeners:\n"
    "  - name: public\n"
    "    address:\n"
    "      socket_address: {address: \"::\", port_value: \"8080\", protocol: TCP}\n"
    "    filter_chains:\n"
    "    - filters:\n"
    "      - name: envoy.filters.network.http_connection_manager\n"
    "        typed_config:\n"
    "          \"@type\": " HCM_TYPE "\n"
    "          stat_prefix: public\n"
    "          codec_type: HTTP1\n"
    "          generate_request_id: false\n"
    "          request_headers_timeout: 0.25s\n"
    "          stream_idle_timeout: 0s\n"
    "          common_http_protocol_options: {idle_timeout: 1.5s}\n"
    "          access_log:\n"
    "          - name: envoy.access_loggers.file\n"
    "            typed_config:\n"
    "              \"@type\": "
    "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n"
    "              path: /var/log/legate/access.log\n"
    "              log_format:\n"
    "                text_format_source:\n"
    "                  inline_string: \"%START_TIME% %REQ(:PATH)%\\n\"\n"
    "          route_config:\n"
    "            name: public_routes\n"
    "            virtual_hosts:\n"
    "            - name: api\n"
    "              domains: [\"API.Example.com\", \"api.example.com:8080\", "
    "\"*.api.example.com\"]\n"
    "              routes:\n"
    "              - name: health\n"
    "                match: {path: /healthz}\n"
    "                direct_response: {status: 204}\n"
    "              - match: {prefix: /v1/}\n"
    "                route: {cluster: api, timeout: 0s, prefix_rewrite: /}\n"
    "            - name: fallback\n"
    "              domains: [\"*\"]\n"
    "              routes:\n"
    "              - match: {prefix: \"\"}\n"
    "                route: {cluster: web, timeout: 30s}\n"
    "          http_filters:\n"
    "          - name: envoy.filters.http.router\n"
    "  - name: internal\n"
    "    address:\n"
    "      socket_address: {address: 10.1.2.3, port_value: 0}\n"
    "    filter_chains:\n"
    "    - filters:\n"
    "      - name: hcm # the name is free-form: \"@type\" picks the filter, as in Envoy\n"
    "        typed_config:\n"
    "          \"@type\": " HCM_TYPE "\n"
    "          stat_prefix: internal\n"
    "          route_config:\n"
    "            virtual_hosts:\n"
    "            - name: all\n"
    "              domains: [\"*\"]\n"
    "              routes:\n"
    "              - match: {prefix: /}\n"
    "                route: {cluster: web, timeout: 0.0001s}\n"
    "          http_filters:\n"
    "          - name: router\n"
    "            typed_config:\n"
    "              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n"
    "  clusters:\n"
    "  - name: web\n"
    "    connect_timeout: 0.25s\n"
    "    load_assignment:\n"
    "      cluster_name: web\n"
    "      endpoints:\n"
    "      - lb_endpoints:\n"
    "        - endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}\n"
    "        - endpoint: {address: {socket_address: {address: 10.0.0.2, port_value: \"81\"}}}\n"
    "      - lb_endpoints:\n"
    "        - endpoint: {address: {socket_address: {address: \"fd00::1\", port_value: 8080}}}\n"
    "    circuit_breakers:\n"
    "      thresholds:\n"
    "      - priority: DEFAULT\n"
    "        max_connections: 10\n"
    "        max_pending_requests: \"20\"\n"
    "        max_requests: 30\n"
    "        max_retries: 0\n"
    "  - name: api\n"
    "    type: STATIC\n"
    "    lb_policy: ROUND_ROBIN\n";

static void test_multi_listener_multi_cluster(void **state)
{
    struct config cfg;
    (void)state;

    load_ok(multi_yaml, &cfg);
    assert_true(cfg.admin.enabled);
    assert_ipv6(&cfg.admin.addr, "::1", 9901);
    assert_int_equal(cfg.n_listeners, 2);
    assert_int_equal(cfg.n_clusters, 2);

    const struct cfg_listener *pub = &cfg.listeners[0];
    assert_string_equal(pub->name, "public");
    assert_ipv6(&pub->addr, "::", 8080);
    assert_int_equal(pub->addr.mark.line, 8);
    assert_int_equal(pub->addr.mark.col, 23);
    assert_string_equal(pub->hcm.stat_prefix, "public");
    assert_int_equal(pub->hcm.codec, CODEC_HTTP1);
    assert_false(pub->hcm.generate_request_id);
    assert_int_equal(pub->hcm.request_headers_timeout_ms, 250);
    assert_int_equal(pub->hcm.stream_idle_timeout_ms, 0);
    assert_int_equal(pub->hcm.idle_timeout_ms, 1500);
    assert_int_equal(pub->hcm.n_access_logs, 1);
    assert_string_equal(pub->hcm.access_logs[0].path, "/var/log/legate/access.log");
    assert_string_equal(pub->hcm.access_logs[0].format, "%START_TIME% %REQ(:PATH)%\n");
    assert_int_equal(pub->hcm.access_logs[0].fd, -1);

    const struct cfg_route_config *rc = &pub->hcm.routes;
    assert_string_equal(rc->name, "public_routes");
    assert_int_equal(rc->n_vhosts, 2);
    const struct cfg_vhost *api = &rc->vhosts[0];
    assert_int_equal(api->n_domains, 3);
    assert_string_equal(api->domains[0], "api.example.com"); /* lower-cased */
    assert_string_equal(api->domains[1], "api.example.com:8080");
    assert_string_equal(api->domains[2], "*.api.example.com");
    assert_int_equal(api->n_routes, 2);
    assert_int_equal(api->routes[0].match, ROUTE_MATCH_PATH);
    assert_string_equal(api->routes[0].match_value, "/healthz");
    assert_int_equal(api->routes[0].action, ROUTE_ACTION_DIRECT);
    assert_int_equal(api->routes[0].direct_status, 204);
    assert_null(api->routes[0].direct_body);
    assert_int_equal(api->routes[0].direct_body_len, 0);
    assert_int_equal(api->routes[0].mark.line, 34);
    assert_int_equal(api->routes[0].mark.col, 17);
    assert_string_equal(api->routes[1].cluster, "api");
    assert_int_equal(api->routes[1].cluster_index, 1);
    assert_int_equal(api->routes[1].timeout_ms, 0); /* "0s" disables */
    assert_string_equal(api->routes[1].prefix_rewrite, "/");

    const struct cfg_vhost *fallback = &rc->vhosts[1];
    assert_string_equal(fallback->routes[0].match_value, "");
    assert_int_equal(fallback->routes[0].match_len, 0);
    assert_string_equal(fallback->routes[0].cluster, "web");
    assert_int_equal(fallback->routes[0].cluster_index, 0);
    assert_int_equal(fallback->routes[0].timeout_ms, 30000);
    assert_null(fallback->routes[0].prefix_rewrite);

    const struct cfg_listener *internal = &cfg.listeners[1];
    assert_ipv4(&internal->addr, "10.1.2.3", 0);
    assert_int_equal(internal->hcm.n_access_logs, 0);
    assert_true(internal->hcm.generate_request_id);
    /* Under a millisecond rounds up: 0.1 ms must not read as "no timeout". */
    assert_int_equal(internal->hcm.routes.vhosts[0].routes[0].timeout_ms, 1);

    const struct cfg_cluster *web = config_find_cluster(&cfg, "web");
    assert_ptr_equal(web, &cfg.clusters[0]);
    assert_int_equal(web->connect_timeout_ms, 250);
    assert_int_equal(web->n_endpoints, 3);
    assert_ipv4(&web->endpoints[0].addr, "10.0.0.1", 80);
    assert_ipv4(&web->endpoints[1].addr, "10.0.0.2", 81);
    assert_ipv6(&web->endpoints[2].addr, "fd00::1", 8080);
    assert_int_equal(web->cb.max_connections, 10);
    assert_int_equal(web->cb.max_pending_requests, 20);
    assert_int_equal(web->cb.max_requests, 30);
    assert_int_equal(web->cb.max_retries, 0);
    assert_int_equal(web->mark.line, 67);

    const struct cfg_cluster *api_cluster = config_find_cluster(&cfg, "api");
    assert_int_equal(api_cluster->n_endpoints, 0); /* valid: its requests get 503 */
    assert_null(api_cluster->endpoints);
    assert_int_equal(api_cluster->connect_timeout_ms, 5000);
    assert_int_equal(api_cluster->cb.max_retries, 3);
    config_free(&cfg);
}

/* The template's holes left empty is a valid config; so is JSON (a YAML subset). */
static void test_minimal_and_json(void **state)
{
    struct config cfg;
    (void)state;

    load_ok(CONFIG("", "", ""), &cfg);
    assert_false(cfg.admin.enabled);
    assert_int_equal(cfg.listeners[0].hcm.routes.vhosts[0].n_routes, 0);
    config_free(&cfg);

    load_ok(
        "{\"static_resources\": {\"clusters\": [{\"name\": \"a\", \"connect_timeout\": \"2s\"}],"
        " \"listeners\": []}}",
        &cfg);
    assert_int_equal(cfg.n_clusters, 1);
    assert_int_equal(cfg.clusters[0].connect_timeout_ms, 2000);
    assert_int_equal(cfg.n_listeners, 0);
    config_free(&cfg);

    /* Port 0 means "any free port", so two of them never clash. */
    load_ok("static_resources:\n  listeners:\n" LISTENER("a", "127.0.0.1", "0")
                LISTENER("b", "127.0.0.1", "0"),
            &cfg);
    assert_int_equal(cfg.n_listeners, 2);
    config_free(&cfg);
}

static void test_durations(void **state)
{
    static const struct {
        const char *text;
        uint64_t ms;
    } cases[] = {
        {"5s", 5000},
        {"0.25s", 250},
        {"1.5s", 1500},
        {"0.000000001s", 1},
        {"1.0005s", 1001},
        {"86400s", 86400000},
        {"\"2.100000000s\"", 2100},
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[256];
        struct config cfg;
        snprintf(yaml, sizeof yaml,
                 "static_resources:\n  clusters:\n  - name: a\n    connect_timeout: %s\n",
                 cases[i].text);
        load_ok(yaml, &cfg);
        assert_int_equal(cfg.clusters[0].connect_timeout_ms, cases[i].ms);
        config_free(&cfg);
    }
}

/* ---- invalid configurations ---------------------------------------------------------------- */

static void test_unknown_field(void **state)
{
    (void)state;
    expect_error("static_resources: {}\nbogus: 1\n", 2, 1, "t.yaml:2:1: bogus: unknown field");
    /* A near miss gets a suggestion. */
    expect_error(CONFIG("", "",
                        "              - match: {prefix: /}\n"
                        "                route: {cluster: c, timout: 5s}\n"),
                 28, 37,
                 "static_resources.listeners[0].filter_chains[0].filters[0].typed_config."
                 "route_config.virtual_hosts[0].routes[0].route.timout: unknown field (did you "
                 "mean \"timeout\"?)");
}

static void test_not_implemented_field(void **state)
{
    (void)state;
    expect_error(CONFIG("", "    per_connection_buffer_limit_bytes: 1024\n", ""), 15, 5,
                 "static_resources.listeners[0].per_connection_buffer_limit_bytes: not "
                 "implemented by legate");
    expect_error("layered_runtime: {layers: []}\nstatic_resources: {}\n", 1, 1,
                 "layered_runtime: not implemented by legate");
    expect_error("admin:\n  access_log_path: /dev/null\n", 2, 3,
                 "admin.access_log_path: not implemented by legate");
    expect_error(CONFIG("", "",
                        "              - match: {prefix: /, headers: [{name: x}]}\n"
                        "                direct_response: {status: 200}\n"),
                 27, 36, "routes[0].match.headers: not implemented by legate");
    /* An unimplemented action is reported once, not also as a missing action. */
    expect_error(CONFIG("", "",
                        "              - match: {prefix: /}\n"
                        "                redirect: {https_redirect: true}\n"),
                 28, 17, "routes[0].redirect: not implemented by legate");
    expect_error(HCM_CONFIG(HCM_BASICS
                            "          http_filters: [{name: envoy.filters.http.router}]\n"
                            "          codec_type: HTTP2\n"),
                 14, 23, "typed_config.codec_type: HTTP2 is not implemented by legate yet");
    expect_error(CONFIG("    type: ORIGINAL_DST\n", "", ""), 11, 11,
                 "static_resources.clusters[0].type: ORIGINAL_DST is not implemented by legate "
                 "yet");
    expect_error(CONFIG("    lb_policy: CLUSTER_PROVIDED\n", "", ""), 11, 16,
                 "clusters[0].lb_policy: CLUSTER_PROVIDED is not implemented by legate yet");
    expect_error(
        CONFIG("    circuit_breakers:\n      thresholds:\n      - priority: HIGH\n", "", ""), 13,
        19, "clusters[0].circuit_breakers.thresholds[0].priority: HIGH is not implemented");
}

/* health_checks, outlier_detection, priorities and the hashing balancers. */
static void test_health_and_balancing_options(void **state)
{
    (void)state;
    struct config cfg;
    load_ok(
        CONFIG(
            "    lb_policy: MAGLEV\n"
            "    maglev_lb_config: {table_size: 131}\n"
            "    common_lb_config: {healthy_panic_threshold: {value: 25.5}}\n"
            "    health_checks:\n"
            "    - timeout: 1s\n"
            "      interval: 0.5s\n"
            "      interval_jitter: 0.1s\n"
            "      unhealthy_threshold: 3\n"
            "      healthy_threshold: 2\n"
            "      http_health_check:\n"
            "        path: /healthz\n"
            "        host: health.local\n"
            "        expected_statuses: [{start: 200, end: 300}]\n"
            "        request_headers_to_add:\n"
            "        - header: {key: x-hc, value: legate}\n"
            "          append_action: OVERWRITE_IF_EXISTS_OR_ADD\n"
            "    outlier_detection:\n"
            "      consecutive_5xx: 3\n"
            "      interval: 1s\n"
            "      base_ejection_time: 2s\n"
            "      max_ejection_percent: 50\n"
            "  - name: d\n"
            "    lb_policy: RING_HASH\n"
            "    ring_hash_lb_config: {minimum_ring_size: 64, maximum_ring_size: 4096,\n"
            "                          hash_function: MURMUR_HASH_2}\n"
            "    health_checks:\n"
            "    - timeout: 1s\n"
            "      interval: 1s\n"
            "      unhealthy_threshold: 1\n"
            "      healthy_threshold: 1\n"
            "      tcp_health_check: {send: {text: \"50494e47\"}, receive: [{text: "
            "\"504f4e47\"}]}\n"
            "    load_assignment:\n"
            "      cluster_name: d\n"
            "      endpoints:\n"
            "      - priority: 0\n"
            "        lb_endpoints:\n"
            "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}\n"
            "          health_status: DRAINING\n"
            "      - lb_endpoints:\n"
            "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}\n"
            "        priority: 1\n",
            "",
            "              - match: {prefix: /}\n"
            "                route:\n"
            "                  cluster: d\n"
            "                  hash_policy:\n"
            "                  - header: {header_name: X-User}\n"
            "                    terminal: true\n"
            "                  - cookie: {name: session}\n"
            "                  - connection_properties: {source_ip: true}\n"
            "                  - query_parameter: {name: u}\n"),
        &cfg);
    const struct cfg_cluster *c = &cfg.clusters[0];
    assert_int_equal(c->lb_policy, LB_MAGLEV);
    assert_int_equal(c->maglev_table_size, 131);
    assert_true(c->healthy_panic_threshold > 25.4 && c->healthy_panic_threshold < 25.6);
    assert_true(c->hc.enabled);
    assert_int_equal(c->hc.kind, HC_HTTP);
    assert_int_equal(c->hc.timeout_ms, 1000);
    assert_int_equal(c->hc.interval_ms, 500);
    assert_int_equal(c->hc.interval_jitter_ms, 100);
    assert_int_equal(c->hc.unhealthy_threshold, 3);
    assert_int_equal(c->hc.healthy_threshold, 2);
    assert_true(c->hc.reuse_connection);
    assert_string_equal(c->hc.path, "/healthz");
    assert_string_equal(c->hc.host, "health.local");
    assert_int_equal(c->hc.n_expected_statuses, 1);
    assert_int_equal(c->hc.expected_statuses[0].start, 200);
    assert_int_equal(c->hc.expected_statuses[0].end, 300);
    assert_int_equal(c->hc.n_headers, 1);
    assert_string_equal(c->hc.headers[0].key, "x-hc");
    assert_string_equal(c->hc.headers[0].value, "legate");
    assert_true(c->outlier.enabled);
    assert_int_equal(c->outlier.consecutive_5xx, 3);
    assert_int_equal(c->outlier.consecutive_gateway_failure, 5); /* Envoy's defaults stay */
    assert_int_equal(c->outlier.enforcing_consecutive_gateway_failure, 0);
    assert_int_equal(c->outlier.interval_ms, 1000);
    assert_int_equal(c->outlier.base_ejection_time_ms, 2000);
    assert_int_equal(c->outlier.max_ejection_time_ms, 300000);
    assert_int_equal(c->outlier.max_ejection_percent, 50);
    assert_int_equal(c->outlier.success_rate_stdev_factor, 1900);

    const struct cfg_cluster *d = &cfg.clusters[1];
    assert_int_equal(d->lb_policy, LB_RING_HASH);
    assert_int_equal(d->ring_min_size, 64);
    assert_int_equal(d->ring_max_size, 4096);
    assert_true(d->ring_murmur);
    assert_false(d->outlier.enabled);
    assert_true(d->healthy_panic_threshold > 49.9 && d->healthy_panic_threshold < 50.1);
    assert_int_equal(d->hc.kind, HC_TCP);
    assert_int_equal(d->hc.send_len, 4);
    assert_memory_equal(d->hc.send, "PING", 4);
    assert_int_equal(d->hc.n_receive, 1);
    assert_int_equal(d->hc.receive_len[0], 4);
    assert_memory_equal(d->hc.receive[0], "PONG", 4);
    assert_int_equal(d->n_endpoints, 2);
    assert_int_equal(d->endpoints[0].priority, 0);
    assert_int_equal(d->endpoints[0].health_status, HEALTH_STATUS_DRAINING);
    assert_int_equal(d->endpoints[1].priority, 1); /* priority written after lb_endpoints */
    assert_int_equal(d->max_priority, 1);

    const struct cfg_route *r = &cfg.listeners[0].hcm.routes.vhosts[0].routes[0];
    assert_int_equal(r->n_hash_policy, 4);
    assert_int_equal(r->hash_policy[0].kind, HASH_HEADER);
    assert_string_equal(r->hash_policy[0].name, "x-user"); /* lower-cased */
    assert_true(r->hash_policy[0].terminal);
    assert_int_equal(r->hash_policy[1].kind, HASH_COOKIE);
    assert_string_equal(r->hash_policy[1].name, "session");
    assert_int_equal(r->hash_policy[2].kind, HASH_SOURCE_IP);
    assert_int_equal(r->hash_policy[3].kind, HASH_QUERY_PARAMETER);
    assert_string_equal(r->hash_policy[3].name, "u");
    config_free(&cfg);
}

static void test_discovery_options(void **state)
{
    (void)state;
    struct config cfg;
    load_ok(CONFIG("  - name: dns\n"
                   "    type: STRICT_DNS\n"
                   "    dns_refresh_rate: 2s\n"
                   "    respect_dns_ttl: true\n"
                   "    dns_lookup_family: V4_ONLY\n"
                   "    typed_dns_resolver_config:\n"
                   "      name: envoy.network.dns_resolver.cares\n"
                   "      typed_config:\n"
                   "        \"@type\": type.googleapis.com/"
                   "envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig\n"
                   "        resolvers: [{socket_address: {address: 127.0.0.1, port_value: 5353}}]\n"
                   "    load_assignment:\n"
                   "      cluster_name: dns\n"
                   "      endpoints:\n"
                   "      - lb_endpoints:\n"
                   "        - endpoint: {address: {socket_address: {address: backend.test, "
                   "port_value: 80}}}\n"
                   "  - name: eds\n"
                   "    type: EDS\n"
                   "    eds_cluster_config:\n"
                   "      service_name: svc\n"
                   "      eds_config:\n"
                   "        resource_api_version: V3\n"
                   "        path_config_source: {path: /etc/legate/eds.yaml}\n",
                   "", ""),
            &cfg);
    const struct cfg_cluster *d = &cfg.clusters[1];
    assert_int_equal(d->type, CLUSTER_STRICT_DNS);
    assert_int_equal(d->dns_refresh_rate_ms, 2000);
    assert_true(d->respect_dns_ttl);
    assert_int_equal(d->dns_family, DNS_V4_ONLY);
    assert_int_equal(d->n_dns_resolvers, 1);
    assert_int_equal(d->dns_resolvers[0].port, 5353);
    assert_true(d->endpoints[0].hostname);
    assert_string_equal(d->endpoints[0].addr.address, "backend.test");
    assert_int_equal(d->endpoints[0].addr.port, 80);
    const struct cfg_cluster *e = &cfg.clusters[2];
    assert_int_equal(e->type, CLUSTER_EDS);
    assert_string_equal(e->eds_path, "/etc/legate/eds.yaml");
    assert_string_equal(e->eds_service_name, "svc");
    assert_int_equal(e->n_endpoints, 0);
    config_free(&cfg);

    check_errors(CONFIG("  - name: e\n    type: EDS\n", "", ""), 1, 11, 5,
                 "an EDS cluster needs eds_cluster_config");
    check_errors(CONFIG("  - name: l\n    type: LOGICAL_DNS\n", "", ""), 1, 11, 5,
                 "a LOGICAL_DNS cluster has exactly one endpoint (it has 0)");
    check_errors(CONFIG("    eds_cluster_config: {eds_config: {path: rel.yaml}}\n", "", ""), 2, 11,
                 45, "must be an absolute path");
    check_errors(CONFIG("    dns_lookup_family: V5\n", "", ""), 1, 11, 24, "unknown value");
}

static void eds_ok(const char *text, const char *service, struct cfg_eds *out)
{
    struct config_errors errs;
    if (config_load_assignment("eds.yaml", text, strlen(text), service, out, &errs) != 0) {
        print_errors(&errs);
        config_errors_free(&errs);
        fail();
    }
}

static void eds_error(const char *text, const char *service, const char *needle)
{
    struct config_errors errs;
    struct cfg_eds out;
    assert_int_equal(config_load_assignment("eds.yaml", text, strlen(text), service, &out, &errs),
                     -1);
    bool found = false;
    for (size_t i = 0; i < errs.n; i++)
        found |= strstr(errs.msgs[i], needle) != NULL;
    if (!found) {
        print_message("no error with \"%s\"; got:\n", needle);
        print_errors(&errs);
        fail();
    }
    assert_null(out.endpoints);
    config_errors_free(&errs);
}

static void test_eds_files(void **state)
{
    (void)state;
    struct cfg_eds eds;
    /* A bare ClusterLoadAssignment, in YAML. */
    eds_ok("cluster_name: svc\n"
           "endpoints:\n"
           "- lb_endpoints:\n"
           "  - endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}\n"
           "    load_balancing_weight: 3\n"
           "  - endpoint: {address: {socket_address: {address: 10.0.0.2, port_value: 80}}}\n"
           "    health_status: UNHEALTHY\n"
           "- priority: 1\n"
           "  lb_endpoints:\n"
           "  - endpoint: {address: {socket_address: {address: '::1', port_value: 81}}}\n",
           "svc", &eds);
    assert_int_equal(eds.n_endpoints, 3);
    assert_int_equal(eds.endpoints[0].weight, 3);
    assert_int_equal(eds.endpoints[1].health_status, HEALTH_STATUS_UNHEALTHY);
    assert_int_equal(eds.endpoints[2].priority, 1);
    assert_int_equal(eds.endpoints[2].addr.ss.ss_family, AF_INET6);
    config_eds_free(&eds);
    /* A DiscoveryResponse in JSON, as Envoy's filesystem subscription reads it. */
    eds_ok("{\"version_info\": \"7\", \"resources\": ["
           "{\"@type\": \"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\","
           " \"cluster_name\": \"other\", \"endpoints\": []},"
           "{\"@type\": \"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\","
           " \"cluster_name\": \"svc\", \"endpoints\": [{\"lb_endpoints\": [{\"endpoint\":"
           " {\"address\": {\"socket_address\": {\"address\": \"10.0.0.9\","
           " \"port_value\": 8080}}}}]}]}]}",
           "svc", &eds);
    assert_int_equal(eds.n_endpoints, 1);
    assert_int_equal(eds.endpoints[0].addr.port, 8080);
    config_eds_free(&eds);
    /* An empty assignment is valid: the cluster has no hosts. */
    eds_ok("cluster_name: svc\n", "svc", &eds);
    assert_int_equal(eds.n_endpoints, 0);
    config_eds_free(&eds);

    eds_error("cluster_name: other\n", "svc",
              "eds.yaml:1:15: cluster_name: is \"other\", not \"svc\"");
    eds_error("resources: []\n", "svc", "no ClusterLoadAssignment for \"svc\"");
    eds_error("cluster_name: svc\nendpoints:\n- lb_endpoints:\n  - endpoint: {address: "
              "{socket_address: {address: db.local, port_value: 80}}}\n",
              "svc", "is a host name: EDS needs numeric addresses");
    eds_error("cluster_name: svc\nendpoints:\n- lb_endpoints:\n  - endpoint: {address: "
              "{socket_address: {address: 10.0.0.1, port_value: 0}}}\n",
              "svc",
              "eds.yaml:4:74: endpoints[0].lb_endpoints[0].endpoint.address.socket_address"
              ".port_value: 0 is out of range");
    eds_error("cluster_name: svc\nendpoints: [{lb_endpoints: [{load_balancing_weight: 0}]}]\n",
              "svc", "must be at least 1");
    eds_error("cluster_name: [svc\n", "svc", "eds.yaml:");
    eds_error("", "svc", "the file is empty");
    eds_error("{\"@type\": \"type.googleapis.com/envoy.config.cluster.v3.Cluster\", "
              "\"cluster_name\": \"svc\"}",
              "svc", "is not type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment");
}

#define HC(fields)                                                                                 \
    CONFIG("    health_checks:\n"                                                                  \
           "    - timeout: 1s\n"                                                                   \
           "      interval: 1s\n"                                                                  \
           "      unhealthy_threshold: 2\n"                                                        \
           "      healthy_threshold: 2\n" fields,                                                  \
           "", "")

static void test_health_and_balancing_errors(void **state)
{
    (void)state;
    expect_error(CONFIG("    maglev_lb_config: {table_size: 65536}\n", "", ""), 11, 36,
                 "table_size: 65536 is not a prime");
    expect_error(
        CONFIG("    ring_hash_lb_config: {minimum_ring_size: 10, maximum_ring_size: 5}\n", "", ""),
        3, 5, "minimum_ring_size 10 is above maximum_ring_size 5");
    expect_error(CONFIG("    common_lb_config: {healthy_panic_threshold: {value: 101}}\n", "", ""),
                 11, 57, "must be a number from 0 to 100");
    expect_error(HC(""), 12, 7, "needs exactly one of http_health_check or tcp_health_check");
    expect_error(HC("      http_health_check: {path: /h}\n      tcp_health_check: {}\n"), 12, 7,
                 "needs exactly one of");
    expect_error(HC("      http_health_check: {}\n"), 16, 26, "path: required field is missing");
    expect_error(HC("      http_health_check: {path: /h, expected_statuses: [{start: 300, end: "
                    "200}]}\n"),
                 16, 57, "must be a range [start, end)");
    expect_error(HC("      tcp_health_check: {send: {text: \"abc\"}}\n"), 16, 39,
                 "hex digit pairs");
    expect_error(
        CONFIG("    health_checks:\n    - {timeout: 1s, interval: 1s, healthy_threshold: 1,\n"
               "       unhealthy_threshold: 0, tcp_health_check: {}}\n",
               "", ""),
        13, 29, "out of range");
    expect_error(HC("      grpc_health_check: {}\n      tcp_health_check: {}\n"), 16, 7,
                 "grpc_health_check: not implemented by legate");
    expect_error(CONFIG("    health_checks:\n    - interval: 1s\n      unhealthy_threshold: 1\n"
                        "      healthy_threshold: 1\n      tcp_health_check: {}\n",
                        "", ""),
                 12, 7, "timeout: required field is missing");
    expect_error(CONFIG("    outlier_detection: {max_ejection_percent: 101}\n", "", ""), 11, 47,
                 "out of range (0-100)");
    expect_error(CONFIG("    outlier_detection: {failure_percentage_threshold: 85}\n", "", ""), 11,
                 25, "failure_percentage_threshold: not implemented by legate");
    expect_error(CONFIG("", "",
                        "              - match: {prefix: /}\n"
                        "                route:\n"
                        "                  cluster: c\n"
                        "                  hash_policy: [{header: {header_name: a}, cookie: "
                        "{name: b}}]\n"),
                 30, 33, "needs exactly one of header, cookie");
    expect_error(CONFIG("", "",
                        "              - match: {prefix: /}\n"
                        "                route:\n"
                        "                  cluster: c\n"
                        "                  hash_policy: [{cookie: {name: b, ttl: 1s}}]\n"),
                 30, 52, "ttl: not implemented by legate");
    expect_error(CONFIG("      - priority: 16\n        lb_endpoints: []\n", "", ""), 11, 19,
                 "out of range (0-15)");
}

static void test_unknown_enum_value(void **state)
{
    (void)state;
    expect_error(CONFIG("    lb_policy: FASTEST\n", "", ""), 11, 16,
                 "unknown value \"FASTEST\" (one of ROUND_ROBIN, LEAST_REQUEST");
}

static void test_bad_network_filter_type(void **state)
{
    (void)state;
    expect_error("static_resources:\n"
                 "  listeners:\n"
                 "  - name: tcp\n"
                 "    address:\n"
                 "      socket_address: {address: 0.0.0.0, port_value: 9000}\n"
                 "    filter_chains:\n"
                 "    - filters:\n"
                 "      - name: envoy.filters.network.tcp_proxy\n"
                 "        typed_config:\n"
                 "          \"@type\": "
                 "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n"
                 "          stat_prefix: tcp\n",
                 10, 20,
                 "filters[0].typed_config.@type: network filter "
                 "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy is "
                 "not implemented by legate");
    /* Without typed_config the name decides. */
    expect_error("static_resources:\n"
                 "  listeners:\n"
                 "  - name: tcp\n"
                 "    address: {socket_address: {address: 0.0.0.0, port_value: 9000}}\n"
                 "    filter_chains: [{filters: [{name: envoy.filters.network.tcp_proxy}]}]\n",
                 5, 39,
                 "filters[0].name: network filter envoy.filters.network.tcp_proxy is not "
                 "implemented by legate");
    /* The connection manager itself needs its typed_config. */
    expect_error("static_resources:\n"
                 "  listeners:\n"
                 "  - name: l\n"
                 "    address: {socket_address: {address: 0.0.0.0, port_value: 9000}}\n"
                 "    filter_chains: [{filters: [{name: " HCM_TYPE "}]}]\n",
                 5, 39, "network filter " HCM_TYPE " is not implemented");
    expect_error("static_resources:\n"
                 "  listeners:\n"
                 "  - name: l\n"
                 "    address: {socket_address: {address: 0.0.0.0, port_value: 9000}}\n"
                 "    filter_chains: [{filters: [{name: "
                 "envoy.filters.network.http_connection_manager}]}]\n",
                 5, 32, "filters[0].typed_config: required field is missing");
}

#define CL_TYPE                                                                                    \
    "type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit"

/* A listener whose filters are `filters` (YAML flow list items), HCM last. */
#define LIMIT_LISTENER(filters)                                                                    \
    "static_resources:\n"                                                                          \
    "  listeners:\n"                                                                               \
    "  - name: l\n"                                                                                \
    "    address: {socket_address: {address: 127.0.0.1, port_value: 9000}}\n"                      \
    "    filter_chains:\n"                                                                         \
    "    - filters:\n" filters

#define HCM_ITEM                                                                                   \
    "      - name: envoy.filters.network.http_connection_manager\n"                                \
    "        typed_config: {\"@type\": " HCM_TYPE ", stat_prefix: h, route_config: {}, "           \
    "http_filters: [{name: envoy.filters.http.router}]}\n"

static void test_connection_limits(void **state)
{
    (void)state;
    struct config cfg;
    load_ok(
        LIMIT_LISTENER(
            "      - name: envoy.filters.network.connection_limit\n"
            "        typed_config: {\"@type\": " CL_TYPE
            ", stat_prefix: cl, max_connections: 7}\n" HCM_ITEM) "overload_manager:\n"
                                                                 "  resource_monitors:\n"
                                                                 "  - name: "
                                                                 "envoy.resource_monitors.global_"
                                                                 "downstream_max_connections\n"
                                                                 "    typed_config:\n"
                                                                 "      \"@type\": "
                                                                 "type.googleapis.com/"
                                                                 "envoy.extensions.resource_"
                                                                 "monitors."
                                                                 "downstream_connections.v3."
                                                                 "DownstreamConnectionsConfig\n"
                                                                 "      "
                                                                 "max_active_downstream_"
                                                                 "connections: 1000\n",
        &cfg);
    assert_true(cfg.listeners[0].conn_limit.enabled);
    assert_string_equal(cfg.listeners[0].conn_limit.stat_prefix, "cl");
    assert_int_equal(cfg.listeners[0].conn_limit.max_connections, 7);
    assert_string_equal(cfg.listeners[0].hcm.stat_prefix, "h");
    assert_int_equal(cfg.max_active_downstream_connections, 1000);
    config_free(&cfg);
    /* Without either, no limit. */
    load_ok(LIMIT_LISTENER(HCM_ITEM), &cfg);
    assert_false(cfg.listeners[0].conn_limit.enabled);
    assert_int_equal(cfg.max_active_downstream_connections, 0);
    config_free(&cfg);
    /* The connection manager must come last (and the last must be one). */
    check_errors(LIMIT_LISTENER(HCM_ITEM "      - name: envoy.filters.network.connection_limit\n"
                                         "        typed_config: {\"@type\": " CL_TYPE
                                         ", stat_prefix: cl, max_connections: 7}\n"),
                 2, 7, 9,
                 "filters[0]: only one envoy.filters.network.connection_limit may come before "
                 "the envoy.filters.network.http_connection_manager");
    expect_error(LIMIT_LISTENER("      - name: envoy.filters.network.connection_limit\n"
                                "        typed_config: {\"@type\": " CL_TYPE
                                ", stat_prefix: cl, max_connections: 0}\n" HCM_ITEM),
                 8, 157, "filters[0]: typed_config.max_connections must be at least 1");
    expect_error(LIMIT_LISTENER("      - name: envoy.filters.network.connection_limit\n"
                                "        typed_config: {\"@type\": " CL_TYPE
                                ", max_connections: 3}\n" HCM_ITEM),
                 8, 23, "filters[0].typed_config.stat_prefix: required field is missing");
    expect_error(LIMIT_LISTENER("      - name: envoy.filters.network.connection_limit\n"
                                "        typed_config: {\"@type\": " CL_TYPE
                                ", stat_prefix: c, max_connections: 3, delay: 1s}\n" HCM_ITEM),
                 8, 159, "typed_config.delay: not implemented by legate");
    expect_error(LIMIT_LISTENER(HCM_ITEM) "overload_manager:\n"
                                          "  resource_monitors:\n"
                                          "  - name: envoy.resource_monitors.fixed_heap\n"
                                          "    typed_config: {\"@type\": type.googleapis.com/"
                                          "envoy.extensions.resource_monitors.fixed_heap.v3."
                                          "FixedHeapConfig, max_heap_size_bytes: 1}\n",
                 12, 29,
                 "resource monitor type.googleapis.com/envoy.extensions.resource_"
                 "monitors.fixed_heap.v3.FixedHeapConfig is not implemented by legate");
}

static void test_http_filters(void **state)
{
    (void)state;
    /* No http_filters at all: no router. */
    expect_error(HCM_CONFIG(HCM_BASICS), 10, 11,
                 "typed_config.http_filters: required field is missing");
    expect_error(HCM_CONFIG(HCM_BASICS "          http_filters: []\n"), 13, 25,
                 "http_filters: must not be empty: the last http filter must be "
                 "envoy.filters.http.router");
    /* An unimplemented filter, and so no router last: two errors. */
    const char *cors =
        HCM_CONFIG(HCM_BASICS "          http_filters:\n"
                              "          - name: envoy.filters.http.cors\n"
                              "            typed_config:\n"
                              "              \"@type\": "
                              "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors\n");
    check_errors(cors, 2, 16, 24,
                 "http_filters[0].typed_config.@type: http filter "
                 "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors is not "
                 "implemented by legate");
    check_errors(cors, 2, 14, 11,
                 "http_filters: the last http filter must be envoy.filters.http.router");
    expect_error(HCM_CONFIG(HCM_BASICS "          http_filters:\n"
                                       "          - name: envoy.filters.http.router\n"
                                       "          - name: envoy.filters.http.router\n"),
                 14, 13, "http_filters[0]: envoy.filters.http.router must be the last http filter");
    expect_error(HCM_CONFIG(HCM_BASICS "          http_filters:\n"
                                       "          - name: envoy.filters.http.router\n"
                                       "            typed_config: {\"@type\": type.googleapis.com/"
                                       "envoy.extensions.filters.http.router.v3.Router,"
                                       " suppress_envoy_headers: true}\n"),
                 15, 105, "typed_config.suppress_envoy_headers: not implemented by legate");
}

static void test_missing_stat_prefix_and_rds(void **state)
{
    (void)state;
    expect_error(HCM_CONFIG("          route_config: {}\n"
                            "          http_filters: [{name: envoy.filters.http.router}]\n"),
                 10, 11, "typed_config.stat_prefix: required field is missing");
    expect_error(HCM_CONFIG("          stat_prefix: \"\"\n"
                            "          route_config: {}\n"
                            "          http_filters: [{name: envoy.filters.http.router}]\n"),
                 11, 24, "typed_config.stat_prefix: must not be empty");
    const char *rds = HCM_CONFIG("          stat_prefix: s\n"
                                 "          rds: {route_config_name: r}\n"
                                 "          http_filters: [{name: envoy.filters.http.router}]\n");
    check_errors(rds, 2, 12, 11, "typed_config.rds: not implemented by legate");
    check_errors(rds, 2, 10, 11, "typed_config.route_config: required field is missing");
}

static void test_access_log(void **state)
{
    (void)state;
    expect_error(HCM_CONFIG(HCM_BASICS
                            "          http_filters: [{name: envoy.filters.http.router}]\n"
                            "          access_log:\n"
                            "          - name: envoy.access_loggers.file\n"
                            "            typed_config: {\"@type\": type.googleapis.com/"
                            "envoy.extensions.access_loggers.file.v3.FileAccessLog}\n"),
                 16, 27, "access_log[0].typed_config.path: required field is missing");
    expect_error(HCM_CONFIG(HCM_BASICS
                            "          http_filters: [{name: envoy.filters.http.router}]\n"
                            "          access_log:\n"
                            "          - name: envoy.access_loggers.stdout\n"
                            "            typed_config:\n"
                            "              \"@type\": type.googleapis.com/"
                            "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog\n"),
                 17, 24,
                 "access_log[0].typed_config.@type: access logger "
                 "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog "
                 "is not implemented by legate");
}

#define PROTO_OPTS(key, type, rest)                                                                \
    "static_resources:\n"                                                                          \
    "  clusters:\n"                                                                                \
    "  - name: c\n"                                                                                \
    "    typed_extension_protocol_options:\n"                                                      \
    "      " key ":\n"                                                                             \
    "        \"@type\": " type "\n" rest

#define HTTP_OPTS "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
#define HTTP_OPTS_TYPE "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

static void test_upstream_protocol_options(void **state)
{
    (void)state;
    struct config cfg;
    load_ok(PROTO_OPTS(HTTP_OPTS, HTTP_OPTS_TYPE,
                       "        common_http_protocol_options: {idle_timeout: 2.5s}\n"
                       "        explicit_http_config: {http_protocol_options: {}}\n"),
            &cfg);
    assert_int_equal(cfg.clusters[0].idle_timeout_ms, 2500);
    config_free(&cfg);
    load_ok("static_resources:\n  clusters:\n  - name: c\n", &cfg);
    assert_int_equal(cfg.clusters[0].idle_timeout_ms, 3600000); /* Envoy's default, 1 h */
    config_free(&cfg);

    expect_error(PROTO_OPTS("envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions", "x", ""), 5, 7,
                 "protocol options envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions are "
                 "not implemented by legate");
    expect_error(
        PROTO_OPTS(HTTP_OPTS, "type.googleapis.com/some.Other", ""), 6, 18,
        "HttpProtocolOptions.@type: protocol options type.googleapis.com/some.Other is not "
        "implemented");
    expect_error(PROTO_OPTS(HTTP_OPTS, HTTP_OPTS_TYPE,
                            "        explicit_http_config: {http2_protocol_options: {}}\n"),
                 7, 32, "explicit_http_config.http2_protocol_options: not implemented by legate");
    expect_error(PROTO_OPTS(HTTP_OPTS, HTTP_OPTS_TYPE,
                            "        common_http_protocol_options: {idle_timeout: 5}\n"),
                 7, 54, "idle_timeout: must be a duration");
}

static void test_unknown_cluster(void **state)
{
    (void)state;
    expect_error(CONFIG("", "",
                        "              - match: {prefix: /}\n"
                        "                route: {cluster: nope}\n"),
                 28, 34, "routes[0].route.cluster: unknown cluster \"nope\"");
}

static void test_duplicate_listener_address(void **state)
{
    (void)state;
    expect_error("static_resources:\n  listeners:\n" LISTENER("a", "127.0.0.1", "80")
                     LISTENER("b", "127.0.0.1", "80"),
                 16, 23,
                 "static_resources.listeners[1].address.socket_address: 127.0.0.1:80 is already "
                 "used by listener \"a\"");
    expect_error("admin:\n"
                 "  address:\n"
                 "    socket_address: {address: \"::1\", port_value: 9901}\n"
                 "static_resources:\n"
                 "  listeners:\n" LISTENER("a", "\"::1\"", "9901"),
                 8, 23,
                 "listeners[0].address.socket_address: [::1]:9901 is already used by the "
                 "admin interface");
}

static void test_duplicate_names(void **state)
{
    (void)state;
    expect_error("static_resources:\n  listeners:\n" LISTENER("a", "127.0.0.1", "80")
                     LISTENER("a", "127.0.0.1", "81"),
                 14, 11, "listeners[1].name: duplicate listener name \"a\"");
    expect_error(CONFIG("  - name: c\n", "", ""), 11, 11,
                 "static_resources.clusters[1].name: duplicate cluster name \"c\"");
    expect_error(CONFIG("", "",
                        "            - name: v\n"
                        "              domains: [a.com]\n"),
                 27, 21, "virtual_hosts[1].name: duplicate virtual host name \"v\"");
    /* The same key twice in one map. */
    expect_error(CONFIG("    name: d\n", "", ""), 11, 5, "clusters[0].name: duplicate field");
}

static void test_port_out_of_range(void **state)
{
    (void)state;
    expect_error("static_resources:\n  listeners:\n" LISTENER("a", "127.0.0.1", "70000"), 5, 56,
                 "t.yaml:5:56: static_resources.listeners[0].address.socket_address.port_value: "
                 "70000 is out of range (0-65535)");
    /* An upstream endpoint needs a real port. */
    expect_error(CONFIG(ENDPOINT_CLUSTER("d", "10.0.0.1", "0"), "", ""), 18, 63,
                 "lb_endpoints[0].endpoint.address.socket_address.port_value: 0 is out of range "
                 "(1-65535)");
    expect_error("static_resources:\n  clusters:\n" ENDPOINT_CLUSTER("d", "10.0.0.1", "-1"), 10, 63,
                 "port_value: -1 is out of range (1-65535)");
    expect_error("static_resources:\n  clusters:\n" ENDPOINT_CLUSTER("d", "10.0.0.1", "http"), 10,
                 63, "port_value: expected an integer, got \"http\"");
}

static void test_bad_ip(void **state)
{
    (void)state;
    expect_error(CONFIG(ENDPOINT_CLUSTER("d", "backend.local", "80"), "", ""), 18, 41,
                 "clusters[1]: endpoint address \"backend.local\" is a host name: a STATIC "
                 "cluster needs numeric addresses");
    expect_error(CONFIG(ENDPOINT_CLUSTER("d", "bad_name!", "80"), "", ""), 18, 41,
                 "socket_address.address: \"bad_name!\" must be a numeric IP address or a "
                 "host name");
    expect_error("static_resources:\n  listeners:\n" LISTENER("a", "1.2.3", "80"), 5, 33,
                 "listeners[0].address.socket_address.address: \"1.2.3\" must be a numeric IP "
                 "address");
    expect_error(
        "static_resources:\n  clusters:\n" ENDPOINT_CLUSTER(
            "d", "10.0.0.1",
            "80") "    connect_timeout: 1s\n"
                  "  - name: e\n"
                  "    load_assignment:\n"
                  "      cluster_name: e\n"
                  "      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: "
                  "{port_value: 80}}}}]}]\n",
        15, 73, "socket_address.address: required field is missing");
}

static void test_bad_duration(void **state)
{
    static const char template[] = CONFIG("%s", "", ""); /* the hole filled by snprintf */
    static const char *const bad[] = {"5", "5ms",  "1.s", ".5s", "1.0000000001s",
                                      "s", "1e3s", "5 s", "true"};
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char extra[64], needle[96];
        snprintf(extra, sizeof extra, "    connect_timeout: %s\n", bad[i]);
        snprintf(needle, sizeof needle,
                 "clusters[0].connect_timeout: must be a duration like \"5s\", got \"%s\"", bad[i]);
        char yaml[1200];
        snprintf(yaml, sizeof yaml, template, extra);
        expect_error(yaml, 11, 22, needle);
    }
    expect_error(CONFIG("    connect_timeout: -1s\n", "", ""), 11, 22, "must not be negative");
    expect_error(CONFIG("    connect_timeout: 0s\n", "", ""), 11, 22, "must be greater than 0s");
    expect_error(CONFIG("    connect_timeout: {seconds: 5}\n", "", ""), 11, 22,
                 "expected a duration like \"5s\", got a map");
}

static void test_route_match(void **state)
{
    (void)state;
    expect_error(CONFIG("", "",
                        "              - match: {prefix: /, path: /x}\n"
                        "                direct_response: {status: 200}\n"),
                 27, 24, "routes[0].match: has both prefix and path; exactly one is allowed");
    expect_error(CONFIG("", "",
                        "              - match: {}\n"
                        "                direct_response: {status: 200}\n"),
                 27, 24, "routes[0].match: needs one of prefix or path");
    expect_error(CONFIG("", "", "              - direct_response: {status: 200}\n"), 27, 17,
                 "routes[0].match: required field is missing");
    expect_error(CONFIG("", "",
                        "              - match: {prefix: api}\n"
                        "                direct_response: {status: 200}\n"),
                 27, 33, "routes[0].match.prefix: must start with \"/\"");
    expect_error(CONFIG("", "",
                        "              - match: {path: \"\"}\n"
                        "                direct_response: {status: 200}\n"),
                 27, 31, "routes[0].match.path: must start with \"/\"");
}

static void test_route_action(void **state)
{
    (void)state;
    expect_error(CONFIG("", "", "              - match: {prefix: /}\n"), 27, 17,
                 "virtual_hosts[0].routes[0]: needs an action: route or direct_response");
    expect_error(CONFIG("", "",
                        "              - match: {prefix: /}\n"
                        "                route: {cluster: c}\n"
                        "                direct_response: {status: 200}\n"),
                 27, 17, "routes[0]: has both route and direct_response; exactly one is allowed");
    expect_error(CONFIG("", "",
                        "              - match: {prefix: /}\n"
                        "                direct_response: {status: 700}\n"),
                 28, 43, "routes[0].direct_response.status: 700 is out of range (100-599)");
    expect_error(CONFIG("", "",
                        "              - match: {prefix: /}\n"
                        "                direct_response: {status: 200, body: {}}\n"),
                 28, 54, "direct_response.body.inline_string: required field is missing");
    expect_error(CONFIG("", "",
                        "              - match: {prefix: /}\n"
                        "                route: {timeout: 1s}\n"),
                 28, 24, "routes[0].route.cluster: required field is missing");
}

static void test_domains(void **state)
{
    (void)state;
    expect_error(
        CONFIG("", "",
               "            - name: w\n"
               "              domains: [\"a.com\", \"*\"]\n"),
        28, 34, "virtual_hosts[1].domains[1]: duplicate domain \"*\" (also in virtual host \"v\")");
    expect_error(CONFIG("", "",
                        "            - name: w\n"
                        "              domains: [\"Foo.com\", \"foo.COM\"]\n"),
                 28, 36, "virtual_hosts[1].domains[1]: duplicate domain \"foo.com\"");
    expect_error(CONFIG("", "",
                        "            - name: w\n"
                        "              domains: []\n"),
                 28, 24, "virtual_hosts[1].domains: must list at least one domain");
    expect_error(CONFIG("", "", "            - name: w\n"), 27, 15,
                 "virtual_hosts[1].domains: required field is missing");
    expect_error(CONFIG("", "",
                        "            - name: w\n"
                        "              domains: [\"\"]\n"),
                 28, 25, "virtual_hosts[1].domains[0]: must not be empty");
}

static void test_wrong_node_type(void **state)
{
    (void)state;
    expect_error("static_resources:\n  listeners: {name: x}\n", 2, 14,
                 "static_resources.listeners: expected a list, got a map");
    expect_error("admin:\n  address: 127.0.0.1\n", 2, 12,
                 "admin.address: expected a map, got \"127.0.0.1\"");
    expect_error("- admin\n", 1, 1, "t.yaml:1:1: (root): expected a map, got a list");
    expect_error(CONFIG("", "",
                        "            - name: w\n"
                        "              domains: [[a.com]]\n"),
                 28, 25, "domains[0]: expected a string, got a list");
    expect_error(HCM_CONFIG(HCM_BASICS
                            "          http_filters: [{name: envoy.filters.http.router}]\n"
                            "          generate_request_id: yes\n"),
                 14, 32, "generate_request_id: expected true or false, got \"yes\"");
    expect_error(CONFIG("    circuit_breakers: {thresholds: [{max_connections: abc}]}\n", "", ""),
                 11, 55, "thresholds[0].max_connections: expected an integer, got \"abc\"");
}

static void test_yaml_syntax_and_empty(void **state)
{
    (void)state;
    expect_error("static_resources:\n  listeners: x: y\n", 2, 15,
                 "t.yaml:2:15: (yaml): mapping values are not allowed in this context");
    expect_error("admin: {address: [1, 2}\n", 1, 23, "(yaml): did not find expected ',' or ']'");
    expect_error("", 1, 1, "t.yaml:1:1: (root): the configuration is empty");
    expect_error("# nothing but a comment\n", 1, 1, "the configuration is empty");
    expect_error("static_resources: {}\n---\nadmin: {}\n", 3, 1,
                 "(root): only one YAML document is allowed");
}

/* Every error is collected, in file order, even when found out of order. */
static void test_all_errors_collected(void **state)
{
    struct config cfg;
    struct config_errors errs;
    (void)state;

    const char *yaml = CONFIG("    connect_timeout: 5\n", "",
                              "              - match: {prefix: /}\n"
                              "                direct_response: {status: 700}\n");
    assert_int_equal(load(yaml, &cfg, &errs), -1);
    if (errs.n != 2)
        print_errors(&errs);
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.msgs[0], "t.yaml:11:22: static_resources.clusters[0].connect_timeout: "
                                      "must be a duration like \"5s\", got \"5\"");
    assert_string_equal(errs.msgs[1],
                        "t.yaml:29:43: static_resources.listeners[0].filter_chains[0].filters[0]."
                        "typed_config.route_config.virtual_hosts[0].routes[0].direct_response."
                        "status: 700 is out of range (100-599)");
    config_errors_free(&errs);
    assert_null(errs.msgs);
    assert_int_equal(errs.n, 0);

    /* An unknown cluster is found after the walk but sorts by its position. */
    yaml = CONFIG("", "",
                  "              - match: {prefix: /}\n"
                  "                route: {cluster: nope}\n"
                  "            - name: w\n"
                  "              domains: []\n");
    assert_int_equal(load(yaml, &cfg, &errs), -1);
    assert_int_equal(errs.n, 2);
    assert_true(has_error(&errs, 28, 34, "unknown cluster \"nope\""));
    assert_non_null(strstr(errs.msgs[0], "unknown cluster"));
    assert_non_null(strstr(errs.msgs[1], "must list at least one domain"));
    config_errors_free(&errs);
}

static void test_load_file_errors(void **state)
{
    struct config cfg;
    struct config_errors errs;
    (void)state;

    assert_int_equal(config_load_file("tests/unit/no-such-file.yaml", &cfg, &errs), -1);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0], "tests/unit/no-such-file.yaml:1:1: (root): cannot read the "
                                      "file: No such file or directory");
    config_errors_free(&errs);
    assert_null(cfg.source);

    /* The source name given is the one errors are reported against. */
    assert_int_equal(config_load_string("my.yaml", "bogus: 1\n", 9, &cfg, &errs), -1);
    assert_string_equal(errs.msgs[0], "my.yaml:1:1: bogus: unknown field");
    config_errors_free(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_config),
        cmocka_unit_test(test_quickstart_matches_default),
        cmocka_unit_test(test_multi_listener_multi_cluster),
        cmocka_unit_test(test_minimal_and_json),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_unknown_field),
        cmocka_unit_test(test_not_implemented_field),
        cmocka_unit_test(test_unknown_enum_value),
        cmocka_unit_test(test_bad_network_filter_type),
        cmocka_unit_test(test_connection_limits),
        cmocka_unit_test(test_http_filters),
        cmocka_unit_test(test_missing_stat_prefix_and_rds),
        cmocka_unit_test(test_access_log),
        cmocka_unit_test(test_upstream_protocol_options),
        cmocka_unit_test(test_unknown_cluster),
        cmocka_unit_test(test_duplicate_listener_address),
        cmocka_unit_test(test_duplicate_names),
        cmocka_unit_test(test_port_out_of_range),
        cmocka_unit_test(test_bad_ip),
        cmocka_unit_test(test_bad_duration),
        cmocka_unit_test(test_route_match),
        cmocka_unit_test(test_route_action),
        cmocka_unit_test(test_domains),
        cmocka_unit_test(test_wrong_node_type),
        cmocka_unit_test(test_health_and_balancing_options),
        cmocka_unit_test(test_discovery_options),
        cmocka_unit_test(test_eds_files),
        cmocka_unit_test(test_health_and_balancing_errors),
        cmocka_unit_test(test_yaml_syntax_and_empty),
        cmocka_unit_test(test_all_errors_collected),
        cmocka_unit_test(test_load_file_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* libFuzzer: the HTTP/1.1 request path. Bytes are fed to the request parser
 * in splits the input chooses, pipelined requests included; every head that
 * parses is routed as a worker routes it (virtual host by authority, route by
 * path, prefix rewrite) against a fixed configuration. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "tests/fuzz/h1_feed.h"
#include "worker/router.h"

static struct config cfg;
static const struct cfg_route_config *routes;

static const char config_yaml[] =
    "static_resources:\n"
    "  listeners:\n"
    "  - name: main\n"
    "    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}\n"
    "    filter_chains:\n"
    "    - filters:\n"
    "      - name: envoy.filters.network.http_connection_manager\n"
    "        typed_config:\n"
    "          \"@type\": type.googleapis.com/envoy.extensions.filters.network."
    "http_connection_manager.v3.HttpConnectionManager\n"
    "          stat_prefix: f\n"
    "          route_config:\n"
    "            virtual_hosts:\n"
    "            - name: exact\n"
    "              domains: [\"api.example.com\", \"*.wild.example\", \"prefix.*\"]\n"
    "              routes:\n"
    "              - match: {path: \"/exact\"}\n"
    "                direct_response: {status: 204}\n"
    "              - match: {prefix: \"/v1/\"}\n"
    "                route: {cluster: up, prefix_rewrite: \"/\"}\n"
    "            - name: all\n"
    "              domains: [\"*\"]\n"
    "              routes:\n"
    "              - match: {prefix: \"/static\"}\n"
    "                route: {cluster: up, prefix_rewrite: \"/s/t/a/t/i/c\"}\n"
    "              - match: {prefix: \"/\"}\n"
    "                route: {cluster: up}\n"
    "          http_filters:\n"
    "          - name: envoy.filters.http.router\n"
    "            typed_config:\n"
    "              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n"
    "  clusters:\n"
    "  - name: up\n"
    "    connect_timeout: 1s\n"
    "    load_assignment:\n"
    "      cluster_name: up\n"
    "      endpoints:\n"
    "      - lb_endpoints:\n"
    "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    struct config_errors errs = {0};
    if (config_load_string("fuzz", config_yaml, sizeof(config_yaml) - 1, &cfg, &errs) != 0)
        abort();
    routes = &cfg.listeners[0].hcm.routes;
    return 0;
}

/* What the worker does with a head: pick the virtual host and route. */
static void route(const struct h1_head *h)
{
    const char *host = h->authority != NULL ? h->authority : "";
    const struct cfg_vhost *vh =
        router_match_vhost(routes, host, h->authority != NULL ? h->authority_len : 0);
    if (vh == NULL)
        return;
    const struct cfg_route *r = router_match_route(vh, h->path, h->path_len);
    if (r != NULL) {
        char out[512];
        router_rewrite_path(r, h->path, h->path_len, out, sizeof(out));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    /* The first two bytes choose where the rest is split. */
    struct fuzz_h1 f = {.on_head = route};
    f.p = h1_parser_new(H1_REQUEST, &fuzz_h1_callbacks, &f);
    if (f.p == NULL)
        return 0;
    fuzz_h1_feed(&f, (uint32_t)data[0] << 8 | data[1], data + 2, size - 2);
    h1_parser_error_status(f.p);
    h1_parser_free(f.p);
    return 0;
}

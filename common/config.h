/* The configuration model: a subset of Envoy's v3 bootstrap, loaded from YAML.
 *
 * The supervisor loads and validates it once; every child inherits the result
 * copy-on-write across fork(), so nothing here is ever shared mutably. */
#ifndef LEGATE_COMMON_CONFIG_H
#define LEGATE_COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Where a value came from in its file, for error messages. */
struct cfg_mark {
    int line; /* 1-based */
    int col;  /* 1-based */
};

/* A resolved socket address (numeric IPv4 or IPv6 only: no DNS at config time). */
struct cfg_addr {
    char *address;              /* as written, e.g. "127.0.0.1" or "::1" */
    uint16_t port;              /* port_value */
    struct sockaddr_storage ss; /* ready for bind()/connect() */
    socklen_t sslen;            /* length of ss */
    struct cfg_mark mark;       /* where socket_address was written */
};

enum cfg_route_match {
    ROUTE_MATCH_PREFIX, /* match.prefix */
    ROUTE_MATCH_PATH,   /* match.path (exact) */
};

enum cfg_route_action {
    ROUTE_ACTION_CLUSTER, /* route: {cluster: ...} */
    ROUTE_ACTION_DIRECT,  /* direct_response: {...} */
};

struct cfg_route {
    enum cfg_route_match match; /* how `match_value` is compared with the path */
    char *match_value;          /* the prefix or exact path */
    size_t match_len;           /* strlen(match_value) */
    enum cfg_route_action action;
    char *cluster;                       /* ROUTE_ACTION_CLUSTER: the cluster's name */
    size_t cluster_index;                /* index into cfg->clusters, resolved at load */
    uint64_t timeout_ms;                 /* route.timeout; default 15000; 0 disables */
    char *prefix_rewrite;                /* route.prefix_rewrite, or NULL */
    struct cfg_hash_policy *hash_policy; /* route.hash_policy[] in order */
    size_t n_hash_policy;
    int direct_status;      /* direct_response.status (100..599) */
    char *direct_body;      /* direct_response.body.inline_string, or NULL */
    size_t direct_body_len; /* its length */
    struct cfg_mark mark;   /* where the route was written */
};

struct cfg_vhost {
    char *name;     /* virtual_hosts[].name */
    char **domains; /* lower-cased, as written otherwise ("*", "*.x", "x.*", "a.b") */
    size_t n_domains;
    struct cfg_route *routes; /* first match wins */
    size_t n_routes;
};

struct cfg_route_config {
    char *name;               /* route_config.name (may be NULL) */
    struct cfg_vhost *vhosts; /* virtual_hosts[] in order */
    size_t n_vhosts;
};

struct cfg_access_log {
    char *path;   /* envoy.access_loggers.file path ("/dev/stdout" allowed) */
    char *format; /* log_format.text_format_source.inline_string, or NULL for Envoy's default */
    int fd;       /* opened by the supervisor (O_APPEND) before fork; -1 until then */
};

enum cfg_codec {
    CODEC_AUTO,  /* codec_type: AUTO (default) */
    CODEC_HTTP1, /* codec_type: HTTP1 */
};

/* envoy.filters.network.http_connection_manager */
struct cfg_hcm {
    char *stat_prefix;              /* required, as in Envoy */
    enum cfg_codec codec;           /* codec_type */
    bool generate_request_id;       /* default true */
    struct cfg_route_config routes; /* route_config (inline; RDS is not supported) */
    struct cfg_access_log *access_logs;
    size_t n_access_logs;
    uint64_t request_headers_timeout_ms; /* request_headers_timeout; 0 = none (Envoy default) */
    uint64_t stream_idle_timeout_ms;     /* stream_idle_timeout; default 300000 */
    uint64_t request_timeout_ms;         /* request_timeout: whole request received; 0: none */
    uint64_t idle_timeout_ms; /* common_http_protocol_options.idle_timeout; default 3600000 */
};

/* envoy.filters.network.connection_limit, before the connection manager: at
 * most max_connections open on this listener, counted across every worker. */
struct cfg_conn_limit {
    bool enabled;
    char *stat_prefix;        /* connection_limit.<stat_prefix>.* */
    uint32_t max_connections; /* at least 1 */
};

struct cfg_listener {
    char *name;           /* listeners[].name (Envoy requires unique names) */
    struct cfg_addr addr; /* address.socket_address */
    struct cfg_hcm hcm;   /* the http_connection_manager, last of filter_chains[0].filters */
    struct cfg_conn_limit conn_limit;
};

enum cfg_cluster_type {
    CLUSTER_STATIC,      /* type: STATIC (default) */
    CLUSTER_STRICT_DNS,  /* every address each name resolves to is a host */
    CLUSTER_LOGICAL_DNS, /* one host: the first address its one name resolves to */
    CLUSTER_EDS,         /* hosts from a ClusterLoadAssignment file (eds_cluster_config) */
};

/* dns_lookup_family */
enum cfg_dns_family {
    DNS_AUTO, /* IPv6, else IPv4 (Envoy's AUTO) */
    DNS_V4_ONLY,
    DNS_V6_ONLY,
    DNS_V4_PREFERRED, /* IPv4, else IPv6 */
    DNS_ALL,          /* both */
};

enum cfg_lb_policy {
    LB_ROUND_ROBIN, /* lb_policy: ROUND_ROBIN (default) */
    LB_LEAST_REQUEST,
    LB_RANDOM,
    LB_RING_HASH,
    LB_MAGLEV,
};

/* lb_endpoints[].health_status, as EDS sends it (config.core.v3.HealthStatus). */
enum cfg_health_status {
    HEALTH_STATUS_UNKNOWN, /* default: healthy unless a check says otherwise */
    HEALTH_STATUS_HEALTHY,
    HEALTH_STATUS_UNHEALTHY,
    HEALTH_STATUS_DRAINING,
    HEALTH_STATUS_TIMEOUT,
    HEALTH_STATUS_DEGRADED,
};

struct cfg_endpoint {
    struct cfg_addr addr;                 /* lb_endpoints[].endpoint.address.socket_address */
    bool hostname;                        /* addr.address is a DNS name (addr.ss unset) */
    uint32_t weight;                      /* lb_endpoints[].load_balancing_weight (default 1) */
    uint32_t priority;                    /* its locality's priority (default 0) */
    enum cfg_health_status health_status; /* lb_endpoints[].health_status */
};

/* health_checks[]: one active check per cluster (Envoy allows several; legate one). */
enum cfg_hc_kind {
    HC_HTTP, /* http_health_check */
    HC_TCP,  /* tcp_health_check */
};

struct cfg_header {
    char *key;
    char *value;
};

/* [start, end), as Envoy's type.v3.Int64Range. */
struct cfg_status_range {
    uint32_t start;
    uint32_t end;
};

struct cfg_health_check {
    bool enabled;
    enum cfg_hc_kind kind;
    uint64_t timeout_ms;              /* required */
    uint64_t interval_ms;             /* required */
    uint64_t interval_jitter_ms;      /* added at random to each interval (default 0) */
    uint32_t interval_jitter_percent; /* ... and this percentage of it (default 0) */
    uint32_t unhealthy_threshold;     /* required */
    uint32_t healthy_threshold;       /* required */
    uint64_t no_traffic_interval_ms;  /* a host no request went to: default 60 s */
    uint64_t unhealthy_interval_ms;   /* an unhealthy host: default interval */
    uint64_t
        unhealthy_edge_interval_ms; /* just after turning unhealthy: default unhealthy_interval */
    uint64_t healthy_edge_interval_ms; /* just after turning healthy: default interval */
    bool reuse_connection;             /* keep the connection between checks (default true) */
    /* HC_HTTP */
    char *path;                                 /* required */
    char *host;                                 /* default: the cluster's name */
    struct cfg_status_range *expected_statuses; /* default [200, 201) */
    size_t n_expected_statuses;
    struct cfg_header *headers; /* request_headers_to_add */
    size_t n_headers;
    /* HC_TCP: bytes sent on connect, and the pieces the answer must contain, in order */
    uint8_t *send;
    size_t send_len;
    uint8_t **receive;
    size_t *receive_len;
    size_t n_receive;
};

/* outlier_detection, with Envoy's defaults. Percentages are 0..100;
 * success_rate_stdev_factor is in thousandths (1900: 1.9). */
struct cfg_outlier {
    bool enabled;
    uint32_t consecutive_5xx;                            /* 5 */
    uint32_t consecutive_gateway_failure;                /* 5 */
    uint32_t consecutive_local_origin_failure;           /* 5 */
    uint64_t interval_ms;                                /* 10 s */
    uint64_t base_ejection_time_ms;                      /* 30 s */
    uint64_t max_ejection_time_ms;                       /* 300 s */
    uint32_t max_ejection_percent;                       /* 10 */
    uint32_t enforcing_consecutive_5xx;                  /* 100 */
    uint32_t enforcing_consecutive_gateway_failure;      /* 0 */
    uint32_t enforcing_consecutive_local_origin_failure; /* 100 */
    uint32_t enforcing_success_rate;                     /* 100 */
    uint32_t success_rate_minimum_hosts;                 /* 5 */
    uint32_t success_rate_request_volume;                /* 100 */
    uint32_t success_rate_stdev_factor;                  /* 1900 */
    bool split_external_local_origin_errors;             /* false */
};

/* A route's hash_policy[] entry: what a hashing balancer hashes. */
enum cfg_hash_kind {
    HASH_HEADER,          /* header.header_name */
    HASH_COOKIE,          /* cookie.name (an existing cookie; legate does not set one) */
    HASH_SOURCE_IP,       /* connection_properties.source_ip: true */
    HASH_QUERY_PARAMETER, /* query_parameter.name */
};

struct cfg_hash_policy {
    enum cfg_hash_kind kind;
    char *name; /* header (lower-cased), cookie or parameter name */
    size_t name_len;
    bool terminal; /* a value found here ends the list */
};

/* circuit_breakers.thresholds[] with priority DEFAULT (Envoy's defaults: 1024 each, retries 3). */
struct cfg_circuit_breakers {
    uint32_t max_connections;
    uint32_t max_pending_requests;
    uint32_t max_requests;
    uint32_t max_retries;
};

struct cfg_cluster {
    char *name;
    enum cfg_cluster_type type;
    enum cfg_lb_policy lb_policy;
    uint32_t choice_count; /* least_request_lb_config.choice_count (default 2) */
    /* {round_robin,least_request}_lb_config.slow_start_config: a host added
     * after start ramps up to its weight over the window (0: off) */
    uint64_t slow_start_window_ms;
    double slow_start_aggression;   /* aggression.default_value (1.0: linear) */
    double slow_start_min_weight;   /* min_weight_percent.value (10) */
    uint64_t connect_timeout_ms;    /* default 5000 */
    struct cfg_endpoint *endpoints; /* flattened over load_assignment.endpoints[].lb_endpoints[] */
    size_t n_endpoints;
    struct cfg_circuit_breakers cb;
    struct cfg_health_check hc; /* health_checks[0] */
    struct cfg_outlier outlier;
    double healthy_panic_threshold; /* common_lb_config.healthy_panic_threshold, percent (50) */
    uint64_t ring_min_size;         /* ring_hash_lb_config.minimum_ring_size (1024) */
    uint64_t ring_max_size;         /* ring_hash_lb_config.maximum_ring_size (8M) */
    bool ring_murmur;               /* ring_hash_lb_config.hash_function MURMUR_HASH_2 */
    uint64_t maglev_table_size;     /* maglev_lb_config.table_size, a prime (65537) */
    uint32_t max_priority;          /* the highest locality priority used */
    /* STRICT_DNS, LOGICAL_DNS */
    uint64_t dns_refresh_rate_ms;   /* default 5000 */
    bool respect_dns_ttl;           /* refresh at the records' TTL instead */
    enum cfg_dns_family dns_family; /* dns_lookup_family */
    struct cfg_addr *dns_resolvers; /* dns_resolvers, or typed_dns_resolver_config's */
    size_t n_dns_resolvers;
    /* EDS: eds_cluster_config.eds_config.path_config_source.path (or .path) */
    char *eds_path;
    char *eds_watched_dir;    /* path_config_source.watched_directory.path, or NULL */
    char *eds_service_name;   /* eds_cluster_config.service_name (default: the cluster's name) */
    uint64_t idle_timeout_ms; /* pooled connections: typed_extension_protocol_options
                                 HttpProtocolOptions common_http_protocol_options.idle_timeout;
                                 default 3600000 (Envoy's 1 h); 0 disables */
    struct cfg_mark mark;
};

struct cfg_admin {
    bool enabled;         /* an admin block with an address was given */
    struct cfg_addr addr; /* admin.address.socket_address */
};

struct config {
    char *source; /* the file name (or "<embedded>") errors are reported against */
    char *text;   /* the YAML exactly as validated: children re-parse this, not the file */
    size_t text_len;
    struct cfg_admin admin;
    struct cfg_listener *listeners;
    size_t n_listeners;
    struct cfg_cluster *clusters;
    size_t n_clusters;
    /* overload_manager's envoy.resource_monitors.global_downstream_max_connections:
     * downstream connections open at once, all listeners and workers; 0: no limit */
    uint32_t max_active_downstream_connections;
};

/* Every problem found while loading, each already formatted as
 * "FILE:LINE:COL: FIELD.PATH: what is wrong". Loading collects them all. */
struct config_errors {
    char **msgs;
    size_t n;
};

/* Load and validate. Return 0 on success; -1 with `errs` filled otherwise
 * (and `cfg` left freed). */
int config_load_file(const char *path, struct config *cfg, struct config_errors *errs);
int config_load_string(const char *source_name, const char *yaml, size_t len, struct config *cfg,
                       struct config_errors *errs);

void config_free(struct config *cfg);
void config_errors_free(struct config_errors *errs);

/* The embedded default configuration used when no -c is given (see README). */
extern const char config_default_yaml[];

/* An EDS cluster's hosts, from its file: a ClusterLoadAssignment, or a
 * DiscoveryResponse whose resources hold one, for `service` (the cluster's
 * eds_cluster_config.service_name, else its name). Numeric addresses only. */
struct cfg_eds {
    struct cfg_endpoint *endpoints;
    size_t n_endpoints;
};
int config_load_assignment(const char *source, const char *text, size_t len, const char *service,
                           struct cfg_eds *out, struct config_errors *errs);
void config_eds_free(struct cfg_eds *eds);

/* Look up a cluster by name; NULL if absent. */
const struct cfg_cluster *config_find_cluster(const struct config *cfg, const char *name);

#endif

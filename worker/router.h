/* Request routing: virtual host by authority, then the first matching route.
 * Pure functions over the configuration, so they are unit-tested directly. */
#ifndef LEGATE_WORKER_ROUTER_H
#define LEGATE_WORKER_ROUTER_H

#include <stddef.h>

#include "common/config.h"

/* The virtual host for a Host/:authority value, as Envoy picks it: exact domain,
 * then the longest "*.suffix" (or "*-suffix") wildcard, then the longest
 * "prefix.*" wildcard, then "*". Case-insensitive; a ":port" on the host (or an
 * IPv6 literal's "]:port") is ignored. NULL if nothing matches. */
const struct cfg_vhost *router_match_vhost(const struct cfg_route_config *rc, const char *host,
                                           size_t host_len);

/* The first route of `vh` matching `path` (origin-form, may carry "?query"):
 * a prefix route compares the start of the whole path; an exact path route
 * compares the path with its query string removed. NULL if none. */
const struct cfg_route *router_match_route(const struct cfg_vhost *vh, const char *path,
                                           size_t path_len);

/* Write the upstream path for `path` under `route` into out (prefix_rewrite
 * applied when the route has one). Returns the length written, or -1 if `cap`
 * is too small. out is NUL-terminated. */
long router_rewrite_path(const struct cfg_route *route, const char *path, size_t path_len,
                         char *out, size_t cap);

#endif

/* Request routing: virtual host by authority, then the first matching route.
 *
 * This runs for every request, so it allocates nothing and touches only the
 * configuration and the caller's buffers. Virtual hosts are found by one pass
 * over every domain (configurations hold a handful); domains are stored
 * lower-cased by the loader, so only the host needs folding. */
#include "worker/router.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>

static unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Does host[0..len) equal the lower-case `lower`[0..len), ignoring case? */
static bool equal_nocase(const char *host, const char *lower, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (ascii_lower((unsigned char)host[i]) != (unsigned char)lower[i])
            return false;
    return true;
}

static bool all_digits(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* The length of `host` without its ":port": "a.com:80" → "a.com",
 * "[::1]:80" → "[::1]". A bare IPv6 address ("::1", not valid in a Host
 * header but seen in the wild) has colons and no port: it is kept whole. */
static size_t host_without_port(const char *host, size_t len)
{
    if (len > 0 && host[0] == '[') {
        const char *close = memchr(host, ']', len);
        if (!close)
            return len;
        size_t end = (size_t)(close - host) + 1;
        if (end == len || (host[end] == ':' && all_digits(host + end + 1, len - end - 1)))
            return end;
        return len;
    }
    const char *colon = memchr(host, ':', len);
    if (!colon)
        return len;
    size_t at = (size_t)(colon - host);
    if (memchr(host + at + 1, ':', len - at - 1) || !all_digits(host + at + 1, len - at - 1))
        return len;
    return at;
}

const struct cfg_vhost *router_match_vhost(const struct cfg_route_config *rc, const char *host,
                                           size_t host_len)
{
    const struct cfg_vhost *suffix_match = NULL, *prefix_match = NULL, *any = NULL;
    size_t suffix_len = 0, prefix_len = 0;

    if (!rc)
        return NULL;
    if (!host) {
        host = "";
        host_len = 0;
    }
    size_t name_len = host_without_port(host, host_len);

    for (size_t v = 0; v < rc->n_vhosts; v++) {
        const struct cfg_vhost *vh = &rc->vhosts[v];
        for (size_t d = 0; d < vh->n_domains; d++) {
            const char *domain = vh->domains[d];
            size_t len = strlen(domain);

            if (len == 0) {
                continue; /* the loader refuses these; never index domain[-1] */
            } else if (len == 1 && domain[0] == '*') {
                if (!any)
                    any = vh;
            } else if (domain[0] == '*') {
                /* "*.foo.com", "*-bar.foo.com": the wildcard matches at least one character. */
                size_t tail = len - 1;
                if (name_len > tail && (!suffix_match || tail > suffix_len) &&
                    equal_nocase(host + name_len - tail, domain + 1, tail)) {
                    suffix_match = vh;
                    suffix_len = tail;
                }
            } else if (domain[len - 1] == '*') {
                /* "foo.*", "foo-*" */
                size_t head = len - 1;
                if (name_len > head && (!prefix_match || head > prefix_len) &&
                    equal_nocase(host, domain, head)) {
                    prefix_match = vh;
                    prefix_len = head;
                }
            } else if ((len == name_len && equal_nocase(host, domain, len)) ||
                       (len == host_len && equal_nocase(host, domain, len))) {
                /* Exact, on the host without its port or, for a domain
                 * written with one ("a.com:8080"), with it. Nothing beats it. */
                return vh;
            }
        }
    }
    if (suffix_match)
        return suffix_match;
    if (prefix_match)
        return prefix_match;
    return any;
}

/* The length of `path` without its "?query". */
static size_t path_without_query(const char *path, size_t len)
{
    const char *query = memchr(path, '?', len);
    return query ? (size_t)(query - path) : len;
}

static bool route_matches(const struct cfg_route *route, const char *path, size_t path_len)
{
    if (route->match == ROUTE_MATCH_PREFIX)
        return path_len >= route->match_len && !memcmp(path, route->match_value, route->match_len);
    return path_without_query(path, path_len) == route->match_len &&
           !memcmp(path, route->match_value, route->match_len);
}

const struct cfg_route *router_match_route(const struct cfg_vhost *vh, const char *path,
                                           size_t path_len)
{
    if (!vh || (!path && path_len))
        return NULL;
    if (!path)
        path = "";
    for (size_t i = 0; i < vh->n_routes; i++)
        if (route_matches(&vh->routes[i], path, path_len))
            return &vh->routes[i];
    return NULL;
}

long router_rewrite_path(const struct cfg_route *route, const char *path, size_t path_len,
                         char *out, size_t cap)
{
    const char *head = "";
    size_t head_len = 0, kept_from = 0;

    if (!path) {
        if (path_len)
            return -1;
        path = "";
    }

    /* Envoy swaps the matched part for prefix_rewrite: the prefix of a prefix
     * route, the whole path (up to the query) of an exact one. */
    if (route->action == ROUTE_ACTION_CLUSTER && route->prefix_rewrite &&
        route_matches(route, path, path_len)) {
        head = route->prefix_rewrite;
        head_len = strlen(head);
        kept_from = route->match == ROUTE_MATCH_PREFIX ? route->match_len
                                                       : path_without_query(path, path_len);
    }
    size_t total = head_len + (path_len - kept_from);
    if (total >= cap || total > (size_t)LONG_MAX)
        return -1;
    memcpy(out, head, head_len);
    memcpy(out + head_len, path + kept_from, path_len - kept_from);
    out[total] = '\0';
    return (long)total;
}

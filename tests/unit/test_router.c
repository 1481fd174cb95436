/* Unit tests for request routing (worker/router.c), over hand-built configs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "worker/router.h"

/* ---- virtual hosts ------------------------------------------------------------------------- */

/* Domains as the loader stores them: lower-cased. */
static char *exact_domains[] = {"www.example.com", "[::1]", "10.0.0.1", "api.example.com:8443"};
static char *suffix_short_domains[] = {"*.example.com"};
static char *suffix_long_domains[] = {"*.api.example.com"};
static char *suffix_dash_domains[] = {"*-bar.example.com"};
static char *prefix_short_domains[] = {"www.*"};
static char *prefix_long_domains[] = {"www.example.*"};
static char *prefix_dash_domains[] = {"foo-*"};
static char *any_domains[] = {"*"};

#define VHOST(vname, list)                                                                         \
    {                                                                                              \
        .name = vname, .domains = list, .n_domains = sizeof list / sizeof list[0]                  \
    }

/* The default vhost comes first on purpose: precedence must not depend on order. */
static struct cfg_vhost vhosts[] = {
    VHOST("any", any_domains),
    VHOST("prefix_short", prefix_short_domains),
    VHOST("prefix_long", prefix_long_domains),
    VHOST("prefix_dash", prefix_dash_domains),
    VHOST("suffix_short", suffix_short_domains),
    VHOST("suffix_long", suffix_long_domains),
    VHOST("suffix_dash", suffix_dash_domains),
    VHOST("exact", exact_domains),
};

static const struct cfg_route_config all = {.name = "all", .vhosts = vhosts, .n_vhosts = 8};

/* The name of the vhost picked for `host`, or "(none)". */
static const char *pick(const struct cfg_route_config *rc, const char *host)
{
    const struct cfg_vhost *vh = router_match_vhost(rc, host, host ? strlen(host) : 0);
    return vh ? vh->name : "(none)";
}

static void test_vhost_exact(void **state)
{
    (void)state;
    /* Exact beats "*.example.com", "www.*", "www.example.*" and "*". */
    assert_string_equal(pick(&all, "www.example.com"), "exact");
    assert_string_equal(pick(&all, "WWW.Example.COM"), "exact");
    assert_string_equal(pick(&all, "10.0.0.1"), "exact");
    /* A domain written with its port matches that host:port exactly. */
    assert_string_equal(pick(&all, "api.example.com:8443"), "exact");
    assert_string_equal(pick(&all, "api.example.com:9000"), "suffix_short");
    /* host_len is honoured: the host need not be NUL-terminated. */
    const char *buf = "www.example.comXYZ";
    const struct cfg_vhost *vh = router_match_vhost(&all, buf, strlen("www.example.com"));
    assert_non_null(vh);
    assert_string_equal(vh->name, "exact");
}

static void test_vhost_ports(void **state)
{
    (void)state;
    assert_string_equal(pick(&all, "www.example.com:8080"), "exact");
    assert_string_equal(pick(&all, "www.example.com:"), "exact");
    assert_string_equal(pick(&all, "10.0.0.1:80"), "exact");
    assert_string_equal(pick(&all, "a.example.com:443"), "suffix_short");
    /* Not a port: nothing is stripped, so only the prefix wildcard matches. */
    assert_string_equal(pick(&all, "www.example.com:http"), "prefix_long");
}

static void test_vhost_ipv6(void **state)
{
    (void)state;
    assert_string_equal(pick(&all, "[::1]"), "exact");
    assert_string_equal(pick(&all, "[::1]:8080"), "exact");
    assert_string_equal(pick(&all, "[::2]:8080"), "any");
    /* A bare IPv6 address has colons but no port: it is not cut at a colon. */
    assert_string_equal(pick(&all, "::1"), "any");
    assert_string_equal(pick(&all, "[::1"), "any"); /* unterminated: kept whole */
}

static void test_vhost_suffix_wildcards(void **state)
{
    (void)state;
    assert_string_equal(pick(&all, "a.example.com"), "suffix_short");
    assert_string_equal(pick(&all, "A.EXAMPLE.COM"), "suffix_short");
    /* The longest suffix wins. */
    assert_string_equal(pick(&all, "v1.api.example.com"), "suffix_long");
    assert_string_equal(pick(&all, "api.example.com"), "suffix_short");
    assert_string_equal(pick(&all, "foo-bar.example.com"), "suffix_dash");
    /* A wildcard stands for at least one character. */
    assert_string_equal(pick(&all, "-bar.example.com"), "suffix_short");
    assert_string_equal(pick(&all, ".example.com"), "any");
    /* A suffix wildcard beats a prefix wildcard. */
    assert_string_equal(pick(&all, "www.x.example.com"), "suffix_short");
}

static void test_vhost_prefix_wildcards(void **state)
{
    (void)state;
    assert_string_equal(pick(&all, "www.other.org"), "prefix_short");
    /* The longest prefix wins. */
    assert_string_equal(pick(&all, "www.example.org"), "prefix_long");
    assert_string_equal(pick(&all, "WWW.EXAMPLE.ORG:8080"), "prefix_long");
    assert_string_equal(pick(&all, "foo-1"), "prefix_dash");
    assert_string_equal(pick(&all, "foo-"), "any"); /* at least one character */
    assert_string_equal(pick(&all, "www."), "any");
}

static void test_vhost_default_and_none(void **state)
{
    (void)state;
    assert_string_equal(pick(&all, "elsewhere.net"), "any");
    assert_string_equal(pick(&all, ""), "any");
    assert_string_equal(pick(&all, NULL), "any");

    /* Without "*", an unmatched host has no virtual host. */
    const struct cfg_route_config no_default = {.vhosts = vhosts + 1, .n_vhosts = 7};
    assert_string_equal(pick(&no_default, "elsewhere.net"), "(none)");
    assert_string_equal(pick(&no_default, ""), "(none)");
    assert_string_equal(pick(&no_default, "a.example.com"), "suffix_short");
    const struct cfg_route_config empty = {0};
    assert_string_equal(pick(&empty, "www.example.com"), "(none)");
    assert_null(router_match_vhost(NULL, "x", 1));
}

/* ---- routes -------------------------------------------------------------------------------- */

#define PREFIX(value)                                                                              \
    .match = ROUTE_MATCH_PREFIX, .match_value = value, .match_len = sizeof value - 1
#define PATH(value) .match = ROUTE_MATCH_PATH, .match_value = value, .match_len = sizeof value - 1

static struct cfg_route routes[] = {
    {PATH("/exact"), .action = ROUTE_ACTION_DIRECT, .direct_status = 200},
    {PREFIX("/search?q="), .action = ROUTE_ACTION_DIRECT, .direct_status = 204},
    {PREFIX("/api/"), .action = ROUTE_ACTION_CLUSTER, .cluster = "api", .prefix_rewrite = "/"},
    {PREFIX("/api"), .action = ROUTE_ACTION_CLUSTER, .cluster = "api"},
    {PATH("/old"), .action = ROUTE_ACTION_CLUSTER, .cluster = "web", .prefix_rewrite = "/new/path"},
    {PREFIX("/a"), .action = ROUTE_ACTION_CLUSTER, .cluster = "web",
     .prefix_rewrite = "/very/long/prefix"},
    {PREFIX(""), .action = ROUTE_ACTION_DIRECT, .direct_status = 404},
};

static const struct cfg_vhost vh = {.name = "v", .routes = routes, .n_routes = 7};

/* The index of the route matching `path` in `routes`, or -1. */
static long route_index(const struct cfg_vhost *v, const char *path)
{
    const struct cfg_route *r = router_match_route(v, path, strlen(path));
    return r ? r - v->routes : -1;
}

static void test_route_exact_path(void **state)
{
    (void)state;
    assert_int_equal(route_index(&vh, "/exact"), 0);
    /* The query is not part of an exact path match... */
    assert_int_equal(route_index(&vh, "/exact?x=1"), 0);
    assert_int_equal(route_index(&vh, "/exact?"), 0);
    /* ...but anything else is. */
    assert_int_equal(route_index(&vh, "/exact/"), 6);
    assert_int_equal(route_index(&vh, "/exactly"), 6);
    assert_int_equal(route_index(&vh, "/Exact"), 6); /* case-sensitive, as in Envoy */
}

static void test_route_prefix(void **state)
{
    (void)state;
    /* A prefix compares the whole path, query included. */
    assert_int_equal(route_index(&vh, "/search?q=legate"), 1);
    assert_int_equal(route_index(&vh, "/search"), 6);
    /* First match wins: "/api/" is listed before "/api". */
    assert_int_equal(route_index(&vh, "/api/v1?x=y"), 2);
    assert_int_equal(route_index(&vh, "/api"), 3);
    assert_int_equal(route_index(&vh, "/apix"), 3);
    assert_int_equal(route_index(&vh, "/API/"), 6);
    assert_int_equal(route_index(&vh, "/"), 6);
    assert_int_equal(route_index(&vh, ""), 6); /* the empty prefix matches everything */
    /* path_len is honoured. */
    const struct cfg_route *r = router_match_route(&vh, "/exactly", 6);
    assert_ptr_equal(r, &routes[0]);
}

static void test_route_no_match(void **state)
{
    (void)state;
    /* Without the catch-all, an unmatched path has no route. */
    const struct cfg_vhost narrow = {.name = "n", .routes = routes, .n_routes = 6};
    assert_int_equal(route_index(&narrow, "/nope"), -1);
    assert_int_equal(route_index(&narrow, "/exac"), -1);
    const struct cfg_vhost none = {.name = "none"};
    assert_int_equal(route_index(&none, "/"), -1);
    assert_null(router_match_route(NULL, "/", 1));
}

/* ---- rewriting ----------------------------------------------------------------------------- */

/* The upstream path for `path` under routes[i], with a roomy buffer. */
static const char *rewrite(size_t i, const char *path)
{
    static char out[256];
    long n = router_rewrite_path(&routes[i], path, strlen(path), out, sizeof out);
    assert_true(n >= 0);
    assert_int_equal((size_t)n, strlen(out));
    return out;
}

static void test_rewrite_prefix(void **state)
{
    (void)state;
    assert_string_equal(rewrite(2, "/api/v1/users?id=3"), "/v1/users?id=3");
    assert_string_equal(rewrite(2, "/api/"), "/");
    assert_string_equal(rewrite(5, "/a/b?c=d"), "/very/long/prefix/b?c=d");
    /* Envoy's plain string swap: "/a" → "/very/long/prefix" also applies to "/ab". */
    assert_string_equal(rewrite(5, "/ab"), "/very/long/prefixb");
}

static void test_rewrite_exact_path(void **state)
{
    (void)state;
    /* An exact route swaps the whole path and keeps the query. */
    assert_string_equal(rewrite(4, "/old"), "/new/path");
    assert_string_equal(rewrite(4, "/old?x=1&y=2"), "/new/path?x=1&y=2");
}

static void test_rewrite_none(void **state)
{
    (void)state;
    /* No prefix_rewrite, or not a cluster route: the path goes as it came. */
    assert_string_equal(rewrite(3, "/api/x?y"), "/api/x?y");
    assert_string_equal(rewrite(0, "/exact?q"), "/exact?q");
    assert_string_equal(rewrite(6, "/anything"), "/anything");
}

static void test_rewrite_buffer_too_small(void **state)
{
    char out[8];
    (void)state;

    /* "/api/v1" becomes "/v1": 3 bytes plus the NUL. */
    memset(out, 'x', sizeof out);
    assert_int_equal(router_rewrite_path(&routes[2], "/api/v1", 7, out, 3), -1);
    assert_int_equal(router_rewrite_path(&routes[2], "/api/v1", 7, out, 4), 3);
    assert_string_equal(out, "/v1");
    /* Growing rewrites are checked against the result, not the input. */
    assert_int_equal(router_rewrite_path(&routes[5], "/a", 2, out, sizeof out), -1);
    /* Unchanged paths too. */
    assert_int_equal(router_rewrite_path(&routes[3], "/api/abc", 8, out, sizeof out), -1);
    assert_int_equal(router_rewrite_path(&routes[3], "/api/ab", 7, out, sizeof out), 7);
    assert_string_equal(out, "/api/ab");
    assert_int_equal(router_rewrite_path(&routes[3], "/api", 4, NULL, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vhost_exact),
        cmocka_unit_test(test_vhost_ports),
        cmocka_unit_test(test_vhost_ipv6),
        cmocka_unit_test(test_vhost_suffix_wildcards),
        cmocka_unit_test(test_vhost_prefix_wildcards),
        cmocka_unit_test(test_vhost_default_and_none),
        cmocka_unit_test(test_route_exact_path),
        cmocka_unit_test(test_route_prefix),
        cmocka_unit_test(test_route_no_match),
        cmocka_unit_test(test_rewrite_prefix),
        cmocka_unit_test(test_rewrite_exact_path),
        cmocka_unit_test(test_rewrite_none),
        cmocka_unit_test(test_rewrite_buffer_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

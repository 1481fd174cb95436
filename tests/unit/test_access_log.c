/* Access-log format compilation and rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <stdlib.h>
#include <strings.h>

#include "worker/access_log.h"

static const char *req_header(void *ctx, const char *name, size_t *len)
{
    (void)ctx;
    static const struct {
        const char *name, *value;
    } h[] = {{":method", "GET"},
             {":path", "/a?b=1"},
             {":authority", "example.com"},
             {"user-agent", "curl/7.88"},
             {"x-request-id", "rid-1"}};
    for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++)
        if (strcasecmp(h[i].name, name) == 0) {
            *len = strlen(h[i].value);
            return h[i].value;
        }
    return NULL;
}

static const char *resp_header(void *ctx, const char *name, size_t *len)
{
    (void)ctx;
    if (strcmp(name, "x-envoy-upstream-service-time") == 0) {
        *len = 2;
        return "12";
    }
    return NULL;
}

static struct access_log_info sample(void)
{
    struct access_log_info in = {
        .start_time_us = 1700000000123456ull, /* 2023-11-14T22:13:20.123Z */
        .req_header = req_header,
        .resp_header = resp_header,
        .protocol = "HTTP/1.1",
        .response_code = 200,
        .response_flags = "-",
        .bytes_received = 5,
        .bytes_sent = 42,
        .duration_ms = 17,
        .upstream_host = "127.0.0.1:8080",
        .upstream_cluster = "svc",
        .downstream_remote = "127.0.0.1:5555",
    };
    return in;
}

static char *render(const char *fmt)
{
    char err[128];
    struct access_log_format *f = access_log_format_compile(fmt, err, sizeof(err));
    assert_non_null(f);
    struct buf out = {0};
    struct access_log_info in = sample();
    access_log_format_render(f, &in, &out);
    buf_append(&out, "", 1);
    char *s = strdup(buf_head(&out));
    buf_release(&out);
    access_log_format_free(f);
    return s;
}

static void test_default_format_matches_envoy(void **state)
{
    (void)state;
    char *s = render(NULL);
    assert_string_equal(s, "[2023-11-14T22:13:20.123Z] \"GET /a?b=1 HTTP/1.1\" 200 - 5 42 17 12 "
                           "\"-\" \"curl/7.88\" \"rid-1\" \"example.com\" \"127.0.0.1:8080\"\n");
    free(s);
}

static void test_custom_operators(void **state)
{
    (void)state;
    char *s = render("%REQ(:METHOD)% %RESPONSE_CODE% %UPSTREAM_HOST% %UPSTREAM_CLUSTER% "
                     "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %REQ(USER-AGENT):4% "
                     "%REQ(X-MISSING?X-REQUEST-ID)% 100%%\n");
    assert_string_equal(s, "GET 200 127.0.0.1:8080 svc 127.0.0.1 curl rid-1 100%\n");
    free(s);
}

static void test_bad_formats_are_refused(void **state)
{
    (void)state;
    const char *bad[] = {"%NOT_AN_OPERATOR%", "%REQ(%", "%REQ()%", "%START_TIME", "%REQ(X):ab%"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[128] = "";
        assert_null(access_log_format_compile(bad[i], err, sizeof(err)));
        assert_true(strlen(err) > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_format_matches_envoy),
        cmocka_unit_test(test_custom_operators),
        cmocka_unit_test(test_bad_formats_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

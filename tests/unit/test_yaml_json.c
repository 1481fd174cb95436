/* YAML to JSON for /config_dump: structure, scalar typing, escaping, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/yaml_json.h"

/* ---- a strict JSON checker (RFC 8259), so every output is proven parsable ---------------- */

struct json_in {
    const char *s;
    size_t n, i;
};

static bool json_value(struct json_in *in, int depth);

static void json_ws(struct json_in *in)
{
    while (in->i < in->n && strchr(" \t\r\n", in->s[in->i]))
        in->i++;
}

static bool json_lit(struct json_in *in, const char *lit)
{
    size_t n = strlen(lit);
    if (in->n - in->i < n || memcmp(in->s + in->i, lit, n) != 0)
        return false;
    in->i += n;
    return true;
}

static size_t json_digits(struct json_in *in)
{
    size_t start = in->i;
    while (in->i < in->n && in->s[in->i] >= '0' && in->s[in->i] <= '9')
        in->i++;
    return in->i - start;
}

static bool json_number(struct json_in *in)
{
    if (in->s[in->i] == '-')
        in->i++;
    if (in->i < in->n && in->s[in->i] == '0')
        in->i++;
    else if (json_digits(in) == 0)
        return false;
    if (in->i < in->n && in->s[in->i] == '.') {
        in->i++;
        if (json_digits(in) == 0)
            return false;
    }
    if (in->i < in->n && (in->s[in->i] == 'e' || in->s[in->i] == 'E')) {
        in->i++;
        if (in->i < in->n && (in->s[in->i] == '+' || in->s[in->i] == '-'))
            in->i++;
        if (json_digits(in) == 0)
            return false;
    }
    return true;
}

static bool json_string(struct json_in *in)
{
    in->i++; /* the opening quote */
    while (in->i < in->n) {
        unsigned char ch = (unsigned char)in->s[in->i++];
        if (ch == '"')
            return true;
        if (ch < 0x20)
            return false;
        if (ch == '\\') {
            if (in->i >= in->n)
                return false;
            char e = in->s[in->i++];
            if (e == 'u') {
                for (int k = 0; k < 4; k++, in->i++)
                    if (in->i >= in->n || !strchr("0123456789abcdefABCDEF", in->s[in->i]))
                        return false;
            } else if (!strchr("\"\\/bfnrt", e)) {
                return false;
            }
        }
    }
    return false;
}

static bool json_container(struct json_in *in, int depth, char close, bool object)
{
    in->i++;
    json_ws(in);
    if (in->i < in->n && in->s[in->i] == close) {
        in->i++;
        return true;
    }
    for (;;) {
        if (object) {
            json_ws(in);
            if (in->i >= in->n || in->s[in->i] != '"' || !json_string(in))
                return false;
            json_ws(in);
            if (!json_lit(in, ":"))
                return false;
        }
        if (!json_value(in, depth + 1))
            return false;
        json_ws(in);
        if (json_lit(in, ","))
            continue;
        return json_lit(in, close == '}' ? "}" : "]");
    }
}

static bool json_value(struct json_in *in, int depth)
{
    if (depth > 1000)
        return false;
    json_ws(in);
    if (in->i >= in->n)
        return false;
    switch (in->s[in->i]) {
    case '{':
        return json_container(in, depth, '}', true);
    case '[':
        return json_container(in, depth, ']', false);
    case '"':
        return json_string(in);
    case 't':
        return json_lit(in, "true");
    case 'f':
        return json_lit(in, "false");
    case 'n':
        return json_lit(in, "null");
    default:
        return json_number(in);
    }
}

static bool json_valid(const char *s, size_t n)
{
    struct json_in in = {s, n, 0};
    if (!json_value(&in, 0))
        return false;
    json_ws(&in);
    return in.i == n;
}

static void test_checker_rejects_invalid_json(void **state)
{
    (void)state;
    const char *bad[] = {"01", "+5", ".5", "1.", "inf", "\"a\tb\"", "{1:2}", "[1,]", "", "nul"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(json_valid(bad[i], strlen(bad[i])));
    const char *good = "{\"a\":[1,-0.5e+3,true,null,\"\\u0001\"]}";
    assert_true(json_valid(good, strlen(good)));
}

/* ---- helpers ------------------------------------------------------------------------------ */

/* The JSON of `yaml`, checked to be valid JSON; the caller frees it. */
static char *convert(const char *yaml)
{
    struct buf out = {0};
    char err[160] = "";
    int rc = yaml_to_json(yaml, strlen(yaml), &out, err, sizeof err);
    if (rc != 0)
        fail_msg("yaml_to_json failed: %s\n--- input:\n%s", err, yaml);
    assert_string_equal(err, "");
    assert_true(json_valid(buf_head(&out), buf_len(&out)));
    char *s = strndup(buf_head(&out), buf_len(&out));
    buf_release(&out);
    return s;
}

static void expect(const char *yaml, const char *json)
{
    char *s = convert(yaml);
    if (strcmp(s, json) != 0)
        fail_msg("for %s\n  expected %s\n  got      %s", yaml, json, s);
    free(s);
}

/* A plain scalar as a sequence item, so the check covers the typed value. */
static void expect_item(const char *scalar, const char *json)
{
    char yaml[256], want[256];
    snprintf(yaml, sizeof yaml, "- %s\n", scalar);
    snprintf(want, sizeof want, "[%s]", json);
    expect(yaml, want);
}

static void expect_error(const char *yaml, const char *reason)
{
    struct buf out = {0};
    char err[160] = "";
    assert_int_equal(yaml_to_json(yaml, strlen(yaml), &out, err, sizeof err), -1);
    if (strstr(err, reason) == NULL)
        fail_msg("for %.80s\n  expected an error with \"%s\"\n  got \"%s\"", yaml, reason, err);
    buf_release(&out);
}

/* ---- structure ---------------------------------------------------------------------------- */

static void test_nested_maps_and_sequences(void **state)
{
    (void)state;
    expect("a:\n"
           "  b:\n"
           "    - 1\n"
           "    - c: d\n"
           "      e: [x, {y: z}]\n"
           "  f: []\n"
           "g: {}\n"
           "h:\n"
           "  - - 1\n"
           "    - 2\n"
           "  - []\n",
           "{\"a\":{\"b\":[1,{\"c\":\"d\",\"e\":[\"x\",{\"y\":\"z\"}]}],\"f\":[]},\"g\":{},"
           "\"h\":[[1,2],[]]}");
    expect("[1, [2, [3, {a: [4]}]]]", "[1,[2,[3,{\"a\":[4]}]]]");
    expect("a:\nb: ~\n", "{\"a\":null,\"b\":null}");
    expect("? complex\n: value\n", "{\"complex\":\"value\"}");
}

static void test_empty_document_is_null(void **state)
{
    (void)state;
    expect("", "null");
    expect("# only a comment\n", "null");
    expect("---\n", "null");
    expect("--- \n...\n", "null");
    expect("~", "null");
    expect("hello", "\"hello\"");
}

static void test_only_first_document(void **state)
{
    (void)state;
    expect("a: 1\n---\nb: 2\n", "{\"a\":1}");
    expect("--- [1]\n--- [2]\n", "[1]");
}

static void test_appends_to_existing_output(void **state)
{
    (void)state;
    struct buf out = {0};
    char err[64];
    buf_append(&out, "x=", 2);
    /* Anchors record offsets in the output, which must account for what was there. */
    const char *yaml = "a: &a [1, 2]\nb: *a\n";
    assert_int_equal(yaml_to_json(yaml, strlen(yaml), &out, err, sizeof err), 0);
    assert_int_equal(buf_len(&out), strlen("x={\"a\":[1,2],\"b\":[1,2]}"));
    assert_memory_equal(buf_head(&out), "x={\"a\":[1,2],\"b\":[1,2]}", buf_len(&out));
    buf_release(&out);
}

/* ---- scalars ------------------------------------------------------------------------------ */

static void test_booleans_and_nulls(void **state)
{
    (void)state;
    const char *trues[] = {"true", "True", "TRUE"}, *falses[] = {"false", "False", "FALSE"};
    const char *nulls[] = {"null", "Null", "NULL", "~"};
    for (size_t i = 0; i < 3; i++) {
        expect_item(trues[i], "true");
        expect_item(falses[i], "false");
    }
    for (size_t i = 0; i < 4; i++)
        expect_item(nulls[i], "null");
    expect("- \n- x\n", "[null,\"x\"]");
    /* YAML 1.1 spellings are strings under the 1.2 core schema. */
    expect("[yes, no, on, off, tRUE, nULL, y, n]",
           "[\"yes\",\"no\",\"on\",\"off\",\"tRUE\",\"nULL\",\"y\",\"n\"]");
}

static void test_integers(void **state)
{
    (void)state;
    expect_item("0", "0");
    expect_item("42", "42");
    expect_item("-17", "-17");
    expect_item("01", "1");
    expect_item("007", "7");
    expect_item("+5", "5");
    expect_item("-007", "-7");
    expect_item("-0", "0");
    expect_item("+000", "0");
    expect_item("123456789012345678901234567890", "123456789012345678901234567890");
    expect_item("0x1F", "31");
    expect_item("0xff", "255");
    expect_item("0o17", "15");
    expect_item("0o0", "0");
    expect_item("0xFFFFFFFFFFFFFFFF", "18446744073709551615");
    /* Too big for 64 bits: kept whole, as a string, rather than rounded. */
    expect_item("0x10000000000000000", "\"0x10000000000000000\"");
    /* Not core-schema integers. */
    expect("[0x, 0o8, 0xg, -0x1, 0X1, 0b101, 1_000, 0o, +-1, 1e, 1e+, +, -x]",
           "[\"0x\",\"0o8\",\"0xg\",\"-0x1\",\"0X1\",\"0b101\",\"1_000\",\"0o\",\"+-1\",\"1e\","
           "\"1e+\",\"+\",\"-x\"]");
}

static void test_floats(void **state)
{
    (void)state;
    expect_item("1.5", "1.5");
    expect_item(".5", "0.5");
    expect_item("-.5", "-0.5");
    expect_item("+.5", "0.5");
    expect_item("1.", "1.0");
    expect_item("+1.", "1.0");
    expect_item("00.25", "0.25");
    expect_item("-0.0", "-0.0");
    expect_item("1e3", "1e3");
    expect_item("1E+3", "1E+3");
    expect_item("-1.5E-2", "-1.5E-2");
    expect_item("01.e05", "1.0e05");
    expect_item(".inf", "\"inf\"");
    expect_item("+.Inf", "\"inf\"");
    expect_item("-.INF", "\"-inf\"");
    expect_item(".nan", "\"nan\"");
    expect_item(".NaN", "\"nan\"");
    expect("[., .e3, 1.2.3, inf, nan, .Nan, 1e3.5, 5s, 0.25s]",
           "[\".\",\".e3\",\"1.2.3\",\"inf\",\"nan\",\".Nan\",\"1e3.5\",\"5s\",\"0.25s\"]");
}

static void test_strings_stay_strings(void **state)
{
    (void)state;
    expect("[5s, 1.5s, 127.0.0.1, '::1', 0.0.0.0, '10.0.0.1:80', /a/b, hello world]",
           "[\"5s\",\"1.5s\",\"127.0.0.1\",\"::1\",\"0.0.0.0\",\"10.0.0.1:80\",\"/a/b\","
           "\"hello world\"]");
    /* Quoted, block and !!str-tagged scalars are strings, whatever they spell. */
    expect("['true', \"5\", '', \"null\", !!str 7, ! 8, !!int 9]",
           "[\"true\",\"5\",\"\",\"null\",\"7\",\"8\",9]");
    expect("a: |\n  line 1\n  line 2\nb: >\n  folded\n  text\nc: |-\n  12\n",
           "{\"a\":\"line 1\\nline 2\\n\",\"b\":\"folded text\\n\",\"c\":\"12\"}");
}

static void test_keys_are_strings(void **state)
{
    (void)state;
    expect("1: a\ntrue: b\nnull: c\n~: d\n0x10: e\n'q': f\n1.5: g\n",
           "{\"1\":\"a\",\"true\":\"b\",\"null\":\"c\",\"~\":\"d\",\"0x10\":\"e\",\"q\":\"f\","
           "\"1.5\":\"g\"}");
}

/* ---- escaping ----------------------------------------------------------------------------- */

static void test_escaping(void **state)
{
    (void)state;
    expect("- \"q\\\"uote\"\n", "[\"q\\\"uote\"]");
    expect("- 'single ''q'' \"dq\"'\n", "[\"single 'q' \\\"dq\\\"\"]");
    expect("- back\\slash\n", "[\"back\\\\slash\"]");
    expect("- \"nl\\ntab\\tcr\\rbs\\bff\\f\"\n", "[\"nl\\ntab\\tcr\\rbs\\bff\\f\"]");
    expect("- \"ctl\\x01\\x1f\\e\\0end\"\n", "[\"ctl\\u0001\\u001f\\u001b\\u0000end\"]");
    expect("- \"del\\x7f\"\n", "[\"del\x7f\"]");
    /* UTF-8 passes through, from the text or from an escape. */
    expect("- héllo ✓ 😀\n", "[\"héllo ✓ 😀\"]");
    expect("- \"\\u00e9\\u2713\\U0001F600\"\n", "[\"é✓😀\"]");
    expect("\"key \\\"q\\\"\": v\n", "{\"key \\\"q\\\"\":\"v\"}");
}

/* ---- a real configuration ------------------------------------------------------------------ */

static void test_envoy_bootstrap(void **state)
{
    (void)state;
    expect("admin:\n"
           "  address:\n"
           "    socket_address: { address: 127.0.0.1, port_value: 9901 }\n"
           "static_resources:\n"
           "  listeners:\n"
           "  - name: listener_0\n"
           "    address:\n"
           "      socket_address:\n"
           "        address: 0.0.0.0\n"
           "        port_value: 10000\n"
           "    filter_chains:\n"
           "    - filters:\n"
           "      - name: envoy.filters.network.http_connection_manager\n"
           "        typed_config:\n"
           "          \"@type\": type.googleapis.com/envoy.extensions.filters.network."
           "http_connection_manager.v3.HttpConnectionManager\n"
           "          stat_prefix: ingress_http\n"
           "          stream_idle_timeout: 300s\n"
           "          route_config:\n"
           "            name: local_route\n"
           "            virtual_hosts:\n"
           "            - name: backend\n"
           "              domains: [\"*\"]\n"
           "              routes:\n"
           "              - match: { prefix: \"/\" }\n"
           "                route: { cluster: service, timeout: 0.5s }\n"
           "          http_filters:\n"
           "          - name: envoy.filters.http.router\n"
           "  clusters:\n"
           "  - name: service\n"
           "    connect_timeout: 0.25s\n"
           "    type: STATIC\n"
           "    lb_policy: ROUND_ROBIN\n"
           "    per_connection_buffer_limit_bytes: 32768\n"
           "    ignore_health_on_host_removal: false\n"
           "    load_assignment:\n"
           "      cluster_name: service\n"
           "      endpoints:\n"
           "      - lb_endpoints:\n"
           "        - endpoint:\n"
           "            address:\n"
           "              socket_address: { address: \"::1\", port_value: 8080 }\n",
           "{\"admin\":{\"address\":{\"socket_address\":{\"address\":\"127.0.0.1\","
           "\"port_value\":9901}}},\"static_resources\":{\"listeners\":[{\"name\":\"listener_0\","
           "\"address\":{\"socket_address\":{\"address\":\"0.0.0.0\",\"port_value\":10000}},"
           "\"filter_chains\":[{\"filters\":[{\"name\":"
           "\"envoy.filters.network.http_connection_manager\",\"typed_config\":{\"@type\":"
           "\"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
           "HttpConnectionManager\",\"stat_prefix\":\"ingress_http\",\"stream_idle_timeout\":"
           "\"300s\",\"route_config\":{\"name\":\"local_route\",\"virtual_hosts\":[{\"name\":"
           "\"backend\",\"domains\":[\"*\"],\"routes\":[{\"match\":{\"prefix\":\"/\"},\"route\":"
           "{\"cluster\":\"service\",\"timeout\":\"0.5s\"}}]}]},\"http_filters\":[{\"name\":"
           "\"envoy.filters.http.router\"}]}}]}]}],\"clusters\":[{\"name\":\"service\","
           "\"connect_timeout\":\"0.25s\",\"type\":\"STATIC\",\"lb_policy\":\"ROUND_ROBIN\","
           "\"per_connection_buffer_limit_bytes\":32768,\"ignore_health_on_host_removal\":false,"
           "\"load_assignment\":{\"cluster_name\":\"service\",\"endpoints\":[{\"lb_endpoints\":"
           "[{\"endpoint\":{\"address\":{\"socket_address\":{\"address\":\"::1\","
           "\"port_value\":8080}}}}]}]}}]}}");
}

static void test_example_config_converts(void **state)
{
    (void)state;
    FILE *f = fopen("examples/quickstart.yaml", "rb");
    assert_non_null(f);
    char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *json = convert(text);
    assert_non_null(strstr(json, "\"static_resources\":{"));
    free(json);
}

/* ---- errors and limits -------------------------------------------------------------------- */

static void test_malformed_yaml(void **state)
{
    (void)state;
    expect_error("a: [1, 2\n", "2:1: ");
    expect_error("a: b: c\n", "1:5: mapping values are not allowed");
    expect_error("a:\n  - 1\n - 2\n", ":");
    expect_error("\"unterminated\n", "found unexpected end of stream");
    expect_error("- \"\\ud800\"\n", "invalid Unicode");
    expect_error("a: \xff\n", "byte 3: invalid leading UTF-8 octet");

    /* A missing or tiny error buffer is not written past. */
    struct buf out = {0};
    assert_int_equal(yaml_to_json("[", 1, &out, NULL, 0), -1);
    char tiny[4] = "zzz";
    assert_int_equal(yaml_to_json("[", 1, &out, tiny, 2), -1);
    assert_int_equal(strlen(tiny), 1);
    buf_release(&out);
}

static void test_collection_keys_are_refused(void **state)
{
    (void)state;
    expect_error("? [a]\n: b\n", "a mapping key must be a scalar");
    expect_error("{a: 1}: b\n", "a mapping key must be a scalar");
    expect_error("x: &m {a: 1}\n*m : b\n", "a mapping key must be a scalar");
}

/* `levels` nested flow sequences around a 0. */
static char *nested(size_t levels)
{
    char *s = malloc(2 * levels + 2);
    memset(s, '[', levels);
    s[levels] = '0';
    memset(s + levels + 1, ']', levels);
    s[2 * levels + 1] = '\0';
    return s;
}

static void test_depth_cap(void **state)
{
    (void)state;
    char *ok = nested(YAML_JSON_MAX_DEPTH), *deep = nested(YAML_JSON_MAX_DEPTH + 1);
    expect(ok, ok);
    expect_error(deep, "nesting deeper than 64 levels");
    free(ok);
    free(deep);

    /* Block mappings count the same way. */
    char block[16384] = "";
    size_t used = 0;
    for (size_t i = 0; i <= YAML_JSON_MAX_DEPTH; i++)
        used += (size_t)snprintf(block + used, sizeof block - used, "%*sk:\n", (int)i, "");
    expect_error(block, "nesting deeper than 64 levels");

    /* An alias cannot smuggle depth in: the root mapping, then `open` sequences,
     * then a copy of 40 levels. */
    char *inner = nested(40);
    for (size_t open = 23; open <= 24; open++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml, "a: &deep %s\nb: %.*s*deep%.*s\n", inner, (int)open, inner,
                 (int)open, inner + 41);
        if (1 + open + 40 <= YAML_JSON_MAX_DEPTH)
            free(convert(yaml));
        else
            expect_error(yaml, "nesting deeper than 64 levels");
    }
    free(inner);
}

static void test_aliases_expand(void **state)
{
    (void)state;
    expect("defaults: &d {connect_timeout: 1s, port: 80}\n"
           "a: *d\n"
           "b: [*d, *d]\n",
           "{\"defaults\":{\"connect_timeout\":\"1s\",\"port\":80},"
           "\"a\":{\"connect_timeout\":\"1s\",\"port\":80},"
           "\"b\":[{\"connect_timeout\":\"1s\",\"port\":80},{\"connect_timeout\":\"1s\","
           "\"port\":80}]}");
    /* A scalar keeps its type as a value and is a string as a key. */
    expect("p: &p 8080\nq: *p\n*p : x\ns: &s '8080'\nt: *s\n",
           "{\"p\":8080,\"q\":8080,\"8080\":\"x\",\"s\":\"8080\",\"t\":\"8080\"}");
    expect("&k 5: a\nv: *k\n", "{\"5\":\"a\",\"v\":5}");
    /* An anchor inside an anchored node, and one redefined: the latest wins. */
    expect("a: &o [&i x, y]\nb: *i\nc: *o\nd: &i z\ne: *i\n",
           "{\"a\":[\"x\",\"y\"],\"b\":\"x\",\"c\":[\"x\",\"y\"],\"d\":\"z\",\"e\":\"z\"}");
    expect("&root [1, 2]", "[1,2]");
    expect_error("a: *nope\n", "alias *nope names no anchor");
    expect_error("a: &self [1, *self]\n", "alias *self is inside its own anchor");
}

static void test_billion_laughs_is_refused(void **state)
{
    (void)state;
    const char *yaml = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n"
                       "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                       "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                       "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                       "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
                       "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                       "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
                       "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
                       "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
    struct buf out = {0};
    char err[128] = "";
    assert_int_equal(yaml_to_json(yaml, strlen(yaml), &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "JSON output would exceed 16777216 bytes"));
    assert_true(buf_len(&out) <= YAML_JSON_MAX_OUTPUT);
    buf_release(&out);
}

static void test_too_many_anchors(void **state)
{
    (void)state;
    size_t cap = 1100 * 16 + 2;
    char *yaml = malloc(cap);
    size_t used = 0;
    used += (size_t)snprintf(yaml + used, cap - used, "[");
    for (int i = 0; i < 1100; i++)
        used += (size_t)snprintf(yaml + used, cap - used, "&a%d %d,", i, i);
    snprintf(yaml + used, cap - used, "]");
    expect_error(yaml, "more than 1024 anchors");
    free(yaml);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker_rejects_invalid_json),
        cmocka_unit_test(test_nested_maps_and_sequences),
        cmocka_unit_test(test_empty_document_is_null),
        cmocka_unit_test(test_only_first_document),
        cmocka_unit_test(test_appends_to_existing_output),
        cmocka_unit_test(test_booleans_and_nulls),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_floats),
        cmocka_unit_test(test_strings_stay_strings),
        cmocka_unit_test(test_keys_are_strings),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_envoy_bootstrap),
        cmocka_unit_test(test_example_config_converts),
        cmocka_unit_test(test_malformed_yaml),
        cmocka_unit_test(test_collection_keys_are_refused),
        cmocka_unit_test(test_depth_cap),
        cmocka_unit_test(test_aliases_expand),
        cmocka_unit_test(test_billion_laughs_is_refused),
        cmocka_unit_test(test_too_many_anchors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

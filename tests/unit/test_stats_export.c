/* Reading a segment as a whole and rendering it (shm/stats_export.h), and the
 * layout-2 additions to the segment: counter resets, per-slot records, host
 * stats, the owner's liveness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/stats.h"
#include "shm/stats_export.h"

struct fixture {
    char name[64];
    struct stats s;
    struct buf out;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "/legate-test-export.%d", (int)getpid());
    struct stats_layout layout = {
        .max_stats = 256, .max_histograms = 16, .n_slots = 4, .arena_size = 16384};
    if (stats_create(&f->s, f->name, &layout, 9, 3) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    stats_detach(&f->s);
    stats_unlink(f->name);
    buf_release(&f->out);
    free(f);
    return 0;
}

static char *rendered(struct fixture *f)
{
    buf_append(&f->out, "", 1);
    return f->out.data + f->out.start;
}

/* Add to `name` in `slot`. */
static int put(struct stats *s, uint32_t slot, const char *name, enum stat_kind kind, int64_t v)
{
    stats_set_slot(s, slot);
    int id = stats_register(s, name, kind);
    assert_true(id >= 0);
    if (kind == STAT_HISTOGRAM)
        stats_hist_record(s, id, (uint64_t)v);
    else
        stats_inc(s, id, (uint64_t)v);
    return id;
}

static void test_view_sums_slots_sorts_and_filters(void **state)
{
    struct fixture *f = *state;
    put(&f->s, 1, "cluster.b.upstream_rq_total", STAT_COUNTER, 3);
    put(&f->s, 2, "cluster.b.upstream_rq_total", STAT_COUNTER, 4);
    put(&f->s, 1, "cluster.a.upstream_cx_active", STAT_GAUGE, -2);
    put(&f->s, 2, "cluster.a.upstream_cx_active", STAT_GAUGE, 5);
    put(&f->s, 1, "server.unused", STAT_COUNTER, 0);
    struct stats_view v;
    assert_int_equal(stats_view_take(&f->s, NULL, &v), 0);
    assert_int_equal(v.n, 3);
    assert_string_equal(v.rows[0].name, "cluster.a.upstream_cx_active");
    assert_int_equal((int64_t)v.rows[0].value, 3);
    assert_string_equal(v.rows[1].name, "cluster.b.upstream_rq_total");
    assert_int_equal(v.rows[1].value, 7);
    assert_non_null(stats_view_find(&v, "server.unused"));
    assert_null(stats_view_find(&v, "server.nothing"));
    stats_view_free(&v);

    regex_t re;
    assert_int_equal(regcomp(&re, "rq_total$", REG_EXTENDED | REG_NOSUB), 0);
    struct stats_view_opts o = {.filter = &re, .per_slot = true};
    assert_int_equal(stats_view_take(&f->s, &o, &v), 0);
    assert_int_equal(v.n, 1);
    assert_int_equal(v.rows[0].per_slot[1], 3);
    assert_int_equal(v.rows[0].per_slot[2], 4);
    stats_view_free(&v);
    regfree(&re);

    struct stats_view_opts used = {.used_only = true};
    assert_int_equal(stats_view_take(&f->s, &used, &v), 0);
    assert_int_equal(v.n, 2);
    stats_view_free(&v);
}

static void test_host_stats_are_kept_apart(void **state)
{
    struct fixture *f = *state;
    put(&f->s, 1, "cluster.c.upstream_rq_total", STAT_COUNTER, 1);
    stats_set_slot(&f->s, 1);
    int h = stats_register_flags(&f->s, "cluster.c.host.127.0.0.1:80.rq_total", STAT_COUNTER,
                                 STAT_FLAG_HOST);
    stats_inc(&f->s, h, 5);
    enum stat_kind kind;
    uint32_t flags;
    assert_true(stats_entry_info(&f->s, (uint32_t)h, &kind, &flags));
    assert_int_equal(kind, STAT_COUNTER);
    assert_int_equal(flags, STAT_FLAG_HOST);
    struct stats_view v;
    assert_int_equal(stats_view_take(&f->s, NULL, &v), 0);
    assert_int_equal(v.n, 1);
    stats_view_free(&v);
    struct stats_view_opts o = {.hosts = true};
    assert_int_equal(stats_view_take(&f->s, &o, &v), 0);
    assert_int_equal(v.n, 1);
    assert_int_equal(v.rows[0].value, 5);
    stats_view_free(&v);
}

static void test_reset_counters_moves_only_the_baseline(void **state)
{
    struct fixture *f = *state;
    int c = put(&f->s, 1, "http.x.downstream_rq_total", STAT_COUNTER, 10);
    put(&f->s, 2, "http.x.downstream_rq_total", STAT_COUNTER, 5);
    int g = put(&f->s, 1, "http.x.downstream_cx_active", STAT_GAUGE, 4);
    int hist = put(&f->s, 1, "http.x.downstream_rq_time", STAT_HISTOGRAM, 7);
    stats_reset_counters(&f->s);
    assert_int_equal(stats_counter_value(&f->s, c), 0);
    assert_int_equal(stats_gauge_value(&f->s, g), 4);
    struct stats_hist_snapshot hs;
    stats_hist_read(&f->s, hist, &hs);
    assert_int_equal(hs.count, 1);
    /* the writers' cells are untouched: they keep counting from where they were */
    assert_int_equal(stats_slot_value(&f->s, c, 1), 10);
    stats_set_slot(&f->s, 2);
    stats_inc(&f->s, c, 2);
    assert_int_equal(stats_counter_value(&f->s, c), 2);
    /* a read-only view cannot reset */
    struct stats r;
    assert_int_equal(stats_attach(&r, f->name, true, NULL), 0);
    stats_inc(&f->s, c, 1);
    stats_reset_counters(&r);
    assert_int_equal(stats_counter_value(&r, c), 3);
    stats_detach(&r);
}

static void test_slot_records(void **state)
{
    struct fixture *f = *state;
    struct stats_slot_info si;
    assert_true(stats_slot_info(&f->s, 2, &si));
    assert_int_equal(atomic_load(&si.state), STATS_SLOT_UNUSED);
    stats_slot_claim(&f->s, 2, 4242, "a title far longer than the forty-eight bytes kept for it",
                     7);
    assert_true(stats_slot_info(&f->s, 2, &si));
    assert_int_equal(atomic_load(&si.state), STATS_SLOT_ALIVE);
    assert_int_equal(si.pid, 4242);
    assert_int_equal(si.epoch, 7);
    assert_int_equal(strlen(si.title), sizeof(si.title) - 1);
    stats_slot_exited(&f->s, 2);
    assert_true(stats_slot_info(&f->s, 2, &si));
    assert_int_equal(atomic_load(&si.state), STATS_SLOT_EXITED);
    assert_false(stats_slot_info(&f->s, 4, &si));
    stats_slot_claim(&f->s, 99, 1, "out of range", 0); /* ignored */
}

static void test_owner_alive(void **state)
{
    struct fixture *f = *state;
    assert_true(stats_owner_alive(&f->s));
    atomic_store(&f->s.hdr->owner_alive, 0);
    assert_false(stats_owner_alive(&f->s));
    atomic_store(&f->s.hdr->owner_alive, 1);
    f->s.hdr->supervisor_pid = 0;
    assert_false(stats_owner_alive(&f->s));
    /* A pid reused by a process started after the segment was made is not
     * its owner: a child started now, against a segment made 100 s ago. */
    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    assert_true(child > 0);
    f->s.hdr->supervisor_pid = child;
    int64_t made = f->s.hdr->owner_since_unix;
    assert_true(stats_owner_alive(&f->s));
    f->s.hdr->owner_since_unix = made - 100;
    assert_false(stats_owner_alive(&f->s));
    /* A hot restart hands the segment to the next supervisor: from then on,
     * it is the owner, though it started long after the segment was made. */
    stats_set_owner(&f->s, child, 5);
    assert_true(stats_owner_alive(&f->s));
    assert_int_equal(f->s.hdr->epoch, 5);
    assert_int_equal(f->s.hdr->created_unix, made);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
}

static void test_text_and_json(void **state)
{
    struct fixture *f = *state;
    put(&f->s, 1, "a.count", STAT_COUNTER, 2);
    put(&f->s, 1, "b.gauge", STAT_GAUGE, -1);
    for (int i = 1; i <= 100; i++)
        put(&f->s, 1, "c.time", STAT_HISTOGRAM, i);
    stats_register(&f->s, "d.empty", STAT_HISTOGRAM);
    stats_register(&f->s, "e \"quoted\" \\ name\x7f", STAT_COUNTER);
    struct stats_view v;
    assert_int_equal(stats_view_take(&f->s, NULL, &v), 0);
    stats_render_text(&v, &f->out);
    assert_string_equal(rendered(f), "a.count: 2\n"
                                     "b.gauge: -1\n"
                                     "c.time: P0(nan,1) P25(nan,25) P50(nan,51) P75(nan,79) "
                                     "P90(nan,95) P95(nan,95) P99(nan,103) P99.5(nan,103) "
                                     "P99.9(nan,103) P100(nan,103)\n"
                                     "d.empty: No recorded values\n");
    f->out.start = f->out.end = 0;
    stats_render_json(&v, &f->out);
    const char *js = rendered(f);
    assert_non_null(strstr(js, "{\"stats\":[{\"name\":\"a.count\",\"value\":2},"
                               "{\"name\":\"b.gauge\",\"value\":-1},"));
    assert_non_null(strstr(js, "{\"name\":\"c.time\",\"values\":[{\"interval\":null,"
                               "\"cumulative\":1},"));
    assert_non_null(strstr(js, "\"count\":100,\"sum\":5050}"));
    assert_non_null(strstr(js, "{\"name\":\"d.empty\",\"values\":[{\"interval\":null,"
                               "\"cumulative\":null}"));
    stats_view_free(&v);
}

static void test_json_strings_are_always_valid(void **state)
{
    struct fixture *f = *state;
    const char raw[] = "a\"b\\c\n\x01 \xc3\xa9 \xff \xe0\x80\x80 \xf0\x9f\x98\x80";
    json_append_string(&f->out, raw, sizeof(raw) - 1);
    assert_string_equal(rendered(f), "\"a\\\"b\\\\c\\u000a\\u0001 \xc3\xa9 \\ufffd \\ufffd\\ufffd"
                                     "\\ufffd \xf0\x9f\x98\x80\"");
}

static void test_prometheus_names_and_tags(void **state)
{
    struct fixture *f = *state;
    put(&f->s, 1, "cluster.svc.upstream_rq_total", STAT_COUNTER, 9);
    put(&f->s, 1, "cluster.svc.upstream_rq_200", STAT_COUNTER, 8);
    put(&f->s, 1, "cluster.svc.upstream_rq_2xx", STAT_COUNTER, 8);
    put(&f->s, 1, "cluster.svc.membership_total", STAT_GAUGE, 2);
    put(&f->s, 1, "cluster.svc.upstream_cx_connect_ms", STAT_HISTOGRAM, 3);
    put(&f->s, 1, "http.in.downstream_rq_5xx", STAT_COUNTER, 1);
    put(&f->s, 1, "listener.127.0.0.1_8080.downstream_cx_total", STAT_COUNTER, 4);
    put(&f->s, 1, "listener.[__1]_8080.downstream_cx_total", STAT_COUNTER, 1);
    put(&f->s, 1, "server.live", STAT_GAUGE, 1);
    struct stats_view v;
    assert_int_equal(stats_view_take(&f->s, NULL, &v), 0);
    stats_render_prometheus(&v, &f->out);
    const char *p = rendered(f);
    static const char *const want[] = {
        "# TYPE envoy_cluster_upstream_rq_total counter\n"
        "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"svc\"} 9\n",
        "envoy_cluster_upstream_rq_code_total{envoy_cluster_name=\"svc\","
        "envoy_response_code=\"200\"} 8\n",
        "envoy_cluster_upstream_rq_xx_total{envoy_cluster_name=\"svc\","
        "envoy_response_code_class=\"2\"} 8\n",
        "# TYPE envoy_cluster_membership gauge\n"
        "envoy_cluster_membership{envoy_cluster_name=\"svc\"} 2\n",
        "# TYPE envoy_cluster_upstream_cx_connect_seconds histogram\n",
        "envoy_cluster_upstream_cx_connect_seconds_bucket{envoy_cluster_name=\"svc\","
        "le=\"0.001\"} 0\n",
        "envoy_cluster_upstream_cx_connect_seconds_bucket{envoy_cluster_name=\"svc\","
        "le=\"0.005\"} 1\n",
        "envoy_cluster_upstream_cx_connect_seconds_bucket{envoy_cluster_name=\"svc\","
        "le=\"+Inf\"} 1\n",
        "envoy_cluster_upstream_cx_connect_seconds_sum{envoy_cluster_name=\"svc\"} 0.003",
        "envoy_cluster_upstream_cx_connect_seconds_count{envoy_cluster_name=\"svc\"} 1\n",
        "envoy_http_downstream_rq_xx_total{envoy_http_conn_manager_prefix=\"in\","
        "envoy_response_code_class=\"5\"} 1\n",
        "envoy_listener_downstream_cx_total{envoy_listener_address=\"127.0.0.1_8080\"} 4\n",
        "envoy_listener_downstream_cx_total{envoy_listener_address=\"[__1]_8080\"} 1\n",
        "# TYPE envoy_server_live gauge\nenvoy_server_live 1\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (strstr(p, want[i]) == NULL)
            fail_msg("missing:\n%s\nin:\n%s", want[i], p);
    /* one TYPE line per family, however many series */
    const char *first = strstr(p, "# TYPE envoy_listener_downstream_cx_total");
    assert_non_null(first);
    assert_null(strstr(first + 1, "# TYPE envoy_listener_downstream_cx_total"));
    stats_view_free(&v);
}

/* A reader trusts the header it validated, not what the header says later:
 * another process can rewrite it at any time. */
static void test_header_rewritten_after_attach(void **state)
{
    struct fixture *f = *state;
    put(&f->s, 1, "a.count", STAT_COUNTER, 2);
    put(&f->s, 1, "b.time", STAT_HISTOGRAM, 5);
    struct stats r;
    assert_int_equal(stats_attach(&r, f->name, true, NULL), 0);
    struct stats_view v;
    struct stats_view_opts o = {.per_slot = true};
    assert_int_equal(stats_view_take(&r, &o, &v), 0);
    f->s.hdr->n_slots = 1u << 20;
    f->s.hdr->max_stats = 1u << 24;
    f->s.hdr->max_histograms = 1u << 24;
    f->s.hdr->arena_size = 1ull << 40;
    f->s.hdr->cells_off = 1ull << 40;
    f->s.hdr->hists_off = 1ull << 40;
    f->s.hdr->baseline_off = 1ull << 40;
    atomic_store(&f->s.hdr->n_reserved, 1u << 24);
    assert_int_equal(stats_view_refresh(&r, &o, &v), 0); /* n_reserved grew: a full take */
    assert_int_equal(v.n, 2);
    assert_int_equal(v.rows[0].value, 2);
    stats_render_prometheus(&v, &f->out);
    stats_view_free(&v);
    stats_detach(&r);
}

/* Names that are not UTF-8 or hold control bytes never reach an output. */
static void test_unprintable_names_are_left_out(void **state)
{
    struct fixture *f = *state;
    put(&f->s, 1, "good.\xc3\xa9", STAT_COUNTER, 1);
    put(&f->s, 1, "bad.\xf8\x80\x80", STAT_COUNTER, 1);
    put(&f->s, 1, "bad.\xc3", STAT_COUNTER, 1);
    put(&f->s, 1, "bad.\x1b[2J", STAT_COUNTER, 1);
    struct stats_view v;
    assert_int_equal(stats_view_take(&f->s, NULL, &v), 0);
    assert_int_equal(v.n, 1);
    assert_string_equal(v.rows[0].name, "good.\xc3\xa9");
    stats_view_free(&v);
}

static void test_filters_refuse_what_would_take_exponential_time(void **state)
{
    (void)state;
    regex_t re;
    char err[128];
    assert_int_equal(stats_filter_compile(&re, "(a*)\\1", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "backreferences"));
    assert_int_equal(stats_filter_compile(&re, "((a{1,100}){1,100}){1,100}", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bounded repeats"));
    char longer[STATS_FILTER_MAX + 2];
    memset(longer, 'a', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    assert_int_equal(stats_filter_compile(&re, longer, err, sizeof(err)), -1);
    assert_int_equal(stats_filter_compile(&re, "(", err, sizeof(err)), -1);
    assert_int_equal(stats_filter_compile(&re, "^cluster\\.a\\{b\\}|x+$", err, sizeof(err)), 0);
    assert_int_equal(regexec(&re, "cluster.a{b}", 0, NULL, 0), 0);
    regfree(&re);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_view_sums_slots_sorts_and_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_stats_are_kept_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_counters_moves_only_the_baseline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_slot_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_owner_alive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_and_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_strings_are_always_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prometheus_names_and_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_rewritten_after_attach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unprintable_names_are_left_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters_refuse_what_would_take_exponential_time, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

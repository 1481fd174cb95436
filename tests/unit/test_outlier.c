/* Outlier detection decisions: consecutive ejections and their return at an
 * interval tick, the ejection-time multiplier (growth, cap, decay),
 * max_ejection_percent (strict, and always_eject_one_host), enforcement
 * percentages, the success-rate checks (external and local origin),
 * membership changes, and the edges (no hosts, huge counters). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "upstream/outlier.h"

#define MAXH 16

/* Envoy's defaults, as common/config.h lists them. */
static struct cfg_outlier envoy_defaults(void)
{
    return (struct cfg_outlier){
        .enabled = true,
        .consecutive_5xx = 5,
        .consecutive_gateway_failure = 5,
        .consecutive_local_origin_failure = 5,
        .interval_ms = 10000,
        .base_ejection_time_ms = 30000,
        .max_ejection_time_ms = 300000,
        .max_ejection_percent = 10,
        .enforcing_consecutive_5xx = 100,
        .enforcing_consecutive_gateway_failure = 0,
        .enforcing_consecutive_local_origin_failure = 100,
        .enforcing_success_rate = 100,
        .success_rate_minimum_hosts = 5,
        .success_rate_request_volume = 100,
        .success_rate_stdev_factor = 1900,
        .split_external_local_origin_errors = false,
    };
}

/* Records the hosts od_on_interval reports. */
struct changes {
    size_t n;
    size_t host[MAXH];
};

static void record_change(void *ctx, size_t host)
{
    struct changes *c = ctx;
    if (c->n < MAXH)
        c->host[c->n++] = host;
}

/* An interval tick that expects exactly the changes listed in `want` (or none). */
static void tick_expect(struct od_detector *d, uint64_t now_ms, size_t n_want, const size_t *want)
{
    struct changes c = {0};
    assert_int_equal(od_on_interval(d, now_ms, record_change, &c), n_want);
    assert_int_equal(c.n, n_want);
    for (size_t i = 0; i < n_want; i++)
        assert_int_equal(c.host[i], want[i]);
}

static void set_interval(struct od_host *h, uint64_t success, uint64_t total)
{
    h->interval_success = success;
    h->interval_total = total;
}

static void test_consecutive_ejection_returns_at_a_tick(void **state)
{
    (void)state;
    struct cfg_outlier cfg = envoy_defaults();
    struct od_host hosts[10] = {0};
    struct od_detector d;
    od_init(&d, &cfg, hosts, 10, 1);

    assert_true(od_on_consecutive(&d, 3, OD_CONSECUTIVE_5XX, 5000));
    assert_true(hosts[3].ejected);
    assert_int_equal(hosts[3].ejected_for, OD_CONSECUTIVE_5XX);
    assert_int_equal(hosts[3].ejection_multiplier, 1);
    assert_int_equal(d.stats.ejections_active, 1);
    assert_int_equal(d.stats.ejections_detected[OD_CONSECUTIVE_5XX], 1);
    assert_int_equal(d.stats.ejections_enforced[OD_CONSECUTIVE_5XX], 1);
    assert_int_equal(d.stats.ejections_enforced_total, 1);

    /* ejected at 5 s for 30 s: still out at the ticks of 10, 20 and 30 s */
    tick_expect(&d, 10000, 0, NULL);
    tick_expect(&d, 20000, 0, NULL);
    tick_expect(&d, 30000, 0, NULL);
    assert_true(hosts[3].ejected);
    /* back at the first tick after 35 s, not at 35 s itself */
    size_t want[] = {3};
    tick_expect(&d, 40000, 1, want);
    assert_false(hosts[3].ejected);
    assert_int_equal(d.stats.ejections_active, 0);

    /* a second detection of an ejected host is ignored entirely */
    assert_true(od_on_consecutive(&d, 3, OD_CONSECUTIVE_5XX, 41000));
    assert_false(od_on_consecutive(&d, 3, OD_CONSECUTIVE_5XX, 42000));
    assert_int_equal(d.stats.ejections_detected[OD_CONSECUTIVE_5XX], 2);
    assert_int_equal(d.stats.ejections_overflow, 0);
}

static void test_multiplier_grows_caps_and_decays(void **state)
{
    (void)state;
    struct cfg_outlier cfg = envoy_defaults();
    cfg.max_ejection_time_ms = 60000; /* two base times */
    cfg.max_ejection_percent = 100;
    struct od_host hosts[2] = {0};
    struct od_detector d;
    od_init(&d, &cfg, hosts, 2, 1);
    size_t h0[] = {0};

    /* first ejection: 30 s */
    assert_true(od_on_consecutive(&d, 0, OD_CONSECUTIVE_5XX, 0));
    tick_expect(&d, 20000, 0, NULL);
    tick_expect(&d, 30000, 1, h0);

    /* ejected again before any healthy tick: 2 x 30 s = 60 s */
    assert_true(od_on_consecutive(&d, 0, OD_CONSECUTIVE_5XX, 31000));
    assert_int_equal(hosts[0].ejection_multiplier, 2);
    for (uint64_t t = 40000; t <= 90000; t += 10000)
        tick_expect(&d, t, 0, NULL); /* 59 s at the tick of 90 s */
    tick_expect(&d, 100000, 1, h0);

    /* third time: 3 x 30 s would pass max_ejection_time; the multiplier
     * stays at 2 and the time at 60 s */
    assert_true(od_on_consecutive(&d, 0, OD_CONSECUTIVE_5XX, 101000));
    assert_int_equal(hosts[0].ejection_multiplier, 2);
    for (uint64_t t = 110000; t <= 160000; t += 10000)
        tick_expect(&d, t, 0, NULL);
    tick_expect(&d, 170000, 1, h0);

    /* two healthy ticks bring it back to zero; the tick that brought the
     * host back did not count */
    assert_int_equal(hosts[0].ejection_multiplier, 2);
    tick_expect(&d, 180000, 0, NULL);
    assert_int_equal(hosts[0].ejection_multiplier, 1);
    tick_expect(&d, 190000, 0, NULL);
    assert_int_equal(hosts[0].ejection_multiplier, 0);
    tick_expect(&d, 200000, 0, NULL);
    assert_int_equal(hosts[0].ejection_multiplier, 0);

    /* so the next ejection is the base time again */
    assert_true(od_on_consecutive(&d, 0, OD_CONSECUTIVE_5XX, 200000));
    assert_int_equal(hosts[0].ejection_multiplier, 1);
    tick_expect(&d, 220000, 0, NULL);
    tick_expect(&d, 230000, 1, h0);

    /* a host that was never ejected stays at zero */
    assert_int_equal(hosts[1].ejection_multiplier, 0);
}

static void test_max_ejection_percent_ten_hosts(void **state)
{
    (void)state;
    struct cfg_outlier cfg = envoy_defaults(); /* 10 % */
    struct od_host hosts[10] = {0};
    struct od_detector d;
    od_init(&d, &cfg, hosts, 10, 1);

    assert_true(od_on_consecutive(&d, 0, OD_CONSECUTIVE_5XX, 0));  /* 1 of 10: 10 % */
    assert_false(od_on_consecutive(&d, 1, OD_CONSECUTIVE_5XX, 0)); /* 2 of 10: 20 % */
    assert_false(hosts[1].ejected);
    assert_int_equal(d.stats.ejections_active, 1);
    assert_int_equal(d.stats.ejections_overflow, 1);
    assert_int_equal(d.stats.ejections_detected[OD_CONSECUTIVE_5XX], 2);
    assert_int_equal(d.stats.ejections_enforced[OD_CONSECUTIVE_5XX], 1);
    assert_int_equal(d.stats.ejections_total, 1);

    /* once the first is back there is room again */
    size_t h0[] = {0};
    tick_expect(&d, 30000, 1, h0);
    assert_true(od_on_consecutive(&d, 1, OD_CONSECUTIVE_5XX, 30000));

    /* 20 % of 10 allows two */
    cfg.max_ejection_percent = 20;
    assert_true(od_on_consecutive(&d, 2, OD_CONSECUTIVE_5XX, 30000));
    assert_false(od_on_consecutive(&d, 3, OD_CONSECUTIVE_5XX, 30000));
    assert_int_equal(d.stats.ejections_active, 2);
    assert_int_equal(d.stats.ejections_overflow, 2);
}

static void test_max_ejection_percent_small_cluster(void **state)
{
    (void)state;
    struct cfg_outlier cfg = envoy_defaults(); /* 10 % */
    struct od_host hosts[3] = {0};
    struct od_detector d;

    /* Envoy's default since 1.27: 10 % of 3 hosts is no host at all */
    od_init(&d, &cfg, hosts, 3, 1);
    assert_false(od_on_consecutive(&d, 0, OD_CONSECUTIVE_5XX, 0));
    assert_int_equal(d.stats.ejections_active, 0);
    assert_int_equal(d.stats.ejections_overflow, 1);
    assert_int_equal(d.stats.ejections_detected[OD_CONSECUTIVE_5XX], 1);

    /* always_eject_one_host: the first one whatever the percentage, and only it */
    memset(hosts, 0, sizeof(hosts));
    od_init(&d, &cfg, hosts, 3, 1);
    d.always_eject_one_host = true;
    assert_true(od_on_consecutive(&d, 0, OD_CONSECUTIVE_5XX, 0));
    assert_false(od_on_consecutive(&d, 1, OD_CONSECUTIVE_5XX, 0));
    assert_int_equal(d.stats.ejections_active, 1);
    assert_int_equal(d.stats.ejections_overflow, 1);

    /* 0 % ejects nothing unless always_eject_one_host */
    cfg.max_ejection_percent = 0;
    memset(hosts, 0, sizeof(hosts));
    od_init(&d, &cfg, hosts, 3, 1);
    assert_false(od_on_consecutive(&d, 0, OD_CONSECUTIVE_5XX, 0));
    /* above 100 behaves as 100 */
    cfg.max_ejection_percent = 1000;
    for (size_t i = 0; i < 3; i++)
        assert_true(od_on_consecutive(&d, i, OD_CONSECUTIVE_5XX, 0));
    assert_int_equal(d.stats.ejections_active, 3);
}

static void test_enforcement_zero_detects_only(void **state)
{
    (void)state;
    struct cfg_outlier cfg = envoy_defaults();
    cfg.max_ejection_percent = 100;
    cfg.enforcing_consecutive_5xx = 0;
    struct od_host hosts[4] = {0};
    struct od_detector d;
    od_init(&d, &cfg, hosts, 4, 7);

    assert_false(od_on_consecutive(&d, 0, OD_CONSECUTIVE_5XX, 0));
    /* Envoy's default for gateway failures is 0: detected, never enforced */
    assert_false(od_on_consecutive(&d, 1, OD_CONSECUTIVE_GATEWAY_FAILURE, 0));
    assert_int_equal(d.stats.ejections_detected[OD_CONSECUTIVE_5XX], 1);
    assert_int_equal(d.stats.ejections_detected[OD_CONSECUTIVE_GATEWAY_FAILURE], 1);
    assert_int_equal(d.stats.ejections_enforced_total, 0);
    assert_int_equal(d.stats.ejections_active, 0);
    assert_int_equal(d.stats.ejections_total, 2); /* passed the percentage check */
    assert_false(hosts[0].ejected || hosts[1].ejected);
    assert_int_equal(hosts[0].ejection_multiplier, 0);

    /* local origin consecutive failures count only in split mode */
    assert_false(od_on_consecutive(&d, 2, OD_CONSECUTIVE_LOCAL_ORIGIN_FAILURE, 0));
    assert_int_equal(d.stats.ejections_detected[OD_CONSECUTIVE_LOCAL_ORIGIN_FAILURE], 0);
    cfg.split_external_local_origin_errors = true;
    assert_true(od_on_consecutive(&d, 2, OD_CONSECUTIVE_LOCAL_ORIGIN_FAILURE, 0));
    assert_int_equal(d.stats.ejections_enforced[OD_CONSECUTIVE_LOCAL_ORIGIN_FAILURE], 1);

    /* a success-rate reason, or an index past the end, is not a consecutive detection */
    assert_false(od_on_consecutive(&d, 3, OD_SUCCESS_RATE, 0));
    assert_false(od_on_consecutive(&d, 4, OD_CONSECUTIVE_5XX, 0));
    assert_int_equal(d.stats.ejections_detected[OD_SUCCESS_RATE], 0);
}

static void test_enforcement_hundred_ejects(void **state)
{
    (void)state;
    struct cfg_outlier cfg = envoy_defaults();
    cfg.max_ejection_percent = 100;
    cfg.enforcing_consecutive_gateway_failure = 100;
    struct od_host hosts[2] = {0};
    struct od_detector d;
    od_init(&d, &cfg, hosts, 2, 7);

    assert_true(od_on_consecutive(&d, 0, OD_CONSECUTIVE_GATEWAY_FAILURE, 0));
    assert_true(od_on_consecutive(&d, 1, OD_CONSECUTIVE_5XX, 0));
    assert_int_equal(d.stats.ejections_enforced[OD_CONSECUTIVE_GATEWAY_FAILURE], 1);
    assert_int_equal(d.stats.ejections_enforced[OD_CONSECUTIVE_5XX], 1);
    assert_int_equal(d.stats.ejections_enforced_total, 2);
    assert_int_equal(d.stats.ejections_active, 2);
}

static void test_enforcement_fifty_is_about_half(void **state)
{
    (void)state;
    struct cfg_outlier cfg = envoy_defaults();
    cfg.max_ejection_percent = 100;
    cfg.enforcing_consecutive_5xx = 50;
    struct od_host hosts[1];
    struct od_detector d;

    /* one detection under each of 2000 seeds */
    unsigned ejected = 0;
    for (uint64_t seed = 1; seed <= 2000; seed++) {
        memset(hosts, 0, sizeof(hosts));
        od_init(&d, &cfg, hosts, 1, seed);
        ejected += od_on_consecutive(&d, 0, OD_CONSECUTIVE_5XX, 0);
        assert_int_equal(d.stats.ejections_detected[OD_CONSECUTIVE_5XX], 1);
    }
    assert_in_range(ejected, 850, 1150);

    /* and along one seed's stream: a detection per host of 2000 */
    static struct od_host many[2000];
    memset(many, 0, sizeof(many));
    od_init(&d, &cfg, many, 2000, 12345);
    for (size_t i = 0; i < 2000; i++)
        od_on_consecutive(&d, i, OD_CONSECUTIVE_5XX, 0);
    assert_in_range(d.stats.ejections_enforced_total, 850, 1150);
    assert_int_equal(d.stats.ejections_detected[OD_CONSECUTIVE_5XX], 2000);
    assert_int_equal(d.stats.ejections_active, d.stats.ejections_enforced_total);
}

/* Five hosts at 100 % and one at 50 %, 100 requests each. Mean 91.67 %,
 * population stdev 18.63: the threshold is 56.27 % with factor 1.9. */
static void five_good_one_bad(struct od_host *hosts)
{
    memset(hosts, 0, 6 * sizeof(*hosts));
    for (size_t i = 0; i < 5; i++)
        set_interval(&hosts[i], 100, 100);
    set_interval(&hosts[5], 50, 100);
}

static void test_success_rate_ejects_the_outlier(void **state)
{
    (void)state;
    struct cfg_outlier cfg = envoy_defaults();
    cfg.max_ejection_percent = 50;
    struct od_host hosts[6];
    struct od_detector d;
    five_good_one_bad(hosts);
    od_init(&d, &cfg, hosts, 6, 1);

    size_t h5[] = {5};
    tick_expect(&d, 10000, 1, h5);
    assert_true(hosts[5].ejected);
    assert_int_equal(hosts[5].ejected_for, OD_SUCCESS_RATE);
    assert_int_equal(d.stats.ejections_detected[OD_SUCCESS_RATE], 1);
    assert_int_equal(d.stats.ejections_enforced[OD_SUCCESS_RATE], 1);
    for (size_t i = 0; i < 6; i++) /* the interval counters start again */
        assert_int_equal(hosts[i].interval_total, 0);

    /* the ejected host is not judged while out, however bad it looks */
    five_good_one_bad(hosts);
    hosts[5].ejected = true;
    hosts[5].ejection_multiplier = 1;
    hosts[5].ejected_at_ms = 10000;
    set_interval(&hosts[5], 0, 100);
    tick_expect(&d, 20000, 0, NULL);
    assert_int_equal(d.stats.ejections_detected[OD_SUCCESS_RATE], 1);

    /* the success rate obeys max_ejection_percent too: 1 of 6 is above 10 % */
    cfg.max_ejection_percent = 10;
    five_good_one_bad(hosts);
    od_init(&d, &cfg, hosts, 6, 1);
    tick_expect(&d, 10000, 0, NULL);
    assert_int_equal(d.stats.ejections_detected[OD_SUCCESS_RATE], 1);
    assert_int_equal(d.stats.ejections_overflow, 1);
}

static void test_success_rate_needs_hosts_and_volume(void **state)
{
    (void)state;
    struct cfg_outlier cfg = envoy_defaults();
    cfg.max_ejection_percent = 50;
    struct od_host hosts[6];
    struct od_detector d;

    /* seven hosts needed, six have the volume */
    cfg.success_rate_minimum_hosts = 7;
    five_good_one_bad(hosts);
    od_init(&d, &cfg, hosts, 6, 1);
    tick_expect(&d, 10000, 0, NULL);
    assert_int_equal(d.stats.ejections_detected[OD_SUCCESS_RATE], 0);

    /* 99 requests each, 100 needed */
    cfg.success_rate_minimum_hosts = 5;
    five_good_one_bad(hosts);
    for (size_t i = 0; i < 6; i++)
        set_interval(&hosts[i], i < 5 ? 99 : 49, 99);
    od_init(&d, &cfg, hosts, 6, 1);
    tick_expect(&d, 10000, 0, NULL);

    /* the bad host alone short of volume: it is left out, the rest agree */
    five_good_one_bad(hosts);
    set_interval(&hosts[5], 40, 80);
    od_init(&d, &cfg, hosts, 6, 1);
    tick_expect(&d, 10000, 0, NULL);

    /* four hosts with volume of five needed: nothing, even at 0 % */
    five_good_one_bad(hosts);
    set_interval(&hosts[0], 0, 0);
    set_interval(&hosts[1], 0, 50);
    set_interval(&hosts[5], 0, 100);
    od_init(&d, &cfg, hosts, 6, 1);
    tick_expect(&d, 10000, 0, NULL);
    assert_int_equal(d.stats.ejections_detected[OD_SUCCESS_RATE], 0);

    /* equal rates whose floating-point mean comes out a hair above them
     * (5/301, seven hosts) eject nobody, even with a factor of 0 */
    struct od_host seven[7] = {0};
    for (size_t i = 0; i < 7; i++)
        set_interval(&seven[i], 5, 301);
    cfg.success_rate_stdev_factor = 0;
    cfg.max_ejection_percent = 100;
    od_init(&d, &cfg, seven, 7, 1);
    tick_expect(&d, 10000, 0, NULL);
    assert_int_equal(d.stats.ejections_detected[OD_SUCCESS_RATE], 0);
}

static void test_success_rate_stdev_factor(void **state)
{
    (void)state;
    struct cfg_outlier cfg = envoy_defaults();
    cfg.max_ejection_percent = 50;
    struct od_host hosts[6];
    struct od_detector d;
    size_t h5[] = {5};

    /* factor 3.0: threshold 91.67 - 55.9 = 35.8 %, the 50 % host stays */
    cfg.success_rate_stdev_factor = 3000;
    five_good_one_bad(hosts);
    od_init(&d, &cfg, hosts, 6, 1);
    tick_expect(&d, 10000, 0, NULL);

    /* nor at 0 %: one low host among n is at most sqrt(n - 1) population
     * stdevs below the mean (2.24 for 6), so a factor of 3 never ejects it */
    five_good_one_bad(hosts);
    set_interval(&hosts[5], 0, 100);
    od_init(&d, &cfg, hosts, 6, 1);
    tick_expect(&d, 10000, 0, NULL);

    /* factor 1.0 with a milder outlier at 80 %: mean 96.67, stdev 7.45,
     * threshold 89.2 */
    cfg.success_rate_stdev_factor = 1000;
    five_good_one_bad(hosts);
    set_interval(&hosts[5], 80, 100);
    od_init(&d, &cfg, hosts, 6, 1);
    tick_expect(&d, 10000, 1, h5);

    /* factor 1.9 on the same numbers: threshold 82.5, so 80 % is out too;
     * factor 2.3: threshold 79.5, 80 % stays */
    cfg.success_rate_stdev_factor = 1900;
    five_good_one_bad(hosts);
    set_interval(&hosts[5], 80, 100);
    od_init(&d, &cfg, hosts, 6, 1);
    tick_expect(&d, 10000, 1, h5);
    cfg.success_rate_stdev_factor = 2300;
    five_good_one_bad(hosts);
    set_interval(&hosts[5], 80, 100);
    od_init(&d, &cfg, hosts, 6, 1);
    tick_expect(&d, 10000, 0, NULL);
}

/* Six hosts whose external requests all succeed; host 2 fails half of its
 * 100 connections (local origin). */
static void local_origin_outlier(struct od_host *hosts)
{
    memset(hosts, 0, 6 * sizeof(*hosts));
    for (size_t i = 0; i < 6; i++) {
        set_interval(&hosts[i], 200, 200);
        hosts[i].interval_local_success = i == 2 ? 50 : 100;
        hosts[i].interval_local_total = 100;
    }
}

static void test_success_rate_local_origin_split(void **state)
{
    (void)state;
    struct cfg_outlier cfg = envoy_defaults();
    cfg.max_ejection_percent = 50;
    struct od_host hosts[6];
    struct od_detector d;
    size_t h2[] = {2};

    /* external traffic all fine; host 2 fails half its connections */
    local_origin_outlier(hosts);

    /* not split: the local_* counters are not read */
    od_init(&d, &cfg, hosts, 6, 1);
    tick_expect(&d, 10000, 0, NULL);

    /* split: the local-origin pass ejects it */
    cfg.split_external_local_origin_errors = true;
    local_origin_outlier(hosts);
    od_init(&d, &cfg, hosts, 6, 1);
    tick_expect(&d, 10000, 1, h2);
    assert_int_equal(hosts[2].ejected_for, OD_SUCCESS_RATE_LOCAL_ORIGIN);
    assert_int_equal(d.stats.ejections_detected[OD_SUCCESS_RATE_LOCAL_ORIGIN], 1);
    assert_int_equal(d.stats.ejections_enforced[OD_SUCCESS_RATE_LOCAL_ORIGIN], 1);
    assert_int_equal(d.stats.ejections_detected[OD_SUCCESS_RATE], 0);
    assert_int_equal(hosts[2].interval_local_total, 0);

    /* its enforcement is Envoy's enforcing_local_origin_success_rate, not
     * enforcing_success_rate (100 here) */
    local_origin_outlier(hosts);
    od_init(&d, &cfg, hosts, 6, 1);
    d.enforcing_local_origin_success_rate = 0;
    tick_expect(&d, 10000, 0, NULL);
    assert_int_equal(d.stats.ejections_detected[OD_SUCCESS_RATE_LOCAL_ORIGIN], 1);
    assert_int_equal(d.stats.ejections_enforced_total, 0);

    /* and an external outlier is still found by the external pass in split mode */
    five_good_one_bad(hosts);
    od_init(&d, &cfg, hosts, 6, 1);
    size_t h5[] = {5};
    tick_expect(&d, 10000, 1, h5);
    assert_int_equal(hosts[5].ejected_for, OD_SUCCESS_RATE);
}

static void test_no_hosts(void **state)
{
    (void)state;
    struct cfg_outlier cfg = envoy_defaults();
    cfg.success_rate_minimum_hosts = 0;
    struct od_detector d;
    od_init(&d, &cfg, NULL, 0, 1);
    d.always_eject_one_host = true;
    assert_false(od_on_consecutive(&d, 0, OD_CONSECUTIVE_5XX, 0));
    assert_int_equal(od_on_interval(&d, 10000, NULL, NULL), 0);
    od_set_hosts(&d, NULL, 0);
    assert_int_equal(d.stats.ejections_active, 0);
    assert_int_equal(d.stats.ejections_detected[OD_CONSECUTIVE_5XX], 0);
}

static void test_membership_change_keeps_state(void **state)
{
    (void)state;
    struct cfg_outlier cfg = envoy_defaults();
    cfg.max_ejection_percent = 100;
    struct od_host old_hosts[3] = {0};
    struct od_detector d;
    od_init(&d, &cfg, old_hosts, 3, 1);
    assert_true(od_on_consecutive(&d, 1, OD_CONSECUTIVE_5XX, 1000));
    assert_true(od_on_consecutive(&d, 2, OD_CONSECUTIVE_5XX, 1000));
    assert_int_equal(d.stats.ejections_active, 2);

    /* host 1 kept (now index 0), host 2 removed, one host added */
    struct od_host new_hosts[2] = {old_hosts[1], {0}};
    od_set_hosts(&d, new_hosts, 2);
    assert_int_equal(d.stats.ejections_active, 1);
    assert_true(new_hosts[0].ejected);
    assert_int_equal(new_hosts[0].ejected_at_ms, 1000);
    size_t h0[] = {0};
    tick_expect(&d, 30000, 0, NULL);
    tick_expect(&d, 40000, 1, h0); /* its own ejection time, carried over */
    assert_int_equal(d.stats.ejections_active, 0);
    assert_int_equal(d.stats.ejections_enforced_total, 2); /* history stays */
}

static void test_huge_values_are_safe(void **state)
{
    (void)state;
    struct cfg_outlier cfg = envoy_defaults();
    cfg.max_ejection_percent = 100;
    cfg.base_ejection_time_ms = UINT64_MAX / 2;
    cfg.max_ejection_time_ms = UINT64_MAX;
    struct od_host hosts[6];
    struct od_detector d;

    /* counters at the top of their range, success above total clamped */
    memset(hosts, 0, sizeof(hosts));
    for (size_t i = 0; i < 6; i++)
        set_interval(&hosts[i], UINT64_MAX, UINT64_MAX);
    hosts[0].interval_success = UINT64_MAX / 2;
    hosts[1].interval_total = UINT64_MAX - 1; /* success > total: read as 100 % */
    od_init(&d, &cfg, hosts, 6, 1);
    size_t h0[] = {0};
    tick_expect(&d, 0, 1, h0);

    /* multipliers whose product with the base would overflow stop at the maximum */
    hosts[0].ejection_multiplier = UINT32_MAX - 1;
    hosts[0].ejected_at_ms = 0;
    tick_expect(&d, UINT64_MAX - 1, 0, NULL);
    tick_expect(&d, UINT64_MAX, 1, h0);

    /* a clock that went backwards brings nobody back early */
    cfg.base_ejection_time_ms = 30000;
    cfg.max_ejection_time_ms = 300000;
    memset(hosts, 0, sizeof(hosts));
    od_init(&d, &cfg, hosts, 6, 1);
    assert_true(od_on_consecutive(&d, 0, OD_CONSECUTIVE_5XX, 50000));
    tick_expect(&d, 10000, 0, NULL);
    assert_true(hosts[0].ejected);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consecutive_ejection_returns_at_a_tick),
        cmocka_unit_test(test_multiplier_grows_caps_and_decays),
        cmocka_unit_test(test_max_ejection_percent_ten_hosts),
        cmocka_unit_test(test_max_ejection_percent_small_cluster),
        cmocka_unit_test(test_enforcement_zero_detects_only),
        cmocka_unit_test(test_enforcement_hundred_ejects),
        cmocka_unit_test(test_enforcement_fifty_is_about_half),
        cmocka_unit_test(test_success_rate_ejects_the_outlier),
        cmocka_unit_test(test_success_rate_needs_hosts_and_volume),
        cmocka_unit_test(test_success_rate_stdev_factor),
        cmocka_unit_test(test_success_rate_local_origin_split),
        cmocka_unit_test(test_no_hosts),
        cmocka_unit_test(test_membership_change_keeps_state),
        cmocka_unit_test(test_huge_values_are_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Priority levels and the panic threshold: the tables of Envoy's docs
 * (arch overview, load balancing, "Priority levels" and "Panic threshold"),
 * row for row, then the edges (panic off, nothing healthy, empty levels),
 * rounding over random inputs and prio_pick's distribution. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "upstream/lb.h"
#include "upstream/priority.h"

#define OP PRIO_DEFAULT_OVERPROVISIONING
#define PANIC PRIO_DEFAULT_PANIC_THRESHOLD

/* A row of a docs table: healthy percents per level (100 hosts each, so a
 * percent is a host count), the expected loads and panics. */
struct row {
    uint32_t healthy[3];
    uint32_t load[3];
    bool panic[3];
    uint32_t total; /* normalized total health, 0 when the table has no such column */
};

static void check_rows(const struct row *rows, size_t nrows, size_t nlevels, double threshold)
{
    for (size_t r = 0; r < nrows; r++) {
        struct prio_level lv[3];
        for (size_t i = 0; i < nlevels; i++)
            lv[i] = (struct prio_level){.hosts = 100, .healthy = rows[r].healthy[i]};
        struct prio_plan p;
        prio_plan_compute(lv, nlevels, threshold, OP, &p);
        assert_false(p.none_available);
        assert_int_equal(p.n, nlevels);
        for (size_t i = 0; i < nlevels; i++) {
            if (p.load[i] != rows[r].load[i] || p.panic[i] != rows[r].panic[i])
                fail_msg("row %zu level %zu: load %u panic %d, want %u %d", r, i, p.load[i],
                         p.panic[i], rows[r].load[i], rows[r].panic[i]);
        }
        if (rows[r].total != 0)
            assert_int_equal(p.total_availability, rows[r].total);
    }
}

/* priority.rst, first table: 2 levels, P=1 100% healthy. */
static void test_docs_priority_two_levels_p1_healthy(void **state)
{
    (void)state;
    const struct row rows[] = {
        {{100, 100}, {100, 0}, {0}, 0}, {{72, 100}, {100, 0}, {0}, 0}, {{71, 100}, {99, 1}, {0}, 0},
        {{50, 100}, {70, 30}, {0}, 0},  {{25, 100}, {35, 65}, {0}, 0}, {{0, 100}, {0, 100}, {0}, 0},
    };
    check_rows(rows, sizeof(rows) / sizeof(rows[0]), 2, PANIC);
}

/* priority.rst, second table: 2 levels, both degrading. Its last row
 * (25%/25%) is below 100 in total and both levels are under the default
 * threshold, so they are in panic there; the load is the table's. */
static void test_docs_priority_two_levels(void **state)
{
    (void)state;
    const struct row rows[] = {
        {{100, 100}, {100, 0}, {0}, 0}, {{72, 72}, {100, 0}, {0}, 0},
        {{71, 71}, {99, 1}, {0}, 0},    {{50, 50}, {70, 30}, {0}, 0},
        {{25, 100}, {35, 65}, {0}, 0},  {{25, 25}, {50, 50}, {true, true}, 70},
    };
    check_rows(rows, sizeof(rows) / sizeof(rows[0]), 2, PANIC);
}

/* priority.rst, third table: 3 levels. The last row (healths 35, 35, 28 of
 * 98) is the one that shows the rounding: 36/36/28. It is checked with
 * panic off, since the docs' priority tables leave panic aside (with the
 * default threshold every level would be in panic there, and the load
 * would follow host counts: 34/33/33). */
static void test_docs_priority_three_levels(void **state)
{
    (void)state;
    const struct row rows[] = {
        {{100, 100, 100}, {100, 0, 0}, {0}, 0}, {{72, 72, 100}, {100, 0, 0}, {0}, 0},
        {{71, 71, 100}, {99, 1, 0}, {0}, 0},    {{50, 50, 100}, {70, 30, 0}, {0}, 0},
        {{25, 100, 100}, {35, 65, 0}, {0}, 0},  {{25, 25, 100}, {35, 35, 30}, {0}, 0},
        {{25, 25, 20}, {36, 36, 28}, {0}, 98},
    };
    check_rows(rows, sizeof(rows) / sizeof(rows[0]), 3, 0);
    /* the rows above 100 in total are the same with the default threshold */
    check_rows(rows, 6, 3, PANIC);
}

/* priority.rst, the prose: "healths of {20, 30} ... result in a priority
 * load of {40%, 60%}". 1 of 7 healthy gives 140/7 = 20, 3 of 14 gives 30.
 * Panic off: both are under 50% healthy. */
static void test_docs_priority_healths_20_30(void **state)
{
    (void)state;
    struct prio_level lv[2] = {{7, 1}, {14, 3}};
    struct prio_plan p;
    prio_plan_compute(lv, 2, 0, OP, &p);
    assert_int_equal(p.total_availability, 50);
    assert_int_equal(p.load[0], 40);
    assert_int_equal(p.load[1], 60);
    assert_false(p.panic[0] || p.panic[1]);
}

/* panic_threshold.rst, first table: P=1 100% healthy, threshold 50%. */
static void test_docs_panic_p1_healthy(void **state)
{
    (void)state;
    const struct row rows[] = {
        {{72, 100}, {100, 0}, {0}, 100}, {{71, 100}, {99, 1}, {0}, 100},
        {{50, 100}, {70, 30}, {0}, 100}, {{25, 100}, {35, 65}, {0}, 100},
        {{0, 100}, {0, 100}, {0}, 100},
    };
    check_rows(rows, sizeof(rows) / sizeof(rows[0]), 2, PANIC);
}

/* panic_threshold.rst, second table: both levels degrading, threshold 50%.
 * (An older revision of that page had 50%/60% -> 50/50 and 25%/100% ->
 * 25/75; the current one, used here, has 70/30 and 35/65, which is what
 * the algorithm gives.) */
static void test_docs_panic_both_degrading(void **state)
{
    (void)state;
    const struct row rows[] = {
        {{72, 72}, {100, 0}, {0}, 100},         {{71, 71}, {99, 1}, {0}, 100},
        {{50, 60}, {70, 30}, {0}, 100},         {{25, 100}, {35, 65}, {0}, 100},
        {{25, 25}, {50, 50}, {true, true}, 70}, {{5, 65}, {7, 93}, {true, false}, 98},
    };
    check_rows(rows, sizeof(rows) / sizeof(rows[0]), 2, PANIC);
}

/* panic_threshold.rst: when every level is in panic, "each priority level
 * receives traffic relative to the number of hosts": 5 and 5 hosts give
 * 50/50, 2 and 8 give 20/80. */
static void test_docs_total_panic_follows_host_counts(void **state)
{
    (void)state;
    struct prio_plan p;
    struct prio_level a[2] = {{5, 1}, {5, 2}};
    prio_plan_compute(a, 2, PANIC, OP, &p);
    assert_true(p.panic[0] && p.panic[1]);
    assert_int_equal(p.load[0], 50);
    assert_int_equal(p.load[1], 50);
    struct prio_level b[2] = {{2, 0}, {8, 1}};
    prio_plan_compute(b, 2, PANIC, OP, &p);
    assert_true(p.panic[0] && p.panic[1]);
    assert_int_equal(p.load[0], 20);
    assert_int_equal(p.load[1], 80);
}

/* Threshold 50: P0 with 4 of 10 healthy alone panics and takes everything;
 * with a healthy P1 the total is 100, nothing panics and load shifts
 * (140 x 4/10 = 56). */
static void test_panic_single_level_and_rescue(void **state)
{
    (void)state;
    struct prio_plan p;
    struct prio_level one[1] = {{10, 4}};
    prio_plan_compute(one, 1, PANIC, OP, &p);
    assert_true(p.panic[0]);
    assert_false(p.none_available);
    assert_int_equal(p.load[0], 100);
    assert_int_equal(p.total_availability, 56);

    struct prio_level two[2] = {{10, 4}, {10, 10}};
    prio_plan_compute(two, 2, PANIC, OP, &p);
    assert_false(p.panic[0] || p.panic[1]);
    assert_int_equal(p.load[0], 56);
    assert_int_equal(p.load[1], 44);
    assert_int_equal(p.total_availability, 100);

    /* 5 of 10 is not below 50: no panic, the healthy half takes it all */
    struct prio_level half[1] = {{10, 5}};
    prio_plan_compute(half, 1, PANIC, OP, &p);
    assert_false(p.panic[0]);
    assert_int_equal(p.load[0], 100);
    /* the threshold is a double, the test strict: 45.5% healthy panics under 45.6, not 45.5 */
    struct prio_level l[1] = {{1000, 455}};
    prio_plan_compute(l, 1, 45.5, OP, &p);
    assert_false(p.panic[0]);
    prio_plan_compute(l, 1, 45.6, OP, &p);
    assert_true(p.panic[0]);
}

static void test_threshold_zero_disables_panic(void **state)
{
    (void)state;
    struct prio_plan p;
    struct prio_level one[1] = {{10, 4}};
    prio_plan_compute(one, 1, 0, OP, &p);
    assert_false(p.panic[0]);
    assert_false(p.none_available);
    assert_int_equal(p.load[0], 100);

    /* the 5%/65% row of the panic table, without panic */
    struct prio_level two[2] = {{100, 5}, {100, 65}};
    prio_plan_compute(two, 2, 0, OP, &p);
    assert_false(p.panic[0] || p.panic[1]);
    assert_int_equal(p.load[0], 7);
    assert_int_equal(p.load[1], 93);

    /* nothing healthy and no panic: 503 */
    struct prio_level dead[2] = {{3, 0}, {4, 0}};
    prio_plan_compute(dead, 2, 0, OP, &p);
    assert_true(p.none_available);
    assert_int_equal(p.load[0] + p.load[1], 0);
    assert_true(prio_pick(&p, 12345) == PRIO_NONE);
    /* a negative or NaN threshold is "off" too */
    prio_plan_compute(dead, 2, -1, OP, &p);
    assert_true(p.none_available);
}

/* Nothing healthy, panic on: every level is in panic, so the load follows
 * the host counts (all of it to P0 when only P0 has hosts). */
static void test_all_unhealthy(void **state)
{
    (void)state;
    struct prio_plan p;
    struct prio_level one[2] = {{4, 0}, {0, 0}};
    prio_plan_compute(one, 2, PANIC, OP, &p);
    assert_false(p.none_available);
    assert_true(p.panic[0]);
    assert_false(p.panic[1]);
    assert_int_equal(p.load[0], 100);
    assert_int_equal(p.load[1], 0);
    assert_int_equal(p.total_availability, 0);

    struct prio_level two[3] = {{4, 0}, {0, 0}, {6, 0}};
    prio_plan_compute(two, 3, PANIC, OP, &p);
    assert_true(p.panic[0] && !p.panic[1] && p.panic[2]);
    assert_int_equal(p.load[0], 40);
    assert_int_equal(p.load[1], 0);
    assert_int_equal(p.load[2], 60);

    /* 1 of 3 hosts: 33/33/34 -> largest remainders, ties to the first */
    struct prio_level three[3] = {{1, 0}, {1, 0}, {1, 0}};
    prio_plan_compute(three, 3, PANIC, OP, &p);
    assert_int_equal(p.load[0], 34);
    assert_int_equal(p.load[1], 33);
    assert_int_equal(p.load[2], 33);
}

static void test_empty_levels(void **state)
{
    (void)state;
    struct prio_plan p;
    prio_plan_compute(NULL, 0, PANIC, OP, &p);
    assert_true(p.none_available);
    assert_int_equal(p.n, 0);
    assert_true(prio_pick(&p, 0) == PRIO_NONE);

    struct prio_level none[2] = {{0, 0}, {0, 0}};
    prio_plan_compute(none, 2, PANIC, OP, &p);
    assert_true(p.none_available);
    assert_int_equal(p.load[0] + p.load[1], 0);

    /* an empty P0 takes nothing and does not panic */
    struct prio_level a[2] = {{0, 0}, {10, 10}};
    prio_plan_compute(a, 2, PANIC, OP, &p);
    assert_int_equal(p.load[0], 0);
    assert_int_equal(p.load[1], 100);
    assert_false(p.panic[0] || p.panic[1]);

    /* an empty level between two others is skipped over */
    struct prio_level b[3] = {{10, 5}, {0, 0}, {10, 10}};
    prio_plan_compute(b, 3, PANIC, OP, &p);
    assert_int_equal(p.load[0], 70);
    assert_int_equal(p.load[1], 0);
    assert_int_equal(p.load[2], 30);

    /* healthy above hosts counts as hosts */
    struct prio_level c[1] = {{3, 9}};
    prio_plan_compute(c, 1, PANIC, OP, &p);
    assert_int_equal(p.load[0], 100);
    assert_false(p.panic[0]);
}

/* One healthy host in 1000 truncates to availability 0 in Envoy's integer
 * arithmetic; here it counts as 1, so with panic off it is still used. */
static void test_lone_healthy_host_is_used(void **state)
{
    (void)state;
    struct prio_plan p;
    struct prio_level lv[2] = {{1000, 1}, {10, 0}};
    prio_plan_compute(lv, 2, 0, OP, &p);
    assert_false(p.none_available);
    assert_int_equal(p.load[0], 100);
    assert_int_equal(p.load[1], 0);
}

static void test_overprovisioning_factor(void **state)
{
    (void)state;
    struct prio_plan p;
    /* factor 1.0: 80% healthy is 80% of the load */
    struct prio_level lv[2] = {{10, 8}, {10, 10}};
    prio_plan_compute(lv, 2, PANIC, 100, &p);
    assert_int_equal(p.load[0], 80);
    assert_int_equal(p.load[1], 20);
    /* factor 2.0: 50% healthy is still whole */
    struct prio_level h[2] = {{10, 5}, {10, 10}};
    prio_plan_compute(h, 2, PANIC, 200, &p);
    assert_int_equal(p.load[0], 100);
}

/* Over many random inputs: loads are whole percents summing to 100 (or
 * nothing is available, and then all are 0), empty levels take none, panic
 * only below 100 in total, and the first levels fill before later ones. */
static void test_random_inputs_sum_to_100(void **state)
{
    (void)state;
    struct lb_rng rng;
    lb_rng_seed(&rng, 42);
    for (int iter = 0; iter < 200000; iter++) {
        struct prio_level lv[PRIO_MAX_LEVELS];
        size_t n = lb_rng_next(&rng) % (PRIO_MAX_LEVELS + 1);
        uint32_t scale = (lb_rng_next(&rng) % 4 == 0) ? 100000 : 20;
        for (size_t i = 0; i < n; i++) {
            lv[i].hosts = (uint32_t)(lb_rng_next(&rng) % scale);
            lv[i].healthy = lv[i].hosts ? (uint32_t)(lb_rng_next(&rng) % (lv[i].hosts + 1)) : 0;
        }
        double threshold = (double)(lb_rng_next(&rng) % 4) * 25.0; /* 0, 25, 50, 75 */
        uint32_t op = 100 + (uint32_t)(lb_rng_next(&rng) % 101);
        struct prio_plan p;
        prio_plan_compute(lv, n, threshold, op, &p);
        uint32_t sum = 0;
        for (size_t i = 0; i < n; i++) {
            sum += p.load[i];
            if (lv[i].hosts == 0)
                assert_true(p.load[i] == 0 && !p.panic[i]);
            if (p.total_availability == 100 || threshold == 0)
                assert_false(p.panic[i]);
        }
        if (p.none_available)
            assert_int_equal(sum, 0);
        else
            assert_int_equal(sum, 100);
        if (!p.none_available && p.total_availability == 100) {
            /* ordered fill: a level has load only if the ones before are full */
            bool short_seen = false;
            for (size_t i = 0; i < n; i++) {
                if (short_seen)
                    assert_int_equal(p.load[i], 0);
                if (lv[i].hosts > 0) {
                    uint64_t a = (uint64_t)op * lv[i].healthy / lv[i].hosts;
                    if (p.load[i] < (a > 100 ? 100 : a))
                        short_seen = true;
                }
            }
        }
    }
}

/* prio_pick: the 100 evenly spaced draws land exactly load[i] times on
 * level i; a million random draws come within 0.5 points of the loads. */
static void test_pick_distribution(void **state)
{
    (void)state;
    struct prio_level lv[3] = {{100, 25}, {100, 25}, {100, 20}};
    struct prio_plan p;
    prio_plan_compute(lv, 3, 0, OP, &p); /* 36/36/28 */
    uint32_t exact[3] = {0};
    const uint64_t step = UINT64_MAX / 100 + 1; /* just above 2^64/100 */
    for (uint64_t x = 0; x < 100; x++) {
        size_t l = prio_pick(&p, x * step);
        assert_true(l < 3);
        exact[l]++;
    }
    assert_int_equal(exact[0], 36);
    assert_int_equal(exact[1], 36);
    assert_int_equal(exact[2], 28);
    assert_int_equal(prio_pick(&p, 0), 0);
    assert_int_equal(prio_pick(&p, UINT64_MAX), 2);

    struct lb_rng rng;
    lb_rng_seed(&rng, 7);
    uint32_t count[3] = {0};
    const int draws = 1000000;
    for (int i = 0; i < draws; i++)
        count[prio_pick(&p, lb_rng_next(&rng))]++;
    for (int i = 0; i < 3; i++) {
        double share = 100.0 * count[i] / draws;
        assert_true(share > p.load[i] - 0.5 && share < p.load[i] + 0.5);
    }

    /* a level with no load is never picked, even at the edges */
    struct prio_level e[3] = {{0, 0}, {10, 10}, {0, 0}};
    prio_plan_compute(e, 3, PANIC, OP, &p);
    assert_int_equal(prio_pick(&p, 0), 1);
    assert_int_equal(prio_pick(&p, UINT64_MAX), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_docs_priority_two_levels_p1_healthy),
        cmocka_unit_test(test_docs_priority_two_levels),
        cmocka_unit_test(test_docs_priority_three_levels),
        cmocka_unit_test(test_docs_priority_healths_20_30),
        cmocka_unit_test(test_docs_panic_p1_healthy),
        cmocka_unit_test(test_docs_panic_both_degrading),
        cmocka_unit_test(test_docs_total_panic_follows_host_counts),
        cmocka_unit_test(test_panic_single_level_and_rescue),
        cmocka_unit_test(test_threshold_zero_disables_panic),
        cmocka_unit_test(test_all_unhealthy),
        cmocka_unit_test(test_empty_levels),
        cmocka_unit_test(test_lone_healthy_host_is_used),
        cmocka_unit_test(test_overprovisioning_factor),
        cmocka_unit_test(test_random_inputs_sum_to_100),
        cmocka_unit_test(test_pick_distribution),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Connection-pool bookkeeping and round robin. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker/pool.h"
#include "worker/worker.h"

static void test_empty_pool_gives_nothing(void **state)
{
    (void)state;
    struct pool p;
    pool_init(&p, 4);
    assert_null(pool_acquire(&p));
    assert_int_equal(p.n_idle, 0);
    assert_int_equal(p.n_active, 0);
}

static void test_release_then_acquire_reuses_most_recent(void **state)
{
    (void)state;
    struct pool p;
    struct pool_link a, b, c;
    pool_init(&p, 4);
    pool_add_active(&p);
    pool_add_active(&p);
    pool_add_active(&p);
    assert_true(pool_release(&p, &a));
    assert_true(pool_release(&p, &b));
    assert_true(pool_release(&p, &c));
    assert_int_equal(p.n_idle, 3);
    assert_int_equal(p.n_active, 0);
    /* LIFO: the warmest connection first, so cold ones age out. */
    assert_ptr_equal(pool_acquire(&p), &c);
    assert_ptr_equal(pool_acquire(&p), &b);
    assert_int_equal(p.n_active, 2);
    assert_int_equal(p.n_idle, 1);
}

static void test_pool_bounds_idle_connections(void **state)
{
    (void)state;
    struct pool p;
    struct pool_link l[3];
    pool_init(&p, 2);
    for (int i = 0; i < 3; i++)
        pool_add_active(&p);
    assert_true(pool_release(&p, &l[0]));
    assert_true(pool_release(&p, &l[1]));
    assert_false(pool_release(&p, &l[2])); /* over max_idle: caller closes it */
    assert_int_equal(p.n_idle, 2);
    assert_int_equal(p.n_active, 0);
}

static void test_dropping_idle_and_active(void **state)
{
    (void)state;
    struct pool p;
    struct pool_link a, b, c;
    pool_init(&p, 8);
    for (int i = 0; i < 3; i++)
        pool_add_active(&p);
    pool_release(&p, &a);
    pool_release(&p, &b);
    pool_release(&p, &c);
    pool_drop_idle(&p, &b); /* closed by the upstream while idle: never reused */
    assert_int_equal(p.n_idle, 2);
    assert_ptr_equal(pool_acquire(&p), &c);
    assert_ptr_equal(pool_acquire(&p), &a);
    assert_null(pool_acquire(&p));
    pool_drop_active(&p);
    assert_int_equal(p.n_active, 1);
}

static void test_round_robin_cycles_hosts(void **state)
{
    (void)state;
    struct host hosts[3];
    struct cfg_cluster cfg = {.lb_policy = LB_ROUND_ROBIN};
    uint32_t members[3] = {0, 1, 2}, weights[3] = {1, 1, 1};
    uint64_t cum[3];
    lb_cumulative(weights, 3, cum);
    struct host *slots[3] = {&hosts[0], &hosts[1], &hosts[2]};
    struct cluster_rt cl = {.cfg = &cfg, .slots = slots, .cap = 3, .bell_fd = -1};
    cl.plan.n = 1;
    cl.plan.load[0] = 100;
    cl.levels[0] = (struct lb_level){.members = members, .weights = weights, .cum = cum, .n = 3};
    assert_int_equal(lb_rr_init(&cl.levels[0].rr, weights, 3), 0);
    struct worker w = {.clusters = &cl, .n_clusters = 1};
    int counts[3] = {0};
    for (int i = 0; i < 300; i++) {
        struct host *h = worker_pick_host(&w, 0, NULL);
        counts[h - hosts]++;
        if (i < 3)
            assert_ptr_equal(h, &hosts[i]);
    }
    assert_int_equal(counts[0], 100);
    assert_int_equal(counts[1], 100);
    assert_int_equal(counts[2], 100);
    lb_rr_free(&cl.levels[0].rr);
    /* No host at all: "no healthy upstream". */
    struct cluster_rt empty = {.cfg = &cfg, .slots = NULL, .cap = 0, .bell_fd = -1};
    empty.plan.n = 1;
    empty.plan.none_available = 1;
    w.clusters = &empty;
    assert_null(worker_pick_host(&w, 0, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_pool_gives_nothing),
        cmocka_unit_test(test_release_then_acquire_reuses_most_recent),
        cmocka_unit_test(test_pool_bounds_idle_connections),
        cmocka_unit_test(test_dropping_idle_and_active),
        cmocka_unit_test(test_round_robin_cycles_hosts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

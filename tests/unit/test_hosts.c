/* Unit tests for the host table in shared memory (shm/hosts.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/config.h"
#include "shm/hosts.h"

#define CLUSTER(name, policy, extra)                                                               \
    "  - name: " name "\n"                                                                         \
    "    lb_policy: " policy "\n" extra "    load_assignment:\n"                                   \
    "      cluster_name: " name "\n"                                                               \
    "      endpoints:\n"                                                                           \
    "      - lb_endpoints:\n"                                                                      \
    "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}\n"       \
    "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}\n"       \
    "      - priority: 1\n"                                                                        \
    "        lb_endpoints:\n"                                                                      \
    "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 3}}}\n"

static const char yaml[] =
    "static_resources:\n"
    "  clusters:\n" CLUSTER("rr", "ROUND_ROBIN", "")
        CLUSTER("ring", "RING_HASH",
                "    ring_hash_lb_config: {minimum_ring_size: 16, maximum_ring_size: 64}\n")
            CLUSTER("maglev", "MAGLEV", "    maglev_lb_config: {table_size: 7}\n");

struct fixture {
    struct config cfg;
    struct hosts_seg seg;
    int fd;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct config_errors errs;
    if (config_load_string("t.yaml", yaml, strlen(yaml), &f->cfg, &errs) != 0) {
        for (size_t i = 0; i < errs.n; i++)
            print_message("%s\n", errs.msgs[i]);
        fail();
    }
    f->fd = hosts_segment_create(&f->cfg);
    assert_true(f->fd >= 0);
    char err[128];
    assert_int_equal(hosts_attach(&f->seg, f->fd, err, sizeof(err)), 0);
    assert_int_equal(f->seg.n_clusters, 3);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    hosts_detach(&f->seg);
    close(f->fd);
    config_free(&f->cfg);
    free(f);
    return 0;
}

/* The bank of the current publication, as a reader's view has it. */
static uint32_t bank_of(const struct hosts_cluster *c)
{
    struct hosts_entry scratch[8];
    struct hosts_view v = {.hosts = scratch};
    hosts_read(c, &v);
    return v.bank;
}

static void fill(struct hosts_entry *e, uint32_t n, uint32_t flags_of_first)
{
    for (uint32_t i = 0; i < n; i++) {
        memset(&e[i], 0, sizeof(e[i]));
        e[i].live = i;
        e[i].weight = 1;
        e[i].priority = i == 2 ? 1 : 0;
        e[i].flags = i == 0 ? flags_of_first : 0;
        snprintf(e[i].name, sizeof(e[i].name), "127.0.0.1:%u", i + 1);
    }
}

static void test_publish_and_read(void **state)
{
    struct fixture *f = *state;
    struct hosts_cluster *c = hosts_cluster(&f->seg, 0);
    assert_non_null(c);
    assert_null(hosts_cluster(&f->seg, 3));
    assert_int_equal(hosts_capacity(c), 3);
    assert_int_equal(hosts_generation(c), 0);

    struct hosts_plan plan = {.n_levels = 2, .load = {100, 0}};
    fill(hosts_write_begin(c), 3, HOST_FAILED_ACTIVE_HC);
    hosts_write_publish(c, 3, &plan);
    assert_int_equal(hosts_generation(c), 1);

    struct hosts_entry copy[3];
    struct hosts_view v = {.hosts = copy};
    hosts_read(c, &v);
    assert_int_equal(v.gen, 1);
    assert_int_equal(v.n_hosts, 3);
    assert_int_equal(v.plan.load[0], 100);
    assert_int_equal(copy[0].flags, HOST_FAILED_ACTIVE_HC);
    assert_string_equal(copy[2].name, "127.0.0.1:3");

    /* A second publication goes to the other bank; the first reader's view stays intact. */
    plan.load[0] = 70;
    plan.load[1] = 30;
    fill(hosts_write_begin(c), 2, 0);
    assert_int_equal(copy[0].flags, HOST_FAILED_ACTIVE_HC);
    hosts_write_publish(c, 2, &plan);
    hosts_read(c, &v);
    assert_int_equal(v.gen, 2);
    assert_int_equal(v.n_hosts, 2);
    assert_int_equal(v.plan.load[1], 30);
    assert_int_equal(copy[0].flags, 0);
}

static void test_visible_to_another_process(void **state)
{
    struct fixture *f = *state;
    struct hosts_cluster *c = hosts_cluster(&f->seg, 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct hosts_seg mine;
        char err[128];
        if (hosts_attach(&mine, f->fd, err, sizeof(err)) != 0)
            _exit(2);
        struct hosts_plan plan = {.n_levels = 1, .load = {100}};
        fill(hosts_write_begin(hosts_cluster(&mine, 0)), 3, HOST_FAILED_OUTLIER_CHECK);
        hosts_write_publish(hosts_cluster(&mine, 0), 3, &plan);
        atomic_fetch_add(&hosts_live(hosts_cluster(&mine, 0), 1)->consecutive_5xx, 4);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct hosts_entry copy[3];
    struct hosts_view v = {.hosts = copy};
    hosts_read(c, &v);
    assert_int_equal(v.gen, 1);
    assert_int_equal(copy[0].flags, HOST_FAILED_OUTLIER_CHECK);
    assert_int_equal(atomic_load(&hosts_live(c, 1)->consecutive_5xx), 4);
    assert_null(hosts_live(c, 3));
}

static void test_ring_table(void **state)
{
    struct fixture *f = *state;
    struct hosts_cluster *c = hosts_cluster(&f->seg, 1);
    assert_int_equal(hosts_table_capacity(c), 64);
    uint64_t hashes[3] = {100, 200, 300};
    uint32_t owners[3] = {0, 1, 0};
    struct hosts_plan plan = {.n_levels = 2, .load = {100, 0}};
    fill(hosts_write_begin(c), 3, 0);
    assert_int_equal(hosts_write_ring(c, 0, hashes, owners, 3), 3);
    hosts_write_publish(c, 3, &plan);
    uint64_t g = hosts_generation(c);
    assert_int_equal(hosts_table_pick(c, g, bank_of(c), 0, 50), 0);
    assert_int_equal(hosts_table_pick(c, g, bank_of(c), 0, 150), 1);
    assert_int_equal(hosts_table_pick(c, g, bank_of(c), 0, 200), 1);
    assert_int_equal(hosts_table_pick(c, g, bank_of(c), 0, 250), 0);
    assert_int_equal(hosts_table_pick(c, g, bank_of(c), 0, 301), 0); /* wraps */
    assert_int_equal(hosts_table_pick(c, g, bank_of(c), 1, 1), HOSTS_PICK_NONE);
    assert_int_equal(hosts_table_pick(c, g, bank_of(c), 9, 1), HOSTS_PICK_NONE);
    assert_int_equal(hosts_table_pick(c, g - 1, bank_of(c), 0, 1), HOSTS_PICK_STALE);

    /* More than the reserve is cut to it. */
    uint64_t many[100];
    uint32_t who[100];
    for (int i = 0; i < 100; i++) {
        many[i] = (uint64_t)i * 10;
        who[i] = (uint32_t)(i % 3);
    }
    fill(hosts_write_begin(c), 3, 0);
    assert_int_equal(hosts_write_ring(c, 1, many, who, 100), 64);
    hosts_write_publish(c, 3, &plan);
    g = hosts_generation(c);
    assert_int_equal(hosts_table_pick(c, g, bank_of(c), 1, 15), 2 % 3);
    assert_int_equal(hosts_table_pick(c, g, bank_of(c), 0, 150),
                     HOSTS_PICK_NONE); /* level 0 not rewritten */
}

static void test_maglev_table(void **state)
{
    struct fixture *f = *state;
    struct hosts_cluster *c = hosts_cluster(&f->seg, 2);
    assert_int_equal(hosts_table_capacity(c), 7);
    uint32_t t[7] = {0, 1, 0, 1, 0, 1, 1};
    struct hosts_plan plan = {.n_levels = 2, .load = {100, 0}};
    fill(hosts_write_begin(c), 3, 0);
    assert_int_equal(hosts_write_maglev(c, 0, t, 7), 7);
    assert_int_equal(hosts_write_ring(c, 0, NULL, NULL, 0), 0); /* not a ring cluster */
    hosts_write_publish(c, 3, &plan);
    uint64_t g = hosts_generation(c);
    for (uint64_t h = 0; h < 20; h++)
        assert_int_equal(hosts_table_pick(c, g, bank_of(c), 0, h), t[h % 7]);
    /* A cluster with no table picks nothing from one. */
    struct hosts_cluster *rr = hosts_cluster(&f->seg, 0);
    assert_int_equal(hosts_table_pick(rr, hosts_generation(rr), bank_of(rr), 0, 1),
                     HOSTS_PICK_NONE);
}

static void test_flags_text(void **state)
{
    (void)state;
    char buf[128];
    host_flags_text(0, buf, sizeof(buf));
    assert_string_equal(buf, "healthy");
    host_flags_text(HOST_FAILED_ACTIVE_HC | HOST_FAILED_OUTLIER_CHECK, buf, sizeof(buf));
    assert_string_equal(buf, "/failed_active_hc/failed_outlier_check");
    host_flags_text(HOST_PENDING_DYNAMIC_REMOVAL, buf, 8);
    assert_string_equal(buf, "/pendin");
}

static void test_attach_refuses_other_descriptors(void **state)
{
    (void)state;
    struct hosts_seg s;
    char err[128];
    int fd = memfd_create("not-hosts", MFD_CLOEXEC);
    assert_int_equal(ftruncate(fd, 4096), 0);
    assert_int_equal(hosts_attach(&s, fd, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bad header"));
    close(fd);
    assert_int_equal(hosts_attach(&s, 999, err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publish_and_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_visible_to_another_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_maglev_table, setup, teardown),
        cmocka_unit_test(test_flags_text),
        cmocka_unit_test(test_attach_refuses_other_descriptors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

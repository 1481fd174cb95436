/* The load balancers: distribution over weights (fixed seeds, stated
 * bounds), least request preferring the idle host, ring hash and Maglev
 * moving about 1/N of the keys when one of N hosts goes, Maglev's balance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "upstream/lb.h"

#define MAXH 128

static char key_store[MAXH][32];
static const char *keys[MAXH];

static void make_keys(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(key_store[i], sizeof(key_store[i]), "10.0.%zu.%zu:8080", i / 250, i % 250);
        keys[i] = key_store[i];
    }
}

/* n hosts with keys, each of weight 1 */
static void equal_hosts(uint32_t *w, size_t n)
{
    make_keys(n);
    for (size_t i = 0; i < n; i++)
        w[i] = 1;
}

static void test_hash_is_xxh64(void **state)
{
    (void)state;
    /* XXH64's published values (seed 0), checked against Debian's libxxhash. */
    assert_true(lb_hash("", 0, 0) == 0xef46db3751d8e999ull);
    assert_true(lb_hash("abc", 3, 0) == 0x44bc2cf5ad770999ull);
    assert_true(lb_hash("abc", 3, 12345) == 0x01700e64f6f23509ull);
}

/* MurmurHash64A known answers. Three sources agree on every one:
 * - Envoy's test/common/common/hash_test.cc (TEST(Hash, murmurHash2), seed
 *   0xc70f6907): "foo", "bar", "foo\nbar" (7 bytes), "lyft", "";
 * - libstdc++'s std::_Hash_bytes / std::hash<std::string> (g++ 12 here),
 *   which is the same function, for the prefixes of "0123456789abcdef";
 * - this straight Python transcription of the algorithm:
 *     M, R, X = 0xc6a4a7935bd1e995, 47, (1 << 64) - 1
 *     def mm(d, seed):
 *         h = (seed ^ (len(d) * M)) & X
 *         for i in range(len(d) // 8):
 *             k = int.from_bytes(d[8*i:8*i+8], 'little') * M & X
 *             k = (k ^ (k >> R)) * M & X
 *             h = (h ^ k) * M & X
 *         if len(d) % 8:
 *             h = (h ^ int.from_bytes(d[len(d) & ~7:], 'little')) * M & X
 *         h = (h ^ (h >> R)) * M & X
 *         return h ^ (h >> R) */
static void test_murmur2_known_answers(void **state)
{
    (void)state;
    const uint64_t s = LB_MURMUR2_SEED;
    assert_true(lb_murmur2_64("foo", 3, s) == 9631199822919835226ull);
    assert_true(lb_murmur2_64("bar", 3, s) == 11474628671133349555ull);
    assert_true(lb_murmur2_64("foo\nbar", 7, s) == 16306510975912980159ull);
    assert_true(lb_murmur2_64("lyft", 4, s) == 12847078931730529320ull);
    assert_true(lb_murmur2_64("", 0, s) == 6142509188972423790ull);

    static const char msg[] = "0123456789abcdef";
    static const struct {
        size_t len;
        uint64_t seeded, zero; /* seed 0xc70f6907, seed 0 */
    } v[] = {
        {0, 0x553e93901e462a6eull, 0x0ull},
        {1, 0x1fe2f4e72b63d536ull, 0x4ccb322c4bcf1d63ull},
        {7, 0x56bc3c5604731717ull, 0xaa7bcb1cbf86f7c6ull},
        {8, 0xf3f0cdb8cc0b5038ull, 0x87b47e2a5e55a79aull},
        {9, 0x80ec2df2473772bbull, 0x0c0490f312ff95caull},
        {15, 0x83c59a3f62a3e14bull, 0x89ecff3076295665ull},
        {16, 0x934b0d760642ed86ull, 0x93a92d1a91a24bc7ull},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_true(lb_murmur2_64(msg, v[i].len, s) == v[i].seeded);
        assert_true(lb_murmur2_64(msg, v[i].len, 0) == v[i].zero);
    }
    /* a ring hash key as Envoy forms it, "<address>_<i>" */
    assert_true(lb_murmur2_64("10.0.0.1:8080_0", 15, s) == 0x28125cc835986945ull);

    /* misaligned input gives the same value (no unaligned loads to trip on) */
    char buf[40];
    for (size_t off = 0; off < 8; off++) {
        memcpy(buf + off, msg, 16);
        assert_true(lb_murmur2_64(buf + off, 16, s) == 0x934b0d760642ed86ull);
        assert_true(lb_murmur2_64(buf + off, 9, s) == 0x80ec2df2473772bbull);
    }
}

static void test_round_robin_smooth_and_exact(void **state)
{
    (void)state;
    uint32_t w[3] = {5, 1, 1};
    struct lb_rr rr;
    assert_int_equal(lb_rr_init(&rr, w, 3), 0);
    size_t seq[7];
    for (int i = 0; i < 7; i++)
        seq[i] = lb_rr_pick(&rr);
    size_t want[7] = {0, 0, 0, 1, 2, 0, 0}; /* a a a b c a a */
    assert_memory_equal(seq, want, sizeof(want));
    size_t count[3] = {0};
    for (int i = 0; i < 7000; i++)
        count[lb_rr_pick(&rr)]++;
    assert_int_equal(count[0], 5000);
    assert_int_equal(count[1], 1000);
    assert_int_equal(count[2], 1000);
    lb_rr_free(&rr);
    /* 1000 hosts of weights 1..7: every cycle of sum-of-weights picks gives
     * each host exactly its weight, and no host waits longer than two of its
     * own periods between turns. */
    enum { N = 1000 };
    static uint32_t wk[N];
    uint64_t total = 0;
    for (int i = 0; i < N; i++)
        total += wk[i] = 1 + (uint32_t)((i * 7919) % 7);
    assert_int_equal(lb_rr_init(&rr, wk, N), 0);
    static uint64_t got[N], last[N];
    for (int cycle = 0; cycle < 3; cycle++) {
        memset(got, 0, sizeof(got));
        for (uint64_t k = 0; k < total; k++) {
            size_t h = lb_rr_pick(&rr);
            uint64_t at = (uint64_t)cycle * total + k;
            if (got[h] > 0 || cycle > 0)
                assert_true(at - last[h] <= 2 * total / wk[h] + 1);
            last[h] = at;
            got[h]++;
        }
        for (int i = 0; i < N; i++)
            assert_int_equal(got[i], wk[i]);
    }
    lb_rr_free(&rr);
    /* weight 0 is never picked; all 0 is no host */
    uint32_t z[2] = {0, 3};
    assert_int_equal(lb_rr_init(&rr, z, 2), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(lb_rr_pick(&rr), 1);
    lb_rr_free(&rr);
    uint32_t none[2] = {0, 0};
    assert_int_equal(lb_rr_init(&rr, none, 2), 0);
    assert_true(lb_rr_pick(&rr) == LB_NONE);
    lb_rr_free(&rr);
    /* equal weights: a plain rotation */
    uint32_t eq[3] = {2, 2, 2};
    assert_int_equal(lb_rr_init(&rr, eq, 3), 0);
    for (int i = 0; i < 9; i++)
        assert_int_equal(lb_rr_pick(&rr), (size_t)(i % 3));
    lb_rr_free(&rr);
}

static void test_random_follows_weights(void **state)
{
    (void)state;
    uint32_t w[3] = {1, 2, 7};
    uint64_t cum[3];
    lb_cumulative(w, 3, cum);
    struct lb_rng rng;
    lb_rng_seed(&rng, 42);
    size_t count[3] = {0};
    const int N = 100000;
    for (int i = 0; i < N; i++)
        count[lb_random_pick(cum, 3, &rng)]++;
    /* within 1 percentage point of 10%, 20%, 70% */
    for (int i = 0; i < 3; i++) {
        double share = (double)count[i] / N, want = w[i] / 10.0;
        assert_true(share > want - 0.01 && share < want + 0.01);
    }
    uint32_t zero[2] = {0, 0};
    uint64_t zc[2];
    lb_cumulative(zero, 2, zc);
    assert_true(lb_random_pick(zc, 2, &rng) == LB_NONE);
}

static void test_least_request_prefers_the_idle_host(void **state)
{
    (void)state;
    uint32_t w[2] = {1, 1};
    uint64_t cum[2], active[2] = {0, 100};
    lb_cumulative(w, 2, cum);
    struct lb_rng rng;
    lb_rng_seed(&rng, 7);
    size_t count[2] = {0};
    for (int i = 0; i < 10000; i++)
        count[lb_least_request_pick(w, cum, active, 2, 2, &rng)]++;
    /* host 1 only when both draws are host 1: about a quarter */
    assert_true(count[0] > 7200 && count[1] < 2800);
    /* more choices, fewer misses: 1/8 */
    memset(count, 0, sizeof(count));
    for (int i = 0; i < 10000; i++)
        count[lb_least_request_pick(w, cum, active, 2, 3, &rng)]++;
    assert_true(count[1] < 1500);
    /* equal load: even */
    active[1] = 0;
    memset(count, 0, sizeof(count));
    for (int i = 0; i < 10000; i++)
        count[lb_least_request_pick(w, cum, active, 2, 2, &rng)]++;
    assert_true(count[0] > 4500 && count[0] < 5500);
    /* weights: a host of weight 3 with 3 active is as loaded as one of
     * weight 1 with 1 active; with 2 active it is the lighter. */
    uint32_t w2[2] = {3, 1};
    uint64_t cum2[2], a2[2] = {2, 1};
    lb_cumulative(w2, 2, cum2);
    memset(count, 0, sizeof(count));
    for (int i = 0; i < 10000; i++)
        count[lb_least_request_pick(w2, cum2, a2, 2, 2, &rng)]++;
    assert_true(count[0] > 9000);
}

/* The share of 100,000 keys each host gets from a picker. */
typedef size_t (*pick_fn)(const void *table, uint64_t hash);
static size_t ring_pick(const void *t, uint64_t h)
{
    return lb_ring_pick(t, h);
}
static size_t maglev_pick(const void *t, uint64_t h)
{
    return lb_maglev_pick(t, h);
}

#define NKEYS 100000

static void assign(const void *table, pick_fn pick, size_t *out)
{
    for (uint64_t k = 0; k < NKEYS; k++)
        out[k] = pick(table, lb_hash(&k, sizeof(k), 99));
}

/* Remove host `gone` of n: keys that move, and keys that move although they
 * were not on it. */
static void disruption(const size_t *before, const size_t *after, size_t gone, size_t *moved,
                       size_t *needless)
{
    *moved = *needless = 0;
    for (size_t k = 0; k < NKEYS; k++)
        if (before[k] != after[k]) {
            (*moved)++;
            if (before[k] != gone)
                (*needless)++;
        }
}

static size_t before_keys[NKEYS], after_keys[NKEYS];

static void test_ring_hash_balance_and_stability(void **state)
{
    (void)state;
    const size_t n = 100;
    uint32_t w[MAXH];
    equal_hosts(w, n);
    struct lb_ring r;
    assert_int_equal(lb_ring_build(&r, keys, w, n, 1024, 8 << 20), 0);
    assert_true(r.size >= 1024 && r.size <= 1024 + n);
    assign(&r, ring_pick, before_keys);
    lb_ring_free(&r);
    /* host 37 goes */
    w[37] = 0;
    assert_int_equal(lb_ring_build(&r, keys, w, n, 1024, 8 << 20), 0);
    assign(&r, ring_pick, after_keys);
    size_t moved, needless;
    disruption(before_keys, after_keys, 37, &moved, &needless);
    /* only its keys move: about 1/100 of them */
    print_message("ring hash, 100 hosts, %zu entries: host 37 removed moves %zu of %d keys "
                  "(%zu from other hosts)\n",
                  r.size, moved, NKEYS, needless);
    assert_int_equal(needless, 0);
    assert_true(moved > NKEYS / 400 && moved < NKEYS / 25);
    lb_ring_free(&r);
    /* weights: 10 hosts, one of weight 4; a big ring shares keys closely */
    make_keys(10);
    uint32_t w10[10] = {4, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    assert_int_equal(lb_ring_build(&r, keys, w10, 10, 65536, 8 << 20), 0);
    size_t count[10] = {0};
    assign(&r, ring_pick, before_keys);
    for (size_t k = 0; k < NKEYS; k++)
        count[before_keys[k]]++;
    double heavy = (double)count[0] / NKEYS; /* 4/13 */
    print_message("ring hash, weights 4,1x9: the heavy host holds %.3f of the keys (4/13 = "
                  "%.3f)\n",
                  heavy, 4.0 / 13);
    assert_true(heavy > 4.0 / 13 * 0.85 && heavy < 4.0 / 13 * 1.15);
    for (int i = 1; i < 10; i++) {
        double s = (double)count[i] / NKEYS;
        assert_true(s > 1.0 / 13 * 0.8 && s < 1.0 / 13 * 1.2);
    }
    lb_ring_free(&r);
    /* the ring never grows past max_size */
    assert_int_equal(lb_ring_build(&r, keys, w10, 10, 1 << 20, 4096), 0);
    assert_true(r.size <= 4096 + 10);
    lb_ring_free(&r);
    uint32_t none[2] = {0, 0};
    assert_int_equal(lb_ring_build(&r, keys, none, 2, 1024, 4096), 0);
    assert_true(lb_ring_pick(&r, 123) == LB_NONE);
    lb_ring_free(&r);
}

static void test_maglev_balance_and_stability(void **state)
{
    (void)state;
    const size_t n = 100;
    uint32_t w[MAXH];
    equal_hosts(w, n);
    struct lb_maglev m;
    assert_int_equal(lb_maglev_build(&m, keys, w, n, 65537), 0);
    /* Maglev's bound for equal weights: entries per host differ by at most one */
    size_t count[MAXH] = {0}, lo = SIZE_MAX, hi = 0;
    for (uint32_t j = 0; j < m.size; j++)
        count[m.table[j]]++;
    for (size_t i = 0; i < n; i++) {
        lo = count[i] < lo ? count[i] : lo;
        hi = count[i] > hi ? count[i] : hi;
    }
    print_message("maglev, 100 hosts, 65537 entries: %zu to %zu entries per host\n", lo, hi);
    assert_true(hi - lo <= 1);
    assign(&m, maglev_pick, before_keys);
    lb_maglev_free(&m);
    w[37] = 0;
    assert_int_equal(lb_maglev_build(&m, keys, w, n, 65537), 0);
    assign(&m, maglev_pick, after_keys);
    size_t moved, needless;
    disruption(before_keys, after_keys, 37, &moved, &needless);
    /* about 1/100 moves; Maglev moves a few other keys too, far fewer */
    print_message("maglev: host 37 removed moves %zu of %d keys (%zu from other hosts)\n", moved,
                  NKEYS, needless);
    assert_true(moved > NKEYS / 200 && moved < NKEYS / 20);
    assert_true(needless < NKEYS / 50);
    lb_maglev_free(&m);
    /* weights 1, 2, 3 share the table 1:2:3 (within 1%) */
    make_keys(3);
    uint32_t w3[3] = {1, 2, 3};
    assert_int_equal(lb_maglev_build(&m, keys, w3, 3, 65537), 0);
    size_t c3[3] = {0};
    for (uint32_t j = 0; j < m.size; j++)
        c3[m.table[j]]++;
    for (int i = 0; i < 3; i++) {
        double share = (double)c3[i] / m.size, want = (i + 1) / 6.0;
        assert_true(share > want - 0.01 && share < want + 0.01);
    }
    lb_maglev_free(&m);
    /* the table size must be prime */
    assert_int_equal(lb_maglev_build(&m, keys, w3, 3, 65536), -1);
    assert_true(lb_is_prime(65537) && lb_is_prime(5) && !lb_is_prime(1) && !lb_is_prime(65535));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_is_xxh64),
        cmocka_unit_test(test_murmur2_known_answers),
        cmocka_unit_test(test_round_robin_smooth_and_exact),
        cmocka_unit_test(test_random_follows_weights),
        cmocka_unit_test(test_least_request_prefers_the_idle_host),
        cmocka_unit_test(test_ring_hash_balance_and_stability),
        cmocka_unit_test(test_maglev_balance_and_stability),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

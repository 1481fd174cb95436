/* ns per pick of each load balancer, for 10 and 1000 hosts (issue 7 asks it
 * in the note and in tools/bench). It reports; it asserts nothing.
 *
 *   build/bench_lb [picks]          (default 2,000,000 per policy and size) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "upstream/lb.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile size_t sink; /* keeps the picks from being optimised away */

int main(int argc, char **argv)
{
    long picks = argc > 1 ? atol(argv[1]) : 2000000;
    if (picks <= 0) {
        fprintf(stderr, "usage: bench_lb [picks]\n");
        return 2;
    }
    printf("%-14s %8s %10s\n", "policy", "hosts", "ns/pick");
    size_t sizes[2] = {10, 1000};
    for (int s = 0; s < 2; s++) {
        size_t n = sizes[s];
        char(*store)[32] = calloc(n, 32);
        const char **keys = calloc(n, sizeof(char *));
        uint32_t *w = calloc(n, sizeof(uint32_t));
        uint64_t *cum = calloc(n, sizeof(uint64_t)), *active = calloc(n, sizeof(uint64_t));
        if (!store || !keys || !w || !cum || !active)
            return 1;
        struct lb_rng rng;
        lb_rng_seed(&rng, 1);
        for (size_t i = 0; i < n; i++) {
            snprintf(store[i], 32, "10.1.%zu.%zu:80", i / 250, i % 250);
            keys[i] = store[i];
            w[i] = 1 + (uint32_t)(i % 3);
            active[i] = lb_rng_next(&rng) % 50;
        }
        lb_cumulative(w, n, cum);
        struct lb_rr rr;
        struct lb_ring ring;
        struct lb_maglev mg;
        if (lb_rr_init(&rr, w, n) != 0 || lb_ring_build(&ring, keys, w, n, 1024, 8 << 20) != 0 ||
            lb_maglev_build(&mg, keys, w, n, 65537) != 0)
            return 1;
        const char *names[5] = {"ROUND_ROBIN", "RANDOM", "LEAST_REQUEST", "RING_HASH", "MAGLEV"};
        for (int p = 0; p < 5; p++) {
            double t0 = now_ns();
            for (long i = 0; i < picks; i++) {
                uint64_t h = (uint64_t)i * 0x9e3779b97f4a7c15ull;
                switch (p) {
                case 0:
                    sink = lb_rr_pick(&rr);
                    break;
                case 1:
                    sink = lb_random_pick(cum, n, &rng);
                    break;
                case 2:
                    sink = lb_least_request_pick(w, cum, active, n, 2, &rng);
                    break;
                case 3:
                    sink = lb_ring_pick(&ring, h);
                    break;
                default:
                    sink = lb_maglev_pick(&mg, h);
                    break;
                }
            }
            printf("%-14s %8zu %10.1f\n", names[p], n, (now_ns() - t0) / (double)picks);
        }
        double t0 = now_ns();
        struct lb_ring r2;
        lb_ring_build(&r2, keys, w, n, 1024, 8 << 20);
        double ring_ms = (now_ns() - t0) / 1e6;
        t0 = now_ns();
        struct lb_maglev m2;
        lb_maglev_build(&m2, keys, w, n, 65537);
        printf("build: ring %zu entries %.2f ms, maglev 65537 entries %.2f ms (%zu hosts)\n",
               r2.size, ring_ms, (now_ns() - t0) / 1e6, n);
        lb_ring_free(&r2);
        lb_maglev_free(&m2);
        lb_rr_free(&rr);
        lb_ring_free(&ring);
        lb_maglev_free(&mg);
        free(store);
        free(keys);
        free(w);
        free(cum);
        free(active);
    }
    return 0;
}

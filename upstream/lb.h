/* Load-balancing algorithms over a set of hosts, as Envoy's lb_policy names
 * them: ROUND_ROBIN (weighted, smooth), RANDOM (weighted), LEAST_REQUEST
 * (power of `choice_count` choices, weighted), RING_HASH and MAGLEV.
 *
 * Pure functions of their inputs, with no I/O and no locks: the upstream
 * manager builds the hash tables (the ring, the Maglev table) once per
 * membership or health change, and a worker picks from them. Hosts are
 * indexes 0..n-1 into the caller's arrays; a weight of 0 means "not
 * eligible". Hashing is Debian's xxHash (XXH64), Envoy's default. */
#ifndef LEGATE_UPSTREAM_LB_H
#define LEGATE_UPSTREAM_LB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LB_NONE ((size_t)-1) /* no eligible host */

/* xorshift64*: the picks' randomness. A seed of 0 is replaced by a constant. */
struct lb_rng {
    uint64_t s;
};
void lb_rng_seed(struct lb_rng *r, uint64_t seed);
uint64_t lb_rng_next(struct lb_rng *r);

/* XXH64 of a key (a host's address when building, a request's hash key when
 * picking). */
uint64_t lb_hash(const void *data, size_t len, uint64_t seed);

/* MurmurHash64A (Austin Appleby's MurmurHash2, 64-bit), for RING_HASH's
 * hash_function MURMUR_HASH_2. Bytes are read little-endian whatever the
 * host, so the value is the same everywhere; with LB_MURMUR2_SEED it equals
 * Envoy's MurmurHash::murmurHash2 (and libstdc++'s std::hash of a string). */
#define LB_MURMUR2_SEED 0xc70f6907ull
uint64_t lb_murmur2_64(const void *data, size_t len, uint64_t seed);

/* ROUND_ROBIN: weighted round robin as an earliest-deadline-first schedule
 * (Envoy's choice too), O(log n) per pick: host i's k-th turn is due at
 * (k - 1/2) / weight_i, the earliest due host goes next (ties: the lower
 * index). Over every cycle of sum-of-weights picks each host is picked
 * exactly its weight times, its turns spread over the cycle (weights 5,1,1
 * give a a a b c a a). Equal weights are a plain rotation, O(1). */
struct lb_rr {
    size_t n;
    const uint32_t *weights;
    uint64_t *turns; /* k: turns taken so far, per host */
    uint32_t *heap;  /* hosts with a weight, earliest due first */
    size_t heap_n;
    uint64_t total;
    bool equal;
    size_t next;
};
int lb_rr_init(struct lb_rr *rr, const uint32_t *weights, size_t n); /* 0, or -1 (memory) */
size_t lb_rr_pick(struct lb_rr *rr);
void lb_rr_free(struct lb_rr *rr);

/* Cumulative weights, for the weighted random choices below: cum[i] is the
 * sum of weights[0..i]. */
void lb_cumulative(const uint32_t *weights, size_t n, uint64_t *cum);

/* RANDOM: a host with probability weight / total. */
size_t lb_random_pick(const uint64_t *cum, size_t n, struct lb_rng *rng);

/* LEAST_REQUEST: `choice_count` hosts drawn at random (weighted), the one
 * with the fewest active requests per unit of weight wins (ties: the first
 * drawn). With equal weights this is Envoy's power of two choices; with
 * unequal ones a heavier host carries proportionally more requests. `active`
 * is each host's active requests, across all workers. */
size_t lb_least_request_pick(const uint32_t *weights, const uint64_t *cum, const uint64_t *active,
                             size_t n, unsigned choice_count, struct lb_rng *rng);
/* The same, reading a drawn host's active requests through `active` (a
 * worker sums them over every worker's slot in shared memory). */
size_t lb_least_request_pick_fn(const uint32_t *weights, const uint64_t *cum, size_t n,
                                unsigned choice_count, struct lb_rng *rng,
                                uint64_t (*active)(void *ctx, size_t host), void *ctx);

/* RING_HASH: each host is hashed onto a ring (XXH64 of "<key>_<i>") a number
 * of times proportional to its weight, the ring having between min_size and
 * max_size entries (Envoy's minimum_ring_size 1024, maximum 8M by default;
 * of a min_size above max_size, max_size wins). A
 * request's hash picks the first entry at or after it, wrapping around. */
struct lb_ring {
    uint64_t *hashes; /* sorted */
    uint32_t *hosts;  /* hosts[i] owns hashes[i] */
    size_t size;
};
int lb_ring_build(struct lb_ring *r, const char *const *keys, const uint32_t *weights, size_t n,
                  size_t min_size, size_t max_size);
/* The same with another hash of the keys (MURMUR_HASH_2: lb_murmur2_64 with
 * LB_MURMUR2_SEED, as Envoy). */
typedef uint64_t (*lb_hash_fn)(const void *data, size_t len, uint64_t seed);
int lb_ring_build_hashed(struct lb_ring *r, const char *const *keys, const uint32_t *weights,
                         size_t n, size_t min_size, size_t max_size, lb_hash_fn hash,
                         uint64_t seed);
size_t lb_ring_pick(const struct lb_ring *r, uint64_t hash);
void lb_ring_free(struct lb_ring *r);

/* MAGLEV: Google's consistent hashing table (Eisenbud et al., NSDI 2016) of
 * `size` entries, a prime (Envoy's default 65537), filled by each host's
 * permutation (offset and skip from two hashes of its key) in turns, a host
 * taking a turn as often as its weight allows. With equal weights every host
 * holds the same number of entries, give or take one. */
struct lb_maglev {
    uint32_t *table;
    uint32_t size;
};
int lb_maglev_build(struct lb_maglev *m, const char *const *keys, const uint32_t *weights, size_t n,
                    uint32_t size);
size_t lb_maglev_pick(const struct lb_maglev *m, uint64_t hash);
void lb_maglev_free(struct lb_maglev *m);

/* Is n a prime (for Maglev's table size)? */
int lb_is_prime(uint64_t n);

#endif

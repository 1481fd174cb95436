#include "upstream/lb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

void lb_rng_seed(struct lb_rng *r, uint64_t seed)
{
    r->s = seed != 0 ? seed : 0x9e3779b97f4a7c15ull;
}

uint64_t lb_rng_next(struct lb_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545f4914f6cdd1dull;
}

uint64_t lb_hash(const void *data, size_t len, uint64_t seed)
{
    return XXH64(data, len, seed);
}

/* --- MurmurHash64A ------------------------------------------------------------------ */

/* 8 bytes as a little-endian integer; the memcpy avoids an unaligned load
 * and the shifts make the result independent of the host's byte order
 * (compilers turn both into one load on x86-64). */
static uint64_t load_le64(const unsigned char *p)
{
    unsigned char b[8];
    memcpy(b, p, sizeof(b));
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

uint64_t lb_murmur2_64(const void *data, size_t len, uint64_t seed)
{
    const uint64_t m = 0xc6a4a7935bd1e995ull;
    const int r = 47;
    const unsigned char *p = data;
    uint64_t h = seed ^ ((uint64_t)len * m);

    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint64_t k = load_le64(p + i);
        k *= m;
        k ^= k >> r;
        k *= m;
        h ^= k;
        h *= m;
    }
    /* The 1..7 trailing bytes, little-endian, mixed in once. */
    size_t tail = len & 7;
    if (tail != 0) {
        const unsigned char *t = p + (len - tail);
        uint64_t k = 0;
        for (size_t i = tail; i > 0; i--)
            k = (k << 8) | t[i - 1];
        h ^= k;
        h *= m;
    }
    h ^= h >> r;
    h *= m;
    h ^= h >> r;
    return h;
}

/* --- round robin -------------------------------------------------------------------- */

/* Is host a's next turn due before host b's? (2k_a + 1) / 2w_a against
 * (2k_b + 1) / 2w_b, compared exactly in 128 bits. */
static bool due_before(const struct lb_rr *rr, uint32_t a, uint32_t b)
{
    unsigned __int128 lhs = (unsigned __int128)(2 * rr->turns[a] + 1) * rr->weights[b];
    unsigned __int128 rhs = (unsigned __int128)(2 * rr->turns[b] + 1) * rr->weights[a];
    return lhs < rhs || (lhs == rhs && a < b);
}

static void sift_down(struct lb_rr *rr, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        if (l < rr->heap_n && due_before(rr, rr->heap[l], rr->heap[best]))
            best = l;
        if (r < rr->heap_n && due_before(rr, rr->heap[r], rr->heap[best]))
            best = r;
        if (best == i)
            return;
        uint32_t t = rr->heap[i];
        rr->heap[i] = rr->heap[best];
        rr->heap[best] = t;
        i = best;
    }
}

int lb_rr_init(struct lb_rr *rr, const uint32_t *weights, size_t n)
{
    memset(rr, 0, sizeof(*rr));
    rr->n = n;
    rr->weights = weights;
    rr->equal = true;
    for (size_t i = 0; i < n; i++) {
        rr->total += weights[i];
        if (weights[i] != weights[0])
            rr->equal = false;
    }
    if (rr->equal)
        return 0;
    rr->turns = calloc(n, sizeof(*rr->turns));
    rr->heap = calloc(n, sizeof(*rr->heap));
    if (rr->turns == NULL || rr->heap == NULL) {
        lb_rr_free(rr);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (weights[i] > 0)
            rr->heap[rr->heap_n++] = (uint32_t)i;
    for (size_t i = rr->heap_n / 2; i-- > 0;)
        sift_down(rr, i);
    return 0;
}

size_t lb_rr_pick(struct lb_rr *rr)
{
    if (rr->total == 0)
        return LB_NONE;
    if (rr->equal) {
        size_t i = rr->next;
        rr->next = i + 1 == rr->n ? 0 : i + 1;
        return i;
    }
    uint32_t best = rr->heap[0];
    rr->turns[best]++;
    sift_down(rr, 0);
    return best;
}

void lb_rr_free(struct lb_rr *rr)
{
    free(rr->turns);
    free(rr->heap);
    rr->turns = NULL;
    rr->heap = NULL;
    rr->heap_n = 0;
}

/* --- random and least request ------------------------------------------------------- */

void lb_cumulative(const uint32_t *weights, size_t n, uint64_t *cum)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += weights[i];
        cum[i] = sum;
    }
}

size_t lb_random_pick(const uint64_t *cum, size_t n, struct lb_rng *rng)
{
    if (n == 0 || cum[n - 1] == 0)
        return LB_NONE;
    uint64_t x = lb_rng_next(rng) % cum[n - 1];
    /* the first host whose cumulative weight exceeds x */
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cum[mid] > x)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

size_t lb_least_request_pick_fn(const uint32_t *weights, const uint64_t *cum, size_t n,
                                unsigned choice_count, struct lb_rng *rng,
                                uint64_t (*active)(void *ctx, size_t host), void *ctx)
{
    size_t best = lb_random_pick(cum, n, rng);
    if (best == LB_NONE)
        return LB_NONE;
    uint64_t best_active = active(ctx, best);
    for (unsigned k = 1; k < (choice_count ? choice_count : 2); k++) {
        size_t c = lb_random_pick(cum, n, rng);
        uint64_t a = active(ctx, c);
        /* fewer active per unit of weight: a / w_c < best_active / w_best */
        if ((unsigned __int128)a * weights[best] < (unsigned __int128)best_active * weights[c]) {
            best = c;
            best_active = a;
        }
    }
    return best;
}

static uint64_t from_array(void *ctx, size_t host)
{
    return ((const uint64_t *)ctx)[host];
}

size_t lb_least_request_pick(const uint32_t *weights, const uint64_t *cum, const uint64_t *active,
                             size_t n, unsigned choice_count, struct lb_rng *rng)
{
    return lb_least_request_pick_fn(weights, cum, n, choice_count, rng, from_array, (void *)active);
}

/* --- ring hash ---------------------------------------------------------------------- */

static int by_hash(const void *a, const void *b, void *arg)
{
    const uint64_t *h = arg;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return h[x] < h[y] ? -1 : h[x] > h[y];
}

int lb_ring_build(struct lb_ring *r, const char *const *keys, const uint32_t *weights, size_t n,
                  size_t min_size, size_t max_size)
{
    return lb_ring_build_hashed(r, keys, weights, n, min_size, max_size, lb_hash, 0);
}

int lb_ring_build_hashed(struct lb_ring *r, const char *const *keys, const uint32_t *weights,
                         size_t n, size_t min_size, size_t max_size, lb_hash_fn hash, uint64_t seed)
{
    memset(r, 0, sizeof(*r));
    uint64_t total = 0;
    uint32_t min_w = 0;
    for (size_t i = 0; i < n; i++)
        if (weights[i] > 0) {
            total += weights[i];
            min_w = min_w == 0 || weights[i] < min_w ? weights[i] : min_w;
        }
    if (total == 0)
        return 0;
    if (max_size == 0)
        max_size = 1;
    if (min_size == 0 || min_size > max_size) /* the maximum wins (Envoy refuses min > max) */
        min_size = min_size == 0 ? 1 : max_size;
    /* As Envoy: enough entries that the lightest host has its share of
     * min_size, but no more than max_size in all. */
    double min_norm = (double)min_w / (double)total;
    double scale = (double)(size_t)(min_norm * (double)min_size + 0.999999) / min_norm;
    if (scale > (double)max_size)
        scale = (double)max_size;
    size_t cap = (size_t)scale + n + 1;
    uint64_t *hashes = malloc(cap * sizeof(uint64_t));
    uint32_t *hosts = malloc(cap * sizeof(uint32_t));
    uint32_t *order = malloc(cap * sizeof(uint32_t));
    if (hashes == NULL || hosts == NULL || order == NULL) {
        free(hashes);
        free(hosts);
        free(order);
        return -1;
    }
    size_t count = 0;
    double target = 0;
    for (size_t i = 0; i < n; i++) {
        if (weights[i] == 0)
            continue;
        target += scale * (double)weights[i] / (double)total;
        for (uint64_t k = 0; (double)count < target && count < cap; k++) {
            char key[320];
            int len = snprintf(key, sizeof(key), "%s_%llu", keys[i], (unsigned long long)k);
            hashes[count] = hash(key, (size_t)len, seed);
            hosts[count] = (uint32_t)i;
            order[count] = (uint32_t)count;
            count++;
        }
    }
    qsort_r(order, count, sizeof(uint32_t), by_hash, hashes);
    r->hashes = malloc((count ? count : 1) * sizeof(uint64_t));
    r->hosts = malloc((count ? count : 1) * sizeof(uint32_t));
    if (r->hashes == NULL || r->hosts == NULL) {
        free(hashes);
        free(hosts);
        free(order);
        lb_ring_free(r);
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        r->hashes[i] = hashes[order[i]];
        r->hosts[i] = hosts[order[i]];
    }
    r->size = count;
    free(hashes);
    free(hosts);
    free(order);
    return 0;
}

size_t lb_ring_pick(const struct lb_ring *r, uint64_t hash)
{
    if (r->size == 0)
        return LB_NONE;
    size_t lo = 0, hi = r->size; /* the first entry >= hash; size means wrap to 0 */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->hashes[mid] < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    return r->hosts[lo == r->size ? 0 : lo];
}

void lb_ring_free(struct lb_ring *r)
{
    free(r->hashes);
    free(r->hosts);
    r->hashes = NULL;
    r->hosts = NULL;
    r->size = 0;
}

/* --- maglev ------------------------------------------------------------------------- */

int lb_is_prime(uint64_t n)
{
    if (n < 2)
        return 0;
    for (uint64_t d = 2; d * d <= n; d++)
        if (n % d == 0)
            return 0;
    return 1;
}

int lb_maglev_build(struct lb_maglev *m, const char *const *keys, const uint32_t *weights, size_t n,
                    uint32_t size)
{
    memset(m, 0, sizeof(*m));
    if (size < 2 || !lb_is_prime(size))
        return -1;
    uint32_t max_w = 0;
    for (size_t i = 0; i < n; i++)
        max_w = weights[i] > max_w ? weights[i] : max_w;
    if (max_w == 0)
        return 0;
    uint32_t *table = malloc((size_t)size * sizeof(uint32_t));
    uint64_t *offset = calloc(n, sizeof(uint64_t));
    uint64_t *skip = calloc(n, sizeof(uint64_t));
    uint64_t *next = calloc(n, sizeof(uint64_t));
    uint64_t *taken = calloc(n, sizeof(uint64_t));
    if (table == NULL || offset == NULL || skip == NULL || next == NULL || taken == NULL) {
        free(table);
        free(offset);
        free(skip);
        free(next);
        free(taken);
        return -1;
    }
    for (uint32_t j = 0; j < size; j++)
        table[j] = UINT32_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(keys[i]);
        offset[i] = lb_hash(keys[i], len, 0x6d61676c6576ull) % size;     /* "maglev" */
        skip[i] = lb_hash(keys[i], len, 0x736b6970ull) % (size - 1) + 1; /* "skip" */
    }
    uint32_t filled = 0;
    for (uint64_t round = 0; filled < size; round++) {
        for (size_t i = 0; i < n && filled < size; i++) {
            /* A host takes a turn in this round while it holds fewer entries
             * than its weight's share of the rounds so far. */
            if (weights[i] == 0 || taken[i] >= (round + 1) * weights[i] / max_w)
                continue;
            uint64_t c;
            do
                c = (offset[i] + next[i]++ * skip[i]) % size;
            while (table[c] != UINT32_MAX);
            table[c] = (uint32_t)i;
            taken[i]++;
            filled++;
        }
    }
    free(offset);
    free(skip);
    free(next);
    free(taken);
    m->table = table;
    m->size = size;
    return 0;
}

size_t lb_maglev_pick(const struct lb_maglev *m, uint64_t hash)
{
    return m->size == 0 ? LB_NONE : m->table[hash % m->size];
}

void lb_maglev_free(struct lb_maglev *m)
{
    free(m->table);
    m->table = NULL;
    m->size = 0;
}

#include "upstream/priority.h"

#include <string.h>

/* Shares of 100 proportional to w[] (total > 0), whole percents summing to
 * exactly 100: each takes its floor, and the points left go one each to the
 * largest remainders, the earlier level first on a tie. This is what the
 * docs' tables show ({35,35,28} of 98 gives 36/36/28; {7,91} gives 7/93),
 * where Envoy's code would give every leftover point to the first level. */
static void apportion(const uint64_t *w, size_t n, uint64_t total, uint32_t *load)
{
    uint64_t rem[PRIO_MAX_LEVELS];
    bool bumped[PRIO_MAX_LEVELS] = {false};
    uint32_t given = 0;
    for (size_t i = 0; i < n; i++) {
        load[i] = (uint32_t)(w[i] * 100 / total);
        rem[i] = w[i] * 100 % total;
        given += load[i];
    }
    /* The remainders' fractions sum to the points left, each below 1, so
     * fewer than n levels get one, and only levels with a remainder. */
    for (uint32_t left = 100 - given; left > 0; left--) {
        size_t best = 0;
        bool found = false;
        for (size_t i = 0; i < n; i++) {
            if (!bumped[i] && rem[i] > 0 && (!found || rem[i] > rem[best])) {
                best = i;
                found = true;
            }
        }
        if (!found)
            break; /* unreachable: see above */
        bumped[best] = true;
        load[best]++;
    }
}

void prio_plan_compute(const struct prio_level *levels, size_t n, double panic_threshold_pct,
                       uint32_t overprovisioning, struct prio_plan *out)
{
    memset(out, 0, sizeof(*out));
    if (n > PRIO_MAX_LEVELS)
        n = PRIO_MAX_LEVELS;
    out->n = n;

    uint64_t avail[PRIO_MAX_LEVELS], hosts[PRIO_MAX_LEVELS];
    uint64_t healthy[PRIO_MAX_LEVELS];
    uint64_t sum = 0, total_hosts = 0;
    for (size_t i = 0; i < n; i++) {
        hosts[i] = levels[i].hosts;
        healthy[i] = levels[i].healthy < levels[i].hosts ? levels[i].healthy : levels[i].hosts;
        avail[i] = 0;
        if (hosts[i] > 0) {
            /* Integer, truncated, as Envoy computes it: 71 of 100 gives 99. */
            avail[i] = (uint64_t)overprovisioning * healthy[i] / hosts[i];
            if (avail[i] > 100)
                avail[i] = 100;
            /* A level with a healthy host is never refused for truncation. */
            if (avail[i] == 0 && healthy[i] > 0)
                avail[i] = 1;
        }
        sum += avail[i];
        total_hosts += hosts[i];
    }
    if (total_hosts == 0) {
        out->none_available = true;
        return;
    }

    if (sum >= 100) {
        /* Enough capacity: fill levels in order, no panic anywhere. */
        out->total_availability = 100;
        uint32_t remaining = 100;
        for (size_t i = 0; i < n; i++) {
            out->load[i] = avail[i] < remaining ? (uint32_t)avail[i] : remaining;
            remaining -= out->load[i];
        }
        return;
    }

    out->total_availability = (uint32_t)sum;
    /* `> 0` is also false for NaN: a nonsense threshold disables panic. */
    bool panic_on = panic_threshold_pct > 0;
    if (sum == 0 && !panic_on) {
        out->none_available = true;
        return;
    }
    bool all_panic = panic_on;
    for (size_t i = 0; i < n; i++) {
        if (hosts[i] == 0)
            continue;
        double pct = 100.0 * (double)healthy[i] / (double)hosts[i];
        out->panic[i] = panic_on && pct < panic_threshold_pct;
        all_panic = all_panic && out->panic[i];
    }
    /* Every level in panic (always so when nothing is healthy): health says
     * nothing any more, so load follows the number of hosts (the docs: "each
     * priority level receives traffic relative to the number of hosts"). */
    if (all_panic)
        apportion(hosts, n, total_hosts, out->load);
    else
        apportion(avail, n, sum, out->load);
}

size_t prio_pick(const struct prio_plan *p, uint64_t r)
{
    if (p->none_available)
        return PRIO_NONE;
    /* floor(r * 100 / 2^64) without 128-bit arithmetic: r = hi*2^32 + lo. */
    uint64_t hi = r >> 32, lo = r & 0xffffffffu;
    uint64_t x = (hi * 100 + ((lo * 100) >> 32)) >> 32;
    uint64_t cum = 0;
    size_t last = PRIO_NONE;
    for (size_t i = 0; i < p->n; i++) {
        if (p->load[i] == 0)
            continue;
        cum += p->load[i];
        last = i;
        if (x < cum)
            return i;
    }
    return last; /* only if the loads did not sum to 100 */
}

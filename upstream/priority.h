/* Envoy's priority levels and panic threshold, as a pure function of host
 * counts (Envoy's docs, arch overview, load balancing: "Priority levels",
 * "Panic threshold", "Overprovisioning factor").
 *
 * A level's availability is min(100, overprovisioning/100 x healthy/hosts x
 * 100), an integer as in Envoy. If the availabilities sum to 100 or more,
 * levels take load in order, each as much of what remains as its
 * availability, and nothing panics. Below 100 the availabilities are scaled
 * to sum to 100, and a level whose healthy percentage is under the panic
 * threshold is in panic (balance over all its hosts); if every level with
 * hosts is in panic, load follows host counts instead. Loads are whole
 * percents summing to exactly 100 (largest remainders, which reproduces the
 * docs' tables).
 *
 * Two departures from Envoy, both only at the edges: a level with at least
 * one healthy host counts as at least 1 available, so that a few healthy
 * hosts among very many are still used rather than refused; and levels with
 * no hosts take no load and are never in panic. */
#ifndef LEGATE_UPSTREAM_PRIORITY_H
#define LEGATE_UPSTREAM_PRIORITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PRIO_MAX_LEVELS 16
#define PRIO_DEFAULT_PANIC_THRESHOLD 50.0 /* percent; 0 disables panic */
#define PRIO_DEFAULT_OVERPROVISIONING 140 /* Envoy's 1.4 */
#define PRIO_NONE ((size_t)-1)            /* prio_pick when nothing can be picked */

struct prio_level {
    uint32_t hosts, healthy; /* healthy above hosts counts as hosts */
};

struct prio_plan {
    size_t n;
    /* percent of traffic per level, summing to 100 (all 0 when none_available) */
    uint32_t load[PRIO_MAX_LEVELS];
    /* balance across ALL hosts of this level, ignoring health */
    bool panic[PRIO_MAX_LEVELS];
    /* Envoy's "normalized total health": min(100, sum of availabilities);
     * panic is considered only below 100 */
    uint32_t total_availability;
    /* nothing can be picked: no level has a host, or no healthy host and
     * panic disabled (503 "no healthy upstream") */
    bool none_available;
};

/* Levels beyond PRIO_MAX_LEVELS are ignored. */
void prio_plan_compute(const struct prio_level *levels, size_t n, double panic_threshold_pct,
                       uint32_t overprovisioning, struct prio_plan *out);

/* The level for a uniform 64-bit draw (or a hash): level i with probability
 * load[i]/100; PRIO_NONE when none_available. */
size_t prio_pick(const struct prio_plan *p, uint64_t r);

#endif

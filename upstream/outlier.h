/* Outlier detection for one cluster, as Envoy's outlier_detection describes
 * it: consecutive 5xx, consecutive gateway failure, consecutive local-origin
 * failure (split mode), success rate and local-origin success rate (split
 * mode), each with its enforcement percentage, max_ejection_percent, and an
 * ejection time of base_ejection_time x a multiplier capped at
 * max_ejection_time. (Failure-percentage detection is not implemented: the
 * config has no fields for it.)
 *
 * Decisions only: no I/O, no clock (times are passed in, in milliseconds of
 * a monotonic clock), no locks, no allocation. The upstream manager feeds it
 * the counters workers record in shared memory and publishes the ejections it
 * decides. Hosts are indexes 0..n-1 into the caller's array of struct od_host. */
#ifndef LEGATE_UPSTREAM_OUTLIER_H
#define LEGATE_UPSTREAM_OUTLIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "upstream/lb.h"

/* Why a host was found an outlier; Envoy's stat suffixes in comments. */
enum od_reason {
    OD_CONSECUTIVE_5XX,                  /* consecutive_5xx */
    OD_CONSECUTIVE_GATEWAY_FAILURE,      /* consecutive_gateway_failure */
    OD_CONSECUTIVE_LOCAL_ORIGIN_FAILURE, /* consecutive_local_origin_failure */
    OD_SUCCESS_RATE,                     /* success_rate */
    OD_SUCCESS_RATE_LOCAL_ORIGIN,        /* local_origin_success_rate */
    OD_REASONS
};

/* One per host, owned by the caller. A new host starts all zero. */
struct od_host {
    /* Written by the caller before od_on_interval(): this interval's
     * requests. Not split: every outcome is external. Split: local-origin
     * outcomes (connect failure, timeout, reset) go in the interval_local_*
     * pair and only those. od_on_interval() zeroes all four. */
    uint64_t interval_success, interval_total;
    uint64_t interval_local_success, interval_local_total;

    /* The detector's own state; the caller reads it. */
    bool ejected;
    enum od_reason ejected_for;   /* meaningful while ejected */
    uint32_t ejection_multiplier; /* ejection time = base x this, capped at max */
    uint64_t ejected_at_ms;
};

/* Envoy's cluster.<name>.outlier_detection.* counters: ejections_active,
 * ejections_total (deprecated there: detections that passed the
 * max_ejection_percent check, enforced or not), ejections_overflow,
 * ejections_enforced_total, ejections_enforced_<reason> and
 * ejections_detected_<reason>. */
struct od_stats {
    uint64_t ejections_active;
    uint64_t ejections_total;
    uint64_t ejections_overflow;
    uint64_t ejections_enforced_total;
    uint64_t ejections_enforced[OD_REASONS];
    uint64_t ejections_detected[OD_REASONS];
};

struct od_detector {
    const struct cfg_outlier *cfg;
    struct od_host *hosts;
    size_t n;
    struct od_stats stats;
    struct lb_rng rng; /* the enforcement rolls */
    /* Envoy options struct cfg_outlier does not carry yet. od_init() sets
     * Envoy's defaults; the caller may change them afterwards. */
    bool always_eject_one_host;                   /* false */
    uint32_t enforcing_local_origin_success_rate; /* 100 */
};

/* hosts may be NULL when n is 0. `seed` seeds the enforcement rolls. */
void od_init(struct od_detector *d, const struct cfg_outlier *cfg, struct od_host *hosts, size_t n,
             uint64_t seed);

/* Host `host`'s consecutive counter for `why` (one of the three
 * OD_CONSECUTIVE_* reasons) reached its threshold at now_ms. Counts the
 * detection, then ejects the host if max_ejection_percent allows and the
 * enforcement roll says so. Returns true if the host is ejected now. Whatever
 * the answer, the caller restarts that counter, so that the next detection
 * takes a whole new run of failures. Ignored (false, nothing
 * counted): an index out of range (the host has gone), a host already
 * ejected, OD_CONSECUTIVE_LOCAL_ORIGIN_FAILURE when not split. */
bool od_on_consecutive(struct od_detector *d, size_t host, enum od_reason why, uint64_t now_ms);

/* Told of each host whose `ejected` changed in od_on_interval(). When a host
 * comes back the caller restarts all its consecutive counters (Envoy's guard
 * against a re-ejection on the first few errors). */
typedef void (*od_changed_fn)(void *ctx, size_t host);

/* Every interval_ms: brings back the hosts whose ejection time is over,
 * decrements the multiplier of hosts that were not ejected, runs the success
 * rate checks, and zeroes the interval counters. Calls `changed` (may be
 * NULL) for each host ejected or brought back; returns how many there were. */
size_t od_on_interval(struct od_detector *d, uint64_t now_ms, od_changed_fn changed, void *ctx);

/* Membership changed. The caller built the new array, copying the struct
 * od_host of each kept host and zeroing the new ones; this adopts it and
 * recounts ejections_active. */
void od_set_hosts(struct od_detector *d, struct od_host *hosts, size_t n);

#endif

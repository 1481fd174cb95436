#include "upstream/outlier.h"

#include <math.h>
#include <string.h>

/* Rates that differ from the threshold by less than this many percentage
 * points are noise of the floating-point mean (equal rates must not eject
 * one of them), not outliers. */
#define RATE_EPSILON 1e-9

/* Envoy: "the default value (300 s) or base_ejection_time, whichever is
 * larger"; here, whichever is larger of the two configured values. */
static uint64_t max_ejection_ms(const struct cfg_outlier *cfg)
{
    return cfg->max_ejection_time_ms > cfg->base_ejection_time_ms ? cfg->max_ejection_time_ms
                                                                  : cfg->base_ejection_time_ms;
}

/* The multiplier stops growing once base x multiplier reaches the maximum,
 * so that a host which then stays healthy decays back to the base time in
 * about max / base intervals, as Envoy's documentation says. */
static uint32_t multiplier_cap(const struct cfg_outlier *cfg)
{
    uint64_t base = cfg->base_ejection_time_ms;
    if (base == 0)
        return 1;
    uint64_t max = max_ejection_ms(cfg);
    uint64_t cap = max / base + (max % base != 0);
    return cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
}

static uint64_t ejection_duration_ms(const struct cfg_outlier *cfg, uint32_t multiplier)
{
    uint64_t base = cfg->base_ejection_time_ms;
    uint64_t max = max_ejection_ms(cfg);
    if (base == 0)
        return 0;
    if (multiplier > max / base) /* base x multiplier would pass the maximum (or overflow) */
        return max;
    return base * multiplier;
}

static uint32_t clamp_percent(uint32_t percent)
{
    return percent > 100 ? 100 : percent;
}

/* max_ejection_percent, as Envoy has applied it since envoy#27909 (2023):
 * one more ejection is allowed only if the ejected share, counting it, stays
 * at or below the percentage, so 10 % of 3 hosts ejects none. The older
 * "defaults to 10% but will eject at least one host regardless of the value"
 * survives only behind the always_eject_one_host option (envoy#34796,
 * default false), which is what the current proto documentation describes. */
static bool another_ejection_allowed(const struct od_detector *d)
{
    uint64_t active = d->stats.ejections_active;
    if (d->always_eject_one_host && active == 0)
        return true;
    /* (active + 1) x 100 <= percent x n, without the products:
     * floor(percent x n / 100) computed in two parts that cannot overflow. */
    uint64_t percent = clamp_percent(d->cfg->max_ejection_percent);
    uint64_t n = d->n;
    uint64_t allowed = (n / 100) * percent + (n % 100) * percent / 100;
    return active + 1 <= allowed;
}

/* True with probability percent / 100. */
static bool enforcement_roll(struct od_detector *d, uint32_t percent)
{
    percent = clamp_percent(percent);
    if (percent == 0)
        return false;
    if (percent == 100)
        return true;
    return lb_rng_next(&d->rng) % 100 < percent;
}

static uint32_t enforcing_percent(const struct od_detector *d, enum od_reason why)
{
    switch (why) {
    case OD_CONSECUTIVE_5XX:
        return d->cfg->enforcing_consecutive_5xx;
    case OD_CONSECUTIVE_GATEWAY_FAILURE:
        return d->cfg->enforcing_consecutive_gateway_failure;
    case OD_CONSECUTIVE_LOCAL_ORIGIN_FAILURE:
        return d->cfg->enforcing_consecutive_local_origin_failure;
    case OD_SUCCESS_RATE:
        return d->cfg->enforcing_success_rate;
    case OD_SUCCESS_RATE_LOCAL_ORIGIN:
        return d->enforcing_local_origin_success_rate;
    case OD_REASONS:
        break;
    }
    return 0;
}

/* A detection (already counted) of a host not ejected: Envoy's order is the
 * percentage check (overflow), then the enforcement roll. */
static bool try_eject(struct od_detector *d, size_t host, enum od_reason why, uint64_t now_ms)
{
    if (!another_ejection_allowed(d)) {
        d->stats.ejections_overflow++;
        return false;
    }
    d->stats.ejections_total++;
    if (!enforcement_roll(d, enforcing_percent(d, why)))
        return false;

    struct od_host *h = &d->hosts[host];
    h->ejected = true;
    h->ejected_for = why;
    h->ejected_at_ms = now_ms;
    if (h->ejection_multiplier < multiplier_cap(d->cfg))
        h->ejection_multiplier++;
    d->stats.ejections_active++;
    d->stats.ejections_enforced_total++;
    d->stats.ejections_enforced[why]++;
    return true;
}

void od_init(struct od_detector *d, const struct cfg_outlier *cfg, struct od_host *hosts, size_t n,
             uint64_t seed)
{
    memset(d, 0, sizeof(*d));
    d->cfg = cfg;
    d->always_eject_one_host = false;
    d->enforcing_local_origin_success_rate = 100;
    lb_rng_seed(&d->rng, seed);
    od_set_hosts(d, hosts, n);
}

void od_set_hosts(struct od_detector *d, struct od_host *hosts, size_t n)
{
    d->hosts = hosts;
    d->n = hosts != NULL ? n : 0;
    d->stats.ejections_active = 0;
    for (size_t i = 0; i < d->n; i++)
        if (hosts[i].ejected)
            d->stats.ejections_active++;
}

bool od_on_consecutive(struct od_detector *d, size_t host, enum od_reason why, uint64_t now_ms)
{
    if (host >= d->n || d->hosts[host].ejected)
        return false;
    switch (why) {
    case OD_CONSECUTIVE_5XX:
    case OD_CONSECUTIVE_GATEWAY_FAILURE:
        break;
    case OD_CONSECUTIVE_LOCAL_ORIGIN_FAILURE:
        if (!d->cfg->split_external_local_origin_errors)
            return false;
        break;
    default:
        return false;
    }
    d->stats.ejections_detected[why]++;
    return try_eject(d, host, why, now_ms);
}

/* The host's success rate in percent, if its volume counts this interval. */
static bool host_success_rate(const struct od_host *h, bool local_origin, uint64_t min_volume,
                              double *rate)
{
    uint64_t success = local_origin ? h->interval_local_success : h->interval_success;
    uint64_t total = local_origin ? h->interval_local_total : h->interval_total;
    if (total == 0 || total < min_volume)
        return false;
    if (success > total) /* a caller's torn read: never above 100 % */
        success = total;
    *rate = 100.0 * (double)success / (double)total;
    return true;
}

/* Envoy's success-rate pass: among hosts not ejected with enough volume, if
 * there are enough of them, eject those below mean - factor x stdev (the
 * population standard deviation of their rates). */
static size_t success_rate_pass(struct od_detector *d, enum od_reason why, uint64_t now_ms,
                                od_changed_fn changed, void *ctx)
{
    const struct cfg_outlier *cfg = d->cfg;
    bool local_origin = why == OD_SUCCESS_RATE_LOCAL_ORIGIN;
    uint64_t min_volume = cfg->success_rate_request_volume;
    double rate;

    size_t counted = 0;
    double sum = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (!d->hosts[i].ejected &&
            host_success_rate(&d->hosts[i], local_origin, min_volume, &rate)) {
            counted++;
            sum += rate;
        }
    }
    if (counted == 0 || counted < cfg->success_rate_minimum_hosts)
        return 0;

    double mean = sum / (double)counted;
    double squares = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (!d->hosts[i].ejected &&
            host_success_rate(&d->hosts[i], local_origin, min_volume, &rate))
            squares += (rate - mean) * (rate - mean);
    }
    double stdev = sqrt(squares / (double)counted);
    double threshold = mean - (double)cfg->success_rate_stdev_factor / 1000.0 * stdev;

    /* The same hosts as above: those ejected before this pass stay out, and
     * one ejected in this loop is not visited again. */
    size_t ejected_now = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (d->hosts[i].ejected ||
            !host_success_rate(&d->hosts[i], local_origin, min_volume, &rate))
            continue;
        if (threshold - rate <= RATE_EPSILON)
            continue;
        d->stats.ejections_detected[why]++;
        if (try_eject(d, i, why, now_ms)) {
            ejected_now++;
            if (changed != NULL)
                changed(ctx, i);
        }
    }
    return ejected_now;
}

size_t od_on_interval(struct od_detector *d, uint64_t now_ms, od_changed_fn changed, void *ctx)
{
    size_t changes = 0;

    for (size_t i = 0; i < d->n; i++) {
        struct od_host *h = &d->hosts[i];
        if (!h->ejected) {
            /* in service since the last tick: its next ejection is shorter */
            if (h->ejection_multiplier > 0)
                h->ejection_multiplier--;
            continue;
        }
        uint64_t elapsed = now_ms > h->ejected_at_ms ? now_ms - h->ejected_at_ms : 0;
        if (elapsed >= ejection_duration_ms(d->cfg, h->ejection_multiplier)) {
            h->ejected = false;
            if (d->stats.ejections_active > 0)
                d->stats.ejections_active--;
            changes++;
            if (changed != NULL)
                changed(ctx, i);
        }
    }

    changes += success_rate_pass(d, OD_SUCCESS_RATE, now_ms, changed, ctx);
    if (d->cfg->split_external_local_origin_errors)
        changes += success_rate_pass(d, OD_SUCCESS_RATE_LOCAL_ORIGIN, now_ms, changed, ctx);

    for (size_t i = 0; i < d->n; i++) {
        d->hosts[i].interval_success = 0;
        d->hosts[i].interval_total = 0;
        d->hosts[i].interval_local_success = 0;
        d->hosts[i].interval_local_total = 0;
    }
    return changes;
}

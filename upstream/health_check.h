/* Active health checking of one upstream host, Envoy's way (HTTP or TCP).
 *
 * The upstream manager starts one checker per host of each cluster with
 * health_checks, on its own libev loop. A checker owns at most one
 * non-blocking connection at a time and tells its owner the result of every
 * attempt, and separately each change of health. It never blocks, and
 * whatever the upstream sends is a result, never a crash. */
#ifndef LEGATE_UPSTREAM_HEALTH_CHECK_H
#define LEGATE_UPSTREAM_HEALTH_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ev.h>

#include "common/config.h"

enum hc_result {
    HC_PASS,
    HC_FAIL,         /* answered, but wrongly (HTTP status not expected, TCP pieces missing) */
    HC_NETWORK_FAIL, /* refused, reset, timed out, or garbage */
};

/* Both are called from the loop, never from inside hc_host_start. The owner
 * may call hc_host_stop from either. */
struct hc_callbacks {
    void (*on_result)(void *owner, enum hc_result r); /* every completed attempt */
    void (*on_change)(void *owner, bool healthy);     /* only on a transition, after on_result */
};

struct hc_host;

/* Start checking the host at `addr` (IPv4 or IPv6); the first attempt runs on
 * the next loop iteration. The host starts unhealthy, and its first result
 * decides (one pass is enough then). `cfg` and `cb` must outlive the checker;
 * `cluster_name` (the default Host header) and `addr` are copied. `seed`
 * drives the interval jitter. NULL if out of memory. */
struct hc_host *hc_host_start(struct ev_loop *loop, const struct cfg_health_check *cfg,
                              const char *cluster_name, const struct sockaddr *addr,
                              socklen_t addrlen, const struct hc_callbacks *cb, void *owner,
                              uint64_t seed);
/* Close its connection, stop its timers, free it. NULL is ignored. */
void hc_host_stop(struct hc_host *h);
bool hc_host_healthy(const struct hc_host *h);
/* Whether the cluster has had traffic (true at start). Without traffic, checks
 * run every no_traffic_interval; when traffic resumes, a wait longer than the
 * normal interval is cut short. */
void hc_host_set_traffic(struct hc_host *h, bool had_traffic);

#endif

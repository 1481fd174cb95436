/* The upstream manager role: Envoy's cluster manager, as its own process. It
 * owns what is known about every host (health from active checks, ejections
 * from outlier detection, health_status from the configuration), decides the
 * priority plan and builds the hashing tables, and publishes all of it in the
 * host table (shm/hosts.h) that every worker balances over. Workers report
 * request outcomes through the table's live counters, and ring the doorbell
 * when a host's consecutive failures reach a threshold.
 *
 * Discovery is static for now: a cluster's hosts are its configured
 * endpoints, and a host's live slot is its endpoint index. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/evtimer.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/role.h"
#include "shm/hosts.h"
#include "upstream/health_check.h"
#include "upstream/lb.h"
#include "upstream/outlier.h"
#include "upstream/priority.h"

struct mcluster;

struct mhost {
    struct mcluster *cl;
    uint32_t index; /* endpoint index, and live slot */
    const struct cfg_endpoint *ep;
    char name[64];
    uint32_t flags;
    struct hc_host *hc;
    int flags_id; /* cluster.<c>.host.<addr>.health_flags */
    /* the live counters at the last interval, for the success rate's deltas */
    uint64_t seen_total, seen_success, seen_local_total, seen_local_success;
};

struct od_counter_ids {
    int active, total, overflow, enforced_total;
    int enforced[OD_REASONS], detected[OD_REASONS];
};

struct mcluster {
    struct manager *m;
    size_t index;
    const struct cfg_cluster *cfg;
    struct hosts_cluster *shm;
    struct mhost *hosts;
    size_t n_hosts;
    struct od_detector od;
    struct od_host *od_hosts;
    struct od_stats od_reported; /* what the counters say already */
    struct od_counter_ids od_ids;
    ev_timer od_timer;
    /* stats */
    int membership_total, membership_healthy, membership_degraded;
    int hc_attempt, hc_success, hc_failure, hc_network_failure, hc_healthy;
    int lb_panic_levels; /* gauge: priority levels in panic */
};

struct manager {
    const struct child_ctx *ctx;
    struct ev_loop *loop;
    struct mcluster *clusters;
    size_t n_clusters;
    ev_io bell;
};

static const char *const od_reason_names[OD_REASONS] = {
    "consecutive_5xx", "consecutive_gateway_failure", "consecutive_local_origin_failure",
    "success_rate",    "local_origin_success_rate",
};

static int reg(struct manager *m, const char *cluster, const char *what, enum stat_kind kind)
{
    char name[512];
    snprintf(name, sizeof(name), "cluster.%s.%s", cluster, what);
    return m->ctx->stats != NULL ? stats_register(m->ctx->stats, name, kind) : -1;
}

static void inc(struct manager *m, int id, uint64_t n)
{
    if (m->ctx->stats != NULL && id >= 0 && n > 0)
        stats_inc(m->ctx->stats, id, n);
}

static void gauge(struct manager *m, int id, int64_t v)
{
    if (m->ctx->stats != NULL && id >= 0)
        stats_gauge_set(m->ctx->stats, id, v);
}

static uint64_t now_ms(void)
{
    return proc_now_ms();
}

/* --- publishing ------------------------------------------------------------------------ */

static const char *host_key(const struct mhost *h)
{
    return h->name;
}

/* Build level `level`'s hashing table over `members` (indexes into the
 * cluster's hosts, which are also bank indexes) into the hidden bank. */
static void build_table(struct mcluster *cl, uint32_t level, const uint32_t *members, size_t n)
{
    const struct cfg_cluster *cfg = cl->cfg;
    if (n == 0 || (cfg->lb_policy != LB_RING_HASH && cfg->lb_policy != LB_MAGLEV))
        return;
    const char **keys = calloc(n, sizeof(*keys));
    uint32_t *weights = calloc(n, sizeof(*weights));
    if (keys == NULL || weights == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        keys[i] = host_key(&cl->hosts[members[i]]);
        weights[i] = cl->hosts[members[i]].ep->weight;
    }
    if (cfg->lb_policy == LB_RING_HASH) {
        struct lb_ring ring;
        size_t max = cfg->ring_max_size;
        if (max > hosts_table_capacity(cl->shm))
            max = hosts_table_capacity(cl->shm);
        size_t min = cfg->ring_min_size < max ? cfg->ring_min_size : max;
        int rc = cfg->ring_murmur ? lb_ring_build_hashed(&ring, keys, weights, n, min, max,
                                                         lb_murmur2_64, LB_MURMUR2_SEED)
                                  : lb_ring_build(&ring, keys, weights, n, min, max);
        if (rc == 0) {
            for (size_t i = 0; i < ring.size; i++)
                ring.hosts[i] = members[ring.hosts[i]];
            hosts_write_ring(cl->shm, level, ring.hashes, ring.hosts, ring.size);
            lb_ring_free(&ring);
        } else {
            log_error("cluster %s: out of memory building the ring", cfg->name);
        }
    } else {
        struct lb_maglev mag;
        if (lb_maglev_build(&mag, keys, weights, n, (uint32_t)cfg->maglev_table_size) == 0) {
            for (size_t i = 0; i < mag.size; i++)
                mag.table[i] = members[mag.table[i]];
            hosts_write_maglev(cl->shm, level, mag.table, mag.size);
            lb_maglev_free(&mag);
        } else {
            log_error("cluster %s: out of memory building the Maglev table", cfg->name);
        }
    }
out:
    free(keys);
    free(weights);
}

static void publish(struct mcluster *cl)
{
    struct manager *m = cl->m;
    uint32_t n_levels = cl->cfg->max_priority + 1;
    struct prio_level levels[PRIO_MAX_LEVELS] = {{0, 0}};
    size_t healthy = 0, degraded = 0;
    for (size_t i = 0; i < cl->n_hosts; i++) {
        const struct mhost *h = &cl->hosts[i];
        levels[h->ep->priority].hosts++;
        if (!(h->flags & HOST_UNAVAILABLE)) {
            levels[h->ep->priority].healthy++;
            healthy++;
        }
        if (h->flags & HOST_DEGRADED_EDS_HEALTH)
            degraded++;
    }
    struct prio_plan pp;
    prio_plan_compute(levels, n_levels, cl->cfg->healthy_panic_threshold,
                      PRIO_DEFAULT_OVERPROVISIONING, &pp);
    struct hosts_plan plan = {.n_levels = n_levels, .none_available = pp.none_available};
    int panics = 0;
    for (uint32_t l = 0; l < n_levels; l++) {
        plan.load[l] = pp.load[l];
        plan.panic[l] = pp.panic[l];
        if (pp.panic[l] && pp.load[l] > 0) {
            plan.any_panic = 1;
            panics++;
        }
    }

    struct hosts_entry *e = hosts_write_begin(cl->shm);
    uint32_t *members = calloc(cl->n_hosts ? cl->n_hosts : 1, sizeof(*members));
    if (members == NULL)
        log_fatal("out of memory");
    for (size_t i = 0; i < cl->n_hosts; i++) {
        const struct mhost *h = &cl->hosts[i];
        memset(&e[i], 0, sizeof(e[i]));
        e[i].live = h->index;
        e[i].weight = h->ep->weight;
        e[i].priority = h->ep->priority;
        e[i].flags = h->flags;
        memcpy(&e[i].addr, &h->ep->addr.ss, h->ep->addr.sslen);
        e[i].addrlen = h->ep->addr.sslen;
        snprintf(e[i].name, sizeof(e[i].name), "%s", h->name);
    }
    /* The tables cover what a level balances over: its available hosts, or
     * all of them when it panics. */
    for (uint32_t l = 0; l < n_levels; l++) {
        size_t n = 0;
        for (size_t i = 0; i < cl->n_hosts; i++)
            if (cl->hosts[i].ep->priority == l &&
                (plan.panic[l] || !(cl->hosts[i].flags & HOST_UNAVAILABLE)))
                members[n++] = (uint32_t)i;
        build_table(cl, l, members, n);
    }
    free(members);
    hosts_write_publish(cl->shm, (uint32_t)cl->n_hosts, &plan);

    gauge(m, cl->membership_total, (int64_t)cl->n_hosts);
    gauge(m, cl->membership_healthy, (int64_t)healthy);
    gauge(m, cl->membership_degraded, (int64_t)degraded);
    gauge(m, cl->lb_panic_levels, panics);
    if (cl->cfg->hc.enabled) {
        size_t hc_healthy = 0;
        for (size_t i = 0; i < cl->n_hosts; i++)
            hc_healthy += !(cl->hosts[i].flags & HOST_FAILED_ACTIVE_HC);
        gauge(m, cl->hc_healthy, (int64_t)hc_healthy);
    }
    for (size_t i = 0; i < cl->n_hosts; i++)
        gauge(m, cl->hosts[i].flags_id, cl->hosts[i].flags);
}

static void set_flag(struct mhost *h, uint32_t flag, bool on, const char *why)
{
    uint32_t before = h->flags;
    h->flags = on ? h->flags | flag : h->flags & ~flag;
    if (h->flags == before)
        return;
    char text[128];
    host_flags_text(h->flags, text, sizeof(text));
    log_info("cluster %s: host %s is now %s (%s)", h->cl->cfg->name, h->name, text, why);
    publish(h->cl);
}

/* --- active health checks ------------------------------------------------------------------ */

static void hc_on_result(void *owner, enum hc_result r)
{
    struct mhost *h = owner;
    struct mcluster *cl = h->cl;
    inc(cl->m, cl->hc_attempt, 1);
    inc(cl->m,
        r == HC_PASS   ? cl->hc_success
        : r == HC_FAIL ? cl->hc_failure
                       : cl->hc_network_failure,
        1);
    /* The checker's state is the truth, also for a host whose flag came from
     * a previous manager's table (a respawn) and that never changes state. */
    set_flag(h, HOST_FAILED_ACTIVE_HC, !hc_host_healthy(h->hc),
             r == HC_PASS   ? "health check passed"
             : r == HC_FAIL ? "health check failed"
                            : "health check could not reach it");
}

static void hc_on_change(void *owner, bool healthy)
{
    struct mhost *h = owner;
    set_flag(h, HOST_FAILED_ACTIVE_HC, !healthy,
             healthy ? "health checks passed" : "health checks failed");
}

static const struct hc_callbacks hc_callbacks = {hc_on_result, hc_on_change};

/* --- outlier detection --------------------------------------------------------------------- */

static void report_od_stats(struct mcluster *cl)
{
    struct manager *m = cl->m;
    const struct od_stats *now = &cl->od.stats;
    struct od_stats *was = &cl->od_reported;
    gauge(m, cl->od_ids.active, (int64_t)now->ejections_active);
    inc(m, cl->od_ids.total, now->ejections_total - was->ejections_total);
    inc(m, cl->od_ids.overflow, now->ejections_overflow - was->ejections_overflow);
    inc(m, cl->od_ids.enforced_total,
        now->ejections_enforced_total - was->ejections_enforced_total);
    for (int r = 0; r < OD_REASONS; r++) {
        inc(m, cl->od_ids.enforced[r], now->ejections_enforced[r] - was->ejections_enforced[r]);
        inc(m, cl->od_ids.detected[r], now->ejections_detected[r] - was->ejections_detected[r]);
    }
    *was = *now;
}

static void reset_consecutive(struct hosts_live *lv)
{
    atomic_store_explicit(&lv->consecutive_5xx, 0, memory_order_relaxed);
    atomic_store_explicit(&lv->consecutive_gateway, 0, memory_order_relaxed);
    atomic_store_explicit(&lv->consecutive_local, 0, memory_order_relaxed);
}

static void od_apply(struct mcluster *cl, size_t i, const char *why)
{
    struct mhost *h = &cl->hosts[i];
    set_flag(h, HOST_FAILED_OUTLIER_CHECK, cl->od_hosts[i].ejected, why);
}

/* The doorbell, or the interval: has any host reached a consecutive threshold? */
static void od_scan_consecutive(struct mcluster *cl)
{
    const struct cfg_outlier *o = &cl->cfg->outlier;
    for (size_t i = 0; i < cl->n_hosts; i++) {
        struct hosts_live *lv = hosts_live(cl->shm, cl->hosts[i].index);
        if (lv == NULL || cl->od_hosts[i].ejected)
            continue;
        struct {
            uint32_t value, threshold;
            enum od_reason why;
        } checks[] = {
            {atomic_load(&lv->consecutive_5xx), o->consecutive_5xx, OD_CONSECUTIVE_5XX},
            {atomic_load(&lv->consecutive_gateway), o->consecutive_gateway_failure,
             OD_CONSECUTIVE_GATEWAY_FAILURE},
            {atomic_load(&lv->consecutive_local), o->consecutive_local_origin_failure,
             OD_CONSECUTIVE_LOCAL_ORIGIN_FAILURE},
        };
        for (size_t k = 0; k < sizeof(checks) / sizeof(checks[0]); k++) {
            if (checks[k].threshold == 0 || checks[k].value < checks[k].threshold)
                continue;
            bool ejected = od_on_consecutive(&cl->od, i, checks[k].why, now_ms());
            /* Whatever the decision, the next detection takes a new run. */
            if (checks[k].why == OD_CONSECUTIVE_5XX)
                atomic_store(&lv->consecutive_5xx, 0);
            else if (checks[k].why == OD_CONSECUTIVE_GATEWAY_FAILURE)
                atomic_store(&lv->consecutive_gateway, 0);
            else
                atomic_store(&lv->consecutive_local, 0);
            if (ejected) {
                reset_consecutive(lv);
                char why[96];
                snprintf(why, sizeof(why), "ejected: %s", od_reason_names[checks[k].why]);
                od_apply(cl, i, why);
                break;
            }
        }
    }
    report_od_stats(cl);
}

static void on_bell(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct manager *m = w->data;
    uint64_t v;
    while (read(w->fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
        ;
    for (size_t c = 0; c < m->n_clusters; c++)
        if (m->clusters[c].cfg->outlier.enabled)
            od_scan_consecutive(&m->clusters[c]);
}

static void od_changed(void *ctx, size_t host)
{
    struct mcluster *cl = ctx;
    if (!cl->od_hosts[host].ejected) {
        struct hosts_live *lv = hosts_live(cl->shm, cl->hosts[host].index);
        if (lv != NULL)
            reset_consecutive(lv);
    }
    od_apply(cl, host, cl->od_hosts[host].ejected ? "ejected: success rate" : "ejection time over");
}

static void on_od_interval(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct mcluster *cl = t->data;
    for (size_t i = 0; i < cl->n_hosts; i++) {
        struct mhost *h = &cl->hosts[i];
        struct hosts_live *lv = hosts_live(cl->shm, h->index);
        if (lv == NULL)
            continue;
        uint64_t total = atomic_load(&lv->total), success = atomic_load(&lv->success);
        uint64_t ltotal = atomic_load(&lv->local_total), lsuccess = atomic_load(&lv->local_success);
        struct od_host *oh = &cl->od_hosts[i];
        oh->interval_total = total - h->seen_total;
        oh->interval_success = success - h->seen_success;
        oh->interval_local_total = ltotal - h->seen_local_total;
        oh->interval_local_success = lsuccess - h->seen_local_success;
        h->seen_total = total;
        h->seen_success = success;
        h->seen_local_total = ltotal;
        h->seen_local_success = lsuccess;
    }
    od_on_interval(&cl->od, now_ms(), od_changed, cl);
    od_scan_consecutive(cl); /* a bell lost to a full eventfd, say */
    report_od_stats(cl);
}

/* --- set-up -------------------------------------------------------------------------------- */

static void host_name(const struct cfg_endpoint *ep, char *out, size_t cap)
{
    if (ep->addr.ss.ss_family == AF_INET6)
        snprintf(out, cap, "[%s]:%u", ep->addr.address, ep->addr.port);
    else
        snprintf(out, cap, "%s:%u", ep->addr.address, ep->addr.port);
}

static uint32_t flags_from_config(const struct cfg_cluster *cfg, const struct cfg_endpoint *ep)
{
    uint32_t f = 0;
    /* As Envoy: a host with an active check is out until its first check passes. */
    if (cfg->hc.enabled)
        f |= HOST_FAILED_ACTIVE_HC;
    switch (ep->health_status) {
    case HEALTH_STATUS_UNHEALTHY:
    case HEALTH_STATUS_DRAINING:
    case HEALTH_STATUS_TIMEOUT:
        f |= HOST_FAILED_EDS_HEALTH;
        break;
    case HEALTH_STATUS_DEGRADED:
        f |= HOST_DEGRADED_EDS_HEALTH;
        break;
    default:
        break;
    }
    return f;
}

static void setup_cluster(struct manager *m, struct mcluster *cl, size_t index)
{
    const struct cfg_cluster *cfg = &m->ctx->cfg->clusters[index];
    cl->m = m;
    cl->index = index;
    cl->cfg = cfg;
    cl->shm = hosts_cluster(m->ctx->hosts, index);
    if (cl->shm == NULL)
        log_fatal("the host table has no cluster %zu", index);
    cl->n_hosts = cfg->n_endpoints;
    cl->hosts = calloc(cl->n_hosts ? cl->n_hosts : 1, sizeof(*cl->hosts));
    cl->od_hosts = calloc(cl->n_hosts ? cl->n_hosts : 1, sizeof(*cl->od_hosts));
    if (cl->hosts == NULL || cl->od_hosts == NULL)
        log_fatal("out of memory");

    /* A respawned manager starts from what its predecessor published. */
    struct hosts_entry *prev = calloc(hosts_capacity(cl->shm), sizeof(*prev));
    struct hosts_view view = {.hosts = prev};
    if (prev == NULL)
        log_fatal("out of memory");
    bool have_prev = hosts_generation(cl->shm) > 0;
    if (have_prev)
        hosts_read(cl->shm, &view);

    cl->membership_total = reg(m, cfg->name, "membership_total", STAT_GAUGE);
    cl->membership_healthy = reg(m, cfg->name, "membership_healthy", STAT_GAUGE);
    cl->membership_degraded = reg(m, cfg->name, "membership_degraded", STAT_GAUGE);
    cl->lb_panic_levels = reg(m, cfg->name, "lb_panic_levels", STAT_GAUGE);
    if (cfg->hc.enabled) {
        cl->hc_attempt = reg(m, cfg->name, "health_check.attempt", STAT_COUNTER);
        cl->hc_success = reg(m, cfg->name, "health_check.success", STAT_COUNTER);
        cl->hc_failure = reg(m, cfg->name, "health_check.failure", STAT_COUNTER);
        cl->hc_network_failure = reg(m, cfg->name, "health_check.network_failure", STAT_COUNTER);
        cl->hc_healthy = reg(m, cfg->name, "health_check.healthy", STAT_GAUGE);
    }
    for (size_t i = 0; i < cl->n_hosts; i++) {
        struct mhost *h = &cl->hosts[i];
        h->cl = cl;
        h->index = (uint32_t)i;
        h->ep = &cfg->endpoints[i];
        host_name(h->ep, h->name, sizeof(h->name));
        h->flags = flags_from_config(cfg, h->ep);
        if (have_prev && i < view.n_hosts && strcmp(prev[i].name, h->name) == 0) {
            /* Keep what was learnt; outlier ejections start over (their
             * timers died with the predecessor). */
            h->flags =
                (h->flags & ~HOST_FAILED_ACTIVE_HC) | (prev[i].flags & HOST_FAILED_ACTIVE_HC);
        }
        char what[256];
        snprintf(what, sizeof(what), "host.%s.health_flags", h->name);
        if (m->ctx->stats != NULL) {
            char name[512];
            snprintf(name, sizeof(name), "cluster.%s.%s", cfg->name, what);
            h->flags_id = stats_register_flags(m->ctx->stats, name, STAT_GAUGE, STAT_FLAG_HOST);
        } else {
            h->flags_id = -1;
        }
        struct hosts_live *lv = hosts_live(cl->shm, h->index);
        if (lv != NULL) {
            reset_consecutive(lv);
            h->seen_total = atomic_load(&lv->total);
            h->seen_success = atomic_load(&lv->success);
            h->seen_local_total = atomic_load(&lv->local_total);
            h->seen_local_success = atomic_load(&lv->local_success);
        }
    }
    free(prev);

    if (cfg->outlier.enabled) {
        uint64_t seed;
        if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
            seed = proc_now_ns();
        od_init(&cl->od, &cfg->outlier, cl->od_hosts, cl->n_hosts, seed);
        cl->od_ids.active = reg(m, cfg->name, "outlier_detection.ejections_active", STAT_GAUGE);
        cl->od_ids.total = reg(m, cfg->name, "outlier_detection.ejections_total", STAT_COUNTER);
        cl->od_ids.overflow =
            reg(m, cfg->name, "outlier_detection.ejections_overflow", STAT_COUNTER);
        cl->od_ids.enforced_total =
            reg(m, cfg->name, "outlier_detection.ejections_enforced_total", STAT_COUNTER);
        for (int r = 0; r < OD_REASONS; r++) {
            char what[128];
            snprintf(what, sizeof(what), "outlier_detection.ejections_enforced_%s",
                     od_reason_names[r]);
            cl->od_ids.enforced[r] = reg(m, cfg->name, what, STAT_COUNTER);
            snprintf(what, sizeof(what), "outlier_detection.ejections_detected_%s",
                     od_reason_names[r]);
            cl->od_ids.detected[r] = reg(m, cfg->name, what, STAT_COUNTER);
        }
        ev_timer_init(&cl->od_timer, on_od_interval, cfg->outlier.interval_ms / 1000.0,
                      cfg->outlier.interval_ms / 1000.0);
        cl->od_timer.data = cl;
        ev_timer_start(m->loop, &cl->od_timer);
    }
    publish(cl);
}

/* After the sandbox (the checks' sockets are made by the filter's leave). */
static void start_health_checks(struct manager *m)
{
    for (size_t c = 0; c < m->n_clusters; c++) {
        struct mcluster *cl = &m->clusters[c];
        if (!cl->cfg->hc.enabled)
            continue;
        for (size_t i = 0; i < cl->n_hosts; i++) {
            struct mhost *h = &cl->hosts[i];
            uint64_t seed;
            if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
                seed = proc_now_ns() + i;
            h->hc = hc_host_start(m->loop, &cl->cfg->hc, cl->cfg->name,
                                  (const struct sockaddr *)&h->ep->addr.ss, h->ep->addr.sslen,
                                  &hc_callbacks, h, seed);
            if (h->hc == NULL)
                log_fatal("out of memory starting health checks");
        }
    }
}

static void stop_everything(struct manager *m)
{
    for (size_t c = 0; c < m->n_clusters; c++) {
        struct mcluster *cl = &m->clusters[c];
        for (size_t i = 0; i < cl->n_hosts; i++)
            hc_host_stop(cl->hosts[i].hc);
        if (cl->cfg->outlier.enabled)
            ev_timer_stop(m->loop, &cl->od_timer);
        free(cl->hosts);
        free(cl->od_hosts);
    }
    free(m->clusters);
    if (m->bell.fd >= 0)
        ev_io_stop(m->loop, &m->bell);
}

int upstream_manager_run(const struct child_ctx *ctx)
{
    static struct ipc_chan ctl;
    static ev_signal sig_term;
    static struct manager m;
    m.ctx = ctx;
    m.loop = child_start(ctx, "legate: upstream manager", &ctl, child_stop_on_control, NULL);
    ev_signal_init(&sig_term, child_stop_on_sigterm, SIGTERM);
    ev_signal_start(m.loop, &sig_term);
    if (ctx->hosts == NULL)
        log_fatal("the upstream manager was given no host table");
    m.n_clusters = ctx->cfg->n_clusters;
    m.clusters = calloc(m.n_clusters ? m.n_clusters : 1, sizeof(*m.clusters));
    if (m.clusters == NULL)
        log_fatal("out of memory");
    for (size_t i = 0; i < m.n_clusters; i++)
        setup_cluster(&m, &m.clusters[i], i);
    ev_io_init(&m.bell, on_bell, ctx->hosts_bell_fd, EV_READ);
    m.bell.data = &m;
    if (ctx->hosts_bell_fd >= 0)
        ev_io_start(m.loop, &m.bell);
    start_health_checks(&m);
    child_ready(&ctl);
    ev_run(m.loop, 0);
    stop_everything(&m);
    ipc_close(&ctl);
    return 0;
}

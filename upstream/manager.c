/* The upstream manager role: Envoy's cluster manager, as its own process. It
 * owns what is known about every host (health from active checks, ejections
 * from outlier detection, health_status from the configuration), decides the
 * priority plan and builds the hashing tables, and publishes all of it in the
 * host table (shm/hosts.h) that every worker balances over. Workers report
 * request outcomes through the table's live counters, and ring the doorbell
 * when a host's consecutive failures reach a threshold.
 *
 * Membership comes from discovery: a STATIC cluster's endpoints, what DNS
 * answers for a STRICT_DNS or LOGICAL_DNS cluster's names, an EDS cluster's
 * file (read by the supervisor, handed over as a descriptor). Hosts are
 * matched by address across updates: a kept host keeps its health, its
 * ejection state and its live slot; a new one takes a free slot (workers
 * notice the address changed and start afresh). */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <netinet/in.h>
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
#include "upstream/dns.h"
#include "upstream/health_check.h"
#include "upstream/lb.h"
#include "upstream/outlier.h"
#include "upstream/priority.h"

struct mcluster;

struct mhost {
    struct mcluster *cl;
    uint32_t slot; /* its live slot in the host table */
    size_t idx;    /* its place in cl->hosts (and cl->od_hosts) */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint32_t weight, priority;
    char name[64];
    uint32_t flags;
    struct hc_host *hc;
    int flags_id;       /* cluster.<c>.host.<addr>.health_flags */
    bool ramp_pending;  /* added after start: slow start once it is available */
    uint64_t ramp_from; /* ms when its slow start began; 0: at full weight */
    /* the live counters at the last interval, for the success rate's deltas */
    uint64_t seen_total, seen_success, seen_local_total, seen_local_success;
};

/* A host as discovery reports it. */
struct found_host {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint32_t weight, priority;
    enum cfg_health_status status;
};

struct od_counter_ids {
    int active, total, overflow, enforced_total;
    int enforced[OD_REASONS], detected[OD_REASONS];
};

/* One name of a DNS cluster and what it resolved to last. */
struct dns_name {
    struct mcluster *cl;
    const struct cfg_endpoint *ep;
    struct found_host *found;
    size_t n_found;
    bool pending;
    bool answered; /* at least once */
};

struct mcluster {
    struct manager *m;
    size_t index;
    const struct cfg_cluster *cfg;
    struct hosts_cluster *shm;
    uint32_t cap;         /* live slots */
    bool *slot_used;      /* [cap] */
    uint64_t *slot_freed; /* [cap]: when each slot was last freed (a count) */
    uint64_t frees;
    struct hosts_entry *prev; /* a predecessor's last publication (a respawn) */
    uint32_t n_prev;
    struct mhost **hosts; /* dense, in publication order */
    size_t n_hosts;
    struct od_detector od;
    struct od_host *od_hosts;    /* parallel to hosts */
    struct od_stats od_reported; /* what the counters say already */
    struct od_counter_ids od_ids;
    ev_timer od_timer;
    /* DNS */
    struct dns_resolver *resolver;
    struct dns_name *names;
    size_t n_names;
    ev_timer dns_timer;
    bool started;        /* discovery's first answer is in: later hosts slow-start */
    bool seeded;         /* hosts from a predecessor's table, until discovery answers */
    bool had_traffic;    /* as the workers marked it: checks leave no_traffic_interval */
    ev_timer ramp_timer; /* republishes while a host ramps up */
    /* stats */
    int membership_total, membership_healthy, membership_degraded, membership_change;
    int update_attempt, update_success, update_failure;
    int hc_attempt, hc_success, hc_failure, hc_network_failure, hc_healthy;
    int lb_panic_levels; /* gauge: priority levels in panic */
};

struct manager {
    const struct child_ctx *ctx;
    struct ev_loop *loop;
    ev_timer traffic_timer; /* looks for a cluster's first request, once a second */
    struct mcluster *clusters;
    size_t n_clusters;
    ev_io bell;
    ev_io sup; /* the supervisor socket: EDS files' content arrives here */
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
    return h->name; /* Envoy hashes a host's address, "ip:port" */
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
        keys[i] = host_key(cl->hosts[members[i]]);
        weights[i] = cl->hosts[members[i]]->weight;
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

/* Slow start (Envoy's slow_start_config, ROUND_ROBIN and LEAST_REQUEST): a
 * host added after start, once available, carries weight x max(min_weight,
 * (t / window) ^ (1 / aggression)) until the window is over. Weights are
 * scaled by 100 in such a cluster so that the ramp has steps to take. */
static uint32_t effective_weight(struct mcluster *cl, struct mhost *h, bool *ramping)
{
    const struct cfg_cluster *cfg = cl->cfg;
    if (cfg->slow_start_window_ms == 0 ||
        (cfg->lb_policy != LB_ROUND_ROBIN && cfg->lb_policy != LB_LEAST_REQUEST))
        return h->weight;
    uint64_t full = (uint64_t)h->weight * 100;
    if (h->ramp_pending && !(h->flags & HOST_UNAVAILABLE)) {
        h->ramp_pending = false;
        h->ramp_from = now_ms();
    }
    if (h->ramp_from == 0)
        return full > UINT32_MAX ? UINT32_MAX : (uint32_t)full;
    uint64_t elapsed = now_ms() - h->ramp_from;
    if (elapsed >= cfg->slow_start_window_ms) {
        h->ramp_from = 0;
        return full > UINT32_MAX ? UINT32_MAX : (uint32_t)full;
    }
    double f =
        pow((double)elapsed / (double)cfg->slow_start_window_ms, 1.0 / cfg->slow_start_aggression);
    if (f < cfg->slow_start_min_weight / 100.0)
        f = cfg->slow_start_min_weight / 100.0;
    *ramping = true;
    double w = (double)full * f;
    return w < 1.0 ? 1 : w > (double)UINT32_MAX ? UINT32_MAX : (uint32_t)w;
}

static void publish(struct mcluster *cl);

static void on_ramp(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    publish(t->data);
}

static void publish(struct mcluster *cl)
{
    struct manager *m = cl->m;
    uint32_t n_levels = cl->cfg->max_priority + 1;
    for (size_t i = 0; i < cl->n_hosts; i++)
        if (cl->hosts[i]->priority + 1 > n_levels)
            n_levels = cl->hosts[i]->priority + 1;
    struct prio_level levels[PRIO_MAX_LEVELS] = {{0, 0}};
    size_t healthy = 0, degraded = 0;
    for (size_t i = 0; i < cl->n_hosts; i++) {
        const struct mhost *h = cl->hosts[i];
        levels[h->priority].hosts++;
        if (!(h->flags & HOST_UNAVAILABLE)) {
            levels[h->priority].healthy++;
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

    bool ramping = false;
    struct hosts_entry *e = hosts_write_begin(cl->shm);
    uint32_t *members = calloc(cl->n_hosts ? cl->n_hosts : 1, sizeof(*members));
    if (members == NULL)
        log_fatal("out of memory");
    for (size_t i = 0; i < cl->n_hosts; i++) {
        const struct mhost *h = cl->hosts[i];
        memset(&e[i], 0, sizeof(e[i]));
        e[i].live = h->slot;
        e[i].weight = effective_weight(cl, cl->hosts[i], &ramping);
        e[i].priority = h->priority;
        e[i].flags = h->flags;
        memcpy(&e[i].addr, &h->addr, h->addrlen);
        e[i].addrlen = h->addrlen;
        snprintf(e[i].name, sizeof(e[i].name), "%s", h->name);
    }
    /* The tables cover what a level balances over: its available hosts, or
     * all of them when it panics. */
    for (uint32_t l = 0; l < n_levels; l++) {
        size_t n = 0;
        for (size_t i = 0; i < cl->n_hosts; i++)
            if (cl->hosts[i]->priority == l &&
                (plan.panic[l] || !(cl->hosts[i]->flags & HOST_UNAVAILABLE)))
                members[n++] = (uint32_t)i;
        build_table(cl, l, members, n);
    }
    free(members);
    hosts_write_publish(cl->shm, (uint32_t)cl->n_hosts, &plan);
    if (ramping) {
        double step = (double)cl->cfg->slow_start_window_ms / 20000.0;
        timer_rearm(m->loop, &cl->ramp_timer, step > 0.05 ? step : 0.05);
    }

    gauge(m, cl->membership_total, (int64_t)cl->n_hosts);
    gauge(m, cl->membership_healthy, (int64_t)healthy);
    gauge(m, cl->membership_degraded, (int64_t)degraded);
    gauge(m, cl->lb_panic_levels, panics);
    if (cl->cfg->hc.enabled) {
        size_t hc_healthy = 0;
        for (size_t i = 0; i < cl->n_hosts; i++)
            hc_healthy += !(cl->hosts[i]->flags & HOST_FAILED_ACTIVE_HC);
        gauge(m, cl->hc_healthy, (int64_t)hc_healthy);
    }
    for (size_t i = 0; i < cl->n_hosts; i++)
        gauge(m, cl->hosts[i]->flags_id, cl->hosts[i]->flags);
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
    struct mhost *h = cl->hosts[i];
    set_flag(h, HOST_FAILED_OUTLIER_CHECK, cl->od_hosts[i].ejected, why);
}

/* The doorbell, or the interval: has any host reached a consecutive threshold? */
static void od_scan_consecutive(struct mcluster *cl)
{
    const struct cfg_outlier *o = &cl->cfg->outlier;
    for (size_t i = 0; i < cl->n_hosts; i++) {
        struct hosts_live *lv = hosts_live(cl->shm, cl->hosts[i]->slot);
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
        struct hosts_live *lv = hosts_live(cl->shm, cl->hosts[host]->slot);
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
        struct mhost *h = cl->hosts[i];
        struct hosts_live *lv = hosts_live(cl->shm, h->slot);
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

/* --- membership ---------------------------------------------------------------------------- */

static uint32_t flags_from_status(enum cfg_health_status st)
{
    switch (st) {
    case HEALTH_STATUS_UNHEALTHY:
    case HEALTH_STATUS_DRAINING:
    case HEALTH_STATUS_TIMEOUT:
        return HOST_FAILED_EDS_HEALTH;
    case HEALTH_STATUS_DEGRADED:
        return HOST_DEGRADED_EDS_HEALTH;
    default:
        return 0;
    }
}

static bool same_addr(const struct sockaddr_storage *a, socklen_t alen,
                      const struct sockaddr_storage *b, socklen_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* The slot a new host takes: its own from a predecessor's table if free (so
 * that workers keep their connections across a manager respawn), else the
 * lowest free one. UINT32_MAX: the cluster is full. */
static uint32_t take_slot(struct mcluster *cl, const struct found_host *f)
{
    for (uint32_t b = 0; b < cl->n_prev; b++)
        if (cl->prev[b].live < cl->cap && !cl->slot_used[cl->prev[b].live] &&
            same_addr(&cl->prev[b].addr, (socklen_t)cl->prev[b].addrlen, &f->addr, f->addrlen)) {
            cl->slot_used[cl->prev[b].live] = true;
            return cl->prev[b].live;
        }
    /* The slot freed longest ago: a worker that has not read the table since
     * may still count outcomes into one just freed. */
    uint32_t best = UINT32_MAX;
    for (uint32_t k = 0; k < cl->cap; k++)
        if (!cl->slot_used[k] && (best == UINT32_MAX || cl->slot_freed[k] < cl->slot_freed[best]))
            best = k;
    if (best != UINT32_MAX)
        cl->slot_used[best] = true;
    return best;
}

/* What a predecessor knew of this address (respawn): its active-check verdict. */
static bool prev_flags(const struct mcluster *cl, const struct found_host *f, uint32_t *flags)
{
    for (uint32_t b = 0; b < cl->n_prev; b++)
        if (same_addr(&cl->prev[b].addr, (socklen_t)cl->prev[b].addrlen, &f->addr, f->addrlen)) {
            *flags = cl->prev[b].flags;
            return true;
        }
    return false;
}

static struct mhost *host_add(struct mcluster *cl, const struct found_host *f)
{
    struct manager *m = cl->m;
    uint32_t slot = take_slot(cl, f);
    char name[64];
    hosts_addr_format(&f->addr, NULL, 0, name, sizeof(name));
    if (slot == UINT32_MAX) {
        log_error("cluster %s: more than %u hosts; %s left out", cl->cfg->name, cl->cap, name);
        return NULL;
    }
    struct mhost *h = calloc(1, sizeof(*h));
    if (h == NULL)
        log_fatal("out of memory");
    h->cl = cl;
    h->slot = slot;
    memcpy(&h->addr, &f->addr, f->addrlen);
    h->addrlen = f->addrlen;
    h->weight = f->weight;
    h->priority = f->priority;
    snprintf(h->name, sizeof(h->name), "%s", name);
    h->flags = flags_from_status(f->status);
    /* As Envoy: a host with an active check is out until its first check
     * passes; a respawned manager keeps its predecessor's verdict. */
    uint32_t before;
    if (cl->cfg->hc.enabled)
        h->flags |=
            prev_flags(cl, f, &before) ? (before & HOST_FAILED_ACTIVE_HC) : HOST_FAILED_ACTIVE_HC;
    h->ramp_pending = cl->started;
    h->flags_id = -1;
    if (m->ctx->stats != NULL) {
        char stat[512];
        snprintf(stat, sizeof(stat), "cluster.%s.host.%s.health_flags", cl->cfg->name, h->name);
        h->flags_id = stats_register_flags(m->ctx->stats, stat, STAT_GAUGE, STAT_FLAG_HOST);
    }
    struct hosts_live *lv = hosts_live(cl->shm, slot);
    if (lv != NULL) {
        reset_consecutive(lv);
        h->seen_total = atomic_load(&lv->total);
        h->seen_success = atomic_load(&lv->success);
        h->seen_local_total = atomic_load(&lv->local_total);
        h->seen_local_success = atomic_load(&lv->local_success);
    }
    if (cl->cfg->hc.enabled && m->loop != NULL) {
        uint64_t seed;
        if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
            seed = proc_now_ns() + slot;
        h->hc =
            hc_host_start(m->loop, &cl->cfg->hc, cl->cfg->name, (const struct sockaddr *)&h->addr,
                          h->addrlen, &hc_callbacks, h, seed);
        if (h->hc == NULL)
            log_fatal("out of memory starting health checks");
        hc_host_set_traffic(h->hc, cl->had_traffic);
    }
    return h;
}

static void host_remove(struct mcluster *cl, struct mhost *h)
{
    hc_host_stop(h->hc);
    gauge(cl->m, h->flags_id, HOST_PENDING_DYNAMIC_REMOVAL);
    cl->slot_used[h->slot] = false;
    cl->slot_freed[h->slot] = ++cl->frees;
    free(h);
}

/* Discovery's new list: keep, update, add and remove by address, then publish. */
static void membership_set(struct mcluster *cl, const struct found_host *found, size_t n)
{
    struct mhost **hosts = calloc(cl->cap ? cl->cap : 1, sizeof(*hosts));
    struct od_host *od = calloc(cl->cap ? cl->cap : 1, sizeof(*od));
    bool *kept = calloc(cl->n_hosts ? cl->n_hosts : 1, sizeof(*kept));
    size_t *match = calloc(n ? n : 1, sizeof(*match)); /* found[i]'s host, or SIZE_MAX */
    if (hosts == NULL || od == NULL || kept == NULL || match == NULL)
        log_fatal("out of memory");
    size_t n_new = 0, added = 0, removed = 0;
    bool changed = false;
    /* First the hosts that stay, then those that go (their slots free up),
     * then the new ones: a cluster whose hosts all change still fits. */
    for (size_t i = 0; i < n; i++) {
        match[i] = SIZE_MAX;
        for (size_t k = 0; k < cl->n_hosts && match[i] == SIZE_MAX; k++)
            if (!kept[k] && same_addr(&cl->hosts[k]->addr, cl->hosts[k]->addrlen, &found[i].addr,
                                      found[i].addrlen)) {
                kept[k] = true;
                match[i] = k;
            }
    }
    for (size_t k = 0; k < cl->n_hosts; k++)
        if (!kept[k]) {
            log_info("cluster %s: host %s removed", cl->cfg->name, cl->hosts[k]->name);
            host_remove(cl, cl->hosts[k]);
            removed++;
        }
    for (size_t i = 0; i < n && n_new < cl->cap; i++) {
        const struct found_host *f = &found[i];
        struct mhost *h = NULL;
        bool dup = false;
        for (size_t k = 0; k < n_new && !dup; k++) /* listed twice: once is enough */
            dup = same_addr(&hosts[k]->addr, hosts[k]->addrlen, &f->addr, f->addrlen);
        if (dup)
            continue;
        if (match[i] == SIZE_MAX) {
            h = host_add(cl, f);
            if (h == NULL)
                continue;
            memset(&od[n_new], 0, sizeof(od[n_new]));
            added++;
        } else {
            h = cl->hosts[match[i]];
            od[n_new] = cl->od_hosts[match[i]];
            uint32_t eds = flags_from_status(f->status);
            if (h->weight != f->weight || h->priority != f->priority ||
                (h->flags & (HOST_FAILED_EDS_HEALTH | HOST_DEGRADED_EDS_HEALTH)) != eds ||
                match[i] != n_new)
                changed = true;
            h->weight = f->weight;
            h->priority = f->priority;
            h->flags = (h->flags & ~(HOST_FAILED_EDS_HEALTH | HOST_DEGRADED_EDS_HEALTH)) | eds;
        }
        h->idx = n_new;
        hosts[n_new++] = h;
    }
    free(match);
    free(kept);
    free(cl->hosts);
    free(cl->od_hosts);
    cl->hosts = hosts;
    cl->od_hosts = od;
    cl->n_hosts = n_new;
    if (cl->cfg->outlier.enabled)
        od_set_hosts(&cl->od, cl->od_hosts, cl->n_hosts);
    if (added > 0 || removed > 0)
        log_info("cluster %s: %zu hosts (%zu added, %zu removed)", cl->cfg->name, n_new, added,
                 removed);
    if (added > 0 || removed > 0 || changed)
        inc(cl->m, cl->membership_change, 1);
    publish(cl);
    cl->started = true; /* from now on, a new host slow-starts */
    /* Only the first membership takes a predecessor's slots and verdicts. */
    free(cl->prev);
    cl->prev = NULL;
    cl->n_prev = 0;
}

/* --- DNS ---------------------------------------------------------------------------------- */

static void dns_start_round(struct mcluster *cl);

/* Every name's latest answer, together, is the membership. A cluster a
 * respawned manager seeded from its predecessor's table keeps that seed until
 * every name has answered once. */
static void dns_apply(struct mcluster *cl)
{
    if (cl->seeded) {
        for (size_t i = 0; i < cl->n_names; i++)
            if (!cl->names[i].answered)
                return;
        cl->seeded = false;
    }
    size_t total = 0;
    for (size_t i = 0; i < cl->n_names; i++)
        total += cl->names[i].n_found;
    struct found_host *all = calloc(total ? total : 1, sizeof(*all));
    if (all == NULL)
        log_fatal("out of memory");
    size_t n = 0;
    for (size_t i = 0; i < cl->n_names; i++)
        for (size_t k = 0; k < cl->names[i].n_found; k++)
            all[n++] = cl->names[i].found[k];
    membership_set(cl, all, n);
    free(all);
}

static void dns_on_answer(void *arg, const struct dns_answer *a)
{
    struct dns_name *dn = arg;
    struct mcluster *cl = dn->cl;
    if (a->cancelled)
        return;
    dn->pending = false;
    inc(cl->m, cl->update_attempt, 1);
    if (a->status != 0) {
        /* Keep the last answer: a resolver hiccup must not empty a cluster. */
        inc(cl->m, cl->update_failure, 1);
        log_warn("cluster %s: resolving %s: %s (keeping its last addresses)", cl->cfg->name,
                 dn->ep->addr.address, a->error);
        return; /* nothing changed */
    } else {
        inc(cl->m, cl->update_success, 1);
        size_t keep = cl->cfg->type == CLUSTER_LOGICAL_DNS ? 1 : a->n;
        struct found_host *found = calloc(keep ? keep : 1, sizeof(*found));
        if (found == NULL)
            log_fatal("out of memory");
        for (size_t k = 0; k < keep; k++) {
            found[k].addr = a->addrs[k];
            found[k].addrlen = a->lens[k];
            if (a->addrs[k].ss_family == AF_INET6)
                ((struct sockaddr_in6 *)&found[k].addr)->sin6_port = htons(dn->ep->addr.port);
            else
                ((struct sockaddr_in *)&found[k].addr)->sin_port = htons(dn->ep->addr.port);
            found[k].weight = dn->ep->weight;
            found[k].priority = dn->ep->priority;
            found[k].status = dn->ep->health_status;
        }
        free(dn->found);
        dn->found = found;
        dn->n_found = keep;
        dn->answered = true;
        if (cl->cfg->respect_dns_ttl && a->min_ttl > 0) {
            /* the next round when the first record expires */
            double ttl = (double)a->min_ttl;
            if (ev_timer_remaining(cl->m->loop, &cl->dns_timer) > ttl)
                timer_rearm(cl->m->loop, &cl->dns_timer, ttl);
        }
    }
    dns_apply(cl);
}

static void dns_start_round(struct mcluster *cl)
{
    for (size_t i = 0; i < cl->n_names; i++) {
        struct dns_name *dn = &cl->names[i];
        if (dn->pending)
            continue;
        if (!dn->ep->hostname) {
            /* A numeric address in a DNS cluster: nothing to ask. */
            if (!dn->answered) {
                dn->found = calloc(1, sizeof(*dn->found));
                if (dn->found == NULL)
                    log_fatal("out of memory");
                dn->found->addr = dn->ep->addr.ss;
                dn->found->addrlen = dn->ep->addr.sslen;
                dn->found->weight = dn->ep->weight;
                dn->found->priority = dn->ep->priority;
                dn->found->status = dn->ep->health_status;
                dn->n_found = 1;
                dn->answered = true;
                dns_apply(cl);
            }
            continue;
        }
        dn->pending = true;
        dns_resolve(cl->resolver, dn->ep->addr.address, cl->cfg->dns_family, dns_on_answer, dn);
    }
}

static void on_dns_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct mcluster *cl = t->data;
    timer_rearm(loop, t, (double)cl->cfg->dns_refresh_rate_ms / 1000.0);
    dns_start_round(cl);
}

/* --- EDS ---------------------------------------------------------------------------------- */

/* A validated EDS file from the supervisor (a sealed memfd). Parsed again
 * here: what the manager trusts is what it parsed itself. */
static void eds_apply(struct mcluster *cl, int fd)
{
    const struct cfg_cluster *cfg = cl->cfg;
    struct stat st;
    char *text = NULL;
    if (fstat(fd, &st) == 0 && st.st_size >= 0 && (text = malloc((size_t)st.st_size + 1)) != NULL &&
        pread(fd, text, (size_t)st.st_size, 0) == st.st_size) {
        struct cfg_eds eds;
        struct config_errors errs;
        const char *service = cfg->eds_service_name != NULL ? cfg->eds_service_name : cfg->name;
        if (config_load_assignment(cfg->eds_path, text, (size_t)st.st_size, service, &eds, &errs) ==
            0) {
            struct found_host *found =
                calloc(eds.n_endpoints ? eds.n_endpoints : 1, sizeof(*found));
            if (found == NULL)
                log_fatal("out of memory");
            for (size_t i = 0; i < eds.n_endpoints; i++) {
                found[i].addr = eds.endpoints[i].addr.ss;
                found[i].addrlen = eds.endpoints[i].addr.sslen;
                found[i].weight = eds.endpoints[i].weight;
                found[i].priority = eds.endpoints[i].priority;
                found[i].status = eds.endpoints[i].health_status;
            }
            membership_set(cl, found, eds.n_endpoints);
            free(found);
            config_eds_free(&eds);
        } else {
            log_error("cluster %s: the supervisor's EDS content does not parse here: %s", cfg->name,
                      errs.n > 0 ? errs.msgs[0] : "?");
            config_errors_free(&errs);
        }
    } else {
        log_error("cluster %s: cannot read the EDS content handed over: %s", cfg->name,
                  strerror(errno));
    }
    free(text);
    close(fd);
}

static void eds_deliver(void *ctx, const uint32_t *index, const int *fds, size_t n)
{
    struct manager *m = ctx;
    for (size_t i = 0; i < n; i++) {
        if (index[i] < m->n_clusters && m->clusters[index[i]].cfg->type == CLUSTER_EDS) {
            eds_apply(&m->clusters[index[i]], fds[i]);
        } else {
            log_error("the supervisor sent EDS content for cluster %u, not an EDS cluster",
                      index[i]);
            close(fds[i]);
        }
    }
}

static void on_sup(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    int rc = ipc_drain_indexed_fds(w->fd, eds_deliver, w->data);
    if (rc == 1)
        return;
    if (rc < 0)
        log_error("supervisor socket: %s", strerror(errno));
    ev_io_stop(loop, w); /* at EOF the supervisor is gone: PDEATHSIG follows */
}

/* --- traffic -------------------------------------------------------------------------------- */

/* Envoy's no_traffic_interval: checks run at it until the cluster has routed a
 * request, then at their interval for good. */
static void on_traffic_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct manager *m = t->data;
    bool waiting = false;
    for (size_t c = 0; c < m->n_clusters; c++) {
        struct mcluster *cl = &m->clusters[c];
        if (!cl->cfg->hc.enabled || cl->had_traffic)
            continue;
        if (!hosts_had_traffic(cl->shm)) {
            waiting = true;
            continue;
        }
        cl->had_traffic = true;
        for (size_t i = 0; i < cl->n_hosts; i++)
            hc_host_set_traffic(cl->hosts[i]->hc, true);
    }
    if (!waiting)
        ev_timer_stop(loop, t);
}

/* --- set-up -------------------------------------------------------------------------------- */

static void setup_cluster(struct manager *m, struct mcluster *cl, size_t index)
{
    const struct cfg_cluster *cfg = &m->ctx->cfg->clusters[index];
    cl->m = m;
    cl->index = index;
    cl->cfg = cfg;
    cl->shm = hosts_cluster(m->ctx->hosts, index);
    if (cl->shm == NULL)
        log_fatal("the host table has no cluster %zu", index);
    cl->cap = hosts_capacity(cl->shm);
    cl->had_traffic = hosts_had_traffic(cl->shm); /* a respawned manager's cluster may have */
    cl->slot_used = calloc(cl->cap, sizeof(*cl->slot_used));
    cl->slot_freed = calloc(cl->cap, sizeof(*cl->slot_freed));
    cl->prev = calloc(cl->cap, sizeof(*cl->prev));
    if (cl->slot_used == NULL || cl->slot_freed == NULL || cl->prev == NULL)
        log_fatal("out of memory");
    /* A respawned manager starts from what its predecessor published. */
    if (hosts_generation(cl->shm) > 0) {
        struct hosts_view view = {.hosts = cl->prev};
        hosts_read(cl->shm, &view);
        cl->n_prev = view.n_hosts;
    }

    cl->membership_total = reg(m, cfg->name, "membership_total", STAT_GAUGE);
    cl->membership_healthy = reg(m, cfg->name, "membership_healthy", STAT_GAUGE);
    cl->membership_degraded = reg(m, cfg->name, "membership_degraded", STAT_GAUGE);
    cl->membership_change = reg(m, cfg->name, "membership_change", STAT_COUNTER);
    cl->lb_panic_levels = reg(m, cfg->name, "lb_panic_levels", STAT_GAUGE);
    if (cfg->type != CLUSTER_STATIC) {
        cl->update_attempt = reg(m, cfg->name, "update_attempt", STAT_COUNTER);
        cl->update_success = reg(m, cfg->name, "update_success", STAT_COUNTER);
        cl->update_failure = reg(m, cfg->name, "update_failure", STAT_COUNTER);
    }
    if (cfg->hc.enabled) {
        cl->hc_attempt = reg(m, cfg->name, "health_check.attempt", STAT_COUNTER);
        cl->hc_success = reg(m, cfg->name, "health_check.success", STAT_COUNTER);
        cl->hc_failure = reg(m, cfg->name, "health_check.failure", STAT_COUNTER);
        cl->hc_network_failure = reg(m, cfg->name, "health_check.network_failure", STAT_COUNTER);
        cl->hc_healthy = reg(m, cfg->name, "health_check.healthy", STAT_GAUGE);
    }
    if (cfg->outlier.enabled) {
        uint64_t seed;
        if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
            seed = proc_now_ns();
        od_init(&cl->od, &cfg->outlier, NULL, 0, seed);
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
    }
    if (cfg->type == CLUSTER_STRICT_DNS || cfg->type == CLUSTER_LOGICAL_DNS) {
        char err[160];
        cl->resolver = dns_resolver_new(cfg->dns_resolvers, cfg->n_dns_resolvers, err, sizeof(err));
        if (cl->resolver == NULL)
            log_fatal("cluster %s: %s", cfg->name, err);
        cl->n_names = cfg->n_endpoints;
        cl->names = calloc(cl->n_names ? cl->n_names : 1, sizeof(*cl->names));
        if (cl->names == NULL)
            log_fatal("out of memory");
        for (size_t i = 0; i < cl->n_names; i++)
            cl->names[i] = (struct dns_name){.cl = cl, .ep = &cfg->endpoints[i]};
        ev_timer_init(&cl->dns_timer, on_dns_timer, 0., 0.);
        cl->dns_timer.data = cl;
    }
    ev_timer_init(&cl->ramp_timer, on_ramp, 0., 0.);
    cl->ramp_timer.data = cl;
}

/* On the loop, after the sandbox: first membership, checks, timers. */
static void start_cluster(struct mcluster *cl)
{
    struct manager *m = cl->m;
    const struct cfg_cluster *cfg = cl->cfg;
    if (cfg->outlier.enabled)
        ev_timer_start(m->loop, &cl->od_timer);
    if (cfg->type == CLUSTER_STATIC) {
        struct found_host *found = calloc(cfg->n_endpoints ? cfg->n_endpoints : 1, sizeof(*found));
        if (found == NULL)
            log_fatal("out of memory");
        for (size_t i = 0; i < cfg->n_endpoints; i++) {
            found[i].addr = cfg->endpoints[i].addr.ss;
            found[i].addrlen = cfg->endpoints[i].addr.sslen;
            found[i].weight = cfg->endpoints[i].weight;
            found[i].priority = cfg->endpoints[i].priority;
            found[i].status = cfg->endpoints[i].health_status;
        }
        membership_set(cl, found, cfg->n_endpoints);
        free(found);
    } else {
        /* Discovered hosts: a respawned manager goes on from what its
         * predecessor published until discovery answers (a DNS outage must
         * not empty the cluster); a first manager has none yet. */
        if (cl->n_prev > 0) {
            struct found_host *found = calloc(cl->n_prev, sizeof(*found));
            if (found == NULL)
                log_fatal("out of memory");
            size_t n = 0;
            for (uint32_t b = 0; b < cl->n_prev; b++) {
                const struct hosts_entry *e = &cl->prev[b];
                if (e->addrlen == 0 || e->addrlen > sizeof(found[n].addr))
                    continue;
                memcpy(&found[n].addr, &e->addr, e->addrlen);
                found[n].addrlen = (socklen_t)e->addrlen;
                /* a ramping host's published weight is not its own: the
                 * next discovery answer brings the real one */
                found[n].weight = e->weight > 0 ? e->weight : 1;
                found[n].priority = e->priority < HOSTS_MAX_LEVELS ? e->priority : 0;
                found[n].status = (e->flags & HOST_FAILED_EDS_HEALTH)     ? HEALTH_STATUS_UNHEALTHY
                                  : (e->flags & HOST_DEGRADED_EDS_HEALTH) ? HEALTH_STATUS_DEGRADED
                                                                          : HEALTH_STATUS_HEALTHY;
                n++;
            }
            membership_set(cl, found, n);
            free(found);
            cl->seeded = true;
        } else {
            publish(cl); /* no host until discovery answers: "no healthy upstream" */
        }
        if (cl->resolver != NULL) {
            dns_resolver_attach(cl->resolver, m->loop);
            timer_rearm(m->loop, &cl->dns_timer, (double)cfg->dns_refresh_rate_ms / 1000.0);
            dns_start_round(cl);
        }
    }
}

static void stop_everything(struct manager *m)
{
    for (size_t c = 0; c < m->n_clusters; c++) {
        struct mcluster *cl = &m->clusters[c];
        if (cl->resolver != NULL) { /* first: its last callbacks must find hosts */
            dns_resolver_free(cl->resolver);
            cl->resolver = NULL;
        }
        for (size_t i = 0; i < cl->n_hosts; i++) {
            hc_host_stop(cl->hosts[i]->hc);
            free(cl->hosts[i]);
        }
        if (cl->cfg->outlier.enabled)
            ev_timer_stop(m->loop, &cl->od_timer);
        ev_timer_stop(m->loop, &cl->ramp_timer);
        if (cl->names != NULL) {
            ev_timer_stop(m->loop, &cl->dns_timer);
            for (size_t i = 0; i < cl->n_names; i++)
                free(cl->names[i].found);
            free(cl->names);
        }
        free(cl->hosts);
        free(cl->od_hosts);
        free(cl->slot_used);
        free(cl->slot_freed);
        free(cl->prev);
    }
    free(m->clusters);
    ev_timer_stop(m->loop, &m->traffic_timer);
    if (m->bell.fd >= 0)
        ev_io_stop(m->loop, &m->bell);
}

int upstream_manager_run(const struct child_ctx *ctx)
{
    static struct ipc_chan ctl;
    static ev_signal sig_term;
    static struct manager m;
    m.ctx = ctx;
    if (ctx->hosts == NULL)
        log_fatal("the upstream manager was given no host table");
    if (dns_library_init() != 0)
        log_fatal("c-ares would not initialise");
    m.n_clusters = ctx->cfg->n_clusters;
    m.clusters = calloc(m.n_clusters ? m.n_clusters : 1, sizeof(*m.clusters));
    if (m.clusters == NULL)
        log_fatal("out of memory");
    /* Before the sandbox: resolvers read /etc/resolv.conf now. */
    for (size_t i = 0; i < m.n_clusters; i++)
        setup_cluster(&m, &m.clusters[i], i);
    m.loop = child_start(ctx, "legate: upstream manager", &ctl, child_stop_on_control, NULL);
    ev_signal_init(&sig_term, child_stop_on_sigterm, SIGTERM);
    ev_signal_start(m.loop, &sig_term);
    ev_io_init(&m.bell, on_bell, ctx->hosts_bell_fd, EV_READ);
    m.bell.data = &m;
    if (ctx->hosts_bell_fd >= 0)
        ev_io_start(m.loop, &m.bell);
    for (size_t i = 0; i < m.n_clusters; i++)
        start_cluster(&m.clusters[i]);
    ev_timer_init(&m.traffic_timer, on_traffic_timer, 1.0, 1.0);
    m.traffic_timer.data = &m;
    ev_timer_start(m.loop, &m.traffic_timer);
    ev_io_init(&m.sup, on_sup, ctx->sup_sock, EV_READ);
    m.sup.data = &m;
    if (ctx->sup_sock >= 0) {
        fcntl(ctx->sup_sock, F_SETFL, fcntl(ctx->sup_sock, F_GETFL) | O_NONBLOCK);
        ev_io_start(m.loop, &m.sup);
    }
    child_ready(&ctl);
    ev_run(m.loop, 0);
    stop_everything(&m);
    ipc_close(&ctl);
    return 0;
}

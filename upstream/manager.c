/* The upstream manager role. It will own discovery, health checking and outlier
 * detection (issue 7). Today clusters are static and every host is healthy:
 * it publishes each cluster's membership gauges, which are its to write (a
 * worker writing them would count every host once per worker). */
#include <stdio.h>

#include "common/log.h"
#include "common/role.h"

static void publish_membership(const struct child_ctx *ctx)
{
    char name[512];
    for (size_t i = 0; i < ctx->cfg->n_clusters; i++) {
        const struct cfg_cluster *cl = &ctx->cfg->clusters[i];
        int64_t hosts = (int64_t)cl->n_endpoints;
        snprintf(name, sizeof(name), "cluster.%s.membership_total", cl->name);
        stats_gauge_set(ctx->stats, stats_register(ctx->stats, name, STAT_GAUGE), hosts);
        snprintf(name, sizeof(name), "cluster.%s.membership_healthy", cl->name);
        stats_gauge_set(ctx->stats, stats_register(ctx->stats, name, STAT_GAUGE), hosts);
    }
}

int upstream_manager_run(const struct child_ctx *ctx)
{
    static struct ipc_chan ctl;
    static ev_signal sig_term;
    struct ev_loop *loop =
        child_start(ctx, "legate: upstream manager", &ctl, child_stop_on_control, NULL);
    ev_signal_init(&sig_term, child_stop_on_sigterm, SIGTERM);
    ev_signal_start(loop, &sig_term);
    if (ctx->stats != NULL)
        publish_membership(ctx);
    child_ready(&ctl);
    ev_run(loop, 0);
    ipc_close(&ctl);
    return 0;
}

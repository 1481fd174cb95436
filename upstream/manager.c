/* The upstream manager role. It will own discovery, health checking and outlier
 * detection; for now it joins the control channel, reports ready and waits. */
#include "common/log.h"
#include "common/role.h"

int upstream_manager_run(const struct child_ctx *ctx)
{
    static struct ipc_chan ctl;
    static ev_signal sig_term;
    struct ev_loop *loop =
        child_start(ctx, "legate: upstream manager", &ctl, child_stop_on_control, NULL);
    ev_signal_init(&sig_term, child_stop_on_sigterm, SIGTERM);
    ev_signal_start(loop, &sig_term);
    child_ready(&ctl);
    ev_run(loop, 0);
    ipc_close(&ctl);
    return 0;
}

/* The upstream manager role. It will own discovery, health checking and outlier
 * detection; for now it joins the control channel, reports ready and waits. */
#include "common/log.h"
#include "common/role.h"

struct manager_state {
    struct ev_loop *loop;
    struct ipc_chan ctl;
    ev_signal sig_term;
};

static void on_control(struct ipc_chan *ch, const char *peer, size_t peer_len,
                       const struct ipc_msg *msg)
{
    (void)peer;
    (void)peer_len;
    struct manager_state *st = ch->data;
    switch (msg->hdr.type) {
    case IPC_DRAIN:
    case IPC_STOP:
        ev_break(st->loop, EVBREAK_ALL);
        break;
    default:
        log_fatal("protocol violation: unexpected %s from the supervisor",
                  ipc_type_name(msg->hdr.type));
    }
}

static void on_sigterm(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

int upstream_manager_run(const struct child_ctx *ctx)
{
    static struct manager_state st;
    st.loop = child_start(ctx, "legate: upstream manager", &st.ctl, on_control, &st);
    ev_signal_init(&st.sig_term, on_sigterm, SIGTERM);
    ev_signal_start(st.loop, &st.sig_term);
    child_ready(&st.ctl);
    ev_run(st.loop, 0);
    ipc_close(&st.ctl);
    return 0;
}

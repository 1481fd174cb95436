#include "common/role.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proc.h"
#include "shm/proc_stats.h"

struct ev_loop *child_start(const struct child_ctx *ctx, const char *title, struct ipc_chan *ch,
                            ipc_handler on_msg, void *data)
{
    static char role_name[48];
    snprintf(role_name, sizeof(role_name), "%s", title + strlen("legate: "));
    log_set_role(role_name);
    proc_set_title(title);

    /* The supervisor's death must not leave children holding ports. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1)
        log_fatal("the supervisor exited before this child started");

    /* Ctrl-C reaches the whole process group: only the supervisor acts on it. */
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    struct ev_loop *loop = ev_default_loop(EVBACKEND_EPOLL | EVFLAG_NOENV);
    if (loop == NULL)
        log_fatal("cannot create the event loop");
    static struct proc_stats proc_stats;
    if (ctx->stats != NULL)
        proc_stats_start(&proc_stats, loop, ctx->stats, false);

    char identity[32];
    if (ctx->role == ROLE_WORKER)
        snprintf(identity, sizeof(identity), "worker-%d", ctx->index);
    else
        snprintf(identity, sizeof(identity), "%s",
                 ctx->role == ROLE_LISTENER ? "listener" : "upstream");
    if (ipc_open_dealer(ch, loop, ctx->control_endpoint, identity, on_msg, data) != 0)
        log_fatal("cannot open the control channel");
    struct ipc_hello hello = {.role = ctx->role, .index = ctx->index, .pid = (int32_t)getpid()};
    ipc_send(ch, NULL, IPC_HELLO, &hello, sizeof(hello));
    /* The supervisor's answer proves the control connection is up: after the
     * chroot its ipc:// path could not be connected to again. */
    struct ipc_msg answer;
    if (ipc_wait_for(ch, IPC_HELLO, 10000, &answer) != 0)
        log_fatal("the supervisor did not answer within 10 s");
    if (ctx->sandbox != NULL && ctx->sandbox_opts != NULL)
        sandbox_enter(role_name, ctx->sandbox, ctx->sandbox_opts);
    return loop;
}

void child_stop_on_control(struct ipc_chan *ch, const char *peer, size_t peer_len,
                           const struct ipc_msg *msg)
{
    (void)peer;
    (void)peer_len;
    if (msg->hdr.type != IPC_DRAIN && msg->hdr.type != IPC_STOP)
        log_fatal("protocol violation: unexpected %s from the supervisor",
                  ipc_type_name(msg->hdr.type));
    ev_break(ch->loop, EVBREAK_ALL);
}

void child_stop_on_sigterm(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

void child_ready(struct ipc_chan *ch)
{
    struct ipc_empty e = {0};
    ipc_send(ch, NULL, IPC_READY, &e, sizeof(e));
}

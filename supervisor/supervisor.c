#include "supervisor/supervisor.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <dirent.h>
#include <sys/eventfd.h>
#include <sys/un.h>
#include <sys/mman.h>
#include <arpa/inet.h>
#include <poll.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "common/ipc.h"
#include "common/evtimer.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/role.h"
#include "listener/handoff.h"
#include "shm/proc_stats.h"
#include "shm/stats.h"
#include "supervisor/eds.h"
#include "supervisor/hot_restart.h"
#include "worker/access_log.h"

#define RESPAWN_MIN_MS 50u
#define RESPAWN_MAX_MS 30000u
#define STABLE_AFTER_MS 10000u /* a child alive this long resets its backoff */
#define CRASH_WINDOW_MS 60000u /* crash-loop accounting window */
#define CRASH_LOOP_COUNT 5u    /* crashes per window that make it a loop */
#define STOP_GRACE_MS 3000u    /* after the drain time, SIGKILL what is left */
#define HR_ANSWER_MS 5000      /* a generation answers the other within this */
#define HR_KILL_GRACE_MS 5000u /* after TERMINATE, SIGKILL an old generation still there */

struct sup;

struct child {
    const struct role_def *def;
    int index;
    char ident[32]; /* ZeroMQ identity: "worker-1", "listener", "upstream" */
    char title[48]; /* "legate: worker 1" */
    pid_t pid;      /* 0 when not running */
    bool ready;
    bool stop_sent; /* STOP or DRAIN already sent to this incarnation */
    ev_child exit_watcher;
    ev_timer respawn_timer;
    uint64_t started_ms;
    uint64_t backoff_ms;
    uint64_t window_start_ms;
    unsigned crashes_in_window;
    uint64_t last_loop_log_ms;
    int sup_sock; /* worker, listener: our end of this incarnation's supervisor socket, or -1 */
    int sup_peer; /* its end, open in the supervisor only from socketpair to fork */
    ev_io sup_io; /* listener: its sockets arrive on sup_sock */
    struct sup *sup;
};

enum sup_state { SUP_STARTING, SUP_RUNNING, SUP_STOPPING };

struct sup {
    struct ev_loop *loop;
    struct config *cfg;
    struct sup_options opt;
    enum sup_state state;
    int exit_code;
    struct child *children;
    size_t n_children;
    int *listener_ends; /* per worker slot: the listener's end of the socketpair */
    int *worker_ends;   /* per worker slot: the worker's end (kept for respawns) */
    int config_fd;      /* sealed memfd with the validated config text, for children */
    int hosts_fd;       /* the host table (shm/hosts.h), for the manager and the workers */
    int hosts_bell_fd;  /* its doorbell eventfd */
    struct stats stats; /* the statistics segment, slot 0 */
    struct proc_stats proc_stats;
    struct eds_watch eds; /* EDS clusters' files, handed to the upstream manager */
    char stats_name[64];
    char runtime_dir[256];
    char control_path[300];
    char endpoint[320];
    struct ipc_chan ctl;
    ev_signal sig_term, sig_int;
    ev_signal sig_usr1;             /* reopen the access logs */
    _Atomic uint64_t *reopen_total; /* server.log_reopen_total */
    ev_timer stop_timer;

    /* Hot restart (supervisor/hot_restart.h). */
    unsigned generation;    /* restarts since the first start */
    uint32_t slot_base;     /* this generation's statistics slots start here */
    struct listen_fd *held; /* a copy of each of the listener's sockets */
    size_t n_held;
    int hr_listen_fd; /* our rendezvous: the next generation connects here */
    ev_io hr_accept_io;
    int hr_next_fd; /* the next generation, connected, or -1 */
    ev_io hr_next_io;
    pid_t next_pid; /* the next generation, when we started it (SIGUSR2/SIGHUP) */
    ev_child next_watcher;
    bool handed_over;        /* draining for the next generation: the segment is its */
    bool signalled_in_drain; /* SIGTERM/SIGINT while draining for it: the next one kills */
    int hr_parent_fd;        /* the previous generation, while it lives, or -1 */
    ev_io hr_parent_io;
    pid_t parent_pid;
    int parent_pidfd; /* signals the parent and not a process that reused its pid */
    unsigned parent_epoch;
    uint32_t parent_slot_base, parent_slot_count;
    bool parent_told_to_drain;
    bool parent_terminate_sent;
    ev_timer parent_timer; /* --parent-shutdown-time-s, then the kill grace */
    ev_signal sig_usr2, sig_hup;
    _Atomic uint64_t *reload_rejected;                /* server.hot_restart.reload_rejected */
    int g_live, g_concurrency, g_epoch, g_generation; /* server.* gauges, this slot */
    bool carry_counters; /* old: the next generation has a segment of its own: send it our counters
                          */
    uint64_t *sent;      /* old: each counter's total as last sent, by id */
    ev_timer carry_timer;
    uint64_t *carried;   /* new: each counter's last total received from the parent, by id */
    bool owns_segment;   /* made it, or took it over: unlinked at exit */
    bool segment_temp;   /* a fresh segment under a name of its own until we serve */
    bool shares_segment; /* attached the previous generation's segment */
};

static void spawn(struct sup *s, struct child *c);
static size_t child_slot(const struct sup *s, const struct child *c);

static const char *describe_status(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "was killed by signal %s", sigabbrev_np(WTERMSIG(status)) ?: "?");
    else
        snprintf(buf, cap, "stopped (status 0x%x)", status);
    return buf;
}

static struct child *child_by_ident(struct sup *s, const char *ident)
{
    for (size_t i = 0; i < s->n_children; i++)
        if (strcmp(s->children[i].ident, ident) == 0)
            return &s->children[i];
    return NULL;
}

static size_t count_alive(struct sup *s, enum role only, bool any_role)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_children; i++)
        if (s->children[i].pid > 0 && (any_role || s->children[i].def->role == only))
            n++;
    return n;
}

static void send_or_signal(struct sup *s, struct child *c, uint16_t type, const void *p, size_t len)
{
    if (c->pid <= 0)
        return;
    /* A child that has not connected yet cannot get the message: a signal can. */
    if (!c->ready || ipc_send(&s->ctl, c->ident, type, p, len) != 0)
        kill(c->pid, SIGTERM);
}

static void cleanup_runtime_dir(struct sup *s)
{
    if (s->runtime_dir[0] == '\0')
        return;
    unlink(s->control_path);
    if (rmdir(s->runtime_dir) != 0 && errno != ENOENT)
        log_warn("cannot remove runtime directory %s: %s", s->runtime_dir, strerror(errno));
    s->runtime_dir[0] = '\0';
}

static void finish_if_done(struct sup *s)
{
    if (s->state != SUP_STOPPING)
        return;
    if (count_alive(s, ROLE_WORKER, false) == 0) {
        /* Workers are gone: nothing uses the sockets or the manager any more. */
        struct ipc_empty e = {0};
        for (size_t i = 0; i < s->n_children; i++) {
            struct child *c = &s->children[i];
            if (c->def->role != ROLE_WORKER && !c->stop_sent) {
                c->stop_sent = true;
                send_or_signal(s, c, IPC_STOP, &e, sizeof(e));
            }
        }
    }
    if (count_alive(s, 0, true) == 0) {
        log_info("all processes have exited; stopped");
        ev_break(s->loop, EVBREAK_ALL);
    }
}

/* Drain the workers (the other roles stop once they are gone): a stop, or a
 * hot restart's hand-over (flags: ipc.h). */
static void start_drain(struct sup *s, uint32_t deadline_ms, uint32_t flags)
{
    s->state = SUP_STOPPING;
    for (size_t i = 0; i < s->n_children; i++)
        ev_timer_stop(s->loop, &s->children[i].respawn_timer);
    struct ipc_drain d = {.deadline_ms = deadline_ms, .flags = flags};
    for (size_t i = 0; i < s->n_children; i++)
        if (s->children[i].def->role == ROLE_WORKER) {
            s->children[i].stop_sent = true;
            send_or_signal(s, &s->children[i], IPC_DRAIN, &d, sizeof(d));
        }
    timer_rearm(s->loop, &s->stop_timer, (deadline_ms + STOP_GRACE_MS) / 1000.0);
    finish_if_done(s);
}

static void begin_stop(struct sup *s, const char *why, int exit_code)
{
    if (s->state == SUP_STOPPING)
        return;
    log_info("stopping (%s): draining in-flight requests for up to %u s", why,
             s->opt.drain_time_ms / 1000);
    if (exit_code != 0)
        s->exit_code = exit_code;
    start_drain(s, s->opt.drain_time_ms, 0);
}

static void kill_all(struct sup *s)
{
    for (size_t i = 0; i < s->n_children; i++)
        if (s->children[i].pid > 0)
            kill(s->children[i].pid, SIGKILL);
}

static void on_stop_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct sup *s = w->data;
    log_warn("drain deadline passed: killing %zu remaining processes", count_alive(s, 0, true));
    kill_all(s);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    struct sup *s = w->data;
    if (s->state == SUP_STOPPING) {
        if (s->handed_over && !s->signalled_in_drain) {
            /* Already draining for the next generation: this is not a second
             * stop, but the next one is. */
            s->signalled_in_drain = true;
            log_info("%s: already draining for epoch %u; another signal stops at once",
                     sigabbrev_np(w->signum), s->opt.restart_epoch + 1);
            return;
        }
        log_warn("second %s: stopping immediately", sigabbrev_np(w->signum));
        kill_all(s);
        return;
    }
    begin_stop(s, w->signum == SIGINT ? "SIGINT" : "SIGTERM", 0);
}

static void on_respawn_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct child *c = w->data;
    if (c->sup->state != SUP_STOPPING)
        spawn(c->sup, c);
}

static void schedule_respawn(struct sup *s, struct child *c, const char *how)
{
    uint64_t now = proc_now_ms();
    if (now - c->started_ms >= STABLE_AFTER_MS)
        c->backoff_ms = RESPAWN_MIN_MS;
    else
        c->backoff_ms =
            c->backoff_ms == 0
                ? RESPAWN_MIN_MS
                : (c->backoff_ms * 2 > RESPAWN_MAX_MS ? RESPAWN_MAX_MS : c->backoff_ms * 2);
    if (now - c->window_start_ms > CRASH_WINDOW_MS) {
        c->window_start_ms = now;
        c->crashes_in_window = 0;
    }
    c->crashes_in_window++;
    /* A crash loop is logged, but not once per crash: at most every 10 s. */
    if (c->crashes_in_window <= CRASH_LOOP_COUNT)
        log_warn("%s %s; restarting it in %llu ms", c->title + 8, how,
                 (unsigned long long)c->backoff_ms);
    else if (now - c->last_loop_log_ms >= 10000) {
        c->last_loop_log_ms = now;
        log_error("crash loop: %s died %u times in the last %u s (last: %s); next restart in "
                  "%llu ms",
                  c->title + 8, c->crashes_in_window, CRASH_WINDOW_MS / 1000, how,
                  (unsigned long long)c->backoff_ms);
    }
    timer_rearm(s->loop, &c->respawn_timer, (double)c->backoff_ms / 1000.0);
}

static void on_child_exit(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)revents;
    struct child *c = w->data;
    struct sup *s = c->sup;
    ev_child_stop(loop, w);
    char how[64];
    describe_status(w->rstatus, how, sizeof(how));
    if (WIFSIGNALED(w->rstatus) && WTERMSIG(w->rstatus) == SIGSYS)
        log_error("%s (pid %d) made a system call outside its seccomp profile; the process "
                  "names it in the line before, unless one of its threads with every signal "
                  "blocked made it",
                  c->title + 8, (int)c->pid);
    c->pid = 0;
    c->ready = false;
    /* Whatever the dead process held open (its connections, say) is gone. */
    stats_slot_reset_gauges(&s->stats, (uint32_t)child_slot(s, c));
    stats_slot_exited(&s->stats, (uint32_t)child_slot(s, c));
    switch (s->state) {
    case SUP_STOPPING:
        log_info("%s %s", c->title + 8, how);
        finish_if_done(s);
        break;
    case SUP_STARTING:
        /* Failing before ready at start-up (a port clash, say) will not heal by
         * retrying: give up with the child's own message already logged. */
        log_error("%s %s during start-up; giving up", c->title + 8, how);
        begin_stop(s, "start-up failed", 1);
        for (size_t i = 0; i < s->n_children; i++)
            if (s->children[i].pid > 0)
                kill(s->children[i].pid, SIGTERM);
        break;
    case SUP_RUNNING:
        schedule_respawn(s, c, how);
        break;
    }
}

static void reopen_access_logs(struct sup *s, const char *who);
static void tell_parent_to_drain(struct sup *s);

static void on_control(struct ipc_chan *ch, const char *peer, size_t peer_len,
                       const struct ipc_msg *msg)
{
    (void)peer_len;
    struct sup *s = ch->data;
    struct child *c = child_by_ident(s, peer);
    if (c == NULL) {
        log_warn("control message %s from unknown peer '%s' ignored", ipc_type_name(msg->hdr.type),
                 peer);
        return;
    }
    switch (msg->hdr.type) {
    case IPC_HELLO: {
        log_debug("%s says hello (pid %d)", c->title + 8, msg->u.HELLO.pid);
        /* The answer tells the child its control connection is up (it then
         * enters its sandbox, where the socket path is out of reach). */
        struct ipc_hello back = {.role = ROLE_SUPERVISOR, .pid = (int32_t)getpid()};
        if (ipc_send(&s->ctl, c->ident, IPC_HELLO, &back, sizeof(back)) != 0)
            log_warn("cannot answer the hello of %s", c->title + 8);
        break;
    }
    case IPC_READY:
        if (c->pid != msg->hdr.pid) /* a message from a previous incarnation */
            break;
        c->ready = true;
        log_debug("%s is ready", c->title + 8);
        if (s->state == SUP_STOPPING) {
            /* Came up while we were stopping: tell it at once. */
            struct ipc_drain d = {.deadline_ms = s->opt.drain_time_ms};
            c->stop_sent = true;
            send_or_signal(s, c, IPC_DRAIN, &d, sizeof(d));
        } else if (s->state == SUP_STARTING) {
            size_t ready = 0;
            for (size_t i = 0; i < s->n_children; i++)
                ready += s->children[i].ready;
            if (ready == s->n_children) {
                s->state = SUP_RUNNING;
                log_info("legate is ready: %zu listeners, %u workers, epoch %u",
                         s->cfg->n_listeners, s->opt.concurrency, s->opt.restart_epoch);
                if (s->hr_parent_fd >= 0)
                    tell_parent_to_drain(s);
            }
        }
        break;
    case IPC_SHUTDOWN:
    case IPC_REOPEN_LOGS: {
        /* The admin endpoints' requests: log who asked, then act as on the signal. */
        char who[96];
        snprintf(who, sizeof(who), "asked by %s, pid %d", c->title + 8, (int)msg->hdr.pid);
        if (msg->hdr.type == IPC_REOPEN_LOGS) {
            reopen_access_logs(s, who);
        } else if (s->state == SUP_STOPPING) {
            log_info("already stopping; stop %s", who);
        } else {
            begin_stop(s, who, 0);
        }
        break;
    }
    default:
        /* A child sending what only the supervisor sends is a protocol violation. */
        log_error("%s sent unexpected %s; killing it", c->title + 8, ipc_type_name(msg->hdr.type));
        if (c->pid > 0)
            kill(c->pid, SIGKILL);
        break;
    }
}

/* The child's command line: a fresh exec of this binary in child mode, told its
 * role and which inherited descriptors are its own (supervisor/main.c). */
#define CHILD_MAX_ARGS 40

struct child_argv {
    char *argv[CHILD_MAX_ARGS];
    char store[16384]; /* room for 256 worker sockets and 250 held ones */
    size_t used;
    size_t n;
};

static void arg_add(struct child_argv *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void arg_add(struct child_argv *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(a->store + a->used, sizeof(a->store) - a->used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(a->store) - a->used || a->n + 1 >= CHILD_MAX_ARGS)
        log_fatal("child command line too long");
    a->argv[a->n++] = a->store + a->used;
    a->argv[a->n] = NULL;
    a->used += (size_t)n + 1;
}

/* Write "a,b,c" for descriptors into `list` and remember them in keep[]. */
static void fd_list(char *list, size_t cap, const int *fds, size_t n, int *keep, size_t *n_keep)
{
    size_t off = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n && off < cap; i++) {
        off += (size_t)snprintf(list + off, cap - off, "%s%d", i ? "," : "", fds[i]);
        keep[(*n_keep)++] = fds[i];
    }
}

/* The statistics slot of a child: 0 is the supervisor's, then the children
 * in table order. A respawned child gets its predecessor's slot, so its
 * counters continue. */
static size_t child_slot(const struct sup *s, const struct child *c)
{
    return s->slot_base + (size_t)(c - s->children) + 1;
}

static void build_child_argv(struct sup *s, struct child *c, struct child_argv *a, int *keep,
                             size_t *n_keep)
{
    char list[8192];
    int fds[16];
    size_t n = 0;
    arg_add(a, "legate");
    arg_add(a, "--child-role=%s", c->def->token);
    arg_add(a, "--child-index=%d", c->index);
    arg_add(a, "--config-fd=%d", s->config_fd);
    keep[(*n_keep)++] = s->config_fd;
    arg_add(a, "--config-name=%s", s->cfg->source);
    arg_add(a, "--runtime-dir=%s", s->runtime_dir);
    arg_add(a, "--concurrency=%u", s->opt.concurrency);
    arg_add(a, "--base-id=%u", s->opt.base_id);
    arg_add(a, "--restart-epoch=%u", s->opt.restart_epoch);
    arg_add(a, "--drain-time-s=%u", s->opt.drain_time_ms / 1000);
    arg_add(a, "--log-level=%s", log_level_name());
    arg_add(a, "--stats-slot=%zu", child_slot(s, c));
    arg_add(a, "--stats-name=%s", s->stats_name);
    if (c->def->role == ROLE_WORKER || c->def->role == ROLE_UPSTREAM) {
        arg_add(a, "--hosts-fd=%d", s->hosts_fd);
        arg_add(a, "--hosts-bell-fd=%d", s->hosts_bell_fd);
        keep[(*n_keep)++] = s->hosts_fd;
        keep[(*n_keep)++] = s->hosts_bell_fd;
    }
    if (s->opt.sandbox.drop) {
        arg_add(a, "--sandbox-uid=%d", (int)s->opt.sandbox.uid);
        arg_add(a, "--sandbox-gid=%d", (int)s->opt.sandbox.gid);
        arg_add(a, "--chroot=%s", s->opt.sandbox.root);
    }
    if (s->opt.sandbox.allow_core_dumps)
        arg_add(a, "--allow-core-dumps");
    if (s->opt.reuseport)
        arg_add(a, "--accept-strategy=reuseport");
    /* Only workers write access logs. Another child holding them would keep a
     * rotated (even deleted) log file open for as long as it lives. */
    for (size_t i = 0; i < s->cfg->n_listeners && c->def->role == ROLE_WORKER; i++)
        for (size_t j = 0; j < s->cfg->listeners[i].hcm.n_access_logs && n < 16; j++)
            fds[n++] = s->cfg->listeners[i].hcm.access_logs[j].fd;
    if (n > 0) {
        fd_list(list, sizeof(list), fds, n, keep, n_keep);
        arg_add(a, "--access-log-fds=%s", list);
    }
    if (c->sup_peer >= 0) {
        arg_add(a, "--sup-sock=%d", c->sup_peer);
        keep[(*n_keep)++] = c->sup_peer;
    }
    if (c->def->role == ROLE_WORKER) {
        arg_add(a, "--fd-sock=%d", s->worker_ends[c->index]);
        keep[(*n_keep)++] = s->worker_ends[c->index];
    } else if (c->def->role == ROLE_LISTENER) {
        fd_list(list, sizeof(list), s->listener_ends, s->opt.concurrency, keep, n_keep);
        arg_add(a, "--worker-socks=%s", list);
        /* The sockets we hold (from its predecessor, or the previous
         * generation): the same sockets, their accept queues included. */
        size_t off = 0;
        list[0] = '\0';
        for (size_t i = 0; i < s->n_held && off < sizeof(list); i++) {
            off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%u.%u=%d", i ? "," : "",
                                    s->held[i].index, s->held[i].shard, s->held[i].fd);
            keep[(*n_keep)++] = s->held[i].fd;
        }
        if (off >= sizeof(list))
            log_fatal("too many listening sockets for the listener's command line");
        if (s->n_held > 0)
            arg_add(a, "--listen-fds=%s", list);
    }
}

/* In the child, between fork and exec: only async-signal-safe calls. The
 * supervisor has threads (ZeroMQ's), whose locks a forked child inherits in
 * whatever state they were: nothing but fcntl and execv is safe here. */
static void child_exec(char *const argv[], const int *keep, size_t n_keep)
{
    for (size_t i = 0; i < n_keep; i++)
        fcntl(keep[i], F_SETFD, 0); /* everything else is close-on-exec */
    execv("/proc/self/exe", argv);
    _exit(127);
}

/* A worker's supervisor socket (reopened access logs go down it): a fresh pair
 * for every incarnation, so that nothing sent to a predecessor can reach it. */
static int open_sup_sock(struct child *c)
{
    if (c->sup_sock >= 0)
        close(c->sup_sock);
    c->sup_sock = c->sup_peer = -1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    /* A worker that does not read must not block the supervisor. */
    if (fcntl(sv[0], F_SETFL, O_NONBLOCK) != 0) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    c->sup_sock = sv[0];
    c->sup_peer = sv[1];
    return 0;
}

static void close_held(struct sup *s)
{
    for (size_t i = 0; i < s->n_held; i++)
        close(s->held[i].fd);
    s->n_held = 0;
}

/* The listener's sockets (listener/handoff.h): kept, replacing what we held
 * (the same sockets, if they were handed to it from here). */
static void on_listener_sockets(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct child *c = w->data;
    struct sup *s = c->sup;
    struct listen_socks_msg m;
    int fds[LISTEN_SOCKS_MAX];
    size_t n_fds = 0;
    ssize_t n = ipc_recv_fds(w->fd, &m, sizeof(m), fds, LISTEN_SOCKS_MAX, &n_fds);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    const size_t head = offsetof(struct listen_socks_msg, ids);
    if (n <= 0 || (size_t)n < head || m.magic != LISTEN_SOCKS_MAGIC || m.n != n_fds ||
        (size_t)n != head + m.n * sizeof(m.ids[0])) {
        for (size_t i = 0; i < n_fds; i++)
            close(fds[i]);
        if (n != 0)
            log_warn("malformed socket list from the listener ignored");
        ev_io_stop(loop, w); /* EOF: the listener is gone; its successor gets a new pair */
        return;
    }
    close_held(s);
    struct listen_fd *held = realloc(s->held, (n_fds ? n_fds : 1) * sizeof(*held));
    if (held == NULL) {
        for (size_t i = 0; i < n_fds; i++)
            close(fds[i]);
        log_error("out of memory keeping the listening sockets");
        return;
    }
    s->held = held;
    for (size_t i = 0; i < n_fds; i++)
        s->held[i] =
            (struct listen_fd){.index = m.ids[i].index, .shard = m.ids[i].shard, .fd = fds[i]};
    s->n_held = n_fds;
    log_debug("holding %zu listening sockets", n_fds);
}

static void spawn(struct sup *s, struct child *c)
{
    struct child_argv argv = {0};
    /* the listener's: up to 256 worker sockets and IPC_MAX_FDS held ones */
    int keep[256 + IPC_MAX_FDS + 32];
    size_t n_keep = 0;
    if (c->def->role == ROLE_UPSTREAM)
        eds_watch_set_manager(&s->eds, -1); /* its socket is about to change */
    if (open_sup_sock(c) != 0) {
        log_error("socketpair for %s: %s", c->title + 8, strerror(errno));
        schedule_respawn(s, c, "could not be given its supervisor socket");
        return;
    }
    build_child_argv(s, c, &argv, keep, &n_keep);
    pid_t pid = fork();
    if (pid == 0)
        child_exec(argv.argv, keep, n_keep);
    if (c->sup_peer >= 0) { /* the worker's end is the worker's alone */
        close(c->sup_peer);
        c->sup_peer = -1;
    }
    if (pid < 0) {
        log_error("fork for %s: %s", c->title + 8, strerror(errno));
        schedule_respawn(s, c, "could not be forked");
        return;
    }
    c->pid = pid;
    c->ready = false;
    c->stop_sent = false;
    c->started_ms = proc_now_ms();
    stats_slot_claim(&s->stats, (uint32_t)child_slot(s, c), pid, c->title + 8,
                     s->opt.restart_epoch);
    if (c->def->role == ROLE_LISTENER) {
        ev_io_stop(s->loop, &c->sup_io);
        ev_io_set(&c->sup_io, c->sup_sock, EV_READ);
        ev_io_start(s->loop, &c->sup_io);
    }
    ev_child_set(&c->exit_watcher, pid, 0);
    ev_child_start(s->loop, &c->exit_watcher);
    /* Queued on its socket until it reads: the EDS hosts it starts from. */
    if (c->def->role == ROLE_UPSTREAM)
        eds_watch_set_manager(&s->eds, c->sup_sock);
    log_debug("started %s as pid %d", c->title + 8, (int)pid);
}

static void remove_stale_runtime_dirs(const char *base, unsigned base_id);

static int make_runtime_dir(struct sup *s)
{
    const char *base = getenv("XDG_RUNTIME_DIR");
    if (base == NULL || access(base, W_OK) != 0)
        base = "/tmp";
    remove_stale_runtime_dirs(base, s->opt.base_id);
    snprintf(s->runtime_dir, sizeof(s->runtime_dir), "%s/legate.%u.XXXXXX", base, s->opt.base_id);
    if (mkdtemp(s->runtime_dir) == NULL) { /* mkdtemp creates it 0700 */
        log_error("cannot create runtime directory under %s: %s", base, strerror(errno));
        s->runtime_dir[0] = '\0';
        return -1;
    }
    snprintf(s->control_path, sizeof(s->control_path), "%s/control", s->runtime_dir);
    snprintf(s->endpoint, sizeof(s->endpoint), "ipc://%s", s->control_path);
    log_info("runtime directory %s", s->runtime_dir);
    return 0;
}

static bool is_std_stream(const char *path)
{
    return strcmp(path, "/dev/stdout") == 0 || strcmp(path, "/dev/stderr") == 0;
}

static int open_access_log(const char *path)
{
    if (strcmp(path, "/dev/stdout") == 0)
        return fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    if (strcmp(path, "/dev/stderr") == 0)
        return fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

static int open_access_logs(struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        struct cfg_hcm *h = &cfg->listeners[i].hcm;
        for (size_t j = 0; j < h->n_access_logs; j++) {
            struct cfg_access_log *al = &h->access_logs[j];
            al->fd = open_access_log(al->path);
            if (al->fd < 0) {
                log_error("access log %s: %s", al->path, strerror(errno));
                return -1;
            }
        }
    }
    return 0;
}

/* Give the reopened logs to every running worker, then keep them for the
 * workers to come (their --access-log-fds) and let the old ones go. */
static void hand_over_logs(struct sup *s, const uint32_t *index, const int *fds,
                           struct cfg_access_log **logs, size_t n)
{
    for (size_t i = 0; i < s->n_children; i++) {
        struct child *c = &s->children[i];
        /* A worker not yet serving reads the message when it starts; a dead
         * one's successor gets the new descriptors on its command line. */
        if (c->def->role != ROLE_WORKER || c->pid <= 0 || c->sup_sock < 0)
            continue;
        if (ipc_send_indexed_fds(c->sup_sock, index, fds, n) != 0)
            log_error("%s (pid %d) was not sent the reopened access logs: %s; it writes to the "
                      "old files until the next reopen or its restart",
                      c->title + 8, (int)c->pid, strerror(errno));
    }
    for (size_t i = 0; i < n; i++) {
        close(logs[i]->fd);
        logs[i]->fd = fds[i];
    }
}

/* Log rotation: reopen every access log by path (a log that was renamed is
 * created afresh) and send the new descriptors to the workers, which flush
 * what they buffered to the old file first. A log that cannot be reopened
 * keeps its old descriptor: its lines keep going to the old file, none is
 * lost. /dev/stdout and /dev/stderr are ours, not files to reopen. */
static void reopen_access_logs(struct sup *s, const char *who)
{
    uint32_t index[IPC_MAX_FDS];
    int fds[IPC_MAX_FDS];
    struct cfg_access_log *logs[IPC_MAX_FDS];
    size_t n = 0, reopened = 0, failed = 0;
    uint32_t k = 0;
    stats_cell_add(s->reopen_total, 1);
    for (size_t i = 0; i < s->cfg->n_listeners; i++) {
        struct cfg_hcm *h = &s->cfg->listeners[i].hcm;
        for (size_t j = 0; j < h->n_access_logs; j++, k++) {
            struct cfg_access_log *al = &h->access_logs[j];
            if (is_std_stream(al->path))
                continue;
            int fd = open_access_log(al->path);
            if (fd < 0) {
                log_error("cannot reopen access log %s: %s; its lines still go to the file "
                          "open before",
                          al->path, strerror(errno));
                failed++;
                continue;
            }
            index[n] = k;
            fds[n] = fd;
            logs[n++] = al;
            if (n == IPC_MAX_FDS) { /* one message carries this many at most */
                hand_over_logs(s, index, fds, logs, n);
                reopened += n;
                n = 0;
            }
        }
    }
    if (n > 0)
        hand_over_logs(s, index, fds, logs, n);
    reopened += n;
    log_info("reopened %zu access logs (%s)%s", reopened, who,
             failed ? "; some could not be, see above" : "");
}

static void on_sigusr1(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    reopen_access_logs(w->data, "SIGUSR1");
}

/* --- hot restart: the old generation's side ---------------------------------------- */

/* One message from the other generation once the hand-over is under way:
 * any descriptors it carries are not wanted then (a late SOCKETS, say). */
static int hr_read(int fd, struct hr_msg *m, const char **why)
{
    int fds[HR_SOCKS_PER_MSG];
    size_t n_fds = 0;
    int rc = hr_recv(fd, m, fds, HR_SOCKS_PER_MSG, &n_fds, why);
    for (size_t i = 0; i < n_fds; i++)
        close(fds[i]);
    return rc;
}

/* Say why, then hang up. The caller's hello is read first: closing a Unix
 * socket with unread data resets the peer, whose read would then fail with
 * ECONNRESET instead of returning our reason. */
static void refuse(int fd, bool read_hello, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refuse(int fd, bool read_hello, const char *fmt, ...)
{
    struct hr_msg m;
    const char *why;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (read_hello && poll(&p, 1, 200) > 0)
        hr_read(fd, &m, &why);
    m = (struct hr_msg){.magic = HR_MAGIC, .type = HR_REFUSED};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m.u.refused.reason, sizeof(m.u.refused.reason), fmt, ap);
    va_end(ap);
    log_warn("hot restart refused: %s", m.u.refused.reason);
    hr_send(fd, &m, NULL, 0);
}

static size_t sweep_parent_slots(struct sup *s);

/* Why this generation cannot start another now, or NULL. */
static const char *restart_busy(struct sup *s, char *buf, size_t cap)
{
    if (s->state == SUP_STARTING)
        snprintf(buf, cap, "epoch %u is still starting", s->opt.restart_epoch);
    else if (s->state == SUP_STOPPING)
        snprintf(buf, cap, "epoch %u is %s", s->opt.restart_epoch,
                 s->handed_over ? "draining for the next generation" : "stopping");
    else if (s->hr_parent_fd >= 0)
        snprintf(buf, cap,
                 "a hot restart is still in progress: epoch %u (pid %d) is draining; try again "
                 "when it has exited",
                 s->parent_epoch, (int)s->parent_pid);
    else if (s->next_pid > 0)
        snprintf(buf, cap, "epoch %u is already starting (pid %d)", s->opt.restart_epoch + 1,
                 (int)s->next_pid);
    else if (s->hr_next_fd >= 0)
        snprintf(buf, cap, "epoch %u is already starting", s->opt.restart_epoch + 1);
    else if (s->shares_segment && s->parent_slot_count > 0 && sweep_parent_slots(s) > 0)
        /* Its supervisor died, its processes drain on: a next generation
         * would write the slots they still write. */
        snprintf(buf, cap, "processes of epoch %u are still draining", s->parent_epoch);
    else
        return NULL;
    return buf;
}

static void next_gone(struct sup *s)
{
    ev_io_stop(s->loop, &s->hr_next_io);
    close(s->hr_next_fd);
    s->hr_next_fd = -1;
    if (s->handed_over)
        log_warn("the new generation's supervisor hung up after taking over; draining goes on");
    else
        log_warn("the new generation hung up before it served; epoch %u keeps serving",
                 s->opt.restart_epoch);
}

/* Every socket we hold, keyed by address and shard, HR_SOCKS_PER_MSG at a time. */
static void send_held_sockets(struct sup *s)
{
    size_t i = 0, handed = 0;
    do {
        struct hr_msg m = {.magic = HR_MAGIC, .type = HR_SOCKETS};
        int fds[HR_SOCKS_PER_MSG];
        while (i < s->n_held && m.u.sockets.n < HR_SOCKS_PER_MSG) {
            if (hr_key_from_fd(s->held[i].fd, s->held[i].shard, &m.u.sockets.keys[m.u.sockets.n]) ==
                0)
                fds[m.u.sockets.n++] = s->held[i].fd;
            i++;
        }
        m.u.sockets.more = i < s->n_held;
        if (hr_send(s->hr_next_fd, &m, fds, m.u.sockets.n) != 0) {
            log_error("cannot send the listening sockets to the new generation: %s",
                      strerror(errno));
            return;
        }
        handed += m.u.sockets.n;
    } while (i < s->n_held);
    log_info("handed %zu listening sockets to the new generation", handed);
}

/* Layouts differ, so the next generation has a segment of its own: it gets
 * our counters' totals in messages (at the hand-over, each second while we
 * drain, and a last time when our processes have all exited) and adds what
 * grew to its own. Gauges are live values and stay ours; histograms are not
 * carried. */
static int send_counter_batch(struct sup *s, struct hr_msg *m, const uint32_t *ids)
{
    if (hr_send(s->hr_next_fd, m, NULL, 0) != 0) {
        log_warn("cannot send the counters to the next generation: %s; trying again in a second",
                 strerror(errno));
        return -1;
    }
    for (uint32_t i = 0; i < m->u.counters.n; i++)
        s->sent[ids[i]] = m->u.counters.c[i].value;
    m->u.counters.n = 0;
    return 0;
}

static void send_counters(struct sup *s, bool final)
{
    if (s->hr_next_fd < 0)
        return;
    if (s->sent == NULL && (s->sent = calloc(s->stats.g.max_stats, sizeof(uint64_t))) == NULL)
        return;
    /* The new supervisor reads in its loop: wait for room rather than drop a
     * batch, but never for long (SO_SNDTIMEO, set when it connected). */
    int fl = fcntl(s->hr_next_fd, F_GETFL);
    fcntl(s->hr_next_fd, F_SETFL, fl & ~O_NONBLOCK);
    struct hr_msg m = {.magic = HR_MAGIC, .type = HR_COUNTERS};
    uint32_t ids[HR_COUNTERS_PER_MSG];
    uint32_t n = stats_count(&s->stats);
    for (uint32_t id = 0; id < n && id < s->stats.g.max_stats; id++) {
        enum stat_kind kind;
        uint32_t flags;
        const struct stats_entry *e = stats_entry_at(&s->stats, id);
        size_t len = 0;
        const char *name = e != NULL ? stats_name(&s->stats, e, &len) : NULL;
        if (name == NULL || len >= HR_NAME_MAX || !stats_entry_info(&s->stats, id, &kind, &flags) ||
            kind != STAT_COUNTER)
            continue;
        uint64_t v = stats_counter_value(&s->stats, (int)id);
        if (v == s->sent[id])
            continue; /* only what changed since the last message */
        ids[m.u.counters.n] = id;
        struct hr_counter *c = &m.u.counters.c[m.u.counters.n++];
        c->value = v;
        c->flags = flags;
        memcpy(c->name, name, len);
        c->name[len] = '\0';
        if (m.u.counters.n == HR_COUNTERS_PER_MSG && send_counter_batch(s, &m, ids) != 0)
            goto out;
    }
    m.u.counters.final = final;
    if (m.u.counters.n > 0 || final)
        send_counter_batch(s, &m, ids);
out:
    fcntl(s->hr_next_fd, F_SETFL, fl);
}

static void on_carry_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    send_counters(w->data, false);
}

/* The next generation serves: drain. Idle keep-alive connections stay until
 * the deadline (or, gradual, go spread over it); every response now says
 * connection: close. The segment is the new generation's from here on, even
 * if this one was already stopping. `carry`: it has a segment of its own
 * and gets our counters in messages. */
static void begin_restart_drain(struct sup *s, uint32_t drain_ms, bool gradual, bool carry)
{
    if (s->handed_over)
        return;
    s->handed_over = true;
    s->carry_counters = carry;
    stats_gauge_set(&s->stats, s->g_live, 0);
    stats_gauge_set(&s->stats, s->g_concurrency, 0);
    stats_gauge_set(&s->stats, s->g_epoch, 0);
    stats_gauge_set(&s->stats, s->g_generation, 0);
    proc_stats_drop_uptime(&s->proc_stats);
    ev_io_stop(s->loop, &s->hr_accept_io);
    close(s->hr_listen_fd); /* nobody takes over from a draining generation */
    s->hr_listen_fd = -1;
    if (carry) {
        send_counters(s, false);
        ev_timer_set(&s->carry_timer, 1.0, 1.0);
        ev_timer_start(s->loop, &s->carry_timer);
    }
    if (s->state == SUP_STOPPING) {
        log_info("epoch %u serves now; this generation was already stopping%s",
                 s->opt.restart_epoch + 1, carry ? "; counters go over in messages" : "");
        return;
    }
    log_info("epoch %u serves now: draining for up to %u s (%s)%s", s->opt.restart_epoch + 1,
             drain_ms / 1000, gradual ? "gradual" : "immediate",
             carry ? "; its segment is not ours: counters go over in messages" : "");
    start_drain(s, drain_ms, IPC_DRAIN_KEEP_IDLE | (gradual ? IPC_DRAIN_GRADUAL : 0));
}

static void on_hr_next(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct sup *s = w->data;
    struct hr_msg m;
    const char *why = NULL;
    int rc = hr_read(s->hr_next_fd, &m, &why);
    if (rc < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (rc <= 0) {
        if (rc < 0)
            log_warn("hot restart: %s from the new generation: hanging up",
                     why ? why : strerror(errno));
        next_gone(s);
        return;
    }
    switch (m.type) {
    case HR_HELLO:
        if (m.u.hello.epoch != s->opt.restart_epoch + 1) {
            refuse(s->hr_next_fd, false, "epoch %u cannot follow epoch %u", m.u.hello.epoch,
                   s->opt.restart_epoch);
            next_gone(s);
            return;
        }
        log_info("hot restart: epoch %u (pid %d, layout version %u%s) is starting", m.u.hello.epoch,
                 (int)m.u.hello.pid, m.u.hello.layout_version,
                 m.u.hello.layout_version == STATS_LAYOUT_VERSION ? ", same as ours"
                                                                  : ", not ours");
        struct hr_msg r = {.magic = HR_MAGIC, .type = HR_WELCOME};
        r.u.welcome.layout_version = STATS_LAYOUT_VERSION;
        r.u.welcome.epoch = s->opt.restart_epoch;
        r.u.welcome.generation = s->generation;
        r.u.welcome.slot_base = s->slot_base;
        r.u.welcome.slot_count = (uint32_t)s->n_children + 1;
        r.u.welcome.pid = (int32_t)getpid();
        if (hr_send(s->hr_next_fd, &r, NULL, 0) != 0)
            next_gone(s);
        break;
    case HR_GET_SOCKETS:
        send_held_sockets(s);
        break;
    case HR_DRAIN:
        begin_restart_drain(s, m.u.drain.drain_ms, m.u.drain.gradual != 0,
                            m.u.drain.carry_counters != 0);
        break;
    case HR_TERMINATE:
        log_warn("the new generation's parent shutdown time is up: exiting now");
        if (s->state != SUP_STOPPING)
            start_drain(s, 0, 0);
        kill_all(s);
        break;
    default:
        log_warn("hot restart: unexpected message %u from the new generation: hanging up", m.type);
        next_gone(s);
        break;
    }
}

static void on_hr_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct sup *s = w->data;
    int fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    pid_t pid = 0;
    if (!hr_peer_trusted(fd, &pid)) {
        log_warn("hot-restart rendezvous: pid %d runs as another user: hung up", (int)pid);
        close(fd);
        return;
    }
    char busy[200];
    /* The generation we started ourselves is the one expected. */
    pid_t expected = s->next_pid;
    if (expected > 0 && pid == expected)
        s->next_pid = 0;
    if (restart_busy(s, busy, sizeof(busy)) != NULL) {
        s->next_pid = expected;
        refuse(fd, true, "%s", busy);
        close(fd);
        return;
    }
    s->next_pid = expected;
    struct timeval tv = {.tv_sec = 2}; /* a blocking send to it waits this long at most */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    s->hr_next_fd = fd;
    ev_io_init(&s->hr_next_io, on_hr_next, fd, EV_READ);
    s->hr_next_io.data = s;
    ev_io_start(loop, &s->hr_next_io);
}

/* SIGUSR2, or SIGHUP with a configuration that validates: run the binary at
 * the path we were started from, with our arguments and the next epoch. */
static void start_next_generation(struct sup *s, const char *why)
{
    char busy[200];
    if (restart_busy(s, busy, sizeof(busy)) != NULL) {
        log_warn("%s: no hot restart: %s", why, busy);
        return;
    }
    /* Built before fork: between fork and exec only async-signal-safe calls. */
    size_t n = 0;
    while (s->opt.argv[n] != NULL)
        n++;
    char **argv = calloc(n + 2, sizeof(char *));
    char epoch_arg[48];
    if (argv == NULL)
        return;
    size_t k = 0;
    argv[k++] = s->opt.argv[0];
    for (size_t i = 1; i < n; i++) {
        if (strcmp(s->opt.argv[i], "--restart-epoch") == 0) {
            i++; /* and its value */
            continue;
        }
        if (strncmp(s->opt.argv[i], "--restart-epoch=", 16) == 0)
            continue;
        argv[k++] = s->opt.argv[i];
    }
    snprintf(epoch_arg, sizeof(epoch_arg), "--restart-epoch=%u", s->opt.restart_epoch + 1);
    argv[k++] = epoch_arg;
    argv[k] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL); /* libev's blocked signals are not the next's */
        execv(s->opt.exe_path, argv);
        _exit(127);
    }
    free(argv);
    if (pid < 0) {
        log_error("%s: cannot fork the next generation: %s", why, strerror(errno));
        return;
    }
    s->next_pid = pid;
    ev_child_set(&s->next_watcher, pid, 0);
    ev_child_start(s->loop, &s->next_watcher);
    log_info("%s: starting epoch %u from %s (pid %d)", why, s->opt.restart_epoch + 1,
             s->opt.exe_path, (int)pid);
}

static void on_next_exit(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)revents;
    struct sup *s = w->data;
    ev_child_stop(loop, w);
    char how[64];
    describe_status(w->rstatus, how, sizeof(how));
    if (s->handed_over)
        log_warn("epoch %u (pid %d) %s", s->opt.restart_epoch + 1, (int)s->next_pid, how);
    else
        log_error("epoch %u (pid %d) %s before it served; epoch %u keeps serving",
                  s->opt.restart_epoch + 1, (int)s->next_pid, how, s->opt.restart_epoch);
    s->next_pid = 0;
}

static void on_sigusr2(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    start_next_generation(w->data, "SIGUSR2");
}

/* A reload is a hot restart whose configuration is checked first: one that
 * does not validate is refused, and nothing changes. */
static void on_sighup(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    struct sup *s = w->data;
    if (s->opt.config_path != NULL) {
        struct config cfg;
        struct config_errors errs = {0};
        char err[512] = "";
        int rc = config_load_file(s->opt.config_path, &cfg, &errs);
        if (rc == 0) {
            rc = access_log_check_config(&cfg, err, sizeof(err));
            config_free(&cfg);
        } else {
            snprintf(err, sizeof(err), "%s", errs.n > 0 ? errs.msgs[0] : "?");
        }
        if (rc != 0) {
            stats_cell_add(s->reload_rejected, 1);
            log_error("SIGHUP: reload refused, the running configuration stays: %s", err);
            for (size_t i = 1; i < errs.n; i++)
                log_error("SIGHUP: also: %s", errs.msgs[i]);
            config_errors_free(&errs);
            return;
        }
        config_errors_free(&errs);
    }
    start_next_generation(s, "SIGHUP");
}

/* --- hot restart: the new generation's side ---------------------------------------- */

/* The previous generation's slots: those whose process has gone no longer
 * count their gauges (an old supervisor that exits cleanly does this for its
 * children itself; one that crashed cannot). Returns how many still live. */
static size_t sweep_parent_slots(struct sup *s)
{
    size_t alive = 0;
    for (uint32_t i = 0; i < s->parent_slot_count; i++) {
        uint32_t slot = s->parent_slot_base + i;
        struct stats_slot_info si;
        if (!stats_slot_info(&s->stats, slot, &si) ||
            atomic_load_explicit(&si.state, memory_order_relaxed) != STATS_SLOT_ALIVE)
            continue;
        if (si.pid > 0 && kill(si.pid, 0) == 0) {
            alive++;
            continue;
        }
        stats_slot_reset_gauges(&s->stats, slot);
        stats_slot_exited(&s->stats, slot);
    }
    return alive;
}

static void become_owner(struct sup *s);

static void parent_gone(struct sup *s)
{
    log_info("epoch %u (pid %d) has exited%s", s->parent_epoch, (int)s->parent_pid,
             s->parent_told_to_drain ? "" : " before we served");
    ev_io_stop(s->loop, &s->hr_parent_io);
    close(s->hr_parent_fd);
    s->hr_parent_fd = -1;
    if (s->parent_pidfd >= 0)
        close(s->parent_pidfd);
    s->parent_pidfd = -1;
    ev_timer_stop(s->loop, &s->parent_timer);
    become_owner(s); /* whether or not we serve yet: nobody else will own it */
    if (s->shares_segment && s->parent_slot_count > 0 && sweep_parent_slots(s) > 0) {
        /* Its children outlived it (it crashed): look again until they go. */
        ev_timer_set(&s->parent_timer, 1.0, 1.0);
        ev_timer_start(s->loop, &s->parent_timer);
    }
}

/* Counter totals from a parent with another layout: add what grew since the
 * last message to this supervisor's own cells. */
static void apply_carried_counters(struct sup *s, const struct hr_msg *m)
{
    if (s->carried == NULL) {
        log_warn("counters from epoch %u, which shares our segment, ignored", s->parent_epoch);
        return;
    }
    for (uint32_t i = 0; i < m->u.counters.n; i++) {
        const struct hr_counter *c = &m->u.counters.c[i];
        int id = stats_register_flags(&s->stats, c->name, STAT_COUNTER, c->flags & STAT_FLAG_HOST);
        if (id < 0 || (uint32_t)id >= s->stats.g.max_stats)
            continue;
        if (c->value > s->carried[id])
            stats_inc(&s->stats, id, c->value - s->carried[id]);
        s->carried[id] = c->value;
    }
    if (m->u.counters.final)
        log_info("counters of epoch %u carried over", s->parent_epoch);
}

static void on_hr_parent(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct sup *s = w->data;
    struct hr_msg m;
    const char *why = NULL;
    int rc = hr_read(s->hr_parent_fd, &m, &why);
    if (rc < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (rc > 0) {
        if (m.type == HR_COUNTERS)
            apply_carried_counters(s, &m);
        else
            log_warn("hot restart: unexpected message %u from epoch %u ignored", m.type,
                     s->parent_epoch);
        return;
    }
    if (rc < 0 && errno == EPROTO) {
        log_warn("hot restart: %s from epoch %u, ignored", why, s->parent_epoch);
        return;
    }
    parent_gone(s);
}

/* After --parent-shutdown-time-s the old generation is told to exit; a few
 * seconds later it is killed. Once it is gone, the same timer sweeps the
 * slots of any of its children that outlived it. */
static void on_parent_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct sup *s = w->data;
    if (s->hr_parent_fd < 0) {
        if (!s->shares_segment || sweep_parent_slots(s) == 0)
            ev_timer_stop(loop, w);
        return;
    }
    if (!s->parent_terminate_sent) {
        log_warn("parent shutdown time is up: telling epoch %u (pid %d) to exit now",
                 s->parent_epoch, (int)s->parent_pid);
        struct hr_msg m = {.magic = HR_MAGIC, .type = HR_TERMINATE};
        hr_send(s->hr_parent_fd, &m, NULL, 0);
        s->parent_terminate_sent = true;
        timer_rearm(loop, w, HR_KILL_GRACE_MS / 1000.0);
        return;
    }
    if (s->parent_pidfd >= 0 &&
        syscall(SYS_pidfd_send_signal, s->parent_pidfd, SIGKILL, NULL, 0) == 0)
        log_error("epoch %u (pid %d) did not exit: killed it", s->parent_epoch, (int)s->parent_pid);
    else
        log_error("epoch %u (pid %d) did not exit, and cannot be signalled safely (no pidfd: "
                  "%s); stop it by hand",
                  s->parent_epoch, (int)s->parent_pid, strerror(errno));
    ev_timer_stop(loop, w);
}

/* We serve (or the parent is gone): the segment is ours, under the public
 * name. Idempotent. */
static void become_owner(struct sup *s)
{
    if (s->owns_segment)
        return;
    if (s->segment_temp) {
        char pub[64], from[96], to[96];
        stats_shm_name(s->opt.base_id, pub, sizeof(pub));
        snprintf(from, sizeof(from), "/dev/shm%s", s->stats_name);
        snprintf(to, sizeof(to), "/dev/shm%s", pub);
        if (rename(from, to) != 0) {
            log_error("cannot give the statistics segment its name (%s to %s): %s; shmstat will "
                      "not find it",
                      from, to, strerror(errno));
        } else {
            snprintf(s->stats_name, sizeof(s->stats_name), "%s", pub);
            s->segment_temp = false;
        }
    }
    stats_set_owner(&s->stats, getpid(), s->opt.restart_epoch);
    s->owns_segment = true;
}

static void tell_parent_to_drain(struct sup *s)
{
    struct hr_msg m = {.magic = HR_MAGIC, .type = HR_DRAIN};
    m.u.drain.drain_ms = s->opt.drain_time_ms;
    m.u.drain.gradual = s->opt.drain_gradual;
    m.u.drain.carry_counters = !s->shares_segment;
    if (hr_send(s->hr_parent_fd, &m, NULL, 0) != 0) {
        log_warn("cannot tell epoch %u to drain: %s", s->parent_epoch, strerror(errno));
        return;
    }
    s->parent_told_to_drain = true;
    become_owner(s);
    log_info("took over from epoch %u (pid %d): it drains for up to %u s and is gone within %u s",
             s->parent_epoch, (int)s->parent_pid, s->opt.drain_time_ms / 1000,
             s->opt.parent_shutdown_ms / 1000);
    timer_rearm(s->loop, &s->parent_timer, s->opt.parent_shutdown_ms / 1000.0);
}

/* Hello to epoch - 1. Returns 0 (a parent: s->hr_parent_fd), 1 (nobody there:
 * start afresh), or -1 (refused or broken: do not start). */
static int connect_parent(struct sup *s, uint32_t *parent_layout)
{
    unsigned epoch = s->opt.restart_epoch;
    int fd = hr_connect(s->opt.base_id, epoch - 1);
    if (fd < 0) {
        log_warn("no legate runs at epoch %u of base id %u (%s): starting afresh", epoch - 1,
                 s->opt.base_id, strerror(errno));
        return 1;
    }
    pid_t peer = 0;
    if (!hr_peer_trusted(fd, &peer)) {
        log_error("epoch %u of base id %u is run by another user (pid %d)", epoch - 1,
                  s->opt.base_id, (int)peer);
        close(fd);
        return -1;
    }
    struct hr_msg m = {.magic = HR_MAGIC, .type = HR_HELLO};
    m.u.hello.layout_version = STATS_LAYOUT_VERSION;
    m.u.hello.epoch = epoch;
    m.u.hello.slots_needed = 3 + s->opt.concurrency;
    m.u.hello.pid = (int32_t)getpid();
    int fds[4];
    size_t n_fds;
    const char *why = NULL;
    /* A refusal may be waiting even if the hello could not be sent. */
    hr_send(fd, &m, NULL, 0);
    int rc = hr_recv_wait(fd, &m, fds, 4, &n_fds, &why, HR_ANSWER_MS);
    if (rc <= 0 || m.type != HR_WELCOME) {
        if (rc > 0 && m.type == HR_REFUSED) {
            log_error("epoch %u refused the hot restart: %s", epoch - 1, m.u.refused.reason);
        } else if (rc == 0 || (rc < 0 && errno == ECONNRESET)) {
            /* It exited (or crashed) as we arrived: nothing serves to take over from. */
            log_warn("epoch %u hung up without an answer: starting afresh", epoch - 1);
            close(fd);
            return 1;
        } else
            log_error("epoch %u did not answer the hot restart: %s", epoch - 1,
                      rc == 0 ? "it hung up"
                      : why   ? why
                              : strerror(errno));
        close(fd);
        return -1;
    }
    s->hr_parent_fd = fd;
    s->parent_pid = m.u.welcome.pid;
    s->parent_epoch = m.u.welcome.epoch;
    s->parent_slot_base = m.u.welcome.slot_base;
    s->parent_slot_count = m.u.welcome.slot_count;
    s->generation = m.u.welcome.generation + 1;
    s->parent_pidfd = (int)syscall(SYS_pidfd_open, s->parent_pid, 0);
    *parent_layout = m.u.welcome.layout_version;
    log_info("hot restart: taking over from epoch %u (pid %d, generation %u)", s->parent_epoch,
             (int)s->parent_pid, m.u.welcome.generation);
    return 0;
}

/* The parent's listening sockets, kept where this configuration names the
 * same address (and shard); the others stay with the parent until it exits. */
static void receive_parent_sockets(struct sup *s)
{
    const struct config *cfg = s->cfg;
    struct hr_msg m = {.magic = HR_MAGIC, .type = HR_GET_SOCKETS};
    if (hr_send(s->hr_parent_fd, &m, NULL, 0) != 0)
        return;
    size_t kept = 0, left = 0;
    do {
        int fds[HR_SOCKS_PER_MSG];
        size_t n_fds = 0;
        const char *why = NULL;
        if (hr_recv_wait(s->hr_parent_fd, &m, fds, HR_SOCKS_PER_MSG, &n_fds, &why, HR_ANSWER_MS) <=
                0 ||
            m.type != HR_SOCKETS) {
            log_warn("epoch %u did not hand over its sockets (%s): binding afresh", s->parent_epoch,
                     why ? why : "hung up");
            return;
        }
        struct listen_fd *held = realloc(s->held, (s->n_held + n_fds + 1) * sizeof(*held));
        if (held == NULL)
            log_fatal("out of memory");
        s->held = held;
        for (size_t j = 0; j < n_fds; j++) {
            bool match = false;
            for (size_t i = 0; i <= cfg->n_listeners && !match; i++) {
                bool admin = i == cfg->n_listeners;
                if (admin && !cfg->admin.enabled)
                    break;
                const struct cfg_addr *a = admin ? &cfg->admin.addr : &cfg->listeners[i].addr;
                size_t shards = !admin && s->opt.reuseport ? s->opt.concurrency : 1;
                for (size_t sh = 0; sh < shards && !match; sh++) {
                    struct hr_sock_key k;
                    hr_key_from_addr(&a->ss, (uint32_t)sh, &k);
                    if (hr_key_equal(&k, &m.u.sockets.keys[j])) {
                        s->held[s->n_held++] = (struct listen_fd){
                            .index = (uint16_t)i, .shard = (uint16_t)sh, .fd = fds[j]};
                        match = true;
                    }
                }
            }
            if (!match) {
                const struct hr_sock_key *k = &m.u.sockets.keys[j];
                char addr[64] = "?";
                inet_ntop(k->family, k->addr, addr, sizeof(addr));
                log_warn("the socket on %s port %u (shard %u) is not in this configuration: it "
                         "stays with epoch %u, which no longer accepts on it; connections queued "
                         "there are reset when that generation exits",
                         addr, k->port, k->shard, s->parent_epoch);
                close(fds[j]);
                left++;
            } else {
                kept++;
            }
        }
    } while (m.u.sockets.more);
    log_info("inherited %zu listening sockets from epoch %u%s", kept, s->parent_epoch,
             left ? " (see above for the ones not taken)" : "");
}

/* The statistics segment, sized from the configuration with headroom: every
 * stat legate will name is known from it (per listener, per cluster), plus room
 * for dynamic ones (per-status-code counters). Two generations' worth of slots,
 * for hot restart. A segment whose supervisor is alive means the base id is in
 * use: refused. One whose supervisor is gone is stale: replaced. */
static int open_stats(struct sup *s, bool have_parent, uint32_t parent_layout)
{
    const struct config *cfg = s->cfg;
    uint32_t objects = (uint32_t)(cfg->n_listeners + cfg->n_clusters);
    uint32_t hosts = 0; /* each has a handful of per-host stats */
    for (size_t i = 0; i < cfg->n_clusters; i++)
        hosts += (uint32_t)cfg->clusters[i].n_endpoints;
    uint32_t per_generation = 3 + s->opt.concurrency; /* supervisor, listener, manager, workers */
    struct stats_layout layout = {
        .max_stats = 1024 + 1024 * objects + 16 * hosts,
        .max_histograms = 64 + 16 * objects,
        /* twice, for the two generations that overlap during a hot restart */
        .n_slots = 2 * per_generation,
        .arena_size = 64 * 1024 + 64 * 1024 * (uint64_t)objects + 2048 * (uint64_t)hosts,
    };
    stats_shm_name(s->opt.base_id, s->stats_name, sizeof(s->stats_name));
    const char *why = NULL;
    if (have_parent && parent_layout == STATS_LAYOUT_VERSION) {
        /* Same layout: attach the running segment and write the half of the
         * slots the parent does not, so that counters simply continue. */
        if (stats_attach(&s->stats, s->stats_name, false, &why) == 0) {
            const struct stats_geometry *g = &s->stats.g;
            uint32_t half = g->n_slots / 2;
            if (per_generation <= half && layout.max_stats <= g->max_stats &&
                layout.max_histograms <= g->max_histograms && layout.arena_size <= g->arena_size) {
                s->slot_base = s->parent_slot_base >= half ? 0 : half;
                s->shares_segment = true;
                log_info("statistics: sharing segment %s with epoch %u (slots %u..%u)",
                         s->stats_name, s->parent_epoch, s->slot_base,
                         s->slot_base + per_generation - 1);
                goto registered;
            }
            log_warn("statistics: segment %s is too small for this generation (%u slots per "
                     "generation, %u stats; it needs %u and %u)",
                     s->stats_name, half, g->max_stats, per_generation, layout.max_stats);
            stats_detach(&s->stats);
        } else {
            log_warn("statistics: cannot attach segment %s: %s", s->stats_name, why);
        }
    }
    if (have_parent) {
        /* A segment of our own, under a name of its own until we serve: the
         * parent's children keep finding the parent's segment by name (a
         * respawned one attaches it), and if we fail to start, nothing of the
         * parent's has changed. At the hand-over it takes the public name. */
        log_warn("statistics: a fresh segment (epoch %u has layout version %u, this binary %u); "
                 "its counters will be carried over in messages",
                 s->parent_epoch, parent_layout, STATS_LAYOUT_VERSION);
        size_t len = strlen(s->stats_name);
        snprintf(s->stats_name + len, sizeof(s->stats_name) - len, ".next");
        stats_unlink(s->stats_name); /* one a failed predecessor left */
        s->segment_temp = true;
    } else {
        /* A segment whose supervisor is alive means the base id is in use:
         * refused. One whose supervisor is gone is stale: replaced. */
        struct stats old;
        if (stats_attach(&old, s->stats_name, true, &why) == 0) {
            pid_t owner = old.hdr->supervisor_pid;
            bool alive = owner != getpid() && stats_owner_alive(&old);
            stats_detach(&old);
            if (alive) {
                log_error("base id %u is in use by the legate with pid %d (segment %s); choose "
                          "another --base-id, or take over with --restart-epoch",
                          s->opt.base_id, (int)owner, s->stats_name);
                return -1;
            }
            log_info("replacing the stale statistics segment %s of pid %d", s->stats_name,
                     (int)owner);
        }
    }
    if (stats_create(&s->stats, s->stats_name, &layout, s->opt.base_id, s->opt.restart_epoch) !=
        0) {
        log_error("cannot create the statistics segment %s: %s", s->stats_name, strerror(errno));
        return -1;
    }
    s->owns_segment = !have_parent;
    if (have_parent && (s->carried = calloc(layout.max_stats, sizeof(uint64_t))) == NULL)
        log_fatal("out of memory");
    log_info("statistics in shared memory %s (%u stats, %u slots)", s->stats_name, layout.max_stats,
             layout.n_slots);
registered:
    stats_set_slot(&s->stats, s->slot_base);
    stats_slot_claim(&s->stats, s->slot_base, getpid(), "supervisor", s->opt.restart_epoch);
    s->g_live = stats_register(&s->stats, "server.live", STAT_GAUGE);
    s->g_concurrency = stats_register(&s->stats, "server.concurrency", STAT_GAUGE);
    s->g_epoch = stats_register(&s->stats, "server.hot_restart_epoch", STAT_GAUGE);
    s->g_generation = stats_register(&s->stats, "server.hot_restart_generation", STAT_GAUGE);
    stats_gauge_set(&s->stats, s->g_live, 1);
    stats_gauge_set(&s->stats, s->g_concurrency, s->opt.concurrency);
    stats_gauge_set(&s->stats, s->g_epoch, s->opt.restart_epoch);
    stats_gauge_set(&s->stats, s->g_generation, s->generation);
    return 0;
}

/* Runtime directories of instances that died without cleaning up (SIGKILL):
 * a control socket nobody listens on, or none after a minute. */
static void remove_stale_runtime_dirs(const char *base, unsigned base_id)
{
    DIR *d = opendir(base);
    if (d == NULL)
        return;
    char prefix[64];
    int plen = snprintf(prefix, sizeof(prefix), "legate.%u.", base_id);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, (size_t)plen) != 0)
            continue;
        char dir[512], ctl[600];
        snprintf(dir, sizeof(dir), "%s/%s", base, e->d_name);
        snprintf(ctl, sizeof(ctl), "%s/control", dir);
        struct stat st;
        if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid())
            continue;
        bool stale;
        if (lstat(ctl, &st) != 0) {
            stale = errno == ENOENT && time(NULL) - st.st_mtime > 60;
        } else {
            struct sockaddr_un sun = {.sun_family = AF_UNIX};
            if (strlen(ctl) >= sizeof(sun.sun_path))
                continue;
            memcpy(sun.sun_path, ctl, strlen(ctl) + 1);
            int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            stale = fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 &&
                    errno == ECONNREFUSED;
            if (fd >= 0)
                close(fd);
        }
        if (!stale)
            continue;
        unlink(ctl);
        if (rmdir(dir) == 0)
            log_info("removed the stale runtime directory %s", dir);
    }
    closedir(d);
}

int supervisor_run(struct config *cfg, const struct sup_options *opt)
{
    static struct sup sup; /* one per process: signal and child watchers point into it */
    struct sup *s = &sup;
    s->cfg = cfg;
    s->opt = *opt;
    s->state = SUP_STARTING;
    log_set_role("supervisor");
    proc_set_title("legate: supervisor");
    signal(SIGPIPE, SIG_IGN);

    if (open_access_logs(cfg) != 0 || make_runtime_dir(s) != 0)
        return 1;
    /* Children re-parse exactly the text validated here, sealed against change. */
    s->config_fd = memfd_create("legate-config", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (s->config_fd < 0 ||
        write(s->config_fd, cfg->text, cfg->text_len) != (ssize_t)cfg->text_len ||
        fcntl(s->config_fd, F_ADD_SEALS,
              F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        log_error("cannot hand the configuration to children: %s", strerror(errno));
        cleanup_runtime_dir(s);
        return 1;
    }
    /* The host table and its doorbell: made here so that a respawned upstream
     * manager or worker finds the last published host state. */
    s->hosts_fd = hosts_segment_create(cfg);
    s->hosts_bell_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->hosts_fd < 0 || s->hosts_bell_fd < 0) {
        log_error("cannot make the host table: %s", strerror(errno));
        cleanup_runtime_dir(s);
        return 1;
    }
    s->hr_next_fd = s->hr_parent_fd = s->parent_pidfd = -1;
    s->hr_listen_fd = hr_listen(opt->base_id, opt->restart_epoch);
    if (s->hr_listen_fd < 0) {
        if (errno == EADDRINUSE)
            log_error("epoch %u of base id %u is running already: to take over from it, start "
                      "with --restart-epoch %u (or send it SIGUSR2)",
                      opt->restart_epoch, opt->base_id, opt->restart_epoch + 1);
        else
            log_error("hot-restart rendezvous socket: %s", strerror(errno));
        cleanup_runtime_dir(s);
        return 1;
    }
    uint32_t parent_layout = 0;
    int parent = opt->restart_epoch > 0 ? connect_parent(s, &parent_layout) : 1;
    if (parent < 0 || open_stats(s, parent == 0, parent_layout) != 0) {
        cleanup_runtime_dir(s);
        return 1;
    }
    if (parent == 0)
        receive_parent_sockets(s);

    unsigned n = opt->concurrency;
    s->listener_ends = calloc(n, sizeof(int));
    s->worker_ends = calloc(n, sizeof(int));
    s->n_children = 2 + n;
    s->children = calloc(s->n_children, sizeof(*s->children));
    if (!s->listener_ends || !s->worker_ends || !s->children)
        log_fatal("out of memory");
    for (unsigned i = 0; i < n; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
            log_fatal("socketpair: %s", strerror(errno));
        s->listener_ends[i] = sv[0];
        s->worker_ends[i] = sv[1];
    }

    s->loop = ev_default_loop(EVBACKEND_EPOLL | EVFLAG_NOENV);
    if (ipc_open_router(&s->ctl, s->loop, s->endpoint, on_control, s) != 0) {
        cleanup_runtime_dir(s);
        return 1;
    }
    proc_stats_start(&s->proc_stats, s->loop, &s->stats, true);
    ev_signal_init(&s->sig_term, on_signal, SIGTERM);
    ev_signal_init(&s->sig_int, on_signal, SIGINT);
    s->sig_term.data = s->sig_int.data = s;
    ev_signal_start(s->loop, &s->sig_term);
    ev_signal_start(s->loop, &s->sig_int);
    ev_signal_init(&s->sig_usr1, on_sigusr1, SIGUSR1);
    s->sig_usr1.data = s;
    ev_signal_start(s->loop, &s->sig_usr1);
    s->reopen_total =
        stats_cell(&s->stats, stats_register(&s->stats, "server.log_reopen_total", STAT_COUNTER));
    s->reload_rejected = stats_cell(
        &s->stats, stats_register(&s->stats, "server.hot_restart.reload_rejected", STAT_COUNTER));
    ev_signal_init(&s->sig_usr2, on_sigusr2, SIGUSR2);
    ev_signal_init(&s->sig_hup, on_sighup, SIGHUP);
    s->sig_usr2.data = s->sig_hup.data = s;
    ev_signal_start(s->loop, &s->sig_usr2);
    ev_signal_start(s->loop, &s->sig_hup);
    ev_io_init(&s->hr_accept_io, on_hr_accept, s->hr_listen_fd, EV_READ);
    s->hr_accept_io.data = s;
    ev_io_start(s->loop, &s->hr_accept_io);
    ev_child_init(&s->next_watcher, on_next_exit, 0, 0);
    s->next_watcher.data = s;
    ev_timer_init(&s->parent_timer, on_parent_timer, 0., 0.);
    s->parent_timer.data = s;
    ev_timer_init(&s->carry_timer, on_carry_timer, 0., 0.);
    s->carry_timer.data = s;
    if (s->hr_parent_fd >= 0) {
        ev_io_init(&s->hr_parent_io, on_hr_parent, s->hr_parent_fd, EV_READ);
        s->hr_parent_io.data = s;
        ev_io_start(s->loop, &s->hr_parent_io);
    }
    ev_timer_init(&s->stop_timer, on_stop_timer, 0., 0.);
    s->stop_timer.data = s;

    size_t k = 0;
    for (size_t r = 0; r < role_table_len; r++) {
        unsigned count = role_table[r].role == ROLE_WORKER ? n : 1;
        for (unsigned i = 0; i < count; i++, k++) {
            struct child *c = &s->children[k];
            c->def = &role_table[r];
            c->index = (int)i;
            c->sup = s;
            if (c->def->role == ROLE_WORKER) {
                snprintf(c->ident, sizeof(c->ident), "worker-%u", i);
                snprintf(c->title, sizeof(c->title), "legate: worker %u", i);
            } else {
                snprintf(c->ident, sizeof(c->ident), "%s",
                         c->def->role == ROLE_LISTENER ? "listener" : "upstream");
                snprintf(c->title, sizeof(c->title), "legate: %s", c->def->title);
            }
            ev_child_init(&c->exit_watcher, on_child_exit, 0, 0);
            c->exit_watcher.data = c;
            ev_timer_init(&c->respawn_timer, on_respawn_timer, 0., 0.);
            c->respawn_timer.data = c;
            ev_io_init(&c->sup_io, on_listener_sockets, -1, EV_READ);
            c->sup_io.data = c;
            c->sup_sock = c->sup_peer = -1;
        }
    }
    if (eds_watch_start(&s->eds, s->loop, s->cfg, &s->stats) != 0)
        log_error("EDS clusters will have no hosts until legate restarts");
    for (size_t i = 0; i < s->n_children; i++)
        spawn(s, &s->children[i]);

    ev_run(s->loop, 0);

    eds_watch_stop(&s->eds);
    proc_stats_stop(&s->proc_stats, s->loop);
    if (s->carry_counters && s->handed_over)
        send_counters(s, true); /* every process has exited: these are the last totals */
    ipc_close(&s->ctl);
    cleanup_runtime_dir(s);
    close_held(s);
    free(s->carried);
    if (s->hr_listen_fd >= 0)
        close(s->hr_listen_fd);
    stats_slot_reset_gauges(&s->stats, s->slot_base);
    stats_slot_exited(&s->stats, s->slot_base);
    /* A segment the next generation took over is its own now; one we share
     * with a parent that still serves (we failed to start) is the parent's;
     * one of our own that never got its public name goes with us. */
    if (!s->handed_over && s->owns_segment) {
        atomic_store_explicit(&s->stats.hdr->owner_alive, 0, memory_order_relaxed);
        stats_detach(&s->stats);
        stats_unlink(s->stats_name);
    } else {
        stats_detach(&s->stats);
        if (s->segment_temp)
            stats_unlink(s->stats_name);
    }
    return s->exit_code;
}

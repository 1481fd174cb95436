#include "supervisor/supervisor.h"

#include <errno.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "common/ipc.h"
#include "common/evtimer.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/role.h"
#include "shm/proc_stats.h"
#include "shm/stats.h"

#define RESPAWN_MIN_MS 50u
#define RESPAWN_MAX_MS 30000u
#define STABLE_AFTER_MS 10000u /* a child alive this long resets its backoff */
#define CRASH_WINDOW_MS 60000u /* crash-loop accounting window */
#define CRASH_LOOP_COUNT 5u    /* crashes per window that make it a loop */
#define STOP_GRACE_MS 3000u    /* after the drain time, SIGKILL what is left */

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
    int sup_sock; /* worker: our end of this incarnation's supervisor socket, or -1 */
    int sup_peer; /* worker: its end, open in the supervisor only from socketpair to fork */
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
    struct stats stats; /* the statistics segment, slot 0 */
    struct proc_stats proc_stats;
    char stats_name[64];
    char runtime_dir[256];
    char control_path[300];
    char endpoint[320];
    struct ipc_chan ctl;
    ev_signal sig_term, sig_int;
    ev_signal sig_usr1;             /* reopen the access logs */
    _Atomic uint64_t *reopen_total; /* server.log_reopen_total */
    ev_timer stop_timer;
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

static void begin_stop(struct sup *s, const char *why, int exit_code)
{
    if (s->state == SUP_STOPPING)
        return;
    log_info("stopping (%s): draining in-flight requests for up to %u s", why,
             s->opt.drain_time_ms / 1000);
    s->state = SUP_STOPPING;
    if (exit_code != 0)
        s->exit_code = exit_code;
    for (size_t i = 0; i < s->n_children; i++)
        ev_timer_stop(s->loop, &s->children[i].respawn_timer);
    struct ipc_drain d = {.deadline_ms = s->opt.drain_time_ms};
    for (size_t i = 0; i < s->n_children; i++)
        if (s->children[i].def->role == ROLE_WORKER) {
            s->children[i].stop_sent = true;
            send_or_signal(s, &s->children[i], IPC_DRAIN, &d, sizeof(d));
        }
    timer_rearm(s->loop, &s->stop_timer, (s->opt.drain_time_ms + STOP_GRACE_MS) / 1000.0);
    finish_if_done(s);
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
    case IPC_HELLO:
        log_debug("%s says hello (pid %d)", c->title + 8, msg->u.HELLO.pid);
        break;
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
                log_info("legate is ready: %zu listeners, %u workers", s->cfg->n_listeners,
                         s->opt.concurrency);
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
    char store[4096];
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
    return (size_t)(c - s->children) + 1;
}

static void build_child_argv(struct sup *s, struct child *c, struct child_argv *a, int *keep,
                             size_t *n_keep)
{
    char list[2048];
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
    arg_add(a, "--drain-time-s=%u", s->opt.drain_time_ms / 1000);
    arg_add(a, "--log-level=%s", log_level_name());
    arg_add(a, "--stats-slot=%zu", child_slot(s, c));
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
    if (c->def->role == ROLE_WORKER) {
        arg_add(a, "--fd-sock=%d", s->worker_ends[c->index]);
        keep[(*n_keep)++] = s->worker_ends[c->index];
        arg_add(a, "--sup-sock=%d", c->sup_peer);
        keep[(*n_keep)++] = c->sup_peer;
    } else if (c->def->role == ROLE_LISTENER) {
        fd_list(list, sizeof(list), s->listener_ends, s->opt.concurrency, keep, n_keep);
        arg_add(a, "--worker-socks=%s", list);
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

static void spawn(struct sup *s, struct child *c)
{
    struct child_argv argv = {0};
    int keep[IPC_MAX_FDS + 32];
    size_t n_keep = 0;
    if (c->def->role == ROLE_WORKER && open_sup_sock(c) != 0) {
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
    stats_slot_claim(&s->stats, (uint32_t)child_slot(s, c), pid, c->title + 8);
    ev_child_set(&c->exit_watcher, pid, 0);
    ev_child_start(s->loop, &c->exit_watcher);
    log_debug("started %s as pid %d", c->title + 8, (int)pid);
}

static int make_runtime_dir(struct sup *s)
{
    const char *base = getenv("XDG_RUNTIME_DIR");
    if (base == NULL || access(base, W_OK) != 0)
        base = "/tmp";
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
        if (ipc_send_log_fds(c->sup_sock, index, fds, n) != 0)
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

/* The statistics segment, sized from the configuration with headroom: every
 * stat legate will name is known from it (per listener, per cluster), plus room
 * for dynamic ones (per-status-code counters). Two generations' worth of slots,
 * for hot restart. A segment whose supervisor is alive means the base id is in
 * use: refused. One whose supervisor is gone is stale: replaced. */
static int open_stats(struct sup *s)
{
    const struct config *cfg = s->cfg;
    uint32_t objects = (uint32_t)(cfg->n_listeners + cfg->n_clusters);
    uint32_t hosts = 0; /* each has a handful of per-host stats */
    for (size_t i = 0; i < cfg->n_clusters; i++)
        hosts += (uint32_t)cfg->clusters[i].n_endpoints;
    struct stats_layout layout = {
        .max_stats = 1024 + 1024 * objects + 16 * hosts,
        .max_histograms = 64 + 16 * objects,
        /* supervisor, listener, upstream manager, workers; twice, for the two
         * generations that overlap during a hot restart */
        .n_slots = 2 * (3 + s->opt.concurrency),
        .arena_size = 64 * 1024 + 64 * 1024 * (uint64_t)objects + 2048 * (uint64_t)hosts,
    };
    stats_shm_name(s->opt.base_id, s->stats_name, sizeof(s->stats_name));
    struct stats old;
    const char *why = NULL;
    if (stats_attach(&old, s->stats_name, true, &why) == 0) {
        pid_t owner = old.hdr->supervisor_pid;
        bool alive = owner != getpid() && stats_owner_alive(&old);
        stats_detach(&old);
        if (alive) {
            log_error("base id %u is in use by the legate with pid %d (segment %s); choose "
                      "another --base-id",
                      s->opt.base_id, (int)owner, s->stats_name);
            return -1;
        }
        log_info("replacing the stale statistics segment %s of pid %d", s->stats_name, (int)owner);
    }
    if (stats_create(&s->stats, s->stats_name, &layout, s->opt.base_id, 0) != 0) {
        log_error("cannot create the statistics segment %s: %s", s->stats_name, strerror(errno));
        return -1;
    }
    stats_set_slot(&s->stats, 0);
    stats_slot_claim(&s->stats, 0, getpid(), "supervisor");
    stats_gauge_set(&s->stats, stats_register(&s->stats, "server.live", STAT_GAUGE), 1);
    stats_gauge_set(&s->stats, stats_register(&s->stats, "server.concurrency", STAT_GAUGE),
                    s->opt.concurrency);
    stats_gauge_set(&s->stats, stats_register(&s->stats, "server.hot_restart_epoch", STAT_GAUGE),
                    0);
    log_info("statistics in shared memory %s (%u stats, %u slots)", s->stats_name, layout.max_stats,
             layout.n_slots);
    return 0;
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
    if (open_stats(s) != 0) {
        cleanup_runtime_dir(s);
        return 1;
    }

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
            c->sup_sock = c->sup_peer = -1;
        }
    }
    for (size_t i = 0; i < s->n_children; i++)
        spawn(s, &s->children[i]);

    ev_run(s->loop, 0);

    proc_stats_stop(&s->proc_stats, s->loop);
    ipc_close(&s->ctl);
    cleanup_runtime_dir(s);
    atomic_store_explicit(&s->stats.hdr->owner_alive, 0, memory_order_relaxed);
    stats_detach(&s->stats);
    stats_unlink(s->stats_name);
    return s->exit_code;
}

/* What a worker asks of the supervisor (stop, reopen the logs: the admin
 * endpoints' requests), and the worker's side of log rotation: the access-log
 * descriptors the supervisor reopens and sends on this worker's supervisor
 * socket (--sup-sock). A worker never opens a file by path; it switches to
 * what it is given. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "worker/worker.h"

int worker_request_shutdown(struct worker *w)
{
    struct ipc_empty e = {0};
    return ipc_send(&w->ctl, NULL, IPC_SHUTDOWN, &e, sizeof(e));
}

int worker_request_reopen_logs(struct worker *w)
{
    struct ipc_empty e = {0};
    return ipc_send(&w->ctl, NULL, IPC_REOPEN_LOGS, &e, sizeof(e));
}

void al_sink_flush(struct al_sink *s)
{
    /* O_APPEND, and our lines end on a line boundary: no interleaving with
     * other workers within a write. */
    while (buf_len(&s->out) > 0) {
        ssize_t n = write(s->fd, buf_head(&s->out), buf_len(&s->out));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            buf_consume(&s->out, buf_len(&s->out)); /* drop rather than grow forever */
            break;
        }
        buf_consume(&s->out, (size_t)n);
    }
}

/* The k-th access log, counting every listener's in configuration order (the
 * admin listener, last, has none). */
static struct al_sink *sink_at(struct worker *w, uint32_t k)
{
    for (size_t i = 0; i < w->n_listeners; i++) {
        if (k < w->listeners[i].n_sinks)
            return &w->listeners[i].sinks[k];
        k -= (uint32_t)w->listeners[i].n_sinks;
    }
    return NULL;
}

/* What this worker rendered so far goes to the file it was rendered for: flush
 * to the old descriptor, then switch, then let the old one go. */
void worker_switch_log_fds(struct worker *w, const uint32_t *index, const int *fds, size_t n)
{
    size_t switched = 0;
    for (size_t i = 0; i < n; i++) {
        struct al_sink *s = sink_at(w, index[i]);
        if (s == NULL) {
            log_error("the supervisor sent a descriptor for access log %u, which does not exist",
                      index[i]);
            close(fds[i]);
            continue;
        }
        al_sink_flush(s);
        if (s->fd >= 0 && s->fd != fds[i])
            close(s->fd);
        s->fd = fds[i];
        switched++;
    }
    log_debug("switched %zu access logs to reopened files", switched);
}

static void switch_log_fds(void *w, const uint32_t *index, const int *fds, size_t n)
{
    worker_switch_log_fds(w, index, fds, n);
}

static void on_sup_sock(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    /* A malformed message is dropped: dying over it would lose the lines
     * buffered here. */
    int rc = ipc_drain_indexed_fds(io->fd, switch_log_fds, io->data);
    if (rc == 1)
        return;
    if (rc == 0)
        log_warn("the supervisor closed its socket: access logs can no longer be reopened");
    else
        log_error("supervisor socket: %s", strerror(errno));
    ev_io_stop(loop, io);
}

int worker_sup_link_start(struct worker *w)
{
    int fd = w->ctx->sup_sock;
    if (fd < 0) {
        log_error("no supervisor socket (--sup-sock)");
        return -1;
    }
    /* This end is the worker's alone (the supervisor closed its copy after
     * fork), so its flags are the worker's to set. */
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        log_error("supervisor socket: %s", strerror(errno));
        return -1;
    }
    ev_io_init(&w->sup_io, on_sup_sock, fd, EV_READ);
    w->sup_io.data = w;
    ev_io_start(w->loop, &w->sup_io);
    return 0;
}

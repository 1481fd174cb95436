#include "supervisor/eds.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/evtimer.h"
#include "common/ipc.h"
#include "common/log.h"

#define EDS_MAX_BYTES (16 * 1024 * 1024)

struct eds_source {
    size_t cluster;
    const char *path;
    const char *service;
    char dir[PATH_MAX];
    const char *base; /* the file name within dir */
    int wd;
    const char *watched_dir; /* watched_directory.path: any move into it is an update */
    int watched_wd;
    int good_fd; /* the last good content, sealed; -1 before any */
    bool dirty;  /* an event named it: read again when things settle */
    int attempt_id, success_id, rejected_id;
};

static int stat_id(struct stats *st, const char *cluster, const char *what)
{
    char name[512];
    snprintf(name, sizeof(name), "cluster.%s.%s", cluster, what);
    return st != NULL ? stats_register(st, name, STAT_COUNTER) : -1;
}

static void count(struct eds_watch *w, int id)
{
    if (w->stats != NULL && id >= 0)
        stats_inc(w->stats, id, 1);
}

static char *read_all(const char *path, size_t *len, int *err)
{
    /* Non-blocking: a FIFO put there must not hang the supervisor. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    struct stat st;
    char *text = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > EDS_MAX_BYTES) {
        *err = fstat(fd, &st) != 0 ? errno : !S_ISREG(st.st_mode) ? EINVAL : EFBIG;
        close(fd);
        return NULL;
    }
    text = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (text != NULL && got < (size_t)st.st_size) {
        ssize_t n = read(fd, text + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (text == NULL) {
        *err = ENOMEM;
        return NULL;
    }
    text[got] = '\0';
    *len = got;
    return text;
}

static int sealed_copy(const char *text, size_t len)
{
    int fd = memfd_create("legate-eds", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void deliver(struct eds_watch *w, struct eds_source *src)
{
    if (w->manager_sock < 0 || src->good_fd < 0)
        return;
    uint32_t index = (uint32_t)src->cluster;
    if (ipc_send_indexed_fds(w->manager_sock, &index, &src->good_fd, 1) != 0)
        log_error("EDS %s: could not hand the hosts to the upstream manager: %s; it gets "
                  "them when it restarts",
                  src->path, strerror(errno));
}

/* Read, validate, keep and pass on; or refuse, keeping the last good. */
static void load(struct eds_watch *w, struct eds_source *src)
{
    const char *cluster = w->cfg->clusters[src->cluster].name;
    count(w, src->attempt_id);
    size_t len = 0;
    int err = 0;
    char *text = read_all(src->path, &len, &err);
    if (text == NULL) {
        count(w, src->rejected_id);
        log_error("cluster %s: EDS file %s: %s; keeping the %s hosts", cluster, src->path,
                  strerror(err), src->good_fd >= 0 ? "last good" : "(no)");
        return;
    }
    struct cfg_eds eds;
    struct config_errors errs;
    if (config_load_assignment(src->path, text, len, src->service, &eds, &errs) != 0) {
        count(w, src->rejected_id);
        for (size_t i = 0; i < errs.n; i++)
            log_error("%s", errs.msgs[i]);
        log_error("cluster %s: EDS update refused (%zu error%s); keeping the %s hosts", cluster,
                  errs.n, errs.n == 1 ? "" : "s", src->good_fd >= 0 ? "last good" : "(no)");
        config_errors_free(&errs);
        free(text);
        return;
    }
    size_t n = eds.n_endpoints;
    config_eds_free(&eds);
    int fd = sealed_copy(text, len);
    free(text);
    if (fd < 0) {
        count(w, src->rejected_id);
        log_error("cluster %s: EDS update: cannot copy it for the upstream manager: %s", cluster,
                  strerror(errno));
        return;
    }
    if (src->good_fd >= 0)
        close(src->good_fd);
    src->good_fd = fd;
    count(w, src->success_id);
    log_info("cluster %s: EDS update accepted from %s: %zu endpoints", cluster, src->path, n);
    deliver(w, src);
}

static int add_watches(struct eds_watch *w, struct eds_source *src)
{
    const char *cluster = w->cfg->clusters[src->cluster].name;
    if (src->wd < 0) {
        /* The directory: an update renamed into place is a new file. */
        src->wd =
            inotify_add_watch(w->inotify_fd, src->dir,
                              IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM);
        if (src->wd < 0) {
            log_error("cluster %s: cannot watch %s for its EDS file: %s", cluster, src->dir,
                      strerror(errno));
            return -1;
        }
    }
    if (src->watched_dir != NULL && src->watched_wd < 0) {
        /* IN_MASK_ADD: it may be the file's own directory, watched already. */
        src->watched_wd =
            inotify_add_watch(w->inotify_fd, src->watched_dir, IN_MOVED_TO | IN_MASK_ADD);
        if (src->watched_wd < 0) {
            log_error("cluster %s: cannot watch %s (watched_directory): %s", cluster,
                      src->watched_dir, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static void on_settle(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct eds_watch *w = t->data;
    bool retry = false;
    for (size_t i = 0; i < w->n_sources; i++) {
        struct eds_source *src = &w->sources[i];
        if ((src->wd < 0 || (src->watched_dir != NULL && src->watched_wd < 0)) &&
            add_watches(w, src) != 0)
            retry = true; /* its directory is not back yet */
        if (src->dirty) {
            src->dirty = false;
            load(w, src);
        }
    }
    (void)revents;
    if (retry)
        timer_rearm(loop, t, 1.0);
}

static void on_inotify(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct eds_watch *w = io->data;
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool any = false;
    for (;;) {
        ssize_t n = read(io->fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            log_debug("EDS watch: event %#x on watch %d for \"%s\"", (unsigned)ev->mask, ev->wd,
                      ev->len > 0 ? ev->name : "");
            for (size_t i = 0; i < w->n_sources; i++) {
                struct eds_source *src = &w->sources[i];
                bool named = ev->wd == src->wd && ev->len > 0 && strcmp(ev->name, src->base) == 0;
                /* Kubernetes swaps a ConfigMap's ..data link: the file's own
                 * name is never touched, hence watched_directory. */
                bool swapped =
                    ev->wd == src->watched_wd && src->watched_wd >= 0 && (ev->mask & IN_MOVED_TO);
                /* Events were lost: read everything again. The directory
                 * itself went away: watch it again when it is back. */
                bool lost = (ev->mask & IN_Q_OVERFLOW) != 0;
                if ((ev->mask & IN_IGNORED) && (ev->wd == src->wd || ev->wd == src->watched_wd)) {
                    if (ev->wd == src->wd)
                        src->wd = -1;
                    else
                        src->watched_wd = -1;
                    lost = true;
                }
                if (named || swapped || lost) {
                    src->dirty = true;
                    any = true;
                }
            }
            p += sizeof(struct inotify_event) + ev->len;
        }
    }
    /* An editor's write-then-rename, or a write in pieces, is one update. */
    if (any)
        timer_rearm(loop, &w->settle, 0.05);
}

int eds_watch_start(struct eds_watch *w, struct ev_loop *loop, const struct config *cfg,
                    struct stats *stats)
{
    memset(w, 0, sizeof(*w));
    w->loop = loop;
    w->cfg = cfg;
    w->stats = stats;
    w->inotify_fd = -1;
    w->manager_sock = -1;
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_clusters; i++)
        n += cfg->clusters[i].type == CLUSTER_EDS;
    if (n == 0)
        return 0;
    w->sources = calloc(n, sizeof(*w->sources));
    w->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->sources == NULL || w->inotify_fd < 0) {
        log_error("EDS: cannot watch files: %s", strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        const struct cfg_cluster *c = &cfg->clusters[i];
        if (c->type != CLUSTER_EDS)
            continue;
        struct eds_source *src = &w->sources[w->n_sources++];
        src->cluster = i;
        src->path = c->eds_path;
        src->service = c->eds_service_name != NULL ? c->eds_service_name : c->name;
        src->good_fd = -1;
        snprintf(src->dir, sizeof(src->dir), "%s", c->eds_path);
        char *slash = strrchr(src->dir, '/');
        src->base = c->eds_path + (slash - src->dir) + 1;
        *slash = '\0';
        if (src->dir[0] == '\0')
            snprintf(src->dir, sizeof(src->dir), "/");
        src->wd = src->watched_wd = -1;
        src->watched_dir = c->eds_watched_dir;
        if (add_watches(w, src) != 0)
            return -1;
        src->attempt_id = stat_id(stats, c->name, "update_attempt");
        src->success_id = stat_id(stats, c->name, "update_success");
        src->rejected_id = stat_id(stats, c->name, "update_rejected");
        load(w, src);
    }
    ev_io_init(&w->io, on_inotify, w->inotify_fd, EV_READ);
    w->io.data = w;
    ev_io_start(loop, &w->io);
    ev_timer_init(&w->settle, on_settle, 0., 0.);
    w->settle.data = w;
    return 0;
}

void eds_watch_set_manager(struct eds_watch *w, int sock)
{
    w->manager_sock = sock;
    for (size_t i = 0; i < w->n_sources; i++)
        deliver(w, &w->sources[i]);
}

void eds_watch_stop(struct eds_watch *w)
{
    if (w->inotify_fd >= 0) {
        ev_io_stop(w->loop, &w->io);
        ev_timer_stop(w->loop, &w->settle);
        close(w->inotify_fd);
    }
    for (size_t i = 0; i < w->n_sources; i++)
        if (w->sources[i].good_fd >= 0)
            close(w->sources[i].good_fd);
    free(w->sources);
    memset(w, 0, sizeof(*w));
    w->inotify_fd = w->manager_sock = -1;
}

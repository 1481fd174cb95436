/* EDS files, watched by the supervisor: the one process that may open files
 * after start. For each EDS cluster it watches the file's directory with
 * inotify (an update replaces the file by rename, or rewrites it), validates
 * the new content with the configuration's own parser, and hands the
 * upstream manager a sealed memfd holding it; a bad update is refused with
 * its errors in the log and update_rejected counted, and the last good one
 * stays. A respawned manager is handed the last good content again. */
#ifndef LEGATE_SUPERVISOR_EDS_H
#define LEGATE_SUPERVISOR_EDS_H

#include <stddef.h>

#include <ev.h>

#include "common/config.h"
#include "shm/stats.h"

struct eds_source;

struct eds_watch {
    struct ev_loop *loop;
    const struct config *cfg;
    struct stats *stats;
    int inotify_fd;
    ev_io io;
    ev_timer settle; /* coalesces a burst of events into one read */
    struct eds_source *sources;
    size_t n_sources;
    int manager_sock; /* where validated content goes; -1 while there is no manager */
};

/* Watch every EDS cluster's file and read each once. 0, or -1 (logged). */
int eds_watch_start(struct eds_watch *w, struct ev_loop *loop, const struct config *cfg,
                    struct stats *stats);
/* A (new) upstream manager's supervisor socket: it gets every cluster's
 * last good content now and every accepted update from now on. */
void eds_watch_set_manager(struct eds_watch *w, int sock);
void eds_watch_stop(struct eds_watch *w);

#endif

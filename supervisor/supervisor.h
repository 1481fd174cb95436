/* The supervisor: forks the roles, respawns them, stops them. */
#ifndef LEGATE_SUPERVISOR_SUPERVISOR_H
#define LEGATE_SUPERVISOR_SUPERVISOR_H

#include <stdint.h>

#include "common/config.h"
#include "common/sandbox.h"

struct sup_options {
    unsigned concurrency;        /* workers */
    unsigned base_id;            /* names the runtime directory, the segment, the rendezvous */
    uint32_t drain_time_ms;      /* how long in-flight requests may take to finish on stop */
    bool reuseport;              /* accept strategy: SO_REUSEPORT socket per worker (else shared) */
    unsigned restart_epoch;      /* --restart-epoch: 0, or the generation after epoch - 1 */
    uint32_t parent_shutdown_ms; /* after taking over, the old generation is gone by then */
    bool drain_gradual;          /* --drain-strategy gradual: spread idle closes over the drain */
    const char *exe_path;        /* re-executed by SIGUSR2 and SIGHUP */
    char *const *argv;           /* the command line, for that re-exec */
    const char *config_path;     /* -c, validated again by SIGHUP; NULL: the embedded config */
    struct sandbox_opts sandbox; /* what the children drop (--user, --group, --chroot) */
};

/* Serve until stopped. Returns the process exit code. */
int supervisor_run(struct config *cfg, const struct sup_options *opt);

#endif

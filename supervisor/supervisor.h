/* The supervisor: forks the roles, respawns them, stops them. */
#ifndef LEGATE_SUPERVISOR_SUPERVISOR_H
#define LEGATE_SUPERVISOR_SUPERVISOR_H

#include <stdint.h>

#include "common/config.h"

struct sup_options {
    unsigned concurrency;   /* workers */
    unsigned base_id;       /* names the runtime directory (and later the shm segments) */
    uint32_t drain_time_ms; /* how long in-flight requests may take to finish on stop */
    bool reuseport;         /* accept strategy: SO_REUSEPORT socket per worker (else shared) */
};

/* Serve until stopped. Returns the process exit code. */
int supervisor_run(struct config *cfg, const struct sup_options *opt);

#endif

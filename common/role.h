/* What every child process is handed by the supervisor, and the start-up every
 * child shares (title, parent-death signal, event loop, control channel). */
#ifndef LEGATE_COMMON_ROLE_H
#define LEGATE_COMMON_ROLE_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "common/config.h"
#include "common/ipc.h"
#include "common/sandbox.h"
#include "shm/hosts.h"
#include "shm/stats.h"

enum role {
    ROLE_SUPERVISOR,
    ROLE_LISTENER,
    ROLE_WORKER,
    ROLE_UPSTREAM,
};

/* A listening socket the listener is handed instead of binding one: kept by
 * the supervisor from a previous listener, or from the previous generation. */
struct listen_fd {
    uint16_t index; /* listener in configuration order; the admin listener last */
    uint16_t shard; /* reuseport: the worker it is for; else 0 */
    int fd;
};

/* Handed from the supervisor to a child on its command line. */
struct child_ctx {
    const struct config *cfg;
    enum role role;
    int index;                    /* worker index; 0 otherwise */
    unsigned concurrency;         /* number of workers */
    const char *control_endpoint; /* ipc:// endpoint of the supervisor's ROUTER */
    const char *runtime_dir;      /* private 0700 directory */
    unsigned base_id;
    unsigned restart_epoch;  /* this process's generation */
    uint32_t drain_time_ms;  /* --drain-time-s, for a drain started by a signal */
    bool reuseport;          /* --accept-strategy reuseport: a socket per worker */
    struct stats *stats;     /* the statistics segment, attached with this child's slot */
    struct hosts_seg *hosts; /* the host table (shm/hosts.h), or NULL */
    int hosts_bell_fd;       /* eventfd: a worker rings it when a host's consecutive
                                failures reach an outlier threshold; the manager listens */
    int fd_sock;             /* worker: its end of the socketpair to the listener */
    int sup_sock;            /* worker, listener: its end of the socketpair to the supervisor */
    const int *worker_socks; /* listener: the listener's end for each worker slot */
    size_t n_worker_socks;
    struct listen_fd *listen_fds; /* listener: sockets to use instead of binding */
    size_t n_listen_fds;
    const struct sandbox_profile *sandbox; /* this role's row of the role table */
    const struct sandbox_opts *sandbox_opts;
};

/* Common start of every child; fills `ch` (the control channel to the supervisor)
 * and returns the loop, or NULL on failure. `title` is shown in ps. It ends by
 * entering the role's sandbox (common/sandbox.h): what a role must open or
 * bind without privileges comes before; what it binds with its kept
 * capability may come after. */
struct ev_loop *child_start(const struct child_ctx *ctx, const char *title, struct ipc_chan *ch,
                            ipc_handler on_msg, void *data);

/* Tell the supervisor this child is serving. */
void child_ready(struct ipc_chan *ch);

/* For roles that hold no client state (listener, upstream manager): DRAIN or
 * STOP from the supervisor, or SIGTERM, ends the loop; anything else from the
 * supervisor is a protocol violation. */
void child_stop_on_control(struct ipc_chan *ch, const char *peer, size_t peer_len,
                           const struct ipc_msg *msg);
void child_stop_on_sigterm(struct ev_loop *loop, ev_signal *w, int revents);

/* Every child role is one row: adding a role is adding a row (supervisor/roles.c). */
struct role_def {
    enum role role;
    const char *token; /* on the child's command line: "listener", "worker", "upstream" */
    const char *title; /* in ps and logs, after "legate: " */
    int (*run)(const struct child_ctx *ctx);
    struct sandbox_profile sandbox; /* what it keeps: a capability, its system calls */
};
extern const struct role_def role_table[];
extern const size_t role_table_len;
const struct role_def *role_find(const char *token);

int listener_run(const struct child_ctx *ctx);
int worker_run(const struct child_ctx *ctx);
int upstream_manager_run(const struct child_ctx *ctx);

#endif

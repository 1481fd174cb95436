/* The worker role's internals, shared by the files of worker/ only. */
#ifndef LEGATE_WORKER_WORKER_H
#define LEGATE_WORKER_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "common/buf.h"
#include "common/config.h"
#include "common/ipc.h"
#include "common/role.h"
#include "worker/access_log.h"
#include "worker/pool.h"
#include "shm/hosts.h"
#include "shm/stats.h"
#include "upstream/lb.h"
#include "upstream/priority.h"

#define WORKER_READ_SIZE (32 * 1024) /* one read(2) from a socket */
/* Requests a client may pipeline behind the one being answered before legate
 * stops reading its connection (TCP flow control then holds the rest back). */
#define WORKER_PIPELINE_MAX 16
/* A body piece at least this large is written from the upstream's buffer
 * instead of copied into the connection's (worker/http_server.c). */
#define WORKER_DIRECT_WRITE_MIN (8 * 1024)
#define WORKER_HIGH_WATERMARK (256 * 1024) /* stop reading the other side above this */
#define WORKER_LOW_WATERMARK (64 * 1024)   /* resume below this */
#define WORKER_POOL_MAX_IDLE 128           /* idle upstream connections per host */

struct worker;

/* Stat cells (Envoy's names), resolved once at worker start so that the
 * request path only adds to its own cells. A NULL cell (admin listener, or a
 * full segment) is ignored by stats_cell_add. */
struct cluster_stats {
    _Atomic uint64_t *cx_total, *cx_active, *cx_connect_fail, *cx_connect_timeout;
    _Atomic uint64_t *cx_destroy_local, *cx_destroy_remote;
    _Atomic uint64_t *rq_total, *rq_active, *rq_timeout, *rq_xx[5];
    /* upstream_rq_<code>, registered when a code is first seen; a code the
     * segment had no room for points at a cell nobody reads */
    _Atomic uint64_t *rq_code[500];
    _Atomic uint64_t *lb_healthy_panic, *cx_none_healthy;
    struct stats_hist_cells *rq_time;    /* ms, request sent to response complete */
    struct stats_hist_cells *connect_ms; /* ms, connect() to connected */
};

/* Per upstream host, as Envoy's /clusters shows them (not in /stats). */
struct host_stats {
    _Atomic uint64_t *cx_total, *cx_active, *cx_connect_fail;
    _Atomic uint64_t *rq_total, *rq_active, *rq_success, *rq_error, *rq_timeout;
};

struct hcm_stats {
    _Atomic uint64_t *cx_total, *cx_active, *cx_http1_total, *cx_http1_active; /* http.<prefix>. */
    _Atomic uint64_t *cx_destroy, *cx_destroy_local, *cx_destroy_remote;
    _Atomic uint64_t *listener_cx_total, *listener_cx_active; /* listener.<addr>_<port>. */
    _Atomic uint64_t *listener_cx_destroy;
    _Atomic uint64_t *server_connections; /* server.total_connections */
    /* Overload: the limits sum a gauge over every process's slot. */
    int listener_cx_active_id;                     /* listener.<addr>.downstream_cx_active */
    struct stats_same_name listener_cx_active_all; /* its every entry, for the limit */
    _Atomic uint64_t *cx_overflow;                 /* listener.<addr>.downstream_cx_overflow */
    _Atomic uint64_t *global_cx_overflow;     /* listener.<addr>.downstream_global_cx_overflow */
    _Atomic uint64_t *cl_limited, *cl_active; /* connection_limit.<prefix>. (NULL without it) */
    _Atomic uint64_t *rq_total, *rq_active, *rq_xx[5];
    _Atomic uint64_t *rq_timeout, *rq_header_timeout, *rq_idle_timeout, *rq_rx_reset;
    _Atomic uint64_t *no_route, *no_cluster, *rq_direct_response;
    struct stats_hist_cells *rq_time;   /* ms, first byte to stream end */
    struct stats_hist_cells *cx_length; /* ms, accept to close */
};

/* One upstream endpoint as seen by this worker. */
struct cluster_rt;

/* One upstream host as this worker sees it. Made when the host table first
 * shows it; when it leaves the table it is retired: no new requests, its idle
 * connections closed, and freed once its last stream and connection are gone. */
struct host {
    struct cluster_rt *cl;
    const struct cfg_cluster *cluster;
    struct cluster_stats *stats; /* its cluster's */
    struct host_stats hstats;
    int rq_active_id; /* cluster.<c>.host.<addr>.rq_active: summed over workers by LEAST_REQUEST */
    struct stats_same_name rq_active; /* ... over every entry of that name */
    struct hosts_live *live; /* its outcome counters in the host table (outlier detection) */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint32_t slot;      /* its live slot in the host table */
    bool removed;       /* retired: gone from the table */
    uint32_t n_streams; /* streams that picked it and have not ended */
    struct host *next_retired;
    struct pool pool;
    char name[64]; /* "ip:port" for logs and %UPSTREAM_HOST% */
};

/* One priority level as this worker balances over it: the hosts of the level
 * that may be picked (its available ones, or all of them when it panics). */
struct lb_level {
    uint32_t *members; /* slots */
    uint32_t *weights;
    uint64_t *cum; /* running sums of weights, for the random draws */
    size_t n;
    struct lb_rr rr;
};

struct cluster_rt {
    const struct cfg_cluster *cfg;
    struct host **slots;  /* by live slot; NULL where the table has no host */
    uint32_t cap;         /* slots */
    struct host *retired; /* gone from the table, still in use */
    /* What the upstream manager published (shm/hosts.h), as of `gen`; before
     * its first publication, every configured host counts as healthy. */
    struct hosts_cluster *shm;
    uint64_t gen;
    uint32_t bank;            /* the bank of that publication: where its tables are */
    struct prio_plan plan;    /* the published plan, as prio_pick takes it */
    struct hosts_entry *view; /* the bank's hosts (capacity n_hosts) */
    uint32_t *bank_to_host;   /* a bank index's host (cluster_rt.hosts index) */
    uint32_t n_view;
    struct lb_level levels[HOSTS_MAX_LEVELS];
    struct lb_rng rng;
    struct stats *stats_seg; /* where LEAST_REQUEST reads the hosts' active requests */
    size_t n_active_rq;      /* requests in flight to this cluster from this worker */
    int bell_fd;             /* the manager's doorbell (outlier thresholds) */
    struct cluster_stats stats;
};

struct al_sink {
    struct access_log_format *fmt;
    int fd;
    struct buf out;
};

struct listener_rt {
    struct worker *w;
    const struct cfg_listener *cfg; /* NULL for the admin listener */
    int fd;                         /* the shared listening socket */
    int epfd;                       /* EPOLLEXCLUSIVE wrapper, watched by libev */
    ev_io io;
    struct al_sink *sinks;
    size_t n_sinks;
    struct hcm_stats stats;
};

struct conn; /* a downstream connection (http_server.c) */

struct worker {
    struct ev_loop *loop;
    const struct config *cfg;
    const struct child_ctx *ctx;
    struct ipc_chan ctl;
    struct listener_rt *listeners;
    size_t n_listeners;
    struct cluster_rt *clusters;
    size_t n_clusters;
    struct conn *conns; /* every open downstream connection */
    size_t n_conns;
    bool draining;
    int global_cx_id; /* server.total_connections: every worker's downstream connections */
    struct stats_same_name global_cx; /* its every entry, for the global limit */
    ev_timer drain_timer;
    ev_timer gradual_timer; /* --drain-strategy gradual: closes idle connections over time */
    ev_tstamp drain_started;
    double drain_length; /* seconds */
    ev_timer flush_timer;
    ev_timer accept_retry; /* accepting paused after EMFILE and the like */
    ev_tstamp accept_error_logged;
    ev_signal sig_term;
    ev_io sup_io;  /* the supervisor socket: reopened access-log descriptors */
    char date[40]; /* current IMF-fixdate for Date headers */
    time_t date_sec;
};

const char *worker_date(struct worker *w);
void worker_conn_closed(struct worker *w); /* maybe finish a drain */
/* Take the host table's latest publication, if it moved. */
void worker_cluster_refresh(struct worker *w, struct cluster_rt *cl);
/* A host for a request to the cluster: `hash` (NULL: none) feeds RING_HASH
 * and MAGLEV and picks the priority level. NULL: no healthy upstream. */
struct host *worker_pick_host(struct worker *w, size_t cluster_index, const uint64_t *hash);
/* What came of a request to `h`, for outlier detection: a response status,
 * or a failure on legate's side (connect failure, reset, timeout). */
void worker_host_response(struct cluster_rt *cl, struct host *h, int status);
void worker_host_local_failure(struct cluster_rt *cl, struct host *h);
/* A stream that picked `h` ended, or one of its connections closed: free a
 * retired host nobody uses any more. */
void worker_host_maybe_free(struct host *h);
/* upstream.c: close every idle pooled connection to `h` (a host leaving the table). */
void upstream_close_idle_of(struct host *h);
/* The cell of upstream_rq_<status> for a cluster (registered on first use). */
_Atomic uint64_t *worker_rq_code_cell(struct worker *w, struct cluster_stats *st,
                                      const char *cluster, int status);
/* Open upstream connections (active and idle) from this worker to a cluster. */
size_t worker_cluster_connections(const struct cluster_rt *cl);

/* http_server.c */
void http_server_accept(struct worker *w, struct listener_rt *l, int fd,
                        const struct sockaddr_storage *peer);
/* Draining: ask every connection to close when its current request ends;
 * close the idle ones now if `close_idle`. */
void http_server_drain(struct worker *w, bool close_idle);
/* Close the idle connections whose place in [0, 1) (a hash of the connection)
 * is below `fraction`; returns how many were closed. */
size_t http_server_close_idle(struct worker *w, double fraction);
/* The drain deadline passed: close everything. */
void http_server_close_all(struct worker *w);

/* admin.c: set only by a test build's main (legate-testhooks): attempt a
 * system call outside the worker's seccomp profile ("execve" or "open"). */
extern void (*worker_test_forbidden_call)(const char *which);

/* sup_link.c: requests to the supervisor, for the admin endpoints. Each
 * returns 0 if the message was sent. Stop: the supervisor drains and stops
 * every process, as on SIGTERM. Reopen: the supervisor reopens every access
 * log and sends the descriptors back to every worker, this one included. */
int worker_request_shutdown(struct worker *w);
int worker_request_reopen_logs(struct worker *w);
/* sup_link.c: access-log descriptors from the supervisor (log rotation). */
int worker_sup_link_start(struct worker *w);
void al_sink_flush(struct al_sink *s); /* write out what is buffered; drop it on error */
/* Flush each named sink (index: every listener's access logs in configuration
 * order) to its old descriptor, close that, and write to fds[i] from now on. */
void worker_switch_log_fds(struct worker *w, const uint32_t *index, const int *fds, size_t n);

/* admin.c: answer an admin request; fills status and body. */
void admin_handle(struct worker *w, const char *method, const char *path, int *status,
                  struct buf *body, const char **content_type);

#endif

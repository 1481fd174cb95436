/* The host table: what the upstream manager knows about every cluster's hosts,
 * published in shared memory for the workers to balance over without asking.
 *
 * One memfd per generation of legate, made by the supervisor (sized from the
 * configuration) and passed to every child. Per cluster:
 *   - two banks, each a full picture: the hosts (address, weight, priority,
 *     health flags), the priority plan (load per level, panic per level) and,
 *     for RING_HASH and MAGLEV, one table per priority level. The manager
 *     writes the bank no one reads, then flips `bank` and bumps `gen`; a reader
 *     that sees `gen` change under it reads again (a seqlock without a lock:
 *     a process killed mid-write wedges no one);
 *   - per host, live counters the workers update with atomics (the outcomes
 *     outlier detection needs), indexed by a stable `live` slot that follows a
 *     host across banks.
 * Only the upstream manager writes banks; workers write only live counters. */
#ifndef LEGATE_SHM_HOSTS_H
#define LEGATE_SHM_HOSTS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/config.h"

#define HOSTS_MAX_LEVELS 16 /* priorities 0..15 */
/* Hosts a discovered (DNS, EDS) cluster can hold at once; a static one holds
 * exactly its endpoints. */
#define HOSTS_DYNAMIC_CAP 256

/* Envoy's health flags, as /clusters prints them. */
enum host_flag {
    HOST_FAILED_ACTIVE_HC = 1u << 0,        /* /failed_active_hc */
    HOST_FAILED_OUTLIER_CHECK = 1u << 1,    /* /failed_outlier_check */
    HOST_FAILED_EDS_HEALTH = 1u << 2,       /* /failed_eds_health */
    HOST_DEGRADED_EDS_HEALTH = 1u << 3,     /* /degraded_eds_health (still picked) */
    HOST_PENDING_DYNAMIC_REMOVAL = 1u << 4, /* /pending_dynamic_removal */
};
/* A host with any of these is not picked (unless its level panics). */
#define HOST_UNAVAILABLE                                                                           \
    (HOST_FAILED_ACTIVE_HC | HOST_FAILED_OUTLIER_CHECK | HOST_FAILED_EDS_HEALTH)

/* An address as text: `ip` gets the bare IP (if not NULL), `name` "ip:port"
 * ("[ip]:port" for IPv6; if not NULL); returns the port. A host's name, a
 * client's for x-forwarded-for and logs, /clusters' JSON. */
uint16_t hosts_addr_format(const struct sockaddr_storage *ss, char *ip, size_t ip_cap, char *name,
                           size_t name_cap);

/* "/failed_active_hc/failed_outlier_check", or "healthy" for none. */
void host_flags_text(uint32_t flags, char *out, size_t cap);

struct hosts_entry {
    uint32_t live; /* the host's live-counter slot */
    uint32_t weight;
    uint32_t priority;
    uint32_t flags;
    struct sockaddr_storage addr;
    uint32_t addrlen;
    char name[64]; /* "ip:port" ("[ip]:port" for IPv6) */
};

/* What workers record per host; the manager reads and resets the consecutive ones. */
struct hosts_live {
    _Atomic uint32_t consecutive_5xx;
    _Atomic uint32_t consecutive_gateway;
    _Atomic uint32_t consecutive_local;
    uint32_t pad;
    _Atomic uint64_t total; /* outcomes counted for the success rate (external origin) */
    _Atomic uint64_t success;
    _Atomic uint64_t local_total; /* local origin (connect), when split */
    _Atomic uint64_t local_success;
    char pad2[16];
} __attribute__((aligned(64)));

struct hosts_plan {
    uint32_t n_levels;
    uint32_t load[HOSTS_MAX_LEVELS]; /* percent of requests per level */
    uint8_t panic[HOSTS_MAX_LEVELS]; /* this level balances over all its hosts */
    uint8_t none_available;          /* 503 "no healthy upstream" */
    uint8_t any_panic;               /* for lb_healthy_panic */
};

/* A consistent copy of one bank's hosts and plan. */
struct hosts_view {
    uint64_t gen;
    uint32_t bank; /* which bank it came from: its tables are read there */
    uint32_t n_hosts;
    struct hosts_plan plan;
    struct hosts_entry *hosts; /* n_hosts, caller's memory (cap = hosts_capacity) */
};

struct hosts_cluster; /* in the segment */

struct hosts_seg {
    uint8_t *base;
    size_t size;
    uint32_t n_clusters;
};

/* Supervisor: a memfd sized and laid out for `cfg` (every cluster's capacity
 * and table space). -1 with errno on failure. */
int hosts_segment_create(const struct config *cfg);
/* Everyone: map it. 0, or -1 with a message in err. */
int hosts_attach(struct hosts_seg *s, int fd, char *err, size_t cap);
void hosts_detach(struct hosts_seg *s);

struct hosts_cluster *hosts_cluster(const struct hosts_seg *s, size_t index);
uint32_t hosts_capacity(const struct hosts_cluster *c);
uint64_t hosts_generation(const struct hosts_cluster *c); /* 0: nothing published yet */
struct hosts_live *hosts_live(struct hosts_cluster *c, uint32_t live);
/* A worker routed a request to the cluster (once is enough: it stays set);
 * active health checks run at no_traffic_interval until then, as Envoy's. */
void hosts_mark_traffic(struct hosts_cluster *c);
bool hosts_had_traffic(const struct hosts_cluster *c);

/* Reader: copy the current bank (retries while the manager flips). */
void hosts_read(const struct hosts_cluster *c, struct hosts_view *v);
/* Reader: the bank index of the host a hash picks at `level` in the table of
 * bank `bank` (the view's), published with generation `gen`. HOSTS_PICK_NONE: empty table;
 * HOSTS_PICK_STALE: `gen` is no longer current (read again, then pick). */
#define HOSTS_PICK_NONE UINT32_MAX
#define HOSTS_PICK_STALE (UINT32_MAX - 1)
uint32_t hosts_table_pick(const struct hosts_cluster *c, uint64_t gen, uint32_t bank,
                          uint32_t level, uint64_t hash);

/* Writer (the upstream manager only): fill the hidden bank, then publish it. */
struct hosts_entry *hosts_write_begin(struct hosts_cluster *c);
/* The hashing table of `level` in the hidden bank: a ring (sorted hashes and
 * the bank index owning each) or a Maglev table (bank indexes). Entries beyond
 * the reserved space are cut (the call returns how many were kept). */
size_t hosts_write_ring(struct hosts_cluster *c, uint32_t level, const uint64_t *hashes,
                        const uint32_t *hosts, size_t n);
size_t hosts_write_maglev(struct hosts_cluster *c, uint32_t level, const uint32_t *table, size_t n);
void hosts_write_publish(struct hosts_cluster *c, uint32_t n_hosts, const struct hosts_plan *plan);
/* The reserved table space per level, in entries. */
size_t hosts_table_capacity(const struct hosts_cluster *c);

#endif

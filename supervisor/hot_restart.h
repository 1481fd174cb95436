/* Hot restart: the rendezvous between two generations of supervisors.
 *
 * Every supervisor binds an abstract SOCK_SEQPACKET socket named from its base
 * id and its epoch; a new generation (epoch N+1) connects to epoch N's. Over
 * that one connection the new generation says hello (its layout version), is
 * welcomed (or refused, with a reason), asks for the listening sockets
 * (SCM_RIGHTS), and once it serves tells the old one to drain. An abstract name
 * vanishes with its process, so a dead instance never leaves a stale socket;
 * SO_PEERCRED stands in for file permissions: only the same user (or root)
 * is answered.
 *
 * The protocol has its own magic, independent of the statistics layout, so
 * that generations with different layouts can still talk. */
#ifndef LEGATE_SUPERVISOR_HOT_RESTART_H
#define LEGATE_SUPERVISOR_HOT_RESTART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define HR_MAGIC 0x4c474852u /* "LGHR": bump when a message changes */
#define HR_SOCKS_PER_MSG 250 /* descriptors per message (IPC_MAX_FDS) */
#define HR_COUNTERS_PER_MSG 48
#define HR_NAME_MAX 240

enum hr_type {
    HR_HELLO = 1,   /* new -> old: who I am */
    HR_WELCOME,     /* old -> new: who I am; go on */
    HR_REFUSED,     /* old -> new: not now, and why */
    HR_GET_SOCKETS, /* new -> old */
    HR_SOCKETS,     /* old -> new: keys, descriptors attached; `more` until the last */
    HR_DRAIN,       /* new -> old: I serve; drain and go */
    HR_TERMINATE,   /* new -> old: the parent shutdown time is up: exit now */
    HR_COUNTERS,    /* old -> new: counter totals (layouts differ); `final` on the last batch */
    HR_TYPE_MAX,
};

/* A listening socket's identity across generations: its address and the
 * worker shard (reuseport), not its place in either configuration. */
struct hr_sock_key {
    uint16_t family;
    uint16_t port;
    uint32_t shard;
    uint8_t addr[16];
};

struct hr_counter {
    uint64_t value; /* the counter's total in the old generation's segment */
    uint32_t flags; /* STAT_FLAG_* */
    uint32_t unused;
    char name[HR_NAME_MAX]; /* NUL-terminated */
};

struct hr_msg {
    uint32_t magic;
    uint32_t type;
    union {
        struct {
            uint32_t layout_version;
            uint32_t epoch;
            uint32_t slots_needed; /* supervisor + children */
            int32_t pid;
        } hello;
        struct {
            uint32_t layout_version;
            uint32_t epoch;
            uint32_t generation;
            uint32_t slot_base; /* the old generation's slots: [base, base + count) */
            uint32_t slot_count;
            int32_t pid;
        } welcome;
        struct {
            char reason[256];
        } refused;
        struct {
            uint32_t n;
            uint32_t more;
            struct hr_sock_key keys[HR_SOCKS_PER_MSG];
        } sockets;
        struct {
            uint32_t drain_ms;
            uint32_t gradual;
            uint32_t carry_counters; /* the new generation has a segment of its own */
        } drain;
        struct {
            uint32_t n;
            uint32_t final;
            struct hr_counter c[HR_COUNTERS_PER_MSG];
        } counters;
    } u;
};

/* Bind this generation's rendezvous socket (non-blocking, listening). -1 with
 * errno; EADDRINUSE means this base id and epoch are running already. */
int hr_listen(unsigned base_id, unsigned epoch);
/* Connect to the generation at `epoch`: a blocking socket, or -1 with errno
 * (ECONNREFUSED: nobody there). */
int hr_connect(unsigned base_id, unsigned epoch);
/* Whether the peer of a connected socket runs as our user, or as root. */
bool hr_peer_trusted(int fd, pid_t *pid);

/* One message each way. hr_send sends only the used part of the payload.
 * hr_recv returns 1 with a message (and its descriptors), 0 at EOF, -1 with
 * errno (EAGAIN; EPROTO with *why for a malformed message, whose descriptors
 * are closed). */
int hr_send(int fd, const struct hr_msg *m, const int *fds, size_t n_fds);
int hr_recv(int fd, struct hr_msg *m, int *fds, size_t max_fds, size_t *n_fds, const char **why);
/* hr_recv on a blocking socket, waiting at most timeout_ms. */
int hr_recv_wait(int fd, struct hr_msg *m, int *fds, size_t max_fds, size_t *n_fds,
                 const char **why, int timeout_ms);

/* Keys: from a bound socket, or from a configured address. */
int hr_key_from_fd(int fd, uint32_t shard, struct hr_sock_key *k);
void hr_key_from_addr(const struct sockaddr_storage *ss, uint32_t shard, struct hr_sock_key *k);
bool hr_key_equal(const struct hr_sock_key *a, const struct hr_sock_key *b);

#endif

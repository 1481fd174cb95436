/* Control messages between processes (ZeroMQ) and descriptor passing (Unix sockets).
 *
 * The two transports are never mixed: ZeroMQ carries small typed messages,
 * SOCK_SEQPACKET socketpairs carry descriptors with SCM_RIGHTS. */
#ifndef LEGATE_COMMON_IPC_H
#define LEGATE_COMMON_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ev.h>

/* The message catalogue: name, number, payload struct. Every message is a fixed
 * header followed by exactly sizeof(payload) bytes; anything else is rejected. */
#define IPC_MESSAGES(X)                                                                            \
    X(HELLO, 1, struct ipc_hello)       /* child -> supervisor: I exist; and the answer */         \
    X(READY, 2, struct ipc_empty)       /* child -> supervisor: serving */                         \
    X(DRAIN, 3, struct ipc_drain)       /* supervisor -> child: stop accepting, finish, exit */    \
    X(STOP, 4, struct ipc_empty)        /* supervisor -> child: exit now */                        \
    X(SHUTDOWN, 5, struct ipc_empty)    /* child -> supervisor: stop as on SIGTERM (drain) */      \
    X(REOPEN_LOGS, 6, struct ipc_empty) /* child -> supervisor: reopen the access logs */

struct ipc_empty {
    uint8_t unused; /* C forbids empty structs */
};

struct ipc_hello {
    int32_t role;  /* enum role of the sender */
    int32_t index; /* worker index, 0 for single-instance roles */
    int32_t pid;   /* the sender's pid */
};

/* Drain flags. A stop closes idle keep-alive connections at once: nobody will
 * serve the client's next request. A hot restart keeps them (closing one races
 * with the client's next request) until the deadline, or, gradual, closes them
 * spread over the drain time, as the next generation takes their clients. */
#define IPC_DRAIN_KEEP_IDLE 1u
#define IPC_DRAIN_GRADUAL 2u

struct ipc_drain {
    uint32_t deadline_ms; /* close whatever is left this long after receipt */
    uint32_t flags;       /* IPC_DRAIN_* */
};

enum ipc_type {
#define IPC_ENUM(name, num, type) IPC_##name = num,
    IPC_MESSAGES(IPC_ENUM)
#undef IPC_ENUM
};

#define IPC_MAGIC 0x4c474332u /* "LGC2": bump when a payload changes */

struct ipc_header {
    uint32_t magic;
    uint16_t type;
    uint16_t len; /* payload bytes */
    int32_t pid;  /* sender */
};

/* A decoded message: header plus a payload buffer large enough for any type. */
struct ipc_msg {
    struct ipc_header hdr;
    union {
#define IPC_UNION(name, num, type) type name;
        IPC_MESSAGES(IPC_UNION)
#undef IPC_UNION
    } u;
};

/* Name of a message type for logs ("HELLO"), or "?". */
const char *ipc_type_name(uint16_t type);

/* Encode/decode one message. decode returns 0, or -1 with a reason when the
 * frame is malformed (bad magic, unknown type, wrong size for its type). */
size_t ipc_encode(uint16_t type, const void *payload, size_t len, void *out, size_t cap);
int ipc_decode(const void *frame, size_t len, struct ipc_msg *msg, const char **why);

struct ipc_chan;
/* peer/peer_len: the sender's identity (ROUTER side only; NULL for a DEALER). */
typedef void (*ipc_handler)(struct ipc_chan *ch, const char *peer, size_t peer_len,
                            const struct ipc_msg *msg);

struct ipc_chan {
    void *zctx;  /* created in this process, never inherited */
    void *zsock; /* ROUTER (supervisor) or DEALER (children) */
    bool is_router;
    struct ev_loop *loop;
    ev_io io; /* watches ZMQ_FD (edge-triggered) */
    ipc_handler on_msg;
    void *data; /* for the owner */
};

/* The supervisor's end: bind a ROUTER at `endpoint` (ipc://...). */
int ipc_open_router(struct ipc_chan *ch, struct ev_loop *loop, const char *endpoint,
                    ipc_handler on_msg, void *data);
/* A child's end: connect a DEALER with `identity` (e.g. "worker-1"). */
int ipc_open_dealer(struct ipc_chan *ch, struct ev_loop *loop, const char *endpoint,
                    const char *identity, ipc_handler on_msg, void *data);
/* Send one message; peer is the ROUTER's destination identity (NULL on a DEALER). */
int ipc_send(struct ipc_chan *ch, const char *peer, uint16_t type, const void *payload, size_t len);
void ipc_close(struct ipc_chan *ch);
/* A DEALER's blocking receive of one message of `type`, before its loop runs
 * (a child waiting for the supervisor's answer to HELLO): 0, or -1 on a
 * timeout or anything else. */
int ipc_wait_for(struct ipc_chan *ch, uint16_t type, int timeout_ms, struct ipc_msg *msg);

/* Descriptor passing over a SOCK_SEQPACKET Unix socket: one datagram carries
 * `len` bytes of data and up to IPC_MAX_FDS descriptors. */
#define IPC_MAX_FDS 250
int ipc_send_fds(int sock, const void *data, size_t len, const int *fds, size_t n_fds);
/* Returns the data length received (0 on EOF), or -1 (errno EMSGSIZE: the
 * datagram was longer than cap). Received descriptors are stored in fds (at
 * most max_fds; extras are closed) and counted in *n_fds. */
ssize_t ipc_recv_fds(int sock, void *data, size_t cap, int *fds, size_t max_fds, size_t *n_fds);

/* Descriptors, each with an index, supervisor -> child on the child's
 * supervisor socket (--sup-sock), n by SCM_RIGHTS: reopened access logs to a
 * worker (index[i]: the access log, counting every listener's in
 * configuration order, as --access-log-fds), and an EDS file's validated
 * content (a sealed memfd) to the upstream manager (index[i]: the cluster).
 * At most IPC_MAX_FDS per message. Only the used part of index[] is sent. */
#define IPC_INDEXED_FDS_MAGIC 0x4c474c46u /* "LGLF" */
struct ipc_indexed_fds {
    uint32_t magic;
    uint32_t n;
    uint32_t index[IPC_MAX_FDS];
};
/* Send one message; -1 (EINVAL) if n is 0 or more than IPC_MAX_FDS. */
int ipc_send_indexed_fds(int sock, const uint32_t *index, const int *fds, size_t n);
/* Receive one message into index[] and fds[] (room for IPC_MAX_FDS each).
 * Returns 1 with *n set; 0 at EOF; -1 with errno (EAGAIN: nothing waiting),
 * or with errno EPROTO and *why for a malformed message, whose descriptors
 * are closed. */
int ipc_recv_indexed_fds(int sock, uint32_t *index, int *fds, size_t *n, const char **why);
/* Every message waiting on a non-blocking `sock`, each handed to `deliver`
 * (which owns the descriptors); a malformed one is dropped with a log line.
 * Returns 1 when nothing more waits, 0 at EOF, -1 on another error (errno). */
typedef void (*ipc_fds_fn)(void *ctx, const uint32_t *index, const int *fds, size_t n);
int ipc_drain_indexed_fds(int sock, ipc_fds_fn deliver, void *ctx);

#endif

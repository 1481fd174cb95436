/* The socket hand-off protocol between the listener and a worker, over their
 * SOCK_SEQPACKET socketpair. The worker asks; the listener answers with every
 * listening socket, in configuration order, the admin socket last. */
#ifndef LEGATE_LISTENER_HANDOFF_H
#define LEGATE_LISTENER_HANDOFF_H

#include <stdint.h>

#define HANDOFF_MAGIC 0x4c474831u /* "LGH1" */

struct handoff_request {
    uint32_t magic;
    uint32_t nonce; /* echoed, so a respawned worker can drop answers meant for its predecessor */
};

struct handoff_reply {
    uint32_t magic;
    uint32_t nonce;
    uint32_t n_sockets; /* descriptors attached */
    uint32_t has_admin; /* the last one is the admin listener */
};

/* The listener's sockets, listener -> supervisor on the listener's supervisor
 * socket, once all are bound (or inherited): the supervisor keeps a copy of
 * each, so that a respawned listener and the next generation of a hot restart
 * get the very same sockets, accept queues included, instead of binding anew.
 * ids[i] names the i-th descriptor: `index` counts the configuration's
 * listeners, the admin listener last; `shard` is the worker whose SO_REUSEPORT
 * socket it is (0 without reuseport). Only the used part of ids[] is sent. */
#define LISTEN_SOCKS_MAGIC 0x4c474c53u /* "LGLS" */
#define LISTEN_SOCKS_MAX 250           /* IPC_MAX_FDS: one message at most */

struct listen_sock_id {
    uint16_t index;
    uint16_t shard;
};

struct listen_socks_msg {
    uint32_t magic;
    uint32_t n;
    struct listen_sock_id ids[LISTEN_SOCKS_MAX];
};

#endif

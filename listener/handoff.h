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

#endif

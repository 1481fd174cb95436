#include "common/ipc.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <zmq.h>

#include "common/log.h"

static const struct {
    uint16_t type;
    const char *name;
    size_t size;
} catalogue[] = {
#define IPC_ROW(name, num, type) {num, #name, sizeof(type)},
    IPC_MESSAGES(IPC_ROW)
#undef IPC_ROW
};

static int catalogue_find(uint16_t type)
{
    for (size_t i = 0; i < sizeof(catalogue) / sizeof(catalogue[0]); i++)
        if (catalogue[i].type == type)
            return (int)i;
    return -1;
}

const char *ipc_type_name(uint16_t type)
{
    int i = catalogue_find(type);
    return i < 0 ? "?" : catalogue[i].name;
}

size_t ipc_encode(uint16_t type, const void *payload, size_t len, void *out, size_t cap)
{
    int i = catalogue_find(type);
    if (i < 0 || len != catalogue[i].size || cap < sizeof(struct ipc_header) + len)
        return 0;
    struct ipc_header h = {
        .magic = IPC_MAGIC, .type = type, .len = (uint16_t)len, .pid = (int32_t)getpid()};
    memcpy(out, &h, sizeof(h));
    memcpy((char *)out + sizeof(h), payload, len);
    return sizeof(h) + len;
}

int ipc_decode(const void *frame, size_t len, struct ipc_msg *msg, const char **why)
{
    if (len < sizeof(struct ipc_header)) {
        *why = "frame shorter than the header";
        return -1;
    }
    memcpy(&msg->hdr, frame, sizeof(msg->hdr));
    if (msg->hdr.magic != IPC_MAGIC) {
        *why = "bad magic (a peer of another version?)";
        return -1;
    }
    int i = catalogue_find(msg->hdr.type);
    if (i < 0) {
        *why = "unknown message type";
        return -1;
    }
    /* The size check comes before the copy: a payload must be exactly its type's. */
    if (msg->hdr.len != catalogue[i].size || len != sizeof(struct ipc_header) + msg->hdr.len) {
        *why = "payload size does not match its type";
        return -1;
    }
    memcpy(&msg->u, (const char *)frame + sizeof(struct ipc_header), msg->hdr.len);
    return 0;
}

/* ZMQ_FD is edge-triggered: it signals only that ZMQ_EVENTS may have changed.
 * So on every wake-up, receive until ZMQ_EVENTS no longer reports POLLIN. */
static void ipc_drain(struct ipc_chan *ch)
{
    for (;;) {
        int events = 0;
        size_t sz = sizeof(events);
        if (zmq_getsockopt(ch->zsock, ZMQ_EVENTS, &events, &sz) != 0 || !(events & ZMQ_POLLIN))
            return;
        char peer[64];
        size_t peer_len = 0;
        if (ch->is_router) {
            int n = zmq_recv(ch->zsock, peer, sizeof(peer) - 1, ZMQ_DONTWAIT);
            if (n < 0)
                return;
            peer_len = (size_t)n < sizeof(peer) - 1 ? (size_t)n : sizeof(peer) - 1;
            peer[peer_len] = '\0';
        }
        char frame[256];
        int n = zmq_recv(ch->zsock, frame, sizeof(frame), ZMQ_DONTWAIT);
        if (n < 0)
            return;
        /* Drop any further frames of a multi-part message we did not expect. */
        int more = 0;
        sz = sizeof(more);
        while (zmq_getsockopt(ch->zsock, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
            char skip[64];
            if (zmq_recv(ch->zsock, skip, sizeof(skip), ZMQ_DONTWAIT) < 0)
                break;
        }
        struct ipc_msg msg;
        const char *why = NULL;
        if ((size_t)n > sizeof(frame) || ipc_decode(frame, (size_t)n, &msg, &why) != 0) {
            log_error("control channel: malformed message from %s: %s",
                      peer_len ? peer : "supervisor", why ? why : "frame too large");
            if (!ch->is_router)
                log_fatal("protocol violation from the supervisor; exiting");
            continue;
        }
        ch->on_msg(ch, ch->is_router ? peer : NULL, peer_len, &msg);
    }
}

static void ipc_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    ipc_drain(w->data);
}

static int ipc_watch(struct ipc_chan *ch, struct ev_loop *loop, ipc_handler on_msg, void *data)
{
    int fd;
    size_t sz = sizeof(fd);
    if (zmq_getsockopt(ch->zsock, ZMQ_FD, &fd, &sz) != 0)
        return -1;
    ch->loop = loop;
    ch->on_msg = on_msg;
    ch->data = data;
    ev_io_init(&ch->io, ipc_on_io, fd, EV_READ);
    ch->io.data = ch;
    ev_io_start(loop, &ch->io);
    /* Messages may already be queued: the edge may have passed before we watched. */
    ev_feed_event(loop, &ch->io, EV_READ);
    return 0;
}

static int ipc_open(struct ipc_chan *ch, int type)
{
    memset(ch, 0, sizeof(*ch));
    ch->zctx = zmq_ctx_new();
    if (ch->zctx == NULL)
        return -1;
    zmq_ctx_set(ch->zctx, ZMQ_IO_THREADS, 1);
    ch->zsock = zmq_socket(ch->zctx, type);
    if (ch->zsock == NULL)
        return -1;
    int linger = 0;
    zmq_setsockopt(ch->zsock, ZMQ_LINGER, &linger, sizeof(linger));
    return 0;
}

int ipc_open_router(struct ipc_chan *ch, struct ev_loop *loop, const char *endpoint,
                    ipc_handler on_msg, void *data)
{
    if (ipc_open(ch, ZMQ_ROUTER) != 0)
        return -1;
    ch->is_router = true;
    /* A message to a peer that is not connected fails instead of vanishing. */
    int mandatory = 1;
    zmq_setsockopt(ch->zsock, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof(mandatory));
    /* A respawned child reuses its identity: let the new connection take it over. */
    int handover = 1;
    zmq_setsockopt(ch->zsock, ZMQ_ROUTER_HANDOVER, &handover, sizeof(handover));
    if (zmq_bind(ch->zsock, endpoint) != 0) {
        log_error("control channel: bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    return ipc_watch(ch, loop, on_msg, data);
}

int ipc_open_dealer(struct ipc_chan *ch, struct ev_loop *loop, const char *endpoint,
                    const char *identity, ipc_handler on_msg, void *data)
{
    if (ipc_open(ch, ZMQ_DEALER) != 0)
        return -1;
    zmq_setsockopt(ch->zsock, ZMQ_ROUTING_ID, identity, strlen(identity));
    if (zmq_connect(ch->zsock, endpoint) != 0) {
        log_error("control channel: connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    return ipc_watch(ch, loop, on_msg, data);
}

int ipc_wait_for(struct ipc_chan *ch, uint16_t type, int timeout_ms, struct ipc_msg *msg)
{
    zmq_pollitem_t item = {.socket = ch->zsock, .events = ZMQ_POLLIN};
    int rc = zmq_poll(&item, 1, timeout_ms);
    if (rc <= 0)
        return -1;
    char frame[256];
    int n = zmq_recv(ch->zsock, frame, sizeof(frame), ZMQ_DONTWAIT);
    const char *why = NULL;
    if (n < 0 || (size_t)n > sizeof(frame) || ipc_decode(frame, (size_t)n, msg, &why) != 0 ||
        msg->hdr.type != type)
        return -1;
    /* The edge for what follows may have passed while we read here. */
    if (ch->loop != NULL)
        ev_feed_event(ch->loop, &ch->io, EV_READ);
    return 0;
}

int ipc_send(struct ipc_chan *ch, const char *peer, uint16_t type, const void *payload, size_t len)
{
    char frame[256];
    size_t n = ipc_encode(type, payload, len, frame, sizeof(frame));
    if (n == 0)
        return -1;
    if (peer != NULL && zmq_send(ch->zsock, peer, strlen(peer), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    int rc = zmq_send(ch->zsock, frame, n, ZMQ_DONTWAIT) < 0 ? -1 : 0;
    /* Sending can consume the fd's edge for incoming messages: look again soon. */
    ev_feed_event(ch->loop, &ch->io, EV_READ);
    return rc;
}

void ipc_close(struct ipc_chan *ch)
{
    if (ch->loop != NULL)
        ev_io_stop(ch->loop, &ch->io);
    if (ch->zsock != NULL)
        zmq_close(ch->zsock);
    if (ch->zctx != NULL)
        zmq_ctx_term(ch->zctx);
    ch->zsock = ch->zctx = NULL;
}

int ipc_send_fds(int sock, const void *data, size_t len, const int *fds, size_t n_fds)
{
    if (n_fds > IPC_MAX_FDS)
        return -1;
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    union {
        char buf[CMSG_SPACE(sizeof(int) * IPC_MAX_FDS)];
        struct cmsghdr align;
    } ctrl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n_fds > 0) {
        memset(&ctrl, 0, sizeof(ctrl));
        mh.msg_control = ctrl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * n_fds);
    }
    ssize_t n;
    do
        n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)len ? 0 : -1;
}

ssize_t ipc_recv_fds(int sock, void *data, size_t cap, int *fds, size_t max_fds, size_t *n_fds)
{
    struct iovec iov = {.iov_base = data, .iov_len = cap};
    union {
        char buf[CMSG_SPACE(sizeof(int) * IPC_MAX_FDS)];
        struct cmsghdr align;
    } ctrl;
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctrl.buf,
                        .msg_controllen = sizeof(ctrl.buf)};
    ssize_t n;
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    *n_fds = 0;
    if (n < 0)
        return -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *in = (int *)CMSG_DATA(cm);
        for (size_t i = 0; i < count; i++) {
            if (*n_fds < max_fds)
                fds[(*n_fds)++] = in[i];
            else
                close(in[i]);
        }
    }
    if (mh.msg_flags & MSG_TRUNC) {
        errno = EMSGSIZE;
        return -1;
    }
    return n;
}

int ipc_send_indexed_fds(int sock, const uint32_t *index, const int *fds, size_t n)
{
    if (n == 0 || n > IPC_MAX_FDS) {
        errno = EINVAL;
        return -1;
    }
    struct ipc_indexed_fds m = {.magic = IPC_INDEXED_FDS_MAGIC, .n = (uint32_t)n};
    memcpy(m.index, index, n * sizeof(m.index[0]));
    return ipc_send_fds(sock, &m, offsetof(struct ipc_indexed_fds, index) + n * sizeof(m.index[0]),
                        fds, n);
}

static int reject_log_fds(int *fds, size_t n_fds, const char **why, const char *reason)
{
    for (size_t i = 0; i < n_fds; i++)
        close(fds[i]);
    *why = reason;
    errno = EPROTO;
    return -1;
}

int ipc_recv_indexed_fds(int sock, uint32_t *index, int *fds, size_t *n, const char **why)
{
    struct ipc_indexed_fds m;
    size_t n_fds = 0;
    *n = 0;
    *why = NULL;
    ssize_t len = ipc_recv_fds(sock, &m, sizeof(m), fds, IPC_MAX_FDS, &n_fds);
    if (len < 0) {
        if (errno == EMSGSIZE)
            return reject_log_fds(fds, n_fds, why, "message longer than any log-fds message");
        return -1;
    }
    if (len == 0) { /* SOCK_SEQPACKET: the peer closed its end */
        for (size_t i = 0; i < n_fds; i++)
            close(fds[i]);
        return 0;
    }
    const size_t head = offsetof(struct ipc_indexed_fds, index);
    if ((size_t)len < head || m.magic != IPC_INDEXED_FDS_MAGIC)
        return reject_log_fds(fds, n_fds, why, "bad magic");
    if (m.n == 0 || m.n > IPC_MAX_FDS || (size_t)len != head + m.n * sizeof(m.index[0]))
        return reject_log_fds(fds, n_fds, why, "length does not match the count");
    if (n_fds != m.n)
        return reject_log_fds(fds, n_fds, why, "descriptor count does not match");
    memcpy(index, m.index, m.n * sizeof(m.index[0]));
    *n = m.n;
    return 1;
}

int ipc_drain_indexed_fds(int sock, ipc_fds_fn deliver, void *ctx)
{
    for (;;) {
        uint32_t index[IPC_MAX_FDS];
        int fds[IPC_MAX_FDS];
        size_t n = 0;
        const char *why = NULL;
        int rc = ipc_recv_indexed_fds(sock, index, fds, &n, &why);
        if (rc > 0) {
            deliver(ctx, index, fds, n);
            continue;
        }
        if (rc == 0)
            return 0;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 1;
        if (errno == EINTR)
            continue;
        if (why != NULL) {
            log_error("malformed message on the supervisor socket dropped: %s", why);
            continue;
        }
        return -1;
    }
}

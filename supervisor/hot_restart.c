#include "supervisor/hot_restart.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/ipc.h"

static socklen_t rendezvous_addr(unsigned base_id, unsigned epoch, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    /* sun_path[0] == '\0': the abstract namespace, gone with the process. */
    int n = snprintf(sun->sun_path + 1, sizeof(sun->sun_path) - 1, "legate-hot-restart.%u.%u",
                     base_id, epoch);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

int hr_listen(unsigned base_id, unsigned epoch)
{
    struct sockaddr_un sun;
    socklen_t len = rendezvous_addr(base_id, epoch, &sun);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sun, len) != 0 || listen(fd, 4) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int hr_connect(unsigned base_id, unsigned epoch)
{
    struct sockaddr_un sun;
    socklen_t len = rendezvous_addr(base_id, epoch, &sun);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sun, len) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

bool hr_peer_trusted(int fd, pid_t *pid)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return false;
    if (pid != NULL)
        *pid = cred.pid;
    return cred.uid == geteuid() || cred.uid == 0;
}

/* The bytes of a message of each type that are sent: the header, the fixed
 * part of the payload, and the used part of any array. */
static size_t used_size(const struct hr_msg *m)
{
    const size_t head = offsetof(struct hr_msg, u);
    switch (m->type) {
    case HR_HELLO:
        return head + sizeof(m->u.hello);
    case HR_WELCOME:
        return head + sizeof(m->u.welcome);
    case HR_REFUSED:
        return head + sizeof(m->u.refused);
    case HR_GET_SOCKETS:
    case HR_TERMINATE:
        return head;
    case HR_SOCKETS:
        return head + offsetof(__typeof__(m->u.sockets), keys) +
               (m->u.sockets.n <= HR_SOCKS_PER_MSG ? m->u.sockets.n : 0) *
                   sizeof(struct hr_sock_key);
    case HR_DRAIN:
        return head + sizeof(m->u.drain);
    case HR_COUNTERS:
        return head + offsetof(__typeof__(m->u.counters), c) +
               (m->u.counters.n <= HR_COUNTERS_PER_MSG ? m->u.counters.n : 0) *
                   sizeof(struct hr_counter);
    default:
        return 0;
    }
}

int hr_send(int fd, const struct hr_msg *m, const int *fds, size_t n_fds)
{
    size_t len = used_size(m);
    if (len == 0 || m->magic != HR_MAGIC) {
        errno = EINVAL;
        return -1;
    }
    return ipc_send_fds(fd, m, len, fds, n_fds);
}

static int reject(int *fds, size_t *n_fds, const char **why, const char *reason)
{
    for (size_t i = 0; i < *n_fds; i++)
        close(fds[i]);
    *n_fds = 0;
    *why = reason;
    errno = EPROTO;
    return -1;
}

int hr_recv(int fd, struct hr_msg *m, int *fds, size_t max_fds, size_t *n_fds, const char **why)
{
    *n_fds = 0;
    *why = NULL;
    memset(m, 0, sizeof(*m));
    ssize_t len = ipc_recv_fds(fd, m, sizeof(*m), fds, max_fds, n_fds);
    if (len < 0) {
        if (errno == EMSGSIZE)
            return reject(fds, n_fds, why, "message longer than any hot-restart message");
        return -1;
    }
    if (len == 0) {
        for (size_t i = 0; i < *n_fds; i++)
            close(fds[i]);
        *n_fds = 0;
        return 0;
    }
    if ((size_t)len < offsetof(struct hr_msg, u) || m->magic != HR_MAGIC)
        return reject(fds, n_fds, why, "not a hot-restart message (bad magic: another version?)");
    if (m->type == 0 || m->type >= HR_TYPE_MAX)
        return reject(fds, n_fds, why, "unknown message type");
    if ((m->type == HR_SOCKETS && m->u.sockets.n > HR_SOCKS_PER_MSG) ||
        (m->type == HR_COUNTERS && m->u.counters.n > HR_COUNTERS_PER_MSG))
        return reject(fds, n_fds, why, "count out of range");
    if ((size_t)len != used_size(m))
        return reject(fds, n_fds, why, "wrong size for its type");
    if (m->type == HR_SOCKETS ? *n_fds != m->u.sockets.n : *n_fds != 0)
        return reject(fds, n_fds, why, "descriptors do not match the message");
    if (m->type == HR_REFUSED)
        m->u.refused.reason[sizeof(m->u.refused.reason) - 1] = '\0';
    for (uint32_t i = 0; m->type == HR_COUNTERS && i < m->u.counters.n; i++)
        if (memchr(m->u.counters.c[i].name, '\0', HR_NAME_MAX) == NULL)
            return reject(fds, n_fds, why, "counter name not terminated");
    return 1;
}

int hr_recv_wait(int fd, struct hr_msg *m, int *fds, size_t max_fds, size_t *n_fds,
                 const char **why, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc;
    do
        rc = poll(&p, 1, timeout_ms);
    while (rc < 0 && errno == EINTR);
    if (rc == 0) {
        *n_fds = 0;
        *why = "no answer in time";
        errno = ETIMEDOUT;
        return -1;
    }
    if (rc < 0)
        return -1;
    return hr_recv(fd, m, fds, max_fds, n_fds, why);
}

void hr_key_from_addr(const struct sockaddr_storage *ss, uint32_t shard, struct hr_sock_key *k)
{
    memset(k, 0, sizeof(*k));
    k->family = ss->ss_family;
    k->shard = shard;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        k->port = ntohs(in->sin_port);
        memcpy(k->addr, &in->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        k->port = ntohs(in6->sin6_port);
        memcpy(k->addr, &in6->sin6_addr, 16);
    }
}

int hr_key_from_fd(int fd, uint32_t shard, struct hr_sock_key *k)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    hr_key_from_addr(&ss, shard, k);
    return 0;
}

bool hr_key_equal(const struct hr_sock_key *a, const struct hr_sock_key *b)
{
    return a->family == b->family && a->port == b->port && a->shard == b->shard &&
           memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

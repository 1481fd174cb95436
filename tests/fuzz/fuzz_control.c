/* libFuzzer: the decoders of every control message a process accepts from
 * another: the ZeroMQ frames (ipc_decode), the reopened access logs on a
 * worker's supervisor socket, and the hot-restart rendezvous messages, the
 * last two read from a real SOCK_SEQPACKET socket as in the proxy. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ipc.h"
#include "supervisor/hot_restart.h"

static int pair[2] = {-1, -1};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair) != 0)
        abort();
    int big = 1 << 20;
    setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    setsockopt(pair[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ipc_msg msg;
    const char *why = NULL;
    ipc_decode(data, size, &msg, &why);
    if (size == 0 || size > 100000)
        return 0;
    /* The first byte picks the socket decoder. */
    if (send(pair[0], data + 1, size - 1, 0) != (ssize_t)(size - 1))
        return 0;
    if (data[0] & 1) {
        uint32_t index[IPC_MAX_FDS];
        int fds[IPC_MAX_FDS];
        size_t n = 0;
        if (ipc_recv_indexed_fds(pair[1], index, fds, &n, &why) == 1)
            for (size_t i = 0; i < n; i++)
                close(fds[i]);
    } else {
        struct hr_msg m;
        int fds[HR_SOCKS_PER_MSG];
        size_t n = 0;
        if (hr_recv(pair[1], &m, fds, HR_SOCKS_PER_MSG, &n, &why) == 1)
            for (size_t i = 0; i < n; i++)
                close(fds[i]);
    }
    return 0;
}

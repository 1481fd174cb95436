/* The control-message catalogue and descriptor passing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ipc.h"

static void test_every_message_round_trips(void **state)
{
    (void)state;
    char frame[256];
    struct ipc_msg msg;
    const char *why = NULL;

    struct ipc_hello hello = {.role = 2, .index = 7, .pid = 1234};
    size_t n = ipc_encode(IPC_HELLO, &hello, sizeof(hello), frame, sizeof(frame));
    assert_true(n > 0);
    assert_int_equal(ipc_decode(frame, n, &msg, &why), 0);
    assert_int_equal(msg.hdr.type, IPC_HELLO);
    assert_int_equal(msg.u.HELLO.index, 7);
    assert_int_equal(msg.u.HELLO.pid, 1234);

    struct ipc_drain drain = {.deadline_ms = 4321};
    n = ipc_encode(IPC_DRAIN, &drain, sizeof(drain), frame, sizeof(frame));
    assert_int_equal(ipc_decode(frame, n, &msg, &why), 0);
    assert_int_equal(msg.u.DRAIN.deadline_ms, 4321);

    /* The messages without a payload: the header says who sent them. */
    static const struct {
        uint16_t type;
        const char *name;
    } empty[] = {
        {IPC_READY, "READY"},
        {IPC_STOP, "STOP"},
        {IPC_SHUTDOWN, "SHUTDOWN"},
        {IPC_REOPEN_LOGS, "REOPEN_LOGS"},
    };
    struct ipc_empty e = {0};
    for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
        n = ipc_encode(empty[i].type, &e, sizeof(e), frame, sizeof(frame));
        assert_int_equal(n, sizeof(struct ipc_header) + sizeof(e));
        assert_int_equal(ipc_decode(frame, n, &msg, &why), 0);
        assert_int_equal(msg.hdr.type, empty[i].type);
        assert_int_equal(msg.hdr.pid, getpid());
        assert_string_equal(ipc_type_name(msg.hdr.type), empty[i].name);
        /* a payload is refused where none belongs */
        assert_int_equal(ipc_encode(empty[i].type, &drain, sizeof(drain), frame, sizeof(frame)), 0);
    }
}

static void test_encode_refuses_wrong_sizes(void **state)
{
    (void)state;
    char frame[256];
    struct ipc_drain drain = {0};
    assert_int_equal(ipc_encode(IPC_HELLO, &drain, sizeof(drain), frame, sizeof(frame)), 0);
    assert_int_equal(ipc_encode(999, &drain, sizeof(drain), frame, sizeof(frame)), 0);
    assert_int_equal(ipc_encode(IPC_DRAIN, &drain, sizeof(drain), frame, 4), 0);
}

static void test_decode_rejects_malformed_frames(void **state)
{
    (void)state;
    char frame[256];
    struct ipc_msg msg;
    const char *why = NULL;
    struct ipc_drain drain = {.deadline_ms = 1};
    size_t n = ipc_encode(IPC_DRAIN, &drain, sizeof(drain), frame, sizeof(frame));

    assert_int_equal(ipc_decode(frame, 3, &msg, &why), -1); /* shorter than a header */
    assert_non_null(why);
    assert_int_equal(ipc_decode(frame, n - 1, &msg, &why), -1); /* truncated payload */
    assert_int_equal(ipc_decode(frame, n + 1, &msg, &why), -1); /* trailing bytes */

    char bad[256];
    memcpy(bad, frame, n);
    bad[0] ^= 0x55; /* magic */
    assert_int_equal(ipc_decode(bad, n, &msg, &why), -1);
    assert_non_null(strstr(why, "magic"));

    memcpy(bad, frame, n);
    struct ipc_header h;
    memcpy(&h, bad, sizeof(h));
    h.type = 77; /* unknown */
    memcpy(bad, &h, sizeof(h));
    assert_int_equal(ipc_decode(bad, n, &msg, &why), -1);
    assert_non_null(strstr(why, "unknown"));

    memcpy(bad, frame, n);
    h.type = IPC_HELLO; /* a DRAIN-sized payload claiming to be HELLO */
    memcpy(bad, &h, sizeof(h));
    assert_int_equal(ipc_decode(bad, n, &msg, &why), -1);
    assert_non_null(strstr(why, "size"));
}

static void test_descriptors_cross_a_socketpair(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    int fds[3];
    for (int i = 0; i < 3; i++)
        fds[i] = open("/dev/null", O_RDONLY);
    uint32_t payload = 0xabcdef01;
    assert_int_equal(ipc_send_fds(sv[0], &payload, sizeof(payload), fds, 3), 0);
    uint32_t got = 0;
    int rfds[8];
    size_t n = 0;
    assert_int_equal(ipc_recv_fds(sv[1], &got, sizeof(got), rfds, 8, &n), sizeof(got));
    assert_int_equal(got, payload);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++) {
        struct stat a, b;
        assert_int_equal(fstat(fds[i], &a), 0);
        assert_int_equal(fstat(rfds[i], &b), 0);
        assert_int_equal(a.st_ino, b.st_ino); /* the very same open file */
        close(fds[i]);
        close(rfds[i]);
    }
    /* More descriptors than the receiver takes: the extras are closed, not leaked. */
    for (int i = 0; i < 3; i++)
        fds[i] = open("/dev/null", O_RDONLY);
    assert_int_equal(ipc_send_fds(sv[0], &payload, sizeof(payload), fds, 3), 0);
    assert_int_equal(ipc_recv_fds(sv[1], &got, sizeof(got), rfds, 1, &n), sizeof(got));
    assert_int_equal(n, 1);
    close(rfds[0]);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    close(sv[0]);
    close(sv[1]);
}

/* Two descriptors name the same open file. */
static void assert_same_file(int a, int b)
{
    struct stat sa, sb;
    assert_int_equal(fstat(a, &sa), 0);
    assert_int_equal(fstat(b, &sb), 0);
    assert_int_equal(sa.st_dev, sb.st_dev);
    assert_int_equal(sa.st_ino, sb.st_ino);
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

static void test_log_fds_round_trip(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    int fds[2] = {open("/dev/null", O_WRONLY), open("/dev/zero", O_RDONLY)};
    uint32_t index[2] = {7, 2};
    assert_int_equal(ipc_send_indexed_fds(sv[0], index, fds, 2), 0);

    uint32_t got_index[IPC_MAX_FDS];
    int got[IPC_MAX_FDS];
    size_t n = 99;
    const char *why = "unset";
    assert_int_equal(ipc_recv_indexed_fds(sv[1], got_index, got, &n, &why), 1);
    assert_int_equal(n, 2);
    assert_null(why);
    assert_int_equal(got_index[0], 7);
    assert_int_equal(got_index[1], 2);
    for (int i = 0; i < 2; i++) {
        assert_same_file(fds[i], got[i]);
        assert_true(fcntl(got[i], F_GETFD) & FD_CLOEXEC);
        close(got[i]);
        close(fds[i]);
    }
    /* Nothing waiting on a non-blocking socket: -1 with EAGAIN. */
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    assert_int_equal(ipc_recv_indexed_fds(sv[1], got_index, got, &n, &why), -1);
    assert_int_equal(errno, EAGAIN);
    /* The supervisor's end closed: EOF. */
    close(sv[0]);
    assert_int_equal(ipc_recv_indexed_fds(sv[1], got_index, got, &n, &why), 0);
    close(sv[1]);
}

static void test_log_fds_bounded_per_message(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    static int fds[IPC_MAX_FDS + 1];
    static uint32_t index[IPC_MAX_FDS + 1];
    for (size_t i = 0; i <= IPC_MAX_FDS; i++) {
        fds[i] = open("/dev/null", O_WRONLY);
        assert_true(fds[i] >= 0);
        index[i] = (uint32_t)i;
    }
    /* One more than a message carries is refused; none at all too. */
    assert_int_equal(ipc_send_indexed_fds(sv[0], index, fds, IPC_MAX_FDS + 1), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(ipc_send_indexed_fds(sv[0], index, fds, 0), -1);
    /* Exactly IPC_MAX_FDS crosses in one message. */
    assert_int_equal(ipc_send_indexed_fds(sv[0], index, fds, IPC_MAX_FDS), 0);
    static uint32_t got_index[IPC_MAX_FDS];
    static int got[IPC_MAX_FDS];
    size_t n = 0;
    const char *why = NULL;
    assert_int_equal(ipc_recv_indexed_fds(sv[1], got_index, got, &n, &why), 1);
    assert_int_equal(n, IPC_MAX_FDS);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(got_index[i], i);
        assert_same_file(fds[i], got[i]);
        close(got[i]);
    }
    for (size_t i = 0; i <= IPC_MAX_FDS; i++)
        close(fds[i]);
    close(sv[0]);
    close(sv[1]);
}

static void test_log_fds_rejects_malformed(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    int fd = open("/dev/null", O_WRONLY);
    int before = open_fds();
    uint32_t got_index[IPC_MAX_FDS];
    int got[IPC_MAX_FDS];
    size_t n = 0;
    const char *why = NULL;

    /* The count says two, one descriptor came: rejected, and the one closed. */
    struct ipc_indexed_fds m = {.magic = IPC_INDEXED_FDS_MAGIC, .n = 2, .index = {0, 1}};
    size_t len = offsetof(struct ipc_indexed_fds, index) + 2 * sizeof(uint32_t);
    assert_int_equal(ipc_send_fds(sv[0], &m, len, &fd, 1), 0);
    assert_int_equal(ipc_recv_indexed_fds(sv[1], got_index, got, &n, &why), -1);
    assert_int_equal(errno, EPROTO);
    assert_non_null(strstr(why, "count"));
    assert_int_equal(n, 0);
    assert_int_equal(open_fds(), before);

    /* A bad magic. */
    m.magic = IPC_MAGIC;
    m.n = 1;
    len = offsetof(struct ipc_indexed_fds, index) + sizeof(uint32_t);
    assert_int_equal(ipc_send_fds(sv[0], &m, len, &fd, 1), 0);
    assert_int_equal(ipc_recv_indexed_fds(sv[1], got_index, got, &n, &why), -1);
    assert_non_null(strstr(why, "magic"));

    /* A length that does not match the count. */
    m.magic = IPC_INDEXED_FDS_MAGIC;
    assert_int_equal(ipc_send_fds(sv[0], &m, len + 4, &fd, 1), 0);
    assert_int_equal(ipc_recv_indexed_fds(sv[1], got_index, got, &n, &why), -1);
    assert_non_null(strstr(why, "length"));

    /* Longer than any log-fds message. */
    static char big[sizeof(struct ipc_indexed_fds) + 64];
    memcpy(big, &m, sizeof(m));
    assert_int_equal(ipc_send_fds(sv[0], big, sizeof(big), &fd, 1), 0);
    assert_int_equal(ipc_recv_indexed_fds(sv[1], got_index, got, &n, &why), -1);
    assert_int_equal(errno, EPROTO);
    assert_non_null(why);

    /* Every rejected message's descriptor was closed: nothing leaked. */
    assert_int_equal(open_fds(), before);
    close(fd);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_message_round_trips),
        cmocka_unit_test(test_encode_refuses_wrong_sizes),
        cmocka_unit_test(test_decode_rejects_malformed_frames),
        cmocka_unit_test(test_descriptors_cross_a_socketpair),
        cmocka_unit_test(test_log_fds_round_trip),
        cmocka_unit_test(test_log_fds_bounded_per_message),
        cmocka_unit_test(test_log_fds_rejects_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

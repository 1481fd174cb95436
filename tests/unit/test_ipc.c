/* The control-message catalogue and descriptor passing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

    struct ipc_empty e = {0};
    n = ipc_encode(IPC_READY, &e, sizeof(e), frame, sizeof(frame));
    assert_int_equal(ipc_decode(frame, n, &msg, &why), 0);
    assert_string_equal(ipc_type_name(msg.hdr.type), "READY");
    n = ipc_encode(IPC_STOP, &e, sizeof(e), frame, sizeof(frame));
    assert_int_equal(ipc_decode(frame, n, &msg, &why), 0);
    assert_string_equal(ipc_type_name(msg.hdr.type), "STOP");
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_message_round_trips),
        cmocka_unit_test(test_encode_refuses_wrong_sizes),
        cmocka_unit_test(test_decode_rejects_malformed_frames),
        cmocka_unit_test(test_descriptors_cross_a_socketpair),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* A worker's link to the supervisor: the requests the admin endpoints make
 * (SHUTDOWN, REOPEN_LOGS over the control channel) and the switch to reopened
 * access-log descriptors received on the supervisor socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "common/ipc.h"
#include "common/log.h"
#include "worker/worker.h"

static void ignore_msg(struct ipc_chan *ch, const char *peer, size_t peer_len,
                       const struct ipc_msg *msg)
{
    (void)ch;
    (void)peer;
    (void)peer_len;
    (void)msg;
}

/* Receive one message on the ROUTER (bounded wait); returns its decoded form. */
static void router_recv(struct ipc_chan *router, char *peer, size_t peer_cap, struct ipc_msg *msg)
{
    int timeout = 5000;
    zmq_setsockopt(router->zsock, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
    int n = zmq_recv(router->zsock, peer, peer_cap - 1, 0);
    assert_true(n > 0);
    peer[n] = '\0';
    char frame[256];
    n = zmq_recv(router->zsock, frame, sizeof(frame), 0);
    assert_true(n > 0);
    const char *why = NULL;
    assert_int_equal(ipc_decode(frame, (size_t)n, msg, &why), 0);
}

static void test_requests_reach_the_supervisor(void **state)
{
    (void)state;
    char dir[] = "/tmp/legate-test-sup-link.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char endpoint[128];
    snprintf(endpoint, sizeof(endpoint), "ipc://%s/control", dir);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct ipc_chan router;
    assert_int_equal(ipc_open_router(&router, loop, endpoint, ignore_msg, NULL), 0);
    static struct worker w;
    w.loop = loop;
    assert_int_equal(ipc_open_dealer(&w.ctl, loop, endpoint, "worker-3", ignore_msg, NULL), 0);
    char peer[64];
    struct ipc_msg msg;
    assert_int_equal(worker_request_shutdown(&w), 0);
    router_recv(&router, peer, sizeof(peer), &msg);
    assert_string_equal(peer, "worker-3");
    assert_int_equal(msg.hdr.type, IPC_SHUTDOWN);
    assert_int_equal(msg.hdr.pid, getpid()); /* the supervisor logs who asked */

    assert_int_equal(worker_request_reopen_logs(&w), 0);
    router_recv(&router, peer, sizeof(peer), &msg);
    assert_string_equal(peer, "worker-3");
    assert_int_equal(msg.hdr.type, IPC_REOPEN_LOGS);
    assert_int_equal(msg.hdr.pid, getpid());

    ipc_close(&w.ctl);
    ipc_close(&router);
    ev_loop_destroy(loop);
    char path[160];
    snprintf(path, sizeof(path), "%s/control", dir);
    unlink(path);
    rmdir(dir);
}

/* A temporary file, open O_APPEND for writing and already unlinked; read back
 * through /proc/self/fd. */
static int temp_log(void)
{
    char path[] = "/tmp/legate-test-log.XXXXXX";
    int fd = mkostemp(path, O_APPEND | O_CLOEXEC);
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

static void assert_content(int fd, const char *want)
{
    char got[256] = {0};
    ssize_t n = pread(fd, got, sizeof(got) - 1, 0);
    assert_true(n >= 0);
    assert_string_equal(got, want);
}

static bool is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* Two listeners of two and one access logs, then an admin listener with none:
 * logs 0, 1 (first listener), 2 (second). */
struct fixture {
    struct worker w;
    struct listener_rt listeners[3];
    struct al_sink sinks[3];
    struct child_ctx ctx;
    int old_fd[3];
    int keep[3]; /* second descriptors of the old files, to read them back */
};

static void fixture_init(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    f->w.loop = ev_loop_new(EVFLAG_AUTO);
    f->w.ctx = &f->ctx;
    f->w.listeners = f->listeners;
    f->w.n_listeners = 3;
    f->listeners[0].sinks = &f->sinks[0];
    f->listeners[0].n_sinks = 2;
    f->listeners[1].sinks = &f->sinks[2];
    f->listeners[1].n_sinks = 1;
    for (int i = 0; i < 3; i++) {
        f->old_fd[i] = f->sinks[i].fd = temp_log();
        f->keep[i] = dup(f->old_fd[i]);
        buf_printf(&f->sinks[i].out, "buffered %d\n", i);
    }
}

static void fixture_free(struct fixture *f)
{
    for (int i = 0; i < 3; i++) {
        close(f->keep[i]);
        close(f->sinks[i].fd);
        buf_release(&f->sinks[i].out);
    }
    ev_loop_destroy(f->w.loop);
}

static void test_switch_flushes_to_the_old_file_first(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    int new1 = temp_log(), new2 = temp_log(), stray = temp_log();
    uint32_t index[3] = {2, 1, 3}; /* 3 does not exist: one listener's two, the other's one */
    int fds[3] = {new2, new1, stray};
    worker_switch_log_fds(&f.w, index, fds, 3);

    /* What was buffered went to the old files... */
    assert_content(f.keep[1], "buffered 1\n");
    assert_content(f.keep[2], "buffered 2\n");
    /* ...which are closed and replaced. */
    assert_false(is_open(f.old_fd[1]));
    assert_false(is_open(f.old_fd[2]));
    assert_int_equal(f.sinks[1].fd, new1);
    assert_int_equal(f.sinks[2].fd, new2);
    assert_int_equal(buf_len(&f.sinks[1].out), 0);
    /* Log 0 was not named: untouched, still buffering for its old file. */
    assert_int_equal(f.sinks[0].fd, f.old_fd[0]);
    assert_int_equal(buf_len(&f.sinks[0].out), strlen("buffered 0\n"));
    /* A descriptor for a log that does not exist is closed, not kept. */
    assert_false(is_open(stray));

    /* What comes next goes to the new file. */
    buf_printf(&f.sinks[1].out, "after\n");
    al_sink_flush(&f.sinks[1]);
    assert_content(new1, "after\n");
    assert_content(f.keep[1], "buffered 1\n");
    fixture_free(&f);
}

static void test_descriptors_arrive_on_the_supervisor_socket(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    f.ctx.sup_sock = sv[1];
    assert_int_equal(worker_sup_link_start(&f.w), 0);

    int fresh = temp_log();
    uint32_t index = 0;
    assert_int_equal(ipc_send_indexed_fds(sv[0], &index, &fresh, 1), 0);
    /* A malformed message in between is dropped, its descriptor closed. */
    int junk_fd = temp_log();
    uint32_t junk = 0xdeadbeef;
    assert_int_equal(ipc_send_fds(sv[0], &junk, sizeof(junk), &junk_fd, 1), 0);
    close(junk_fd);
    ev_run(f.w.loop, EVRUN_NOWAIT);

    struct stat a, b;
    assert_int_equal(fstat(fresh, &a), 0);
    assert_int_equal(fstat(f.sinks[0].fd, &b), 0);
    assert_int_equal(a.st_ino, b.st_ino); /* the sink writes to the file sent */
    assert_content(f.keep[0], "buffered 0\n");
    close(fresh);

    /* The supervisor gone: the watcher stops instead of spinning on EOF. */
    close(sv[0]);
    ev_run(f.w.loop, EVRUN_NOWAIT);
    assert_false(ev_is_active(&f.w.sup_io));
    close(sv[1]);
    fixture_free(&f);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_reach_the_supervisor),
        cmocka_unit_test(test_switch_flushes_to_the_old_file_first),
        cmocka_unit_test(test_descriptors_arrive_on_the_supervisor_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

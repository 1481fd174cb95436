#!/usr/bin/python3
"""Access-log rotation: the log file is renamed (as logrotate does), SIGUSR1
makes the supervisor reopen every access log by path and hand the new
descriptors to the workers, which flush what they buffered to the old file and
write to the new one. No line is lost or written twice; a log that cannot be
reopened keeps going to the old file; a respawned worker writes to the current
file; no legate process keeps a rotated file open."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

FORMAT = "%REQ(X-REQUEST-ID)%\n"
STDOUT_FORMAT = "stdout-log %REQ(X-REQUEST-ID)%\n"
FLUSH_S = 0.5   # the workers' access-log flush interval


def fd_paths(pid):
    """What every descriptor of a process points to (readlink of /proc/PID/fd/*)."""
    out = []
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    for n in names:
        try:
            out.append(os.readlink("/proc/%d/fd/%s" % (pid, n)))
        except OSError:
            pass
    return out


def read_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


class LogReopenTest(H.LegateTestCase):
    def start(self, logs, concurrency=2):
        """legate with a direct-response route and one access log per path in
        logs (FORMAT; /dev/stdout gets STDOUT_FORMAT)."""
        port = H.free_port()
        vhosts = [H.vhost("default", ["*"], [H.route_direct(200, "ok\n", prefix="/")])]
        als = [H.access_log(p, STDOUT_FORMAT if p == "/dev/stdout" else FORMAT) for p in logs]
        cfg = H.simple_config(port, vhosts, [], admin_port=H.free_port(), access_logs=als)
        return self.legate(cfg, port, concurrency=concurrency)

    def send(self, lg, tag, n_new, keep=None, n_keep=0):
        """n_new requests on new connections, then n_keep on the open keep-alive
        connection `keep`; returns their request ids."""
        ids = []
        for i in range(n_new):
            rid = "%s-new-%d" % (tag, i)
            r = H.http_request(lg.listen_port, "GET", "/", headers=[("X-Request-Id", rid)])
            self.assertEqual((r.status, r.body), (200, b"ok\n"), rid)
            ids.append(rid)
        for i in range(n_keep):
            rid = "%s-keep-%d" % (tag, i)
            keep.request("GET", "/", headers=[("X-Request-Id", rid)])
            r = keep.read_response()
            self.assertEqual((r.status, r.body), (200, b"ok\n"), rid)
            self.assertNotEqual((r.header("connection") or "").lower(), "close",
                                "the keep-alive connection is being closed")
            ids.append(rid)
        return ids

    def assert_lines(self, path, want, what):
        """The file holds exactly the lines `want` (any order): none lost, none
        twice, none of another batch. Waits for the workers' flush."""
        H.wait_until(lambda: len(read_lines(path)) >= len(want), 5, 0.05)
        time.sleep(FLUSH_S + 0.3)   # so that a stray late line would show up too
        got = read_lines(path)
        self.assertEqual(sorted(got), sorted(want), "%s (%s)" % (what, path))

    def wait_switched(self, lg, new, old):
        """Every worker writes to `new` (holds it open) and no legate process holds
        `old` any more: the supervisor closed its copy, every worker switched."""
        def done():
            workers = list(lg.roles()["workers"].values())
            if len(workers) != lg.concurrency:
                return False
            if not all(new in fd_paths(p) for p in workers):
                return False
            return not any(old in fd_paths(p) for p in lg.processes())
        ok = H.wait_until(done, 5, 0.02)
        if not ok:
            held = {p: [x for x in fd_paths(p) if x in (new, old)] for p in lg.processes()}
            self.fail("workers did not switch from %s to %s: %r" % (old, new, held))

    def wait_log(self, lg, text, count=1):
        ok = H.wait_until(lambda: lg.log_text(1 << 22).count(text) >= count, 5)
        self.assertTrue(ok, "legate never logged %r (x%d)" % (text, count))

    def keepalive(self, lg):
        c = H.RawConnection(lg.listen_port)
        self.addCleanup(c.close)
        return c

    # --

    def test_rename_then_sigusr1_splits_the_log_exactly(self):
        d = H.new_tmpdir("logs")
        log = os.path.join(d, "access.log")
        rotated = log + ".1"
        lg = self.start([log, "/dev/stdout"])
        keep = self.keepalive(lg)

        first = self.send(lg, "a", 20, keep, 3)
        # Some of these lines may still sit in a worker's buffer: they belong to
        # the old file, wherever it is by the time they are flushed.
        os.rename(log, rotated)
        lg.send_signal(signal.SIGUSR1)
        self.assertTrue(H.wait_until(lambda: os.path.exists(log), 5), "no new log file")
        self.wait_switched(lg, log, rotated)
        second = self.send(lg, "b", 20, keep, 3)

        self.assert_lines(rotated, first, "the rotated file holds the first batch")
        self.assert_lines(log, second, "the new file holds the second batch")
        umask = os.umask(0)
        os.umask(umask)
        self.assertEqual(oct(os.stat(log).st_mode & 0o777), oct(0o644 & ~umask))
        # /dev/stdout is not a file to reopen: it goes on logging.
        text = lg.log_text(1 << 22)
        for rid in first + second:
            self.assertEqual(text.count("stdout-log %s\n" % rid), 1, rid)
        self.assertIn("reopened 1 access logs (SIGUSR1)", text)
        self.assertEqual(H.read_stats(lg.base_id).get("server.log_reopen_total"), 1)

    def test_respawned_worker_writes_to_the_current_file(self):
        d = H.new_tmpdir("logs")
        log = os.path.join(d, "access.log")
        lg = self.start([log])
        first = self.send(lg, "a", 5)
        os.rename(log, log + ".1")
        lg.send_signal(signal.SIGUSR1)
        self.wait_switched(lg, log, log + ".1")

        # A worker started after the reopen is given the new file on its command line.
        old = lg.worker_pid(0)
        os.kill(old, signal.SIGKILL)
        self.assertTrue(H.wait_until(lambda: lg.roles()["workers"].get(0) not in (None, old), 5),
                        "worker 0 was not respawned")
        self.wait_switched(lg, log, log + ".1")
        second = self.send(lg, "b", 20)

        # And the respawned worker's own supervisor socket works: rotate again.
        os.rename(log, log + ".2")
        lg.send_signal(signal.SIGUSR1)
        self.wait_switched(lg, log, log + ".2")
        third = self.send(lg, "c", 20)

        self.assert_lines(log + ".1", first, "first rotation")
        self.assert_lines(log + ".2", second, "second rotation")
        self.assert_lines(log, third, "current file")
        self.assertEqual(H.read_stats(lg.base_id).get("server.log_reopen_total"), 2)

    def test_failed_reopen_keeps_writing_to_the_old_file(self):
        # Root can write anywhere, but nobody can open a directory for writing:
        # a path that became a directory fails to reopen whoever runs the test.
        d = H.new_tmpdir("logs")
        a, b = os.path.join(d, "a.log"), os.path.join(d, "b.log")
        lg = self.start([a, b])
        keep = self.keepalive(lg)
        first = self.send(lg, "1", 10, keep, 2)

        os.rename(a, a + ".1")
        os.rename(b, b + ".1")
        os.mkdir(a)
        lg.send_signal(signal.SIGUSR1)
        self.wait_log(lg, "cannot reopen access log %s: Is a directory" % a)
        self.wait_log(lg, "reopened 1 access logs (SIGUSR1)")
        self.wait_switched(lg, b, b + ".1")     # the other log is reopened all the same
        for p in lg.roles()["workers"].values():
            self.assertIn(a + ".1", fd_paths(p), "a worker let go of the log it could not replace")
        second = self.send(lg, "2", 10, keep, 2)

        # The path is a file again: the next reopen succeeds.
        os.rmdir(a)
        lg.send_signal(signal.SIGUSR1)
        self.wait_log(lg, "reopened 2 access logs (SIGUSR1)")
        self.wait_switched(lg, a, a + ".1")
        third = self.send(lg, "3", 10, keep, 2)

        self.assert_lines(a + ".1", first + second, "a's old file, kept while a could not reopen")
        self.assert_lines(a, third, "a's new file")
        self.assert_lines(b + ".1", first, "b's rotated file")
        self.assert_lines(b, second + third, "b's new file (reopened twice, same file)")
        self.assertEqual(H.read_stats(lg.base_id).get("server.log_reopen_total"), 2)

    def test_unwritable_directory_keeps_writing_to_the_old_file(self):
        if os.geteuid() == 0:
            self.skipTest("root writes to a read-only directory anyway")
        d = H.new_tmpdir("logs")
        sub = os.path.join(d, "ro")
        os.mkdir(sub)
        log = os.path.join(sub, "access.log")
        lg = self.start([log])
        first = self.send(lg, "a", 10)
        os.rename(log, log + ".1")
        os.chmod(sub, 0o555)
        self.addCleanup(os.chmod, sub, 0o755)
        lg.send_signal(signal.SIGUSR1)
        self.wait_log(lg, "cannot reopen access log %s: Permission denied" % log)
        second = self.send(lg, "b", 10)
        self.assertFalse(os.path.exists(log))
        self.assert_lines(log + ".1", first + second, "the old file, still written")


if __name__ == "__main__":
    H.main()

#!/usr/bin/python3
"""Flow control, closing and draining corner cases: each test pins down a bug
found in review (a connection left with no watcher or timer, back-pressure that
never released, a drain that reset a request already sent, accept spinning on
EMFILE, an unrequested 101, pipelining defeating the pool)."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MIB = 1024 * 1024
STREAM_IDLE_S = 2


def set_nofile(pid, soft):
    """prlimit the descriptor limit of a worker. Started as root, workers run
    as another user: changing another user's limits takes CAP_SYS_RESOURCE,
    which a container's root may lack, so prlimit runs as the worker's user."""
    with open("/proc/%d/status" % pid) as f:
        ids = {k: v.split()[0] for k, _, v in (line.partition(":") for line in f)
               if k in ("Uid", "Gid")}
    cmd = ["prlimit", "--pid", str(pid), "--nofile=%d:" % soft]
    if ids["Uid"] != str(os.geteuid()):
        cmd = ["setpriv", "--reuid", ids["Uid"], "--regid", ids["Gid"], "--clear-groups"] + cmd
    subprocess.run(cmd, check=True)


def read_until_closed(sock, limit_s):
    """Read until EOF or reset; return (bytes, closed) with closed False if the
    connection was still open after limit_s."""
    sock.settimeout(0.5)
    data = bytearray()
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return bytes(data), True
        if not chunk:
            return bytes(data), True
        data += chunk
    return bytes(data), False


def send_in_background(sock, head, body_len):
    """Send head + body_len bytes from a thread; stop quietly when refused."""
    def run():
        try:
            sock.sendall(head)
            block = b"u" * 65536
            sent = 0
            while sent < body_len:
                sock.sendall(block[:min(len(block), body_len - sent)])
                sent += len(block)
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _socket_inodes(pid):
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def _worker_holds(pid, client_sock):
    """True if process pid owns the server side of client_sock's connection."""
    cport = client_sock.getsockname()[1]
    inodes = _socket_inodes(pid)
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            if remote_port == cport and int(fields[9]) in inodes:
                return True
    return False


class FlowAndDrainTest(H.LegateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.up = cls.class_upstream()
        cls.port = H.free_port()
        # An upstream that is slow to accept: its queue is kept full, so
        # legate's SYN is dropped and retried about a second later.
        cls.slow_sock = socket.socket()
        cls.slow_sock.bind((H.LOOPBACK, 0))
        cls.slow_sock.listen(0)
        cls.slow_port = cls.slow_sock.getsockname()[1]
        one = H.cluster("one", [cls.up.port])
        one["circuit_breakers"] = {"thresholds": [{"max_connections": 1}]}
        vhosts = [H.vhost("main", ["*"], [
            H.route_to("up", prefix="/up/", prefix_rewrite="/", timeout="0s"),
            H.route_to("up", prefix="/t1/", prefix_rewrite="/", timeout="1s"),
            H.route_to("one", prefix="/one/", prefix_rewrite="/"),
            H.route_to("slow", prefix="/slowconn/", prefix_rewrite="/", timeout="0s"),
            H.route_direct(200, "ok\n", prefix="/ok"),
        ])]
        cls.access_log = os.path.join(H.new_tmpdir("flow"), "access.log")
        slow = H.cluster("slow", [cls.slow_port], connect_timeout="5s")
        cfg = H.simple_config(cls.port, vhosts, [H.cluster("up", [cls.up.port]), one, slow],
                              access_logs=[H.access_log(cls.access_log,
                                                        "%REQ(:PATH)% %RESPONSE_CODE% "
                                                        "%RESPONSE_FLAGS%\n")],
                              hcm_extra={"stream_idle_timeout": "%ds" % STREAM_IDLE_S})
        cls.lg = cls.class_legate(cfg, cls.port, concurrency=1)

    @classmethod
    def tearDownClass(cls):
        cls.slow_sock.close()
        super().tearDownClass()

    def connect(self, rcvbuf=None):
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.connect((H.LOOPBACK, self.port))
        self.addCleanup(s.close)
        return s

    def access_lines(self, needle, timeout=5):
        lines = []

        def found():
            nonlocal lines
            try:
                with open(self.access_log) as f:
                    lines = [ln for ln in f.read().splitlines() if needle in ln]
            except OSError:
                return False
            return bool(lines)
        H.wait_until(found, timeout)
        return lines

    def test_early_response_during_upload_ends_the_exchange(self):
        s = self.connect()
        # The answer comes a second late: by then legate has stopped reading the
        # client (the upstream reads nothing), and must not stay stopped.
        head = (b"POST /up/early?delay_ms=1000 HTTP/1.1\r\nHost: t\r\n"
                b"Content-Length: %d\r\n\r\n" % (256 * MIB))
        send_in_background(s, head, 256 * MIB)
        t0 = time.monotonic()
        data, closed = read_until_closed(s, 10)
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
        self.assertIn(b"early\n", data)
        self.assertTrue(closed, "legate kept the connection after answering early")
        # The stream ends with the response, not when the idle timeout rescues
        # it (that would log the SI flag, and come seconds later).
        self.assertLess(time.monotonic() - t0, 1 + STREAM_IDLE_S - 0.3)
        self.assertEqual(self.access_lines("/up/early?delay_ms=1000 200"),
                         ["/up/early?delay_ms=1000 200 -"])

    def test_upstream_that_never_reads_the_body(self):
        # Whether legate has read the whole body (route timeout: 504) or is
        # holding the client back (stream idle timeout: 408) depends on how much
        # the kernel buffers; sizes straddle that. Either way an answer comes
        # and the connection is closed or still serves: it never hangs.
        for size in (64 * 1024, 2 * MIB, 4 * MIB, 6 * MIB):
            s = self.connect()
            head = (b"POST /t1/stall?hold_ms=8000 HTTP/1.1\r\nHost: t\r\n"
                    b"Content-Length: %d\r\n\r\n" % size)
            sender = send_in_background(s, head, size)
            s.settimeout(STREAM_IDLE_S + 3)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                self.assertTrue(chunk, "closed without an answer (body %d)" % size)
                buf += chunk
            status = int(buf.split(b" ", 2)[1])
            self.assertIn(status, (504, 408), buf[:200])
            if b"connection: close" in buf.lower():
                _, closed = read_until_closed(s, 5)
                self.assertTrue(closed, "body %d: 'connection: close' but never closed" % size)
                continue
            # Kept alive: the next request on it must be read and answered.
            sender.join(5)
            s.sendall(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
            rest, _ = b"", None
            deadline = time.monotonic() + 5
            while b"ok\n" not in rest and time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                rest += chunk
            self.assertIn(b"HTTP/1.1 200", rest, "body %d: the next request hung" % size)

    def test_upload_through_a_slow_connect_completes(self):
        # Fill the slow upstream's accept queue so legate's SYN is dropped.
        filler = socket.create_connection((H.LOOPBACK, self.slow_port))
        self.addCleanup(filler.close)
        n = 4 * MIB
        result = {}

        def client():
            try:
                with H.RawConnection(self.port, timeout=20) as c:
                    c.send(b"POST /slowconn/x HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                           % n)
                    c.send(b"s" * n)
                    result["r"] = c.read_response()
            except Exception as e:  # noqa: BLE001 - reported below
                result["e"] = e

        t = threading.Thread(target=client, daemon=True)
        t.start()
        # legate's first SYN found the queue full and was dropped; free the
        # queue before its retry (about 1 s later) and before the 2 s stream
        # idle timeout.
        time.sleep(0.5)
        self.slow_sock.settimeout(10)
        conns = [self.slow_sock.accept()[0]]  # the filler
        conns.append(self.slow_sock.accept()[0])  # legate
        up = conns[-1]
        up.settimeout(10)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += up.recv(65536)
        got = len(buf.split(b"\r\n\r\n", 1)[1])
        while got < n:
            chunk = up.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        up.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%d" % (len(str(got)), got))
        t.join(15)
        for c in conns:
            c.close()
        self.assertNotIn("e", result, result.get("e"))
        self.assertEqual(got, n, "the upstream received only part of the body")
        self.assertEqual((result["r"].status, result["r"].body), (200, str(n).encode()))

    def test_stream_idle_timeout_before_the_request_is_complete(self):
        s = self.connect()
        s.sendall(b"POST /up/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789")
        t0 = time.monotonic()
        data, closed = read_until_closed(s, STREAM_IDLE_S + 6)
        self.assertTrue(data.startswith(b"HTTP/1.1 408"), data[:200])
        self.assertTrue(closed, "the connection stayed open after the 408")
        self.assertLess(time.monotonic() - t0, STREAM_IDLE_S + 4)
        self.assertTrue(self.access_lines("/up/upload 408 SI"), "no access-log line")

    def test_a_client_that_stops_reading_is_cut_off(self):
        # A client that reads nothing: depending on the size, the response is
        # still streaming (the stream is active) or wholly queued in legate
        # and the kernel (the stream ended; the connection is closing with
        # bytes left). The boundary depends on kernel buffer sizes, so sizes
        # around it go side by side. Either way legate must let go of the
        # connection once nothing has moved for stream_idle_timeout, while the
        # client still reads nothing (reading would unblock the writes).
        worker = self.lg.worker_pid(0)
        # Measured on these machines (tcp_wmem max 4 MiB): the kernel's send
        # queue takes about 2.98 MB for a client that reads nothing, and legate
        # holds up to about 290 KiB more. A machine with other buffer sizes
        # still runs every case; it may just not land in the closing window.
        sizes = [2_900_000 + k * 16 * 1024 for k in range(32)] + [8 * MIB]
        socks = []
        for n in sizes:
            s = self.connect(rcvbuf=4096)
            s.sendall(b"GET /up/bytes?n=%d HTTP/1.0\r\nHost: t\r\n\r\n" % n)
            socks.append(s)
        time.sleep(1)
        self.assertTrue(any(_worker_holds(worker, s) for s in socks),
                        "the connections never reached the worker")
        released = H.wait_until(lambda: not any(_worker_holds(worker, s) for s in socks),
                                STREAM_IDLE_S + 6, interval=0.25)
        held = [n for n, s in zip(sizes, socks) if _worker_holds(worker, s)]
        self.assertTrue(released, "legate still holds connections of sizes %r" % held)

    def test_drain_answers_a_request_already_sent(self):
        """A request in the accept queue when the drain starts is served. Before
        the fix this failed only when the worker saw the drain order before the
        connection (the reviewer's race: 2 runs of 3); the test keeps the
        property, not the race."""
        up = self.up
        port = H.free_port()
        cfg = H.simple_config(port, [H.vhost("v", ["*"], [H.route_to("up", prefix="/")])],
                              [H.cluster("up", [up.port])])
        lg = self.legate(cfg, port, concurrency=1, extra_args=["--drain-time-s", "10"])
        worker = lg.worker_pid(0)
        os.kill(worker, signal.SIGSTOP)  # the request waits in the kernel, unaccepted
        try:
            s = socket.create_connection((H.LOOPBACK, port), timeout=10)
            self.addCleanup(s.close)
            s.sendall(b"GET /fixed HTTP/1.1\r\nHost: t\r\n\r\n")
            lg.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # the drain order is queued for the stopped worker
        finally:
            os.kill(worker, signal.SIGCONT)
        data, closed = read_until_closed(s, 10)
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
        self.assertIn(b"connection: close", data.lower())
        self.assertTrue(data.endswith(b"fixed\n"), data[-100:])
        rc, left = lg.stop(None, timeout=15)
        self.assertEqual(left, [])

    def test_accept_pauses_when_out_of_descriptors(self):
        port = H.free_port()
        cfg = H.simple_config(port, [H.vhost("v", ["*"], [H.route_direct(200, "ok\n",
                                                                         prefix="/")])], [])
        lg = self.legate(cfg, port, concurrency=1)
        worker = lg.worker_pid(0)
        set_nofile(worker, 24)
        socks = []
        try:
            for _ in range(40):
                socks.append(socket.create_connection((H.LOOPBACK, port), timeout=5))
            time.sleep(1.5)
            complaints = len(re.findall(r"accept: Too many open files", lg.log_text(1 << 20)))
            # Logged at most once a second, not once per loop iteration.
            self.assertGreaterEqual(complaints, 1)
            self.assertLessEqual(complaints, 4, "accept spun on EMFILE")
        finally:
            for s in socks:
                s.close()
        set_nofile(worker, 1024)
        ok = H.wait_until(lambda: H.http_request(port, "GET", "/", host="t", timeout=2).status
                          == 200, 5)
        self.assertTrue(ok, "not serving again after descriptors were freed")

    def test_unrequested_101_is_a_protocol_error(self):
        r = H.http_request(self.port, "GET", "/up/status?code=101", host="t")
        self.assertEqual(r.status, 502, r)

    def test_pipelined_requests_reuse_the_one_allowed_connection(self):
        with H.RawConnection(self.port) as c:
            c.send(b"GET /one/fixed HTTP/1.1\r\nHost: t\r\n\r\n" * 3)
            statuses = [c.read_response().status for _ in range(3)]
        self.assertEqual(statuses, [200, 200, 200])


if __name__ == "__main__":
    H.main()

#!/usr/bin/python3
"""Overload: Envoy's connection_limit network filter (per listener) and the
overload manager's global_downstream_max_connections, counted across every
worker; and the bound on requests pipelined behind the one being answered.

Over a limit a new connection is closed at once, without a byte; the open
ones keep working."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

CL_TYPE = "type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit"
DC_TYPE = ("type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3."
           "DownstreamConnectionsConfig")
PIPELINE_MAX = 16  # WORKER_PIPELINE_MAX


def with_connection_limit(listener, prefix, n):
    chain = listener["filter_chains"][0]
    chain["filters"].insert(0, {"name": "envoy.filters.network.connection_limit",
                                "typed_config": {"@type": CL_TYPE, "stat_prefix": prefix,
                                                 "max_connections": n}})
    return listener


def rx_queue(local_port, remote_port):
    """Bytes waiting in the receive queue of legate's side of a connection."""
    want_local, want_remote = ":%04X" % local_port, ":%04X" % remote_port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(want_local) and fields[2].endswith(want_remote):
                return int(fields[4].split(":")[1], 16)
    return None


class OverloadTest(H.LegateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.up = cls.class_upstream()

    def start(self, listeners, overload_max=None):
        self.admin = H.free_port()
        cfg = H.bootstrap(listeners, [H.cluster("up", [self.up.port])], admin_port=self.admin)
        if overload_max is not None:
            cfg["overload_manager"] = {"resource_monitors": [{
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {"@type": DC_TYPE,
                                 "max_active_downstream_connections": overload_max}}]}
        port = listeners[0]["address"]["socket_address"]["port_value"]
        return self.legate(cfg, port, concurrency=2)

    def vhosts(self):
        return [H.vhost("all", ["*"], [H.route_to("up", prefix="/", timeout="0s")])]

    def open_served(self, port, n):
        conns = []
        for _ in range(n):
            c = H.RawConnection(port, timeout=5)
            c.request("GET", "/fixed")
            self.assertEqual(c.read_response().status, 200)
            conns.append(c)
        return conns

    def assert_refused(self, port):
        """Connected by the kernel, then closed by legate without a byte."""
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        t0 = time.monotonic()
        try:
            s.sendall(b"GET /fixed HTTP/1.1\r\nHost: t\r\n\r\n")
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        finally:
            s.close()
        self.assertEqual(data, b"")
        self.assertLess(time.monotonic() - t0, 2.0, "refused, but not fast")

    def stat(self, name):
        body = H.get(self.admin, "/stats").body.decode()
        for line in body.splitlines():
            k, _, v = line.partition(": ")
            if k == name:
                return int(v)
        self.fail("no %s in /stats" % name)

    def test_listener_connection_limit(self):
        port = H.free_port()
        lg = self.start([with_connection_limit(H.listener("main", port, self.vhosts()), "cl", 5)])
        del lg
        conns = self.open_served(port, 5)
        try:
            self.assertEqual(self.stat("connection_limit.cl.active_connections"), 5)
            self.assert_refused(port)
            self.assert_refused(port)
            # The open ones are untouched.
            for c in conns:
                c.request("GET", "/fixed")
                self.assertEqual(c.read_response().status, 200)
            self.assertEqual(self.stat("connection_limit.cl.limited_connections"), 2)
            self.assertEqual(self.stat("listener.127.0.0.1_%d.downstream_cx_overflow" % port), 2)
            # One goes; another may come.
            conns.pop().close()
            ok = H.wait_until(lambda: self.stat("connection_limit.cl.active_connections") == 4, 5)
            self.assertTrue(ok)
            conns += self.open_served(port, 1)
        finally:
            for c in conns:
                c.close()

    def test_global_connection_limit_spans_listeners_and_workers(self):
        a, b = H.free_port(), H.free_port()
        self.start([H.listener("a", a, self.vhosts()), H.listener("b", b, self.vhosts())],
                   overload_max=4)
        conns = self.open_served(a, 2) + self.open_served(b, 2)
        try:
            self.assertEqual(self.stat("server.total_connections"), 4)
            self.assert_refused(a)
            self.assert_refused(b)
            self.assertEqual(self.stat("listener.127.0.0.1_%d.downstream_global_cx_overflow" % a),
                             1)
            self.assertEqual(self.stat("listener.127.0.0.1_%d.downstream_global_cx_overflow" % b),
                             1)
            for c in conns:
                c.request("GET", "/fixed")
                self.assertEqual(c.read_response().status, 200)
            # The admin listener is exempt: an operator can still look (above).
        finally:
            for c in conns:
                c.close()

    def test_pipelined_requests_beyond_the_bound_wait_in_the_kernel(self):
        port = H.free_port()
        self.start([H.listener("main", port, self.vhosts())])
        n = 40
        req = b"GET /slow?ms=100 HTTP/1.1\r\nHost: t\r\n\r\n"
        c = H.RawConnection(port, timeout=20)
        try:
            # In batches, so that legate's reads see them arrive: once more than
            # PIPELINE_MAX wait, it stops reading and the rest stays queued
            # (until fewer wait: after about 9 responses of 100 ms here).
            for _ in range(n // 20):
                c.send(req * 20)
                time.sleep(0.05)
            time.sleep(0.1)
            waiting = rx_queue(port, c.sock.getsockname()[1])
            sys.stderr.write("bytes left in legate's receive queue: %s of %d sent\n"
                             % (waiting, n * len(req)))
            self.assertIsNotNone(waiting)
            self.assertGreater(waiting, 0, "legate read every pipelined request at once")
            for i in range(n):
                r = c.read_response()
                self.assertEqual(r.status, 200, "response %d" % i)
        finally:
            c.close()


if __name__ == "__main__":
    H.main()

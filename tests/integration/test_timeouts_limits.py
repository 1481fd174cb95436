#!/usr/bin/python3
"""Connection and stream timeouts (request_headers_timeout, idle_timeout,
stream_idle_timeout) and circuit breakers (max_requests, max_connections)."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


class TimeoutsAndLimitsTest(H.LegateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.up = cls.class_upstream()
        cls.port = H.free_port()
        limited = H.cluster("limited", [cls.up.port])
        limited["circuit_breakers"] = {"thresholds": [{"max_requests": 1, "max_connections": 8}]}
        # A second upstream, so that its connection counts are this cluster's alone.
        cls.pool_up = cls.class_upstream()
        short_idle = H.cluster("short_idle", [cls.pool_up.port])
        short_idle["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": {"idle_timeout": "0.5s"},
                "explicit_http_config": {"http_protocol_options": {}},
            }}
        one_conn = H.cluster("one_conn", [cls.up.port])
        one_conn["circuit_breakers"] = {"thresholds": [{"max_connections": 1}]}
        vhosts = [H.vhost("main", ["*"], [
            H.route_to("up", prefix="/up/", prefix_rewrite="/", timeout="0s"),
            H.route_to("limited", prefix="/limited/", prefix_rewrite="/"),
            H.route_to("one_conn", prefix="/one/", prefix_rewrite="/"),
            H.route_to("short_idle", prefix="/short/", prefix_rewrite="/"),
            H.route_direct(200, "ok\n", prefix="/ok"),
        ])]
        hcm = {"request_headers_timeout": "1s", "stream_idle_timeout": "1s",
               "common_http_protocol_options": {"idle_timeout": "1.5s"}}
        cfg = H.simple_config(cls.port, vhosts,
                              [H.cluster("up", [cls.up.port]), limited, one_conn, short_idle],
                              hcm_extra=hcm)
        # One worker, so per-worker circuit breakers see every request.
        cls.lg = cls.class_legate(cfg, cls.port, concurrency=1)

    def _closed_within(self, sock, seconds):
        """Read until EOF/reset; return (elapsed, bytes) or fail after `seconds`."""
        sock.settimeout(seconds)
        t0 = time.monotonic()
        data = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        except socket.timeout:
            self.fail("connection still open after %.1fs (got %r)" % (seconds, data[:200]))
        return time.monotonic() - t0, data

    def test_request_headers_timeout_cuts_a_slowloris(self):
        with socket.create_connection((H.LOOPBACK, self.port), timeout=5) as s:
            t0 = time.monotonic()
            s.sendall(b"GET /ok HTTP/1.1\r\n")
            # Trickle one header byte every 0.2 s: never finishes within 1 s.
            for b in b"X-Slow: aaaaaaaaaaaaaaaa":
                try:
                    s.sendall(bytes([b]))
                except OSError:
                    break
                time.sleep(0.2)
                if time.monotonic() - t0 > 3:
                    break
            elapsed, data = self._closed_within(s, 5)
            total = time.monotonic() - t0
        self.assertTrue(data.startswith(b"HTTP/1.1 408"), data[:100])
        self.assertLess(total, 4.0)
        print("slowloris cut after %.2fs" % total)

    def test_idle_keepalive_connection_is_closed(self):
        with H.RawConnection(self.port) as c:
            c.send(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            t0 = time.monotonic()
            elapsed, data = self._closed_within(c.sock, 5)
        self.assertEqual(data, b"")
        self.assertGreater(time.monotonic() - t0, 1.0)

    def test_stream_idle_timeout_on_a_hung_upstream(self):
        t0 = time.monotonic()
        r = H.http_request(self.port, "GET", "/up/hang", host="t", timeout=10)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 408, r)
        self.assertIn(b"stream timeout", r.body)
        self.assertLess(elapsed, 4.0)

    def test_stream_idle_timeout_spares_a_slow_but_live_stream(self):
        # 20 chunks, one every 0.3 s: 6 s in all, never 1 s without a byte.
        r = H.http_request(self.port, "GET", "/up/chunked?n=20&size=10&delay_ms=300", host="t",
                           timeout=20)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.body), 200)

    def test_max_requests_overflow(self):
        results = []

        def slow():
            results.append(H.http_request(self.port, "GET", "/limited/slow?ms=900", host="t",
                                          timeout=10))

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.3)  # the slow request is in flight (under the 1 s stream idle timeout)
        r = H.http_request(self.port, "GET", "/limited/fixed", host="t", timeout=10)
        t.join(10)
        self.assertEqual(r.status, 503, r)
        self.assertIn(b"overflow", r.body)
        self.assertEqual(results[0].status, 200)
        # Once it is done, the cluster takes requests again.
        self.assertEqual(H.http_request(self.port, "GET", "/limited/fixed", host="t").status, 200)

    def test_max_connections_overflow_and_reuse(self):
        results = []

        def slow():
            results.append(H.http_request(self.port, "GET", "/one/slow?ms=900", host="t",
                                          timeout=10))

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.3)
        r = H.http_request(self.port, "GET", "/one/fixed", host="t", timeout=10)
        t.join(10)
        self.assertEqual(r.status, 503, r)
        self.assertEqual(results[0].status, 200)
        # The one connection is now idle in the pool: reusing it is allowed.
        for _ in range(3):
            self.assertEqual(H.http_request(self.port, "GET", "/one/fixed", host="t").status, 200)


    def test_pool_closes_connections_idle_past_the_cluster_idle_timeout(self):
        before = self.pool_up.stats()
        for _ in range(3):  # one pooled connection, reused
            self.assertEqual(H.http_request(self.port, "GET", "/short/fixed", host="t").status, 200)
        mid = self.pool_up.stats()
        self.assertEqual(mid["connections"] - before["connections"], 1, "not reused")
        # idle_timeout 0.5 s: legate closes it, and the upstream sees the close.
        closed = H.wait_until(lambda: self.pool_up.stats()["active_connections"]
                              < mid["active_connections"], 3)
        self.assertTrue(closed, "the idle pooled connection was never closed")
        self.assertEqual(H.http_request(self.port, "GET", "/short/fixed", host="t").status, 200)
        self.assertEqual(self.pool_up.stats()["connections"] - mid["connections"], 1)

    def test_connection_closed_by_the_upstream_is_never_reused(self):
        before = self.pool_up.stats()
        ok = 0
        for _ in range(5):
            # The upstream answers keep-alive, then closes the idle connection
            # 100 ms later; the next request comes after that.
            r = H.http_request(self.port, "GET", "/short/fixed?then_close_ms=100", host="t")
            ok += r.status == 200
            time.sleep(0.3)
        self.assertEqual(ok, 5, "a request went to a connection the upstream had closed")
        self.assertEqual(self.pool_up.stats()["connections"] - before["connections"], 5)


if __name__ == "__main__":
    H.main()

#!/usr/bin/python3
"""legate's error answers: no route, refused or empty clusters, timeouts, upstream
resets before and after the response head, malformed requests, header limits."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


class ProxyErrorsTest(H.LegateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.up = cls.class_upstream()
        cls.port = H.free_port()
        refused_port = H.free_port()   # nothing listens there
        vhosts = [
            H.vhost("strict", ["strict.test"], [H.route_direct(200, "only\n", prefix="/only")]),
            H.vhost("main", ["main.test"], [
                H.route_to("up", prefix="/up/", prefix_rewrite="/"),
                H.route_to("up", prefix="/timeout/", prefix_rewrite="/", timeout="1s"),
                H.route_to("refused", prefix="/refused/", prefix_rewrite="/"),
                H.route_to("empty", prefix="/empty/", prefix_rewrite="/"),
                H.route_direct(200, "ok\n", prefix="/ok"),
            ]),
        ]
        clusters = [H.cluster("up", [cls.up.port]),
                    H.cluster("refused", [refused_port], connect_timeout="1s"),
                    H.cluster("empty", [])]
        cfg = H.simple_config(cls.port, vhosts, clusters, admin_port=H.free_port())
        cls.lg = cls.class_legate(cfg, cls.port, concurrency=2)

    def req(self, path, host="main.test", **kw):
        return H.http_request(self.port, "GET", path, host=host, **kw)

    def assert_still_serving(self):
        r = self.req("/ok")
        self.assertEqual((r.status, r.body), (200, b"ok\n"))

    # -- routing errors

    def test_no_route_404(self):
        self.assertEqual(self.req("/nothing", host="strict.test").status, 404)
        self.assertEqual(self.req("/only", host="strict.test").status, 200)
        self.assertEqual(self.req("/nothing", host="main.test").status, 404)

    def test_no_virtual_host_404(self):
        self.assertEqual(self.req("/ok", host="unknown.test").status, 404)

    # -- upstream errors

    def test_connection_refused_503(self):
        t0 = time.monotonic()
        r = self.req("/refused/fixed")
        self.assertEqual(r.status, 503, r)
        self.assertIn(b"upstream connect error", r.body)
        self.assertLess(time.monotonic() - t0, 5)
        self.assert_still_serving()

    def test_empty_cluster_503(self):
        r = self.req("/empty/fixed")
        self.assertEqual(r.status, 503, r)
        self.assert_still_serving()

    def test_route_timeout_504(self):
        t0 = time.monotonic()
        r = self.req("/timeout/hang", timeout=10)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 504, r)
        self.assertGreaterEqual(elapsed, 0.9, "timed out before the route's 1s timeout")
        self.assertLessEqual(elapsed, 3.0, "504 came %.2fs after the request" % elapsed)
        # a request that finishes within the timeout is fine
        r = self.req("/timeout/slow?ms=200")
        self.assertEqual((r.status, r.body), (200, b"slow\n"))

    def test_upstream_reset_before_response_503(self):
        before = self.up.stats()
        r = self.req("/up/reset")
        self.assertEqual(r.status, 503, r)
        after = self.up.stats()
        self.assertGreaterEqual(after["heads_total"] - before["heads_total"], 1)
        self.assert_still_serving()

    def _reset_mid(self, query):
        with H.RawConnection(self.port, timeout=10) as c:
            c.send(b"GET /up/reset-mid?%s HTTP/1.1\r\nHost: main.test\r\n\r\n" % query)
            data, how = c.read_until_close(timeout=10)
        self.assertIn(how, ("eof", "rst"), "legate kept the connection open after an upstream "
                                           "reset mid-body (%d bytes so far)" % len(data))
        head, sep, body = data.partition(b"\r\n\r\n")
        self.assertTrue(sep, "no complete response head: %r" % data[:300])
        self.assertRegex(head, rb"^HTTP/1\.1 200 ")
        return head.lower(), body

    def test_upstream_reset_mid_body_content_length(self):
        head, body = self._reset_mid(b"n=1000")
        if b"transfer-encoding: chunked" in head:
            self.assertFalse(body.endswith(b"0\r\n\r\n"), "a truncated body was terminated")
        else:
            self.assertIn(b"content-length: 1000000", head)
            self.assertLess(len(body), 1000000)
        self.assert_still_serving()

    def test_upstream_reset_mid_body_chunked(self):
        head, body = self._reset_mid(b"n=1000&chunked=1")
        self.assertNotIn(b"content-length", head)
        self.assertIn(b"transfer-encoding: chunked", head)
        self.assertFalse(body.endswith(b"0\r\n\r\n"), "a truncated chunked body got its last chunk")
        self.assertNotIn(b"\r\n0\r\n\r\n", body)
        self.assert_still_serving()

    # -- malformed requests

    def _expect_error_and_close(self, raw, statuses):
        with H.RawConnection(self.port, timeout=5) as c:
            c.send(raw)
            try:
                r = c.read_response()
            except H.ConnectionClosed as e:
                self.fail("no response (%s) to %r" % (e.how, raw[:80]))
            self.assertIn(r.status, statuses, r)
            data, how = c.read_until_close(5)
            self.assertEqual(data, b"", "bytes after the error response")
            self.assertIn(how, ("eof", "rst"), "connection left open after %d" % r.status)
        return r

    def test_malformed_request_line_400(self):
        for raw in (b"this is not http\r\n\r\n",
                    b"GET /a b HTTP/1.1\r\nHost: main.test\r\n\r\n",
                    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 32 + b"\r\n\r\n"):
            with self.subTest(raw=raw):
                self._expect_error_and_close(raw, (400,))
        self.assert_still_serving()

    def test_tls_hello_on_plaintext_port_400(self):
        """A TLS ClientHello sent to the plaintext port: its first byte is no valid
        method character, so the request line is already invalid; answer 400 and
        close at once rather than wait for a CRLF that never comes (Envoy does;
        otherwise such a client hangs until an idle timeout)."""
        hello = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 32
        self._expect_error_and_close(hello, (400,))

    def test_headers_over_60k_431(self):
        big = b"GET /ok HTTP/1.1\r\nHost: main.test\r\nX-Big: " + b"a" * (61 * 1024) + b"\r\n\r\n"
        self._expect_error_and_close(big, (431,))
        many = b"GET /ok HTTP/1.1\r\nHost: main.test\r\n" + b"".join(
            b"X-Part-%d: %s\r\n" % (i, b"b" * 16000) for i in range(4)) + b"\r\n"
        self._expect_error_and_close(many, (431,))
        # ~50 KiB is within the limit
        ok = b"GET /ok HTTP/1.1\r\nHost: main.test\r\nX-Big: " + b"c" * (50 * 1024) + b"\r\n\r\n"
        with H.RawConnection(self.port) as c:
            c.send(ok)
            self.assertEqual(c.read_response().status, 200)

    def test_101_headers_431(self):
        def with_headers(n):
            return (b"GET /ok HTTP/1.1\r\nHost: main.test\r\n"
                    + b"".join(b"X-H-%d: v\r\n" % i for i in range(n - 1)) + b"\r\n")
        self._expect_error_and_close(with_headers(101), (431,))
        with H.RawConnection(self.port) as c:
            c.send(with_headers(100))
            self.assertEqual(c.read_response().status, 200, "100 header fields must be accepted")


if __name__ == "__main__":
    H.main()

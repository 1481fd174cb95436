#!/usr/bin/python3
"""Self-test of the integration harness itself, without legate: upstream.py's
paths and counters, the raw client's parsing and close/reset detection, the
YAML writer, the /proc helpers. If this fails, the other modules' results mean
nothing."""

import hashlib
import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


class UpstreamTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = H.Upstream().start()
        cls.addClassCleanup(cls.up.kill)
        cls.port = cls.up.port

    def test_fixed_and_keepalive_counting(self):
        before = self.up.stats()
        with H.RawConnection(self.port) as c:
            for _ in range(5):
                c.request("GET", "/fixed")
                r = c.read_response()
                self.assertEqual((r.status, r.body), (200, b"fixed\n"))
        after = self.up.stats()
        self.assertEqual(after["requests"] - before["requests"], 5)
        self.assertEqual(after["heads_total"] - before["heads_total"], 5)
        self.assertEqual(after["connections"] - before["connections"], 1,
                         "stats connections must not be counted")

    def test_echo_headers(self):
        r = H.http_request(self.port, "POST", "/echo-headers?a=1", headers=[("X-Foo", "bar")], body=b"hi")
        e = r.json()
        self.assertEqual((e["method"], e["target"], e["version"]), ("POST", "/echo-headers?a=1", "HTTP/1.1"))
        self.assertIn(["X-Foo", "bar"], e["headers"])
        self.assertEqual(e["body_bytes"], 2)
        self.assertEqual(e["body_sha256"], hashlib.sha256(b"hi").hexdigest())
        self.assertTrue(e["raw_head"].startswith("POST /echo-headers?a=1 HTTP/1.1\r\n"))

    def test_heads_recorded(self):
        before = self.up.stats()
        H.get(self.port, "/fixed?marker=xyz")
        after = self.up.stats(since=before["heads_total"])
        self.assertEqual(len(after["heads"]), 1)
        self.assertIn("/fixed?marker=xyz", after["heads"][0]["raw"])

    def test_slow(self):
        t0 = time.monotonic()
        r = H.get(self.port, "/slow?ms=300")
        self.assertEqual(r.body, b"slow\n")
        self.assertGreaterEqual(time.monotonic() - t0, 0.29)

    def test_hang(self):
        with H.RawConnection(self.port, timeout=1) as c:
            c.request("GET", "/hang")
            with self.assertRaises(H.ConnectionClosed) as cm:
                c.read_response()
            self.assertEqual(cm.exception.how, "timeout")

    def test_reset(self):
        with H.RawConnection(self.port, timeout=5) as c:
            c.request("GET", "/reset")
            data, how = c.read_until_close(5)
            self.assertEqual((data, how), (b"", "rst"))

    def test_reset_mid(self):
        for q, framing in ((b"n=500", "length"), (b"n=500&chunked=1", "chunked")):
            with H.RawConnection(self.port, timeout=5) as c:
                c.send(b"GET /reset-mid?%s HTTP/1.1\r\nHost: x\r\n\r\n" % q)
                r = c.read_response()
                self.assertEqual((r.status, r.framing, r.complete), (200, framing, False))
                self.assertEqual(r.close_how, "rst")
                self.assertEqual(r.body, H.BodyGen.data(500))

    def test_chunked_response(self):
        r = H.get(self.port, "/chunked?n=7&size=333&trailer=1")
        self.assertEqual((r.framing, r.complete), ("chunked", True))
        self.assertEqual(r.body, H.BodyGen.data(7 * 333))
        self.assertEqual(r.trailers, ["X-Trailer: done"])

    def test_close_delimited(self):
        r = H.get(self.port, "/close-delimited?n=12345")
        self.assertEqual((r.framing, r.complete, r.close_how), ("eof", True, "eof"))
        self.assertIsNone(r.header("content-length"))
        self.assertIsNone(r.header("transfer-encoding"))
        self.assertEqual(r.body, H.BodyGen.data(12345))

    def test_status(self):
        self.assertEqual(H.get(self.port, "/status?code=503").status, 503)
        r = H.get(self.port, "/status?code=204")
        self.assertEqual((r.status, r.body, r.framing), (204, b"", "none"))

    def test_upload_content_length_and_chunked(self):
        body = H.BodyGen.data(300000)
        r = H.http_request(self.port, "POST", "/upload", body=body)
        self.assertEqual(r.json(), {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})
        chunked = b"".join(b"%x\r\n" % len(body[i:i + 70000]) + body[i:i + 70000] + b"\r\n"
                           for i in range(0, len(body), 70000)) + b"0\r\n\r\n"
        r = H.http_request(self.port, "POST", "/upload", headers=[("Transfer-Encoding", "chunked")],
                           body=chunked)
        self.assertEqual(r.json()["sha256"], hashlib.sha256(body).hexdigest())

    def test_upload_paced(self):
        n = 2 * 1000 * 1000
        t0 = time.monotonic()
        r = H.http_request(self.port, "POST", "/upload?rate=4000000", body=H.BodyGen.data(n))
        self.assertEqual(r.json()["bytes"], n)
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)

    def test_bytes_speed_and_content(self):
        n = 256 << 20
        h = hashlib.sha256()
        t0 = time.monotonic()
        with H.RawConnection(self.port, timeout=30) as c:
            c.request("GET", "/bytes?n=%d" % n)
            r = c.read_response(sink=h.update)
        secs = time.monotonic() - t0
        self.assertEqual((r.status, r.body_len, r.complete), (200, n, True))
        self.assertEqual(h.hexdigest(), H.BodyGen.sha256(n))
        sys.stderr.write("upstream /bytes: %.0f MB/s (with the client's sha256)\n" % (n / secs / 1e6))
        self.assertGreater(n / secs, 100e6, "upstream.py is too slow for the 1 GiB tests")

    def test_curl_against_upstream(self):
        p = H.curl(["-o", "-", "http://127.0.0.1:%d/chunked?n=3&size=5" % self.port])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, H.BodyGen.data(15))

    def test_stats_file(self):
        H.get(self.port, "/fixed")
        ok = H.wait_until(lambda: os.path.exists(self.up.stats_file), 3)
        self.assertTrue(ok)


class BodyGenTest(unittest.TestCase):
    def test_blocks_differ_and_slices_agree(self):
        n = 3 * H.BodyGen.base().__len__() + 5
        whole = H.BodyGen.data(n)
        self.assertEqual(len(whole), n)
        mib = 1 << 20
        self.assertNotEqual(whole[:mib], whole[mib:2 * mib])
        odd = b"".join(bytes(c) for c in H.BodyGen.iter_chunks(n, 65536 + 7))
        self.assertEqual(odd, whole)
        self.assertEqual(H.BodyGen.sha256(n), hashlib.sha256(whole).hexdigest())


class YamlWriterTest(unittest.TestCase):
    def test_shape(self):
        cfg = H.simple_config(10000, [H.vhost("backend", ["*"], [
            H.route_to("service_a", prefix="/api/", prefix_rewrite="/", timeout="2s"),
            H.route_direct(200, "exact\n", path="/exact")])],
            [H.cluster("service_a", [8080]), H.cluster("empty", [])], admin_port=9901,
            access_logs=[H.access_log("/tmp/x/a.log", "%REQ(:METHOD)% %RESPONSE_CODE%\n")])
        y = H.to_yaml(cfg)
        for line in ('        "@type": type.googleapis.com/envoy.extensions.filters.network.'
                     'http_connection_manager.v3.HttpConnectionManager',
                     '                        - "*"',
                     '                            prefix: /api/',
                     '                            timeout: 2s',
                     '                              inline_string: "exact\\n"',
                     '                          inline_string: "%REQ(:METHOD)% %RESPONSE_CODE%\\n"',
                     '                      port_value: 8080',
                     '        endpoints: []'):
            self.assertIn(line.strip(), [ln.strip() for ln in y.splitlines()], y)
        self.assertTrue(y.startswith("admin:\n  address:\n    socket_address:\n"))

    def test_scalars(self):
        for v, out in (("true", '"true"'), ("123", '"123"'), ("1s", "1s"), ("127.0.0.1", "127.0.0.1"),
                       ("*", '"*"'), ("a: b", '"a: b"'), ("", '""'), (5, "5"), (True, "true")):
            self.assertEqual(H.yaml_scalar(v), out)


class RawClientTest(unittest.TestCase):
    def test_close_vs_reset_vs_timeout(self):
        srv = socket.socket()
        srv.bind((H.LOOPBACK, 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        try:
            for mode in ("eof", "rst", "timeout"):
                c = H.RawConnection(port, timeout=2)
                s, _ = srv.accept()
                if mode == "rst":
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                if mode != "timeout":
                    s.close()
                data, how = c.read_until_close(0.5)
                self.assertEqual(how, mode)
                c.close()
                s.close()
        finally:
            srv.close()


class ProcHelpersTest(unittest.TestCase):
    def test_self(self):
        me = os.getpid()
        self.assertTrue(H.alive(me))
        self.assertGreater(H.rss_kib(me), 1000)
        self.assertEqual(H.proc_ppid(me), os.getppid())
        self.assertIn("test_harness", H.cmdline(me))
        self.assertTrue(re.match(r"^legate: worker 3\b", "legate: worker 3  ") and
                        H.ROLE_RE.match("legate: worker 3").group(2) == "3")

    def test_free_ports_distinct(self):
        ports = {H.free_port() for _ in range(20)}
        self.assertEqual(len(ports), 20)


if __name__ == "__main__":
    unittest.main(verbosity=2)

#!/usr/bin/python3
"""legate as an HTTP/1.1 proxy: routing, forwarding, keep-alive, framing, access logs.

Run from the repository root:  LEGATE_BIN=build/legate /usr/bin/python3 tests/integration/test_proxy_basic.py
"""

import datetime
import hashlib
import os
import re
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
CONCURRENCY = 2


def basic_vhosts(cluster="up"):
    return [
        H.vhost("vh-exact", ["exact.example.com"], [H.route_direct(200, "vh-exact\n", prefix="/")]),
        H.vhost("vh-suffix", ["*.example.com"], [H.route_direct(200, "vh-suffix\n", prefix="/")]),
        H.vhost("vh-suffix-long", ["*.foo.example.com"],
                [H.route_direct(200, "vh-suffix-long\n", prefix="/")]),
        H.vhost("vh-prefix", ["api.*"], [H.route_direct(200, "vh-prefix\n", prefix="/")]),
        H.vhost("vh-noroute", ["noroute.test"], [H.route_direct(200, "only\n", prefix="/only")]),
        H.vhost("default", ["*"], [
            H.route_direct(200, "exact\n", path="/exact"),
            H.route_direct(200, "prefix-exact\n", prefix="/exact"),
            H.route_direct(200, "direct\n", prefix="/direct"),
            H.route_direct(201, "created\n", prefix="/created"),
            H.route_to(cluster, prefix="/api/", prefix_rewrite="/"),
            H.route_to(cluster, prefix="/rw/", prefix_rewrite="/other/"),
            H.route_to(cluster, prefix="/echo-headers"),
        ]),
    ]


def header_values(echo, name):
    return [v for n, v in echo["headers"] if n.lower() == name.lower()]


class ProxyBasicTest(H.LegateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.up = cls.class_upstream()
        cls.port = H.free_port()
        cfg = H.simple_config(cls.port, basic_vhosts(), [H.cluster("up", [cls.up.port])],
                              admin_port=H.free_port())
        cls.lg = cls.class_legate(cfg, cls.port, concurrency=CONCURRENCY)
        cls.base = "http://127.0.0.1:%d" % cls.port

    # -- helpers

    def get(self, path, host="test", headers=()):
        return H.get(self.port, path, host=host, headers=headers)

    def echo(self, path="/api/echo-headers", headers=(), host="test", method="GET", body=None):
        r = H.http_request(self.port, method, path, headers=headers, body=body, host=host)
        self.assertEqual(r.status, 200, r)
        return r.json()

    # -- direct responses and curl

    def test_curl_direct_response(self):
        p = H.curl(["-o", "-", "-w", "\n%{http_code}", self.base + "/direct"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, b"direct\n\n200")

    def test_direct_response_status(self):
        r = self.get("/created")
        self.assertEqual((r.status, r.body), (201, b"created\n"))

    def test_curl_through_to_upstream(self):
        p = H.curl(["-o", "-", "-w", "\n%{http_code}", self.base + "/api/fixed"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, b"fixed\n\n200")

    # -- routing

    def test_exact_path_vs_prefix(self):
        self.assertEqual(self.get("/exact").body, b"exact\n")
        self.assertEqual(self.get("/exact?x=1").body, b"exact\n",
                         "an exact path route ignores the query string")
        self.assertEqual(self.get("/exactly").body, b"prefix-exact\n")
        self.assertEqual(self.get("/exact/sub").body, b"prefix-exact\n")

    def test_prefix_rewrite(self):
        e = self.echo("/api/echo-headers?q=1")
        self.assertEqual(e["target"], "/echo-headers?q=1")
        r = self.get("/rw/thing?x=1")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"path=/other/thing?x=1\n")

    def test_no_route_404(self):
        r = self.get("/nothing", host="noroute.test")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(self.get("/only", host="noroute.test").body, b"only\n")
        r = self.get("/not-routed-anywhere")
        self.assertEqual(r.status, 404, r)

    def test_virtual_hosts(self):
        cases = [
            ("exact.example.com", b"vh-exact\n"),
            ("EXACT.Example.COM", b"vh-exact\n"),              # case-insensitive
            ("exact.example.com:8080", b"vh-exact\n"),         # port ignored
            ("a.example.com", b"vh-suffix\n"),
            ("b.a.example.com:1", b"vh-suffix\n"),
            ("x.foo.example.com", b"vh-suffix-long\n"),        # longest suffix wins
            ("api.example.com", b"vh-suffix\n"),               # suffix before prefix
            ("api.other.org", b"vh-prefix\n"),
            ("API.other.org:443", b"vh-prefix\n"),
            ("example.com", b"direct\n"),                      # "*.example.com" needs a label
            ("other.org", b"direct\n"),                        # "*"
        ]
        for host, body in cases:
            with self.subTest(host=host):
                r = self.get("/direct", host=host)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, body)

    # -- forwarded request headers

    def test_host_forwarded(self):
        e = self.echo(host="Some.Host.test:1234")
        self.assertEqual(header_values(e, "host"), ["Some.Host.test:1234"])

    def test_x_forwarded_for(self):
        e = self.echo()
        self.assertEqual(header_values(e, "x-forwarded-for"), ["127.0.0.1"])
        e = self.echo(headers=[("X-Forwarded-For", "10.0.0.1")])
        self.assertEqual(header_values(e, "x-forwarded-for"), ["10.0.0.1, 127.0.0.1"])
        # Several are merged into one, in order, ours last.
        e = self.echo(headers=[("X-Forwarded-For", "10.0.0.1, 10.0.0.2"),
                               ("X-Forwarded-For", "10.0.0.3")])
        self.assertEqual(header_values(e, "x-forwarded-for"),
                         ["10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"])
        # A value that would push the merged list past 1 KiB is left out.
        long = ", ".join("10.0.%d.%d" % (i // 250, i % 250) for i in range(120))
        e = self.echo(headers=[("X-Forwarded-For", "10.9.9.9"), ("X-Forwarded-For", long)])
        self.assertEqual(header_values(e, "x-forwarded-for"), ["10.9.9.9, 127.0.0.1"])

    def test_x_request_id(self):
        e = self.echo()
        ids = header_values(e, "x-request-id")
        self.assertEqual(len(ids), 1, e["headers"])
        self.assertRegex(ids[0], UUID_RE)
        e2 = self.echo()
        self.assertNotEqual(header_values(e2, "x-request-id"), ids, "request ids must differ")
        e = self.echo(headers=[("X-Request-Id", "my-request-id-123")])
        self.assertEqual(header_values(e, "x-request-id"), ["my-request-id-123"])

    def test_hop_by_hop_headers_removed(self):
        e = self.echo(headers=[
            ("Connection", "keep-alive, X-Custom-Hop"),
            ("X-Custom-Hop", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Upgrade", "foo/1"),
            ("Proxy-Connection", "keep-alive"),
            ("X-End-To-End", "kept"),
        ])
        names = [n.lower() for n, _ in e["headers"]]
        for hop in ("x-custom-hop", "keep-alive", "te", "upgrade", "proxy-connection"):
            self.assertNotIn(hop, names, e["raw_head"])
        for v in header_values(e, "connection"):
            tokens = {t.strip().lower() for t in v.split(",")}
            self.assertTrue(tokens <= {"keep-alive", "close"},
                            "client's Connection header forwarded: %r" % v)
        self.assertEqual(header_values(e, "x-end-to-end"), ["kept"])

    # -- keep-alive

    def test_keepalive_one_client_connection(self):
        before = self.up.stats()
        with H.RawConnection(self.port) as c:
            for i in range(100):
                c.request("GET", "/api/fixed?i=%d" % i)
                r = c.read_response()
                self.assertEqual((r.status, r.body), (200, b"fixed\n"), "request %d" % i)
        after = self.up.stats()
        self.assertEqual(after["requests"] - before["requests"], 100)
        self.assertLessEqual(after["connections"] - before["connections"], CONCURRENCY * 2,
                             "upstream connections are not reused")

    def test_keepalive_separate_client_connections(self):
        before = self.up.stats()
        for i in range(100):
            r = self.get("/api/fixed?j=%d" % i)
            self.assertEqual((r.status, r.body), (200, b"fixed\n"), "request %d" % i)
        after = self.up.stats()
        self.assertEqual(after["requests"] - before["requests"], 100)
        self.assertLessEqual(after["connections"] - before["connections"], CONCURRENCY * 2,
                             "upstream connections are not reused across client connections")

    # -- HTTP/1.0

    def test_http10_closes_by_default(self):
        for path, body in (("/direct", b"direct\n"), ("/api/fixed", b"fixed\n")):
            with H.RawConnection(self.port) as c:
                c.send(b"GET %s HTTP/1.0\r\nHost: test\r\n\r\n" % path.encode())
                r = c.read_response()
                self.assertEqual((r.status, r.body), (200, body))
                self.assertTrue(r.complete)
                self.assertTrue(c.is_closed(5), "legate kept an HTTP/1.0 connection open")

    def test_http10_keepalive(self):
        with H.RawConnection(self.port) as c:
            for path, body in (("/direct", b"direct\n"), ("/api/fixed", b"fixed\n"),
                               ("/exact", b"exact\n")):
                c.send(b"GET %s HTTP/1.0\r\nHost: test\r\nConnection: keep-alive\r\n\r\n"
                       % path.encode())
                r = c.read_response()
                self.assertEqual((r.status, r.body), (200, body))
                self.assertEqual(r.framing, "length", "a kept-alive 1.0 response needs a length")

    def test_http10_client_never_gets_chunked(self):
        with H.RawConnection(self.port) as c:
            c.send(b"GET /api/chunked?n=5&size=100 HTTP/1.0\r\nHost: test\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertNotEqual(r.framing, "chunked", "chunked sent to an HTTP/1.0 client")
            self.assertTrue(r.complete)
            self.assertEqual(r.body, H.BodyGen.data(500))

    # -- Expect: 100-continue

    def test_expect_100_continue_raw(self):
        body = H.BodyGen.data(2048)
        with H.RawConnection(self.port, timeout=10) as c:
            c.send(b"POST /api/upload HTTP/1.1\r\nHost: test\r\nContent-Length: 2048\r\n"
                   b"Expect: 100-continue\r\n\r\n")
            c.settimeout(5)
            interim = c._read_until(b"\r\n\r\n")
            self.assertRegex(interim, rb"^HTTP/1\.1 100 [^\r\n]*\r\n")
            c.send(body)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"bytes": 2048, "sha256": hashlib.sha256(body).hexdigest()})

    def test_expect_100_continue_curl(self):
        path = os.path.join(H.new_tmpdir("expect"), "body.bin")
        body = H.BodyGen.data(4096)
        with open(path, "wb") as f:
            f.write(body)
        t0 = time.monotonic()
        p = H.curl(["-v", "--expect100-timeout", "10", "-H", "Expect: 100-continue",
                    "--data-binary", "@" + path, self.base + "/api/upload"])
        elapsed = time.monotonic() - t0
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"HTTP/1.1 100 Continue", p.stderr)
        self.assertIn(b'"sha256": "%s"' % hashlib.sha256(body).hexdigest().encode(), p.stdout)
        self.assertLess(elapsed, 5, "curl waited for a 100 Continue that did not come")

    # -- bodies and framing

    def test_chunked_request_body(self):
        sizes = [1, 10, 1000, 4096, 3, 65536, 7]
        data = H.BodyGen.data(sum(sizes))
        out, off = b"", 0
        for s in sizes:
            out += b"%x\r\n" % s + data[off:off + s] + b"\r\n"
            off += s
        out += b"0\r\n\r\n"
        with H.RawConnection(self.port) as c:
            c.send(b"POST /api/upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n" + out)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
            # the connection is still usable afterwards
            c.request("GET", "/direct")
            self.assertEqual(c.read_response().body, b"direct\n")

    def test_chunked_request_with_extension_and_trailer(self):
        with H.RawConnection(self.port) as c:
            c.send(b"POST /api/upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"bytes": 11, "sha256": hashlib.sha256(b"hello world").hexdigest()})

    def test_chunked_request_curl(self):
        path = os.path.join(H.new_tmpdir("chunked"), "body.bin")
        body = H.BodyGen.data(300000)
        with open(path, "wb") as f:
            f.write(body)
        p = H.curl(["-H", "Transfer-Encoding: chunked", "-H", "Expect:", "--data-binary", "@" + path,
                    self.base + "/api/upload"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b'"sha256": "%s"' % hashlib.sha256(body).hexdigest().encode(), p.stdout)

    def test_chunked_response(self):
        r = self.get("/api/chunked?n=50&size=1000")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.complete, r)
        self.assertEqual(r.body, H.BodyGen.data(50000))
        p = H.curl(["-o", "-", self.base + "/api/chunked?n=7&size=333&trailer=1"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, H.BodyGen.data(7 * 333))

    def test_request_ack_rides_on_the_response(self):
        """The listener starts connections in delayed-ACK mode (TCP_QUICKACK
        off after listen()): the request's ACK travels with the response
        rather than as a segment of its own. Seen on the wire, on lo."""
        try:
            sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        except PermissionError:
            self.skipTest("needs CAP_NET_RAW to watch lo")
        sniff.bind(("lo", 0))
        sniff.settimeout(0.2)
        self.addCleanup(sniff.close)

        def segments_to(client_port, until):
            """(flags, payload length) of each segment from legate to the client."""
            seen = []
            while time.monotonic() < until:
                try:
                    data, addr = sniff.recvfrom(65535)
                except socket.timeout:
                    continue
                ip = data[14:]
                if addr[2] == socket.PACKET_OUTGOING or ip[0] >> 4 != 4 or ip[9] != 6:
                    continue
                ihl = (ip[0] & 15) * 4
                tcp = ip[ihl:]
                sport, dport = struct.unpack("!HH", tcp[:4])
                if sport != self.port or dport != client_port:
                    continue
                payload = struct.unpack("!H", ip[2:4])[0] - ihl - (tcp[12] >> 4) * 4
                seen.append((tcp[13], payload))
                if tcp[13] & 0x01:  # FIN: the exchange is over
                    break
            return seen

        # A delayed ACK fires after 40 ms at the least; a response slower than
        # that (a crowded machine) legitimately brings one, hence 3 tries.
        tries = []
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as c:
                c.sendall(b"GET /direct HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                segs = segments_to(c.getsockname()[1], time.monotonic() + 3)
            after_syn = [s for s in segs if not s[0] & 0x02]
            tries.append(after_syn)
            if after_syn and after_syn[0][1] > 0:
                return  # the first segment after the handshake carries the response
        self.fail("each time, legate's first segment after the request was a bare ACK "
                  "(flags, payload): %r" % tries)

    def test_close_delimited_upstream_response(self):
        r = self.get("/api/close-delimited?n=100000")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.complete, r)
        self.assertEqual(r.body_len, 100000)
        self.assertEqual(r.body, H.BodyGen.data(100000))
        p = H.curl(["-o", "-", self.base + "/api/close-delimited?n=54321"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, H.BodyGen.data(54321))

    def test_head_request(self):
        with H.RawConnection(self.port) as c:
            c.request("HEAD", "/api/bytes?n=5000")
            r = c.read_response(method="HEAD")
            self.assertEqual(r.status, 200)
            c.request("GET", "/direct")
            r = c.read_response()
            self.assertEqual(r.body, b"direct\n", "bytes after a HEAD response")

    def test_pipelined_requests_in_order(self):
        reqs = (b"GET /direct HTTP/1.1\r\nHost: test\r\n\r\n"
                b"GET /api/echo-headers?i=2 HTTP/1.1\r\nHost: test\r\n\r\n"
                b"POST /api/upload HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"
                b"GET /exact HTTP/1.1\r\nHost: test\r\n\r\n"
                b"GET /api/fixed HTTP/1.1\r\nHost: test\r\n\r\n")
        with H.RawConnection(self.port) as c:
            c.send(reqs)
            r1 = c.read_response()
            r2 = c.read_response()
            r3 = c.read_response()
            r4 = c.read_response()
            r5 = c.read_response()
        self.assertEqual(r1.body, b"direct\n")
        self.assertEqual(r2.json()["target"], "/echo-headers?i=2")
        self.assertEqual(r3.json()["sha256"], hashlib.sha256(b"hello").hexdigest())
        self.assertEqual(r4.body, b"exact\n")
        self.assertEqual(r5.body, b"fixed\n")

    # -- access log

    DEFAULT_LINE = re.compile(
        r'^\[(?P<start>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<proto>\S+)" (?P<code>\d+) '
        r'(?P<flags>\S+) (?P<rx>\d+) (?P<tx>\d+) (?P<dur>\d+) (?P<ust>\S+) "(?P<xff>[^"]*)" '
        r'"(?P<ua>[^"]*)" "(?P<rid>[^"]*)" "(?P<auth>[^"]*)" "(?P<uh>[^"]*)"$')

    @staticmethod
    def _read_lines(path):
        try:
            with open(path) as f:
                return f.read().splitlines()
        except OSError:
            return []

    def _wait_lines(self, path, n, timeout=5.0):
        """The file's lines once it has at least n (polling up to timeout), after a
        short grace period so that extra, unexpected lines show up too."""
        H.wait_until(lambda: len(self._read_lines(path)) >= n, timeout, 0.1)
        time.sleep(0.3)
        return self._read_lines(path)

    def test_access_log(self):
        logdir = H.new_tmpdir("accesslog")
        default_log = os.path.join(logdir, "access.log")
        custom_log = os.path.join(logdir, "custom.log")
        port = H.free_port()
        cfg = H.simple_config(port, basic_vhosts(), [H.cluster("up", [self.up.port])],
                              admin_port=H.free_port(),
                              access_logs=[H.access_log(default_log),
                                           H.access_log(custom_log,
                                                        "%REQ(:METHOD)% %RESPONSE_CODE% %UPSTREAM_HOST%\n")])
        self.legate(cfg, port, concurrency=1)
        ua = "legate-it-accesslog/1.0"
        r1 = H.http_request(port, "GET", "/direct", host="accesslog.test",
                            headers=[("User-Agent", ua), ("X-Request-Id", "rid-1")])
        r2 = H.http_request(port, "POST", "/api/upload", host="accesslog.test", body=b"x" * 100,
                            headers=[("User-Agent", ua), ("X-Request-Id", "rid-2")])
        r3 = H.http_request(port, "GET", "/nowhere", host="accesslog.test",
                            headers=[("User-Agent", ua), ("X-Request-Id", "rid-3")])
        self.assertEqual((r1.status, r2.status, r3.status), (200, 200, 404))

        lines = self._wait_lines(default_log, 3)
        self.assertEqual(len(lines), 3, "one access-log line per request: %r" % lines)
        parsed = []
        for ln in lines:
            m = self.DEFAULT_LINE.match(ln)
            self.assertIsNotNone(m, "not Envoy's default format: %r" % ln)
            parsed.append(m.groupdict())
        by_rid = {p["rid"]: p for p in parsed}
        self.assertEqual(set(by_rid), {"rid-1", "rid-2", "rid-3"}, lines)
        now = datetime.datetime.now(datetime.timezone.utc)
        for p in parsed:
            self.assertRegex(p["start"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
            t = datetime.datetime.strptime(p["start"][:19], "%Y-%m-%dT%H:%M:%S").replace(
                tzinfo=datetime.timezone.utc)
            self.assertLess(abs((now - t).total_seconds()), 120, "START_TIME is not UTC now: %r" % p)
            self.assertEqual(p["proto"], "HTTP/1.1")
            self.assertEqual(p["ua"], ua)
            self.assertEqual(p["auth"], "accesslog.test")
        d = by_rid["rid-1"]
        self.assertEqual((d["method"], d["path"], d["code"], d["flags"], d["rx"], d["tx"], d["ust"], d["uh"]),
                         ("GET", "/direct", "200", "-", "0", "7", "-", "-"), d)
        u = by_rid["rid-2"]
        self.assertEqual((u["method"], u["code"], u["flags"], u["rx"], u["tx"]),
                         ("POST", "200", "-", "100", str(len(r2.body))), u)
        self.assertIn(u["path"], ("/api/upload", "/upload"), u)
        self.assertRegex(u["ust"], r"^\d+$")
        self.assertEqual(u["uh"], "127.0.0.1:%d" % self.up.port)
        self.assertEqual(by_rid["rid-3"]["code"], "404")

        custom = self._wait_lines(custom_log, 3)
        self.assertEqual(sorted(custom), sorted(["GET 200 -", "POST 200 127.0.0.1:%d" % self.up.port,
                                                 "GET 404 -"]), custom)


if __name__ == "__main__":
    H.main()

#!/usr/bin/python3
"""Request smuggling defences: every ambiguous or malformed framing is answered
with an error (400 unless stated), the connection is closed, and the upstream
receives nothing. Plus positive controls: what must keep working.

Each case is sent raw over its own connection. Cases where the head is bad must
not produce a single upstream byte; cases where only the chunked body is bad may
let the (valid) head through to the upstream, but the upstream must never see a
complete request, nor the request smuggled behind the bad bytes."""

import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
BAD = (400,)
# Any Transfer-Encoding other than a single final "chunked" is a smuggling
# attempt as far as a proxy is concerned: 400 and close (not 501, which would
# suggest the request was understood but merely unsupported).
BAD_TE = (400,)


def post(headers, body=b"", version=b"HTTP/1.1", path=b"/a"):
    return b"POST " + path + b" " + version + b"\r\n" + headers + b"\r\n" + body


HEAD_CASES = [
    # name, raw bytes, accepted statuses
    ("cl_and_te", post(b"Host: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                       b"0\r\n\r\n" + SMUGGLED), BAD),
    ("te_and_cl", post(b"Host: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n",
                       b"0\r\n\r\n" + SMUGGLED), BAD),
    ("duplicate_cl_equal", post(b"Host: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n", b"hello"), BAD),
    ("duplicate_cl_different", post(b"Host: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n",
                                    b"hello!" + SMUGGLED), BAD),
    ("cl_empty", post(b"Host: x\r\nContent-Length: \r\n", b"hello"), BAD),
    ("cl_plus", post(b"Host: x\r\nContent-Length: +5\r\n", b"hello"), BAD),
    ("cl_minus", post(b"Host: x\r\nContent-Length: -5\r\n", b"hello"), BAD),
    ("cl_hex", post(b"Host: x\r\nContent-Length: 0x5\r\n", b"hello"), BAD),
    ("cl_two_numbers", post(b"Host: x\r\nContent-Length: 5 5\r\n", b"hello"), BAD),
    ("cl_25_digits", post(b"Host: x\r\nContent-Length: " + b"1" * 25 + b"\r\n", b"hello"), BAD),
    ("cl_space_before_colon", post(b"Host: x\r\nContent-Length : 5\r\n", b"hello"), BAD),
    ("te_xchunked", post(b"Host: x\r\nTransfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), BAD_TE),
    ("te_chunked_identity", post(b"Host: x\r\nTransfer-Encoding: chunked, identity\r\n",
                                 b"0\r\n\r\n"), BAD_TE),
    ("te_chunked_chunked", post(b"Host: x\r\nTransfer-Encoding: chunked, chunked\r\n",
                                b"0\r\n\r\n"), BAD_TE),
    ("te_two_headers", post(b"Host: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                            b"0\r\n\r\n"), BAD_TE),
    ("te_vertical_tab", post(b"Host: x\r\nTransfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n"), BAD_TE),
    ("te_form_feed", post(b"Host: x\r\nTransfer-Encoding: \x0cchunked\r\n", b"0\r\n\r\n"), BAD_TE),
    ("te_on_http10", post(b"Host: x\r\nTransfer-Encoding: chunked\r\n",
                          b"5\r\nhello\r\n0\r\n\r\n", version=b"HTTP/1.0"), BAD),
    ("host_space_before_colon", b"GET /a HTTP/1.1\r\nHost : x\r\n\r\n", BAD),
    ("obs_fold", b"GET /a HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n b\r\n\r\n", BAD),
    ("obs_fold_tab", b"GET /a HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n\tb\r\n\r\n", BAD),
    ("whitespace_before_first_header", b"GET /a HTTP/1.1\r\n Host: x\r\n\r\n", BAD),
    ("bare_cr_in_value", b"GET /a HTTP/1.1\r\nHost: x\r\nX-Foo: a\rb\r\n\r\n", BAD),
    ("bare_cr_in_request_line", b"GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n", BAD),
    ("nul_in_value", b"GET /a HTTP/1.1\r\nHost: x\r\nX-Foo: a\x00b\r\n\r\n", BAD),
    ("invalid_name_paren", b"GET /a HTTP/1.1\r\nHost: x\r\nFo(o: x\r\n\r\n", BAD),
    ("invalid_name_at", b"GET /a HTTP/1.1\r\nHost: x\r\nFoo@: x\r\n\r\n", BAD),
    ("http11_no_host", b"GET /a HTTP/1.1\r\nX-Foo: y\r\n\r\n", BAD),
    ("two_hosts", b"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", BAD),
    ("host_with_space", b"GET /a HTTP/1.1\r\nHost: a b\r\n\r\n", BAD),
    ("host_with_slash", b"GET /a HTTP/1.1\r\nHost: a/b\r\n\r\n", BAD),
    ("bad_then_pipelined_good", b"GET /a HTTP/1.1\r\nHost : x\r\n\r\n" + SMUGGLED, BAD),
    ("bad_cl_then_pipelined_good", post(b"Host: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n",
                                        b"hello") + SMUGGLED, BAD),
]

CHUNKED_HEAD = b"Host: x\r\nTransfer-Encoding: chunked\r\n"
BODY_CASES = [
    ("chunk_size_17_hex_digits", post(CHUNKED_HEAD, b"10000000000000000\r\nhello\r\n0\r\n\r\n" + SMUGGLED), BAD),
    ("chunk_size_junk_letter", post(CHUNKED_HEAD, b"5x\r\nhello\r\n0\r\n\r\n" + SMUGGLED), BAD),
    ("chunk_size_junk_word", post(CHUNKED_HEAD, b"5 junk\r\nhello\r\n0\r\n\r\n" + SMUGGLED), BAD),
    ("chunk_missing_crlf_after_data", post(CHUNKED_HEAD, b"5\r\nhelloXX0\r\n\r\n" + SMUGGLED), BAD),
    ("chunk_data_longer_than_size", post(CHUNKED_HEAD, b"3\r\nhello\r\n0\r\n\r\n" + SMUGGLED), BAD),
]


class SmugglingTest(H.LegateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.up = cls.class_upstream()
        cls.port = H.free_port()
        vhosts = [
            H.vhost("vhost-a", ["vhost-a"], [H.route_direct(200, "vh-a\n", prefix="/x")]),
            H.vhost("vhost-b", ["vhost-b"], [H.route_direct(200, "vh-b\n", prefix="/x")]),
            H.vhost("default", ["*"], [H.route_to("up", prefix="/")]),
        ]
        cfg = H.simple_config(cls.port, vhosts, [H.cluster("up", [cls.up.port])],
                              admin_port=H.free_port())
        cls.lg = cls.class_legate(cfg, cls.port, concurrency=2)
        # warm the upstream connection pools, so that a legate that forwards a
        # head too early has an idle connection ready to do it on
        for _ in range(4):
            H.get(cls.port, "/fixed")

    def _send_bad(self, raw, statuses):
        """Send raw; expect one error response in `statuses`, then a close, nothing else."""
        with H.RawConnection(self.port, timeout=5) as c:
            c.send(raw)
            try:
                r = c.read_response()
            except H.ConnectionClosed as e:
                self.fail("connection %s without a response" % e.how)
            self.assertIn(r.status, statuses, "answered %d: %r" % (r.status, r))
            data, how = c.read_until_close(5)
            self.assertEqual(data, b"", "bytes after the error response (a second response?)")
            self.assertIn(how, ("eof", "rst"), "connection still open after the error response")

    def _check_head_case(self, raw, statuses):
        before = self.up.stats()
        self._send_bad(raw, statuses)
        time.sleep(0.2)
        after = self.up.stats(since=before["heads_total"])
        self.assertEqual(after["heads_total"], before["heads_total"],
                         "upstream received request heads: %r" % after["heads"])
        self.assertEqual(after["requests"], before["requests"])
        self.assertEqual(after["bad_requests"], before["bad_requests"])
        self.assertEqual(after["bytes_in"], before["bytes_in"], "upstream received bytes")

    def _check_body_case(self, raw, statuses):
        before = self.up.stats()
        self._send_bad(raw, statuses)
        time.sleep(0.2)
        after = self.up.stats(since=before["heads_total"])
        self.assertEqual(after["requests"], before["requests"],
                         "upstream received a complete request: %r" % after["heads"])
        self.assertLessEqual(after["heads_total"] - before["heads_total"], 1, after["heads"])
        for h in after["heads"]:
            self.assertNotIn("/smuggled", h["raw"], "the smuggled request reached the upstream")

    # -- positive controls

    def test_control_te_with_tab_works(self):
        before = self.up.stats()
        with H.RawConnection(self.port) as c:
            c.send(post(b"Host: x\r\nTransfer-Encoding:\tchunked\r\n", b"5\r\nhello\r\n0\r\n\r\n",
                        path=b"/upload"))
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"bytes": 5, "sha256": hashlib.sha256(b"hello").hexdigest()})
        self.assertEqual(self.up.stats()["requests"], before["requests"] + 1)

    def test_control_absolute_form_routes_by_uri_authority(self):
        with H.RawConnection(self.port) as c:
            c.send(b"GET /x HTTP/1.1\r\nHost: vhost-a\r\n\r\n")
            self.assertEqual(c.read_response().body, b"vh-a\n")
            c.send(b"GET http://vhost-b/x HTTP/1.1\r\nHost: vhost-a\r\n\r\n")
            self.assertEqual(c.read_response().body, b"vh-b\n")
            c.send(b"GET http://upstream.test/echo-headers?z=1 HTTP/1.1\r\nHost: vhost-a\r\n\r\n")
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        e = r.json()
        self.assertEqual(e["target"], "/echo-headers?z=1", "absolute-form not turned into origin-form")
        self.assertEqual([v for n, v in e["headers"] if n.lower() == "host"], ["upstream.test"])

    def _assert_reframed(self, e, body):
        hdr = [(n.lower(), v) for n, v in e["headers"]]
        cls_ = [v for n, v in hdr if n == "content-length"]
        tes = [v for n, v in hdr if n == "transfer-encoding"]
        if tes:
            self.assertEqual(tes, ["chunked"], e["raw_head"])
            self.assertEqual(cls_, [], "both Content-Length and Transfer-Encoding upstream")
        else:
            self.assertEqual(cls_, [str(len(body))], e["raw_head"])
        self.assertEqual(e["body_bytes"], len(body))
        self.assertEqual(e["body_sha256"], hashlib.sha256(body).hexdigest())
        raw = e["raw_head"]
        self.assertTrue(raw.endswith("\r\n\r\n"))
        self.assertNotIn("\r", raw.replace("\r\n", ""), "bare CR in the upstream head")
        self.assertNotIn("\n", raw.replace("\r\n", ""), "bare LF in the upstream head")
        for line in raw.split("\r\n")[1:]:
            if line:
                self.assertRegex(line, r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+: ", "odd upstream header line")

    def test_control_upstream_request_reframed(self):
        body = b"hello world"
        with H.RawConnection(self.port) as c:
            c.send(post(b"Host: x\r\nContent-Length: 11\r\n", body, path=b"/echo-headers"))
            self._assert_reframed(c.read_response().json(), body)
            c.send(post(CHUNKED_HEAD, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", path=b"/echo-headers"))
            self._assert_reframed(c.read_response().json(), body)
            c.send(b"GET /echo-headers HTTP/1.1\r\nHost: x\r\n\r\n")
            e = c.read_response().json()
        names = [n.lower() for n, _ in e["headers"]]
        self.assertNotIn("transfer-encoding", names)
        self.assertIn([v for n, v in e["headers"] if n.lower() == "content-length"], ([], ["0"]))

    def test_control_pipelined_valid_requests(self):
        with H.RawConnection(self.port) as c:
            c.send(post(b"Host: x\r\nContent-Length: 5\r\n", b"hello", path=b"/upload")
                   + b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(c.read_response().json()["bytes"], 5)
            self.assertEqual(c.read_response().body, b"fixed\n")


def _make(name, raw, statuses, body_level):
    def t(self):
        if body_level:
            self._check_body_case(raw, statuses)
        else:
            self._check_head_case(raw, statuses)
    t.__name__ = "test_" + name
    t.__doc__ = "%s -> %s, closed, upstream untouched" % (name, "/".join(map(str, statuses)))
    return t


for _name, _raw, _st in HEAD_CASES:
    setattr(SmugglingTest, "test_" + _name, _make(_name, _raw, _st, False))
for _name, _raw, _st in BODY_CASES:
    setattr(SmugglingTest, "test_" + _name, _make(_name, _raw, _st, True))


if __name__ == "__main__":
    H.main()

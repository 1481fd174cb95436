#!/usr/bin/python3
"""Bodies stream through legate with bounded memory: 1 GiB down and up, a slow
reader, a chunked upload and a slow upstream, with the worker's VmRSS sampled
every 100 ms and required to stay under 64 MiB.

legate runs with --concurrency 1 so that the one worker carries every byte."""

import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

GIB = 1 << 30
MIB = 1 << 20
RSS_LIMIT_KIB = 64 * 1024
SOCKET_TIMEOUT = 30.0


class Deadline:
    def __init__(self, seconds, what):
        self.end = time.monotonic() + seconds
        self.what = what

    def check(self):
        if time.monotonic() > self.end:
            raise AssertionError("%s did not finish in time" % self.what)


class LargeBodiesTest(H.LegateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.up = cls.class_upstream()
        cls.port = H.free_port()
        # Envoy semantics: the route timeout covers the whole response; 0s disables it.
        vhosts = [H.vhost("default", ["*"], [H.route_to("up", prefix="/", timeout="0s")])]
        cfg = H.simple_config(cls.port, vhosts, [H.cluster("up", [cls.up.port], connect_timeout="2s")],
                              admin_port=H.free_port())
        cls.lg = cls.class_legate(cfg, cls.port, concurrency=1)
        cls.worker = cls.lg.worker_pid(0)

    def setUp(self):
        super().setUp()
        # the worker must still be the same process (not a respawned one)
        self.assertEqual(self.lg.roles()["workers"].get(0), self.worker, "worker 0 was respawned")

    def assert_rss_bounded(self, sampler, what):
        self.assertTrue(sampler.samples, "no RSS samples for the worker (pid %d)" % self.worker)
        self.assertLess(sampler.max_kib, RSS_LIMIT_KIB,
                        "%s: worker VmRSS peaked at %d KiB (limit %d KiB)"
                        % (what, sampler.max_kib, RSS_LIMIT_KIB))
        sys.stderr.write("%s: worker VmRSS max %d KiB over %d samples\n"
                         % (what, sampler.max_kib, len(sampler.samples)))

    def download(self, n, deadline_s, pace_bps=None, read_size=64 * 1024, rcvbuf=None):
        """GET /bytes?n=N through legate; returns (response, sha256 hex, seconds)."""
        h = hashlib.sha256()
        dl = Deadline(deadline_s, "download of %d bytes" % n)
        t0 = time.monotonic()
        with H.RawConnection(self.port, timeout=SOCKET_TIMEOUT, rcvbuf=rcvbuf) as c:
            if pace_bps:
                c.big = bytearray(read_size)   # read at most read_size bytes per recv
            got = [0]

            def sink(piece):
                h.update(piece)
                got[0] += len(piece)
                dl.check()
                if pace_bps:
                    ahead = got[0] / pace_bps - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)

            c.request("GET", "/bytes?n=%d" % n)
            r = c.read_response(sink=sink)
        return r, h.hexdigest(), time.monotonic() - t0

    def upload(self, n, deadline_s, chunked=False, chunk_sizes=(MIB,), path="/upload"):
        dl = Deadline(deadline_s, "upload of %d bytes" % n)
        t0 = time.monotonic()
        with H.RawConnection(self.port, timeout=SOCKET_TIMEOUT) as c:
            if chunked:
                c.send(b"POST %s HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n" % path.encode())
                # the body generator's bytes, cut into chunks of the given sizes in turn
                ok = True
                pending = bytearray()
                size_iter = _cycle(chunk_sizes)
                want = next(size_iter)
                for part in H.BodyGen.iter_chunks(n, 256 * 1024):
                    pending += part
                    while len(pending) >= want:
                        ok = c.send(b"%x\r\n" % want + bytes(pending[:want]) + b"\r\n")
                        del pending[:want]
                        want = next(size_iter)
                        dl.check()
                        if not ok:
                            break
                    if not ok:
                        break
                if ok and pending:
                    ok = c.send(b"%x\r\n" % len(pending) + bytes(pending) + b"\r\n")
                if ok:
                    c.send(b"0\r\n\r\n")
            else:
                c.send(b"POST %s HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % (path.encode(), n))
                for part in H.BodyGen.iter_chunks(n):
                    if not c.send(part):
                        break
                    dl.check()
            r = c.read_response()
        return r, time.monotonic() - t0

    # -- tests

    def test_download_1gib(self):
        with H.RssSampler(self.worker) as s:
            r, sha, secs = self.download(GIB, 45)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.complete, r)
        self.assertEqual(r.body_len, GIB)
        self.assertEqual(sha, H.BodyGen.sha256(GIB), "downloaded bytes differ")
        sys.stderr.write("1 GiB download in %.1fs (%.0f MB/s)\n" % (secs, GIB / secs / 1e6))
        self.assert_rss_bounded(s, "1 GiB download")

    def test_upload_1gib(self):
        with H.RssSampler(self.worker) as s:
            r, secs = self.upload(GIB, 45)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"bytes": GIB, "sha256": H.BodyGen.sha256(GIB)})
        sys.stderr.write("1 GiB upload in %.1fs (%.0f MB/s)\n" % (secs, GIB / secs / 1e6))
        self.assert_rss_bounded(s, "1 GiB upload")

    def test_download_slow_reader(self):
        # 256 MiB read 64 KiB at a time, paced to 32 MB/s (~8 s) through a small
        # receive buffer. The upstream produces ~1 GB/s, so without backpressure
        # legate would have to hold almost all of the 256 MiB; with it, the worker
        # only keeps its bounded buffers (the rest waits in the kernel and upstream).
        n = 256 * MIB
        with H.RssSampler(self.worker) as s:
            r, sha, secs = self.download(n, 30, pace_bps=32 * 1000 * 1000, rcvbuf=256 * 1024)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.complete, r)
        self.assertEqual(sha, H.BodyGen.sha256(n))
        self.assert_rss_bounded(s, "slow-reader download")

    def test_chunked_upload(self):
        n = 384 * MIB
        with H.RssSampler(self.worker) as s:
            r, secs = self.upload(n, 30, chunked=True, chunk_sizes=(65536 + 7, MIB, 12345, 300000))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"bytes": n, "sha256": H.BodyGen.sha256(n)})
        self.assert_rss_bounded(s, "chunked upload")

    def test_upload_to_slow_upstream(self):
        # The upstream reads at 32 MB/s (~4 s for 128 MiB) while the client can send
        # far faster: legate must stop reading from the client instead of buffering.
        n = 128 * MIB
        with H.RssSampler(self.worker) as s:
            r, secs = self.upload(n, 30, path="/upload?rate=%d" % (32 * 1000 * 1000))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"bytes": n, "sha256": H.BodyGen.sha256(n)})
        self.assert_rss_bounded(s, "upload to a slow upstream")


def _cycle(seq):
    while True:
        for x in seq:
            yield x


if __name__ == "__main__":
    H.main()

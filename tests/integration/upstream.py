#!/usr/bin/python3
"""A small, controllable HTTP/1.1 upstream server for legate's integration tests.

    upstream.py --port N [--stats-file F]

Standard library only, raw sockets, one thread per connection, persistent
connections, request bodies framed by Content-Length or chunked. It prints
"READY <port>" on stdout once listening (``--port 0`` picks a free port) and
nothing else on stdout; diagnostics go to stderr.

Behaviour by path (query parameters are knobs):

  /fixed                  200, small fixed body "fixed\\n"
  /echo-headers           200, JSON: request line, headers as received (in order),
                          the raw head, the body's length and sha256
  /slow?ms=N              waits N ms, then 200 "slow\\n"
  /hang                   reads the request and never answers (until the peer closes)
  /reset                  RST (SO_LINGER 0) right after reading the request
  /reset-mid?n=N[&chunked=1][&delay_ms=D]
                          200 with Content-Length: 1000000 (or chunked), N body
                          bytes, waits D ms (default 200), then RST
  /chunked?n=N&size=S[&trailer=1][&delay_ms=D]
  /fixed?then_close_ms=N   keep-alive answer, then the connection is closed N ms later
  /early[?delay_ms=D&hold_ms=H]  200 without reading the request body, then silence
  /stall[?hold_ms=H]      reads the head only; the body is never read, no answer
                          chunked response of N chunks of S bytes (deterministic bytes)
  /close-delimited?n=B    HTTP/1.1 200, no Content-Length, no Transfer-Encoding,
                          Connection: close, B body bytes, then close
  /bytes?n=N              200, Content-Length N, deterministic body (see BodyGen)
  /upload[?rate=BPS]      reads the whole body (streamed; paced to BPS bytes/s if
                          given), 200 JSON {"bytes": n, "sha256": hex}
  /status?code=N          that status
  /stats[?since=SEQ]      JSON counters (see Stats.snapshot); not counted itself
  /control/fail?code=N    from now on every request (but control ones) answers N, as
                          a sick host would; code=0 makes it well again
  anything else           200 "path=<target>\\n"

Every response carries X-Upstream-Conn (connection id) and X-Upstream-Seq
(request sequence number). "Expect: 100-continue" is ignored unless the query
has send100=1 (a proxy is expected to handle it itself).

The module is also imported by the harness for BodyGen (the deterministic body).
"""

import argparse
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from urllib.parse import parse_qs, urlsplit

BLOCK_SIZE = 1 << 20
MAX_HEAD = 1 << 20          # refuse request heads over 1 MiB
RECV_SIZE = 1 << 20
HEADS_KEPT = 2000           # raw heads remembered (most recent)
HEAD_KEPT_BYTES = 16384     # each truncated to this many bytes
CONTROL_PATHS = ("/stats", "/control/fail")
FORCED = {"status": 0}  # /control/fail?code=N: every other request answers N (0: normal)


class BodyGen:
    """The deterministic body: 1 MiB blocks, block i = an 8-byte big-endian i
    followed by the tail of a fixed pseudo-random block (shake_256 of a seed).
    Every byte depends on its offset's block, so a dropped, duplicated or
    reordered block changes the hash."""

    _base = None

    @classmethod
    def base(cls):
        if cls._base is None:
            cls._base = hashlib.shake_256(b"legate-integration-body").digest(BLOCK_SIZE)
        return cls._base

    @classmethod
    def iter_chunks(cls, total, chunk=BLOCK_SIZE):
        """Yield memoryviews covering bytes [0, total) of the body, at most `chunk`
        bytes each (chunk must divide BLOCK_SIZE or be a multiple of it... any
        value works; blocks are split as needed). The views reuse one buffer:
        consume each before asking for the next."""
        buf = bytearray(cls.base())
        view = memoryview(buf)
        off = 0
        block = -1
        while off < total:
            b = off // BLOCK_SIZE
            if b != block:
                struct.pack_into(">Q", buf, 0, b)
                block = b
            start = off % BLOCK_SIZE
            n = min(chunk, BLOCK_SIZE - start, total - off)
            yield view[start:start + n]
            off += n

    @classmethod
    def data(cls, total):
        """The first `total` bytes as one bytes object (for small bodies)."""
        return b"".join(bytes(c) for c in cls.iter_chunks(total))

    _sha_cache = {}

    @classmethod
    def sha256(cls, total):
        if total not in cls._sha_cache:
            h = hashlib.sha256()
            for c in cls.iter_chunks(total):
                h.update(c)
            cls._sha_cache[total] = h.hexdigest()
        return cls._sha_cache[total]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = 0            # every accepted TCP connection
        self.control_conns = 0       # connections whose first request was a control path
        self.requests = 0            # complete non-control requests (head + whole body read)
        self.hc_requests = 0         # health checks (User-Agent: Envoy/HC), not in requests
        self.heads = 0               # non-control request heads received (complete or not)
        self.bad_requests = 0        # unparseable non-control heads
        self.incomplete = 0          # heads whose body never fully arrived
        self.bytes_in = 0            # bytes received on non-control connections
        self.active = 0
        self.recent = deque(maxlen=HEADS_KEPT)  # (seq, conn_id, raw head text)
        self.dirty = True

    def snapshot(self, since=None):
        with self.lock:
            heads = [{"seq": s, "conn": c, "raw": r} for (s, c, r) in self.recent
                     if since is None or s > since]
            return {
                "accepted": self.accepted,
                "connections": self.accepted - self.control_conns,
                "control_connections": self.control_conns,
                "requests": self.requests,
                "hc_requests": self.hc_requests,
                "heads_total": self.heads,
                "bad_requests": self.bad_requests,
                "incomplete": self.incomplete,
                "bytes_in": self.bytes_in,
                "active_connections": self.active,
                "heads": heads,
            }


STATS = Stats()


def log(*a):
    print("upstream[%d]:" % os.getpid(), *a, file=sys.stderr, flush=True)


class PeerClosed(Exception):
    pass


class BadRequest(Exception):
    pass


class Conn:
    """One accepted connection: a receive buffer and request parsing."""

    def __init__(self, sock, cid):
        self.sock = sock
        self.cid = cid
        self.buf = bytearray()
        self.control = None     # decided by the first request
        self.counted = 0        # bytes added to STATS.bytes_in by this connection
        self.big = bytearray(RECV_SIZE)
        self.bigview = memoryview(self.big)

    def _account(self, n):
        if self.control is not True:
            self.counted += n
            with STATS.lock:
                STATS.bytes_in += n

    def fill(self):
        data = self.sock.recv(RECV_SIZE)
        if not data:
            raise PeerClosed()
        self._account(len(data))
        self.buf += data

    def read_head(self):
        """Return the raw head (up to and including the blank line), or None if
        the peer closed cleanly between requests."""
        start = 0
        while True:
            i = self.buf.find(b"\r\n\r\n", start)
            j = self.buf.find(b"\n\n", start)
            cands = [x + 4 for x in (i,) if x >= 0] + [x + 2 for x in (j,) if x >= 0]
            if cands:
                end = min(cands)
                head = bytes(self.buf[:end])
                del self.buf[:end]
                return head
            if len(self.buf) > MAX_HEAD:
                raise BadRequest("head too large")
            start = max(0, len(self.buf) - 3)
            try:
                self.fill()
            except PeerClosed:
                if self.buf:
                    raise BadRequest("peer closed mid-head") from None
                return None

    def read_some(self, maxlen):
        """Up to maxlen body bytes (buffered first, then straight from the socket)."""
        if self.buf:
            n = min(maxlen, len(self.buf))
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        n = self.sock.recv_into(self.bigview[:min(maxlen, RECV_SIZE)])
        if n == 0:
            raise PeerClosed()
        self._account(n)
        return self.bigview[:n]

    def read_line(self, limit=4096):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > limit:
                raise BadRequest("line too long")
            self.fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def body_chunks(self, req):
        """Yield the decoded request body in pieces."""
        if req.chunked:
            while True:
                line = self.read_line()
                size_txt = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_txt, 16)
                except ValueError:
                    raise BadRequest("bad chunk size %r" % line) from None
                if size == 0:
                    # trailers until the blank line
                    while True:
                        t = self.read_line(65536)
                        if t in (b"\r\n", b"\n"):
                            return
                while size > 0:
                    piece = self.read_some(size)
                    size -= len(piece)
                    yield piece
                crlf = self.read_exact(2)
                if crlf != b"\r\n":
                    raise BadRequest("missing CRLF after chunk data")
        else:
            left = req.content_length
            while left > 0:
                piece = self.read_some(left)
                left -= len(piece)
                yield piece

    def send(self, data):
        self.sock.sendall(data)


class Request:
    def __init__(self, raw):
        self.raw = raw
        text = raw.decode("latin-1")
        lines = text.split("\n")
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
        while lines and lines[-1] == "":
            lines.pop()
        if not lines:
            raise BadRequest("empty head")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise BadRequest("bad request line %r" % lines[0])
        self.method, self.target, self.version = parts
        self.headers = []
        for ln in lines[1:]:
            if ":" not in ln:
                raise BadRequest("bad header line %r" % ln)
            name, value = ln.split(":", 1)
            self.headers.append((name, value.strip(" \t")))
        u = urlsplit(self.target)
        self.path = u.path
        self.query = {k: v[-1] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
        te = [v for n, v in self.headers if n.lower() == "transfer-encoding"]
        codings = [c.strip().lower() for v in te for c in v.split(",") if c.strip()]
        self.chunked = bool(codings) and codings[-1] == "chunked"
        cl = [v for n, v in self.headers if n.lower() == "content-length"]
        self.content_length = 0
        if not self.chunked and cl:
            try:
                self.content_length = int(cl[0])
            except ValueError:
                raise BadRequest("bad content-length %r" % cl[0]) from None
        conn_tokens = {t.strip().lower() for n, v in self.headers
                       if n.lower() == "connection" for t in v.split(",")}
        if self.version == "HTTP/1.1":
            self.keep_alive = "close" not in conn_tokens
        else:
            self.keep_alive = "keep-alive" in conn_tokens
        self.expect_continue = any(n.lower() == "expect" and v.lower() == "100-continue"
                                   for n, v in self.headers)

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


REASONS = {100: "Continue", 200: "OK", 201: "Created", 204: "No Content",
           301: "Moved Permanently", 302: "Found", 304: "Not Modified",
           400: "Bad Request", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}


def head_bytes(status, headers, conn, seq, keep_alive):
    lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Unknown"))]
    lines += ["%s: %s" % (n, v) for n, v in headers]
    lines.append("X-Upstream-Conn: %d" % conn.cid)
    lines.append("X-Upstream-Seq: %d" % seq)
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def simple(conn, req, seq, status, body, ctype="text/plain", keep_alive=True, extra=()):
    if isinstance(body, str):
        body = body.encode()
    hdrs = [("Content-Type", ctype)] + list(extra)
    no_body = status < 200 or status in (204, 304)
    if not no_body:
        hdrs.append(("Content-Length", str(len(body))))
    data = head_bytes(status, hdrs, conn, seq, keep_alive)
    if not no_body and req.method != "HEAD":
        data += body
    conn.send(data)


def rst_close(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def qint(req, name, default):
    try:
        return int(req.query.get(name, default))
    except ValueError:
        return default


def consume_body(conn, req):
    h = hashlib.sha256()
    n = 0
    for piece in conn.body_chunks(req):
        h.update(piece)
        n += len(piece)
    return n, h.hexdigest()


def handle(conn, req, seq):
    """Serve one request. Return True to keep the connection, False to close it
    (the socket may already be closed)."""
    path = req.path
    ka = req.keep_alive
    if req.expect_continue and req.query.get("send100") == "1":
        conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    if path == "/upload":
        rate = qint(req, "rate", 0)
        h = hashlib.sha256()
        n = 0
        t0 = time.monotonic()
        for piece in conn.body_chunks(req):
            h.update(piece)
            n += len(piece)
            if rate > 0:
                ahead = n / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        body_done(conn, req)
        simple(conn, req, seq, 200, json.dumps({"bytes": n, "sha256": h.hexdigest()}),
               "application/json", ka)
        return ka

    if path == "/early":
        # Answer before reading the body, then read nothing more: the proxy
        # must not wait for the rest of an upload that will never be read.
        time.sleep(qint(req, "delay_ms", 0) / 1000.0)
        simple(conn, req, seq, 200, "early\n", keep_alive=False)
        time.sleep(qint(req, "hold_ms", 30000) / 1000.0)
        return False
    if path == "/stall":
        # Read the head only: the body stays in the socket, no answer comes.
        time.sleep(qint(req, "hold_ms", 30000) / 1000.0)
        return False

    n, sha = consume_body(conn, req)
    body_done(conn, req)

    if FORCED["status"]:
        code = FORCED["status"]
        simple(conn, req, seq, code, "forced %d\n" % code, keep_alive=ka)
    elif path == "/fixed":
        simple(conn, req, seq, 200, "fixed\n", keep_alive=ka)
        if qint(req, "then_close_ms", 0) > 0:
            # A keep-alive answer, then the upstream closes the idle connection
            # on its own (a server idle timeout): the proxy must not reuse it.
            time.sleep(qint(req, "then_close_ms", 0) / 1000.0)
            return False
    elif path == "/echo-headers":
        body = {
            "method": req.method,
            "target": req.target,
            "version": req.version,
            "headers": [[k, v] for k, v in req.headers],
            "raw_head": req.raw.decode("latin-1"),
            "body_bytes": n,
            "body_sha256": sha,
            "conn": conn.cid,
            "seq": seq,
        }
        simple(conn, req, seq, 200, json.dumps(body), "application/json", ka)
    elif path == "/slow":
        time.sleep(qint(req, "ms", 1000) / 1000.0)
        simple(conn, req, seq, 200, "slow\n", keep_alive=ka)
    elif path == "/hang":
        conn.sock.settimeout(600)
        try:
            while conn.sock.recv(65536):
                pass
        except OSError:
            pass
        return False
    elif path == "/reset":
        rst_close(conn.sock)
        return False
    elif path == "/reset-mid":
        nbytes = qint(req, "n", 1000)
        delay = qint(req, "delay_ms", 200)
        if req.query.get("chunked") == "1":
            data = head_bytes(200, [("Content-Type", "application/octet-stream"),
                                    ("Transfer-Encoding", "chunked")], conn, seq, True)
            if nbytes > 0:
                data += b"%x\r\n" % nbytes + BodyGen.data(nbytes) + b"\r\n"
        else:
            data = head_bytes(200, [("Content-Type", "application/octet-stream"),
                                    ("Content-Length", "1000000")], conn, seq, True)
            data += BodyGen.data(nbytes)
        conn.send(data)
        time.sleep(delay / 1000.0)
        rst_close(conn.sock)
        return False
    elif path == "/chunked":
        count = qint(req, "n", 10)
        size = qint(req, "size", 100)
        chunk_delay = qint(req, "delay_ms", 0)
        conn.send(head_bytes(200, [("Content-Type", "application/octet-stream"),
                                   ("Transfer-Encoding", "chunked")], conn, seq, ka))
        if req.method != "HEAD":
            data = BodyGen.data(count * size)
            out = bytearray()
            for i in range(count):
                piece = data[i * size:(i + 1) * size]
                if not piece:
                    break
                out += b"%x\r\n" % len(piece) + piece + b"\r\n"
                if chunk_delay:  # paced: each chunk on the wire on its own
                    conn.send(bytes(out))
                    out.clear()
                    time.sleep(chunk_delay / 1000.0)
                if len(out) > 262144:
                    conn.send(bytes(out))
                    out.clear()
            if req.query.get("trailer") == "1":
                out += b"0\r\nX-Trailer: done\r\n\r\n"
            else:
                out += b"0\r\n\r\n"
            conn.send(bytes(out))
    elif path == "/close-delimited":
        nbytes = qint(req, "n", 1000)
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                  b"X-Upstream-Conn: %d\r\nConnection: close\r\n\r\n" % conn.cid)
        for c in BodyGen.iter_chunks(nbytes):
            conn.send(c)
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return False
    elif path == "/bytes":
        total = qint(req, "n", 1024)
        conn.send(head_bytes(200, [("Content-Type", "application/octet-stream"),
                                   ("Content-Length", str(total))], conn, seq, ka))
        if req.method != "HEAD":
            for c in BodyGen.iter_chunks(total):
                conn.send(c)
    elif path == "/status":
        code = qint(req, "code", 200)
        simple(conn, req, seq, code, "status %d\n" % code, keep_alive=ka)
    else:
        simple(conn, req, seq, 200, "path=%s\n" % req.target, keep_alive=ka)
    return ka


def body_done(conn, req=None):
    if conn.control is not True:
        hc = req is not None and any(k.lower() == "user-agent" and v == "Envoy/HC"
                                     for k, v in req.headers)
        with STATS.lock:
            if hc:
                STATS.hc_requests += 1
            else:
                STATS.requests += 1
            STATS.dirty = True


def serve_control(conn, req):
    if req.path == "/control/fail":
        FORCED["status"] = int(req.query.get("code") or 0)
        simple(conn, req, 0, 200, "forced=%d\n" % FORCED["status"], keep_alive=req.keep_alive)
    elif req.path == "/stats":
        since = req.query.get("since")
        snap = STATS.snapshot(int(since) if since not in (None, "") else None)
        simple(conn, req, 0, 200, json.dumps(snap), "application/json", req.keep_alive)
    return req.keep_alive


def connection_thread(sock, cid):
    conn = Conn(sock, cid)
    with STATS.lock:
        STATS.active += 1
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            try:
                raw = conn.read_head()
            except BadRequest as e:
                with STATS.lock:
                    STATS.bad_requests += 1
                    STATS.dirty = True
                    STATS.recent.append((-1, cid, bytes(conn.buf[:HEAD_KEPT_BYTES]).decode("latin-1")))
                log("conn %d: bad head: %s" % (cid, e))
                return
            if raw is None:
                return
            try:
                req = Request(raw)
            except BadRequest as e:
                if conn.control is None:
                    conn.control = False
                with STATS.lock:
                    STATS.bad_requests += 1
                    STATS.heads += 1
                    STATS.recent.append((STATS.heads, cid, raw[:HEAD_KEPT_BYTES].decode("latin-1")))
                    STATS.dirty = True
                log("conn %d: bad request: %s" % (cid, e))
                try:
                    conn.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass
                return
            if conn.control is None:
                conn.control = req.path in CONTROL_PATHS
                if conn.control:
                    with STATS.lock:
                        STATS.control_conns += 1
                        STATS.bytes_in -= conn.counted  # counted before we knew
            if conn.control:
                if not serve_control(conn, req):
                    return
                continue
            with STATS.lock:
                STATS.heads += 1
                seq = STATS.heads
                STATS.recent.append((seq, cid, raw[:HEAD_KEPT_BYTES].decode("latin-1")))
                STATS.dirty = True
            try:
                keep = handle(conn, req, seq)
            except (PeerClosed, BadRequest) as e:
                with STATS.lock:
                    STATS.incomplete += 1
                    STATS.dirty = True
                log("conn %d: request %d incomplete: %r" % (cid, seq, e))
                return
            if not keep:
                return
    except OSError as e:
        log("conn %d: %r" % (cid, e))
    finally:
        with STATS.lock:
            STATS.active -= 1
            STATS.dirty = True
        try:
            sock.close()
        except OSError:
            pass


def stats_writer(path, stop):
    def dump():
        with STATS.lock:
            if not STATS.dirty:
                return
            STATS.dirty = False
        snap = STATS.snapshot()
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(snap, f)
        os.replace(tmp, path)

    while not stop.wait(0.1):
        try:
            dump()
        except OSError as e:
            log("stats file: %r" % e)
    try:
        with STATS.lock:
            STATS.dirty = True
        dump()
    except OSError:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True, help="port to listen on (0: any free one)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--stats-file", default=None)
    args = ap.parse_args()

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.host, args.port))
    srv.listen(1024)
    port = srv.getsockname()[1]

    stop = threading.Event()
    writer = None
    if args.stats_file:
        writer = threading.Thread(target=stats_writer, args=(args.stats_file, stop), daemon=True)
        writer.start()

    def on_term(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    BodyGen.base()
    print("READY %d" % port, flush=True)
    cid = 0
    try:
        while True:
            try:
                sock, _ = srv.accept()
            except InterruptedError:
                continue
            cid += 1
            with STATS.lock:
                STATS.accepted += 1
                STATS.dirty = True
            threading.Thread(target=connection_thread, args=(sock, cid), daemon=True).start()
    finally:
        stop.set()
        if writer:
            writer.join(2)
        srv.close()


if __name__ == "__main__":
    main()

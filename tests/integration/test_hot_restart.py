#!/usr/bin/python3
"""Hot restart: a new generation takes the listening sockets and the counters
of the old one while the old one drains, and no client notices.

Every test runs legate from a copy of the binary in its own directory, so that
a test can replace the binary on disk (as an upgrade does) and send SIGUSR2,
which re-executes whatever is at that path with the next --restart-epoch."""

import datetime
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

ALT_BIN = os.environ.get("LEGATE_ALT_BIN",
                         os.path.join(os.environ.get("LEGATE_BUILD_DIR", "build"), "legate-alt"))
LAYOUT_BIN = os.environ.get("LEGATE_LAYOUT_BIN",
                            os.path.join(os.environ.get("LEGATE_BUILD_DIR", "build"),
                                         "legate-layout"))
SHMSTAT = os.path.join(os.environ.get("LEGATE_BUILD_DIR", "build"), "shmstat")
GIB = 1 << 30


def shmstat_json(base_id):
    out = subprocess.run([SHMSTAT, "--base-id", str(base_id), "--format", "json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
    if out.returncode != 0:
        raise AssertionError("shmstat failed: %s" % out.stderr)
    return json.loads(out.stdout)


def stat_value(base_id, name):
    js = shmstat_json(base_id)
    for st in js["stats"]:
        if st.get("name") == name:
            return st["value"]
    raise AssertionError("no stat %s in shmstat's output" % name)


def replace_binary(src, dst):
    """Put a binary in place the way an upgrade does: a new file, renamed over."""
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o755)
    os.rename(tmp, dst)


class NewConnectionClient(threading.Thread):
    """GET on a new connection per request until stopped; counts outcomes."""

    def __init__(self, port, path="/fixed"):
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.ok = 0
        self.failures = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                c.request("GET", self.path, headers={"Connection": "close"})
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    self.ok += 1
                else:
                    self.failures.append("status %d" % r.status)
            except Exception as e:  # noqa: BLE001 - every failure is counted
                self.failures.append(repr(e))


class KeepAliveClient(threading.Thread):
    """GETs on one persistent connection, reconnecting when legate closes it
    (connection: close while draining); counts outcomes."""

    def __init__(self, port, path="/fixed"):
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.ok = 0
        self.failures = []
        self.closes = 0
        self.stop = threading.Event()

    def run(self):
        c = None
        while not self.stop.is_set():
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                c.request("GET", self.path)
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    self.ok += 1
                else:
                    self.failures.append("status %d" % r.status)
                if r.will_close:
                    self.closes += 1
                    c.close()
                    c = None
            except Exception as e:  # noqa: BLE001 - every failure is counted
                self.failures.append(repr(e))
                c = None


class HotRestartTest(H.LegateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not os.access(ALT_BIN, os.X_OK):
            raise AssertionError("the second build %s is missing (cmake builds legate-alt)"
                                 % ALT_BIN)
        cls.up = cls.class_upstream()

    def config(self, ports, vhosts=None):
        """Listeners on `ports` (the first named main), all routing to the upstream."""
        vhosts = vhosts or [H.vhost("default", ["*"],
                                    [H.route_to("up", prefix="/", timeout="0s")])]
        return H.bootstrap([H.listener("main" if i == 0 else "l%d" % p, p, vhosts)
                            for i, p in enumerate(ports)],
                           [H.cluster("up", [self.up.port])], admin_port=self.admin)

    def start_legate(self, drain_s=3, extra=(), concurrency=2, vhosts=None, more_ports=()):
        self.port = H.free_port()
        self.admin = H.free_port()
        cfg = self.config([self.port] + list(more_ports), vhosts)
        lg = self.legate(cfg, self.port, start=False, concurrency=concurrency,
                         extra_args=["--drain-time-s", str(drain_s)] + list(extra))
        self.bin = os.path.join(lg.dir, "bin", "legate")
        os.makedirs(os.path.dirname(self.bin))
        replace_binary(H.LEGATE_BIN, self.bin)
        lg.args[0] = self.bin
        lg.start()
        self.lg = lg
        self.epoch = 0
        self.takeover_ms = []
        return lg

    def serving_supervisor(self):
        """From /server_info, which works whatever the binary's segment layout."""
        info = json.loads(H.get(self.admin, "/server_info").body)
        serving = [e["supervisor_pid"] for e in info["epochs"] if e["serving"]]
        self.assertEqual(len(serving), 1, info)
        return serving[0]

    def wait_log(self, pattern, timeout, after=0):
        rx = re.compile(pattern)
        ok = H.wait_until(lambda: rx.search(self.lg.log_text(limit=1 << 24)[after:]) is not None,
                          timeout)
        if not ok:
            self.fail("no log line matching %r within %ss; log:\n%s"
                      % (pattern, timeout, self.lg.log_text()))

    def log_len(self):
        return len(self.lg.log_text(limit=1 << 24))

    def start_by_hand(self, binary, concurrency):
        """The next generation (epoch 1) started by hand, as an operator
        would: its own process, logging to by-hand.log (p.log_path)."""
        p_log = os.path.join(self.lg.dir, "by-hand.log")
        with open(p_log, "w") as logf:
            p = subprocess.Popen([binary, "-c", self.lg.config_path, "--base-id",
                                  str(self.lg.base_id), "--restart-epoch", "1", "--concurrency",
                                  str(concurrency), "--drain-time-s", "3"],
                                 stdout=logf, stderr=subprocess.STDOUT)
        H.register_pid(p.pid)
        p.log_path = p_log
        return p

    def stop_by_hand(self, p):
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()

    def hot_restart(self, sig=signal.SIGUSR2, wait_old_exit=True, old_exit_timeout=20, old=None):
        """Signal the serving supervisor; wait until the next epoch serves (and,
        by default, until the old one has exited)."""
        mark = self.log_len()
        old = old or self.serving_supervisor()
        os.kill(old, sig)
        nxt = self.epoch + 1
        self.wait_log(r"took over from epoch %d \(pid %d\)" % (self.epoch, old), 20, mark)
        if wait_old_exit:
            self.wait_log(r"epoch %d \(pid %d\) has exited" % (self.epoch, old),
                          old_exit_timeout, mark)
        # From the signal's receipt to every new worker holding the sockets.
        log = self.lg.log_text(limit=1 << 24)[mark:]
        t = re.search(r"\[([\d:.-]+ [\d:.]+)\]\[\d+\]\[info\]\[supervisor\] SIG\w+: starting epoch "
                      r"%d" % nxt, log)
        r = re.search(r"\[([\d:.-]+ [\d:.]+)\]\[\d+\]\[info\]\[supervisor\] legate is ready: "
                      r".* epoch %d" % nxt, log)
        if t and r:
            fmt = "%Y-%m-%d %H:%M:%S.%f"
            self.takeover_ms.append(round((datetime.datetime.strptime(r.group(1), fmt)
                                           - datetime.datetime.strptime(t.group(1), fmt))
                                          .total_seconds() * 1000))
        self.epoch = nxt
        self.lg.processes()  # remember the new generation's pids for cleanup
        return old

    # -- the tests

    def test_zero_loss_under_load_across_five_upgrades(self):
        """wrk (keep-alive, c=50) and a client opening a connection per request,
        20 s, while legate is upgraded 5 times by SIGUSR2, the binary on disk
        alternating between two builds: every request 2xx, no socket error."""
        self.start_legate(drain_s=3)
        inode = H.listen_inode(self.port)
        self.assertIsNotNone(inode)
        before = stat_value(self.lg.base_id, "http.ingress_http.downstream_rq_total")
        wrk = subprocess.Popen(["wrk", "-t1", "-c50", "-d20s",
                                "http://127.0.0.1:%d/fixed" % self.port],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        H.register_pid(wrk.pid)
        newconn = NewConnectionClient(self.port)
        newconn.start()
        builds = []
        try:
            time.sleep(1.5)
            for i in range(5):
                replace_binary(ALT_BIN if i % 2 == 0 else H.LEGATE_BIN, self.bin)
                self.hot_restart()
                out = subprocess.run([self.bin, "--version"], stdout=subprocess.PIPE, text=True)
                builds.append(out.stdout.strip())
                time.sleep(0.8)
            wrk_out, _ = wrk.communicate(timeout=60)
        finally:
            newconn.stop.set()
            newconn.join(15)
            if wrk.poll() is None:
                wrk.kill()
        sys.stderr.write("wrk:\n%s\nnew-connection client: %d ok, %d failed\nbuilds: %s\n"
                         "SIGUSR2 to the new generation serving, ms: %s\n"
                         % (wrk_out, newconn.ok, len(newconn.failures), builds,
                            self.takeover_ms))
        self.assertEqual(len(self.takeover_ms), 5)
        self.assertEqual(builds, ["legate 0.1.0+alt", "legate 0.1.0"] * 2 + ["legate 0.1.0+alt"])
        self.assertRegex(self.lg.log_text(limit=1 << 24), r"legate 0\.1\.0\+alt starting")
        m = re.search(r"(\d+) requests in", wrk_out)
        self.assertIsNotNone(m, wrk_out)
        wrk_requests = int(m.group(1))
        self.assertGreater(wrk_requests, 1000, wrk_out)
        self.assertNotIn("Socket errors", wrk_out)
        self.assertNotIn("Non-2xx", wrk_out)
        self.assertEqual(newconn.failures, [])
        self.assertGreater(newconn.ok, 50)
        # The very same listening socket throughout.
        self.assertEqual(H.listen_inode(self.port), inode)
        # Counted once each, across six generations: wrk does not count the
        # requests in flight when its time is up (at most one per connection).
        made = wrk_requests + newconn.ok
        counted = stat_value(self.lg.base_id, "http.ingress_http.downstream_rq_total") - before
        self.assertGreaterEqual(counted, made)
        self.assertLessEqual(counted, made + 50)
        js = shmstat_json(self.lg.base_id)
        self.assertEqual(js["segment"]["epoch"], 5)
        gauges = {s["name"]: s["value"] for s in js["stats"] if "name" in s}
        self.assertEqual(gauges["server.hot_restart_epoch"], 5)
        self.assertEqual(gauges["server.hot_restart_generation"], 5)
        self.assertEqual(gauges["server.live"], 1)
        self.assertEqual(gauges["server.concurrency"], 2)

    def test_counters_exact_across_restarts(self):
        """Clients that count every request: downstream_rq_total equals what
        they made, across two restarts."""
        self.start_legate(drain_s=3)
        before = stat_value(self.lg.base_id, "http.ingress_http.downstream_rq_total")
        clients = [KeepAliveClient(self.port) for _ in range(4)] + [NewConnectionClient(self.port)]
        for c in clients:
            c.start()
        try:
            time.sleep(1)
            self.hot_restart()
            time.sleep(0.5)
            self.hot_restart()
            time.sleep(0.5)
        finally:
            for c in clients:
                c.stop.set()
            for c in clients:
                c.join(15)
        made = sum(c.ok for c in clients)
        self.assertEqual([f for c in clients for f in c.failures], [])
        self.assertGreater(sum(c.closes for c in clients[:4]), 0,
                           "the draining generation never said connection: close")
        counted = stat_value(self.lg.base_id, "http.ingress_http.downstream_rq_total") - before
        self.assertEqual(counted, made)
        self.assertEqual(stat_value(self.lg.base_id, "http.ingress_http.downstream_rq_2xx"),
                         stat_value(self.lg.base_id, "http.ingress_http.downstream_rq_total"))

    def test_accept_queue_served_by_the_next_generation(self):
        """Connections waiting in the accept queue during the hand-over (the old
        workers are stopped) are accepted and served by the new generation."""
        self.start_legate(drain_s=3)
        inode = H.listen_inode(self.port)
        sup = self.serving_supervisor()
        old_workers = list(self.lg.roles()["workers"].values())
        for p in old_workers:
            os.kill(p, signal.SIGSTOP)
        conns = []
        try:
            for _ in range(20):
                c = H.RawConnection(self.port, timeout=20)
                c.request("GET", "/fixed")
                conns.append(c)
            self.hot_restart(wait_old_exit=False, old=sup)
            for c in conns:
                r = c.read_response()
                self.assertEqual(r.status, 200, r)
        finally:
            for p in old_workers:
                os.kill(p, signal.SIGCONT)
            for c in conns:
                c.close()
        self.assertEqual(H.listen_inode(self.port), inode)

    def test_long_transfers_span_a_restart(self):
        """A 1 GiB download, a 1 GiB upload and a 10 s request started before a
        hot restart complete after it, intact. Meanwhile the admin shows both
        generations."""
        self.start_legate(drain_s=60, concurrency=1)
        results = {}

        def download():
            h = hashlib.sha256()
            t0 = time.monotonic()
            with H.RawConnection(self.port, timeout=60) as c:
                got = [0]

                def sink(piece):
                    h.update(piece)
                    got[0] += len(piece)
                    ahead = got[0] / 150e6 - (time.monotonic() - t0)  # ~7 s at 150 MB/s
                    if ahead > 0:
                        time.sleep(ahead)
                c.request("GET", "/bytes?n=%d" % GIB)
                results["download"] = (c.read_response(sink=sink), h.hexdigest())

        def upload():
            with H.RawConnection(self.port, timeout=60) as c:
                c.send(b"POST /upload?rate=150000000 HTTP/1.1\r\nHost: test\r\n"
                       b"Content-Length: %d\r\n\r\n" % GIB)
                for part in H.BodyGen.iter_chunks(GIB):
                    if not c.send(part):
                        break
                results["upload"] = c.read_response()

        def slow():
            results["slow"] = H.get(self.port, "/slow?ms=10000", timeout=30)

        threads = [threading.Thread(target=f, daemon=True) for f in (download, upload, slow)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        self.hot_restart(wait_old_exit=False)
        # Both generations, while they overlap: the admin (new generation's)
        # and shmstat's per-process view.
        info = json.loads(H.get(self.admin, "/server_info").body)
        epochs = sorted((e["epoch"], e["serving"]) for e in info["epochs"])
        self.assertEqual(epochs, [(0, False), (1, True)], info)
        self.assertEqual(info["command_line_options"]["restart_epoch"], 1)
        per = subprocess.run([SHMSTAT, "--base-id", str(self.lg.base_id), "--per-process",
                              "--filter", "^server.memory_allocated$"],
                             stdout=subprocess.PIPE, text=True, timeout=20).stdout
        self.assertRegex(per, r"worker 0@0\[\d+\]")
        self.assertRegex(per, r"worker 0@1\[\d+\]")
        for t in threads:
            t.join(90)
        r, sha = results["download"]
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body_len, GIB)
        self.assertEqual(sha, H.BodyGen.sha256(GIB))
        self.assertEqual(results["upload"].status, 200)
        self.assertEqual(results["upload"].json(), {"bytes": GIB, "sha256": H.BodyGen.sha256(GIB)})
        self.assertEqual(results["slow"].status, 200)
        # Nothing left in flight: the old generation exits before its deadline.
        self.wait_log(r"epoch 0 \(pid \d+\) has exited", 20)

    def test_reload_with_invalid_config_is_refused(self):
        """SIGHUP with a configuration that does not validate: refused, logged,
        counted; the running generation serves on. A valid one is loaded."""
        direct = [H.vhost("default", ["*"], [H.route_direct(200, "first\n", prefix="/")])]
        self.start_legate(vhosts=direct)
        self.assertEqual(H.get(self.port, "/").body, b"first\n")
        sup = self.serving_supervisor()
        good = self.lg.config_text
        with open(self.lg.config_path, "w") as f:
            f.write(good.replace("static_resources:", "static_resources:\n  bogus_field: 1", 1))
        mark = self.log_len()
        os.kill(sup, signal.SIGHUP)
        self.wait_log(r"SIGHUP: reload refused, the running configuration stays: .*bogus_field",
                      10, mark)
        self.assertEqual(stat_value(self.lg.base_id, "server.hot_restart.reload_rejected"), 1)
        self.assertEqual(self.serving_supervisor(), sup)
        self.assertEqual(H.get(self.port, "/").body, b"first\n")
        with open(self.lg.config_path, "w") as f:
            f.write(good.replace("first", "second"))
        self.hot_restart(sig=signal.SIGHUP)
        self.assertEqual(H.get(self.port, "/").body, b"second\n")
        self.assertEqual(stat_value(self.lg.base_id, "server.hot_restart.reload_rejected"), 1)

    def test_failed_new_generation_leaves_the_old_serving(self):
        """A new binary that crashes at start, one started by hand with a bad
        configuration, and a third generation while a restart is still in
        progress: each is refused or dies, and the running one serves on."""
        self.start_legate(drain_s=30)
        sup = self.serving_supervisor()
        # A binary that crashes at once, put in place and started by SIGUSR2.
        with open(self.bin + ".new", "w") as f:
            f.write("#!/bin/sh\nkill -SEGV $$\n")
        os.chmod(self.bin + ".new", 0o755)
        os.rename(self.bin + ".new", self.bin)
        mark = self.log_len()
        os.kill(sup, signal.SIGUSR2)
        self.wait_log(r"epoch 1 \(pid \d+\) was killed by signal SEGV before it served; "
                      r"epoch 0 keeps serving", 10, mark)
        self.assertEqual(H.get(self.port, "/fixed").status, 200)
        # By hand, with a configuration that does not validate.
        bad = os.path.join(self.lg.dir, "bad.yaml")
        with open(bad, "w") as f:
            f.write("static_resources: [\n")
        out = subprocess.run([H.LEGATE_BIN, "-c", bad, "--base-id", str(self.lg.base_id),
                              "--restart-epoch", "1"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=20)
        self.assertNotEqual(out.returncode, 0)
        self.assertEqual(H.get(self.port, "/fixed").status, 200)
        replace_binary(H.LEGATE_BIN, self.bin)
        # Now a real restart, with a request in flight so the old generation stays.
        slow = threading.Thread(target=lambda: H.get(self.port, "/slow?ms=6000", timeout=30),
                                daemon=True)
        slow.start()
        time.sleep(0.5)
        self.hot_restart(wait_old_exit=False)
        new_sup = self.serving_supervisor()
        mark = self.log_len()
        os.kill(new_sup, signal.SIGUSR2)
        self.wait_log(r"SIGUSR2: no hot restart: a hot restart is still in progress: epoch 0 "
                      r"\(pid %d\) is draining" % sup, 10, mark)
        out = subprocess.run([H.LEGATE_BIN, "-c", self.lg.config_path, "--base-id",
                              str(self.lg.base_id), "--restart-epoch", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=20)
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("refused the hot restart: a hot restart is still in progress", out.stdout)
        self.assertEqual(self.serving_supervisor(), new_sup)
        self.assertEqual(H.get(self.port, "/fixed").status, 200)
        slow.join(30)
        self.wait_log(r"epoch 0 \(pid %d\) has exited" % sup, 20)

    def test_by_hand_and_a_port_clash(self):
        """A new generation started by hand with --restart-epoch takes over; one
        whose configuration names a port another process holds dies before it
        serves, and the running generation is untouched."""
        self.start_legate(drain_s=3)
        inode = H.listen_inode(self.port)
        blocker = H.free_port()
        held = socket.socket()
        held.bind(("127.0.0.1", blocker))
        held.listen(1)
        try:
            with open(os.path.join(self.lg.dir, "clash.yaml"), "w") as f:
                f.write(H.to_yaml(self.config([self.port, blocker])))
            out = subprocess.run([H.LEGATE_BIN, "-c", os.path.join(self.lg.dir, "clash.yaml"),
                                  "--base-id", str(self.lg.base_id), "--restart-epoch", "1",
                                  "--concurrency", "1"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=30)
        finally:
            held.close()
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("cannot bind 127.0.0.1 port %d" % blocker, out.stdout)
        self.assertEqual(H.get(self.port, "/fixed").status, 200)
        self.assertEqual(stat_value(self.lg.base_id, "server.hot_restart_epoch"), 0)
        # By hand, for real this time.
        old = self.serving_supervisor()
        mark = self.log_len()
        p = self.start_by_hand(H.LEGATE_BIN, concurrency=1)
        try:
            self.wait_log(r"epoch 1 serves now", 20, mark)  # the old one's log
            ok = H.wait_until(lambda: not H.alive(old), 15)
            self.assertTrue(ok, "epoch 0 did not exit")
            self.assertEqual(H.listen_inode(self.port), inode)
            for _ in range(10):
                self.assertEqual(H.get(self.port, "/fixed").status, 200)
            self.assertEqual(stat_value(self.lg.base_id, "server.hot_restart_epoch"), 1)
            self.assertEqual(stat_value(self.lg.base_id, "server.concurrency"), 1)
        finally:
            self.stop_by_hand(p)
        self.assertEqual(p.returncode, 0)

    def test_old_supervisor_killed_during_drain(self):
        """The old supervisor dying mid-drain leaves the new one serving, and
        its processes' gauges stop counting."""
        self.start_legate(drain_s=30)
        holder = H.RawConnection(self.port, timeout=20)  # keeps the old generation draining
        holder.request("GET", "/fixed")
        self.assertEqual(holder.read_response().status, 200)
        old = self.hot_restart(wait_old_exit=False)
        os.kill(old, signal.SIGKILL)
        self.wait_log(r"epoch 0 \(pid %d\) has exited" % old, 10)
        for _ in range(20):
            self.assertEqual(H.get(self.port, "/fixed").status, 200)
        holder.close()
        ok = H.wait_until(lambda: stat_value(self.lg.base_id,
                                             "http.ingress_http.downstream_cx_active") == 0, 15)
        self.assertTrue(ok, "downstream_cx_active never went back to 0")

    def test_listeners_removed_and_added_by_a_reload(self):
        """A reload that drops one listener and adds another: the kept one is
        the same socket, the new one is bound fresh, the dropped one stays with
        the old generation until it exits."""
        kept, dropped, added = H.free_port(), H.free_port(), H.free_port()
        self.start_legate(drain_s=30, more_ports=[dropped])
        self.assertEqual(H.get(dropped, "/fixed").status, 200)
        kept_inode, dropped_inode = H.listen_inode(self.port), H.listen_inode(dropped)
        del kept
        holder = threading.Thread(target=lambda: H.get(self.port, "/slow?ms=3000", timeout=30),
                                  daemon=True)
        holder.start()
        time.sleep(0.3)
        with open(self.lg.config_path, "w") as f:
            f.write(H.to_yaml(self.config([self.port, added])))
        self.hot_restart(sig=signal.SIGHUP, wait_old_exit=False)
        self.assertEqual(H.listen_inode(self.port), kept_inode)
        self.assertEqual(H.get(added, "/fixed").status, 200)
        self.assertEqual(H.listen_inode(dropped), dropped_inode, "the dropped listener went early")
        holder.join(30)
        self.wait_log(r"epoch 0 \(pid \d+\) has exited", 20)
        self.assertIsNone(H.listen_inode(dropped))
        self.assertEqual(H.get(self.port, "/fixed").status, 200)

    def idle_close_times(self, strategy, drain_s, n=40):
        """n keep-alive connections, each served once and then idle; a hot
        restart; the seconds after the hand-over at which each was closed."""
        self.start_legate(drain_s=drain_s, extra=["--drain-strategy", strategy])
        conns = []
        for _ in range(n):
            c = H.RawConnection(self.port, timeout=drain_s + 10)
            c.request("GET", "/fixed")
            self.assertEqual(c.read_response().status, 200)
            conns.append(c)
        closed = [None] * n

        def wait_close(i):
            try:
                while conns[i].sock.recv(4096):
                    pass
            except OSError:
                pass
            closed[i] = time.monotonic()

        threads = [threading.Thread(target=wait_close, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        self.hot_restart(wait_old_exit=False)
        t0 = time.monotonic()
        for t in threads:
            t.join(drain_s + 10)
        for c in conns:
            c.close()
        self.assertTrue(all(x is not None for x in closed), closed)
        return sorted(round(x - t0, 2) for x in closed)

    def test_gradual_drain_spreads_idle_closes(self):
        times = self.idle_close_times("gradual", 4)
        sys.stderr.write("gradual: idle connections closed at %s s\n" % times)
        self.assertGreaterEqual(sum(1 for t in times if t < 2.0), 8, times)
        self.assertGreaterEqual(sum(1 for t in times if t >= 2.0), 8, times)
        self.assertLess(times[-1], 5.0, times)

    def test_immediate_drain_closes_idle_at_the_deadline(self):
        times = self.idle_close_times("immediate", 3)
        sys.stderr.write("immediate: idle connections closed at %s s\n" % times)
        self.assertGreaterEqual(times[0], 2.5, times)
        self.assertLess(times[-1], 4.0, times)

    def test_parent_shutdown_time_ends_a_stuck_old_generation(self):
        """A request that never ends keeps the old generation draining; after
        --parent-shutdown-time-s the new one tells it to exit, and it does."""
        self.start_legate(drain_s=60, extra=["--parent-shutdown-time-s", "2"])
        stuck = H.RawConnection(self.port, timeout=30)
        stuck.request("GET", "/hang")
        time.sleep(0.3)
        old = self.hot_restart(wait_old_exit=False)
        self.wait_log(r"parent shutdown time is up: telling epoch 0 \(pid %d\) to exit now" % old,
                      6)
        self.wait_log(r"epoch 0 \(pid %d\) has exited" % old, 8)
        self.assertEqual(stuck.sock.recv(100), b"")
        stuck.close()
        self.assertEqual(H.get(self.port, "/fixed").status, 200)

    def admin_stat(self, name):
        body = H.get(self.admin, "/stats?filter=%%5E%s%%24" % name.replace(".", "%5C.")).body
        for line in body.decode().splitlines():
            k, _, v = line.partition(": ")
            if k == name:
                return int(v)
        raise AssertionError("no %s in /stats: %r" % (name, body))

    def test_layout_mismatch_carries_counters(self):
        """To and from a build with another shared-memory layout: the sockets
        are handed over as usual, the new generation makes a fresh segment, and
        the old one's counters arrive in messages, including what it counted
        while draining."""
        self.start_legate(drain_s=3)
        inode = H.listen_inode(self.port)
        for _ in range(30):
            self.assertEqual(H.get(self.port, "/fixed").status, 200)
        made = 30
        for binary, tag in ((LAYOUT_BIN, "+layout"), (H.LEGATE_BIN, "")):
            replace_binary(binary, self.bin)
            mark = self.log_len()
            clients = [KeepAliveClient(self.port) for _ in range(2)]
            for c in clients:
                c.start()
            time.sleep(0.5)
            self.hot_restart()
            time.sleep(0.5)
            for c in clients:
                c.stop.set()
            for c in clients:
                c.join(15)
            self.assertEqual([f for c in clients for f in c.failures], [])
            made += sum(c.ok for c in clients)
            log = self.lg.log_text(limit=1 << 24)[mark:]
            self.assertRegex(log, r"legate 0\.1\.0%s starting" % re.escape(tag))
            self.assertIn("counters go over in messages", log)
            self.assertIn("statistics: a fresh segment", log)
            self.assertIn("counters of epoch %d carried over" % (self.epoch - 1), log)
            self.assertEqual(H.listen_inode(self.port), inode)
            self.assertEqual(self.admin_stat("http.ingress_http.downstream_rq_total"), made)
            self.assertEqual(self.admin_stat("http.ingress_http.downstream_rq_2xx"), made)

    def test_more_workers_than_the_segment_has_slots_for(self):
        """A new generation with more workers than the running segment's half
        holds: a fresh segment, counters carried over, sockets the same."""
        self.start_legate(drain_s=3, concurrency=2)
        inode = H.listen_inode(self.port)
        for _ in range(20):
            self.assertEqual(H.get(self.port, "/fixed").status, 200)
        old = self.serving_supervisor()
        p = self.start_by_hand(self.bin, concurrency=4)
        try:
            self.assertTrue(H.wait_until(lambda: not H.alive(old), 20), "epoch 0 did not exit")

            def by_hand_log():
                with open(p.log_path) as f:
                    return f.read()
            H.wait_until(lambda: "carried over" in by_hand_log(), 5)
            text = by_hand_log()
            self.assertIn("is too small for this generation", text)
            self.assertIn("counters of epoch 0 carried over", text)
            self.assertEqual(H.listen_inode(self.port), inode)
            self.assertEqual(H.get(self.port, "/fixed").status, 200)
            self.assertEqual(self.admin_stat("http.ingress_http.downstream_rq_total"), 21)
            self.assertEqual(self.admin_stat("server.concurrency"), 4)
        finally:
            self.stop_by_hand(p)

    def test_stale_instance_is_cleaned_up(self):
        """Every process of an instance SIGKILLed: its segment and runtime
        directory are found stale and replaced by the next start."""
        lg = self.start_legate()
        runtime = re.search(r"\] runtime directory (\S+)", lg.log_text()).group(1)
        lg.kill()
        self.assertTrue(os.path.isdir(runtime))
        self.assertTrue(os.path.exists("/dev/shm/legate.%d.stats" % lg.base_id))
        # The runtime directory's control socket refuses: stale.
        lg2 = self.legate(lg.config_text, self.port, concurrency=1, base_id=lg.base_id)
        text = lg2.log_text()
        self.assertIn("replacing the stale statistics segment", text)
        self.assertIn("removed the stale runtime directory %s" % runtime, text)
        self.assertFalse(os.path.exists(runtime))
        self.assertEqual(H.get(self.port, "/fixed").status, 200)


if __name__ == "__main__":
    H.main()

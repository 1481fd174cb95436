#!/usr/bin/python3
"""Process lifecycle: role names visible to ps, graceful SIGTERM with a request in
flight, SIGINT, the runtime directory's removal, a killed worker respawned while
load runs, and a short wrk run without errors."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

STOP_BOUND_S = 15.0


class LifecycleTest(H.LegateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.up = cls.class_upstream()

    def start(self, concurrency=2, extra_args=()):
        port = H.free_port()
        vhosts = [H.vhost("default", ["*"], [
            H.route_direct(200, "direct\n", prefix="/direct"),
            H.route_to("up", prefix="/up/", prefix_rewrite="/"),
        ])]
        cfg = H.simple_config(port, vhosts, [H.cluster("up", [self.up.port])], admin_port=H.free_port())
        return self.legate(cfg, port, concurrency=concurrency, extra_args=extra_args)

    def assert_all_gone(self, lg, rc, leftovers, what):
        self.assertEqual(leftovers, [], "%s: legate processes still alive: %r"
                         % (what, {p: H.cmdline(p) for p in leftovers}))
        self.assertIsNotNone(rc, "%s: the supervisor did not exit" % what)
        self.assertFalse(H.port_accepts(lg.listen_port), "%s: the listener port still accepts" % what)

    # -- roles

    def test_role_names(self):
        lg = self.start(concurrency=2)
        ok = H.wait_until(lambda: (lambda r: r["supervisor"] and len(r["listener"]) == 1
                                   and len(r["upstream manager"]) == 1
                                   and sorted(r["workers"]) == [0, 1])(lg.roles()), 5)
        roles = lg.roles()
        self.assertTrue(ok, "roles not as expected: %r" % roles)
        self.assertEqual(roles["supervisor"], lg.pid)
        self.assertEqual(roles["other"], {}, "unexpected processes")
        children = [roles["listener"][0], roles["workers"][0], roles["workers"][1],
                    roles["upstream manager"][0]]
        for p in children:
            self.assertEqual(H.proc_ppid(p), lg.pid, "%d (%s) is not a child of the supervisor"
                             % (p, H.cmdline(p)))
        # and what ps shows
        out = subprocess.run(["ps", "-o", "pid=,args=", "-p", ",".join(map(str, [lg.pid] + children))],
                             stdout=subprocess.PIPE, text=True, timeout=10).stdout
        shown = {int(ln.split(None, 1)[0]): ln.split(None, 1)[1].strip() for ln in out.splitlines() if ln.strip()}
        expect = {lg.pid: "legate: supervisor", children[0]: "legate: listener",
                  children[1]: "legate: worker 0", children[2]: "legate: worker 1",
                  children[3]: "legate: upstream manager"}
        for pid, name in expect.items():
            self.assertIn(pid, shown)
            self.assertTrue(re.match(re.escape(name) + r"(\s|$)", shown[pid]),
                            "ps shows %r for %s" % (shown[pid], name))

    def test_concurrency_one_has_one_worker(self):
        lg = self.start(concurrency=1)
        time.sleep(0.5)
        roles = lg.roles()
        self.assertEqual(sorted(roles["workers"]), [0], roles)

    # -- signals

    def test_sigterm_completes_inflight_request(self):
        lg = self.start(extra_args=["--drain-time-s", "5"])
        before = self.up.stats()
        result = {}

        def client():
            try:
                with H.RawConnection(lg.listen_port, timeout=15) as c:
                    c.request("GET", "/up/slow?ms=3000")
                    result["r"] = c.read_response()
            except Exception as e:  # noqa: BLE001 - reported below
                result["e"] = e

        t = threading.Thread(target=client, daemon=True)
        t.start()
        seen = H.wait_until(lambda: any("/slow" in h["raw"] for h in
                                        self.up.stats(since=before["heads_total"])["heads"]), 5, 0.05)
        self.assertTrue(seen, "the slow request never reached the upstream")
        pids = lg.processes()
        self.assertGreaterEqual(len(pids), 4)
        t0 = time.monotonic()
        lg.send_signal(signal.SIGTERM)
        t.join(15)
        self.assertFalse(t.is_alive(), "in-flight request did not finish")
        self.assertNotIn("e", result, "in-flight request failed: %r" % result.get("e"))
        r = result["r"]
        self.assertEqual((r.status, r.body), (200, b"slow\n"))
        self.assertTrue(r.complete)
        rc, leftovers = lg.stop(None, timeout=max(1.0, STOP_BOUND_S - (time.monotonic() - t0)))
        self.assert_all_gone(lg, rc, leftovers, "after SIGTERM")
        for p in pids:
            self.assertFalse(H.alive(p) and H.proc_starttime(p) == lg.known.get(p),
                             "pid %d survived" % p)
        sys.stderr.write("SIGTERM to exit: %.1fs, supervisor status %s\n" % (time.monotonic() - t0, rc))

    def test_sigint_stops(self):
        lg = self.start()
        self.assertEqual(H.get(lg.listen_port, "/direct").body, b"direct\n")
        rc, leftovers = lg.stop(signal.SIGINT, timeout=STOP_BOUND_S)
        self.assert_all_gone(lg, rc, leftovers, "after SIGINT")

    def test_runtime_directory_removed(self):
        lg = self.start()
        m = None
        for line in lg.log_text().splitlines():
            if "] runtime directory" in line:
                m = re.search(r"\] runtime directory\W*?(/[^\s'\"]+)", line)
                if m:
                    break
        if not m:
            self.skipTest("legate logged no 'runtime directory <path>' line; cannot check its removal")
        path = m.group(1).rstrip(".,;)")
        self.assertTrue(os.path.isdir(path), "runtime directory %s does not exist while running" % path)
        rc, leftovers = lg.stop(signal.SIGTERM, timeout=STOP_BOUND_S)
        self.assert_all_gone(lg, rc, leftovers, "after SIGTERM")
        self.assertFalse(os.path.exists(path), "runtime directory %s left behind" % path)

    # -- crash and respawn

    def test_statistics_segment_lifecycle(self):
        import struct
        lg = self.start(concurrency=2)
        path = "/dev/shm/legate.%d.stats" % lg.base_id
        self.assertTrue(os.path.exists(path), "no statistics segment while serving")
        with open(path, "rb") as f:
            head = f.read(40)
        magic, version, hsize, base_id, epoch, _created, pid, n_slots = struct.unpack(
            "<QIIIIqiI", head)
        self.assertEqual(magic, 0x3154415453474c00)
        self.assertEqual((base_id, pid, n_slots), (lg.base_id, lg.pid, 2 * (3 + 2)))
        self.assertEqual(oct(os.stat(path).st_mode & 0o777), "0o600")
        # A second instance with the same base id is refused while the first lives.
        port = H.free_port()
        cfg = H.simple_config(port, [H.vhost("v", ["*"], [H.route_direct(200, "x\n", prefix="/")])],
                              [])
        twin = H.Legate(cfg, port, concurrency=1, base_id=lg.base_id)
        self.addCleanup(twin.close)
        with self.assertRaises(AssertionError) as refused:
            twin.start(timeout=5)
        self.assertIn("epoch 0 of base id %d is running already" % lg.base_id,
                      str(refused.exception))
        # Killed outright, the instance leaves its segment behind: a new one
        # with that base id replaces it as stale instead of refusing.
        lg.kill()
        self.assertTrue(os.path.exists(path))
        again = H.Legate(cfg, port, concurrency=1, base_id=lg.base_id)
        self.addCleanup(again.close)
        again.start()
        self.assertIn("replacing the stale statistics segment", again.log_text())
        self.assertEqual(H.get(port, "/").body, b"x\n")
        # A clean stop removes it.
        rc, left = again.stop(signal.SIGTERM, timeout=STOP_BOUND_S)
        self.assertEqual((rc, left), (0, []))
        self.assertFalse(os.path.exists(path), "segment left behind after a clean stop")

    def test_crash_loop_is_rate_limited(self):
        lg = self.start(concurrency=2)
        other = lg.worker_pid(1)
        kills = 0
        deadline = time.monotonic() + 20
        last = None
        # Kill worker 0 every time it comes back: a crash loop.
        while kills < 8 and time.monotonic() < deadline:
            pid = lg.roles()["workers"].get(0)
            if pid and pid != last:
                os.kill(pid, signal.SIGKILL)
                last = pid
                kills += 1
            time.sleep(0.01)
        self.assertEqual(kills, 8, "worker 0 did not come back often enough")
        log = lg.log_text(1 << 20)
        delays = [int(m) for m in re.findall(r"worker 0 was killed by signal KILL; restarting it "
                                            r"in (\d+) ms", log)]
        # The first crashes are logged one by one, with a growing backoff...
        self.assertEqual(len(delays), 5, log[-3000:])
        self.assertEqual(delays, sorted(delays))
        self.assertGreater(delays[-1], delays[0])
        # ...then one line says it is a crash loop, instead of a line per crash.
        self.assertEqual(log.count("crash loop: worker 0"), 1, log[-3000:])
        # Meanwhile the other worker never stopped serving.
        self.assertEqual(lg.worker_pid(1), other)
        self.assertEqual(H.get(lg.listen_port, "/direct").body, b"direct\n")

    def test_killed_worker_is_respawned_under_load(self):
        lg = self.start(concurrency=2)
        roles = lg.roles()
        w0, w1 = roles["workers"][0], roles["workers"][1]
        listener, manager = roles["listener"][0], roles["upstream manager"][0]

        threads_n, duration = 6, 6.0
        results = []          # (t_start, t_end, ok, detail)
        lock = threading.Lock()
        t_begin = time.monotonic()
        stop_at = t_begin + duration

        def loop(k):
            i = 0
            while time.monotonic() < stop_at and i < 5000:
                i += 1
                path = "/direct" if (i + k) % 2 else "/up/fixed"
                want = b"direct\n" if path == "/direct" else b"fixed\n"
                ts = time.monotonic()
                try:
                    r = H.get(lg.listen_port, path, timeout=5)
                    ok = r.status == 200 and r.body == want
                    detail = r.status
                except Exception as e:  # noqa: BLE001 - counted as a failure
                    ok, detail = False, repr(e)
                with lock:
                    results.append((ts, time.monotonic(), ok, detail))
                time.sleep(0.005)   # bounded rate: ~200 new connections/s per thread

        threads = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(threads_n)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        t_kill = time.monotonic()
        os.kill(w0, signal.SIGKILL)
        new_w0 = H.wait_until(lambda: (lambda p: p if p and p != w0 else None)(lg.roles()["workers"].get(0)),
                              3.0, 0.05)
        t_respawn = time.monotonic() - t_kill
        for t in threads:
            t.join(duration + 15)
        self.assertFalse(any(t.is_alive() for t in threads), "load threads hung")

        self.assertTrue(new_w0, "worker 0 was not respawned within 3s: %r" % lg.roles())
        m = H.ROLE_RE.match(H.cmdline(new_w0) or "")
        self.assertTrue(m and m.group(0) == "legate: worker 0", H.cmdline(new_w0))
        roles = lg.roles()
        self.assertEqual(roles["workers"].get(1), w1, "worker 1 changed")
        self.assertEqual(roles["listener"], [listener], "listener changed")
        self.assertEqual(roles["upstream manager"], [manager], "upstream manager changed")
        self.assertTrue(H.alive(lg.pid), "supervisor died")

        failures = [r for r in results if not r[2]]
        after = [r for r in results if r[0] > t_kill + 0.5]
        sys.stderr.write("kill -9 worker: %d requests, %d failures, respawn after %.2fs\n"
                         % (len(results), len(failures), t_respawn))
        self.assertGreater(len(results), 50, "too few requests completed under load")
        self.assertLessEqual(len(failures), threads_n,
                             "more failures than connections in flight: %r" % failures[:10])
        for r in failures:
            self.assertLessEqual(r[0], t_kill + 0.5, "a request started after the kill failed: %r" % (r,))
        self.assertTrue(any(r[2] for r in after), "nothing succeeded after the kill")
        # and it keeps serving afterwards
        for _ in range(20):
            self.assertEqual(H.get(lg.listen_port, "/direct").body, b"direct\n")

    # -- wrk

    def test_wrk_load_without_errors(self):
        lg = self.start(concurrency=2)
        for path in ("/direct", "/up/fixed"):
            p = subprocess.run(["wrk", "-t1", "-c10", "-d3s", "--timeout", "2s",
                                "http://127.0.0.1:%d%s" % (lg.listen_port, path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stdout)
            self.assertNotIn("Non-2xx", p.stdout, p.stdout)
            self.assertNotIn("Socket errors", p.stdout, p.stdout)
            m = re.search(r"(\d+) requests in", p.stdout)
            self.assertTrue(m, p.stdout)
            self.assertGreater(int(m.group(1)), 100, p.stdout)
            sys.stderr.write("wrk %s: %s\n" % (path, " ".join(
                ln.strip() for ln in p.stdout.splitlines() if "requests in" in ln or "Requests/sec" in ln)))


if __name__ == "__main__":
    H.main()

#!/usr/bin/python3
"""Crash isolation: kill -9 of each role in turn, under wrk load.

- a worker costs only its own connections' requests in flight;
- the listener is respawned with the very same sockets (the supervisor keeps
  a copy), and the workers accept throughout;
- the upstream manager is respawned and routing goes on;
- the supervisor's death makes every child exit, leaving no process holding
  the port.

Each case prints wrk's counts of requests and failures."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

CONNECTIONS = 20
DURATION_S = 4


def parse_wrk(out):
    m = re.search(r"(\d+) requests in", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": int(m.group(1)) if m else 0,
        "socket_errors": sum(int(x) for x in errs.groups()) if errs else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


class CrashIsolationTest(H.LegateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.up = cls.class_upstream()

    def start(self):
        self.port = H.free_port()
        vhosts = [H.vhost("default", ["*"], [H.route_to("up", prefix="/")])]
        cfg = H.simple_config(self.port, vhosts, [H.cluster("up", [self.up.port])])
        return self.legate(cfg, self.port, concurrency=2, extra_args=["--drain-time-s", "5"])

    def load_while(self, action, close=False):
        """wrk for DURATION_S; `action` runs 1 s in. Returns wrk's counts."""
        cmd = ["wrk", "-t1", "-c%d" % CONNECTIONS, "-d%ds" % DURATION_S,
               "http://127.0.0.1:%d/fixed" % self.port]
        if close:
            cmd[1:1] = ["-H", "Connection: close"]
        wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        H.register_pid(wrk.pid)
        try:
            time.sleep(1)
            action()
            out, _ = wrk.communicate(timeout=DURATION_S + 30)
        finally:
            if wrk.poll() is None:
                wrk.kill()
        return parse_wrk(out), out

    def report(self, case, counts):
        sys.stderr.write("kill -9 %-17s: %d requests, %d socket errors, %d non-2xx\n"
                         % (case, counts["requests"], counts["socket_errors"], counts["non_2xx"]))

    def test_worker(self):
        lg = self.start()
        victim = lg.worker_pid(0)
        counts, out = self.load_while(lambda: os.kill(victim, signal.SIGKILL))
        self.report("worker", counts)
        self.assertGreater(counts["requests"], 1000, out)
        # Only that worker's connections lose their request in flight.
        self.assertLessEqual(counts["socket_errors"] + counts["non_2xx"], CONNECTIONS, out)
        self.assertTrue(H.wait_until(lambda: lg.roles()["workers"].get(0) not in (None, victim),
                                     10), "worker 0 not respawned")
        self.assertEqual(H.get(self.port, "/fixed").status, 200)

    def test_listener(self):
        lg = self.start()
        inode = H.listen_inode(self.port)
        victim = lg.roles()["listener"][0]
        # A new connection per request: accepting must go on throughout.
        counts, out = self.load_while(lambda: os.kill(victim, signal.SIGKILL), close=True)
        self.report("listener", counts)
        self.assertGreater(counts["requests"], 500, out)
        self.assertEqual(counts["socket_errors"], 0, out)
        self.assertEqual(counts["non_2xx"], 0, out)
        ok = H.wait_until(lambda: lg.roles()["listener"] and lg.roles()["listener"][0] != victim,
                          10)
        self.assertTrue(ok, "listener not respawned")
        # The respawned listener has the very same socket: nothing was rebound.
        self.assertEqual(H.listen_inode(self.port), inode)
        self.assertNotIn("cannot bind", lg.log_text())
        self.assertEqual(H.get(self.port, "/fixed").status, 200)

    def test_upstream_manager(self):
        lg = self.start()
        victim = lg.roles()["upstream manager"][0]
        counts, out = self.load_while(lambda: os.kill(victim, signal.SIGKILL))
        self.report("upstream manager", counts)
        self.assertGreater(counts["requests"], 1000, out)
        self.assertEqual(counts["socket_errors"], 0, out)
        self.assertEqual(counts["non_2xx"], 0, out)
        ok = H.wait_until(lambda: lg.roles()["upstream manager"]
                          and lg.roles()["upstream manager"][0] != victim, 10)
        self.assertTrue(ok, "upstream manager not respawned")

    def test_supervisor(self):
        lg = self.start()
        children = [p for p in lg.processes() if p != lg.pid]
        self.assertEqual(len(children), 4)
        result = {}

        def kill_supervisor():
            result["t0"] = time.monotonic()
            os.kill(lg.pid, signal.SIGKILL)
        counts, out = self.load_while(kill_supervisor)
        self.report("supervisor", counts)
        # Every child goes (parent-death signal: they drain, briefly, and exit).
        ok = H.wait_until(lambda: not any(H.alive(p) for p in children), 15)
        self.assertTrue(ok, "children outlived the supervisor: %r"
                        % [p for p in children if H.alive(p)])
        sys.stderr.write("children gone %.1f s after the supervisor\n"
                         % (time.monotonic() - result["t0"]))
        # Nothing holds the port.
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", self.port))
        finally:
            s.close()


if __name__ == "__main__":
    H.main()

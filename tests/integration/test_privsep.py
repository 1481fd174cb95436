#!/usr/bin/python3
"""Privilege separation: started as root, every child runs as the unprivileged
user, chrooted, with no_new_privs, no core dumps and a seccomp allow-list; the
listener keeps only CAP_NET_BIND_SERVICE. A system call outside a worker's
profile kills it with SIGSYS, and it is respawned.

CI runs as root. In a sanitizer build the children have no chroot and no
seccomp filter (LeakSanitizer needs /proc and ptrace when a process exits):
those checks are skipped there, and say so."""

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

IS_ROOT = os.geteuid() == 0
SANITIZE = os.environ.get("LEGATE_SANITIZE") == "1"
TESTHOOKS_BIN = os.environ.get("LEGATE_TESTHOOKS_BIN",
                               os.path.join(os.environ.get("LEGATE_BUILD_DIR", "build"),
                                            "legate-testhooks"))
CHROOT = "/var/empty/legate"
CAP_NET_BIND_SERVICE = 1 << 10


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def core_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max core file size"):
                return line.split()[4:6]
    return None


class PrivsepTest(H.LegateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.up = cls.class_upstream()

    def start(self, port=None, concurrency=2, binary=None, extra=()):
        port = port or H.free_port()
        self.admin = H.free_port()
        vhosts = [H.vhost("default", ["*"], [H.route_to("up", prefix="/")])]
        cfg = H.simple_config(port, vhosts, [H.cluster("up", [self.up.port])],
                              admin_port=self.admin)
        lg = self.legate(cfg, port, start=False, concurrency=concurrency, extra_args=list(extra))
        if binary:
            lg.args[0] = binary
        lg.start()
        self.port = port
        return lg

    def child_pids(self, lg):
        r = lg.roles()
        out = {"listener": r["listener"][0], "upstream manager": r["upstream manager"][0]}
        for i, p in r["workers"].items():
            out["worker %d" % i] = p
        return out

    def test_each_role_holds_only_what_it_needs(self):
        if not IS_ROOT:
            self.skipTest("needs root (CI runs as root): nothing to drop otherwise")
        lg = self.start()
        nobody = pwd.getpwnam("nobody")
        sup = proc_status(lg.pid)
        self.assertEqual(sup["Uid"].split()[0], "0", "the supervisor keeps root")
        report = []
        for role, pid in self.child_pids(lg).items():
            st = proc_status(pid)
            report.append("%-16s Uid %s Gid %s NoNewPrivs %s Seccomp %s CapEff %s root %s"
                          % (role, st["Uid"], st["Gid"], st["NoNewPrivs"], st["Seccomp"],
                             st["CapEff"], os.readlink("/proc/%d/root" % pid)))
            self.assertEqual(st["Uid"].split(), [str(nobody.pw_uid)] * 4, role)
            self.assertEqual(st["Gid"].split(), [str(nobody.pw_gid)] * 4, role)
            self.assertEqual(st["Groups"].split(), [str(nobody.pw_gid)], role)
            self.assertEqual(st["NoNewPrivs"], "1", role)
            self.assertEqual(core_limit(pid), ["0", "0"], role)
            want_caps = CAP_NET_BIND_SERVICE if role == "listener" else 0
            for k in ("CapEff", "CapPrm", "CapBnd"):
                self.assertEqual(int(st[k], 16), want_caps, "%s %s" % (role, k))
            self.assertEqual(int(st["CapAmb"], 16), 0, role)
            if SANITIZE:
                continue
            self.assertEqual(os.readlink("/proc/%d/root" % pid), CHROOT, role)
            # Every thread, ZeroMQ's included, runs the filter.
            for tid in os.listdir("/proc/%d/task" % pid):
                self.assertEqual(proc_status(int(tid))["Seccomp"], "2", "%s thread %s"
                                 % (role, tid))
        sys.stderr.write("\n".join(report) + "\n")
        st = os.stat(CHROOT)
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (0, 0o755))
        self.assertEqual(os.listdir(CHROOT), [])
        for _ in range(20):
            self.assertEqual(H.get(self.port, "/fixed").status, 200)
        self.assertIn("children run as uid %d gid %d (nobody)" % (nobody.pw_uid, nobody.pw_gid),
                      lg.log_text())

    def test_binds_port_80_while_no_worker_can(self):
        if not IS_ROOT:
            self.skipTest("needs root (CI runs as root)")
        probe = socket.socket()
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", 80))
        except OSError as e:
            self.skipTest("127.0.0.1:80 is taken on this machine: %s" % e)
        finally:
            probe.close()
        lg = self.start(port=80)
        self.assertEqual(H.get(80, "/fixed").status, 200)
        for role, pid in self.child_pids(lg).items():
            eff = int(proc_status(pid)["CapEff"], 16)
            if role == "listener":
                self.assertEqual(eff, CAP_NET_BIND_SERVICE)
            else:
                self.assertEqual(eff & CAP_NET_BIND_SERVICE, 0, role)
                self.assertNotEqual(proc_status(pid)["Uid"].split()[0], "0", role)

    def forbidden_call(self, lg, call):
        w = lg.worker_pid(0)
        mark = len(lg.log_text(limit=1 << 24))
        try:
            r = H.http_request(self.admin, "POST", "/test/forbidden_call?call=%s" % call)
            self.fail("the worker answered instead of dying: %r" % r)
        except (ConnectionError, OSError, H.ConnectionClosed):
            pass
        ok = H.wait_until(lambda: "was killed by signal SYS" in lg.log_text(limit=1 << 24)[mark:],
                          10)
        log = lg.log_text(limit=1 << 24)[mark:]
        self.assertTrue(ok, log)
        self.assertRegex(log, r"legate worker 0 \(pid %d\) called %s \(\d+\), which its seccomp "
                              r"profile does not allow: killed" % (w, {"open": "openat"}.get(call,
                                                                                          call)))
        ok = H.wait_until(lambda: lg.roles()["workers"].get(0) not in (None, w), 10)
        self.assertTrue(ok, "worker 0 was not respawned")
        for _ in range(10):
            self.assertEqual(H.get(self.port, "/fixed").status, 200)

    def test_a_forbidden_call_kills_the_worker_which_is_respawned(self):
        if SANITIZE:
            self.skipTest("sanitizer build: no seccomp filter in the children (LeakSanitizer "
                          "needs /proc and ptrace at exit)")
        lg = self.start(concurrency=1, binary=TESTHOOKS_BIN)
        self.forbidden_call(lg, "execve")
        self.forbidden_call(lg, "open")

    def test_the_endpoint_is_absent_from_ordinary_builds(self):
        self.start(concurrency=1)
        r = H.http_request(self.admin, "POST", "/test/forbidden_call?call=execve")
        self.assertEqual(r.status, 404)
        self.assertNotIn(b"forbidden_call", H.get(self.admin, "/help").body)

    def test_started_as_an_ordinary_user(self):
        """Everything works but the drop, with one warning; no_new_privs and
        seccomp still apply."""
        if not IS_ROOT:
            lg = self.start()
        else:
            if shutil.which("setpriv") is None:
                self.skipTest("setpriv (util-linux) is needed to start as another user")
            # nobody must be able to read the binary and the configuration.
            d = tempfile.mkdtemp(prefix="legate-unpriv-")
            self.addCleanup(shutil.rmtree, d, True)
            os.chmod(d, 0o755)
            shutil.copyfile(H.LEGATE_BIN, os.path.join(d, "legate"))
            os.chmod(os.path.join(d, "legate"), 0o755)
            port = H.free_port()
            self.admin = H.free_port()
            vhosts = [H.vhost("default", ["*"], [H.route_to("up", prefix="/")])]
            cfg = H.simple_config(port, vhosts, [H.cluster("up", [self.up.port])],
                                  admin_port=self.admin)
            lg = self.legate(cfg, port, start=False, concurrency=1)
            os.chmod(lg.dir, 0o755)
            os.chmod(lg.config_path, 0o644)
            os.chmod(os.path.dirname(lg.dir), 0o755)
            lg.args = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                       "--reset-env", os.path.join(d, "legate")] + lg.args[1:]
            lg.start()
            self.port = port
        text = lg.log_text()
        self.assertEqual(text.count("not started as root"), 1, text)
        self.assertEqual(H.get(self.port, "/fixed").status, 200)
        for role, pid in self.child_pids(lg).items():
            st = proc_status(pid)
            self.assertEqual(st["NoNewPrivs"], "1", role)
            if not SANITIZE:
                self.assertEqual(st["Seccomp"], "2", role)


if __name__ == "__main__":
    H.main()

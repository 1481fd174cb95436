#!/usr/bin/python3
"""EDS clusters fed from a file (eds_config.path_config_source): updates by
atomic rename under wrk load fail no request; a bad update is refused with
file, line and column in the log and the last good hosts kept; endpoint
health_status and priorities from the file count; a respawned upstream
manager starts from the last good file."""

import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def assignment(ports, extra=None):
    """A ClusterLoadAssignment for "svc" (YAML text)."""
    lines = ["cluster_name: svc", "endpoints:", "- lb_endpoints:"]
    for p in ports:
        lines.append("  - endpoint: {address: {socket_address: {address: 127.0.0.1, "
                     "port_value: %d}}}" % p)
        for k, v in (extra or {}).get(p, {}).items():
            lines.append("    %s: %s" % (k, v))
    return "\n".join(lines) + "\n"


class EdsTest(H.LegateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.u = [cls.class_upstream() for _ in range(3)]

    def setUp(self):
        super().setUp()
        self.dir = H.new_tmpdir("eds")
        self.path = os.path.join(self.dir, "svc.yaml")

    def write(self, text):
        """Replace the file atomically, as a control plane would."""
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.path)

    def start(self, concurrency=2, extra=None):
        listen, admin = H.free_port(), H.free_port()
        c = {"name": "svc", "type": "EDS", "connect_timeout": "1s",
             "eds_cluster_config": {"eds_config": {"resource_api_version": "V3",
                                                   "path_config_source": {"path": self.path}}}}
        c.update(extra or {})
        vhosts = [H.vhost("all", ["*"], [H.route_to("svc", prefix="/", timeout="3s")])]
        lg = self.legate(H.simple_config(listen, vhosts, [c], admin_port=admin), listen,
                         concurrency=concurrency)
        lg.admin = admin
        return lg

    def stat(self, lg, name):
        return H.read_stats(lg.base_id).get(name, 0)

    def hosts(self, lg):
        body = H.get(lg.admin, "/clusters").body.decode()
        return sorted(int(p) for p in set(re.findall(r"svc::127\.0\.0\.1:(\d+)::cx_total", body)))

    def wait_hosts(self, lg, ports, timeout=5):
        want = sorted(ports)
        if not H.wait_until(lambda: self.hosts(lg) == want, timeout):
            self.fail("hosts %s, not %s; log:\n%s" % (self.hosts(lg), want, lg.log_text()))

    def served(self, lg, n):
        before = [u.stats()["requests"] for u in self.u]
        statuses = [H.get(lg.listen_port, "/fixed").status for _ in range(n)]
        self.assertEqual(statuses, [200] * n)
        return [u.stats()["requests"] - b for u, b in zip(self.u, before)]

    def test_updates_under_load_fail_no_request(self):
        p = [u.port for u in self.u]
        self.write(assignment(p[:2]))
        lg = self.start()
        self.wait_hosts(lg, p[:2])
        got = self.served(lg, 20)
        self.assertEqual(got[2], 0)
        self.assertTrue(got[0] > 0 and got[1] > 0, got)

        wrk = subprocess.Popen(["wrk", "-t1", "-c20", "-d6s", "--timeout", "3s",
                                "http://127.0.0.1:%d/fixed" % lg.listen_port],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        H.register_pid(wrk.pid)
        sets = [p[1:], [p[2], p[0]], p, [p[0]], p[:2]]
        t0 = time.monotonic()
        took = []
        try:
            time.sleep(0.5)
            for s in sets:
                t = time.monotonic()
                self.write(assignment(s))
                self.wait_hosts(lg, s)
                took.append(time.monotonic() - t)
                time.sleep(0.6)
            out, _ = wrk.communicate(timeout=30)
        finally:
            if wrk.poll() is None:
                wrk.kill()
        m = re.search(r"(\d+) requests in", out)
        sys.stderr.write("EDS: %d updates under wrk load in %.1f s, each seen in %s ms; wrk "
                         "made %s requests\n%s\n"
                         % (len(sets), time.monotonic() - t0,
                            [round(x * 1000) for x in took], m and m.group(1), out))
        self.assertIsNotNone(m, out)
        self.assertGreater(int(m.group(1)), 1000)
        self.assertNotIn("Socket errors", out)
        self.assertNotIn("Non-2xx", out)
        self.assertGreaterEqual(self.stat(lg, "cluster.svc.update_success"), len(sets) + 1)
        self.assertGreaterEqual(self.stat(lg, "cluster.svc.membership_change"), len(sets))

    def test_a_bad_update_is_refused_and_the_last_good_kept(self):
        p = [u.port for u in self.u]
        self.write(assignment(p[:2]))
        lg = self.start()
        self.wait_hosts(lg, p[:2])
        self.write("cluster_name: svc\nendpoints:\n- lb_endpoints:\n"
                   "  - endpoint: {address: {socket_address: {address: 127.0.0.1, "
                   "port_value: 99999}}}\n")
        self.assertTrue(H.wait_until(lambda: self.stat(lg, "cluster.svc.update_rejected") == 1, 5))
        log = lg.log_text()
        self.assertIn("%s:4:" % self.path, log)
        self.assertIn("port_value: 99999 is out of range", log)
        self.assertIn("EDS update refused", log)
        self.write("cluster_name: other\n")
        self.assertTrue(H.wait_until(lambda: self.stat(lg, "cluster.svc.update_rejected") == 2, 5))
        self.assertEqual(self.hosts(lg), sorted(p[:2]))
        got = self.served(lg, 10)
        self.assertEqual(got[2], 0)
        # A good one after the bad ones is taken.
        self.write(assignment(p[2:]))
        self.wait_hosts(lg, p[2:])
        self.assertEqual(self.served(lg, 5), [0, 0, 5])

    def test_health_status_and_priorities_from_the_file(self):
        p = [u.port for u in self.u]
        text = assignment(p[:2], {p[0]: {"health_status": "UNHEALTHY"}})
        text += ("- priority: 1\n  lb_endpoints:\n  - endpoint: {address: {socket_address: "
                 "{address: 127.0.0.1, port_value: %d}}}\n" % p[2])
        self.write(text)
        lg = self.start()
        self.wait_hosts(lg, p)
        # P0 has one of two hosts healthy: 50% x 1.4 = 70% of the traffic stays
        # there (on the healthy one), the rest fails over to P1.
        got = self.served(lg, 200)
        sys.stderr.write("EDS P0 (1 of 2 healthy) / P1: %s\n" % got)
        self.assertEqual(got[0], 0)
        self.assertTrue(110 <= got[1] <= 170 and got[1] + got[2] == 200, got)
        body = H.get(lg.admin, "/clusters").body.decode()
        self.assertIn("svc::127.0.0.1:%d::health_flags::/failed_eds_health" % p[0], body)
        self.assertIn("svc::127.0.0.1:%d::priority::1" % p[2], body)

    def test_a_respawned_manager_starts_from_the_last_good_file(self):
        p = [u.port for u in self.u]
        self.write(assignment(p[1:]))
        lg = self.start()
        self.wait_hosts(lg, p[1:])
        old = lg.roles()["upstream manager"]
        self.assertEqual(len(old), 1)
        os.kill(old[0], signal.SIGKILL)
        self.assertTrue(H.wait_until(
            lambda: lg.roles()["upstream manager"] not in ([], old), 5), lg.log_text())
        self.write(assignment(p))  # an update the new manager must get as well
        self.wait_hosts(lg, p)
        self.assertEqual(sorted(x > 0 for x in self.served(lg, 30)), [True, True, True])

    def test_slow_start_ramps_a_new_host_up(self):
        p = [u.port for u in self.u]
        self.write(assignment(p[:1]))
        lg = self.start(concurrency=1, extra={"round_robin_lb_config": {"slow_start_config": {
            "slow_start_window": "6s", "aggression": {"default_value": 1.0},
            "min_weight_percent": {"value": 10}}}})
        self.wait_hosts(lg, p[:1])
        self.write(assignment(p[:2]))
        self.wait_hosts(lg, p[:2])
        t0 = time.monotonic()
        early = self.served(lg, 50)
        took = time.monotonic() - t0
        time.sleep(6.2)
        late = self.served(lg, 100)
        sys.stderr.write("slow start (window 6 s): the new host took %d of the first 50 requests "
                         "(in %.2f s), %d of 100 after the window\n" % (early[1], took, late[1]))
        self.assertLess(early[1], 15)  # at most ~25% weight in the first 1.5 s, even slowed
        self.assertEqual(late[1], 50)  # round robin: exact once at full weight

    def test_every_host_replaced_at_once_still_fits(self):
        # 200 hosts, then 200 others: a cluster holds 256, so the old ones
        # must go before the new ones come. (Nothing listens there: only the
        # membership is looked at.)
        def many(third_octet):
            eps = "".join("  - endpoint: {address: {socket_address: {address: 127.0.%d.%d, "
                          "port_value: 9}}}\n" % (third_octet, i + 1) for i in range(200))
            return "cluster_name: svc\nendpoints:\n- lb_endpoints:\n" + eps
        self.write(many(1))
        lg = self.start(concurrency=1)
        self.assertTrue(H.wait_until(
            lambda: self.stat(lg, "cluster.svc.membership_total") == 200, 5), lg.log_text())
        self.write(many(2))
        self.assertTrue(H.wait_until(
            lambda: "127.0.2.200:9" in H.get(lg.admin, "/clusters").body.decode(), 5))
        self.assertEqual(self.stat(lg, "cluster.svc.membership_total"), 200)
        self.assertNotIn("more than 256 hosts", lg.log_text())

    def test_watched_directory_follows_a_configmap_swap(self):
        # Kubernetes' layout: svc.yaml -> ..data/svc.yaml, ..data -> ..v1; an
        # update makes ..v2 and renames a new ..data link over the old one.
        p = [u.port for u in self.u]
        os.makedirs(os.path.join(self.dir, "..v1"))
        with open(os.path.join(self.dir, "..v1", "svc.yaml"), "w") as f:
            f.write(assignment(p[:1]))
        os.symlink("..v1", os.path.join(self.dir, "..data"))
        os.symlink("..data/svc.yaml", self.path)
        listen, admin = H.free_port(), H.free_port()
        c = {"name": "svc", "type": "EDS", "connect_timeout": "1s",
             "eds_cluster_config": {"eds_config": {"path_config_source": {
                 "path": self.path, "watched_directory": {"path": self.dir}}}}}
        vhosts = [H.vhost("all", ["*"], [H.route_to("svc", prefix="/", timeout="3s")])]
        lg = self.legate(H.simple_config(listen, vhosts, [c], admin_port=admin), listen,
                         concurrency=1)
        lg.admin = admin
        self.wait_hosts(lg, p[:1])
        os.makedirs(os.path.join(self.dir, "..v2"))
        with open(os.path.join(self.dir, "..v2", "svc.yaml"), "w") as f:
            f.write(assignment(p[1:]))
        os.symlink("..v2", os.path.join(self.dir, "..data_tmp"))
        os.rename(os.path.join(self.dir, "..data_tmp"), os.path.join(self.dir, "..data"))
        self.wait_hosts(lg, p[1:])

    def test_missing_file_means_no_hosts_until_it_appears(self):
        lg = self.start()
        r = H.get(lg.listen_port, "/fixed")
        self.assertEqual((r.status, r.body), (503, b"no healthy upstream"))
        self.assertGreaterEqual(self.stat(lg, "cluster.svc.update_rejected"), 1)
        self.write(assignment([self.u[0].port]))
        self.wait_hosts(lg, [self.u[0].port])
        self.assertEqual(self.served(lg, 3), [3, 0, 0])


if __name__ == "__main__":
    H.main()

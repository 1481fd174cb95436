#!/usr/bin/python3
"""Load balancing in the data path: ROUND_ROBIN with load_balancing_weight,
RANDOM, and LEAST_REQUEST, whose view of each host's requests in flight is
every worker's (summed from shared memory)."""

import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


class BlackHole(threading.Thread):
    """A host that accepts and reads, and never answers."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.held = []

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(c)


class LoadBalancingTest(H.LegateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.u0 = cls.class_upstream()
        cls.u1 = cls.class_upstream()
        cls.hole = BlackHole()
        cls.hole.start()
        cls.addClassCleanup(cls.hole.sock.close)

    def start(self, endpoints, policy, concurrency=1, extra=None, timeout="2s"):
        port = H.free_port()
        c = H.cluster("svc", [p for p, _ in endpoints])
        for ep, (_, w) in zip(c["load_assignment"]["endpoints"][0]["lb_endpoints"], endpoints):
            ep["load_balancing_weight"] = w
        c["lb_policy"] = policy
        c.update(extra or {})
        vhosts = [H.vhost("all", ["*"], [H.route_to("svc", prefix="/", timeout=timeout)])]
        self.legate(H.simple_config(port, vhosts, [c]), port, concurrency=concurrency)
        return port

    def served(self, port, n):
        before = (self.u0.stats()["requests"], self.u1.stats()["requests"])
        for _ in range(n):
            self.assertEqual(H.get(port, "/fixed").status, 200)
        return (self.u0.stats()["requests"] - before[0], self.u1.stats()["requests"] - before[1])

    def test_weighted_round_robin_is_exact(self):
        port = self.start([(self.u0.port, 3), (self.u1.port, 1)], "ROUND_ROBIN")
        self.assertEqual(self.served(port, 400), (300, 100))

    def test_random_follows_weights(self):
        port = self.start([(self.u0.port, 1), (self.u1.port, 1)], "RANDOM")
        a, b = self.served(port, 400)
        self.assertTrue(120 < a < 280 and a + b == 400, (a, b))
        port = self.start([(self.u0.port, 9), (self.u1.port, 1)], "RANDOM")
        a, b = self.served(port, 400)
        self.assertTrue(b < 80 and a + b == 400, (a, b))

    def to_the_hole(self, policy, extra=None):
        """40 requests, 25 ms apart, over two workers, to a cluster of a live
        host and one that never answers: how many end in the route timeout."""
        port = self.start([(self.u0.port, 1), (self.hole.port, 1)], policy, concurrency=2,
                          extra=extra, timeout="3s")
        statuses = []

        def one():
            try:
                statuses.append(H.get(port, "/fixed", timeout=10).status)
            except Exception as e:  # noqa: BLE001 - counted
                statuses.append(repr(e))
        threads = []
        for _ in range(40):
            t = threading.Thread(target=one, daemon=True)
            t.start()
            threads.append(t)
            time.sleep(0.025)
        for t in threads:
            t.join(15)
        self.assertEqual(len(statuses), 40)
        self.assertEqual(set(statuses) - {200, 504}, set(), statuses)
        return statuses.count(504)

    def test_least_request_avoids_the_busy_host(self):
        # Round robin sends half to the host that never answers...
        rr = self.to_the_hole("ROUND_ROBIN")
        # ...least request, with 5 choices, about one in 32 once it is busy.
        lr = self.to_the_hole("LEAST_REQUEST", {"least_request_lb_config": {"choice_count": 5}})
        sys.stderr.write("requests stuck on the silent host: round robin %d of 40, least "
                         "request %d of 40\n" % (rr, lr))
        self.assertGreaterEqual(rr, 15)
        self.assertLessEqual(lr, 8)

    def test_bad_weights_and_choice_counts_are_config_errors(self):
        port = H.free_port()
        c = H.cluster("svc", [self.u0.port])
        c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["load_balancing_weight"] = 0
        c["lb_policy"] = "LEAST_REQUEST"
        c["least_request_lb_config"] = {"choice_count": 1}
        vhosts = [H.vhost("all", ["*"], [H.route_to("svc", prefix="/")])]
        lg = H.Legate(H.simple_config(port, vhosts, [c]), port)
        out = subprocess.run([H.LEGATE_BIN, "--mode", "validate", "-c",
                             lg.config_path], capture_output=True, text=True)
        self.assertEqual(out.returncode, 1)
        self.assertIn("load_balancing_weight: must be at least 1", out.stderr)
        self.assertIn("least_request_lb_config.choice_count: must be at least 2", out.stderr)


if __name__ == "__main__":
    H.main()

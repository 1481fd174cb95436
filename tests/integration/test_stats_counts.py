#!/usr/bin/python3
"""The statistics in shared memory agree with a known load, and survive a
worker's death: counters never go backwards, gauges return to the truth."""

import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


class StatsCountsTest(H.LegateTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.upstream()
        self.port = H.free_port()
        vhosts = [H.vhost("v", ["*"], [
            H.route_to("svc", prefix="/up/", prefix_rewrite="/"),
            H.route_direct(200, "direct\n", prefix="/direct"),
        ])]
        cfg = H.bootstrap([H.listener("main", self.port, vhosts, stat_prefix="ingress")],
                          [H.cluster("svc", [self.up.port])])
        self.lg = self.legate(cfg, self.port, concurrency=2)

    def stats(self):
        return H.read_stats(self.lg.base_id)

    def test_counts_match_a_known_load(self):
        for _ in range(40):
            self.assertEqual(H.get(self.port, "/up/fixed").status, 200)
        for _ in range(10):
            self.assertEqual(H.get(self.port, "/nothing").status, 404)
        for _ in range(7):
            self.assertEqual(H.get(self.port, "/direct").status, 200)
        ok = H.wait_until(lambda: self.stats().get("http.ingress.downstream_rq_active") == 0, 5)
        st = self.stats()
        self.assertTrue(ok, st)
        expect = {
            "http.ingress.downstream_rq_total": 57,
            "http.ingress.downstream_rq_2xx": 47,
            "http.ingress.downstream_rq_4xx": 10,
            "http.ingress.no_route": 10,
            "http.ingress.rq_direct_response": 7,
            "http.ingress.downstream_rq_time": 57,
            "cluster.svc.upstream_rq_total": 40,
            "cluster.svc.upstream_rq_2xx": 40,
            "cluster.svc.upstream_rq_time": 40,
            "server.concurrency": 2,
            "server.live": 1,
        }
        self.assertEqual({k: st.get(k) for k in expect}, expect)
        # Keep-alive pooling: far fewer upstream connections than requests.
        self.assertLessEqual(st["cluster.svc.upstream_cx_total"], 4)
        self.assertGreaterEqual(st["http.ingress.downstream_cx_total"], 57)
        self.assertEqual(st["listener.127.0.0.1_%d.downstream_cx_total" % self.port],
                         st["http.ingress.downstream_cx_total"])

    def test_a_killed_worker_costs_no_counts_and_no_phantom_connections(self):
        for _ in range(20):
            H.get(self.port, "/direct")
        socks = [socket.create_connection((H.LOOPBACK, self.port)) for _ in range(6)]
        self.addCleanup(lambda: [s.close() for s in socks])
        self.assertTrue(H.wait_until(
            lambda: self.stats().get("http.ingress.downstream_cx_active") == 6, 5), self.stats())
        before = self.stats()["http.ingress.downstream_rq_total"]
        for i in (0, 1):  # both workers: every open connection dies with them
            os.kill(self.lg.worker_pid(i), signal.SIGKILL)
        back = H.wait_until(lambda: len(self.lg.roles()["workers"]) == 2 and
                            self.stats().get("http.ingress.downstream_cx_active") == 0, 5)
        st = self.stats()
        self.assertTrue(back, "downstream_cx_active stayed at %r after the workers died"
                        % st.get("http.ingress.downstream_cx_active"))
        self.assertGreaterEqual(st["http.ingress.downstream_rq_total"], before,
                                "a counter went backwards")
        self.assertEqual(H.get(self.port, "/direct").status, 200)


if __name__ == "__main__":
    H.main()

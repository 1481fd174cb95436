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


class StatNamesTest(H.LegateTestCase):
    """Each of the finer counters moves when, and only when, its event happens."""

    def setUp(self):
        super().setUp()
        self.up = self.upstream()
        self.port = H.free_port()
        vhosts = [H.vhost("v", ["*"], [H.route_to("svc", prefix="/up/", prefix_rewrite="/"),
                                       H.route_to("dead", prefix="/dead/")])]
        hcm = {"request_timeout": "0.5s", "request_headers_timeout": "0.5s"}
        cfg = H.bootstrap([H.listener("main", self.port, vhosts, stat_prefix="in",
                                      hcm_extra=hcm)],
                          [H.cluster("svc", [self.up.port]),
                           H.cluster("dead", [H.free_port()])])
        self.lg = self.legate(cfg, self.port, concurrency=1)

    def stats(self):
        return H.read_stats(self.lg.base_id)

    def settle(self):
        self.assertTrue(H.wait_until(
            lambda: self.stats().get("http.in.downstream_rq_active") == 0, 5), self.stats())
        return self.stats()

    def test_per_code_and_membership(self):
        for code in (200, 200, 404, 503):
            self.assertEqual(H.get(self.port, "/up/status?code=%d" % code).status, code)
        st = self.settle()
        self.assertEqual((st["cluster.svc.upstream_rq_200"], st["cluster.svc.upstream_rq_404"],
                          st["cluster.svc.upstream_rq_503"]), (2, 1, 1))
        self.assertNotIn("cluster.svc.upstream_rq_500", st)
        self.assertEqual(st["cluster.svc.membership_total"], 1)
        self.assertEqual(st["cluster.svc.membership_healthy"], 1)
        self.assertEqual(st["cluster.dead.membership_total"], 1)
        self.assertEqual(st["cluster.svc.upstream_rq_active"], 0)
        self.assertEqual(st["cluster.svc.upstream_cx_connect_ms"], st["cluster.svc.upstream_cx_total"])

    def test_request_timeout(self):
        with H.RawConnection(self.port) as c:
            c.send(b"POST /up/hang HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\nabc")
            r = c.read_response()
            self.assertEqual(r.status, 408)
            self.assertIn(b"request timeout", r.body)
        st = self.settle()
        self.assertEqual(st["http.in.downstream_rq_timeout"], 1)
        self.assertEqual(st["http.in.downstream_rq_header_timeout"], 0)

    def test_request_headers_timeout(self):
        with H.RawConnection(self.port) as c:
            c.send(b"GET /up/fixed HTTP/1.1\r\nhost: t\r\n")
            self.assertEqual(c.read_response().status, 408)
        st = self.settle()
        self.assertEqual(st["http.in.downstream_rq_header_timeout"], 1)
        self.assertEqual(st["http.in.downstream_rq_timeout"], 0)

    def assert_upstream_connections_add_up(self, cluster):
        """Every upstream connection is open, destroyed one way or the other,
        or failed to connect: counted exactly once."""
        st = self.stats()
        p = "cluster.%s.upstream_cx_" % cluster
        self.assertEqual(st[p + "total"], st[p + "active"] + st[p + "destroy_local"] +
                         st[p + "destroy_remote"] + st[p + "connect_fail"], st)

    def test_client_reset_and_destroy_reasons(self):
        remote_before = self.stats()["http.in.downstream_cx_destroy_remote"]
        c = H.RawConnection(self.port)
        c.send(b"GET /up/hang HTTP/1.1\r\nhost: t\r\n\r\n")
        self.assertTrue(H.wait_until(
            lambda: self.stats().get("cluster.svc.upstream_rq_active") == 1, 5))
        c.close()  # mid-request: a downstream reset, closed by the remote side
        st = self.settle()
        self.assertEqual(st["http.in.downstream_rq_rx_reset"], 1)
        self.assertEqual(st["http.in.downstream_cx_destroy_remote"], remote_before + 1)
        self.assertEqual(st["cluster.svc.upstream_rq_active"], 0)
        # The upstream connection that carried /hang could not be reused: legate closed it.
        self.assertTrue(H.wait_until(
            lambda: self.stats().get("cluster.svc.upstream_cx_destroy_local", 0) >= 1, 5))
        # An upstream that closes its idle connection: a remote destroy.
        self.assertEqual(H.get(self.port, "/up/fixed?then_close_ms=50").status, 200)
        self.assertTrue(H.wait_until(
            lambda: self.stats().get("cluster.svc.upstream_cx_destroy_remote", 0) >= 1, 5),
            self.stats())
        st = self.stats()
        self.assertEqual(st["http.in.downstream_cx_destroy"],
                         st["http.in.downstream_cx_destroy_local"] +
                         st["http.in.downstream_cx_destroy_remote"])
        self.assertEqual(st["http.in.downstream_cx_destroy"],
                         st["listener.127.0.0.1_%d.downstream_cx_destroy" % self.port])
        self.assertEqual(st["http.in.downstream_cx_length_ms"], st["http.in.downstream_cx_destroy"])
        self.assert_upstream_connections_add_up("svc")

    def test_connect_failures_and_server_gauges(self):
        self.assertEqual(H.get(self.port, "/dead/x").status, 503)
        st = self.settle()
        self.assertEqual(st["cluster.dead.upstream_cx_connect_fail"], 1)
        self.assertEqual(st["cluster.dead.upstream_cx_connect_timeout"], 0)
        self.assertEqual(st["cluster.dead.upstream_cx_destroy_local"], 0)
        self.assertEqual(st["cluster.dead.upstream_cx_connect_ms"], 0)
        self.assert_upstream_connections_add_up("dead")
        self.assertGreater(st["server.memory_allocated"], 0)
        self.assertGreater(st["server.memory_physical_size"], st["server.memory_allocated"] // 2)
        self.assertTrue(H.wait_until(lambda: self.stats().get("server.uptime", 0) >= 1, 5))
        socks = [H.RawConnection(self.port) for _ in range(3)]
        self.assertTrue(H.wait_until(lambda: self.stats().get("server.total_connections") == 3, 5))
        for s in socks:
            s.close()
        self.assertTrue(H.wait_until(lambda: self.stats().get("server.total_connections") == 0, 5))


if __name__ == "__main__":
    H.main()

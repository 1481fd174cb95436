#!/usr/bin/python3
"""STRICT_DNS and LOGICAL_DNS clusters resolved through a real DNS server:
Debian's dnsmasq on 127.0.0.1 (a port of its own), answering from a hosts
file the test rewrites, for upstreams on 127.0.0.2 and 127.0.0.3."""

import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

DNSMASQ = "/usr/sbin/dnsmasq"
NAME = "backend.legate.test"


class Dnsmasq:
    def __init__(self):
        self.dir = H.new_tmpdir("dnsmasq")
        self.hosts = os.path.join(self.dir, "hosts")
        self.port = H.free_port()
        self.proc = None

    def write(self, *ips):
        tmp = self.hosts + ".tmp"
        with open(tmp, "w") as f:
            for ip in ips:
                f.write("%s %s\n" % (ip, NAME))
        os.chmod(tmp, 0o644)
        os.rename(tmp, self.hosts)

    def start(self, *ips):
        self.write(*ips)
        self.proc = subprocess.Popen(
            [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts",
             "--addn-hosts=" + self.hosts, "--listen-address=127.0.0.1", "--bind-interfaces",
             "--port=%d" % self.port, "--local-ttl=1", "--user=root", "--pid-file=",
             "--log-facility=" + os.path.join(self.dir, "log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)
        H.register_pid(self.proc.pid, session=True)
        if not H.wait_until(lambda: self.answers(), 5):
            raise AssertionError("dnsmasq did not start: %s" % self.proc.stderr.read(2000))
        return self

    def answers(self):
        import socket
        import struct
        q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
        q += b"".join(bytes([len(p)]) + p.encode() for p in NAME.split(".")) + b"\0"
        q += struct.pack(">HH", 1, 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        try:
            s.sendto(q, ("127.0.0.1", self.port))
            return len(s.recv(512)) > 12
        except OSError:
            return False
        finally:
            s.close()

    def reload(self, *ips):
        self.write(*ips)
        self.proc.send_signal(signal.SIGHUP)  # dnsmasq re-reads --addn-hosts

    def kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()


class DnsTest(H.LegateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not os.path.exists(DNSMASQ):
            raise AssertionError("dnsmasq is missing: scripts/install-deps.sh installs "
                                 "dnsmasq-base")
        # One port free on both loopback addresses.
        for _ in range(20):
            port = H.free_port()
            try:
                cls.a = H.Upstream(port=port, host="127.0.0.2").start()
                cls.b = H.Upstream(port=port, host="127.0.0.3").start()
                break
            except AssertionError:
                for u in ("a", "b"):
                    if hasattr(cls, u):
                        getattr(cls, u).kill()
        cls.addClassCleanup(cls.a.kill)
        cls.addClassCleanup(cls.b.kill)
        cls.port = port

    def setUp(self):
        super().setUp()
        self.dns = Dnsmasq()
        self.addCleanup(self.dns.kill)

    def start(self, kind="STRICT_DNS", extra=None):
        listen, admin = H.free_port(), H.free_port()
        c = H.cluster("dns", [self.port])
        c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] = {
            "socket_address": {"address": NAME, "port_value": self.port}}
        c["type"] = kind
        c["dns_refresh_rate"] = "0.5s"
        c["dns_lookup_family"] = "V4_ONLY"
        c["dns_resolvers"] = [{"socket_address": {"address": "127.0.0.1",
                                                  "port_value": self.dns.port}}]
        c.update(extra or {})
        vhosts = [H.vhost("all", ["*"], [H.route_to("dns", prefix="/", timeout="3s")])]
        lg = self.legate(H.simple_config(listen, vhosts, [c], admin_port=admin), listen,
                         concurrency=2)
        lg.admin = admin
        return lg

    def stat(self, lg, name):
        return H.read_stats(lg.base_id).get(name, 0)

    def served(self, lg, n):
        before = (self.a.stats()["requests"], self.b.stats()["requests"])
        statuses = [H.get(lg.listen_port, "/fixed").status for _ in range(n)]
        self.assertEqual(statuses, [200] * n)
        return (self.a.stats()["requests"] - before[0], self.b.stats()["requests"] - before[1])

    def test_strict_dns_follows_a_change_of_address_without_a_failed_request(self):
        self.dns.start("127.0.0.2")
        lg = self.start()
        self.assertTrue(H.wait_until(lambda: self.stat(lg, "cluster.dns.membership_total") == 1,
                                     5), lg.log_text())
        self.assertEqual(self.served(lg, 10), (10, 0))
        # Requests keep flowing while the name moves to 127.0.0.3.
        statuses, stop = [], threading.Event()

        def load():
            while not stop.is_set() and len(statuses) < 5000:
                try:
                    statuses.append(H.get(lg.listen_port, "/fixed", timeout=5).status)
                except Exception as e:  # noqa: BLE001 - counted
                    statuses.append(repr(e))
        t = threading.Thread(target=load, daemon=True)
        t.start()
        t0 = time.monotonic()
        self.dns.reload("127.0.0.3")

        def moved():
            r = H.get(lg.admin, "/clusters").body.decode()
            return "dns::127.0.0.3:%d::" % self.port in r and "127.0.0.2" not in r
        self.assertTrue(H.wait_until(moved, 5), H.get(lg.admin, "/clusters").body.decode())
        took = time.monotonic() - t0
        time.sleep(0.3)
        stop.set()
        t.join(10)
        sys.stderr.write("address change followed in %.2f s (refresh 0.5 s, TTL 1 s); "
                         "%d requests meanwhile, all 200: %s\n"
                         % (took, len(statuses), set(statuses) == {200}))
        self.assertEqual(set(statuses), {200})
        self.assertEqual(self.served(lg, 10), (0, 10))
        # Both addresses: two hosts.
        self.dns.reload("127.0.0.2", "127.0.0.3")
        self.assertTrue(H.wait_until(lambda: self.stat(lg, "cluster.dns.membership_total") == 2,
                                     5))
        a, b = self.served(lg, 20)
        self.assertEqual((a, b), (10, 10))
        self.assertGreater(self.stat(lg, "cluster.dns.update_success"), 2)

    def test_respect_dns_ttl_refreshes_at_the_ttl(self):
        self.dns.start("127.0.0.2")
        # A refresh rate of 30 s, but records living 1 s: the TTL decides.
        lg = self.start(extra={"dns_refresh_rate": "30s", "respect_dns_ttl": True})
        self.assertTrue(H.wait_until(lambda: self.stat(lg, "cluster.dns.membership_total") == 1,
                                     5))
        t0 = time.monotonic()
        self.dns.reload("127.0.0.3")

        def moved():
            return "127.0.0.3:%d::" % self.port in H.get(lg.admin, "/clusters").body.decode()
        self.assertTrue(H.wait_until(moved, 5), lg.log_text())
        sys.stderr.write("respect_dns_ttl: followed in %.2f s (TTL 1 s, refresh rate 30 s)\n"
                         % (time.monotonic() - t0))

    def test_resolver_failure_keeps_the_last_hosts(self):
        self.dns.start("127.0.0.2")
        lg = self.start()
        self.assertTrue(H.wait_until(lambda: self.stat(lg, "cluster.dns.membership_total") == 1,
                                     5))
        self.dns.kill()
        self.assertTrue(H.wait_until(lambda: self.stat(lg, "cluster.dns.update_failure") > 0, 15),
                        lg.log_text())
        self.assertEqual(self.stat(lg, "cluster.dns.membership_total"), 1)
        self.assertEqual(self.served(lg, 5), (5, 0))

    def test_a_respawned_manager_keeps_the_hosts_while_dns_is_down(self):
        self.dns.start("127.0.0.2")
        lg = self.start()
        self.assertTrue(H.wait_until(lambda: self.stat(lg, "cluster.dns.membership_total") == 1,
                                     5))
        self.dns.kill()
        old = lg.roles()["upstream manager"]
        os.kill(old[0], signal.SIGKILL)
        self.assertTrue(H.wait_until(
            lambda: lg.roles()["upstream manager"] not in ([], old), 5), lg.log_text())
        time.sleep(1.0)  # two refreshes, both failing
        self.assertEqual(self.stat(lg, "cluster.dns.membership_total"), 1)
        self.assertEqual(self.served(lg, 5), (5, 0))

    def test_logical_dns_keeps_one_host(self):
        self.dns.start("127.0.0.2", "127.0.0.3")
        lg = self.start("LOGICAL_DNS")
        self.assertTrue(H.wait_until(lambda: self.stat(lg, "cluster.dns.membership_total") == 1,
                                     5))
        time.sleep(1.2)  # a couple of refreshes: still one host
        self.assertEqual(self.stat(lg, "cluster.dns.membership_total"), 1)
        a, b = self.served(lg, 10)
        self.assertTrue((a, b) in ((10, 0), (0, 10)), (a, b))

    def test_no_answer_yet_is_no_healthy_upstream(self):
        self.dns.start()  # the name is unknown
        lg = self.start()
        self.assertTrue(H.wait_until(lambda: self.stat(lg, "cluster.dns.update_failure") > 0, 5))
        r = H.get(lg.listen_port, "/fixed")
        self.assertEqual((r.status, r.body), (503, b"no healthy upstream"))


if __name__ == "__main__":
    H.main()

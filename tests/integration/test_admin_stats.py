#!/usr/bin/python3
"""The admin API and shmstat read the same shared memory: after a known load,
/stats, /stats?format=json, /stats/prometheus and shmstat agree with each other
and with the load; Prometheus output passes promtool; every admin endpoint
answers, mutating ones only to POST; bad requests get clear 4xx answers."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

K = 30  # requests through the cluster
D = 5   # direct responses
N = 4   # no route


def shmstat_path():
    return os.path.join(os.environ.get("LEGATE_BUILD_DIR", "build"), "shmstat")


def shmstat(*args, timeout=20):
    return subprocess.run([shmstat_path()] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, text=True, errors="replace")


def parse_text_stats(body):
    out = {}
    for line in body.splitlines():
        name, _, value = line.partition(": ")
        out[name] = value
    return out


def parse_prometheus(body):
    """{(family, frozenset(labels)): value}, ignoring comments."""
    out = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, "bad exposition line %r" % line
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                      m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


class AdminStatsTest(H.LegateTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.up = cls.class_upstream()
        cls.port = H.free_port()
        cls.admin = H.free_port()
        vhosts = [H.vhost("v", ["*"], [
            H.route_to("svc", prefix="/up/", prefix_rewrite="/"),
            H.route_direct(200, "direct\n", prefix="/direct"),
        ])]
        # A cluster whose name needs escaping everywhere (JSON, Prometheus labels
        # and HELP text): configuration names are free text.
        cls.odd = 'we"ird\\c-\u00e9'
        cfg = H.bootstrap([H.listener("main", cls.port, vhosts, stat_prefix="ingress")],
                          [H.cluster("svc", [cls.up.port]), H.cluster(cls.odd, [cls.up.port])],
                          admin_port=cls.admin)
        cls.lg = cls.class_legate(cfg, cls.port, concurrency=2)
        # Connections made before the load (the harness's readiness probe).
        cls.cx_before = H.read_stats(cls.lg.base_id)["http.ingress.downstream_cx_total"]
        for _ in range(K):
            assert H.get(cls.port, "/up/fixed").status == 200
        for _ in range(D):
            assert H.get(cls.port, "/direct").status == 200
        for _ in range(N):
            assert H.get(cls.port, "/nothing").status == 404
        assert H.wait_until(lambda: cls.stat_text().get("http.ingress.downstream_rq_active")
                            == "0" and cls.stat_text().get("cluster.svc.upstream_rq_active")
                            == "0" and cls.stat_text().get("http.ingress.downstream_cx_active")
                            == "0", 5)

    @classmethod
    def admin_get(cls, path, method="GET", body=None):
        return H.http_request(cls.admin, method, path, body=body)

    @classmethod
    def stat_text(cls):
        r = cls.admin_get("/stats")
        assert r.status == 200, r
        return parse_text_stats(r.body.decode())

    def test_stats_json_prometheus_and_shmstat_agree_with_the_load(self):
        text = self.stat_text()
        js = {s["name"]: s["value"] for s in self.admin_get("/stats?format=json").json()["stats"]
              if "name" in s}
        prom = parse_prometheus(self.admin_get("/stats/prometheus").body.decode())
        sh = shmstat("--base-id", str(self.lg.base_id), "--format", "json")
        self.assertEqual(sh.returncode, 0, sh.stderr)
        shj = json.loads(sh.stdout)
        self.assertTrue(shj["segment"]["owner_alive"])
        shv = {s["name"]: s["value"] for s in shj["stats"] if "name" in s}
        cl = frozenset({("envoy_cluster_name", "svc")})
        cx = K + D + N + self.cx_before
        hc = frozenset({("envoy_http_conn_manager_prefix", "ingress")})
        want = {
            # name: (expected, prometheus family, labels)
            "cluster.svc.upstream_rq_total": (K, "envoy_cluster_upstream_rq_total", cl),
            "cluster.svc.upstream_rq_2xx": (
                K, "envoy_cluster_upstream_rq_xx_total",
                cl | {("envoy_response_code_class", "2")}),
            "cluster.svc.upstream_rq_200": (
                K, "envoy_cluster_upstream_rq_code_total",
                cl | {("envoy_response_code", "200")}),
            "http.ingress.downstream_rq_total": (K + D + N, "envoy_http_downstream_rq_total", hc),
            "http.ingress.downstream_rq_2xx": (
                K + D, "envoy_http_downstream_rq_xx_total",
                hc | {("envoy_response_code_class", "2")}),
            "http.ingress.downstream_rq_4xx": (
                N, "envoy_http_downstream_rq_xx_total",
                hc | {("envoy_response_code_class", "4")}),
            "http.ingress.no_route": (N, "envoy_http_no_route_total", hc),
            "http.ingress.rq_direct_response": (D, "envoy_http_rq_direct_response_total", hc),
            "http.ingress.downstream_cx_total": (cx, "envoy_http_downstream_cx_total", hc),
            "http.ingress.downstream_cx_http1_total": (
                cx, "envoy_http_downstream_cx_http1_total", hc),
            "listener.127.0.0.1_%d.downstream_cx_total" % self.port: (
                cx, "envoy_listener_downstream_cx_total",
                frozenset({("envoy_listener_address", "127.0.0.1_%d" % self.port)})),
            "cluster.svc.membership_total": (1, "envoy_cluster_membership", cl),
            "cluster.svc.membership_healthy": (1, "envoy_cluster_membership_healthy", cl),
            "server.concurrency": (2, "envoy_server_concurrency", frozenset()),
            "server.live": (1, "envoy_server_live", frozenset()),
        }
        for name, (value, family, labels) in want.items():
            with self.subTest(stat=name):
                self.assertEqual(int(text[name]), value, "/stats")
                self.assertEqual(js[name], value, "/stats?format=json")
                self.assertEqual(shv[name], value, "shmstat --format json")
                self.assertEqual(prom.get((family, labels)), value, "/stats/prometheus")
        # Histograms: one sample per request, in all three views.
        self.assertIn("P50(nan,", text["http.ingress.downstream_rq_time"])
        hists = {h["name"]: h for h in
                 [s for s in self.admin_get("/stats?format=json").json()["stats"]
                  if "histograms" in s][0]["histograms"]["computed_quantiles"]}
        self.assertEqual(hists["cluster.svc.upstream_rq_time"]["count"], K)
        self.assertEqual(hists["http.ingress.downstream_rq_time"]["count"], K + D + N)
        self.assertEqual(prom[("envoy_cluster_upstream_rq_time_count", cl)], K)
        self.assertEqual(prom[("envoy_cluster_upstream_rq_time_bucket",
                               cl | {("le", "+Inf")})], K)
        # Pooling: each connect is timed once.
        cx = int(text["cluster.svc.upstream_cx_total"])
        self.assertGreaterEqual(cx, 1)
        self.assertEqual(hists["cluster.svc.upstream_cx_connect_ms"]["count"], cx)
        self.assertEqual(prom[("envoy_cluster_upstream_cx_connect_seconds_count", cl)], cx)
        # Every closed downstream connection has a length and a destroy reason.
        destroyed = int(text["http.ingress.downstream_cx_destroy"])
        self.assertEqual(destroyed, int(text["http.ingress.downstream_cx_destroy_local"]) +
                         int(text["http.ingress.downstream_cx_destroy_remote"]))
        self.assertEqual(hists["http.ingress.downstream_cx_length_ms"]["count"], destroyed)

    def test_promtool_accepts_the_exposition(self):
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool missing: scripts/install-deps.sh installs "
                                       "Debian's prometheus package")
        for source in ("admin", "shmstat"):
            if source == "admin":
                body = self.admin_get("/stats/prometheus").body
            else:
                body = shmstat("--base-id", str(self.lg.base_id), "--format",
                               "prometheus").stdout.encode()
            p = subprocess.run([promtool, "check", "metrics"], input=body,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
            self.assertEqual(p.returncode, 0, "%s: %s" % (source, p.stdout.decode()))
            self.assertIn(b"# TYPE envoy_cluster_upstream_rq_time histogram", body)
            self.assertIn('envoy_cluster_upstream_rq_total{envoy_cluster_name="we\\"ird'
                          '\\\\c-\u00e9"} 0'.encode(), body)

    def test_filter_and_usedonly(self):
        r = self.admin_get("/stats?filter=%5Ecluster%5C.svc%5C.upstream_rq_%5B0-9%5D")
        names = list(parse_text_stats(r.body.decode()))
        self.assertEqual(names, ["cluster.svc.upstream_rq_1xx", "cluster.svc.upstream_rq_200",
                                 "cluster.svc.upstream_rq_2xx", "cluster.svc.upstream_rq_3xx",
                                 "cluster.svc.upstream_rq_4xx", "cluster.svc.upstream_rq_5xx"])
        self.assertTrue(all(n.startswith("cluster.svc.upstream_rq_") for n in names), names)
        used = parse_text_stats(self.admin_get("/stats?usedonly&filter=ingress").body.decode())
        self.assertNotIn("http.ingress.downstream_rq_5xx", used)
        self.assertIn("http.ingress.downstream_rq_2xx", used)
        self.assertTrue(all("ingress" in n for n in used), used)
        prom = self.admin_get("/stats/prometheus?filter=svc%5C.upstream_rq_total").body.decode()
        self.assertEqual([line.split("{")[0] for line in prom.splitlines()
                          if not line.startswith("#")], ["envoy_cluster_upstream_rq_total"])
        sh = shmstat("--base-id", str(self.lg.base_id), "--filter", "^server\\.live$")
        self.assertEqual(sh.returncode, 0, sh.stderr)
        self.assertEqual([line for line in sh.stdout.splitlines() if not line.startswith("#")],
                         ["server.live: 1"])

    def test_bad_admin_requests_get_clear_errors(self):
        r = self.admin_get("/stats?filter=(")
        self.assertEqual(r.status, 400)
        self.assertIn(b"invalid regex", r.body)
        for bad in ("%28.*%29%5C1", "a%7B1,100%7D", "x" * 300):
            r = self.admin_get("/stats?filter=" + bad)
            self.assertEqual(r.status, 400, bad)
            self.assertIn(b"invalid regex in filter", r.body)
        self.assertEqual(self.admin_get("/stats?filter=%5C%7B").status, 200)  # \{ is a brace
        r = self.admin_get("/stats?format=xml")
        self.assertEqual(r.status, 400)
        self.assertIn(b"unknown format", r.body)
        for path in ("/quitquitquit", "/reset_counters", "/reopen_logs"):
            r = self.admin_get(path)
            self.assertEqual(r.status, 405, path)
            self.assertIn(b"use POST", r.body)
        r = self.admin_get("/stats", method="DELETE")
        self.assertEqual(r.status, 405)
        r = self.admin_get("/no/such/thing")
        self.assertEqual(r.status, 404)
        self.assertIn(b"/help", r.body)
        # Garbage and a huge body: a 4xx, and the admin listener keeps serving.
        with H.RawConnection(self.admin) as c:
            c.send(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
            resp = c.read_response()
            self.assertEqual(resp.status, 400)
        r = H.http_request(self.admin, "POST", "/stats", body=b"x" * (2 << 20))
        self.assertGreaterEqual(r.status, 400)
        self.assertLess(r.status, 500)
        self.assertEqual(self.admin_get("/ready").status, 200)

    def test_server_endpoints(self):
        self.assertEqual(self.admin_get("/ready").body, b"LIVE\n")
        info = self.admin_get("/server_info").json()
        self.assertEqual(info["state"], "LIVE")
        self.assertEqual(info["command_line_options"]["concurrency"], 2)
        self.assertEqual(info["command_line_options"]["base_id"], self.lg.base_id)
        self.assertEqual(info["command_line_options"]["restart_epoch"], 0)
        self.assertRegex(info["uptime_current_epoch"], r"^\d+s$")
        cli = subprocess.run([os.environ.get("LEGATE_BIN", "build/legate"),
                              "--hot-restart-version"], stdout=subprocess.PIPE, timeout=10)
        self.assertEqual(cli.returncode, 0)
        self.assertEqual(self.admin_get("/hot_restart_version").body, cli.stdout)
        self.assertEqual(info["hot_restart_version"], cli.stdout.decode().strip())
        mem = self.admin_get("/memory").json()
        procs = {p["process"] for p in mem["processes"]}
        self.assertEqual(procs, {"supervisor", "listener", "upstream manager", "worker 0",
                                 "worker 1"})
        self.assertGreater(int(mem["allocated"]), 0)
        self.assertEqual(int(mem["allocated"]),
                         sum(int(p["allocated"]) for p in mem["processes"]))
        helptext = self.admin_get("/help").body.decode()
        for ep in ("/stats", "/stats/prometheus", "/clusters", "/listeners", "/config_dump",
                   "/memory", "/quitquitquit", "/reset_counters", "/reopen_logs",
                   "/hot_restart_version", "/server_info", "/ready"):
            self.assertIn("  %s: " % ep, helptext)

    def test_clusters_listeners_and_config_dump(self):
        host = "127.0.0.1:%d" % self.up.port
        text = self.admin_get("/clusters").body.decode().splitlines()
        self.assertIn("svc::%s::rq_total::%d" % (host, K), text)
        self.assertIn("svc::%s::rq_success::%d" % (host, K), text)
        self.assertIn("svc::%s::health_flags::healthy" % host, text)
        self.assertIn("svc::default_priority::max_connections::1024", text)
        js = self.admin_get("/clusters?format=json").json()
        st = js["cluster_statuses"][0]
        self.assertEqual(st["name"], "svc")
        hs = st["host_statuses"][0]
        self.assertEqual(hs["address"]["socket_address"]["port_value"], self.up.port)
        self.assertIn({"name": "rq_total", "value": str(K), "type": "COUNTER"}, hs["stats"])
        # Per-host stats belong to /clusters, not /stats.
        self.assertFalse([n for n in self.stat_text() if ".host." in n])
        self.assertEqual(self.admin_get("/listeners").body.decode(),
                         "main::127.0.0.1:%d\n" % self.port)
        lj = self.admin_get("/listeners?format=json").json()
        self.assertEqual(lj["listener_statuses"][0]["local_address"]["socket_address"]
                         ["port_value"], self.port)
        dump = self.admin_get("/config_dump").json()
        boot = dump["configs"][0]["bootstrap"]
        self.assertEqual(boot["static_resources"]["listeners"][0]["name"], "main")
        self.assertEqual(boot["static_resources"]["clusters"][0]["name"], "svc")
        self.assertEqual(boot["admin"]["address"]["socket_address"]["port_value"], self.admin)

    def test_shmstat_per_process_and_watch(self):
        sh = shmstat("--base-id", str(self.lg.base_id), "--per-process", "--filter",
                     "^http\\.ingress\\.downstream_rq_total$")
        self.assertEqual(sh.returncode, 0, sh.stderr)
        line = [x for x in sh.stdout.splitlines() if not x.startswith("#")][0]
        name, _, rest = line.partition(": ")
        total, _, slots = rest.partition(" |")
        per = [int(v) for v in re.findall(r"worker \d@0\[\d+\]=(\d+)", slots)]
        self.assertEqual(sum(per), int(total))
        sh = shmstat("--base-id", str(self.lg.base_id), "--watch", "0.2", "--count", "2",
                     "--filter", "downstream_rq_total|upstream_rq_time")
        self.assertEqual(sh.returncode, 0, sh.stderr)
        self.assertEqual(sh.stdout.count("\033[H\033[2J"), 2)
        self.assertRegex(sh.stdout, r"http\.ingress\.downstream_rq_total +\d+ +\d+\.\d")
        self.assertRegex(sh.stdout, r"cluster\.svc\.upstream_rq_time +%d +p50 \d+ p90" % K)


class ResetAndLifecycleTest(H.LegateTestCase):
    """Endpoints that change the server, each on a legate of its own."""

    def start(self, **kw):
        self.port = H.free_port()
        self.admin = H.free_port()
        vhosts = [H.vhost("v", ["*"], [H.route_direct(200, "direct\n", prefix="/")])]
        cfg = H.bootstrap([H.listener("main", self.port, vhosts, stat_prefix="ingress")], [],
                          admin_port=self.admin)
        return self.legate(cfg, self.port, concurrency=2, **kw)

    def test_reset_counters_zeroes_counters_only(self):
        lg = self.start()
        for _ in range(6):
            H.get(self.port, "/")
        stats = lambda: parse_text_stats(H.get(self.admin, "/stats").body.decode())  # noqa
        self.assertEqual(stats()["http.ingress.downstream_rq_total"], "6")
        r = H.http_request(self.admin, "POST", "/reset_counters")
        self.assertEqual((r.status, r.body), (200, b"OK\n"))
        after = stats()
        self.assertEqual(after["http.ingress.downstream_rq_total"], "0")
        self.assertEqual(after["server.live"], "1")
        self.assertEqual(after["server.concurrency"], "2")
        for _ in range(3):
            H.get(self.port, "/")
        self.assertEqual(stats()["http.ingress.downstream_rq_total"], "3")
        self.assertEqual(H.read_stats(lg.base_id)["http.ingress.downstream_rq_total"], 3)

    def test_shmstat_reads_a_dead_proxy_and_names_the_age(self):
        lg = self.start()
        for _ in range(4):
            H.get(self.port, "/")
        H.wait_until(lambda: H.read_stats(lg.base_id).get("http.ingress.downstream_rq_active")
                     == 0, 5)
        os.kill(lg.pid, signal.SIGKILL)  # no clean exit: the segment stays behind
        H.wait_until(lambda: not H.alive(lg.pid), 5)
        time.sleep(1.1)
        sh = shmstat("--base-id", str(lg.base_id), "--filter", "downstream_rq_total")
        self.assertEqual(sh.returncode, 0, sh.stderr)
        self.assertRegex(sh.stdout, r"supervisor pid %d is gone; the data is \d+ s old" % lg.pid)
        self.assertIn("http.ingress.downstream_rq_total: 4", sh.stdout)
        js = json.loads(shmstat("--base-id", str(lg.base_id), "--format", "json").stdout)
        self.assertFalse(js["segment"]["owner_alive"])
        os.unlink("/dev/shm/legate.%d.stats" % lg.base_id)

    def test_reopen_logs_over_post(self):
        lg = self.start()
        before = H.read_stats(lg.base_id).get("server.log_reopen_total", 0)
        r = H.http_request(self.admin, "POST", "/reopen_logs")
        self.assertEqual((r.status, r.body), (200, b"OK\n"))
        self.assertTrue(H.wait_until(
            lambda: H.read_stats(lg.base_id).get("server.log_reopen_total", 0) == before + 1, 5))

    def test_quitquitquit_stops_gracefully(self):
        lg = self.start()
        r = H.http_request(self.admin, "POST", "/quitquitquit")
        self.assertEqual((r.status, r.body), (200, b"OK\n"))
        self.assertTrue(H.wait_until(lambda: not H.alive(lg.pid), 15), "still running")
        self.assertFalse(os.path.exists("/dev/shm/legate.%d.stats" % lg.base_id))


class ShmstatErrorsTest(H.LegateTestCase):
    def write_segment(self, base_id, data):
        path = "/dev/shm/legate.%d.stats" % base_id
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o600)
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))

    def test_no_segment_names_the_ones_that_exist(self):
        present = H.random_base_id()
        self.write_segment(present, b"\0" * 64)
        missing = H.random_base_id()
        sh = shmstat("--base-id", str(missing))
        self.assertEqual(sh.returncode, 1)
        self.assertIn("no statistics segment for base id %d" % missing, sh.stderr)
        self.assertRegex(sh.stderr, r"segments exist for base ids: .*\b%d\b" % present)

    def test_bad_arguments(self):
        for args in (["--base-id", "x"], ["--format", "xml"], ["--filter", "("],
                     ["--watch", "0"], ["stray"]):
            sh = shmstat(*args)
            self.assertEqual(sh.returncode, 2, args)
            self.assertTrue(sh.stderr.startswith("shmstat: "), sh.stderr)

    def test_hostile_segments_give_errors_not_crashes(self):
        import random
        import struct
        rnd = random.Random(7)
        base = H.random_base_id()
        header = struct.pack("<QII", 0x3154415453474c00, 2, 136)
        cases = {
            "empty": b"",
            "short": b"\x00" * 10,
            "garbage": bytes(rnd.getrandbits(8) for _ in range(4096)),
            "magic only": struct.pack("<Q", 0x3154415453474c00) + b"\xff" * 4088,
            "header then garbage": header + bytes(rnd.getrandbits(8) for _ in range(8192)),
            "future layout": struct.pack("<QII", 0x3154415453474c00, 99, 136) + b"\0" * 4000,
        }
        for what, data in cases.items():
            with self.subTest(what):
                self.write_segment(base, data)
                sh = shmstat("--base-id", str(base))
                self.assertEqual(sh.returncode, 1, (what, sh.stdout, sh.stderr))
                self.assertTrue(sh.stderr.startswith("shmstat: "), sh.stderr)
                if what == "future layout":
                    ours = subprocess.run([H.LEGATE_BIN, "--hot-restart-version"],
                                          stdout=subprocess.PIPE, text=True).stdout.strip()
                    self.assertIn("layout version 99, this shmstat reads version %s" % ours,
                                  sh.stderr)

    def test_a_real_segment_cut_short_or_scribbled(self):
        lg = self.start_legate()
        with open("/dev/shm/legate.%d.stats" % lg.base_id, "rb") as f:
            good = f.read()
        import random
        rnd = random.Random(11)
        base = H.random_base_id()
        for i in range(40):
            data = bytearray(good)
            if i % 4 == 0:
                data = data[:rnd.randrange(len(data))]
            else:
                # scribble over the header and the table: offsets, names, kinds
                for _ in range(16):
                    at = rnd.randrange(min(len(data), 1 << 16))
                    data[at] = rnd.getrandbits(8)
            self.write_segment(base, bytes(data))
            for fmt in ("text", "json", "prometheus"):
                for extra in ([], ["--per-process"]):
                    sh = subprocess.run([shmstat_path(), "--base-id", str(base), "--format", fmt]
                                        + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        timeout=20)
                    self.assertIn(sh.returncode, (0, 1), (i, fmt, sh.stderr[-500:]))
                    if sh.returncode == 1:
                        self.assertTrue(sh.stderr.startswith(b"shmstat: "), sh.stderr)
                    elif fmt == "json":
                        json.loads(sh.stdout)  # bytes: must be UTF-8 and JSON, whatever the names
                    else:
                        sh.stdout.decode("utf-8")

    def test_another_user_reads_with_group_access(self):
        if os.geteuid() != 0 or shutil.which("setpriv") is None:
            self.skipTest("needs root (to act as nobody) and setpriv")
        import grp
        lg = self.start_legate()
        path = "/dev/shm/legate.%d.stats" % lg.base_id
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                     shmstat_path(), "--base-id", str(lg.base_id), "--filter", "^server.live$"]
        # The build directory may be private: run a copy nobody can execute.
        tmp = H.new_tmpdir("shmstat")
        os.chmod(tmp, 0o755)
        exe = os.path.join(tmp, "shmstat")
        shutil.copy(shmstat_path(), exe)
        os.chmod(exe, 0o755)
        as_nobody[4] = exe
        denied = subprocess.run(as_nobody, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                timeout=20, text=True)
        self.assertEqual(denied.returncode, 1, denied.stdout)
        self.assertIn("permission denied", denied.stderr)
        os.chown(path, 0, grp.getgrnam("nogroup").gr_gid)
        os.chmod(path, 0o640)
        ok = subprocess.run(as_nobody, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=20, text=True)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertIn("server.live: 1", ok.stdout)

    def start_legate(self):
        port = H.free_port()
        vhosts = [H.vhost("v", ["*"], [H.route_direct(200, "x\n", prefix="/")])]
        lg = self.legate(H.bootstrap([H.listener("main", port, vhosts)], []), port,
                         concurrency=1)
        H.get(port, "/")
        return lg


if __name__ == "__main__":
    H.main()

#!/usr/bin/python3
"""The command line and configuration errors: --mode validate, FILE:LINE:COL
messages naming the field, a bad config refused at start with no process left,
--help, --version, unknown flags."""

import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

GOOD = """\
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: @ADMIN@}}
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: @PORT@}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          codec_type: AUTO
          route_config:
            name: local_route
            virtual_hosts:
            - name: backend
              domains: ["*"]
              routes:
              - match: {prefix: "/api/"}
                route: {cluster: service_a, prefix_rewrite: "/", timeout: 2s}
              - match: {path: "/exact"}
                direct_response: {status: 200, body: {inline_string: "exact\\n"}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: service_a
    type: STATIC
    connect_timeout: 1s
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: service_a
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: @UPPORT@}}}
"""

SECOND_LISTENER = (
    '  - {name: second, address: {socket_address: {address: 127.0.0.1, port_value: @PORT@}}, '
    'filter_chains: [{filters: [{name: envoy.filters.network.http_connection_manager, typed_config: '
    '{"@type": ' + H.HCM_TYPE + ', stat_prefix: second, route_config: {name: r2, virtual_hosts: '
    '[{name: b, domains: ["*"], routes: [{match: {prefix: "/"}, direct_response: {status: 200}}]}]}, '
    'http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": ' + H.ROUTER_TYPE + '}}]}}]}]}\n')

# name: (old text, new text, marker on the line the error must point at, words of
# which at least one must appear in that message line: the field's name)
BAD_CASES = {
    "unknown_field": ("    connect_timeout: 1s\n", "    connect_timeout: 1s\n    bogus_field: 1\n",
                      "bogus_field", ("bogus_field",)),
    "unknown_cluster": ("route: {cluster: service_a,", "route: {cluster: no_such_cluster,",
                        "no_such_cluster", ("cluster",)),
    "duplicate_listener_address": ("  clusters:\n", SECOND_LISTENER + "  clusters:\n",
                                   "name: second", ("address",)),
    "port_out_of_range": ("port_value: @UPPORT@}}}", "port_value: 70000}}}", "70000", ("port_value",)),
    "bad_type_url": ("envoy.extensions.filters.http.router.v3.Router",
                     "envoy.extensions.filters.http.bogus.v3.Bogus", "bogus.v3.Bogus",
                     ("@type", "typed_config")),
    "yaml_syntax_error": ("          stat_prefix: ingress_http\n", "          stat_prefix: a: b\n",
                          "stat_prefix: a: b", ()),
    "bad_duration": ("    connect_timeout: 1s\n", "    connect_timeout: one second\n",
                     "one second", ("connect_timeout",)),
    "bad_lb_policy": ("    lb_policy: ROUND_ROBIN\n", "    lb_policy: FASTEST_FIRST\n",
                      "FASTEST_FIRST", ("lb_policy",)),
    "bad_status": ("direct_response: {status: 200,", "direct_response: {status: 1000,",
                   "status: 1000", ("status",)),
}


class ConfigCliTest(H.LegateTestCase):
    def setUp(self):
        super().setUp()
        self.dir = H.new_tmpdir("cli")
        self.port = H.free_port()
        self.admin_port = H.free_port()
        self.up_port = H.free_port()

    def fill(self, text):
        return (text.replace("@ADMIN@", str(self.admin_port)).replace("@PORT@", str(self.port))
                .replace("@UPPORT@", str(self.up_port)))

    def write(self, name, text):
        path = os.path.join(self.dir, name + ".yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def run_legate(self, args, timeout=10.0):
        """Run legate to completion in its own session; kill whatever is left of it."""
        p = subprocess.Popen([H.LEGATE_BIN] + list(args), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                             cwd=self.dir)
        H.register_pid(p.pid, session=True)
        t0 = time.monotonic()
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            for q in H.session_members(p.pid):
                try:
                    os.kill(q, signal.SIGKILL)
                except OSError:
                    pass
            p.communicate(timeout=5)
            self.fail("legate %s did not exit within %.0fs" % (" ".join(args), timeout))
        leftovers = H.session_members(p.pid)
        for q in leftovers:
            try:
                os.kill(q, signal.SIGKILL)
            except OSError:
                pass
        return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), \
            time.monotonic() - t0, leftovers

    def find_error(self, text, path, line, words):
        """The message lines 'FILE:LINE:COL: ...' for path at `line` that name one of words."""
        hits = []
        for m in re.finditer(r"(?m)^(.*?):(\d+):(\d+): (.*)$", text):
            f, ln, col, msg = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
            if f not in (path, os.path.basename(path)) or ln != line or col < 1:
                continue
            if not words or any(w in msg for w in words):
                hits.append(m.group(0))
        return hits

    # -- good config

    def test_embedded_default_config_serves(self):
        """What the README's run command shows a newcomer: no -c, the embedded
        quickstart config (direct response on :10000, admin on :9901)."""
        if H.port_accepts(10000) or H.port_accepts(9901):
            self.skipTest("ports 10000/9901 are in use on this machine")
        lg = H.Legate("unused: the embedded config is used", 10000, concurrency=1)
        lg.args = [a for a in lg.args if a not in ("-c", lg.config_path)]
        self.addCleanup(lg.close)
        lg.start()
        self.assertIn("the embedded default config", lg.log_text())
        r = H.http_request(10000, "GET", "/", host="localhost")
        self.assertEqual((r.status, r.body), (200, b"Hello from legate\n"))
        self.assertEqual(H.http_request(9901, "GET", "/ready", host="localhost").body, b"LIVE\n")
        # /upstream/ goes to 127.0.0.1:8080, which the run command starts and
        # this test does not: whatever listens there (or nothing) decides.
        self.assertIn(H.http_request(10000, "GET", "/upstream/", host="x").status, (200, 404, 503))

    def test_validate_good_config(self):
        path = self.write("good", self.fill(GOOD))
        rc, out, err, secs, left = self.run_legate(["--mode", "validate", "-c", path])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("OK", out + err)
        self.assertEqual(left, [], "validate left processes behind")
        self.assertFalse(H.port_accepts(self.port), "validate opened the listener port")

    # -- bad configs

    def _bad_config(self, name):
        old, new, marker, words = BAD_CASES[name]
        good = self.fill(GOOD)
        old = self.fill(old)
        self.assertIn(old, good, "test bug: %r not in the template" % old)
        text = good.replace(old, self.fill(new), 1)
        line = next(i for i, ln in enumerate(text.split("\n"), 1) if marker in ln)
        return self.write(name, text), line, words

    def _check_bad(self, name):
        path, line, words = self._bad_config(name)
        # --mode validate
        rc, out, err, secs, left = self.run_legate(["--mode", "validate", "-c", path])
        self.assertEqual(rc, 1, "validate of a bad config: status %s\n%s%s" % (rc, out, err))
        hits = self.find_error(err, path, line, words)
        self.assertTrue(hits, "no '%s:%d:COL: ...' message naming %r on stderr:\n%s"
                        % (path, line, words, err))
        self.assertEqual(left, [])
        # a normal start refuses it promptly, with the same message, starting nothing
        rc, out2, err2, secs, left = self.run_legate(["-c", path, "--concurrency", "2",
                                                      "--base-id", str(H.random_base_id())])
        self.assertNotEqual(rc, 0, "legate started with a bad config")
        self.assertLess(secs, 5, "refusing a bad config took %.1fs" % secs)
        self.assertIn(hits[0], err2, "a normal start did not print the same message")
        self.assertEqual(left, [], "processes left behind: %r" % {p: H.cmdline(p) for p in left})
        self.assertFalse(H.port_accepts(self.port), "the listener port was opened")

    def test_missing_file(self):
        path = os.path.join(self.dir, "does-not-exist.yaml")
        rc, out, err, secs, left = self.run_legate(["--mode", "validate", "-c", path])
        self.assertEqual(rc, 1, out + err)
        self.assertIn(path, err)
        rc, out, err, secs, left = self.run_legate(["-c", path, "--base-id", str(H.random_base_id())])
        self.assertNotEqual(rc, 0)
        self.assertIn(path, err)
        self.assertEqual(left, [])

    # -- command line

    def test_help(self):
        rc, out, err, secs, left = self.run_legate(["--help"])
        self.assertEqual(rc, 0, out + err)
        text = out + err
        for flag in ("-c", "--concurrency", "--base-id", "--log-level", "--mode", "--drain-time-s"):
            self.assertIn(flag, text)

    def test_version(self):
        rc, out, err, secs, left = self.run_legate(["--version"])
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out + err, r"\d+\.\d+")

    def test_unknown_flag(self):
        rc, out, err, secs, left = self.run_legate(["--no-such-flag"])
        self.assertEqual(rc, 2, out + err)
        self.assertTrue(err.strip(), "no message for an unknown flag")
        self.assertIn("no-such-flag", err)


def _make(name):
    def t(self):
        self._check_bad(name)
    t.__name__ = "test_bad_" + name
    return t


for _name in BAD_CASES:
    setattr(ConfigCliTest, "test_bad_" + _name, _make(_name))


if __name__ == "__main__":
    H.main()

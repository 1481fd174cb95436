#!/usr/bin/python3
"""tools/bench keeps working: one short round against every target, with a
few idle connections, gives a number for every cell of the table. It checks
that the harness runs and measures, not how fast anything is."""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class BenchSmokeTest(unittest.TestCase):
    def test_one_short_round(self):
        H.require_binary()
        build = os.environ.get("LEGATE_BUILD_DIR", os.path.join(ROOT, "build"))
        p = subprocess.run([os.path.join(ROOT, "tools", "bench", "bench"), "--rounds", "1",
                            "--duration", "1", "--idle", "300", "--json", "--build", build,
                            "--no-install"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=240)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        out = json.loads(p.stdout)
        self.assertEqual(out["idle_connections"], 300)
        for target in ("legate", "haproxy", "nginx", "direct"):
            m = out["medians"][target]
            for key in ("small", "64k", "close", "p50", "p99", "p999", "achieved"):
                self.assertIsNotNone(m[key], (target, key))
                self.assertGreater(m[key], 0, (target, key))
            if target != "direct":
                self.assertIsNotNone(m["kib_per_conn"], target)
            # Ratios are paired within a round; HAProxy's to itself is exactly 1.
            r = out["ratios"][target]["haproxy"]["small"]
            self.assertGreater(r, 0, target)
        self.assertEqual(out["ratios"]["haproxy"]["haproxy"]["small"], 1.0)
        self.assertEqual(out["ratios"]["direct"]["direct"]["close"], 1.0)
        # Nothing the harness started is left running.
        left = subprocess.run(["pgrep", "-f", "legate-bench-"], stdout=subprocess.PIPE,
                              text=True).stdout.split()
        self.assertEqual(left, [], "processes left behind")


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""Unit tests of the parts of scripts/bench that need no root:
statistics, the table, the seccomp profile resolution and the runner.
Run: python3 -m unittest discover -s scripts -p 'test_*.py'"""

import os
import tempfile
import unittest

from benchlib import report, seccomp_profile
from benchlib.measure import CommandFailed, Runner, Sample
from benchlib.stats import Collector


class CollectorTest(unittest.TestCase):
    def test_files_wall_cpu_and_rss(self):
        col = Collector(rss_ops=["run"])
        for wall, cpu, rss in [(3, 1, 2048), (1, 2, 1024), (2, 3, 3072)]:
            col.add("run", "berth", Sample(wall * 1_000_000, cpu * 1_000_000, rss))
        col.add("create", "berth", Sample(5_000_000, 0, 4096))
        got = {(s["op"], s["tool"]): s for s in (r.summary() for r in col.results())}
        self.assertEqual(got[("run", "berth")], {
            "op": "run", "tool": "berth", "median": 2.0, "min": 1.0, "max": 3.0,
            "unit": "ms", "runs": 3,
        })
        self.assertEqual(got[("cpu-run", "berth")]["median"], 2.0)
        self.assertEqual(got[("peak-rss-run", "berth")]["max"], 3.0)
        self.assertEqual(got[("peak-rss-run", "berth")]["unit"], "MiB")
        self.assertNotIn(("peak-rss-create", "berth"), got)

    def test_discard_drops_all_metrics_of_a_tool(self):
        col = Collector(rss_ops=["run"])
        col.add("run", "crun", Sample(1, 1, 1))
        col.add("run", "runc", Sample(1, 1, 1))
        col.discard("run", "crun")
        self.assertEqual({r.tool for r in col.results()}, {"runc"})


class TableTest(unittest.TestCase):
    def test_cells_and_ratios(self):
        s = [
            {"op": "run", "tool": "berth", "median": 4.0, "min": 3.5, "max": 6.0, "unit": "ms"},
            {"op": "run", "tool": "crun", "median": 8.0, "min": 7.0, "max": 9.0, "unit": "ms"},
        ]
        t = report.table(s, ["berth", "runc", "crun"], [("berth", "crun"), ("berth", "runc")])
        lines = t.splitlines()
        self.assertEqual(lines[0], "| operation | berth | runc | crun | berth/crun | berth/runc |")
        self.assertEqual(
            lines[2], "| run (ms) | 4.00 (3.50–6.00) | — | 8.00 (7.00–9.00) | 0.50 | — |"
        )

    def test_fmt_keeps_three_digits(self):
        self.assertEqual(report.fmt(2812.4), "2812")
        self.assertEqual(report.fmt(23.46), "23.5")
        self.assertEqual(report.fmt(0.5), "0.50")


class SeccompProfileTest(unittest.TestCase):
    PROFILE = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
        "syscalls": [
            {"names": ["getppid", "read"], "action": "SCMP_ACT_ALLOW", "args": [],
             "includes": {}, "excludes": {}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW",
             "includes": {"arches": ["amd64"]}},
            {"names": ["s390_pci_mmio_read"], "action": "SCMP_ACT_ALLOW",
             "includes": {"arches": ["s390x"]}},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["setns"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 0, "value": 16, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
             "excludes": {"caps": ["CAP_AUDIT_WRITE"]}},
            {"names": ["newthing"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
        ],
    }

    def names(self, caps):
        oci = seccomp_profile.to_oci(self.PROFILE, caps, machine="x86_64")
        return oci, [n for s in oci["syscalls"] for n in s["names"]]

    def test_resolves_arches_caps_and_kernel(self):
        oci, names = self.names(["CAP_KILL"])
        self.assertEqual(oci["architectures"], ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        self.assertEqual(oci["defaultErrnoRet"], 38)
        self.assertEqual(names, ["getppid", "read", "arch_prctl", "setns", "socket"])
        sock = oci["syscalls"][-1]
        self.assertEqual(sock["args"][0]["op"], "SCMP_CMP_EQ")
        self.assertEqual(sock["errnoRet"], 1)

    def test_capabilities_switch_rules(self):
        _, names = self.names(["CAP_SYS_ADMIN", "CAP_AUDIT_WRITE"])
        self.assertIn("mount", names)
        self.assertNotIn("setns", names)
        self.assertNotIn("socket", names)

    def test_kernel_compare(self):
        self.assertTrue(seccomp_profile.kernel_at_least("5.8", "6.18.0-cloud"))
        self.assertFalse(seccomp_profile.kernel_at_least("6.19", "6.18.3"))


class RunnerTest(unittest.TestCase):
    def test_measures_and_reports_failures(self):
        with tempfile.TemporaryDirectory() as d:
            r = Runner(d)
            try:
                s = r.one(["/bin/sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
                self.assertGreater(s.wall_ns, 0)
                self.assertGreater(s.cpu_ns, 0)
                self.assertGreater(s.maxrss_kib, 0)
                # The spawner's own RSS does not leak into the child's peak
                # (spawned from Python it would be Python's ~10+ MiB).
                self.assertLess(r.one(["/bin/true"]).maxrss_kib, 4096)
                alloc = ["/usr/bin/python3", "-c", "b = bytearray(64 << 20)"]
                big = r.one(alloc)
                self.assertGreater(big.maxrss_kib, 64 * 1024)
                if os.path.exists("/usr/bin/time"):  # GNU time's %M reads the same field
                    gnu = os.path.join(d, "gnu")
                    r.one(["/usr/bin/time", "-f", "%M", "-o", gnu, *alloc])
                    with open(gnu) as f:
                        self.assertLess(abs(int(f.read()) - big.maxrss_kib), 4096)
                out = os.path.join(d, "out")
                r.one(["/bin/echo", "42"], stdout=out)
                with open(out) as f:
                    self.assertEqual(f.read(), "42\n")
                with self.assertRaises(CommandFailed) as e:
                    r.one(["/bin/sh", "-c", "echo boom >&2; exit 3"])
                self.assertIn("exit code 3", str(e.exception))
                self.assertIn("boom", str(e.exception))
                p = r.parallel([["/bin/sleep", "0.2"]] * 3)
                self.assertLess(p.wall_ns, 550_000_000)  # at once, not one after the other
                q = r.sequence([["/bin/sleep", "0.05"]] * 3)
                self.assertGreaterEqual(q.wall_ns, 150_000_000)
                with self.assertRaises(CommandFailed):
                    r.sequence([["/bin/true"], ["/bin/false"], ["/bin/true"]])
                self.assertEqual(r.one(["/bin/true"]).maxrss_kib > 0, True)  # still in sync
                # Only PATH reaches the commands (RUST_BACKTRACE=1 would slow berth).
                os.environ["BENCH_TEST_LEAK"] = "1"
                try:
                    r.one(["/bin/sh", "-c", 'test -z "$BENCH_TEST_LEAK" && test -n "$PATH"'])
                finally:
                    del os.environ["BENCH_TEST_LEAK"]
            finally:
                r.close()


if __name__ == "__main__":
    unittest.main()

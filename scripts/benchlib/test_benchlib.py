"""Unit tests of the parts of scripts/bench that need no root:
statistics, the table, the seccomp profile resolution, the runner, the
launch helper of the shim group, mountinfo and /proc parsing, the image
generator and the registry helpers.
Run: python3 -m unittest discover -s scripts -p 'test_*.py'"""

import gzip
import json
import os
import subprocess
import tarfile
import tempfile
import time
import unittest

from benchlib import holders, hostns, imagegen, registry, report, seccomp_profile
from benchlib.groups import images, shim
from benchlib.measure import CommandFailed, Runner, Sample
from benchlib.stats import Collector, Value


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

    def test_values_are_filed_as_is(self):
        col = Collector(rss_ops=["shim-start"])
        col.add("shim-start", "conmon", Value("ms", 40.0))
        col.add("shim-idle-rss", "conmon", Value("MiB", 2.0))
        got = {(s["op"], s["tool"]): s for s in (r.summary() for r in col.results())}
        self.assertEqual(set(got), {("shim-start", "conmon"), ("shim-idle-rss", "conmon")})
        self.assertEqual(got[("shim-idle-rss", "conmon")]["unit"], "MiB")
        self.assertEqual(got[("shim-start", "conmon")]["median"], 40.0)

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

    def test_ratio_takes_the_first_measured_denominator(self):
        s = [
            {"op": "pull", "tool": "pier", "median": 2.0, "min": 2, "max": 2, "unit": "ms"},
            {"op": "pull", "tool": "skopeo", "median": 4.0, "min": 4, "max": 4, "unit": "ms"},
            {"op": "pull", "tool": "curl", "median": 1.0, "min": 1, "max": 1, "unit": "ms"},
            {"op": "unpack", "tool": "pier", "median": 3.0, "min": 3, "max": 3, "unit": "ms"},
            {"op": "unpack", "tool": "umoci", "median": 6.0, "min": 6, "max": 6, "unit": "ms"},
        ]
        ratios = [("pier", ("skopeo", "umoci"), "peer"), ("pier", ("curl", "tar"), "floor")]
        lines = report.table(s, ["pier"], ratios).splitlines()
        self.assertEqual(lines[0], "| operation | pier | pier/peer | pier/floor |")
        self.assertTrue(lines[2].endswith("| 0.50 | 2.00 |"), lines[2])
        self.assertTrue(lines[3].endswith("| 0.50 | — |"), lines[3])
        self.assertEqual(report.ratio_spec(("a", "b")), ("a", ["b"], "a/b"))
        self.assertEqual(report.ratio_spec(("a", ("b", "c"))), ("a", ["b", "c"], "a/b/c"))

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


class ProcTest(unittest.TestCase):
    def test_field_kib(self):
        status = "Name:\tberth-shim\nVmHWM:\t    1300 kB\nVmRSS:\t    1276 kB\n"
        self.assertEqual(holders.field_kib(status, "VmRSS"), 1276)
        rollup = "00400000-7ffd [rollup]\nRss:        1276 kB\nPss:         431 kB\n"
        self.assertEqual(holders.field_kib(rollup, "Pss"), 431)
        with self.assertRaises(ValueError):
            holders.field_kib(rollup, "Pss_Anon")

    def test_memory_of_this_process(self):
        rss, pss = holders.memory_kib(os.getpid())
        self.assertGreater(rss, 1000)
        self.assertGreater(pss, 0)
        self.assertLessEqual(pss, rss)

    def test_wait_gone_reaps_a_child(self):
        pid = os.posix_spawn("/bin/sleep", ["sleep", "0.1"], {})
        self.assertTrue(holders.wait_gone(pid, 5))
        with self.assertRaises(ChildProcessError):  # reaped
            os.waitpid(pid, os.WNOHANG)
        q = subprocess.Popen(["/bin/sleep", "5"])
        try:
            self.assertFalse(holders.wait_gone(q.pid, 0.1))
        finally:
            q.kill()
            q.wait()

    def test_mount_points_under(self):
        info = (
            "22 1 254:0 / / rw - ext4 /dev/vda rw\n"
            "90 22 0:50 / /tmp/b/logs rw - tmpfs tmpfs rw\n"
            "91 22 0:51 / /tmp/b/with\\040space rw - tmpfs tmpfs rw\n"
            "92 90 0:52 / /tmp/b/logs/inner rw - tmpfs tmpfs rw\n"
            "93 22 0:53 / /tmp/bb rw - tmpfs tmpfs rw\n"
            "94 22 0:54 / /tmp/b rw - tmpfs tmpfs rw\n"
        )
        self.assertEqual(
            hostns.mount_points_under(info, "/tmp/b/"),
            ["/tmp/b/logs/inner", "/tmp/b/with space", "/tmp/b/logs", "/tmp/b"],
        )
        self.assertEqual(hostns.mount_points_under(info, "/srv"), [])


class LaunchTest(unittest.TestCase):
    """launch.c, with stand-ins for conmon and the runtime."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.exe = os.path.join(cls.dir.name, "launch")
        subprocess.run(["cc", "-O2", "-o", cls.exe, holders.LAUNCH_C], check=True)

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def launch(self, *args):
        return subprocess.run([self.exe, *args], capture_output=True, text=True, timeout=30)

    def test_sync_pipe_then_after_command(self):
        d = self.dir.name
        created, marker = os.path.join(d, "created"), os.path.join(d, "started")
        # Like conmon: the message comes from a process that outlives the
        # command, once the container is "created"; the after-command must
        # run only then.
        fake = (
            f'(sleep 0.2; touch {created}; printf \'{{"data": 4242}}\\n\' >&$_OCI_SYNCPIPE) & '
            "exit 0"
        )
        after = ["-a", "/bin/sh", "-a", "-c", "-a", f"test -e {created} && touch {marker}"]
        r = self.launch("-s", *after, "--", "/bin/sh", "-c", fake)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(marker))

    def test_sync_pipe_failures(self):
        r = self.launch("-s", "--", "/bin/sh", "-c", 'echo \'{"data": -1}\' >&$_OCI_SYNCPIPE')
        self.assertEqual(r.returncode, 1)
        self.assertIn("not created", r.stderr)
        r = self.launch("-s", "--", "/bin/true")
        self.assertEqual(r.returncode, 1)
        self.assertIn("without a pid", r.stderr)
        r = self.launch("-s", "-t", "1", "--", "/bin/sh", "-c", "sleep 3 >&- &")
        self.assertEqual(r.returncode, 124)
        r = self.launch("--", "/bin/sh", "-c", "exit 7")
        self.assertEqual(r.returncode, 7)
        r = self.launch("-a", "/bin/false", "--", "/bin/true")
        self.assertEqual(r.returncode, 1)

    def test_waits_for_a_file(self):
        target = os.path.join(self.dir.name, "exit.json")
        cmd = f"(sleep 0.3; echo 0 > {target}.tmp; mv {target}.tmp {target}) &"
        t0 = time.monotonic()
        r = self.launch("-w", target, "--", "/bin/sh", "-c", cmd)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        r = self.launch("-w", os.path.join(self.dir.name, "never"), "-t", "1", "--", "/bin/true")
        self.assertEqual(r.returncode, 124)


class ShimGroupTest(unittest.TestCase):
    def test_exit_code_of_each_holder(self):
        with tempfile.TemporaryDirectory() as d:
            b = holders.BerthShim("/bin/berth-shim", "/bin/launch", None, d)
            os.makedirs(b.state_dir("c"))
            with open(b.exit_file("c"), "w") as f:
                json.dump({"exit_code": 3, "pid": 9, "signal": None}, f)
            self.assertEqual(shim.exit_code(b, "c"), 3)
            c = holders.Conmon("/bin/conmon", "/bin/launch", None, d)
            os.makedirs(os.path.dirname(c.exit_file("c")))
            with open(c.exit_file("c"), "w") as f:
                f.write("137")
            self.assertEqual(shim.exit_code(c, "c"), 137)

    def test_goals(self):
        s = [
            {"op": "shim-idle-rss", "tool": "berth-shim", "median": 1.2},
            {"op": "shim-idle-rss", "tool": "conmon", "median": 2.4},
            {"op": "shim-idle-rss-on-berth", "tool": "berth-shim", "median": 3.0},
            {"op": "shim-idle-rss-on-berth", "tool": "conmon", "median": 2.0},
        ]
        lines = shim.goals(s)
        self.assertIn("- shim-idle-rss: berth-shim/conmon 0.50: met", lines)
        self.assertIn("- shim-idle-rss-on-berth: berth-shim/conmon 1.50: missed", lines)


class ImageGenTest(unittest.TestCase):
    def test_plan_is_deterministic_and_adds_up(self):
        p = imagegen.plan("big-0", 20 << 20)
        self.assertEqual(p, imagegen.plan("big-0", 20 << 20))
        self.assertNotEqual(p, imagegen.plan("big-1", 20 << 20))
        self.assertEqual(sum(s for _, s in p), 20 << 20)
        large = sum(s for _, s in p if s >= imagegen.LARGE_MIN)
        self.assertGreater(large, (20 << 20) * 0.4)
        self.assertGreater(len(p), 100)  # many small files too
        self.assertEqual(len({path for path, _ in p}), len(p))

    def test_layer_tar_is_reproducible_and_gzip_halves_it(self):
        with tempfile.TemporaryDirectory() as d:
            root = os.path.join(d, "root")
            os.makedirs(os.path.join(root, "bin"))
            with open(os.path.join(root, "bin", "sh"), "w") as f:
                f.write("#!\n")
            a, b = os.path.join(d, "a.tar"), os.path.join(d, "b.tar")
            n, nbytes = imagegen.write_layer(a, "s", 2 << 20, rootfs=root)
            imagegen.write_layer(b, "s", 2 << 20, rootfs=root)
            with open(a, "rb") as fa, open(b, "rb") as fb:
                data = fa.read()
                self.assertEqual(data, fb.read())
            self.assertEqual(nbytes, 2 << 20)
            with tarfile.open(a) as t:
                members = t.getmembers()
            files = [m for m in members if m.isfile()]
            self.assertEqual(len(files), n + 1)  # + bin/sh
            self.assertIn("bin/sh", [m.name for m in files])
            self.assertTrue(all(m.uid == 0 and m.mtime == imagegen.MTIME for m in members))
            ratio = len(gzip.compress(data, 6)) / len(data)
            self.assertTrue(0.45 < ratio < 0.7, ratio)

    def test_tree_stats(self):
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "a/b"))
            with open(os.path.join(d, "a/b/f"), "wb") as f:
                f.write(b"x" * 10)
            with open(os.path.join(d, "g"), "wb") as f:
                f.write(b"y" * 5)
            os.symlink("g", os.path.join(d, "link"))
            self.assertEqual(images.tree_stats(d), (2, 15))


class RegistryHelpersTest(unittest.TestCase):
    def test_config_and_blobs(self):
        cfg = registry.config_yaml("/s/data", "127.0.0.1:5123")
        self.assertIn("rootdirectory: /s/data\n", cfg)
        self.assertIn("addr: 127.0.0.1:5123\n", cfg)
        m = {"config": {"digest": "sha256:c"}, "layers": [{"digest": "sha256:1"},
                                                           {"digest": "sha256:2"}]}
        self.assertEqual(registry.blobs_of(m), ["sha256:c", "sha256:1", "sha256:2"])
        self.assertNotEqual(registry.free_port(), 0)

    def test_short_version_and_goals(self):
        self.assertEqual(
            images.short_version("buildah version 1.28.2 (image-spec 1.0.2-dev, runtime-spec x)"),
            "buildah version 1.28.2",
        )
        self.assertEqual(images.short_version("tar (GNU tar) 1.34"), "tar (GNU tar) 1.34")
        s = [
            {"op": "pull-big", "tool": "pier", "median": 1.4},
            {"op": "pull-big", "tool": "curl", "median": 1.0},
            {"op": "unpack-big", "tool": "pier", "median": 1.3},
            {"op": "unpack-big", "tool": "tar", "median": 1.0},
        ]
        lines = images.goals(s)
        self.assertIn("- pull-big: pier/curl 1.40 (goal <= 1.5): met", lines)
        self.assertIn("- unpack-big: pier/tar 1.30 (goal <= 1.2): missed", lines)
        self.assertTrue(images.is_debug_build("/w/target/debug/pier"))
        self.assertFalse(images.is_debug_build("/w/target/release/pier"))


if __name__ == "__main__":
    unittest.main()

"""`scripts/bench [--quick] [--runs N] [--no-setup] [runtime|seccomp|shim|images|all]`.

Installs the peers from Debian, builds berth in release mode, moves into the
bench's mount namespace (see `hostns`), runs the chosen operation groups and
prints one markdown table per set of columns; writes target/bench/results.json
and target/bench/table.md. Never fails on speed: it exits non-zero only when
a command it measures fails or something is left behind.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import bundles, cgroups, hostns, packages, report
from .groups import images, runtime, seccomp, shim
from .measure import CommandFailed, Runner, reap_orphans
from .runtimes import Floor, Runtime, version
from .stats import Collector

GROUPS = [runtime, seccomp, shim, images]
PEERS = ("runc", "crun")
# What every group needs: the rootfs, unshare/nsenter and a C compiler for the spawner.
CORE_PACKAGES = ["busybox-static", "util-linux", "coreutils", "gcc", "libc6-dev"]


class Context:
    """What the groups share: settings, the runner, bundles, runtimes."""

    def __init__(self, args, workspace, target, tmpdir):
        self.quick = args.quick
        self.workspace = workspace
        self.target = target
        self.tmpdir = tmpdir
        # Rounds: light ops (one command) and heavy ops (seq100, par50).
        runs = args.runs or (3 if args.quick else 20)
        self.light = (1 if args.quick else 3, runs)
        self.heavy = (0 if args.quick else 1, args.runs or (1 if args.quick else 20))
        self.runner = None  # started once inside the bench's namespace
        self.berth = os.path.join(target, RELEASE_DIR, "berth")
        self.pier = args.pier or pier_path(target, args.quick)
        self.rootfs = os.path.join(tmpdir, "rootfs")
        self.bundles = None
        self.floor = Floor(self.rootfs)
        self._runtimes = None
        self.notes = {}
        self.skipped = []
        self.collectors = []
        self.versions = []
        self.extra_versions = []  # of the tools a group compares against
        self.load_start = report.loadavg()
        self.failures = []

    @property
    def runtimes(self):
        """berth, runc and crun (those installed), each with its own --root."""
        if self._runtimes is None:
            self._runtimes = {"berth": Runtime("berth", self.berth, self._root("berth"))}
        for name in PEERS:  # looked up again until found: a group may install it
            path = name not in self._runtimes and shutil.which(name)
            if path:
                self._runtimes[name] = Runtime(name, path, self._root(name))
        return self._runtimes

    def _root(self, name):
        return os.path.join(self.tmpdir, "state", name)

    def collector(self, rss_ops=()):
        """A new Collector for the running group (kept even if the group
        stops early)."""
        col = Collector(rss_ops)
        self.collectors.append(col)
        return col

    def note(self, op, text):
        """A remark about `op` printed under the table (e.g. a skipped tool)."""
        self.notes.setdefault(op, []).append(text)
        print(f"  {op}: {text}", file=sys.stderr)

    def alternate(self, col, op, actions, heavy=False):
        """Runs every (tool, action) once per round (A B C, then B C A, then
        C A B, ...), for the warm-up rounds and then the measured ones,
        filing the measured samples in `col`. The order rotates because the
        kernel finishes some of a container's teardown after the runtime has
        exited (network namespace cleanup, cgroup release): in a fixed order
        the tool after runc would always pay for runc's. `op` is one op name,
        or a list when each action returns one sample per op. A tool whose
        command fails is dropped from the op, its values discarded, the
        failure recorded."""
        ops = [op] if isinstance(op, str) else list(op)
        warmup, runs = self.heavy if heavy else self.light
        print(
            f"  {'/'.join(ops)}: {warmup} warm-up + {runs} rounds of "
            f"{' '.join(t for t, _ in actions)} (order rotating)",
            file=sys.stderr,
        )
        active = list(actions)
        t0 = time.monotonic()
        for i in range(warmup + runs):
            k = i % len(active) if active else 0
            for tool, action in active[k:] + active[:k]:
                try:
                    out = action()
                except CommandFailed as e:
                    active = [a for a in active if a[0] != tool]
                    for o in ops:
                        col.discard(o, tool)
                    self.failures.append(f"{'/'.join(ops)} {tool}: {e}")
                    print(f"  FAILED {'/'.join(ops)} {tool}: {e}", file=sys.stderr)
                    continue
                finally:
                    reap_orphans()
                if i >= warmup:
                    samples = out if isinstance(out, list) else [out]
                    for o, s in zip(ops, samples):
                        col.add(o, tool, s)
        print(f"  {'/'.join(ops)}: done in {time.monotonic() - t0:.0f} s", file=sys.stderr)


def parse(argv):
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="berth side by side with runc, crun and the physical floor "
        "(alternating runs, medians and min-max); prints a markdown table and "
        "writes target/bench/results.json.",
    )
    p.add_argument("group", nargs="?", default="all", choices=[g.NAME for g in GROUPS] + ["all"])
    p.add_argument("--quick", action="store_true", help="a few runs per op (for CI)")
    p.add_argument("--runs", type=int, help="measured rounds per op (default 20, --quick 3)")
    p.add_argument(
        "--timeout",
        type=int,
        help="stop (and clean up) after this many seconds (default 900 with --quick, else 5400)",
    )
    p.add_argument(
        "--pier",
        metavar="PATH",
        help="measure this pier binary (default: target/release/pier, or target/debug/pier "
        "with --quick; built by the bench unless --no-setup)",
    )
    p.add_argument(
        "--no-setup",
        action="store_true",
        help="do not install Debian packages or build berth (use the release build as is)",
    )
    return p.parse_args(argv)


# Where scripts/build-release puts the static release binaries.
RELEASE_DIR = os.path.join("x86_64-unknown-linux-gnu", "release")


def pier_path(target, quick):
    """The pier binary measured: the release build, the debug one with --quick."""
    return os.path.join(target, "debug" if quick else "release", "pier")


def main(argv):
    args = parse(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench: must run as root (namespaces, mounts, cgroups)")
    if args.runs is not None and args.runs < 1:
        raise SystemExit("bench: --runs must be at least 1")
    workspace = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(workspace, "target")
    groups = GROUPS if args.group == "all" else [g for g in GROUPS if g.NAME == args.group]
    t0 = time.monotonic()

    if not args.no_setup:
        packages.install(CORE_PACKAGES)
        print("bench: scripts/build-release (berth, berth-shim; static)", file=sys.stderr)
        build_release = os.path.join(workspace, "scripts", "build-release")
        subprocess.run([build_release], cwd=workspace, check=True)
        if images in groups and not args.pier and os.path.isdir(os.path.join(workspace, "pier")):
            # pier stays dynamic (glibc's NSS for DNS). --quick takes the
            # debug build that scripts/test has made anyway: a release build
            # of pier would add minutes to CI for numbers nobody reads.
            cmd = ["cargo", "build", "-p", "pier"] + ([] if args.quick else ["--release"])
            print(f"bench: {' '.join(cmd)}", file=sys.stderr)
            subprocess.run(cmd, cwd=workspace, check=True)

    berth = os.path.join(target, RELEASE_DIR, "berth")
    if not os.access(berth, os.X_OK):
        raise SystemExit(f"bench: {berth} is missing (scripts/build-release)")
    tmpdir = tempfile.mkdtemp(prefix="berth-bench-")
    ctx = Context(args, workspace, target, tmpdir)
    # A hung runtime must not hang CI: past the limit the run stops, and
    # cleans up, like on Ctrl-C.
    signal.signal(signal.SIGALRM, _timed_out)
    signal.alarm(args.timeout or (900 if args.quick else 5400))

    done = []  # (group, results)
    left = []
    try:
        where = hostns.enter()
        print(f"bench: measuring inside a {where}", file=sys.stderr)
        ctx.runner = Runner(tmpdir)
        bundles.make_rootfs(ctx.rootfs)
        ctx.bundles = bundles.Bundles(
            os.path.join(tmpdir, "bundles"), ctx.rootfs, bundles.default_config(ctx.berth, tmpdir)
        )
        for g in groups:
            reason = g.skip_reason(ctx)
            if not reason and not args.no_setup:
                packages.install(g.PACKAGES)
            ctx.versions = [version(rt.binary) for rt in ctx.runtimes.values()]
            if reason:
                print(f"bench: {g.NAME}: skipped: {reason}", file=sys.stderr)
                ctx.skipped.append(f"{g.NAME}: skipped: {reason}")
                continue
            print(f"bench: {g.NAME}: {g.TITLE}", file=sys.stderr)
            ctx.collectors = []
            try:
                g.run(ctx)
            except (CommandFailed, subprocess.CalledProcessError) as e:
                # A set-up step failed: keep what was measured, go on.
                ctx.failures.append(f"{g.NAME}: stopped: {e}")
                print(f"  FAILED {g.NAME}: stopped: {e}", file=sys.stderr)
            done.append((g, [r for c in ctx.collectors for r in c.results()]))
    finally:
        signal.alarm(0)
        if ctx.runner:
            ctx.runner.close()
        for rt in (ctx._runtimes or {}).values():
            left += rt.cleanup()
        reap_orphans()
        left += cgroups.cleanup()
        mounts = hostns.unmount_under(tmpdir)
        left += mounts
        if not mounts:  # never remove files through a mount point
            shutil.rmtree(tmpdir, ignore_errors=True)
        for item in left:
            print(f"bench: left behind: {item}", file=sys.stderr)

    out = render(ctx, done)
    print(out)
    outdir = os.path.join(target, "bench")
    report.write_json(
        os.path.join(outdir, "results.json"), [r.summary() for _, rs in done for r in rs]
    )
    with open(os.path.join(outdir, "table.md"), "w") as f:
        f.write(out + "\n")
    print(
        f"bench: wrote {os.path.join(outdir, 'results.json')} and table.md "
        f"in {time.monotonic() - t0:.0f} s",
        file=sys.stderr,
    )
    for f in ctx.failures:
        print(f"bench: failed: {f}", file=sys.stderr)
    return 1 if (left or ctx.failures) else 0


def _timed_out(signum, frame):
    raise TimeoutError("the run took longer than its time limit (see --timeout)")


def render(ctx, done):
    """The report: machine, versions, the tables, notes and goals."""
    lines = [
        f"Machine: {report.machine()}; load average {ctx.load_start} at the start, "
        f"{report.loadavg()} at the end"
    ]
    lines.append("Versions: " + "; ".join(ctx.versions + ctx.extra_versions))
    mode = "quick" if ctx.quick else "full"
    lines.append(
        f"Mode: {mode}; {ctx.light[1]} measured rounds per op ({ctx.heavy[1]} for seq100, par50 "
        f"and unpack-big) after {ctx.light[0]} ({ctx.heavy[0]}) warm-up; the tools alternate "
        "(A B C, B C A, ...). Cells: median (min–max); time = wall, cpu- = user+system "
        "(wait4 rusage), peak-rss- = ru_maxrss."
    )
    # One table per set of columns (groups that share columns share a table).
    tables = {}
    for g, results in done:
        key = (tuple(g.COLUMNS), tuple(g.RATIOS))
        tables.setdefault(key, []).extend(r.summary() for r in results)
    for (columns, ratios), summaries in tables.items():
        if not summaries:
            continue
        lines += ["", report.table(summaries, columns, ratios)]
    if ctx.notes or ctx.skipped:
        lines.append("")
        lines += [f"- {s}" for s in ctx.skipped]
        for op, texts in ctx.notes.items():
            for t in texts:
                lines.append(f"- {op}: {t}")
    for g, results in done:
        goals = getattr(g, "goals", None)
        if goals and results:
            lines += [""] + goals([r.summary() for r in results], ctx)
    return "\n".join(lines)

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
import subprocess
import sys
import tempfile
import time

from . import bundles, cgroups, hostns, packages, report
from .groups import images, runtime, seccomp, shim
from .measure import CommandFailed, Runner, reap_orphans
from .runtimes import Floor, Runtime, version

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
        self.berth = os.path.join(target, "release", "berth")
        self.rootfs = os.path.join(tmpdir, "rootfs")
        self.bundles = None
        self.floor = Floor(self.rootfs)
        self._runtimes = None
        self.notes = {}
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

    def note(self, op, text):
        """A remark about `op` printed under the table (e.g. a skipped tool)."""
        self.notes.setdefault(op, []).append(text)
        print(f"  {op}: {text}", file=sys.stderr)

    def alternate(self, col, op, actions, heavy=False):
        """Runs every (tool, action) once per round, in order (A B C A B C
        ...), for the warm-up rounds and then the measured ones, filing the
        measured samples in `col`. `op` is one op name, or a list when each
        action returns one sample per op. A tool whose command fails is
        dropped from the op, its values discarded, the failure recorded."""
        ops = [op] if isinstance(op, str) else list(op)
        warmup, runs = self.heavy if heavy else self.light
        print(
            f"  {'/'.join(ops)}: {warmup} warm-up + {runs} rounds of "
            f"{' '.join(t for t, _ in actions)}",
            file=sys.stderr,
        )
        active = list(actions)
        for i in range(warmup + runs):
            for tool, action in list(active):
                try:
                    out = action()
                except CommandFailed as e:
                    active.remove((tool, action))
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
        "--no-setup",
        action="store_true",
        help="do not install Debian packages or build berth (use target/release/berth as is)",
    )
    return p.parse_args(argv)


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
        print("bench: cargo build --release -p berth", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "-p", "berth"], cwd=workspace, check=True)

    tmpdir = tempfile.mkdtemp(prefix="berth-bench-")
    ctx = Context(args, workspace, target, tmpdir)
    if not os.access(ctx.berth, os.X_OK):
        raise SystemExit(f"bench: {ctx.berth} is missing (cargo build --release -p berth)")
    where = hostns.enter()
    print(f"bench: measuring inside a {where}", file=sys.stderr)
    ctx.runner = Runner(tmpdir)

    done = []  # (group, results)
    left = []
    try:
        bundles.make_rootfs(ctx.rootfs)
        ctx.bundles = bundles.Bundles(
            os.path.join(tmpdir, "bundles"), ctx.rootfs, bundles.default_config(ctx.berth, tmpdir)
        )
        for g in groups:
            reason = g.skip_reason(ctx)
            if reason:
                print(f"{g.NAME}: skipped: {reason}")
                continue
            if not args.no_setup:
                packages.install(g.PACKAGES)
            print(f"bench: {g.NAME}: {g.TITLE}", file=sys.stderr)
            done.append((g, g.run(ctx)))
    finally:
        for rt in (ctx._runtimes or {}).values():
            left += rt.cleanup()
        if ctx.runner:
            ctx.runner.close()
        reap_orphans()
        left += cgroups.cleanup()
        shutil.rmtree(tmpdir, ignore_errors=True)

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
    for item in left:
        print(f"bench: left behind: {item}", file=sys.stderr)
    for f in ctx.failures:
        print(f"bench: failed: {f}", file=sys.stderr)
    return 1 if (left or ctx.failures) else 0


def render(ctx, done):
    """The report: machine, versions, the tables, notes and goals."""
    lines = [f"Machine: {report.machine()}"]
    vers = [version(ctx.berth)] + [version(rt.binary) for n, rt in ctx.runtimes.items() if n != "berth"]
    lines.append("Versions: " + "; ".join(vers))
    mode = "quick" if ctx.quick else "full"
    lines.append(
        f"Mode: {mode}; {ctx.light[1]} measured rounds per op ({ctx.heavy[1]} for seq100 and "
        f"par50) after {ctx.light[0]} ({ctx.heavy[0]}) warm-up; tools alternate in each round. "
        "Cells: median (min–max); time = wall, cpu- = user+system (wait4 rusage), "
        "peak-rss- = ru_maxrss."
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
    if ctx.notes:
        lines.append("")
        for op, texts in ctx.notes.items():
            for t in texts:
                lines.append(f"- {op}: {t}")
    for g, results in done:
        goals = getattr(g, "goals", None)
        if goals and results:
            lines += [""] + goals([r.summary() for r in results])
    return "\n".join(lines)

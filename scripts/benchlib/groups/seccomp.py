"""seccomp: cost of a tight getppid loop under the Docker/Podman default profile.

A small static C program in the rootfs calls getppid(2) N times and prints
the nanoseconds per call from its own CLOCK_MONOTONIC; it runs in berth,
runc and crun containers whose config carries the default profile (resolved
for the bundle's capabilities by `seccomp_profile`), and on the floor
(unshare + chroot, no filter: the bare cost of the syscall).

Skipped while berth refuses a config with linux.seccomp.
"""

import os
import subprocess

from .. import seccomp_profile

NAME = "seccomp"
TITLE = "getppid loop under the default seccomp profile"
PACKAGES = ["gcc", "libc6-dev", "golang-github-containers-common"]
COLUMNS = ["berth", "runc", "crun", "floor"]
RATIOS = [("berth", "crun"), ("berth", "runc")]
OP = "seccomp-getppid"
LOOP = "/bin/getppid-loop"

LOOP_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Calls getppid N times (the raw syscall: no libc caching) and prints the
   nanoseconds per call. */
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("%.3f\n", ns / (n > 0 ? n : 1));
    return 0;
}
"""


def _with_seccomp(profile):
    def extra(config):
        config["linux"]["seccomp"] = profile

    return extra


def skip_reason(ctx):
    """Why the group cannot run: berth refuses linux.seccomp (until it has it)."""
    cid = "berth-seccomp-probe"
    allow_all = {"defaultAction": "SCMP_ACT_ALLOW"}
    b = ctx.bundles.write(cid, ["/bin/true"], _with_seccomp(allow_all))
    rt = ctx.runtimes["berth"]
    r = subprocess.run(rt.run(b, cid), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        subprocess.run(rt.delete(cid, force=True), capture_output=True, stdin=subprocess.DEVNULL)
        msg = (r.stderr.strip().splitlines() or ["no error message"])[-1]
        return f"berth does not run a config with linux.seccomp yet ({msg})"
    return None


def run(ctx):
    """Measures ns per getppid in each runtime (alternating) and on the
    floor, into a collector of `ctx`."""
    src = os.path.join(ctx.tmpdir, "getppid-loop.c")
    with open(src, "w") as f:
        f.write(LOOP_C)
    subprocess.run(
        ["gcc", "-O2", "-static", "-o", os.path.join(ctx.rootfs, LOOP.lstrip("/")), src],
        check=True,
    )
    caps = ctx.bundles.base["process"]["capabilities"]["bounding"]
    profile = seccomp_profile.load(caps)
    n = "200000" if ctx.quick else "2000000"
    col = ctx.collector()
    actions = []
    for name in ("berth", "runc", "crun"):
        rt = ctx.runtimes[name]
        cid = f"{name}-seccomp"
        b = ctx.bundles.write(cid, [LOOP, n], _with_seccomp(profile))
        actions.append((name, _loop(ctx, rt.run(b, cid))))
    actions.append(("floor", _loop(ctx, ctx.floor.run([LOOP, n]))))
    ctx.alternate(_ValueCollector(col), OP, actions)


def _loop(ctx, argv):
    """Runs argv; its stdout (ns per call) is the measured value."""
    out = os.path.join(ctx.tmpdir, "getppid-loop.out")

    def action():
        ctx.runner.one(argv, stdout=out)
        with open(out) as f:
            return float(f.read().strip())

    return action


class _ValueCollector:
    """Files the ns-per-call value an action returns (instead of a Sample)."""

    def __init__(self, col):
        self.col = col

    def add(self, op, tool, value):
        self.col.add_value(op, tool, "ns", value)

    def discard(self, op, tool):
        self.col.discard(op, tool)

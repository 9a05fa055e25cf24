"""runtime: berth vs runc vs crun vs the physical floor.

Operations (op names of results.json):
- run: foreground `run` of /bin/true (create + start + wait + delete);
  floor: `unshare -p -m -u -i -n -f chroot ROOTFS /bin/true`.
- create-start-delete: `create`, `start`, `delete --force` of /bin/true.
- create: `create` alone (the container is force-deleted afterwards, unmeasured).
- exec: `exec /bin/true` into a running container; floor: `nsenter -t PID -a
  /bin/true` into crun's container. berth is left out until `berth exec` exists.
- seq100: 100 sequential foreground `run` of /bin/true.
- par50-start / par50-delete: 50 `run -d` in parallel, then 50 `delete --force`
  in parallel (containers running `sleep`).
Each also yields cpu-OP (user + system time); run, create and exec yield
peak-rss-OP (ru_maxrss, as GNU time's %M).
"""

import os
import subprocess

from ..measure import CommandFailed

NAME = "runtime"
TITLE = "berth vs runc vs crun vs the floor"
PACKAGES = ["runc", "crun"]
COLUMNS = ["berth", "runc", "crun", "floor"]
RATIOS = [("berth", "crun"), ("berth", "runc")]

TRUE = ["/bin/true"]
SLEEP = ["/bin/sleep", "1000000"]
PARALLEL = 50
SEQUENTIAL = 100

# The goal: every berth operation at or below 0.8 x crun (wall and
# CPU time), peak RSS at or below crun's.
GOAL_TIME = 0.8
GOAL_RSS = 1.0


def skip_reason(ctx):
    """None: the runtime group needs only berth and its PACKAGES."""
    return None


def berth_has_exec(ctx):
    """True once `berth exec --help` succeeds (berth has an exec command)."""
    r = subprocess.run(
        [ctx.runtimes["berth"].binary, "exec", "--help"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    return r.returncode == 0


def run(ctx):
    """Measures every operation, alternating berth, runc, crun, floor in
    each round, into a collector of `ctx`."""
    for name in ("runc", "crun"):
        if name not in ctx.runtimes:
            raise SystemExit(f"bench: {name} is not installed (apt-get install {name})")
    col = ctx.collector(rss_ops=["run", "create", "exec"])
    rts = [ctx.runtimes[n] for n in ("berth", "runc", "crun")]
    floor = ctx.floor

    # run
    actions = []
    for rt in rts:
        b = ctx.bundles.write(f"{rt.name}-run", TRUE)
        actions.append((rt.name, _one(ctx, rt.run(b, f"{rt.name}-run"))))
    actions.append(("floor", _one(ctx, floor.run(TRUE))))
    ctx.alternate(col, "run", actions)

    # create + start + delete
    actions = []
    for rt in rts:
        cid = f"{rt.name}-csd"
        b = ctx.bundles.write(cid, TRUE)
        cmds = [rt.create(b, cid), rt.start(cid), rt.delete(cid, force=True)]
        actions.append((rt.name, _seq(ctx, cmds)))
    ctx.alternate(col, "create-start-delete", actions)

    # create alone
    actions = []
    for rt in rts:
        cid = f"{rt.name}-create"
        b = ctx.bundles.write(cid, TRUE)
        actions.append((rt.name, _then(ctx, rt.create(b, cid), [rt.delete(cid, force=True)])))
    ctx.alternate(col, "create", actions)

    # exec into a running container
    exec_rts = list(rts)
    if not berth_has_exec(ctx):
        exec_rts = [rt for rt in rts if rt.name != "berth"]
        ctx.note("exec", "berth: skipped, `berth exec` does not exist yet")
    started = []
    try:
        pids = {}
        for rt in exec_rts:  # crun is always among them: the floor enters its container
            cid = f"{rt.name}-exec"
            b = ctx.bundles.write(cid, SLEEP)
            pid_file = os.path.join(ctx.tmpdir, f"{cid}.pid")
            ctx.runner.quiet(rt.create(b, cid, pid_file))
            started.append((rt, cid))
            ctx.runner.quiet(rt.start(cid))
            with open(pid_file) as f:
                pids[rt.name] = int(f.read().strip())
        actions = [(rt.name, _one(ctx, rt.exec(f"{rt.name}-exec", TRUE))) for rt in exec_rts]
        actions.append(("floor", _one(ctx, floor.exec(pids["crun"], TRUE))))
        ctx.alternate(col, "exec", actions)
    finally:
        for rt, cid in started:
            ctx.runner.quiet(rt.delete(cid, force=True), check=False)

    # 100 sequential runs
    actions = []
    for rt in rts:
        cid = f"{rt.name}-seq"
        b = ctx.bundles.write(cid, TRUE)
        actions.append((rt.name, _seq(ctx, [rt.run(b, cid)] * SEQUENTIAL)))
    actions.append(("floor", _seq(ctx, [floor.run(TRUE)] * SEQUENTIAL)))
    ctx.alternate(col, f"seq{SEQUENTIAL}", actions, heavy=True)

    # 50 run -d in parallel, then 50 delete -f in parallel
    actions = []
    for rt in rts:
        ids = [f"{rt.name}-par{k}" for k in range(PARALLEL)]
        starts = [rt.run_detached(ctx.bundles.write(cid, SLEEP), cid) for cid in ids]
        deletes = [rt.delete(cid, force=True) for cid in ids]
        actions.append((rt.name, _par_start_delete(ctx, starts, deletes)))
    ctx.alternate(col, [f"par{PARALLEL}-start", f"par{PARALLEL}-delete"], actions, heavy=True)



def _one(ctx, argv):
    """Measures one command."""
    return lambda: ctx.runner.one(argv)


def _seq(ctx, argvs):
    """Measures commands run one after the other, as one sample."""
    return lambda: ctx.runner.sequence(argvs)


def _then(ctx, argv, cleanup):
    """Measures argv, then runs the cleanup commands unmeasured."""

    def action():
        try:
            return ctx.runner.one(argv)
        finally:
            for c in cleanup:
                ctx.runner.quiet(c, check=False)

    return action


def _par_start_delete(ctx, starts, deletes):
    """Measures the parallel starts, then the parallel deletes (one sample
    each); if a start fails, deletes what did start before re-raising."""

    def action():
        try:
            s = ctx.runner.parallel(starts)
        except CommandFailed:
            for d in deletes:
                ctx.runner.quiet(d, check=False)
            raise
        d = ctx.runner.parallel(deletes)
        return [s, d]

    return action


def goals(summaries, ctx=None):
    """Lines saying which of berth's goals the medians meet."""
    by = {(s["op"], s["tool"]): s["median"] for s in summaries}
    met, missed = [], []
    for op in dict.fromkeys(s["op"] for s in summaries):
        b, c = by.get((op, "berth")), by.get((op, "crun"))
        if b is None or c is None or c == 0:
            continue
        limit = GOAL_RSS if op.startswith("peak-rss-") else GOAL_TIME
        r = b / c
        (met if r <= limit else missed).append(f"{op} {r:.2f}")
    if not met and not missed:
        return []
    return [
        f"Goal: berth <= {GOAL_TIME} x crun in time, <= {GOAL_RSS} x crun in peak RSS "
        f"(berth/crun of medians).",
        "",
        f"- met ({len(met)}): {', '.join(met) or 'none'}",
        f"- missed ({len(missed)}): {', '.join(missed) or 'none'}",
    ]

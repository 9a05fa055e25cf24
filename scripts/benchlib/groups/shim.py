"""shim: berth-shim beside conmon, each holding the same container.

Both drive the same runtime: runc (ops without suffix), then berth (ops
ending in `-on-berth`). Operations (op names of results.json; tools
`berth-shim`, `conmon`):
- shim-start: from the holder's invocation to a running container. berth-shim:
  `berth-shim ... --start` (returns once the container runs); conmon: as
  Podman drives it, conmon with a sync pipe until it reports the container's
  pid, then `RUNTIME start` (launch.c times both as one command).
- shim-idle-rss, shim-idle-pss: VmRSS and Pss (/proc/PID/status,
  /proc/PID/smaps_rollup) of the holder of that container (`sleep`, a log
  file, no client attached), read SETTLE seconds after the start. Only one
  holder is alive at a time, so PSS is what a single container costs (with
  more shims alive, a static berth-shim's pages are shared among them).
- shim-log-throughput: MiB/s of a container running `dd if=/dev/zero bs=64k`
  to its stdout, from the holder's invocation until its exit is recorded
  (berth-shim's exit.json, conmon's exit file); logs on a tmpfs, so the
  disk of a shared machine does not set the pace. The log must hold every
  byte, and the recorded exit code must be 0.

Every container is killed, its holder waited for (killed if it does not
leave) and the container deleted after each run.
"""

import json
import os
import shutil
import subprocess
import time

from .. import holders, hostns
from ..measure import CommandFailed
from ..runtimes import version
from ..stats import KIB_PER_MIB, NS_PER_MS, Value

NAME = "shim"
TITLE = "berth-shim vs conmon (runc, then berth, as the runtime)"
PACKAGES = ["conmon", "runc"]
COLUMNS = ["berth-shim", "conmon", "containerd-shim-berth-v2", "containerd-shim-runc-v2"]
RATIOS = [("berth-shim", "conmon"), ("containerd-shim-berth-v2", "containerd-shim-runc-v2")]

IDLE = ["/bin/sleep", "1000000"]
SETTLE = 0.2  # seconds between the start and the memory reading
DD_BLOCK = 65536
# Bytes written by the log-throughput container (full, --quick).
LOG_BYTES = (256 << 20, 32 << 20)
# Runtimes under both holders, and the suffix of their op names.
RUNTIMES = [("runc", ""), ("berth", "-on-berth")]
CONTAINERD_SHIMS = ("containerd-shim-berth-v2", "containerd-shim-runc-v2")

# The goal: an idle berth-shim at or below conmon's RSS.
GOAL_RSS = 1.0


def shim_binary(ctx):
    """The release build of berth-shim (scripts/build-release)."""
    return os.path.join(os.path.dirname(ctx.berth), "berth-shim")


def skip_reason(ctx):
    """Why the group cannot run: no berth-shim release binary."""
    if not os.path.isdir(os.path.join(ctx.workspace, "shim")):
        return "berth-shim is not built yet (no shim/ crate in this checkout)"
    if not os.access(shim_binary(ctx), os.X_OK):
        return f"{shim_binary(ctx)} is missing (scripts/build-release)"
    return None


def run(ctx):
    """Measures start time, idle memory and log throughput of berth-shim and
    conmon, alternating, for each runtime, into collectors of `ctx`."""
    launch = os.path.join(ctx.tmpdir, "launch")
    subprocess.run(["cc", "-O2", "-static", "-o", launch, holders.LAUNCH_C], check=True)
    work = os.path.join(ctx.tmpdir, "shim")
    logs = os.path.join(work, "logs")
    nbytes = LOG_BYTES[1] if ctx.quick else LOG_BYTES[0]
    # Room for one log (payload plus the per-record prefixes) at a time.
    hostns.mount_tmpfs(logs, f"{2 * nbytes + (64 << 20)}")
    conmon = shutil.which("conmon")
    if conmon:
        ctx.extra_versions.append(version(conmon))
    else:
        ctx.note("shim-start", "conmon: skipped, not installed (apt-get install conmon)")
    col = ctx.collector()
    _containerd(ctx, col)
    try:
        for rt_name, sfx in RUNTIMES:
            rt = ctx.runtimes.get(rt_name)
            if rt is None:
                ctx.note(f"shim-start{sfx}", f"skipped: {rt_name} is not installed")
                continue
            hs = [holders.BerthShim(shim_binary(ctx), launch, rt, work)]
            if conmon:
                hs.append(holders.Conmon(conmon, launch, rt, work))
            ops = [f"shim-start{sfx}", f"shim-idle-rss{sfx}", f"shim-idle-pss{sfx}"]
            ctx.alternate(col, ops, [(h.name, _idle(ctx, h, logs)) for h in hs])
            op = f"shim-log-throughput{sfx}"
            ctx.alternate(col, op, [(h.name, _throughput(ctx, h, logs, nbytes)) for h in hs])
        ctx.note(
            "shim-log-throughput",
            f"{nbytes >> 20} MiB of zeros per run (`dd bs=64k`), log on a tmpfs",
        )
    finally:
        hostns.unmount_under(logs)


# Lines of shim-v2/bench/idle-rss --raw: its name → (op suffix, tool).
CONTAINERD_ROWS = {
    "berth-v2-runc": ("", "containerd-shim-berth-v2"),
    "runc-v2-runc": ("", "containerd-shim-runc-v2"),
    "berth-v2-berth": ("-on-berth", "containerd-shim-berth-v2"),
}


def _containerd(ctx, col):
    """Idle RSS/PSS per container of containerd-shim-berth-v2 beside
    containerd-shim-runc-v2, under a containerd of their own
    (shim-v2/bench/idle-rss, one value per shim process)."""
    release = os.path.dirname(ctx.berth)
    if not os.access(os.path.join(release, CONTAINERD_SHIMS[0]), os.X_OK):
        rel = os.path.relpath(release, ctx.workspace)
        ctx.note("shim-v2-idle-rss", f"skipped: no {CONTAINERD_SHIMS[0]} in {rel} (scripts/build-release)")
        return
    if not shutil.which("containerd") or not shutil.which(CONTAINERD_SHIMS[1]):
        ctx.note("shim-v2-idle-rss", "skipped: containerd is not installed (apt-get install containerd)")
        return
    script = os.path.join(ctx.workspace, "shim-v2", "bench", "idle-rss")
    n = "3" if ctx.quick else "20"
    r = subprocess.run(
        [script, "--containers", n, "--target", release, "--raw"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900,
    )
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["no message"])[-1]
        ctx.note("shim-v2-idle-rss", f"failed: {msg}")
        return
    for line in r.stdout.splitlines():
        name, rss, pss = line.split()
        sfx, tool = CONTAINERD_ROWS[name]
        col.add_value(f"shim-v2-idle-rss{sfx}", tool, "MiB", int(rss) / KIB_PER_MIB)
        col.add_value(f"shim-v2-idle-pss{sfx}", tool, "MiB", int(pss) / KIB_PER_MIB)
    ctx.note("shim-v2-idle-rss", f"{n} containers per shim kind under one containerd, runc underneath")


def _failed(holder, cid, what):
    return CommandFailed([holder.binary, "--id", cid], 1 << 8, what)


def _teardown(ctx, holder, cid, log, pid):
    """Kills the container, waits for its holder to leave (kills it after
    10 s), deletes the container and removes the holder's files and log.
    Raises CommandFailed if the holder had to be killed."""
    rt = holder.runtime
    ctx.runner.quiet(rt.kill(cid), check=False)
    left = pid is not None and not holders.stop(pid)
    ctx.runner.quiet(rt.delete(cid, force=True), check=False)
    for p in holder.files(cid):
        shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else _unlink(p)
    _unlink(log)
    if left:
        raise _failed(holder, cid, "did not exit within 10 s of its container's end; killed")


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _holder_pid(holder, cid):
    try:
        return holder.pid(cid)
    except (OSError, ValueError) as e:
        raise _failed(holder, cid, f"no pid file: {e}") from e


def _idle(ctx, holder, logs):
    """Starts an idle container under `holder` (timed), reads the holder's
    memory SETTLE s later, tears it all down. Returns [start ms, RSS MiB,
    PSS MiB]."""
    cid = f"{holder.name}-{holder.runtime.name}-idle"
    bundle = ctx.bundles.write(cid, IDLE)
    log = os.path.join(logs, f"{cid}.log")

    def action():
        pid = None
        try:
            s = ctx.runner.one(holder.start(bundle, cid, log))
            pid = _holder_pid(holder, cid)
            time.sleep(SETTLE)
            try:
                rss, pss = holders.memory_kib(pid)
            except (OSError, ValueError) as e:
                raise _failed(holder, cid, f"cannot read its memory: {e}") from e
        finally:
            _teardown(ctx, holder, cid, log, pid)
        return [
            Value("ms", s.wall_ns / NS_PER_MS),
            Value("MiB", rss / KIB_PER_MIB),
            Value("MiB", pss / KIB_PER_MIB),
        ]

    return action


def exit_code(holder, cid):
    """The exit code the holder recorded: berth-shim's exit.json
    `exit_code`, conmon's exit file (a bare number)."""
    with open(holder.exit_file(cid)) as f:
        text = f.read()
    if isinstance(holder, holders.BerthShim):
        return json.loads(text)["exit_code"]
    return int(text.strip())


def _throughput(ctx, holder, logs, nbytes):
    """Runs `dd` of `nbytes` to stdout under `holder` until its exit is
    recorded; checks the log and the exit code. Returns MiB/s."""
    cid = f"{holder.name}-{holder.runtime.name}-log"
    args = ["/bin/dd", "if=/dev/zero", f"bs={DD_BLOCK}", f"count={nbytes // DD_BLOCK}"]
    bundle = ctx.bundles.write(cid, args)
    log = os.path.join(logs, f"{cid}.log")

    def action():
        pid = None
        try:
            s = ctx.runner.one(holder.run_to_exit(bundle, cid, log))
            pid = _holder_pid(holder, cid)
            size = os.path.getsize(log)
            if size < nbytes:
                raise _failed(holder, cid, f"the log holds {size} bytes, less than {nbytes}")
            code = exit_code(holder, cid)
            if code != 0:
                raise _failed(holder, cid, f"the container exited with {code}")
        finally:
            _teardown(ctx, holder, cid, log, pid)
        return Value("MiB/s", (nbytes / (1 << 20)) / (s.wall_ns / 1e9))

    return action


def goals(summaries, ctx=None):
    """Lines saying whether the idle berth-shim is at or below conmon's RSS."""
    by = {(s["op"], s["tool"]): s["median"] for s in summaries}
    lines = []
    for op in dict.fromkeys(s["op"] for s in summaries):
        if not op.startswith("shim-idle-rss"):
            continue
        b, c = by.get((op, "berth-shim")), by.get((op, "conmon"))
        if b is None or c is None or c == 0:
            continue
        verdict = "met" if b / c <= GOAL_RSS else "missed"
        lines.append(f"- {op}: berth-shim/conmon {b / c:.2f}: {verdict}")
    if not lines:
        return []
    return ["Goal: an idle berth-shim at or below conmon's RSS (medians).", ""] + lines

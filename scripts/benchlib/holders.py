"""Command lines of the container holders under test: berth-shim and conmon.

Both hold one container: they create it through a runc-compatible runtime
(`--runtime-arg --root DIR` so each runtime keeps its state apart), keep its
stdio, write its log and record its exit. Each is started through `launch`
(launch.c), so that the spawner times the whole hand-over as one command:

- berth-shim: `berth-shim ... --start` returns once the container runs.
- conmon: Podman's protocol. conmon gets a sync pipe in $_OCI_SYNCPIPE,
  writes the container's pid there after `RUNTIME create`, and the caller
  then runs `RUNTIME start` (launch's -s and -a).

The memory of a holder is read from the kernel: VmRSS of /proc/PID/status
and Pss of /proc/PID/smaps_rollup.
"""

import os
import signal
import time

LAUNCH_C = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch.c")


def _read(path):
    with open(path) as f:
        return f.read()


def field_kib(text, name):
    """The value in KiB of the `name:` line of a /proc status-like file
    (e.g. `VmRSS:    1276 kB`); raises ValueError if there is none."""
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key == name:
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                return int(parts[0])
    raise ValueError(f"no {name} line")


def memory_kib(pid):
    """(RSS, PSS) of process `pid` in KiB."""
    rss = field_kib(_read(f"/proc/{pid}/status"), "VmRSS")
    pss = field_kib(_read(f"/proc/{pid}/smaps_rollup"), "Pss")
    return rss, pss


def read_pid(path):
    """The pid written in `path`."""
    return int(_read(path).strip())


def wait_gone(pid, timeout):
    """Waits until process `pid` has exited (reaping it if it is a child:
    the bench is a subreaper, so daemonized holders end up as its
    children). True if it is gone, False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, _ = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                return True
        except ChildProcessError:
            # Not (or not yet) our child: gone once /proc has no entry.
            if not os.path.exists(f"/proc/{pid}"):
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)


def stop(pid, timeout=10):
    """Waits for holder `pid` to exit; kills it (it is ours) if it does
    not within `timeout` seconds. True if it exited by itself."""
    if wait_gone(pid, timeout):
        return True
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_gone(pid, 5)
    return False


class BerthShim:
    """berth-shim at `binary`, driving `runtime` (a runtimes.Runtime); its
    state directories go under `workdir`."""

    name = "berth-shim"

    def __init__(self, binary, launch, runtime, workdir):
        self.binary = binary
        self.launch = launch
        self.runtime = runtime
        self.workdir = workdir

    def state_dir(self, cid):
        """The shim's --state-dir for container `cid`."""
        return os.path.join(self.workdir, f"{cid}.shim")

    def _cmd(self, bundle, cid, log):
        return [
            self.binary,
            "--runtime", self.runtime.binary,
            "--runtime-arg=--root", "--runtime-arg", self.runtime.root,
            "--bundle", bundle,
            "--id", cid,
            "--state-dir", self.state_dir(cid),
            "--log-path", log,
            "--start",
        ]

    def start(self, bundle, cid, log):
        """Starts the container; returns once it runs."""
        return [self.launch, "--", *self._cmd(bundle, cid, log)]

    def run_to_exit(self, bundle, cid, log):
        """Starts the container and returns once its exit is recorded."""
        return [self.launch, "-w", self.exit_file(cid), "--", *self._cmd(bundle, cid, log)]

    def exit_file(self, cid):
        """Where the exit status is recorded."""
        return os.path.join(self.state_dir(cid), "exit.json")

    def pid(self, cid):
        """The pid of the shim holding `cid`."""
        return read_pid(os.path.join(self.state_dir(cid), "shim.pid"))

    def files(self, cid):
        """What a run leaves in `workdir` (removed by the caller)."""
        return [self.state_dir(cid)]


class Conmon:
    """conmon at `binary`, driving `runtime`; pid files, exit and socket
    directories under `workdir`."""

    name = "conmon"

    def __init__(self, binary, launch, runtime, workdir):
        self.binary = binary
        self.launch = launch
        self.runtime = runtime
        self.workdir = workdir

    def _path(self, cid, what):
        return os.path.join(self.workdir, f"{cid}.{what}")

    def _cmd(self, bundle, cid, log):
        for d in ("exits", "sock"):
            os.makedirs(self._path(cid, d), exist_ok=True)
        return [
            self.binary,
            "--api-version", "1",
            "-c", cid, "-u", cid, "-n", cid,
            "-r", self.runtime.binary,
            "--runtime-arg", "--root", "--runtime-arg", self.runtime.root,
            "-b", bundle,
            "-p", self._path(cid, "ctr.pid"),
            "-P", self._path(cid, "conmon.pid"),
            "-l", f"k8s-file:{log}",
            "--exit-dir", self._path(cid, "exits"),
            "--socket-dir-path", self._path(cid, "sock"),
        ]

    def _start_after(self, cid):
        """launch's -a arguments: `RUNTIME --root DIR start ID`."""
        out = []
        for a in self.runtime.start(cid):
            out += ["-a", a]
        return out

    def start(self, bundle, cid, log):
        """Starts the container as Podman does; returns once it runs."""
        return [self.launch, "-s", *self._start_after(cid), "--", *self._cmd(bundle, cid, log)]

    def run_to_exit(self, bundle, cid, log):
        """Starts the container and returns once its exit is recorded."""
        return [
            self.launch, "-s", *self._start_after(cid), "-w", self.exit_file(cid), "--",
            *self._cmd(bundle, cid, log),
        ]

    def exit_file(self, cid):
        """Where the exit status is recorded."""
        return os.path.join(self._path(cid, "exits"), cid)

    def pid(self, cid):
        """The pid of the conmon holding `cid`."""
        return read_pid(self._path(cid, "conmon.pid"))

    def files(self, cid):
        """What a run leaves in `workdir` (removed by the caller)."""
        return [self._path(cid, w) for w in ("exits", "sock", "ctr.pid", "conmon.pid")]

"""Runs commands and reads their cost from the kernel's own accounting.

Measured commands are started by `spawner.c`, a small static helper that
lives for the whole run (in the bench's mount namespace): it forks and execs
each command, takes CLOCK_MONOTONIC around it and passes on the `wait4`
rusage. Wall time is that clock; CPU time is user + system time from the
rusage, peak RSS its `ru_maxrss` (the field GNU time prints as `%M`). Both
cover the command and every descendant it reaped itself: a container init
that outlives the command (after `create` or `run -d`) is not counted there.

The helper exists because a child's ru_maxrss starts at the RSS of whatever
it was forked from: spawned from Python, every command would show Python's
~16 MiB. Stdin and stdout are /dev/null (or a file), stderr a file shown
when the command fails; the environment holds only PATH.
"""

import os
import signal
import subprocess
from dataclasses import dataclass

SPAWNER_C = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spawner.c")

# The environment of every command the bench runs: PATH only, so that a
# developer's RUST_BACKTRACE=1 (which makes every anyhow error capture a
# backtrace) or similar never changes what is measured.
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


@dataclass
class Sample:
    """The cost of one measured run of an operation."""

    wall_ns: int
    cpu_ns: int
    maxrss_kib: int


class CommandFailed(Exception):
    """A measured command exited non-zero or was killed."""

    def __init__(self, argv, status, stderr):
        self.argv = list(argv)
        self.status = status
        self.stderr = stderr.strip()
        super().__init__(
            f"{' '.join(self.argv)}: {describe_status(status)}: {self.stderr or '(no stderr)'}"
        )


def describe_status(status):
    """'exit code N', 'killed by signal N' or 'fork failed' for a wait status."""
    if status < 0:
        return "fork failed"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def build_spawner(dest):
    """Compiles spawner.c (static, so its own RSS stays tiny) to `dest`."""
    subprocess.run(["cc", "-O2", "-static", "-o", dest, SPAWNER_C], check=True)
    return dest


class Runner:
    """Starts measured commands through the spawner; stderr of each goes to a
    file in `tmpdir`. Start it after entering the bench's namespace."""

    def __init__(self, tmpdir):
        self.tmpdir = tmpdir
        self._n = 0
        exe = build_spawner(os.path.join(tmpdir, "spawner"))
        # Its own process group, so a hung command can be stopped with it.
        self._proc = subprocess.Popen(
            [exe],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
            env=CLEAN_ENV,
        )

    def close(self):
        """Stops the spawner; if it is still waiting for a command after a
        few seconds, kills its process group (the spawner and the commands
        it started, nothing else)."""
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._proc.stdout.close()

    def _errfile(self):
        self._n += 1
        return os.path.join(self.tmpdir, f"stderr-{self._n % 256}")

    def _request(self, mode, argvs, stdout="/dev/null"):
        """Sends one request; returns ([(argv, status, cpu_ns, maxrss)], wall_ns)."""
        lines = [f"{mode} {len(argvs)}"]
        errfiles = []
        for argv in argvs:
            if any("\n" in a for a in argv):
                raise ValueError(f"argument with a newline: {argv}")
            errfiles.append(self._errfile())
            lines += [str(len(argv)), *argv, stdout, errfiles[-1]]
        self._proc.stdin.write("\n".join(lines) + "\n")
        self._proc.stdin.flush()
        done = []
        while True:
            line = self._proc.stdout.readline()
            if not line:
                raise RuntimeError("the bench's spawner exited")
            f = line.split()
            if f[0] == "E":
                wall = int(f[1])
                break
            i = len(done)
            done.append((argvs[i], int(f[0]), int(f[1]) + int(f[2]), int(f[3]), errfiles[i]))
        for argv, status, _, _, errfile in done:
            if status != 0:
                raise CommandFailed(argv, status, _read(errfile))
        return done, wall

    def one(self, argv, stdout="/dev/null"):
        """Runs one command to completion (stdout into the file `stdout`);
        returns its Sample."""
        done, wall = self._request("S", [argv], stdout)
        _, _, cpu, rss, _ = done[0]
        return Sample(wall, cpu, rss)

    def sequence(self, argvs):
        """Runs the commands one after the other: wall of the whole, CPU
        summed, peak RSS the largest."""
        done, wall = self._request("S", argvs)
        return Sample(wall, sum(d[2] for d in done), max(d[3] for d in done))

    def parallel(self, argvs):
        """Starts all the commands at once and waits for all: wall from the
        first start to the last exit, CPU summed, peak RSS the largest."""
        done, wall = self._request("P", argvs)
        return Sample(wall, sum(d[2] for d in done), max(d[3] for d in done))

    def quiet(self, argv, check=True):
        """Runs a set-up or clean-up command (not measured, straight from
        Python; stdio in files, since a container may keep them open);
        raises CommandFailed if it fails and `check` is set."""
        errfile = self._errfile()
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, errfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        ]
        pid = os.posix_spawn(argv[0], argv, CLEAN_ENV, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        if check and status != 0:
            raise CommandFailed(argv, status, _read(errfile))
        return status


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def reap_orphans():
    """Reaps every exited child without blocking (the bench is a child
    subreaper, so container inits whose runtime exited end up here)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return

"""Command lines of the runtimes under test (berth, runc, crun: one runc CLI)
and of the physical floor (unshare + chroot, nsenter)."""

import os
import shutil
import subprocess


class Runtime:
    """A runc-compatible runtime `name` at `binary`, with its own state --root."""

    def __init__(self, name, binary, root):
        self.name = name
        self.binary = binary
        self.root = root
        os.makedirs(root, exist_ok=True)

    def _cmd(self, *args):
        return [self.binary, "--root", self.root, *args]

    def run(self, bundle, cid):
        """Foreground `run`: create, start, wait, delete."""
        return self._cmd("run", "--bundle", bundle, cid)

    def run_detached(self, bundle, cid):
        """`run -d`: returns once the container process runs."""
        return self._cmd("run", "-d", "--bundle", bundle, cid)

    def create(self, bundle, cid, pid_file=None):
        """`create`, optionally writing the init's pid to `pid_file`."""
        extra = ["--pid-file", pid_file] if pid_file else []
        return self._cmd("create", "--bundle", bundle, *extra, cid)

    def start(self, cid):
        """`start`."""
        return self._cmd("start", cid)

    def kill(self, cid, sig="KILL"):
        """`kill` of the container's init with `sig`."""
        return self._cmd("kill", cid, sig)

    def delete(self, cid, force=False):
        """`delete`, with --force to kill a running container first."""
        return self._cmd("delete", *(["--force"] if force else []), cid)

    def exec(self, cid, args):
        """`exec` of `args` in a running container."""
        return self._cmd("exec", cid, *args)

    def cleanup(self):
        """Force-deletes every container left in this runtime's --root and
        removes the --root. Returns the ids that could not be deleted."""
        left = []
        if not os.path.isdir(self.root):
            return left
        out = subprocess.run(
            self._cmd("list", "-q"), capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        for cid in out.stdout.split():
            r = subprocess.run(
                self.delete(cid, force=True),
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
            )
            if r.returncode != 0:
                left.append(f"{self.name} {cid}: {r.stderr.strip()}")
        shutil.rmtree(self.root, ignore_errors=True)
        return left


class Floor:
    """The physical floor: the kernel work a runtime cannot avoid, done by
    util-linux tools with nothing else around it."""

    name = "floor"

    def __init__(self, rootfs):
        self.rootfs = rootfs
        self.unshare = shutil.which("unshare")
        self.nsenter = shutil.which("nsenter")
        self.chroot = shutil.which("chroot")

    def run(self, args):
        """New pid, mount, uts, ipc and network namespaces, chroot, exec."""
        return [self.unshare, "-p", "-m", "-u", "-i", "-n", "-f", self.chroot, self.rootfs, *args]

    def exec(self, pid, args):
        """Enter every namespace of `pid` (and so its root) and exec."""
        return [self.nsenter, "-t", str(pid), "-a", *args]


def version(binary):
    """First line of `BINARY --version`."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        return (out.stdout.strip().splitlines() or ["?"])[0]
    except (OSError, subprocess.TimeoutExpired):
        return "?"

"""Puts the bench process where every runtime can run the same way.

crun 1.8.1 refuses this machine's hybrid cgroup layout ("cgroups in hybrid
mode not supported, drop all controllers from cgroupv2"), so the bench moves
itself into a private mount namespace where /sys/fs/cgroup/unified is not
mounted, and runs every runtime (berth, runc, crun and the floor) from there:
the cost of the namespace is paid once, never inside a measurement.

It also becomes a child subreaper, so container inits whose runtime has
exited (after `create` or `run -d`) are reaped by the bench instead of the
machine's PID 1.
"""

import ctypes
import os

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
PR_SET_CHILD_SUBREAPER = 36
UNIFIED = "/sys/fs/cgroup/unified"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def is_mount_point(path):
    """True if `path` is a mount point in this mount namespace."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def enter():
    """Unshares the mount namespace (private propagation, so nothing leaks
    to the host), unmounts the cgroup2 of a hybrid layout if there is one,
    and makes this process a child subreaper. Returns a short description."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    what = "private mount namespace"
    if is_mount_point(UNIFIED):
        _check(_libc.umount2(UNIFIED.encode(), 0), f"umount {UNIFIED}")
        what += f" without {UNIFIED}"
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
    return what

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


MNT_DETACH = 2


def _unescape(field):
    """A mountinfo path field with its octal escapes (\\040 for a space) decoded."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points_under(mountinfo, path):
    """The mount points at or below `path` in the text of a
    /proc/PID/mountinfo, deepest (and latest) first: the order to unmount."""
    path = path.rstrip("/")
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        mp = _unescape(fields[4])
        if mp == path or mp.startswith(path + "/"):
            found.append(mp)
    # Later mounts stack on earlier ones: reverse order, deepest first.
    found.reverse()
    return sorted(found, key=lambda p: -p.count("/"))


def mount_tmpfs(path, size):
    """Mounts a tmpfs of at most `size` (e.g. "512m") at `path` (inside the
    bench's private mount namespace: nothing shows on the host)."""
    os.makedirs(path, exist_ok=True)
    _check(
        _libc.mount(b"tmpfs", path.encode(), b"tmpfs", 0, f"size={size},mode=0700".encode()),
        f"mount tmpfs on {path}",
    )


def unmount_under(path):
    """Unmounts (lazily) every mount at or below `path`. Returns those that
    could not be unmounted."""
    with open("/proc/self/mountinfo") as f:
        points = mount_points_under(f.read(), path)
    left = []
    for mp in points:
        if _libc.umount2(mp.encode(), MNT_DETACH) != 0:
            left.append(f"mount {mp}: {os.strerror(ctypes.get_errno())}")
    return left

"""The cgroups of the bench: all under /berth-bench/<bench pid>/, removed at the end.

Every container gets the absolute cgroupsPath /berth-bench/<pid>/<id>, so the
runtimes never create cgroups under the caller's own (management) cgroup and
two bench runs on one machine do not collide.
"""

import os

ROOT = "/sys/fs/cgroup"
PARENT = "/berth-bench"


def parent():
    """The cgroup parent of this bench run."""
    return f"{PARENT}/{os.getpid()}"


def hierarchies():
    """Mounted cgroup hierarchies (v1 controllers, and cgroup2 if visible);
    symlinks such as cpu -> cpu,cpuacct are skipped so none is seen twice."""
    try:
        names = sorted(os.listdir(ROOT))
    except OSError:
        return []
    dirs = []
    for n in names:
        p = os.path.join(ROOT, n)
        if not os.path.islink(p) and os.path.isdir(p) and os.path.ismount(p):
            dirs.append(p)
    if not dirs and os.path.exists(os.path.join(ROOT, "cgroup.controllers")):
        dirs.append(ROOT)  # pure cgroup2
    return dirs


def cleanup():
    """Removes this run's cgroups (deepest first) in every hierarchy, then
    /berth-bench itself if no other run uses it. Returns what could not be
    removed (a cgroup that still holds a process)."""
    left = []
    for h in hierarchies():
        mine = h + parent()
        if os.path.isdir(mine):
            for dirpath, _, _ in sorted(os.walk(mine), key=lambda w: -w[0].count("/")):
                try:
                    os.rmdir(dirpath)
                except OSError as e:
                    left.append(f"{dirpath}: {e.strerror}")
        try:
            os.rmdir(h + PARENT)
        except OSError:
            pass  # absent, or another bench run still has cgroups there
    return left

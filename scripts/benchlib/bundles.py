"""The busybox rootfs and one small bundle directory per container.

The rootfs is made once from Debian's busybox-static; every bundle holds
only a config.json (from `berth spec`, the same for every runtime) whose
root.path is that rootfs, absolute and read-only, and whose cgroupsPath is
/berth-bench/<bench pid>/<container id>.
"""

import copy
import json
import os
import shutil
import subprocess

from . import cgroups

BUSYBOX = "/bin/busybox"


def make_rootfs(path):
    """Fills `path` with busybox-static and a symlink per applet."""
    if not os.path.exists(BUSYBOX):
        raise SystemExit(f"bench: {BUSYBOX} is missing (apt-get install busybox-static)")
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "root"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin/busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet != "busybox":
            os.symlink("busybox", os.path.join(path, "bin", applet))
    with open(os.path.join(path, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(os.path.join(path, "etc/group"), "w") as f:
        f.write("root:x:0:\n")


def default_config(berth, tmpdir):
    """The config `berth spec --bundle DIR` writes, as a dict."""
    d = os.path.join(tmpdir, "spec")
    os.makedirs(d, exist_ok=True)
    subprocess.run([berth, "spec", "--bundle", d], check=True)
    with open(os.path.join(d, "config.json")) as f:
        return json.load(f)


class Bundles:
    """Writes bundle directories under `dir` for containers of `rootfs`."""

    def __init__(self, dir, rootfs, base_config):
        self.dir = dir
        self.rootfs = os.path.abspath(rootfs)
        self.base = base_config

    def config(self, cid, args, extra=None):
        """The config of container `cid` running `args`; `extra(config)` may
        change it further (e.g. add linux.seccomp)."""
        c = copy.deepcopy(self.base)
        c["process"]["args"] = list(args)
        c["process"]["terminal"] = False
        c["root"] = {"path": self.rootfs, "readonly": True}
        c.setdefault("linux", {})["cgroupsPath"] = f"{cgroups.parent()}/{cid}"
        if extra:
            extra(c)
        return c

    def write(self, cid, args, extra=None):
        """Writes DIR/<cid>/config.json and returns the bundle directory."""
        path = os.path.join(self.dir, cid)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(self.config(cid, args, extra), f)
        return path

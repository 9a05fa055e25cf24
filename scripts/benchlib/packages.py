"""Installs the Debian packages a group compares against (idempotent)."""

import os
import subprocess
import sys


def missing(names):
    """The packages of `names` that dpkg does not list as installed."""
    out = []
    for n in names:
        r = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", n], capture_output=True, text=True
        )
        if "install ok installed" not in r.stdout:
            out.append(n)
    return out


def install(names):
    """apt-get installs those of `names` that are missing."""
    todo = missing(names)
    if not todo:
        return
    print(f"bench: apt-get install {' '.join(todo)}", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *todo],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )

"""Turns the Docker/Podman default seccomp profile into an OCI linux.seccomp.

The profile (/usr/share/containers/seccomp.json from Debian's
golang-github-containers-common) is in Docker's format: rules carry
includes/excludes on capabilities and architectures that the engine resolves
before it writes config.json. This does the same resolution for one
architecture and one set of capabilities.
"""

import json
import platform

DEFAULT_PROFILE = "/usr/share/containers/seccomp.json"

# uname machine -> (libseccomp architecture, Go architecture name used in
# the profile's includes/excludes).
ARCHES = {
    "x86_64": ("SCMP_ARCH_X86_64", "amd64"),
    "aarch64": ("SCMP_ARCH_AARCH64", "arm64"),
}


def kernel_at_least(minimum, release=None):
    """True if the running kernel (or `release`) is at least `minimum` ("5.8")."""

    def parts(v):
        out = []
        for p in v.split("-")[0].split(".")[:2]:
            digits = "".join(ch for ch in p if ch.isdigit())
            out.append(int(digits or 0))
        return out

    return parts(release or platform.release()) >= parts(minimum)


def applies(rule, caps, goarch):
    """Whether a Docker-format rule applies to a container with `caps` on `goarch`."""
    inc = rule.get("includes") or {}
    exc = rule.get("excludes") or {}
    if inc.get("arches") and goarch not in inc["arches"]:
        return False
    if inc.get("caps") and not all(c in caps for c in inc["caps"]):
        return False
    if inc.get("minKernel") and not kernel_at_least(inc["minKernel"]):
        return False
    if exc.get("arches") and goarch in exc["arches"]:
        return False
    if exc.get("caps") and any(c in caps for c in exc["caps"]):
        return False
    if exc.get("minKernel") and kernel_at_least(exc["minKernel"]):
        return False
    return True


def to_oci(profile, caps, machine=None):
    """The OCI linux.seccomp object for `caps` on `machine` (default: this one)."""
    machine = machine or platform.machine()
    if machine not in ARCHES:
        raise ValueError(f"no seccomp architecture known for {machine}")
    arch, goarch = ARCHES[machine]
    arches = [arch]
    for m in profile.get("archMap") or []:
        if m["architecture"] == arch:
            arches += m.get("subArchitectures") or []
    out = {"defaultAction": profile["defaultAction"], "architectures": arches, "syscalls": []}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    for rule in profile.get("syscalls") or []:
        if not applies(rule, caps, goarch):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        entry = {"names": names, "action": rule["action"]}
        args = [
            {k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a}
            for a in rule.get("args") or []
        ]
        if args:
            entry["args"] = args
        if "errnoRet" in rule:
            entry["errnoRet"] = rule["errnoRet"]
        out["syscalls"].append(entry)
    return out


def load(caps, path=DEFAULT_PROFILE):
    """The default profile at `path` as OCI linux.seccomp for `caps`."""
    with open(path) as f:
        return to_oci(json.load(f), caps)

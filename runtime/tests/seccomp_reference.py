#!/usr/bin/python3
# Reference for berth's seccomp differential test: builds each OCI
# `linux.seccomp` profile read from stdin (a JSON list) with libseccomp,
# translated the way crun does it (libcrun_generate_seccomp), and writes one
# JSON line per profile: {"bpf": "<hex of seccomp_export_bpf>"} or
# {"error": "..."} when libseccomp refuses the profile.
#
# Needs Debian's python3-seccomp (run with /usr/bin/python3).
import json
import os
import sys
import tempfile

import seccomp as S

OPS = {
    "SCMP_CMP_NE": S.NE, "SCMP_CMP_LT": S.LT, "SCMP_CMP_LE": S.LE, "SCMP_CMP_EQ": S.EQ,
    "SCMP_CMP_GE": S.GE, "SCMP_CMP_GT": S.GT, "SCMP_CMP_MASKED_EQ": S.MASKED_EQ,
}


def action(name, errno):
    if name in ("SCMP_ACT_ERRNO",):
        return S.ERRNO(1 if errno is None else errno)
    if name == "SCMP_ACT_TRACE":
        return S.TRACE(1 if errno is None else errno)
    return {
        "SCMP_ACT_ALLOW": S.ALLOW, "SCMP_ACT_KILL": S.KILL, "SCMP_ACT_KILL_THREAD": S.KILL,
        "SCMP_ACT_KILL_PROCESS": S.KILL_PROCESS, "SCMP_ACT_TRAP": S.TRAP,
        "SCMP_ACT_LOG": S.LOG, "SCMP_ACT_NOTIFY": S.NOTIFY,
    }[name]


def build(p):
    default = action(p["defaultAction"], p.get("defaultErrnoRet"))
    f = S.SyscallFilter(default)
    for a in p.get("architectures") or []:
        arch = getattr(S.Arch, a[len("SCMP_ARCH_"):])
        try:
            f.add_arch(arch)
        except RuntimeError:
            pass  # already there (the native one): crun ignores EEXIST
    for sc in p.get("syscalls") or []:
        act = action(sc["action"], sc.get("errnoRet"))
        if act == default:
            continue
        args = sc.get("args") or []
        conds = [S.Arg(a["index"], OPS[a["op"]], a["value"], a.get("valueTwo", 0)) for a in args]
        idx = [a["index"] for a in args]
        groups = [[c] for c in conds] if len(set(idx)) != len(idx) else [conds]
        for name in sc["names"]:
            if S.resolve_syscall(S.Arch.NATIVE, name) == -1:
                continue  # __NR_SCMP_ERROR, an unknown name: crun warns and skips it
            for g in groups:
                f.add_rule(act, name, *g)
    with tempfile.TemporaryFile() as t:
        f.export_bpf(t)
        t.seek(0)
        return t.read().hex()


def main():
    profiles = json.load(sys.stdin)
    out = []
    for p in profiles:
        try:
            out.append({"bpf": build(p)})
        except (RuntimeError, ValueError, KeyError, AttributeError) as e:
            out.append({"error": repr(e)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

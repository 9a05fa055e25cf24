//! Differential test: berth's seccomp filters against libseccomp's.
//!
//! Each profile is compiled by berth and, through Debian's python3-seccomp
//! (`seccomp_reference.py`, crun's translation), by libseccomp; both BPF
//! programs run in berth's classic-BPF interpreter over `seccomp_data`
//! samples: every syscall number of every architecture (plus edge
//! numbers), and for syscalls with argument rules the edge values around
//! each rule's values and masks. No kernel is involved.
//!
//! berth's program must also agree with `Policy::verdict`, the direct
//! evaluation of the profile.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use berth::seccomp::interp::{self, SeccompData};
use berth::seccomp::policy::Verdict;
use berth::seccomp::syscalls::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use berth::seccomp::{prepare, Prepared};
use oci_spec::runtime::LinuxSeccomp;
use seccompiler::sock_filter;
use serde_json::{json, Value};

const PYTHON: &str = "/usr/bin/python3";

/// libseccomp's programs for `profiles` (None where libseccomp refuses).
fn libseccomp(profiles: &[Value]) -> Vec<Option<Vec<sock_filter>>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seccomp_reference.py");
    let mut child = Command::new(PYTHON)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run /usr/bin/python3 (apt-get install python3-seccomp; scripts/setup does)");
    let input = serde_json::to_vec(profiles).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "seccomp_reference.py failed (is python3-seccomp installed?)"
    );
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    v.iter()
        .map(|r| {
            r["bpf"].as_str().map(|h| {
                let bytes: Vec<u8> = (0..h.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                    .collect();
                interp::parse(&bytes).unwrap()
            })
        })
        .collect()
}

fn berth(profile: &Value) -> anyhow::Result<Prepared> {
    let s: LinuxSeccomp = serde_json::from_value(profile.clone()).unwrap();
    prepare(&s)
}

/// Syscall numbers to try under each audit arch an x86_64 kernel can
/// report (plus one it cannot: 0). Rules for foreign architectures
/// (aarch64...) are never evaluated on this kernel.
fn numbers() -> Vec<(u32, u32)> {
    let mut v = Vec::new();
    let edges = [
        0x3fff_ffff,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_fffe,
        0xffff_ffff,
        1000,
        4095,
    ];
    for audit in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386] {
        for nr in (0..=480).chain(edges) {
            v.push((audit, nr));
        }
    }
    for nr in 0..=560 {
        v.push((AUDIT_ARCH_X86_64, X32_SYSCALL_BIT + nr));
    }
    v.push((AUDIT_ARCH_X86_64, X32_SYSCALL_BIT + 0x1000));
    v.push((0, 0));
    v
}

/// Argument values worth trying for a profile: each rule value, mask,
/// masked datum, their neighbours, and values differing only in the high
/// half.
fn edge_values(profile: &Value) -> Vec<u64> {
    let mut s: BTreeSet<u64> = [0, 1, u64::MAX, 0xffff_ffff, 0x1_0000_0000].into();
    for sc in profile["syscalls"].as_array().into_iter().flatten() {
        for a in sc["args"].as_array().into_iter().flatten() {
            let v = a["value"].as_u64().unwrap_or(0);
            let v2 = a["valueTwo"].as_u64().unwrap_or(0);
            for x in [v, v2, v & v2, !v & v2, v | (v2 & !v)] {
                for d in [x.wrapping_sub(1), x, x.wrapping_add(1)] {
                    s.insert(d);
                    s.insert(d ^ 0x1_0000_0000);
                }
            }
        }
    }
    s.into_iter().collect()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Argument vectors for one syscall: the cartesian product of the edge
/// values over the argument indexes its rules use when small, else a
/// random sample of it; plus a few fixed vectors.
fn arg_vectors(indexes: &[usize], values: &[u64], rng: &mut Rng, max: usize) -> Vec<[u64; 6]> {
    let mut out = vec![[0; 6], [u64::MAX; 6], [1, 2, 3, 4, 5, 6]];
    let total = values
        .len()
        .checked_pow(indexes.len() as u32)
        .unwrap_or(usize::MAX);
    if indexes.is_empty() {
        return out;
    }
    if total <= max {
        for mut n in 0..total {
            let mut a = [0u64; 6];
            for &i in indexes {
                a[i] = values[n % values.len()];
                n /= values.len();
            }
            out.push(a);
        }
    } else {
        for _ in 0..max {
            let mut a = [0u64; 6];
            for &i in indexes {
                a[i] = *rng.pick(values);
            }
            out.push(a);
        }
    }
    out
}

/// Argument indexes the profile's rules check (on any syscall).
fn used_indexes(p: &Prepared) -> Vec<usize> {
    let mut s = BTreeSet::new();
    for t in p.policy.arches.values() {
        for v in t.values() {
            if let Verdict::Rules(rules) = v {
                for r in rules {
                    for c in &r.conds {
                        s.insert(c.index as usize);
                    }
                }
            }
        }
    }
    s.into_iter().collect()
}

#[derive(Default, Debug)]
struct Stats {
    cases: u64,
    /// libseccomp's verdict depends on the order its rules were added.
    order_dependent: u64,
    /// libseccomp returns a verdict that no single rule gives.
    libseccomp_bug: u64,
    /// Rules of different actions match the input, and berth and
    /// libseccomp each pick one of them.
    overlap: u64,
}

/// What the oracles say about a sample where berth and libseccomp differ.
struct Oracles<'a> {
    reversed: Option<&'a [sock_filter]>,
    singles: &'a [Option<Vec<sock_filter>>],
    default: u32,
    /// Accept either verdict where rules of different actions overlap.
    allow_overlap: bool,
}

/// Compares berth and libseccomp on every sample; panics on a difference
/// that the oracles do not explain (none are given for real profiles).
#[allow(clippy::too_many_arguments)]
fn compare(
    what: &str,
    profile: &Value,
    ours: &Prepared,
    theirs: &[sock_filter],
    oracles: Option<&Oracles>,
    rng: &mut Rng,
    per_syscall: usize,
    stats: &mut Stats,
) {
    let values = edge_values(profile);
    let all_indexes = used_indexes(ours);
    for (arch, nr) in numbers() {
        // Syscalls with argument rules get the full sample; the others a
        // smaller one over every index any rule of the profile checks.
        let own: Vec<usize> = match ours
            .policy
            .arch_of(arch, nr)
            .and_then(|a| ours.policy.arches[&a].get(&nr))
        {
            Some(Verdict::Rules(rules)) => {
                let s: BTreeSet<usize> = rules
                    .iter()
                    .flat_map(|r| r.conds.iter().map(|c| c.index as usize))
                    .collect();
                s.into_iter().collect()
            }
            _ => Vec::new(),
        };
        let args = if own.is_empty() {
            arg_vectors(&all_indexes, &values, rng, 24)
        } else {
            arg_vectors(&own, &values, rng, per_syscall)
        };
        for a in args {
            let d = SeccompData {
                nr,
                arch,
                ip: 0,
                args: a,
            };
            let b = interp::run(&ours.program, &d).unwrap();
            let spec = ours.policy.verdict(arch, nr, &a);
            assert_eq!(
                b, spec,
                "{what}: berth's program disagrees with its policy at {d:x?}"
            );
            let l = interp::run(theirs, &d).unwrap();
            stats.cases += 1;
            if b == l {
                continue;
            }
            let Some(o) = oracles else {
                panic!("{what}: berth {b:#x} != libseccomp {l:#x} at {d:x?}");
            };
            if let Some(r) = o.reversed {
                if interp::run(r, &d).unwrap() != l {
                    stats.order_dependent += 1;
                    continue;
                }
            }
            let singles: Vec<u32> = o
                .singles
                .iter()
                .flatten()
                .map(|s| interp::run(s, &d).unwrap())
                .collect();
            let justified = if l == o.default {
                singles.iter().all(|v| *v == o.default)
            } else {
                singles.contains(&l)
            };
            if !justified {
                stats.libseccomp_bug += 1;
                continue;
            }
            if o.allow_overlap && singles.contains(&b) && singles.contains(&l) {
                stats.overlap += 1;
                continue;
            }
            panic!(
                "{what}: berth {b:#x} != libseccomp {l:#x} at {d:x?}\nprofile: {}",
                serde_json::to_string(profile).unwrap()
            );
        }
    }
}

/// The containers/common profile made into an OCI one, as Podman does for
/// a container with `caps` on amd64.
fn podman_profile(caps: &[&str]) -> Value {
    let raw: Value =
        serde_json::from_slice(&std::fs::read("/usr/share/containers/seccomp.json").expect(
            "/usr/share/containers/seccomp.json (apt-get install golang-github-containers-common)",
        ))
        .unwrap();
    let arches = vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];
    let has_all = |v: &Value, set: &[&str]| {
        v.as_array()
            .is_none_or(|l| l.iter().all(|c| set.contains(&c.as_str().unwrap())))
    };
    let has_any = |v: &Value, set: &[&str]| {
        v.as_array()
            .is_some_and(|l| l.iter().any(|c| set.contains(&c.as_str().unwrap())))
    };
    let mut syscalls = Vec::new();
    for sc in raw["syscalls"].as_array().unwrap() {
        let inc = &sc["includes"];
        let exc = &sc["excludes"];
        if !has_all(&inc["caps"], caps) || has_any(&exc["caps"], caps) {
            continue;
        }
        if inc["arches"].is_array() && !has_any(&inc["arches"], &["amd64"]) {
            continue;
        }
        if has_any(&exc["arches"], &["amd64"]) {
            continue;
        }
        let mut e = json!({"names": sc["names"], "action": sc["action"]});
        if let Some(a) = sc["args"].as_array().filter(|a| !a.is_empty()) {
            e["args"] = json!(a);
        }
        if sc["errnoRet"].is_u64() {
            e["errnoRet"] = sc["errnoRet"].clone();
        }
        syscalls.push(e);
    }
    json!({
        "defaultAction": raw["defaultAction"],
        "defaultErrnoRet": raw["defaultErrnoRet"],
        "architectures": arches,
        "syscalls": syscalls,
    })
}

const PODMAN_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// Rules in the style of Docker's default profile that the Podman one
/// lacks: clone restricted by a namespace-flag mask, clone3 as ENOSYS,
/// personality values, arguments of both widths.
fn docker_style_profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["read", "write", "getppid", "exit_group", "rt_sigreturn", "mmap", "_llseek", "socketcall", "ipc"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket", "accept4", "sendto"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_LE"}, {"index": 0, "value": 3, "op": "SCMP_CMP_GE"}]},
            {"names": ["prctl"], "action": "SCMP_ACT_KILL_PROCESS", "args": [{"index": 1, "value": 18446744073709551615u64, "op": "SCMP_CMP_EQ"}]},
            {"names": ["ioctl"], "action": "SCMP_ACT_TRACE", "errnoRet": 7, "args": [{"index": 1, "value": 21505, "op": "SCMP_CMP_GT"}, {"index": 2, "value": 4294967296u64, "op": "SCMP_CMP_LT"}]},
            {"names": ["kill"], "action": "SCMP_ACT_LOG"},
            {"names": ["tkill"], "action": "SCMP_ACT_TRAP"},
            {"names": ["tgkill"], "action": "SCMP_ACT_KILL"},
            {"names": ["mount"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["no_such_syscall"], "action": "SCMP_ACT_ALLOW"}
        ],
        "listenerPath": "/run/agent.sock"
    })
}

fn check_real(what: &str, profile: Value) -> Stats {
    let ours = berth(&profile).unwrap_or_else(|e| panic!("{what}: berth refuses it: {e:#}"));
    let theirs = libseccomp(std::slice::from_ref(&profile))
        .pop()
        .unwrap()
        .expect("libseccomp refuses it");
    let mut stats = Stats::default();
    let mut rng = Rng(0x5eed);
    compare(
        what, &profile, &ours, &theirs, None, &mut rng, 50_000, &mut stats,
    );
    stats
}

#[test]
fn podman_default_profile_matches_libseccomp() {
    let mut total = 0;
    for (what, caps) in [
        ("podman default, default capabilities", PODMAN_CAPS.to_vec()),
        ("podman default, no capabilities", vec![]),
        (
            "podman default, all capabilities",
            vec![
                "CAP_SYS_ADMIN",
                "CAP_DAC_READ_SEARCH",
                "CAP_SYS_CHROOT",
                "CAP_SYS_MODULE",
                "CAP_SYS_PACCT",
                "CAP_SYS_PTRACE",
                "CAP_SYS_RAWIO",
                "CAP_SYS_TIME",
                "CAP_SYS_TTY_CONFIG",
                "CAP_AUDIT_WRITE",
            ],
        ),
    ] {
        let s = check_real(what, podman_profile(&caps));
        eprintln!("{what}: {s:?}");
        total += s.cases;
    }
    assert!(total > 10_000, "too few cases: {total}");
}

#[test]
fn docker_style_rules_match_libseccomp() {
    let s = check_real("docker-style profile", docker_style_profile());
    eprintln!("{s:?}");
    // Without x86 and x32, and with another default: the architecture
    // dispatch and bad-arch paths differ.
    let mut p = docker_style_profile();
    p["architectures"] = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"]);
    p["defaultAction"] = json!("SCMP_ACT_KILL_PROCESS");
    p.as_object_mut().unwrap().remove("defaultErrnoRet");
    check_real("docker-style, x86_64 and aarch64", p.clone());
    p["architectures"] = json!(["SCMP_ARCH_X32"]);
    check_real("docker-style, x86_64 and x32", p.clone());
    p["architectures"] = json!([]);
    p["defaultAction"] = json!("SCMP_ACT_ALLOW");
    check_real("docker-style, native only, allow by default", p);
}

const NAMES: &[&str] = &[
    "read",
    "write",
    "openat",
    "close",
    "getppid",
    "clone",
    "mmap",
    "ioctl",
    "prctl",
    "kill",
    "socket",
    "accept",
    "accept4",
    "bind",
    "send",
    "recvmsg",
    "socketpair",
    "shmget",
    "semop",
    "msgrcv",
    "ipc",
    "socketcall",
    "_llseek",
    "arch_prctl",
    "open",
    "personality",
    "futex",
    "rt_sigaction",
    "clock_gettime",
    "set_robust_list",
    "no_such_call",
    "mount",
    "unshare",
];
const ACTIONS: &[(&str, Option<u64>)] = &[
    ("SCMP_ACT_ALLOW", None),
    ("SCMP_ACT_ERRNO", None),
    ("SCMP_ACT_ERRNO", Some(38)),
    ("SCMP_ACT_ERRNO", Some(13)),
    ("SCMP_ACT_KILL_PROCESS", None),
    ("SCMP_ACT_KILL_THREAD", None),
    ("SCMP_ACT_TRAP", None),
    ("SCMP_ACT_TRACE", Some(5)),
    ("SCMP_ACT_LOG", None),
    ("SCMP_ACT_NOTIFY", None),
];
const OPS: &[&str] = &[
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];
const VALUES: &[u64] = &[
    0,
    1,
    2,
    3,
    8,
    16,
    0xff,
    0xf0,
    0x7e02_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0005,
    0xffff_ffff_0000_0000,
    u64::MAX,
];

/// A random profile. `args_per_rule` bounds the argument checks of an
/// entry; `mixed` lets the entries of one syscall have different actions.
fn random_profile(rng: &mut Rng, args_per_rule: usize) -> Value {
    let (da, de) = *rng.pick(&ACTIONS[..7]);
    let mut arches = vec!["SCMP_ARCH_X86_64"];
    for a in ["SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"] {
        if rng.below(2) == 0 {
            arches.push(a);
        }
    }
    let mut syscalls = Vec::new();
    for _ in 0..1 + rng.below(14) {
        let names: Vec<&str> = (0..1 + rng.below(3)).map(|_| *rng.pick(NAMES)).collect();
        let (a, e) = *rng.pick(ACTIONS);
        let mut sc = json!({"names": names, "action": a});
        if let Some(e) = e {
            sc["errnoRet"] = json!(e);
        }
        let n = rng.below(args_per_rule + 1);
        if n > 0 {
            let args: Vec<Value> = (0..n)
                .map(|_| {
                    json!({
                        "index": rng.below(6).min(if rng.below(3) == 0 { 5 } else { 2 }),
                        "value": *rng.pick(VALUES),
                        "valueTwo": *rng.pick(VALUES),
                        "op": *rng.pick(OPS),
                    })
                })
                .collect();
            sc["args"] = json!(args);
        }
        syscalls.push(sc);
    }
    let mut p = json!({"defaultAction": da, "architectures": arches, "syscalls": syscalls,
                       "listenerPath": "/run/agent.sock"});
    if let Some(e) = de {
        p["defaultErrnoRet"] = json!(e);
    }
    p
}

fn run_generated(seed: u64, count: usize, args_per_rule: usize, allow_overlap: bool) -> Stats {
    let mut rng = Rng(seed);
    let profiles: Vec<Value> = (0..count)
        .map(|_| random_profile(&mut rng, args_per_rule))
        .collect();
    // For each profile: itself, its entries reversed, and each entry alone.
    let mut batch = Vec::new();
    let mut spans = Vec::new();
    for p in &profiles {
        let start = batch.len();
        batch.push(p.clone());
        let mut r = p.clone();
        r["syscalls"].as_array_mut().unwrap().reverse();
        batch.push(r);
        // One rule each: an entry checking an argument twice is several
        // rules (see seccomp_reference.py).
        for sc in p["syscalls"].as_array().unwrap() {
            let args = sc["args"].as_array().cloned().unwrap_or_default();
            let idx: BTreeSet<u64> = args.iter().map(|a| a["index"].as_u64().unwrap()).collect();
            let parts: Vec<Value> = if idx.len() == args.len() {
                vec![sc.clone()]
            } else {
                args.iter()
                    .map(|a| {
                        let mut one = sc.clone();
                        one["args"] = json!([a]);
                        one
                    })
                    .collect()
            };
            for part in parts {
                let mut one = p.clone();
                one["syscalls"] = json!([part]);
                batch.push(one);
            }
        }
        spans.push(start..batch.len());
    }
    let built = libseccomp(&batch);
    let mut stats = Stats::default();
    let mut refused = 0;
    for (p, span) in profiles.iter().zip(spans) {
        let progs = &built[span];
        let Some(theirs) = &progs[0] else {
            refused += 1;
            continue;
        };
        let ours = match berth(p) {
            Ok(o) => o,
            Err(e) => panic!("berth refuses a profile libseccomp accepts: {e:#}\n{p}"),
        };
        let oracles = Oracles {
            reversed: progs[1].as_deref(),
            singles: &progs[2..],
            default: ours.policy.default,
            allow_overlap,
        };
        compare(
            "generated",
            p,
            &ours,
            theirs,
            Some(&oracles),
            &mut rng,
            3000,
            &mut stats,
        );
    }
    eprintln!("seed {seed:#x}: {count} profiles ({refused} refused by libseccomp): {stats:?}");
    assert!(
        refused < count / 2,
        "libseccomp refused too many generated profiles"
    );
    stats
}

#[test]
fn generated_single_argument_profiles_match_libseccomp() {
    let s = run_generated(0x1234_5678_9abc_def1, 60, 1, false);
    assert!(s.cases > 1_000_000, "{s:?}");
    // Single-argument rules are where libseccomp is consistent: berth must
    // match it nearly everywhere without excuses.
    let excused = s.order_dependent + s.libseccomp_bug;
    assert!(
        excused * 1000 <= s.cases,
        "too many excused differences: {s:?}"
    );
}

#[test]
fn generated_multi_argument_profiles_match_libseccomp() {
    // Several argument checks per rule, several rules of mixed actions per
    // syscall: where rules of different actions match the same input,
    // libseccomp's choice follows its decision tree's internals (64-bit
    // checks split into word nodes); berth's documented order may pick
    // another matching rule. Everything else must agree.
    let s = run_generated(0x0fed_cba9_8765_4321, 60, 3, true);
    assert!(s.cases > 1_000_000, "{s:?}");
    let excused = s.order_dependent + s.libseccomp_bug + s.overlap;
    assert!(
        excused * 20 <= s.cases,
        "too many excused differences: {s:?}"
    );
}

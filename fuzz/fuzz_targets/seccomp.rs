//! The OCI seccomp profile to BPF translation (`berth::seccomp::prepare`)
//! against its reference model (`Policy::verdict`).
//!
//! The input is either a `linux.seccomp` profile as JSON (the seeds: the
//! Podman default profile, Docker-style rules) or, for anything that is
//! not, a small structured profile decoded with `arbitrary` (default
//! action, architectures, flags, entries of syscall names, actions, errno
//! values and argument checks) plus a few `seccomp_data` samples, which
//! reaches odd combinations faster than mutated JSON. When the profile
//! compiles,
//! the BPF program runs in berth's classic-BPF interpreter over the given
//! samples and over samples derived from the profile (every syscall number
//! with a rule and its neighbours, the architecture edges, and argument
//! vectors that satisfy each rule or miss it by one); any sample where the
//! program and the model disagree, or where the program is refused by the
//! interpreter (what the kernel's checker refuses), is a crash. libseccomp
//! is not involved here: `runtime/tests/seccomp_differential.rs` compares
//! the model with it.
#![no_main]

use std::collections::BTreeSet;

use arbitrary::{Arbitrary, Unstructured};
use berth::seccomp::interp::{self, SeccompData};
use berth::seccomp::policy::{action_code, Cmp, Op, Verdict, BAD_ARCH};
use berth::seccomp::syscalls::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use berth::seccomp::{compile::MAX_INSNS, prepare, Prepared};
use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction};
use serde_json::{json, Value};

const NAMES: &[&str] = &[
    "read",
    "write",
    "openat",
    "close",
    "getppid",
    "clone",
    "clone3",
    "mmap",
    "ioctl",
    "prctl",
    "kill",
    "socket",
    "accept",
    "accept4",
    "bind",
    "send",
    "sendmsg",
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
    "set_robust_list",
    "mount",
    "unshare",
    "mseal",
    "no_such_call",
];

const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
];

const ARCHES: &[&str] = &[
    "SCMP_ARCH_NATIVE",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
];

const FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
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
    0xff,
    0x7e02_0000,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0005,
    0xffff_ffff_0000_0000,
    u64::MAX,
];

#[derive(Arbitrary, Debug)]
enum Name {
    Known(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Val {
    Edge(u8),
    Any(u64),
}

impl Val {
    fn get(&self) -> u64 {
        match self {
            Val::Edge(i) => VALUES[*i as usize % VALUES.len()],
            Val::Any(v) => *v,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Arg {
    /// 0..=6: index 6 is out of range and must be refused.
    index: u8,
    op: u8,
    value: Val,
    value_two: Option<Val>,
}

#[derive(Arbitrary, Debug)]
struct Entry {
    names: Vec<Name>,
    action: u8,
    errno_ret: Option<u16>,
    args: Vec<Arg>,
}

#[derive(Arbitrary, Debug)]
struct Sample {
    /// 0: x86_64, 1: i386, else this value as the audit arch.
    arch: u32,
    nr: u32,
    args: [Val; 6],
}

#[derive(Arbitrary, Debug)]
struct Input {
    default_action: u8,
    default_errno_ret: Option<u16>,
    arches: Vec<u8>,
    flags: Vec<u8>,
    listener: bool,
    entries: Vec<Entry>,
    samples: Vec<Sample>,
}

fn pick<'a>(v: &[&'a str], i: u8) -> &'a str {
    v[i as usize % v.len()]
}

/// The OCI profile (as `config.json` would hold it), small enough that
/// the program fits the kernel's limit most of the time.
fn profile(inp: &Input) -> Value {
    let mut syscalls = Vec::new();
    for e in inp.entries.iter().take(10) {
        let names: Vec<String> = e
            .names
            .iter()
            .take(4)
            .map(|n| match n {
                Name::Known(i) => pick(NAMES, *i).to_string(),
                Name::Raw(s) => s.clone(),
            })
            .collect();
        let mut sc = json!({"names": names, "action": pick(ACTIONS, e.action)});
        if let Some(v) = e.errno_ret {
            sc["errnoRet"] = json!(v);
        }
        let args: Vec<Value> = e
            .args
            .iter()
            .take(4)
            .map(|a| {
                let mut j = json!({
                    "index": a.index % 7,
                    "op": pick(OPS, a.op),
                    "value": a.value.get(),
                });
                if let Some(v2) = &a.value_two {
                    j["valueTwo"] = json!(v2.get());
                }
                j
            })
            .collect();
        if !args.is_empty() {
            sc["args"] = json!(args);
        }
        syscalls.push(sc);
    }
    let arches: Vec<&str> = inp
        .arches
        .iter()
        .take(4)
        .map(|a| pick(ARCHES, *a))
        .collect();
    let flags: Vec<&str> = inp.flags.iter().take(3).map(|f| pick(FLAGS, *f)).collect();
    let mut p = json!({
        "defaultAction": pick(ACTIONS, inp.default_action),
        "architectures": arches,
        "flags": flags,
        "syscalls": syscalls,
    });
    if let Some(v) = inp.default_errno_ret {
        p["defaultErrnoRet"] = json!(v);
    }
    if inp.listener {
        p["listenerPath"] = json!("/run/agent.sock");
    }
    p
}

/// An argument value that satisfies `c` (when one exists) and values just
/// beside it.
fn near(c: &Cmp) -> [u64; 4] {
    let hit = match c.op {
        Op::Eq | Op::Le | Op::Ge => c.value,
        Op::Ne | Op::Gt => c.value.wrapping_add(1),
        Op::Lt => c.value.wrapping_sub(1),
        Op::MaskedEq => c.value_two & c.value,
    };
    [
        hit,
        hit.wrapping_sub(1),
        hit.wrapping_add(1),
        hit ^ 0x1_0000_0000,
    ]
}

fn check(d: &SeccompData, p: &Prepared, actions: &BTreeSet<u32>) {
    let got = interp::run(&p.program, d)
        .unwrap_or_else(|e| panic!("the program does not run at {d:x?}: {e:#}"));
    let want = p.policy.verdict(d.arch, d.nr, &d.args);
    assert_eq!(
        got, want,
        "program {got:#x} != model {want:#x} at {d:x?}\npolicy: {:?}",
        p.policy
    );
    assert!(
        want == p.policy.default || want == BAD_ARCH || actions.contains(&want),
        "the model answers {want:#x}, which no rule asks for, at {d:x?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let (s, samples) = match serde_json::from_slice::<LinuxSeccomp>(data) {
        Ok(s) => (s, Vec::new()),
        Err(_) => {
            let Ok(inp) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
                return;
            };
            let Ok(s) = serde_json::from_value::<LinuxSeccomp>(profile(&inp)) else {
                return;
            };
            (s, inp.samples)
        }
    };
    let Ok(p) = prepare(&s) else { return };
    assert!(p.program.len() <= MAX_INSNS);

    let mut actions = BTreeSet::new();
    for sc in s.syscalls().iter().flatten() {
        if let Ok(a) = action_code(sc.action(), sc.errno_ret()) {
            actions.insert(a);
        }
    }
    if p.policy.uses_notify {
        assert!(
            s.syscalls()
                .iter()
                .flatten()
                .any(|sc| sc.action() == LinuxSeccompAction::ScmpActNotify),
            "uses_notify without a NOTIFY rule"
        );
    }

    // The fuzzer's own samples.
    for smp in samples.iter().take(16) {
        let arch = match smp.arch {
            0 => AUDIT_ARCH_X86_64,
            1 => AUDIT_ARCH_I386,
            a => a,
        };
        let d = SeccompData {
            nr: smp.nr,
            arch,
            ip: 0,
            args: std::array::from_fn(|i| smp.args[i].get()),
        };
        check(&d, &p, &actions);
    }

    // Samples derived from the policy: each number with a verdict, its
    // neighbours and the x32 and sign edges, under both audit arches.
    let mut numbers: BTreeSet<u32> = [
        0,
        X32_SYSCALL_BIT - 1,
        X32_SYSCALL_BIT,
        0x7fff_ffff,
        0x8000_0000,
        u32::MAX - 1,
        u32::MAX,
    ]
    .into();
    for table in p.policy.arches.values() {
        for nr in table.keys() {
            numbers.extend([nr.wrapping_sub(1), *nr, nr.wrapping_add(1)]);
        }
    }
    for &arch in &[AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, 0xc000_00b7] {
        for &nr in &numbers {
            let rules = p
                .policy
                .arch_of(arch, nr)
                .and_then(|a| p.policy.arches[&a].get(&nr));
            let mut vectors = vec![[0u64; 6], [u64::MAX; 6], [1, 2, 3, 4, 5, 6]];
            if let Some(Verdict::Rules(rules)) = rules {
                // For each rule: arguments that meet each of its checks,
                // then each check missed by one.
                for r in rules {
                    for k in 0..4 {
                        let mut a = [0u64; 6];
                        for c in &r.conds {
                            a[c.index as usize] = near(c)[k];
                        }
                        vectors.push(a);
                        for (j, c) in r.conds.iter().enumerate() {
                            let mut b = a;
                            b[c.index as usize] = near(c)[(k + j + 1) % 4];
                            vectors.push(b);
                        }
                    }
                }
            }
            for args in vectors {
                let d = SeccompData {
                    nr,
                    arch,
                    ip: 0,
                    args,
                };
                check(&d, &p, &actions);
            }
        }
    }
});

//! The OCI profile resolved to a [`Policy`]: per architecture and syscall
//! number, either one action or an ordered list of argument rules.
//!
//! [`Policy::verdict`] is the meaning of a profile, written directly (no
//! BPF); the compiled program must agree with it on every input, and the
//! differential test checks that it agrees with libseccomp.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use anyhow::{bail, Result};
use oci_spec::runtime::{
    Arch as OciArch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator, LinuxSyscall,
};

use super::syscalls::{self, Arch, Target};

/// `SECCOMP_RET_*` of the actions.
pub mod ret {
    /// Kill the thread (`SCMP_ACT_KILL`, `SCMP_ACT_KILL_THREAD`).
    pub const KILL_THREAD: u32 = 0x0000_0000;
    /// Kill the process.
    pub const KILL_PROCESS: u32 = 0x8000_0000;
    /// Send SIGSYS.
    pub const TRAP: u32 = 0x0003_0000;
    /// Fail with the errno in the low 16 bits.
    pub const ERRNO: u32 = 0x0005_0000;
    /// Ask the listener (seccomp agent).
    pub const USER_NOTIF: u32 = 0x7fc0_0000;
    /// Notify a ptrace tracer with the low 16 bits.
    pub const TRACE: u32 = 0x7ff0_0000;
    /// Allow and log.
    pub const LOG: u32 = 0x7ffc_0000;
    /// Allow.
    pub const ALLOW: u32 = 0x7fff_0000;
    /// The data part of a return value.
    pub const DATA: u32 = 0x0000_ffff;
}

/// What the filter returns for an architecture it has no rules for
/// (libseccomp's default "bad arch" action).
pub const BAD_ARCH: u32 = ret::KILL_THREAD;

/// A comparison operator in libseccomp's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `(arg & mask) == datum`
    MaskedEq,
}

/// One argument check: `args[index] OP value` (for `MaskedEq`, `value` is
/// the mask and `value_two` the datum, as in the OCI spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cmp {
    /// Argument index, 0..=5.
    pub index: u8,
    /// Operator.
    pub op: Op,
    /// First operand.
    pub value: u64,
    /// Second operand (`MaskedEq` datum).
    pub value_two: u64,
}

impl Cmp {
    /// Whether `arg` satisfies the check; 32-bit ABIs compare only the low
    /// halves of the argument and the operands.
    pub fn holds(&self, arg: u64, wide: bool) -> bool {
        let m = |v: u64| if wide { v } else { v & 0xffff_ffff };
        let (x, v, v2) = (m(arg), m(self.value), m(self.value_two));
        match self.op {
            Op::Ne => x != v,
            Op::Lt => x < v,
            Op::Le => x <= v,
            Op::Eq => x == v,
            Op::Ge => x >= v,
            Op::Gt => x > v,
            Op::MaskedEq => x & v == v2 & v,
        }
    }

    /// The check with its operands cut to the compared width.
    pub fn narrowed(&self, wide: bool) -> Cmp {
        let width = if wide { u64::MAX } else { 0xffff_ffff };
        Cmp {
            value: self.value & width,
            value_two: self.value_two & width,
            ..*self
        }
    }

    /// Whether the check holds for every argument (a masked comparison
    /// with no mask bits in the compared width).
    pub fn vacuous(&self, wide: bool) -> bool {
        let width = if wide { u64::MAX } else { 0xffff_ffff };
        self.op == Op::MaskedEq && self.value & width == 0
    }

    /// libseccomp's order of comparisons on one level of its decision tree
    /// (`_db_chain_lt`): by argument, then equality before ranges, then by
    /// value. Greater keys are tried first.
    fn key(&self) -> (u8, u8, i128, u64) {
        let prio = match self.op {
            Op::Eq | Op::Ne | Op::MaskedEq => 3,
            Op::Lt | Op::Le => 2,
            Op::Ge | Op::Gt => 1,
        };
        let (datum, mask) = match self.op {
            Op::MaskedEq => (self.value_two & self.value, self.value),
            _ => (self.value, u64::MAX),
        };
        // Smaller bounds of < and <= are the more specific ones.
        let datum = match self.op {
            Op::Lt | Op::Le => -(datum as i128),
            _ => datum as i128,
        };
        (self.index, prio, datum, mask)
    }
}

/// Conditions (all must hold) and the action when they do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Checks, sorted by argument index.
    pub conds: Vec<Cmp>,
    /// `SECCOMP_RET_*` value.
    pub action: u32,
}

impl Rule {
    fn matches(&self, args: &[u64; 6], wide: bool) -> bool {
        self.conds
            .iter()
            .all(|c| c.holds(args[c.index as usize], wide))
    }
}

/// libseccomp's precedence between two conditional rules of one syscall:
/// their conditions compared level by level (greater first), and a rule
/// that is a prefix of the other first (the shorter, wider rule wins, as
/// libseccomp keeps it and drops the longer one).
fn precedence(a: &Rule, b: &Rule) -> Ordering {
    for (x, y) in a.conds.iter().zip(&b.conds) {
        match y.key().cmp(&x.key()) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    a.conds.len().cmp(&b.conds.len())
}

/// The verdict of one syscall number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Always this action, whatever the arguments.
    Always(u32),
    /// The first matching rule's action, else the default action.
    Rules(Vec<Rule>),
}

/// A resolved profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Action for syscalls without a rule.
    pub default: u32,
    /// The filtered architectures, each with its syscall numbers.
    pub arches: BTreeMap<Arch, BTreeMap<u32, Verdict>>,
    /// Some rule uses `SCMP_ACT_NOTIFY`.
    pub uses_notify: bool,
    /// Names that no filtered architecture knows (skipped, as runc does).
    pub unknown_names: Vec<String>,
}

/// The `SECCOMP_RET_*` value of an OCI action.
pub fn action_code(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<u32> {
    use LinuxSeccompAction::*;
    let data = match (action, errno_ret) {
        (ScmpActErrno | ScmpActTrace, Some(v)) => v & ret::DATA,
        (ScmpActErrno | ScmpActTrace, None) => libc::EPERM as u32,
        (_, Some(v)) => bail!("errnoRet {v} given for {action}, which returns no errno"),
        (_, None) => 0,
    };
    Ok(match action {
        ScmpActKill | ScmpActKillThread => ret::KILL_THREAD,
        ScmpActKillProcess => ret::KILL_PROCESS,
        ScmpActTrap => ret::TRAP,
        ScmpActErrno => ret::ERRNO | data,
        ScmpActNotify => ret::USER_NOTIF,
        ScmpActTrace => ret::TRACE | data,
        ScmpActLog => ret::LOG,
        ScmpActAllow => ret::ALLOW,
    })
}

fn op(o: LinuxSeccompOperator) -> Op {
    use LinuxSeccompOperator::*;
    match o {
        ScmpCmpNe => Op::Ne,
        ScmpCmpLt => Op::Lt,
        ScmpCmpLe => Op::Le,
        ScmpCmpEq => Op::Eq,
        ScmpCmpGe => Op::Ge,
        ScmpCmpGt => Op::Gt,
        ScmpCmpMaskedEq => Op::MaskedEq,
    }
}

/// The architectures a profile asks for that berth can filter. The native
/// one is always included (libseccomp's `seccomp_init` does the same);
/// foreign ones (arm64 on an x86 host...) can never reach this kernel's
/// filter, so they need no rules.
fn arches(s: &LinuxSeccomp) -> Result<Vec<Arch>> {
    let native = Arch::native().ok_or_else(|| {
        anyhow::anyhow!(
            "seccomp is not supported by berth on {} (only on x86_64)",
            std::env::consts::ARCH
        )
    })?;
    let mut v = vec![native];
    for a in s.architectures().iter().flatten() {
        let arch = match a {
            OciArch::ScmpArchNative => native,
            OciArch::ScmpArchX86_64 => Arch::X86_64,
            OciArch::ScmpArchX86 => Arch::X86,
            OciArch::ScmpArchX32 => Arch::X32,
            _ => continue,
        };
        if !v.contains(&arch) {
            v.push(arch);
        }
    }
    Ok(v)
}

/// The rules one OCI syscall entry contributes: its conditions, split into
/// one rule per condition when an argument is checked twice (libseccomp
/// refuses that in one rule; runc and crun add the conditions as separate
/// rules, so they are ORed).
fn entry_rules(sc: &LinuxSyscall) -> Result<Vec<Vec<Cmp>>> {
    let mut conds = Vec::new();
    for a in sc.args().iter().flatten() {
        if a.index() > 5 {
            bail!("argument index {} is out of range (0..=5)", a.index());
        }
        conds.push(Cmp {
            index: a.index() as u8,
            op: op(a.op()),
            value: a.value(),
            value_two: a.value_two().unwrap_or(0),
        });
    }
    let mut seen = [0u8; 6];
    for c in &conds {
        seen[c.index as usize] += 1;
    }
    if seen.iter().any(|&n| n > 1) {
        return Ok(conds.into_iter().map(|c| vec![c]).collect());
    }
    conds.sort_by_key(|c| c.index);
    Ok(vec![conds])
}

/// Adds a rule to one syscall number, with libseccomp's merging: an
/// unconditional rule replaces conditional ones and is never replaced; a
/// rule with the same conditions as an existing one but another action is
/// a conflict.
fn add(
    table: &mut BTreeMap<u32, Verdict>,
    nr: u32,
    conds: Vec<Cmp>,
    action: u32,
    name: &str,
) -> Result<()> {
    let entry = table
        .entry(nr)
        .or_insert_with(|| Verdict::Rules(Vec::new()));
    match entry {
        Verdict::Always(_) => {}
        Verdict::Rules(_) if conds.is_empty() => *entry = Verdict::Always(action),
        Verdict::Rules(rules) => {
            if let Some(r) = rules.iter().find(|r| r.conds == conds) {
                if r.action != action {
                    bail!(
                        "syscall {name}: two rules with the same arguments have different actions"
                    );
                }
                return Ok(());
            }
            rules.push(Rule { conds, action });
        }
    }
    Ok(())
}

impl Policy {
    /// Resolves a profile. Errors name the offending entry.
    pub fn from_oci(s: &LinuxSeccomp) -> Result<Policy> {
        let default = action_code(s.default_action(), s.default_errno_ret())
            .map_err(|e| anyhow::anyhow!("defaultAction: {e}"))?;
        if default == ret::USER_NOTIF {
            bail!("SCMP_ACT_NOTIFY cannot be the default action");
        }
        let arches = arches(s)?;
        let mut p = Policy {
            default,
            arches: arches.iter().map(|a| (*a, BTreeMap::new())).collect(),
            uses_notify: false,
            unknown_names: Vec::new(),
        };
        for (i, sc) in s.syscalls().iter().flatten().enumerate() {
            let ctx = |e: anyhow::Error| anyhow::anyhow!("syscalls[{i}] {:?}: {e}", sc.names());
            let action = action_code(sc.action(), sc.errno_ret()).map_err(ctx)?;
            let rules = entry_rules(sc).map_err(ctx)?;
            // A rule that repeats the default action changes nothing; runc
            // and crun skip it (libseccomp refuses it).
            if action == default {
                continue;
            }
            for name in sc.names() {
                let mut known = false;
                for &arch in &arches {
                    let table = p.arches.get_mut(&arch).expect("arch table");
                    for target in syscalls::resolve(arch, name) {
                        known = true;
                        if action == ret::USER_NOTIF {
                            p.uses_notify = true;
                        }
                        for conds in &rules {
                            // A masked check with an empty mask always
                            // holds; libseccomp drops it (so the rule may
                            // become unconditional).
                            // 32-bit ABIs compare the low halves only.
                            let conds: Vec<Cmp> = conds
                                .iter()
                                .filter(|c| !c.vacuous(arch.wide_args()))
                                .map(|c| c.narrowed(arch.wide_args()))
                                .collect();
                            let (nr, conds) = match target {
                                Target::Direct(nr) => (nr, conds),
                                // libseccomp replaces a check of argument 0
                                // by the sub-call check on the multiplexer.
                                Target::Multiplexed { nr, call } => {
                                    let mut c = vec![Cmp {
                                        index: 0,
                                        op: Op::Eq,
                                        value: call as u64,
                                        value_two: 0,
                                    }];
                                    c.extend(conds.iter().filter(|c| c.index != 0).copied());
                                    (nr, c)
                                }
                            };
                            add(table, nr, conds, action, name).map_err(ctx)?;
                        }
                    }
                }
                if !known && !p.unknown_names.contains(name) {
                    p.unknown_names.push(name.clone());
                }
            }
        }
        for table in p.arches.values_mut() {
            for v in table.values_mut() {
                if let Verdict::Rules(rules) = v {
                    rules.sort_by(precedence);
                }
            }
        }
        Ok(p)
    }

    /// The filter's verdict for a syscall, as `SECCOMP_RET_*`.
    pub fn verdict(&self, audit_arch: u32, nr: u32, args: &[u64; 6]) -> u32 {
        let Some(arch) = self.arch_of(audit_arch, nr) else {
            return BAD_ARCH;
        };
        match self.arches[&arch].get(&nr) {
            None => self.default,
            Some(Verdict::Always(a)) => *a,
            Some(Verdict::Rules(rules)) => rules
                .iter()
                .find(|r| r.matches(args, arch.wide_args()))
                .map_or(self.default, |r| r.action),
        }
    }

    /// Which of the filtered architectures a syscall belongs to, as
    /// libseccomp decides it: x86_64 and x32 share the audit value and are
    /// told apart by `__X32_SYSCALL_BIT`; with only one of them filtered,
    /// the other's numbers are a bad architecture (except `nr == -1`,
    /// which libseccomp passes to the x86_64 rules).
    pub fn arch_of(&self, audit_arch: u32, nr: u32) -> Option<Arch> {
        let has = |a| self.arches.contains_key(&a);
        match audit_arch {
            syscalls::AUDIT_ARCH_I386 if has(Arch::X86) => Some(Arch::X86),
            syscalls::AUDIT_ARCH_X86_64 => {
                let x32 = nr >= syscalls::X32_SYSCALL_BIT && nr != u32::MAX;
                match (has(Arch::X86_64), has(Arch::X32)) {
                    (true, true) if x32 => Some(Arch::X32),
                    (true, true) => Some(Arch::X86_64),
                    (true, false) => (!x32).then_some(Arch::X86_64),
                    (false, true) => (nr >= syscalls::X32_SYSCALL_BIT).then_some(Arch::X32),
                    (false, false) => None,
                }
            }
            _ => None,
        }
    }
}

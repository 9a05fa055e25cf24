//! [`Policy`] to a classic BPF program.
//!
//! Layout (all jumps forward, as the kernel requires):
//!
//! ```text
//! ld  arch
//! jeq AUDIT_ARCH_X86_64 ? next : +1      -- the native arch costs one test
//! ja  <next arch>
//!   ld  nr
//!   <binary search over number intervals, each leaf one of:>
//!     ret ACTION                         -- a run of numbers with one action
//!     <rule> ret ACTION ... ret DEFAULT  -- one number with argument rules
//! jeq AUDIT_ARCH_I386 ...
//! ret BAD_ARCH
//! ```
//!
//! The syscall numbers of an architecture are cut into intervals of equal
//! verdict (a profile allowing 350 syscalls has about 100), and a balanced
//! tree of `jge` finds the interval in ~7 comparisons instead of scanning
//! hundreds of `jeq`. The argument checks of one rule are seccompiler's
//! (`SeccompRule` to BPF: 64-bit comparisons as two 32-bit halves, and its
//! own long-jump helpers); berth places a `ret` with the rule's action
//! after each rule, which is where seccompiler's rule falls through on a
//! match, while a failed check jumps over that `ret` to the next rule.

use anyhow::{bail, Context, Result};
use seccompiler::{
    sock_filter, BpfProgram, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule,
};

use super::policy::{Cmp, Op, Policy, Rule, Verdict, BAD_ARCH};
use super::syscalls::{Arch, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};

/// Largest program the kernel accepts (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

const LD_W_ABS: u16 = 0x20;
const JA: u16 = 0x05;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// What a syscall-number interval leads to.
#[derive(Clone, Debug, PartialEq)]
enum Leaf<'a> {
    Ret(u32),
    Rules(&'a [Rule], bool),
}

/// Compiles the policy; fails only if the program exceeds the kernel's
/// size limit.
pub fn compile(p: &Policy) -> Result<BpfProgram> {
    let mut blocks = Vec::new();
    let has = |a| p.arches.contains_key(&a);
    if has(Arch::X86_64) || has(Arch::X32) {
        blocks.push((AUDIT_ARCH_X86_64, arch_block(p, AUDIT_ARCH_X86_64)?));
    }
    if has(Arch::X86) {
        blocks.push((AUDIT_ARCH_I386, arch_block(p, AUDIT_ARCH_I386)?));
    }
    let mut prog = vec![stmt(LD_W_ABS, OFF_ARCH)];
    for (audit, block) in blocks {
        prog.push(jump(JEQ_K, audit, 1, 0));
        prog.push(stmt(JA, block.len() as u32));
        prog.extend(block);
    }
    prog.push(stmt(RET_K, BAD_ARCH));
    if prog.len() > MAX_INSNS {
        bail!(
            "the seccomp profile compiles to {} BPF instructions, more than the kernel's limit of {MAX_INSNS}",
            prog.len()
        );
    }
    Ok(prog)
}

/// The intervals `[lo, next lo)` of syscall numbers under one audit arch.
fn intervals(p: &Policy, audit: u32) -> Vec<(u32, Leaf<'_>)> {
    // Explicit single numbers and ranges, then the gaps get the default.
    let mut explicit: Vec<(u32, u32, Leaf)> = Vec::new();
    let mut add_table = |arch: Arch| {
        for (nr, v) in &p.arches[&arch] {
            let leaf = match v {
                Verdict::Always(a) => Leaf::Ret(*a),
                Verdict::Rules(r) => Leaf::Rules(r, arch.wide_args()),
            };
            explicit.push((*nr, *nr, leaf));
        }
    };
    let has = |a| p.arches.contains_key(&a);
    if audit == AUDIT_ARCH_I386 {
        add_table(Arch::X86);
    } else {
        match (has(Arch::X86_64), has(Arch::X32)) {
            (true, true) => {
                add_table(Arch::X86_64);
                add_table(Arch::X32);
            }
            (true, false) => {
                add_table(Arch::X86_64);
                explicit.push((X32_SYSCALL_BIT, u32::MAX - 1, Leaf::Ret(BAD_ARCH)));
            }
            (false, true) => {
                add_table(Arch::X32);
                explicit.push((0, X32_SYSCALL_BIT - 1, Leaf::Ret(BAD_ARCH)));
            }
            (false, false) => {}
        }
    }
    explicit.sort_by_key(|e| e.0);
    let mut out: Vec<(u32, Leaf)> = Vec::new();
    let mut next: u64 = 0;
    for (lo, hi, leaf) in explicit {
        if (lo as u64) > next {
            push(&mut out, next as u32, Leaf::Ret(p.default));
        }
        push(&mut out, lo, leaf);
        next = hi as u64 + 1;
    }
    if next <= u32::MAX as u64 {
        push(&mut out, next as u32, Leaf::Ret(p.default));
    }
    out
}

/// Appends an interval; neighbours with the same plain action become one.
fn push<'a>(out: &mut Vec<(u32, Leaf<'a>)>, lo: u32, leaf: Leaf<'a>) {
    if let (Some((_, Leaf::Ret(prev))), Leaf::Ret(a)) = (out.last(), &leaf) {
        if prev == a {
            return;
        }
    }
    out.push((lo, leaf));
}

fn arch_block(p: &Policy, audit: u32) -> Result<Vec<sock_filter>> {
    let iv = intervals(p, audit);
    let mut block = vec![stmt(LD_W_ABS, OFF_NR)];
    block.extend(tree(&iv, p.default)?);
    Ok(block)
}

/// Binary search: `nr >= lo(mid)` goes right, else left (inline after the
/// test, so only the right branch needs a jump offset; a long one goes
/// through a `ja`).
fn tree(iv: &[(u32, Leaf)], default: u32) -> Result<Vec<sock_filter>> {
    if iv.len() == 1 {
        return leaf(&iv[0].1, default);
    }
    let mid = iv.len() / 2;
    let left = tree(&iv[..mid], default)?;
    let right = tree(&iv[mid..], default)?;
    let k = iv[mid].0;
    let mut out = Vec::with_capacity(left.len() + right.len() + 2);
    if left.len() <= u8::MAX as usize {
        out.push(jump(JGE_K, k, left.len() as u8, 0));
    } else {
        out.push(jump(JGE_K, k, 0, 1));
        out.push(stmt(JA, left.len() as u32));
    }
    out.extend(left);
    out.extend(right);
    Ok(out)
}

fn leaf(l: &Leaf, default: u32) -> Result<Vec<sock_filter>> {
    match l {
        Leaf::Ret(a) => Ok(vec![stmt(RET_K, *a)]),
        Leaf::Rules(rules, wide) => {
            let mut out = Vec::new();
            for r in rules.iter() {
                out.extend(rule_bpf(r, *wide)?);
                out.push(stmt(RET_K, r.action));
            }
            out.push(stmt(RET_K, default));
            Ok(out)
        }
    }
}

/// One rule's checks through seccompiler; falls through when all hold and
/// jumps just past the following instruction when one fails.
fn rule_bpf(r: &Rule, wide: bool) -> Result<BpfProgram> {
    let len = if wide {
        SeccompCmpArgLen::Qword
    } else {
        SeccompCmpArgLen::Dword
    };
    let conds = r
        .conds
        .iter()
        .map(|c| condition(c, len.clone()))
        .collect::<Result<Vec<_>>>()?;
    let rule = SeccompRule::new(conds).context("seccomp rule")?;
    Ok(rule.into())
}

fn condition(c: &Cmp, len: SeccompCmpArgLen) -> Result<SeccompCondition> {
    let (op, value) = match c.op {
        Op::Ne => (SeccompCmpOp::Ne, c.value),
        Op::Lt => (SeccompCmpOp::Lt, c.value),
        Op::Le => (SeccompCmpOp::Le, c.value),
        Op::Eq => (SeccompCmpOp::Eq, c.value),
        Op::Ge => (SeccompCmpOp::Ge, c.value),
        Op::Gt => (SeccompCmpOp::Gt, c.value),
        Op::MaskedEq => (SeccompCmpOp::MaskedEq(c.value), c.value_two),
    };
    SeccompCondition::new(c.index, len, op, value)
        .with_context(|| format!("seccomp condition on argument {}", c.index))
}

/// The program as the bytes `seccomp_export_bpf` writes (for comparisons
/// and debugging).
pub fn to_bytes(prog: &[sock_filter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prog.len() * 8);
    for i in prog {
        out.extend(i.code.to_ne_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend(i.k.to_ne_bytes());
    }
    out
}

//! The device filter on cgroup v2: a small `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program generated from the device rules, loaded and attached with the raw
//! `bpf(2)` syscall.
//!
//! Why not libcgroups' `cgroupsv2_devices` feature: it links libbpf (built
//! from C through libbpf-sys, with libelf and zlib), which costs a C build in
//! CI and two more shared libraries loaded by every `berth` invocation; the
//! program itself is ~6 instructions per rule and needs only two syscalls.
//!
//! Semantics: rules are checked from the last to the first and the first
//! match decides (so a later rule overrides an earlier one, as writing them
//! in order to cgroup v1's `devices.allow`/`devices.deny` does); nothing
//! matching means deny. An allow rule matches when it grants every access
//! asked for (v1 checks each exception the same way); a deny rule matches when
//! it forbids any of them.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// A device rule: `allow`, type (`a`, `b` or `c`), major and minor (`None` =
/// any), access as a mask of [`ACC_MKNOD`], [`ACC_READ`], [`ACC_WRITE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Allow (true) or deny.
    pub allow: bool,
    /// `b'a'`, `b'b'` or `b'c'`.
    pub typ: u8,
    /// Major number, `None` for any.
    pub major: Option<u32>,
    /// Minor number, `None` for any.
    pub minor: Option<u32>,
    /// Access mask.
    pub access: u32,
}

/// `BPF_DEVCG_ACC_MKNOD`.
pub const ACC_MKNOD: u32 = 1;
/// `BPF_DEVCG_ACC_READ`.
pub const ACC_READ: u32 = 2;
/// `BPF_DEVCG_ACC_WRITE`.
pub const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

// Opcodes used (class | op | source).
const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const JMP32_JNE_K: u8 = 0x56;
const JMP32_JNE_X: u8 = 0x5e;
const JMP32_JEQ_K: u8 = 0x16;
const EXIT: u8 = 0x95;

/// Builds the program for `rules` (see the module comment for semantics).
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    // r2 = device type, r3 = requested access, r4 = major, r5 = minor
    // (struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }).
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        // Each test jumps to the next block when it does not match; the
        // offsets are filled in once the block's length is known.
        let mut block: Vec<Insn> = Vec::new();
        match r.typ {
            b'b' => block.push(insn(JMP32_JNE_K, 2, 0, 0, DEV_BLOCK)),
            b'c' => block.push(insn(JMP32_JNE_K, 2, 0, 0, DEV_CHAR)),
            _ => {}
        }
        if r.access & ACC_ALL != ACC_ALL || !r.allow {
            block.push(insn(MOV64_X, 1, 3, 0, 0));
            block.push(insn(ALU32_AND_K, 1, 0, 0, r.access as i32));
            if r.allow {
                // Matches when (requested & granted) == requested.
                block.push(insn(JMP32_JNE_X, 1, 3, 0, 0));
            } else {
                // Matches when (requested & denied) != 0.
                block.push(insn(JMP32_JEQ_K, 1, 0, 0, 0));
            }
        }
        if let Some(m) = r.major {
            block.push(insn(JMP32_JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            block.push(insn(JMP32_JNE_K, 5, 0, 0, m as i32));
        }
        block.push(insn(MOV64_K, 0, 0, 0, r.allow as i32));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if matches!(ins.code, JMP32_JNE_K | JMP32_JNE_X | JMP32_JEQ_K) {
                // Jump past the end of this block: to the next rule.
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<i32> {
    // SAFETY: `attr` is a properly sized, initialized bpf_attr prefix.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r as i32)
}

/// Loads the program for `rules` and attaches it to the cgroup directory
/// `dir` (alongside any program already there: every attached program must
/// allow an access).
pub fn attach(dir: &Path, rules: &[Rule]) -> Result<()> {
    let prog = program(rules);
    let license = c"Apache";
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"berth_device");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    let prog_fd = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => fd,
        Err(_) => {
            // Load again with the verifier's log, for the error message.
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let e = bpf(BPF_PROG_LOAD, &mut attr).err();
            let end = log.iter().position(|&b| b == 0).unwrap_or(0);
            let text = String::from_utf8_lossy(&log[..end]);
            bail!(
                "bpf(BPF_PROG_LOAD) of the device filter: {}{}",
                e.map(|e| e.to_string()).unwrap_or_default(),
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", text.trim())
                }
            );
        }
    };
    // SAFETY: bpf() returned a new descriptor that we own.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(prog_fd) };
    let cg = crate::sys::openat(libc::AT_FDCWD, dir, libc::O_DIRECTORY | libc::O_RDONLY, 0)
        .with_context(|| format!("open {}", dir.display()))?;
    let mut attach = ProgAttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attach)
        .with_context(|| format!("bpf(BPF_PROG_ATTACH) device filter to {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` on a device access the way the kernel would (only the
    /// instructions `program` emits).
    fn run(prog: &[Insn], typ: i32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | typ as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            let mut next = pc + 1;
            match i.code {
                LDX_W => {
                    assert_eq!(src, 1);
                    r[dst] = ctx[i.off as usize / 4] as u64;
                }
                ALU32_AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                MOV64_X => r[dst] = r[src],
                MOV64_K => r[dst] = i.imm as i64 as u64,
                JMP32_JNE_K | JMP32_JNE_X | JMP32_JEQ_K => {
                    let b = if i.code == JMP32_JNE_X {
                        r[src] as u32
                    } else {
                        i.imm as u32
                    };
                    let a = r[dst] as u32;
                    let taken = if i.code == JMP32_JEQ_K {
                        a == b
                    } else {
                        a != b
                    };
                    if taken {
                        next = (pc as i64 + 1 + i.off as i64) as usize;
                    }
                }
                EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
            pc = next;
        }
    }

    fn rule(allow: bool, typ: u8, major: Option<u32>, minor: Option<u32>, access: u32) -> Rule {
        Rule {
            allow,
            typ,
            major,
            minor,
            access,
        }
    }

    const RW: u32 = ACC_READ | ACC_WRITE;

    #[test]
    fn default_deny_with_exceptions() {
        let rules = [
            rule(false, b'a', None, None, ACC_ALL),
            rule(true, b'c', Some(1), Some(3), ACC_ALL),
            rule(true, b'c', None, None, ACC_MKNOD),
            rule(true, b'c', Some(136), None, RW),
        ];
        let p = program(&rules);
        assert_eq!(run(&p, DEV_CHAR, RW, 1, 3), 1, "/dev/null");
        assert_eq!(run(&p, DEV_CHAR, RW, 1, 5), 0, "/dev/zero not listed");
        assert_eq!(
            run(&p, DEV_CHAR, ACC_MKNOD, 10, 200),
            1,
            "mknod of any char dev"
        );
        assert_eq!(
            run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0),
            0,
            "block mknod not allowed"
        );
        assert_eq!(run(&p, DEV_BLOCK, RW, 1, 3), 0, "type must match");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 136, 7), 1, "pts, read");
        assert_eq!(
            run(&p, DEV_CHAR, ACC_MKNOD | ACC_READ, 136, 7),
            0,
            "pts grants no mknod"
        );
    }

    #[test]
    fn later_rules_override_earlier_ones() {
        let rules = [
            rule(true, b'a', None, None, ACC_ALL),
            rule(false, b'c', Some(1), Some(3), ACC_WRITE),
        ];
        let p = program(&rules);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1, "read still allowed");
        assert_eq!(
            run(&p, DEV_CHAR, RW, 1, 3),
            0,
            "write denied, also with read"
        );
        assert_eq!(run(&p, DEV_BLOCK, RW, 8, 1), 1, "everything else allowed");
        let p = program(&[rules[1], rules[0]]);
        assert_eq!(run(&p, DEV_CHAR, RW, 1, 3), 1, "the allow-all came last");
        assert_eq!(
            run(&program(&[]), DEV_CHAR, ACC_READ, 1, 3),
            0,
            "no rules: deny"
        );
    }

    #[test]
    fn large_device_numbers_compare_as_u32() {
        let p = program(&[rule(true, b'c', Some(4_000_000_000), None, ACC_ALL)]);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 4_000_000_000, 0), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 4, 0), 0);
    }
}

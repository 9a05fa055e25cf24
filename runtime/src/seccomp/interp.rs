//! A classic-BPF interpreter over `struct seccomp_data`, as the kernel
//! runs seccomp filters: to check compiled programs (berth's and
//! libseccomp's) against each other without loading them.

use anyhow::{bail, Result};
use seccompiler::sock_filter;

/// The input of a seccomp filter (`struct seccomp_data`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeccompData {
    /// Syscall number (as the kernel's `int`, reinterpreted).
    pub nr: u32,
    /// `AUDIT_ARCH_*`.
    pub arch: u32,
    /// Instruction pointer.
    pub ip: u64,
    /// Arguments.
    pub args: [u64; 6],
}

impl SeccompData {
    /// The 32-bit word at byte offset `off` (little-endian halves, as on
    /// x86).
    fn word(&self, off: u32) -> Option<u32> {
        Some(match off {
            0 => self.nr,
            4 => self.arch,
            8 => self.ip as u32,
            12 => (self.ip >> 32) as u32,
            16..=60 if off % 4 == 0 => {
                let a = self.args[((off - 16) / 8) as usize];
                if off % 8 == 0 {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            _ => return None,
        })
    }
}

/// Parses the bytes of an exported program (`seccomp_export_bpf`).
pub fn parse(bytes: &[u8]) -> Result<Vec<sock_filter>> {
    if bytes.len() % 8 != 0 {
        bail!("BPF program length {} is not a multiple of 8", bytes.len());
    }
    Ok(bytes
        .chunks(8)
        .map(|c| sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// Runs `prog` over `d` and returns the filter's return value. Refuses
/// what the kernel's checker refuses: unknown instructions, loads outside
/// `seccomp_data`, jumps out of the program, running off its end.
pub fn run(prog: &[sock_filter], d: &SeccompData) -> Result<u32> {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    loop {
        let Some(i) = prog.get(pc) else {
            bail!("BPF program runs past its end at {pc}");
        };
        pc += 1;
        let src = if i.code & 0x08 != 0 { x } else { i.k };
        let jump = |off: usize| -> Result<usize> {
            if pc + off >= prog.len() {
                bail!("BPF jump out of the program at {}", pc - 1);
            }
            Ok(pc + off)
        };
        match i.code & 0x07 {
            // BPF_LD
            0x00 => {
                a = match i.code {
                    0x20 => match d.word(i.k) {
                        Some(w) => w,
                        None => bail!("BPF load at offset {} outside seccomp_data", i.k),
                    },
                    0x00 => i.k,
                    0x60 if i.k < 16 => mem[i.k as usize],
                    // BPF_LEN: sizeof(struct seccomp_data)
                    0x80 => 64,
                    c => bail!("unsupported BPF load {c:#x}"),
                }
            }
            // BPF_LDX
            0x01 => {
                x = match i.code {
                    0x01 => i.k,
                    0x61 if i.k < 16 => mem[i.k as usize],
                    0x81 => 64,
                    c => bail!("unsupported BPF ldx {c:#x}"),
                }
            }
            0x02 if i.k < 16 => mem[i.k as usize] = a,
            0x03 if i.k < 16 => mem[i.k as usize] = x,
            // BPF_ALU
            0x04 => {
                a = match i.code & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    0x30 if src != 0 => a / src,
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a.checked_shl(src).unwrap_or(0),
                    0x70 => a.checked_shr(src).unwrap_or(0),
                    0x80 => a.wrapping_neg(),
                    0x90 if src != 0 => a % src,
                    0xa0 => a ^ src,
                    c => bail!("unsupported BPF alu {c:#x}"),
                }
            }
            // BPF_JMP
            0x05 => {
                let take = match i.code & 0xf0 {
                    0x00 => {
                        pc = jump(i.k as usize)?;
                        continue;
                    }
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    0x40 => a & src != 0,
                    c => bail!("unsupported BPF jump {c:#x}"),
                };
                pc = jump(if take { i.jt } else { i.jf } as usize)?;
            }
            // BPF_RET
            0x06 => {
                return Ok(match i.code & 0x18 {
                    0x00 => i.k,
                    0x10 => a,
                    c => bail!("unsupported BPF ret {c:#x}"),
                })
            }
            // BPF_MISC: TAX / TXA
            0x07 => match i.code {
                0x07 => x = a,
                0x87 => a = x,
                c => bail!("unsupported BPF misc {c:#x}"),
            },
            _ => bail!("unsupported BPF instruction {:#x}", i.code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ins(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
        sock_filter { code, jt, jf, k }
    }

    #[test]
    fn loads_jumps_and_returns() {
        // if (args[1] >> 32) & 0xf == 3 return ERRNO(1) else ALLOW
        let prog = [
            ins(0x20, 0, 0, 28),
            ins(0x54, 0, 0, 0xf),
            ins(0x15, 0, 1, 3),
            ins(0x06, 0, 0, 0x0005_0001),
            ins(0x06, 0, 0, 0x7fff_0000),
        ];
        let mut d = SeccompData {
            args: [0, 0x13_0000_0000, 0, 0, 0, 0],
            ..Default::default()
        };
        assert_eq!(run(&prog, &d).unwrap(), 0x0005_0001);
        d.args[1] = 0x14_0000_0000;
        assert_eq!(run(&prog, &d).unwrap(), 0x7fff_0000);
    }

    #[test]
    fn refuses_bad_programs() {
        let d = SeccompData::default();
        assert!(run(&[ins(0x20, 0, 0, 64), ins(0x06, 0, 0, 0)], &d).is_err());
        assert!(run(&[ins(0x05, 0, 0, 5), ins(0x06, 0, 0, 0)], &d).is_err());
        assert!(run(&[ins(0x20, 0, 0, 0)], &d).is_err());
        assert!(parse(&[0; 7]).is_err());
        assert_eq!(
            parse(&[6, 0, 1, 2, 0, 0, 0xff, 0x7f]).unwrap(),
            [ins(6, 1, 2, 0x7fff_0000)]
        );
    }
}

//! Syscall names to numbers for the architectures berth filters (the x86
//! family: an x86_64 host runs x86_64, i386 and x32 processes).
//!
//! A name resolves per architecture to zero or more [`Target`]s: its direct
//! syscall number, and on i386 also the `socketcall(2)` or `ipc(2)`
//! multiplexer with the sub-call in the first argument (what libseccomp
//! adds, so glibc's multiplexed calls get the same verdict).

use super::tables;

/// `__X32_SYSCALL_BIT`: x32 syscall numbers carry it.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// `AUDIT_ARCH_X86_64`, also reported for x32 processes.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;

/// An architecture berth can build a filter for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    /// 64-bit x86.
    X86_64,
    /// 32-bit x86 (i386).
    X86,
    /// x32: the 64-bit kernel ABI with 32-bit pointers.
    X32,
}

impl Arch {
    /// Every architecture berth knows, in the order its filter checks them.
    pub const ALL: [Arch; 3] = [Arch::X86_64, Arch::X86, Arch::X32];

    /// The OCI name (`SCMP_ARCH_*`).
    pub fn oci_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "SCMP_ARCH_X86_64",
            Arch::X86 => "SCMP_ARCH_X86",
            Arch::X32 => "SCMP_ARCH_X32",
        }
    }

    /// The value the kernel puts in `seccomp_data.arch`.
    pub fn audit_arch(self) -> u32 {
        match self {
            Arch::X86_64 | Arch::X32 => AUDIT_ARCH_X86_64,
            Arch::X86 => AUDIT_ARCH_I386,
        }
    }

    /// Whether syscall arguments are 64 bits wide (32-bit ABIs compare only
    /// the low halves, as libseccomp does).
    pub fn wide_args(self) -> bool {
        self == Arch::X86_64
    }

    /// The architecture berth runs on, if it can filter for it.
    pub fn native() -> Option<Arch> {
        cfg!(target_arch = "x86_64").then_some(Arch::X86_64)
    }

    fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Arch::X86_64 => tables::X86_64,
            Arch::X86 => tables::X86,
            Arch::X32 => tables::X32,
        }
    }
}

/// `socketcall(2)` on i386.
pub const I386_SOCKETCALL: u32 = 102;
/// `ipc(2)` on i386.
pub const I386_IPC: u32 = 117;

/// Where a rule on a named syscall lands on one architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The syscall number.
    Direct(u32),
    /// A multiplexer number and the sub-call that its first argument must
    /// equal (i386 `socketcall`/`ipc`).
    Multiplexed {
        /// The multiplexer's syscall number.
        nr: u32,
        /// The sub-call number, compared with argument 0.
        call: u32,
    },
}

fn find(table: &[(&str, u32)], name: &str) -> Option<u32> {
    table
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| table[i].1)
}

/// The targets of `name` on `arch` (empty if the syscall does not exist
/// there).
pub fn resolve(arch: Arch, name: &str) -> Vec<Target> {
    let mut out = Vec::new();
    if let Some(nr) = find(arch.table(), name) {
        out.push(Target::Direct(nr));
    }
    if arch == Arch::X86 {
        if let Some(call) = find(tables::SOCKETCALL, name) {
            out.push(Target::Multiplexed {
                nr: I386_SOCKETCALL,
                call,
            });
        } else if let Some(call) = find(tables::IPC, name) {
            out.push(Target::Multiplexed { nr: I386_IPC, call });
        }
    }
    out
}

/// The name of syscall `nr` on `arch`, if berth knows it.
pub fn name_of(arch: Arch, nr: u32) -> Option<&'static str> {
    arch.table()
        .iter()
        .find(|(_, n)| *n == nr)
        .map(|(name, _)| *name)
}

/// Every syscall number berth knows on `arch`.
pub fn numbers(arch: Arch) -> impl Iterator<Item = u32> {
    arch.table().iter().map(|(_, nr)| *nr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        for t in [
            tables::X86_64,
            tables::X86,
            tables::X32,
            tables::SOCKETCALL,
            tables::IPC,
        ] {
            assert!(t.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn well_known_numbers() {
        assert_eq!(resolve(Arch::X86_64, "getppid"), [Target::Direct(110)]);
        assert_eq!(resolve(Arch::X86, "getppid"), [Target::Direct(64)]);
        assert_eq!(
            resolve(Arch::X32, "getppid"),
            [Target::Direct(X32_SYSCALL_BIT | 110)]
        );
        // x32 has its own numbers for the compat-sensitive calls.
        assert_eq!(
            resolve(Arch::X32, "rt_sigaction"),
            [Target::Direct(X32_SYSCALL_BIT | 512)]
        );
        assert_eq!(
            resolve(Arch::X86, "socket"),
            [
                Target::Direct(359),
                Target::Multiplexed { nr: 102, call: 1 }
            ]
        );
        // i386 has no direct accept(2): only socketcall(SYS_ACCEPT).
        assert_eq!(
            resolve(Arch::X86, "accept"),
            [Target::Multiplexed { nr: 102, call: 5 }]
        );
        assert_eq!(resolve(Arch::X86_64, "_llseek"), []);
        assert_eq!(resolve(Arch::X86, "_llseek"), [Target::Direct(140)]);
        assert_eq!(resolve(Arch::X86_64, "mseal"), [Target::Direct(462)]);
        assert_eq!(resolve(Arch::X86_64, "no_such_call"), []);
        assert_eq!(name_of(Arch::X86_64, 0), Some("read"));
    }
}

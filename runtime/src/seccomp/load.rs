//! Installing a program with `seccomp(2)`, and asking the kernel what it
//! supports.
//!
//! berth calls `seccomp(SECCOMP_SET_MODE_FILTER)` itself instead of
//! seccompiler's `apply_filter`, which sets no_new_privs first: with
//! `noNewPrivileges: false` the container must keep the bit clear, so the
//! filter is loaded while the init still holds `CAP_SYS_ADMIN`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use anyhow::{bail, Result};
use oci_spec::runtime::LinuxSeccompFilterFlag;
use seccompiler::sock_filter;

/// `SECCOMP_FILTER_FLAG_*` bits berth knows, with their OCI names.
pub const FLAGS: [(LinuxSeccompFilterFlag, &str, u64); 4] = [
    (
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
        "SECCOMP_FILTER_FLAG_TSYNC",
        1 << 0,
    ),
    (
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        "SECCOMP_FILTER_FLAG_LOG",
        1 << 1,
    ),
    (
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        1 << 2,
    ),
    (
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        1 << 5,
    ),
];
/// `SECCOMP_FILTER_FLAG_TSYNC`.
pub const FLAG_TSYNC: u64 = 1 << 0;
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
pub const FLAG_NEW_LISTENER: u64 = 1 << 3;

const SET_MODE_FILTER: libc::c_ulong = 1;
const GET_ACTION_AVAIL: libc::c_ulong = 2;

#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const sock_filter,
}

fn seccomp(op: libc::c_ulong, flags: u64, arg: *const libc::c_void) -> io::Result<i64> {
    // SAFETY: seccomp(2) reads `arg` as documented for `op`; callers pass a
    // valid object or NULL.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, op, flags as libc::c_ulong, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The OCI name of a flag bit.
pub fn flag_name(bit: u64) -> String {
    FLAGS
        .iter()
        .find(|f| f.2 == bit)
        .map(|f| f.1.to_string())
        .unwrap_or_else(|| format!("{bit:#x}"))
}

/// Loads `prog` into the calling thread with `flags`; returns the listener
/// descriptor when `flags` has `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
pub fn install(prog: &[sock_filter], flags: u64) -> Result<Option<OwnedFd>> {
    let fprog = SockFprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_ptr(),
    };
    match seccomp(SET_MODE_FILTER, flags, (&fprog as *const SockFprog).cast()) {
        Ok(fd) if flags & FLAG_NEW_LISTENER != 0 => {
            // SAFETY: the kernel returned a new descriptor that we own.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
        }
        Ok(_) => Ok(None),
        Err(e) => {
            let why = match e.raw_os_error() {
                Some(libc::EACCES) => "the caller has neither CAP_SYS_ADMIN nor no_new_privs",
                Some(libc::EINVAL) => "the kernel refuses the program or one of its flags",
                Some(libc::ENOMEM) => "the filter chain is too long",
                _ => "",
            };
            let names: Vec<String> = (0..8)
                .map(|b| 1u64 << b)
                .filter(|b| flags & b != 0)
                .map(flag_name)
                .collect();
            bail!(
                "seccomp(SECCOMP_SET_MODE_FILTER, [{}]) of a {}-instruction filter: {e}{}{why}",
                names.join("|"),
                prog.len(),
                if why.is_empty() { "" } else { ": " }
            )
        }
    }
}

/// Whether the kernel accepts filter flag `bit` (it answers EFAULT for the
/// NULL program only once the flags are valid).
pub fn flag_supported(bit: u64) -> bool {
    matches!(
        seccomp(SET_MODE_FILTER, bit, std::ptr::null()),
        Err(e) if e.raw_os_error() == Some(libc::EFAULT)
    )
}

/// Whether the kernel knows the return action `ret` (`SECCOMP_RET_*`).
pub fn action_supported(ret: u32) -> bool {
    seccomp(GET_ACTION_AVAIL, 0, (&ret as *const u32).cast()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_this_kernel() {
        // Every kernel berth supports (>= 5.0) has these.
        assert!(flag_supported(FLAG_TSYNC));
        assert!(flag_supported(1 << 1));
        assert!(!flag_supported(1 << 30));
        assert!(action_supported(0x7fff_0000));
        assert!(action_supported(0x7fc0_0000));
        assert!(!action_supported(0x7ffe_0000));
    }

    #[test]
    fn errors_name_the_flags() {
        // A program whose jump leaves it is refused with EINVAL before any
        // privilege check.
        let bad = [sock_filter {
            code: 0x05,
            jt: 0,
            jf: 0,
            k: 9,
        }];
        let e = install(&bad, 1 << 1).unwrap_err().to_string();
        assert!(e.contains("SECCOMP_FILTER_FLAG_LOG"), "{e}");
    }
}

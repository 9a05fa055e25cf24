//! `linux.sysctl`, written through a procfs handle the container cannot
//! tamper with (CVE-2025-52881).
//!
//! The handle is a private procfs made with `fsopen`/`fsmount` and never
//! attached anywhere, so no mount of the container can cover a file in it;
//! lookups are `RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS`, and
//! the opened file must be on procfs. If the kernel refuses a private procfs,
//! the container's `/proc` is used only if it is the root of a procfs mount,
//! with the same lookup rules.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::rootfs::mount::detached_fs;
use crate::sys;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// A verified handle on the root of a procfs instance of the caller's
/// namespaces.
pub struct ProcHandle(OwnedFd);

impl ProcHandle {
    /// A private procfs, or the verified `/proc` of the current root.
    pub fn open() -> Result<ProcHandle> {
        let flags = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC;
        if let Ok(fd) = detached_fs("proc", &[], flags) {
            return Ok(ProcHandle(fd));
        }
        let fd = sys::openat(
            libc::AT_FDCWD,
            Path::new("/proc"),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )
        .context("open /proc")?;
        if sys::fs_magic(fd.as_fd()).context("statfs /proc")? != PROC_SUPER_MAGIC {
            bail!("/proc is not a procfs");
        }
        Ok(ProcHandle(fd))
    }

    /// Opens `rel` (e.g. `sys/net/ipv4/ip_forward`) for writing.
    pub fn open_write(&self, rel: &Path) -> Result<OwnedFd> {
        let resolve = libc::RESOLVE_BENEATH
            | libc::RESOLVE_NO_XDEV
            | libc::RESOLVE_NO_SYMLINKS
            | libc::RESOLVE_NO_MAGICLINKS;
        let fd = sys::openat2(
            self.0.as_raw_fd(),
            rel,
            libc::O_WRONLY | libc::O_TRUNC | libc::O_NOCTTY,
            0,
            resolve,
        )
        .with_context(|| format!("open /proc/{}", rel.display()))?;
        if sys::fs_magic(fd.as_fd()).context("statfs")? != PROC_SUPER_MAGIC {
            bail!("/proc/{} is not on procfs", rel.display());
        }
        Ok(fd)
    }
}

/// The procfs path of a sysctl key (`net.ipv4.ip_forward` or `net/ipv4/ip_forward`).
pub fn key_path(key: &str) -> PathBuf {
    let rel = if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    Path::new("sys").join(rel)
}

/// Writes every sysctl (validated earlier against the namespaces).
pub fn apply(sysctls: &HashMap<String, String>) -> Result<()> {
    if sysctls.is_empty() {
        return Ok(());
    }
    let proc = ProcHandle::open()?;
    for (k, v) in sysctls {
        let fd = proc
            .open_write(&key_path(k))
            .with_context(|| format!("sysctl {k}"))?;
        sys::write_all(fd.as_fd(), v.as_bytes()).with_context(|| format!("sysctl {k}={v}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_proc_sys() {
        assert_eq!(
            key_path("net.ipv4.ip_forward"),
            Path::new("sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            key_path("net/ipv4/conf/eth0.100/forwarding"),
            Path::new("sys/net/ipv4/conf/eth0.100/forwarding")
        );
    }
}

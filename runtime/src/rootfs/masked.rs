//! `maskedPaths`, `readonlyPaths` and a read-only root, applied after
//! pivot_root, so `/` is the container's root and nothing of the host is
//! reachable by path.
//!
//! Masked files are covered by a bind of `/dev/null` that was checked to be
//! the real null device (character device 1:3) first: a rootfs that replaced
//! it with a symlink to, say, `/proc/sys/kernel/core_pattern` would otherwise
//! turn masking into exposing (CVE-2025-31133). Masked directories get a
//! fresh read-only tmpfs made with `fsopen`, which involves no path at all.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::sys::stat::{fstat, SFlag};

use super::mount::{bind_fd, detached_fs};
use super::options::MountOptions;
use super::resolve;
use crate::sys;

/// Opens `/dev/null` without following symlinks and checks it is the null
/// device.
pub fn verified_dev_null(root: BorrowedFd) -> Result<OwnedFd> {
    let fd = resolve::open_no_symlinks(
        root,
        Path::new("/dev/null"),
        libc::O_PATH | libc::O_NOFOLLOW,
    )
    .context("open /dev/null")?;
    let st = fstat(std::os::fd::AsRawFd::as_raw_fd(&fd)).context("stat /dev/null")?;
    let is_chr = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_chr || st.st_rdev != libc::makedev(1, 3) {
        bail!("/dev/null in the container is not the null device (mode {:o}); refusing to mask with it", st.st_mode);
    }
    Ok(fd)
}

/// Masks each path: `/dev/null` over files, an empty read-only tmpfs over
/// directories. Paths that do not exist are skipped.
pub fn mask(root: BorrowedFd, paths: &[String]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let null = verified_dev_null(root)?;
    for p in paths {
        let target = match resolve::open(root, Path::new(p), libc::O_PATH | libc::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e).with_context(|| format!("open masked path {p}")),
        };
        let st =
            fstat(std::os::fd::AsRawFd::as_raw_fd(&target)).with_context(|| format!("stat {p}"))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            let tmpfs = detached_fs("tmpfs", &[("mode", "0555")], libc::MOUNT_ATTR_RDONLY)
                .with_context(|| format!("mask {p}"))?;
            sys::move_mount_fd(tmpfs.as_fd(), target.as_fd())
                .with_context(|| format!("mask {p}"))?;
        } else {
            bind_fd(null.as_fd(), target.as_fd(), &MountOptions::default())
                .with_context(|| format!("mask {p}"))?;
        }
    }
    Ok(())
}

/// Makes each path a read-only bind of itself. Missing paths are skipped.
pub fn readonly(root: BorrowedFd, paths: &[String]) -> Result<()> {
    let opts = MountOptions {
        recursive: true,
        rec_set: libc::MOUNT_ATTR_RDONLY,
        ..Default::default()
    };
    for p in paths {
        let target = match resolve::open(root, Path::new(p), libc::O_PATH) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e).with_context(|| format!("open read-only path {p}")),
        };
        bind_fd(target.as_fd(), target.as_fd(), &opts)
            .with_context(|| format!("make {p} read-only"))?;
    }
    Ok(())
}

/// Remounts the container's `/` read-only (`root.readonly`).
pub fn readonly_root() -> Result<()> {
    let root = sys::openat(
        libc::AT_FDCWD,
        Path::new("/"),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .context("open /")?;
    sys::mount_setattr(root.as_fd(), false, libc::MOUNT_ATTR_RDONLY, 0, 0)
        .context("remount / read-only")
}

//! Mounts of type `cgroup` and `cgroup2`: the container's view of its cgroup.
//!
//! - cgroup v2 host (or type `cgroup2`): a fresh cgroup2 mount inside a cgroup
//!   namespace (its root is the container's cgroup), otherwise a bind of the
//!   container's own cgroup directory.
//! - cgroup v1/hybrid host with type `cgroup`: a tmpfs at the destination with
//!   one bind per hierarchy of the container's directory in it (and symlinks
//!   such as `cpu -> cpu,cpuacct`), as runc lays it out. The tmpfs is made
//!   read-only last if the options say `ro`.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use anyhow::{Context, Result};

use super::mount::{self as m, bind_fd, reopen, MountCtx};
use super::options::MountOptions;
use super::resolve;
use crate::cgroups::{join, Layout};
use crate::sys;

/// Mounts the cgroup filesystem view at `dest`.
pub fn mount(ctx: &MountCtx, dest: &Path, fstype: &str, opts: &MountOptions) -> Result<()> {
    let layout = Layout::detect()?;
    if layout.is_unified() || fstype == "cgroup2" {
        return unified(ctx, &layout, dest, opts);
    }
    let target = resolve::mkdir_all(ctx.root, dest, 0o755)?;
    let tmpfs_flags = opts.flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
    m::mount(
        Some("tmpfs"),
        &resolve::fd_path(target.as_fd()),
        Some("tmpfs"),
        tmpfs_flags,
        Some("mode=755"),
    )
    .context("mount tmpfs")?;
    let bind_opts = MountOptions {
        flags: opts.flags,
        ..Default::default()
    };
    for h in &layout.v1 {
        let Some(name) = h.mount_point.file_name() else {
            continue;
        };
        let sub = dest.join(name);
        let src_path = join(&h.mount_point, ctx.cgroup_path);
        // Hierarchies berth did not create a directory in (named ones such as
        // name=systemd) show their root only inside a cgroup namespace.
        let src_path = if src_path.is_dir() {
            src_path
        } else {
            continue;
        };
        let src = sys::openat(
            libc::AT_FDCWD,
            &src_path,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .with_context(|| format!("open {}", src_path.display()))?;
        let t = resolve::mkdir_all(ctx.root, &sub, 0o755)?;
        bind_fd(src.as_fd(), t.as_fd(), &bind_opts)
            .with_context(|| format!("bind {}", src_path.display()))?;
        let name = name.to_string_lossy();
        if name.contains(',') {
            let dir = reopen(ctx.root, dest)?;
            for c in name.split(',') {
                let link = sys::cstr(Path::new(c))?;
                let target = sys::cstr(Path::new(name.as_ref()))?;
                // SAFETY: valid C strings and descriptor.
                unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), link.as_ptr()) };
            }
        }
    }
    if opts.flags & libc::MS_RDONLY != 0 {
        let tmpfs = reopen(ctx.root, dest)?;
        sys::mount_setattr(tmpfs.as_fd(), false, libc::MOUNT_ATTR_RDONLY, 0, 0)
            .context("make cgroup tmpfs read-only")?;
    }
    Ok(())
}

fn unified(ctx: &MountCtx, layout: &Layout, dest: &Path, opts: &MountOptions) -> Result<()> {
    let target = resolve::mkdir_all(ctx.root, dest, 0o755)?;
    let own_dir = layout
        .unified
        .as_ref()
        .map(|u| join(u, ctx.cgroup_path))
        .filter(|d| d.is_dir());
    match own_dir {
        Some(dir) if !ctx.cgroupns => {
            let src = sys::openat(libc::AT_FDCWD, &dir, libc::O_PATH | libc::O_DIRECTORY, 0)
                .with_context(|| format!("open {}", dir.display()))?;
            let o = MountOptions {
                flags: opts.flags,
                ..Default::default()
            };
            bind_fd(src.as_fd(), target.as_fd(), &o)
        }
        _ => m::mount(
            Some("cgroup2"),
            &resolve::fd_path(target.as_fd()),
            Some("cgroup2"),
            opts.flags,
            None,
        )
        .context("mount cgroup2"),
    }
}

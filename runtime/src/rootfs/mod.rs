//! Building the container's root filesystem inside its mount namespace.
//!
//! [`prepare`] runs before pivot_root: propagation of `/`, the rootfs bound
//! onto itself, every mount of the config, `/dev`, then the createRuntime and
//! createContainer hooks. [`pivot`] switches the root. [`finalize`] runs
//! after it: read-only and masked paths, read-only root.

pub mod cgroupfs;
pub mod copyup;
pub mod devices;
pub mod masked;
pub mod mount;
pub mod options;
pub mod resolve;

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::namespaces;
use crate::sys;

/// Settings of the rootfs that come from outside the config.
pub struct RootfsCtx<'a> {
    /// The configuration.
    pub spec: &'a Spec,
    /// Absolute rootfs path (host view).
    pub rootfs: &'a Path,
    /// Absolute bundle path.
    pub bundle: &'a Path,
    /// The container's cgroup.
    pub cgroup_path: &'a Path,
    /// Namespaces the container creates.
    pub ns: &'a namespaces::Plan,
}

fn root_propagation(spec: &Spec) -> Result<libc::c_ulong> {
    match spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
    {
        Some(p) if !p.is_empty() => options::propagation_flag(p),
        _ => Ok(libc::MS_SLAVE | libc::MS_REC),
    }
}

/// Mounts everything under the rootfs; returns an `O_PATH` descriptor on it.
pub fn prepare(ctx: &RootfsCtx) -> Result<OwnedFd> {
    let prop = root_propagation(ctx.spec)?;
    mount::mount(None, Path::new("/"), None, prop | libc::MS_REC, None)
        .context("set propagation of / in the container's mount namespace")?;
    if prop & libc::MS_SHARED != 0 {
        make_parent_private(ctx.rootfs)?;
    }
    // pivot_root needs the new root to be a mount point.
    mount::mount(
        Some(&ctx.rootfs.to_string_lossy()),
        ctx.rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .with_context(|| format!("bind rootfs {} onto itself", ctx.rootfs.display()))?;
    let root = sys::openat(
        libc::AT_FDCWD,
        ctx.rootfs,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .with_context(|| format!("open rootfs {}", ctx.rootfs.display()))?;
    let userns = ctx.ns.creates(LinuxNamespaceType::User) || ctx.ns.joins(LinuxNamespaceType::User);
    let mctx = mount::MountCtx {
        root: root.as_fd(),
        bundle: ctx.bundle,
        userns,
        netns: ctx.ns.creates(LinuxNamespaceType::Network),
        cgroupns: ctx.ns.creates(LinuxNamespaceType::Cgroup)
            || ctx.ns.joins(LinuxNamespaceType::Cgroup),
        cgroup_path: ctx.cgroup_path,
    };
    let mounts = ctx.spec.mounts().clone().unwrap_or_default();
    for m in &mounts {
        mount::mount_entry(&mctx, m)?;
    }
    // runc populates /dev unless the config bind-mounts it from somewhere.
    let dev_bound = mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && options::parse(m.options().as_deref().unwrap_or_default()).is_ok_and(|o| o.bind)
    });
    if !dev_bound {
        for node in devices::defaults() {
            devices::create(root.as_fd(), &node, userns)?;
        }
        devices::symlinks(root.as_fd())?;
    }
    for d in ctx
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        devices::create(root.as_fd(), &devices::from_spec(d)?, userns)?;
    }
    Ok(root)
}

fn make_parent_private(rootfs: &Path) -> Result<()> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
    let parent = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(Path::new)
        .filter(|mp| rootfs.starts_with(mp))
        .max_by_key(|mp| mp.as_os_str().len())
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    mount::mount(None, &parent, None, libc::MS_PRIVATE, None)
        .with_context(|| format!("make {} private for pivot_root", parent.display()))
}

/// Makes the rootfs the process's `/`: pivot_root and a lazy unmount of the
/// old root, or (`--no-pivot`) a move of the rootfs onto `/` and a chroot.
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<()> {
    use nix::unistd::{chdir, chroot, fchdir};
    if no_pivot {
        chdir(rootfs).with_context(|| format!("chdir {}", rootfs.display()))?;
        mount::mount(
            Some(&rootfs.to_string_lossy()),
            Path::new("/"),
            None,
            libc::MS_MOVE,
            None,
        )
        .context("move rootfs onto /")?;
        chroot(".").context("chroot")?;
        return chdir("/").context("chdir /");
    }
    let old = sys::openat(
        libc::AT_FDCWD,
        Path::new("/"),
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
    )
    .context("open /")?;
    let new = sys::openat(
        libc::AT_FDCWD,
        rootfs,
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
    )
    .with_context(|| format!("open {}", rootfs.display()))?;
    fchdir(std::os::fd::AsRawFd::as_raw_fd(&new)).context("fchdir rootfs")?;
    // pivot_root(".", ".") stacks the old root on top of the new one; the
    // old root is then unmounted from "." without needing a directory for it.
    nix::unistd::pivot_root(".", ".").context("pivot_root")?;
    fchdir(std::os::fd::AsRawFd::as_raw_fd(&old)).context("fchdir old root")?;
    // The unmount must not propagate to the host.
    mount::mount(
        None,
        Path::new("."),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .context("make old root rslave")?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).context("unmount old root")?;
    chdir("/").context("chdir /")
}

/// After pivot_root: read-only paths, masked paths, read-only root, final
/// root propagation.
pub fn finalize(spec: &Spec) -> Result<()> {
    let root = sys::openat(
        libc::AT_FDCWD,
        Path::new("/"),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .context("open /")?;
    let linux = spec.linux().as_ref();
    masked::readonly(
        root.as_fd(),
        linux
            .and_then(|l| l.readonly_paths().as_deref())
            .unwrap_or_default(),
    )?;
    masked::mask(
        root.as_fd(),
        linux
            .and_then(|l| l.masked_paths().as_deref())
            .unwrap_or_default(),
    )?;
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        masked::readonly_root()?;
    }
    if linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .is_some_and(|p| !p.is_empty())
    {
        let prop = root_propagation(spec)?;
        mount::apply_propagation(root.as_fd(), &[prop])?;
    }
    Ok(())
}

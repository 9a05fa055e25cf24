//! The `mounts` of `config.json`.
//!
//! Every destination is resolved inside the rootfs first (see `resolve`), then:
//! - bind mounts are cloned with `open_tree(OPEN_TREE_CLONE)`, get their
//!   flags with `mount_setattr` while still detached, and are attached with
//!   `move_mount` onto the resolved descriptor;
//! - filesystem mounts use `mount(2)` with the target `/proc/self/fd/N` of the
//!   resolved descriptor (the host's procfs, still mounted at `/proc` before
//!   pivot_root), so no path is resolved twice;
//! - `proc` and `sysfs` destinations must not contain any symlink.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::Mount;

use super::options::{self, MountOptions};
use super::resolve;
use crate::sys;

/// What mounting needs to know about the container.
pub struct MountCtx<'a> {
    /// `O_PATH` descriptor on the rootfs.
    pub root: BorrowedFd<'a>,
    /// Absolute bundle path (relative bind sources are relative to it).
    pub bundle: &'a Path,
    /// The container has its own user namespace.
    pub userns: bool,
    /// The container has its own network namespace.
    pub netns: bool,
    /// The container has its own cgroup namespace.
    pub cgroupns: bool,
    /// The container's cgroup, relative to each hierarchy root.
    pub cgroup_path: &'a Path,
}

/// `mount(2)` with C strings; `target` is usually a `/proc/self/fd/N` path.
pub fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> std::io::Result<()> {
    let c = |s: &str| {
        CString::new(s).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let source = source.map(c).transpose()?;
    let fstype = fstype.map(c).transpose()?;
    let data = data.filter(|d| !d.is_empty()).map(c).transpose()?;
    let target = sys::cstr(target)?;
    let p = |o: &Option<CString>| o.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is a valid C string or null.
    let r = unsafe {
        libc::mount(
            p(&source),
            target.as_ptr(),
            p(&fstype),
            flags,
            p(&data).cast(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Mounts one entry of `mounts`.
pub fn mount_entry(ctx: &MountCtx, m: &Mount) -> Result<()> {
    let dest = m.destination();
    let opts = options::parse(m.options().as_deref().unwrap_or_default())?;
    let fstype = m.typ().as_deref().unwrap_or("");
    let what = || {
        format!(
            "mount {} on {}",
            m.source().as_deref().unwrap_or(Path::new(fstype)).display(),
            dest.display()
        )
    };
    if opts.bind || fstype == "bind" {
        return bind(ctx, m, &opts).with_context(what);
    }
    match fstype {
        "cgroup" | "cgroup2" => super::cgroupfs::mount(ctx, dest, fstype, &opts).with_context(what),
        "" => bail!("{}: no type and not a bind mount", what()),
        _ => filesystem(ctx, m, fstype, &opts).with_context(what),
    }
}

fn bind(ctx: &MountCtx, m: &Mount, opts: &MountOptions) -> Result<()> {
    let source = m.source().as_ref().context("bind mount without a source")?;
    let source = if source.is_absolute() {
        source.clone()
    } else {
        ctx.bundle.join(source)
    };
    let src = sys::openat(libc::AT_FDCWD, &source, libc::O_PATH, 0)
        .with_context(|| format!("open bind source {}", source.display()))?;
    let is_dir = std::fs::metadata(resolve::fd_path(src.as_fd()))
        .map(|md| md.is_dir())
        .unwrap_or(false);
    let target = if is_dir {
        resolve::mkdir_all(ctx.root, m.destination(), 0o755)?
    } else {
        resolve::create_file(ctx.root, m.destination())?
    };
    bind_fd(src.as_fd(), target.as_fd(), opts)
}

/// Clones the mount tree at `src` and attaches it onto `target` with the
/// flags of `opts`.
pub fn bind_fd(src: BorrowedFd, target: BorrowedFd, opts: &MountOptions) -> Result<()> {
    let tree = sys::open_tree_clone(src, opts.recursive).context("open_tree")?;
    let (set, clr) = opts.attrs();
    if set != 0 || clr != 0 {
        sys::mount_setattr(tree.as_fd(), false, set, clr, 0).context("mount_setattr")?;
    }
    if opts.rec_set != 0 || opts.rec_clr != 0 {
        sys::mount_setattr(tree.as_fd(), true, opts.rec_set, opts.rec_clr, 0)
            .context("mount_setattr (recursive)")?;
    }
    sys::move_mount_fd(tree.as_fd(), target).context("move_mount")?;
    apply_propagation(tree.as_fd(), &opts.propagation)
}

/// Applies propagation flags to the mount `fd` is the root of.
pub fn apply_propagation(fd: BorrowedFd, props: &[libc::c_ulong]) -> Result<()> {
    for &p in props {
        let rec = p & libc::MS_REC != 0;
        sys::mount_setattr(fd, rec, 0, 0, p & !libc::MS_REC).context("set mount propagation")?;
    }
    Ok(())
}

fn filesystem(ctx: &MountCtx, m: &Mount, fstype: &str, opts: &MountOptions) -> Result<()> {
    if opts.tmpcopyup && fstype != "tmpfs" {
        bail!("mount option \"tmpcopyup\" only applies to tmpfs");
    }
    let dest = m.destination();
    // procfs and sysfs decide what the container can see of the host: their
    // destinations may not go through any symlink (CVE-2019-19921).
    let target = if fstype == "proc" || fstype == "sysfs" {
        let _ = resolve::mkdir_all(ctx.root, dest, 0o755)?;
        resolve::open_no_symlinks(ctx.root, dest, libc::O_PATH | libc::O_DIRECTORY).with_context(
            || {
                format!(
                    "{} must be a directory reached without symlinks",
                    dest.display()
                )
            },
        )?
    } else {
        resolve::mkdir_all(ctx.root, dest, 0o755)?
    };
    // What the directory holds before the tmpfs covers it.
    let underneath = if opts.tmpcopyup {
        Some(super::copyup::readable(&target)?)
    } else {
        None
    };
    let source = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned());
    let source = source.as_deref().unwrap_or(fstype);
    let data = opts.data_string();
    let res = mount(
        Some(source),
        &resolve::fd_path(target.as_fd()),
        Some(fstype),
        opts.flags,
        Some(&data),
    );
    match res {
        Ok(()) => {}
        // sysfs cannot be mounted in a user namespace that does not own the
        // network namespace: fall back to a read-only recursive bind of the
        // host's /sys, as runc does.
        Err(e)
            if fstype == "sysfs"
                && e.raw_os_error() == Some(libc::EPERM)
                && ctx.userns
                && !ctx.netns =>
        {
            let host = sys::openat(
                libc::AT_FDCWD,
                Path::new("/sys"),
                libc::O_PATH | libc::O_DIRECTORY,
                0,
            )
            .context("open /sys")?;
            let o = MountOptions {
                recursive: true,
                rec_set: libc::MOUNT_ATTR_RDONLY
                    | libc::MOUNT_ATTR_NOSUID
                    | libc::MOUNT_ATTR_NODEV
                    | libc::MOUNT_ATTR_NOEXEC,
                ..Default::default()
            };
            return bind_fd(host.as_fd(), target.as_fd(), &o);
        }
        Err(e) => return Err(e).context("mount"),
    }
    if let Some(old) = underneath {
        let mounted = super::copyup::readable(&reopen(ctx.root, dest)?)?;
        super::copyup::copy_tree(&old, &mounted).context("tmpcopyup")?;
    }
    if !opts.propagation.is_empty() {
        let mounted = reopen(ctx.root, dest)?;
        apply_propagation(mounted.as_fd(), &opts.propagation)?;
    }
    Ok(())
}

/// Opens what is now mounted at `dest` (the root of the new mount).
pub fn reopen(root: BorrowedFd, dest: &Path) -> Result<OwnedFd> {
    resolve::open(root, dest, libc::O_PATH | libc::O_DIRECTORY)
        .with_context(|| format!("reopen {}", dest.display()))
}

/// `fsopen`/`fsmount` of a fresh filesystem with no options, detached; used
/// for tmpfs masks and private procfs handles.
pub fn detached_fs(fstype: &str, data: &[(&str, &str)], attrs: u64) -> Result<OwnedFd> {
    let fs = sys::fsopen(fstype).with_context(|| format!("fsopen {fstype}"))?;
    for (k, v) in data {
        sys::fsconfig_set_string(fs.as_fd(), k, v)
            .with_context(|| format!("fsconfig {fstype} {k}={v}"))?;
    }
    sys::fsconfig_create(fs.as_fd()).with_context(|| format!("create {fstype} superblock"))?;
    sys::fsmount(fs.as_fd(), attrs).with_context(|| format!("fsmount {fstype}"))
}

/// Path of a descriptor's object as the kernel names it (for messages only).
pub fn describe(fd: BorrowedFd) -> PathBuf {
    std::fs::read_link(resolve::fd_path(fd))
        .unwrap_or_else(|_| PathBuf::from(format!("fd {}", fd.as_raw_fd())))
}

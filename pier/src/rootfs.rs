//! A container's root filesystem: an overlayfs of the image's unpacked
//! layers (read-only lower directories, shared by every container of every
//! image that has them) plus a fresh upper directory of its own.
//!
//! While mounted, a lease file in the store's `mounts/` names the layers in
//! use, so `pier prune` never removes a lower directory under a live mount.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fchmod, fstat, futimens, Mode};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, Gid, Uid};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::image::{Image, Layer};
use crate::store::Store;
use crate::unpack::safe::open_beneath;
use crate::unpack::{implicit_dirs, unpack_layer};

/// A mounted rootfs: `DIR/rootfs` over `DIR/upper` and `DIR/work`.
#[derive(Debug, Clone)]
pub struct RootfsMount {
    /// The container directory given to [`RootfsMount::mount`].
    pub dir: PathBuf,
    /// The merged view: the container's root filesystem.
    pub rootfs: PathBuf,
    /// The container's own changes.
    pub upper: PathBuf,
}

/// The lease kept in `mounts/` while a rootfs is mounted.
#[derive(Serialize, Deserialize)]
pub(crate) struct Lease {
    pub dir: PathBuf,
    pub layers: Vec<Digest>,
}

fn lease_path(store: &Store, dir: &Path) -> PathBuf {
    let d = Digest::of(dir.as_os_str().as_bytes());
    store.mounts_dir().join(format!("{}.json", &d.hex()[..32]))
}

impl RootfsMount {
    /// Unpacks any of `image`'s layers not unpacked yet and mounts the
    /// overlay at `dir/rootfs`, with fresh `dir/upper` and `dir/work`
    /// (`dir` is created if needed; the three must not exist).
    pub fn mount(store: &Store, image: &Image, dir: &Path) -> Result<RootfsMount> {
        RootfsMount::mount_layers(store, &image.layers()?, dir)
    }

    /// [`RootfsMount::mount`] of a layer list (bottom first) rather than
    /// an image: for build steps, whose intermediate states are not images.
    pub fn mount_layers(store: &Store, layers: &[Layer], dir: &Path) -> Result<RootfsMount> {
        let layers = layers.to_vec();
        for l in &layers {
            unpack_layer(store, l)?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let dir =
            std::fs::canonicalize(dir).with_context(|| format!("resolve {}", dir.display()))?;
        let m = RootfsMount {
            rootfs: dir.join("rootfs"),
            upper: dir.join("upper"),
            dir: dir.clone(),
        };
        let work = dir.join("work");
        for p in [&m.upper, &work, &m.rootfs] {
            std::fs::create_dir(p)
                .with_context(|| format!("create {} (must not exist)", p.display()))?;
        }
        let lowers = lower_dirs(store, &layers, &dir)?;
        let lp = write_lease(store, &layers, &dir)?;
        if let Err(e) = mount_overlay(&lowers, &m.upper, &work, &m.rootfs) {
            let _ = std::fs::remove_file(&lp);
            for p in [&m.upper, &work, &m.rootfs] {
                let _ = std::fs::remove_dir(p);
            }
            let _ = std::fs::remove_dir(dir.join("empty"));
            return Err(e);
        }
        if let Err(e) = fix_implicit_dirs(store, &layers, &m.rootfs) {
            let _ = RootfsMount::unmount(store, &dir);
            return Err(e);
        }
        Ok(m)
    }

    /// Mounts again, at `dir/rootfs`, a rootfs whose changes (`dir/upper`)
    /// were kept by [`RootfsMount::unmount_keep`] (a stopped container
    /// being started again). Does nothing if it is mounted already.
    pub fn remount(store: &Store, layers: &[Layer], dir: &Path) -> Result<RootfsMount> {
        let dir =
            std::fs::canonicalize(dir).with_context(|| format!("resolve {}", dir.display()))?;
        let m = RootfsMount {
            rootfs: dir.join("rootfs"),
            upper: dir.join("upper"),
            dir: dir.clone(),
        };
        if is_mountpoint(&m.rootfs)? {
            return Ok(m);
        }
        for l in layers {
            unpack_layer(store, l)?;
        }
        let work = dir.join("work");
        for p in [&m.upper, &work, &m.rootfs] {
            std::fs::create_dir_all(p).with_context(|| format!("create {}", p.display()))?;
        }
        let lowers = lower_dirs(store, layers, &dir)?;
        write_lease(store, layers, &dir)?;
        mount_overlay(&lowers, &m.upper, &work, &m.rootfs)?;
        Ok(m)
    }

    /// Unmounts `dir/rootfs` but keeps the changes (`upper`) and the
    /// lease, for [`RootfsMount::remount`].
    pub fn unmount_keep(dir: &Path) -> Result<()> {
        let rootfs = dir.join("rootfs");
        if rootfs.exists() && is_mountpoint(&std::fs::canonicalize(&rootfs)?)? {
            umount2(&rootfs, MntFlags::empty())
                .or_else(|_| umount2(&rootfs, MntFlags::MNT_DETACH))
                .with_context(|| format!("unmount {}", rootfs.display()))?;
        }
        Ok(())
    }

    /// Unmounts `dir/rootfs` and removes `rootfs`, `upper` and `work` (the
    /// container's changes) and the lease. `dir` itself is left.
    pub fn unmount(store: &Store, dir: &Path) -> Result<()> {
        let dir =
            std::fs::canonicalize(dir).with_context(|| format!("resolve {}", dir.display()))?;
        let rootfs = dir.join("rootfs");
        if is_mountpoint(&rootfs)? {
            umount2(&rootfs, MntFlags::empty())
                .or_else(|_| umount2(&rootfs, MntFlags::MNT_DETACH))
                .with_context(|| format!("unmount {}", rootfs.display()))?;
        }
        // Only remove_dir on rootfs: should it still be a mount, recursing
        // into it would delete the shared layers.
        if rootfs.exists() {
            std::fs::remove_dir(&rootfs).with_context(|| format!("remove {}", rootfs.display()))?;
        }
        for d in ["upper", "work", "empty"] {
            let p = dir.join(d);
            if p.exists() {
                std::fs::remove_dir_all(&p).with_context(|| format!("remove {}", p.display()))?;
            }
        }
        let lp = lease_path(store, &dir);
        match std::fs::remove_file(&lp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("remove {}", lp.display()))
            }
            _ => Ok(()),
        }
    }
}

/// Gives each directory that the top layer having it only implies (it was
/// created for entries below it, with no entry of its own) the owner, mode
/// and times of the same directory in the nearest lower layer that has an
/// entry for it, as applying the layers in order onto one tree would. The
/// change is made through the mount, so it lands in the container's upper
/// directory and the shared layers stay as they are.
fn fix_implicit_dirs(store: &Store, layers: &[Layer], rootfs: &Path) -> Result<()> {
    let implicit: Vec<HashSet<PathBuf>> = layers
        .iter()
        .map(|l| implicit_dirs(store, &l.diff_id).map(|v| v.into_iter().collect()))
        .collect::<Result<_>>()?;
    if implicit.iter().all(|s| s.is_empty()) {
        return Ok(());
    }
    let open_dir = |p: &Path| -> Result<OwnedFd> {
        let fd = nix::fcntl::open(
            p,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("open {}", p.display()))?;
        // SAFETY: a new fd nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let layer_fds: Vec<OwnedFd> = layers
        .iter()
        .map(|l| open_dir(&store.layer_path(&l.diff_id)))
        .collect::<Result<_>>()?;
    let root = open_dir(rootfs)?;
    let dir_in = |k: usize, p: &Path| {
        open_beneath(
            layer_fds[k].as_raw_fd(),
            p,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        )
        .ok()
    };
    let mut done: HashSet<&PathBuf> = HashSet::new();
    for set in implicit.iter().rev() {
        for p in set {
            if !done.insert(p) {
                continue;
            }
            let Some(top) = (0..layers.len()).rev().find(|&k| dir_in(k, p).is_some()) else {
                continue;
            };
            if !implicit[top].contains(p) {
                continue;
            }
            let src = (0..top)
                .rev()
                .find_map(|k| dir_in(k, p).filter(|_| !implicit[k].contains(p)));
            let Some(src) = src else { continue };
            let st = fstat(src.as_raw_fd()).with_context(|| format!("stat {}", p.display()))?;
            // Not there in the merged view (a whiteout above): nothing to do.
            let Ok(fd) = open_beneath(root.as_raw_fd(), p, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            else {
                continue;
            };
            let what = || format!("set attributes of {}", p.display());
            fchown(
                fd.as_raw_fd(),
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
            )
            .with_context(what)?;
            fchmod(
                fd.as_raw_fd(),
                Mode::from_bits_truncate(st.st_mode & 0o7777),
            )
            .with_context(what)?;
            let atime = TimeSpec::new(st.st_atime, st.st_atime_nsec);
            let mtime = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
            futimens(fd.as_raw_fd(), &atime, &mtime).with_context(what)?;
        }
    }
    Ok(())
}

/// True if `p` is a mount point (its device differs from its parent's, or
/// it is listed in /proc/self/mountinfo).
fn is_mountpoint(p: &Path) -> Result<bool> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
    let want = p.to_string_lossy();
    Ok(info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| unescape_mountinfo(m) == want)
    }))
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn check_option_path(p: &Path) -> Result<()> {
    let b = p.as_os_str().as_bytes();
    if b.iter().any(|c| matches!(c, b':' | b',' | b'\\' | b'\n')) {
        bail!(
            "path {} has a character overlayfs options cannot hold (: , \\)",
            p.display()
        );
    }
    Ok(())
}

/// The overlay's lower directories for `layers`, top layer first. overlayfs
/// needs at least one: an image without layers gets an empty `dir/empty`.
fn lower_dirs(store: &Store, layers: &[Layer], dir: &Path) -> Result<Vec<PathBuf>> {
    let mut lowers: Vec<PathBuf> = layers
        .iter()
        .rev()
        .map(|l| store.layer_path(&l.diff_id))
        .collect();
    if lowers.is_empty() {
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).with_context(|| format!("create {}", empty.display()))?;
        lowers.push(empty);
    }
    Ok(lowers)
}

/// Records that the mount at `dir` uses `layers` (so prune keeps them);
/// returns the lease file.
fn write_lease(store: &Store, layers: &[Layer], dir: &Path) -> Result<PathBuf> {
    let lease = Lease {
        dir: dir.to_path_buf(),
        layers: layers.iter().map(|l| l.diff_id.clone()).collect(),
    };
    let lp = lease_path(store, dir);
    crate::store::write_synced(&lp, &serde_json::to_vec(&lease)?)?;
    Ok(lp)
}

fn mount_overlay(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    for p in lowers.iter().map(PathBuf::as_path).chain([upper, work]) {
        check_option_path(p)?;
    }
    let lower = lowers
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    // mount(2) takes at most one page of options; past that (about 40
    // layers under /var/lib/pier) use the new mount API's "lowerdir+",
    // which adds one lower directory per call (Linux 6.8+).
    if data.len() < 4000 {
        return mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .with_context(|| {
            format!(
                "mount overlay on {} ({} layers)",
                target.display(),
                lowers.len()
            )
        });
    }
    mount_overlay_fsconfig(lowers, upper, work, target).with_context(|| {
        format!(
            "mount overlay on {} ({} layers)",
            target.display(),
            lowers.len()
        )
    })
}

fn mount_overlay_fsconfig(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<()> {
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    let cs = |s: &str| CString::new(s).expect("no NUL");
    let cp = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: plain syscalls with valid C strings; every fd is closed below.
    unsafe {
        let fs = libc::syscall(libc::SYS_fsopen, cs("overlay").as_ptr(), 0) as libc::c_int;
        if fs < 0 {
            return Err(std::io::Error::last_os_error()).context("fsopen overlay");
        }
        let set = |k: &str, v: &CString| -> Result<()> {
            let r = libc::syscall(
                libc::SYS_fsconfig,
                fs,
                FSCONFIG_SET_STRING,
                cs(k).as_ptr(),
                v.as_ptr(),
                0,
            );
            if r < 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("fsconfig {k}"));
            }
            Ok(())
        };
        let r = (|| -> Result<()> {
            for l in lowers {
                set("lowerdir+", &cp(l))?;
            }
            set("upperdir", &cp(upper))?;
            set("workdir", &cp(work))?;
            if libc::syscall(libc::SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, 0, 0, 0) < 0 {
                return Err(std::io::Error::last_os_error()).context("fsconfig create");
            }
            let mnt = libc::syscall(libc::SYS_fsmount, fs, 0, 0) as libc::c_int;
            if mnt < 0 {
                return Err(std::io::Error::last_os_error()).context("fsmount");
            }
            let empty = cs("");
            let t = cp(target);
            let r = libc::syscall(
                libc::SYS_move_mount,
                mnt,
                empty.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            );
            let err = std::io::Error::last_os_error();
            libc::close(mnt);
            if r < 0 {
                return Err(err).context("move_mount");
            }
            Ok(())
        })();
        libc::close(fs);
        r
    }
}

/// Every lease file with its content (None if it cannot be read or
/// parsed).
pub(crate) fn leases(store: &Store) -> Result<Vec<(PathBuf, Option<Lease>)>> {
    let mut out = Vec::new();
    let dir = store.mounts_dir();
    for e in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
        let p = e?.path();
        let lease = std::fs::read(&p)
            .ok()
            .and_then(|d| serde_json::from_slice::<Lease>(&d).ok());
        out.push((p, lease));
    }
    Ok(out)
}

/// Diff-ids of the layers held by mounted rootfs leases.
pub(crate) fn leased_layers(store: &Store) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for (p, lease) in leases(store)? {
        match lease {
            Some(l) => out.extend(l.layers),
            // An unreadable lease keeps nothing alive, but say so.
            None => eprintln!("pier: ignoring bad lease {}", p.display()),
        }
    }
    Ok(out)
}

/// True if `p` (absolute, canonical) or anything below it is a mount point.
pub(crate) fn has_mounts_under(p: &Path) -> Result<bool> {
    Ok(!mounts_under(p)?.is_empty())
}

/// Mount points at or below `p` (absolute, canonical), deepest first.
pub(crate) fn mounts_under(p: &Path) -> Result<Vec<PathBuf>> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .filter(|m| m.starts_with(p))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    v.dedup();
    Ok(v)
}

//! Device nodes and the standard `/dev` symlinks.
//!
//! Nodes are made with `mknodat` in a directory resolved inside the rootfs;
//! in a user namespace (where `mknod` is not allowed) the host's node is
//! bind-mounted onto an empty file instead, as runc does.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::mount::bind_fd;
use super::options::MountOptions;
use super::resolve;
use crate::sys;

/// A device node to create.
#[derive(Clone, Debug)]
pub struct Node<'a> {
    /// Absolute path inside the container.
    pub path: &'a Path,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    pub kind: libc::mode_t,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits.
    pub mode: libc::mode_t,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The devices every container gets (runc's list).
pub fn defaults() -> Vec<Node<'static>> {
    let n = |p: &'static str, major, minor| Node {
        path: Path::new(p),
        kind: libc::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    };
    vec![
        n("/dev/null", 1, 3),
        n("/dev/zero", 1, 5),
        n("/dev/full", 1, 7),
        n("/dev/random", 1, 8),
        n("/dev/urandom", 1, 9),
        n("/dev/tty", 5, 0),
    ]
}

/// Converts a `linux.devices` entry.
pub fn from_spec(d: &LinuxDevice) -> Result<Node<'_>> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => bail!(
            "device {}: type \"a\" is not a node type",
            d.path().display()
        ),
    };
    if d.major() < 0 || d.minor() < 0 {
        bail!("device {}: negative major/minor", d.path().display());
    }
    Ok(Node {
        path: d.path(),
        kind,
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// Creates `node` inside `root` (or binds the host's node in a user namespace).
pub fn create(root: BorrowedFd, node: &Node, userns: bool) -> Result<()> {
    let what = || format!("device {}", node.path.display());
    if userns {
        let host = sys::openat(libc::AT_FDCWD, node.path, libc::O_PATH, 0)
            .with_context(|| format!("open host device {} to bind it", node.path.display()))?;
        let target = resolve::create_file(root, node.path).with_context(what)?;
        return bind_fd(host.as_fd(), target.as_fd(), &MountOptions::default()).with_context(what);
    }
    let rel = resolve::relative(node.path);
    let parent = resolve::mkdir_all(root, rel.parent().unwrap_or(Path::new(".")), 0o755)
        .with_context(what)?;
    let name = sys::cstr(Path::new(rel.file_name().with_context(what)?))?;
    let dev = libc::makedev(node.major as u32, node.minor as u32);
    // SAFETY: valid C string and descriptor.
    if unsafe {
        libc::mknodat(
            parent.as_raw_fd(),
            name.as_ptr(),
            node.kind | node.mode,
            dev,
        )
    } < 0
    {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e).with_context(|| format!("mknod {}", node.path.display()));
        }
        // Something is already there: replace it, it may be anything.
        // SAFETY: as above.
        unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), 0) };
        // SAFETY: as above.
        if unsafe {
            libc::mknodat(
                parent.as_raw_fd(),
                name.as_ptr(),
                node.kind | node.mode,
                dev,
            )
        } < 0
        {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("mknod {}", node.path.display()));
        }
    }
    // SAFETY: as above; AT_SYMLINK_NOFOLLOW so a raced-in symlink is not followed.
    if unsafe {
        libc::fchownat(
            parent.as_raw_fd(),
            name.as_ptr(),
            node.uid,
            node.gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } < 0
    {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("chown {}", node.path.display()));
    }
    Ok(())
}

/// `/dev/fd`, `/dev/std{in,out,err}`, `/dev/core` and `/dev/ptmx -> pts/ptmx`.
pub fn symlinks(root: BorrowedFd) -> Result<()> {
    let dev = resolve::mkdir_all(root, Path::new("/dev"), 0o755)?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        let (t, n) = (sys::cstr(Path::new(target))?, sys::cstr(Path::new(name))?);
        // SAFETY: valid C strings and descriptor.
        if unsafe { libc::symlinkat(t.as_ptr(), dev.as_raw_fd(), n.as_ptr()) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e).with_context(|| format!("symlink /dev/{name}"));
            }
        }
    }
    // /dev/ptmx must lead to the container's own devpts instance.
    let (t, n) = (
        sys::cstr(Path::new("pts/ptmx"))?,
        sys::cstr(Path::new("ptmx"))?,
    );
    // SAFETY: as above.
    unsafe { libc::unlinkat(dev.as_raw_fd(), n.as_ptr(), 0) };
    // SAFETY: as above.
    if unsafe { libc::symlinkat(t.as_ptr(), dev.as_raw_fd(), n.as_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error()).context("symlink /dev/ptmx");
    }
    Ok(())
}

//! Resolving paths inside the rootfs without ever leaving it (CVE-2021-30465,
//! CVE-2019-19921).
//!
//! The rootfs is hostile: any component may be a symlink to `/etc` of the
//! host, and may be swapped for one while berth works. Every lookup here goes
//! through `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from a
//! descriptor on the rootfs, so `..` and absolute symlinks stay inside it and
//! `/proc/self/fd/N` tricks are refused. What is mounted afterwards is mounted
//! onto the returned descriptor, never onto a path that could be re-resolved.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::sys;

const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// `path` without its leading `/` (`.` for the root itself).
pub fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// Opens `path` inside `root` (symlinks resolved as if `root` were `/`).
pub fn open(root: BorrowedFd, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    sys::openat2(root.as_raw_fd(), &relative(path), flags, 0, IN_ROOT)
}

/// Opens `path` inside `root`, refusing symlinks in any component.
pub fn open_no_symlinks(root: BorrowedFd, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    sys::openat2(
        root.as_raw_fd(),
        &relative(path),
        flags,
        0,
        IN_ROOT | libc::RESOLVE_NO_SYMLINKS,
    )
}

/// Like `mkdir -p` inside `root`; returns an `O_PATH` descriptor on the
/// directory.
///
/// Symlinks met on the way are followed as if `root` were `/` (a dangling
/// `a -> /etc/x` creates `ROOT/etc/x`), the way runc's `MkdirAllInRoot` does;
/// each directory is created with `mkdirat` in a parent resolved inside the
/// root, so a rename race can at worst make the call fail, never escape.
pub fn mkdir_all(root: BorrowedFd, path: &Path, mode: u32) -> Result<OwnedFd> {
    let rel = relative(path);
    let dir_flags = libc::O_PATH | libc::O_DIRECTORY;
    match open(root, &rel, dir_flags) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e).with_context(|| format!("open {} in rootfs", path.display())),
    }
    let mut done = PathBuf::new();
    let mut rest: VecDeque<OsString> = rel.iter().map(OsStr::to_os_string).collect();
    let mut links = 0;
    while let Some(comp) = rest.pop_front() {
        if comp == "." {
            continue;
        }
        if comp == ".." {
            done.pop();
            continue;
        }
        let parent = open(root, &done, dir_flags)
            .with_context(|| format!("open {} in rootfs", done.display()))?;
        let name = sys::cstr(Path::new(&comp))?;
        match fstatat_nofollow(parent.as_fd(), &name) {
            Ok(mode_bits) if mode_bits & libc::S_IFMT == libc::S_IFDIR => done.push(&comp),
            Ok(mode_bits) if mode_bits & libc::S_IFMT == libc::S_IFLNK => {
                links += 1;
                if links > 40 {
                    bail!(
                        "mkdir {} in rootfs: too many levels of symbolic links",
                        path.display()
                    );
                }
                let target = nix::fcntl::readlinkat(Some(parent.as_raw_fd()), Path::new(&comp))
                    .with_context(|| {
                        format!("readlink {} in rootfs", done.join(&comp).display())
                    })?;
                let target = PathBuf::from(target);
                if target.is_absolute() {
                    done = PathBuf::new();
                }
                for c in target.iter().rev() {
                    if c != "/" {
                        rest.push_front(c.to_os_string());
                    }
                }
            }
            Ok(_) => bail!(
                "mkdir {} in rootfs: {} is not a directory",
                path.display(),
                done.join(&comp).display()
            ),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // SAFETY: valid C string and descriptor.
                if unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), mode) } < 0 {
                    let err = std::io::Error::last_os_error();
                    if err.raw_os_error() == Some(libc::EEXIST) {
                        // Raced with someone: look at it again.
                        rest.push_front(comp);
                        continue;
                    }
                    return Err(err).with_context(|| {
                        format!("mkdir {} in rootfs", done.join(&comp).display())
                    });
                }
                done.push(&comp);
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("stat {} in rootfs", done.join(&comp).display()))
            }
        }
    }
    open(root, &done, dir_flags).with_context(|| format!("open {} in rootfs", done.display()))
}

fn fstatat_nofollow(dir: BorrowedFd, name: &std::ffi::CStr) -> io::Result<libc::mode_t> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, C string and out-pointer.
    if unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_mode)
}

/// Makes sure a non-directory exists at `path` inside `root` (an empty regular
/// file is created if nothing is there); returns an `O_PATH` descriptor on it.
pub fn create_file(root: BorrowedFd, path: &Path) -> Result<OwnedFd> {
    let rel = relative(path);
    if let Ok(fd) = open(root, &rel, libc::O_PATH) {
        return Ok(fd);
    }
    let parent_path = rel.parent().unwrap_or(Path::new("."));
    let parent = mkdir_all(root, parent_path, 0o755)?;
    let name = rel
        .file_name()
        .context("mount destination has no file name")?;
    match sys::openat(
        parent.as_raw_fd(),
        Path::new(name),
        libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY,
        0o644,
    ) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e).with_context(|| format!("create {} in rootfs", path.display())),
    }
    open(root, &rel, libc::O_PATH).with_context(|| format!("open {} in rootfs", path.display()))
}

/// `/proc/self/fd/N` of a descriptor, to hand a resolved object to `mount(2)`.
pub fn fd_path(fd: BorrowedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-resolve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let root = tmp("sym");
        let outside = tmp("outside");
        std::os::unix::fs::symlink(&outside, root.join("evil")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("up")).unwrap();
        let rfd = sys::openat(libc::AT_FDCWD, &root, libc::O_PATH | libc::O_DIRECTORY, 0).unwrap();
        // `evil` points at an absolute host path: it resolves under the root.
        let fd = mkdir_all(rfd.as_fd(), Path::new("/evil/x"), 0o755).unwrap();
        let real = std::fs::read_link(fd_path(fd.as_fd())).unwrap();
        assert!(real.starts_with(&root), "{real:?} escaped");
        assert!(!outside.join("x").exists());
        let fd = mkdir_all(rfd.as_fd(), Path::new("/up/y"), 0o755).unwrap();
        let real = std::fs::read_link(fd_path(fd.as_fd())).unwrap();
        assert_eq!(real, root.join("y"));
        assert!(open_no_symlinks(rfd.as_fd(), Path::new("/up"), libc::O_PATH).is_err());
        let f = create_file(rfd.as_fd(), Path::new("/evil/dir/file")).unwrap();
        let real = std::fs::read_link(fd_path(f.as_fd())).unwrap();
        assert!(real.starts_with(&root), "{real:?} escaped");
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn magic_links_are_refused() {
        let root = tmp("magic");
        std::os::unix::fs::symlink("/proc/self/root", root.join("m")).unwrap();
        let rfd = sys::openat(libc::AT_FDCWD, &root, libc::O_PATH | libc::O_DIRECTORY, 0).unwrap();
        // Inside the root "/proc/self/root" does not exist: no escape through it.
        assert!(open(rfd.as_fd(), Path::new("/m/etc"), libc::O_PATH).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}

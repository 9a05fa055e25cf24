//! runc's `tmpcopyup` mount option: a tmpfs mounted over a directory of the
//! image starts with a copy of what the directory held (Podman uses it for
//! `/tmp`, `/run`... of `--read-only` containers).
//!
//! The copy works on descriptors only (`*at` calls with `AT_SYMLINK_NOFOLLOW`
//! / `O_NOFOLLOW`): the source is the image, hostile input, and a symlink in
//! it is copied as a symlink, never followed.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use anyhow::{Context, Result};

use crate::sys;

fn lstat_at(dir: RawFd, name: &CStr) -> std::io::Result<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, name and out-pointer.
    if unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

fn check(r: libc::c_int, what: &str, name: &CStr) -> Result<()> {
    if r < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("{what} {}", name.to_string_lossy()));
    }
    Ok(())
}

/// Copies the tree under `src` into `dst` (both open directories), keeping
/// modes, owners and times.
pub fn copy_tree(src: &OwnedFd, dst: &OwnedFd) -> Result<()> {
    let entries = nix::dir::Dir::openat(
        Some(src.as_raw_fd()),
        ".",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .context("read directory for tmpcopyup")?;
    let (s, d) = (src.as_raw_fd(), dst.as_raw_fd());
    let names: Vec<std::ffi::CString> = entries
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        let st = lstat_at(s, &name).with_context(|| format!("stat {}", name.to_string_lossy()))?;
        let mode = st.st_mode & 0o7777;
        // SAFETY (all blocks below): *at system calls on descriptors we own
        // with a valid C string; nothing follows a symlink.
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                check(
                    unsafe { libc::mkdirat(d, name.as_ptr(), 0o700) },
                    "mkdir",
                    &name,
                )?;
                let sub_src = open_dir(s, &name)?;
                let sub_dst = open_dir(d, &name)?;
                copy_tree(&sub_src, &sub_dst)?;
                check(
                    unsafe { libc::fchmod(sub_dst.as_raw_fd(), mode) },
                    "chmod",
                    &name,
                )?;
            }
            libc::S_IFREG => {
                let from = unsafe {
                    libc::openat(
                        s,
                        name.as_ptr(),
                        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    )
                };
                check(from, "open", &name)?;
                let mut from = unsafe { File::from_raw_fd(from) };
                let to = unsafe {
                    libc::openat(
                        d,
                        name.as_ptr(),
                        libc::O_WRONLY
                            | libc::O_CREAT
                            | libc::O_EXCL
                            | libc::O_NOFOLLOW
                            | libc::O_CLOEXEC,
                        mode,
                    )
                };
                check(to, "create", &name)?;
                let mut to = unsafe { File::from_raw_fd(to) };
                std::io::copy(&mut from, &mut to)
                    .with_context(|| format!("copy {}", name.to_string_lossy()))?;
                check(
                    unsafe { libc::fchmod(to.as_raw_fd(), mode) },
                    "chmod",
                    &name,
                )?;
            }
            libc::S_IFLNK => {
                let target = nix::fcntl::readlinkat(
                    Some(s),
                    Path::new(std::ffi::OsStr::from_bytes(name.as_bytes())),
                )
                .with_context(|| format!("readlink {}", name.to_string_lossy()))?;
                let target = sys::cstr(Path::new(&target))?;
                check(
                    unsafe { libc::symlinkat(target.as_ptr(), d, name.as_ptr()) },
                    "symlink",
                    &name,
                )?;
            }
            _ => {
                check(
                    unsafe { libc::mknodat(d, name.as_ptr(), st.st_mode, st.st_rdev) },
                    "mknod",
                    &name,
                )?;
            }
        }
        check(
            unsafe {
                libc::fchownat(
                    d,
                    name.as_ptr(),
                    st.st_uid,
                    st.st_gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            },
            "chown",
            &name,
        )?;
        let times = [
            libc::timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec,
            },
            libc::timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec,
            },
        ];
        check(
            unsafe { libc::utimensat(d, name.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) },
            "utimensat",
            &name,
        )?;
    }
    Ok(())
}

use std::os::unix::ffi::OsStrExt;

fn open_dir(dir: RawFd, name: &CStr) -> Result<OwnedFd> {
    // SAFETY: valid descriptor and C string.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    check(fd, "open", name)?;
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reopens an `O_PATH` directory descriptor for reading entries.
pub fn readable(dir: &OwnedFd) -> Result<OwnedFd> {
    sys::openat(
        dir.as_raw_fd(),
        Path::new("."),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
    .context("reopen directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_files_dirs_symlinks_without_following() {
        let base = std::env::temp_dir().join(format!("berth-copyup-{}", std::process::id()));
        let (src, dst) = (base.join("src"), base.join("dst"));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(src.join("d/e")).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(src.join("d/e/f"), "data").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", src.join("link")).unwrap();
        std::fs::set_permissions(
            src.join("d"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1751),
        )
        .unwrap();
        let o = |p: &Path| {
            sys::openat(libc::AT_FDCWD, p, libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap()
        };
        copy_tree(&o(&src), &o(&dst)).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("d/e/f")).unwrap(), "data");
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap(),
            Path::new("/etc/shadow")
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(dst.join("d"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o1751
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}

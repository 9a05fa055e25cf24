//! Paths inside a container's root filesystem, resolved as the container
//! would see them: `openat2(RESOLVE_IN_ROOT)` makes `/`, `..` and absolute
//! symlinks stay inside the root, so a hostile image whose `/etc/passwd`
//! links to the host's `/etc/shadow`, or whose `/app` links to `/../../tmp`,
//! cannot make pier read or write host files (the CVE-2019-14271 and
//! CVE-2018-15664 family). Used by `COPY`/`ADD`/`WORKDIR` and user lookup.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmodat, mkdirat, FchmodatFlags, Mode};
use nix::unistd::{fchownat, Gid, Uid};

/// An open container root.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// The normal components of `p` (`..` kept: the kernel clamps it at the
/// root).
fn rel(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => out.push(".."),
            _ => {}
        }
    }
    out
}

impl Root {
    /// Opens the directory `path` as a root.
    pub fn open(path: &Path) -> Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("open {}", path.display()))?;
        // SAFETY: a new fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The root's host path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's fd.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Opens `p` (container path) with `flags`, resolved inside the root.
    pub fn open_at(&self, p: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        let r = rel(p);
        let r = if r.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            r
        };
        // openat2 refuses a mode without O_CREAT.
        let mode = if flags.contains(OFlag::O_CREAT) {
            0o644
        } else {
            0
        };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .mode(Mode::from_bits_truncate(mode))
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        loop {
            match openat2(self.fd.as_raw_fd(), &r, how) {
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
                Ok(fd) => {
                    // SAFETY: a new fd nothing else owns.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads a whole file (None if it does not exist).
    pub fn read(&self, p: &Path) -> Result<Option<Vec<u8>>> {
        match self.open_at(p, OFlag::O_RDONLY) {
            Ok(fd) => {
                let mut f = File::from(fd);
                let mut v = Vec::new();
                f.read_to_end(&mut v)
                    .with_context(|| format!("read {} in the container", p.display()))?;
                Ok(Some(v))
            }
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("open {} in the container", p.display())),
        }
    }

    /// True if `p` exists (symlinks followed inside the root).
    pub fn exists(&self, p: &Path) -> bool {
        self.open_at(p, OFlag::O_PATH).is_ok()
    }

    /// True if `p` is a directory.
    pub fn is_dir(&self, p: &Path) -> bool {
        self.open_at(p, OFlag::O_PATH | OFlag::O_DIRECTORY).is_ok()
    }

    /// `mkdir -p p` inside the root; directories it creates get `uid:gid`
    /// and mode 0755. Returns the directory's fd.
    pub fn mkdir_all(&self, p: &Path, uid: u32, gid: u32) -> Result<OwnedFd> {
        let r = rel(p);
        let mut cur = PathBuf::new();
        let mut fd = self
            .open_at(Path::new("."), OFlag::O_PATH | OFlag::O_DIRECTORY)
            .context("open the container root")?;
        for c in r.components() {
            cur.push(c);
            match self.open_at(&cur, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(next) => fd = next,
                Err(Errno::ENOENT) => {
                    let name = c.as_os_str();
                    match mkdirat(Some(fd.as_raw_fd()), name, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(e).with_context(|| {
                                format!("create directory {} in the container", cur.display())
                            })
                        }
                    }
                    fchownat(
                        Some(fd.as_raw_fd()),
                        name,
                        Some(Uid::from_raw(uid)),
                        Some(Gid::from_raw(gid)),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .with_context(|| format!("chown {} in the container", cur.display()))?;
                    // The umask must not narrow the mode.
                    fchmodat(
                        Some(fd.as_raw_fd()),
                        name,
                        Mode::from_bits_truncate(0o755),
                        FchmodatFlags::FollowSymlink,
                    )
                    .ok();
                    fd = self
                        .open_at(&cur, OFlag::O_PATH | OFlag::O_DIRECTORY)
                        .with_context(|| format!("open {} in the container", cur.display()))?;
                }
                Err(Errno::ENOTDIR) => {
                    bail!("{} in the container is not a directory", cur.display())
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("open {} in the container", cur.display()))
                }
            }
        }
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let d = std::env::temp_dir().join(format!("pier-inroot-{}", std::process::id()));
        let root = d.join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(d.join("outside"), b"host secret").unwrap();
        std::fs::write(root.join("etc/real"), b"inside").unwrap();
        std::os::unix::fs::symlink("/etc/real", root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        let r = Root::open(&root).unwrap();
        assert_eq!(
            r.read(Path::new("/etc/passwd")).unwrap().unwrap(),
            b"inside"
        );
        assert!(r.read(Path::new("/escape")).unwrap().is_none());
        // mkdir through a symlink pointing "outside" lands inside.
        r.mkdir_all(Path::new("/up/made/here"), 0, 0).unwrap();
        assert!(root.join("made/here").is_dir());
        assert!(!d.join("made").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}

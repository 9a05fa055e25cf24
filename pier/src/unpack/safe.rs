//! Confined file-system operations inside a layer directory.
//!
//! Every path is resolved from a directory fd with `openat2(2)` and
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV`: the kernel refuses any `..` that climbs out, any symlink
//! on the way (a layer that makes `a -> /etc` and then writes `a/passwd` gets
//! `ELOOP`) and any mount crossing. The final component is then handled with
//! `*at` calls that do not follow symlinks. Together these close the
//! classic tar-extraction escapes (e.g. CVE-2018-15664-style symlink races,
//! CVE-2019-14271, the "zip slip" family).

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};

/// A layer-relative path split into its parent directory and final name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPath {
    /// Parent directory, relative to the layer root ("" for the root).
    pub parent: PathBuf,
    /// Final component (never empty, `.` or `..`).
    pub name: OsString,
}

impl EntryPath {
    /// The whole relative path.
    pub fn full(&self) -> PathBuf {
        self.parent.join(&self.name)
    }
}

/// Validates a path from a tar header: relative, without `..`, without NUL.
/// `./` prefixes and repeated slashes are dropped. Returns `None` for the
/// layer root itself (`.` or `./`).
pub fn clean_path(raw: &[u8]) -> Result<Option<EntryPath>> {
    let shown = String::from_utf8_lossy(raw);
    if raw.is_empty() {
        bail!("empty path in layer");
    }
    if raw.contains(&0) {
        bail!("path {shown:?} contains a NUL byte");
    }
    if raw[0] == b'/' {
        bail!("absolute path {shown:?} in layer refused");
    }
    let mut parts: Vec<&OsStr> = Vec::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::CurDir => {}
            Component::ParentDir => bail!("path {shown:?} with '..' in layer refused"),
            Component::RootDir | Component::Prefix(_) => bail!("absolute path {shown:?} refused"),
        }
    }
    let Some(name) = parts.pop() else {
        return Ok(None);
    };
    Ok(Some(EntryPath {
        parent: parts.iter().collect(),
        name: name.to_os_string(),
    }))
}

/// Opens `path` beneath `dirfd` without following any symlink or leaving
/// `dirfd`'s tree.
pub fn open_beneath(dirfd: RawFd, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    let p = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let fd = openat2(dirfd, p, how)?;
    // SAFETY: openat2 returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn resolve_error(e: Errno, rel: &Path) -> anyhow::Error {
    match e {
        Errno::ELOOP => anyhow::anyhow!("path {} goes through a symlink: refused", rel.display()),
        Errno::EXDEV => anyhow::anyhow!("path {} escapes the layer: refused", rel.display()),
        // O_NOFOLLOW|O_DIRECTORY on a symlink gives ENOTDIR rather than ELOOP.
        Errno::ENOTDIR => anyhow::anyhow!(
            "path {}: a component is a symlink or not a directory: refused",
            rel.display()
        ),
        e => anyhow::Error::new(e).context(format!("open {}", rel.display())),
    }
}

/// The layer directory being filled, with the last parent directory opened
/// kept (tar entries come grouped by directory).
pub struct LayerDir {
    root: OwnedFd,
    cached: Option<(PathBuf, OwnedFd)>,
    /// Directories created because an entry needed them (no entry of
    /// their own yet).
    pub created: Vec<PathBuf>,
}

impl LayerDir {
    /// Opens the (empty) layer directory.
    pub fn open(path: &Path) -> Result<LayerDir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .with_context(|| format!("open {}", path.display()))?;
        // SAFETY: open returned a new fd that nothing else owns.
        Ok(LayerDir {
            root: unsafe { OwnedFd::from_raw_fd(fd) },
            cached: None,
            created: Vec::new(),
        })
    }

    /// The layer root's fd (opened for reading, usable with `f*` calls).
    pub fn root_fd(&self) -> RawFd {
        self.root.as_raw_fd()
    }

    /// The directory `rel` beneath the root, creating missing directories
    /// (mode 0755, owned by root) when `create`; a symlink or non-directory
    /// on the way is an error.
    pub fn dir(&mut self, rel: &Path, create: bool) -> Result<RawFd> {
        if rel.as_os_str().is_empty() {
            return Ok(self.root.as_raw_fd());
        }
        if let Some((p, fd)) = &self.cached {
            if p == rel {
                return Ok(fd.as_raw_fd());
            }
        }
        let fd = match open_beneath(self.root_fd(), rel, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => self.create_dirs(rel)?,
            Err(e) => return Err(resolve_error(e, rel)),
        };
        let raw = fd.as_raw_fd();
        self.cached = Some((rel.to_path_buf(), fd));
        Ok(raw)
    }

    fn create_dirs(&mut self, rel: &Path) -> Result<OwnedFd> {
        let mut cur = open_beneath(
            self.root_fd(),
            Path::new("."),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        )?;
        let mut so_far = PathBuf::new();
        for c in rel.components() {
            let c = Path::new(c.as_os_str());
            so_far.push(c);
            let next = match open_beneath(cur.as_raw_fd(), c, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    mkdirat(Some(cur.as_raw_fd()), c, Mode::from_bits_truncate(0o755))
                        .with_context(|| format!("mkdir {}", rel.display()))?;
                    self.created.push(so_far.clone());
                    open_beneath(cur.as_raw_fd(), c, OFlag::O_PATH | OFlag::O_DIRECTORY)
                        .map_err(|e| resolve_error(e, rel))?
                }
                Err(e) => return Err(resolve_error(e, rel)),
            };
            cur = next;
        }
        Ok(cur)
    }

    /// Opens a directory beneath the root (not cached, for reading).
    pub fn open_dir(&self, rel: &Path) -> Result<OwnedFd> {
        open_beneath(self.root_fd(), rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|e| resolve_error(e, rel))
    }

    /// Forgets the cached parent (after it may have been replaced).
    pub fn forget(&mut self) {
        self.cached = None;
    }
}

/// A C string from an OS string (names from tar never hold NUL: checked by
/// [`clean_path`]).
pub fn cstr(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).context("name with NUL byte")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_rules() {
        let p = clean_path(b"./a//b/./c").unwrap().unwrap();
        assert_eq!(p.parent, PathBuf::from("a/b"));
        assert_eq!(p.name, OsString::from("c"));
        assert_eq!(clean_path(b"./").unwrap(), None);
        assert_eq!(clean_path(b".").unwrap(), None);
        let top = clean_path(b"etc/").unwrap().unwrap();
        assert_eq!(top.parent, PathBuf::new());
        assert_eq!(top.name, OsString::from("etc"));
        assert!(clean_path(b"/etc/passwd").is_err());
        assert!(clean_path(b"../x").is_err());
        assert!(clean_path(b"a/../../x").is_err());
        assert!(clean_path(b"a/..").is_err());
        assert!(clean_path(b"").is_err());
    }
}

//! Copying files into a build step's root filesystem (`COPY`, `ADD`):
//! every source is read through directory fds and every destination is
//! made with `*at` calls under a directory opened inside the container root
//! (see [`crate::inroot`]), so neither a symlink in the context nor one in
//! the image can redirect a write to the host.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, futimens, mkdirat, mknodat, FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::context::{kind, list_dir, open_in, Ignore};
use crate::inroot::Root;

/// How copied entries are owned and moded.
#[derive(Clone, Copy, Debug)]
pub struct Attrs {
    /// Owner for every entry (None: keep the source's).
    pub owner: Option<(u32, u32)>,
    /// Mode for every file and directory (`--chmod`).
    pub chmod: Option<u32>,
}

/// A source tree: a directory fd, the relative path of the entry for
/// `.dockerignore` matching, and the rules (none for stage and image
/// sources).
pub struct Source<'a> {
    /// The source's parent directory fd and name, or the entry itself.
    pub fd: RawFd,
    /// Context-relative path, for `.dockerignore`.
    pub rel: String,
    /// The rules.
    pub ignore: Option<&'a Ignore>,
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

fn owner_of(a: &Attrs, st: &FileStat) -> (u32, u32) {
    a.owner.unwrap_or((st.st_uid, st.st_gid))
}

/// Removes a non-directory at `name` in `dir`, if any; refuses to replace
/// a directory with a non-directory (as Docker).
fn make_room(dir: RawFd, name: &OsStr) -> Result<()> {
    match fstatat(Some(dir), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e).context("stat destination"),
        Ok(st) if kind(&st) == libc::S_IFDIR => bail!(
            "cannot replace directory {} with a non-directory",
            name.to_string_lossy()
        ),
        Ok(_) => unlinkat(Some(dir), name, UnlinkatFlags::NoRemoveDir)
            .with_context(|| format!("replace {}", name.to_string_lossy())),
    }
}

/// Copies the regular file `src` (open fd, its stat) to `name` in `dir`.
pub fn copy_file(src: &OwnedFd, st: &FileStat, dir: RawFd, name: &OsStr, a: &Attrs) -> Result<()> {
    make_room(dir, name)?;
    let fd = nix::fcntl::openat(
        Some(dir),
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .with_context(|| format!("create {}", name.to_string_lossy()))?;
    let mut out = File::from(unsafe_owned(fd));
    let mut inp = File::from(src.try_clone().context("dup")?);
    std::io::copy(&mut inp, &mut out)
        .with_context(|| format!("copy to {}", name.to_string_lossy()))?;
    let (uid, gid) = owner_of(a, st);
    // chown before chmod: chown clears set-id bits.
    fchown(
        out.as_raw_fd(),
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
    )
    .context("chown")?;
    let mode = a.chmod.unwrap_or(st.st_mode & 0o7777);
    fchmod(out.as_raw_fd(), Mode::from_bits_truncate(mode)).context("chmod")?;
    let (at, mt) = times(st);
    futimens(out.as_raw_fd(), &at, &mt).context("set times")?;
    Ok(())
}

fn unsafe_owned(fd: RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: called only with fds just returned by a successful open.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Writes `data` as the file `name` in `dir` (here-documents).
pub fn write_file(dir: RawFd, name: &OsStr, data: &[u8], a: &Attrs) -> Result<()> {
    use std::io::Write;
    make_room(dir, name)?;
    let fd = nix::fcntl::openat(
        Some(dir),
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .with_context(|| format!("create {}", name.to_string_lossy()))?;
    let mut f = File::from(unsafe_owned(fd));
    f.write_all(data).context("write")?;
    let (uid, gid) = a.owner.unwrap_or((0, 0));
    fchown(
        f.as_raw_fd(),
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
    )
    .context("chown")?;
    fchmod(
        f.as_raw_fd(),
        Mode::from_bits_truncate(a.chmod.unwrap_or(0o644)),
    )
    .context("chmod")?;
    Ok(())
}

/// Opens (creating if needed) the directory `name` in `dir` for copying
/// into it; an existing symlink there is followed inside the container
/// root (`root`, `path` is the container path of the directory).
fn sub_dir(
    root: &Root,
    dir: RawFd,
    name: &OsStr,
    path: &Path,
    created: &mut bool,
) -> Result<OwnedFd> {
    match mkdirat(Some(dir), name, Mode::from_bits_truncate(0o755)) {
        Ok(()) => *created = true,
        Err(Errno::EEXIST) => {}
        Err(e) => return Err(e).with_context(|| format!("mkdir {}", path.display())),
    }
    match open_in(dir, name, OFlag::O_PATH | OFlag::O_DIRECTORY) {
        Ok(fd) => Ok(fd),
        // A symlink (e.g. /bin -> usr/bin): follow it inside the root.
        Err(_) => root.mkdir_all(path, 0, 0),
    }
}

/// Copies the children of the source directory `src_dir` into `dst_dir`.
/// `rel` is the source's context-relative path (for `.dockerignore`),
/// `path` the destination's container path.
pub fn copy_children(
    root: &Root,
    src_dir: RawFd,
    rel: &str,
    ignore: Option<&Ignore>,
    dst_dir: RawFd,
    path: &Path,
    a: &Attrs,
) -> Result<()> {
    for e in list_dir(src_dir)? {
        let r = if rel.is_empty() {
            e.name.to_string_lossy().into_owned()
        } else {
            format!("{rel}/{}", e.name.to_string_lossy())
        };
        if ignore.is_some_and(|i| i.excluded(&r)) {
            continue;
        }
        let dpath = path.join(&e.name);
        copy_entry(
            root, src_dir, &e.name, &e.st, &r, ignore, dst_dir, &e.name, &dpath, a,
        )
        .with_context(|| format!("copy {r}"))?;
    }
    Ok(())
}

/// Copies one entry `name` of `src_dir` (with stat `st`) to `dname` in
/// `dst_dir` (recursively for directories).
#[allow(clippy::too_many_arguments)]
pub fn copy_entry(
    root: &Root,
    src_dir: RawFd,
    name: &OsStr,
    st: &FileStat,
    rel: &str,
    ignore: Option<&Ignore>,
    dst_dir: RawFd,
    dname: &OsStr,
    dpath: &Path,
    a: &Attrs,
) -> Result<()> {
    let (uid, gid) = owner_of(a, st);
    match kind(st) {
        libc::S_IFDIR => {
            let mut created = false;
            let d = sub_dir(root, dst_dir, dname, dpath, &mut created)?;
            let s = open_in(src_dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
            copy_children(root, s.as_raw_fd(), rel, ignore, d.as_raw_fd(), dpath, a)?;
            set_dir_attrs(&d, uid, gid, a.chmod.unwrap_or(st.st_mode & 0o7777), st)?;
        }
        libc::S_IFREG => {
            let s = open_in(src_dir, name, OFlag::O_RDONLY)?;
            copy_file(&s, st, dst_dir, dname, a)?;
        }
        libc::S_IFLNK => {
            let target = nix::fcntl::readlinkat(Some(src_dir), name).context("readlink")?;
            make_room(dst_dir, dname)?;
            symlinkat(target.as_os_str(), Some(dst_dir), dname).context("symlink")?;
            fchownat(
                Some(dst_dir),
                dname,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .context("chown symlink")?;
            let (at, mt) = times(st);
            nix::sys::stat::utimensat(
                Some(dst_dir),
                dname,
                &at,
                &mt,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .context("set symlink times")?;
        }
        libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK => {
            let k = match kind(st) {
                libc::S_IFIFO => SFlag::S_IFIFO,
                libc::S_IFCHR => SFlag::S_IFCHR,
                _ => SFlag::S_IFBLK,
            };
            make_room(dst_dir, dname)?;
            mknodat(
                Some(dst_dir),
                dname,
                k,
                Mode::from_bits_truncate(st.st_mode & 0o7777),
                st.st_rdev,
            )
            .context("mknod")?;
            fchownat(
                Some(dst_dir),
                dname,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .context("chown")?;
        }
        _ => {} // sockets are not copied
    }
    Ok(())
}

/// Owner, mode and times of a directory (through an O_PATH fd).
fn set_dir_attrs(d: &OwnedFd, uid: u32, gid: u32, mode: u32, st: &FileStat) -> Result<()> {
    let p = format!("/proc/self/fd/{}", d.as_raw_fd());
    let fd = nix::fcntl::open(
        p.as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("reopen directory")?;
    let fd = unsafe_owned(fd);
    fchown(
        fd.as_raw_fd(),
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
    )
    .context("chown")?;
    fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode)).context("chmod")?;
    let (at, mt) = times(st);
    futimens(fd.as_raw_fd(), &at, &mt).context("set times")
}

/// Copies one top-level source to `dest` (container path) in `root`.
/// `dest_is_dir`: the destination names a directory (ends in `/`, several
/// sources, or an existing directory) so a file goes inside it.
#[allow(clippy::too_many_arguments)]
pub fn copy_source(
    root: &Root,
    src: &OwnedFd,
    src_name: &OsStr,
    rel: &str,
    ignore: Option<&Ignore>,
    dest: &Path,
    dest_is_dir: bool,
    a: &Attrs,
) -> Result<()> {
    let st = fstat(src.as_raw_fd()).context("stat source")?;
    let (new_uid, new_gid) = a.owner.unwrap_or((0, 0));
    if kind(&st) == libc::S_IFDIR {
        // A directory's contents are copied, not the directory itself.
        let d = root.mkdir_all(dest, new_uid, new_gid)?;
        let p = format!("/proc/self/fd/{}", src.as_raw_fd());
        let s = nix::fcntl::open(
            p.as_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .context("open source directory")?;
        let s = unsafe_owned(s);
        return copy_children(root, s.as_raw_fd(), rel, ignore, d.as_raw_fd(), dest, a);
    }
    let (dir_path, name) = if dest_is_dir || root.is_dir(dest) {
        (dest.to_path_buf(), src_name.to_os_string())
    } else {
        let parent = dest.parent().unwrap_or(Path::new("/")).to_path_buf();
        let name = dest
            .file_name()
            .context("the destination has no file name")?
            .to_os_string();
        (parent, name)
    };
    let d = root.mkdir_all(&dir_path, new_uid, new_gid)?;
    if kind(&st) == libc::S_IFREG {
        let p = format!("/proc/self/fd/{}", src.as_raw_fd());
        let f = nix::fcntl::open(
            p.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .context("open source")?;
        let f = unsafe_owned(f);
        copy_file(&f, &st, d.as_raw_fd(), &name, a)
    } else {
        bail!("{rel}: only files and directories can be copied at the top level")
    }
}

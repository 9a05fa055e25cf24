//! Extracting one layer tar into an empty layer directory, entry by entry.
//!
//! The tar format is parsed by the `tar` crate (GNU and PAX long names,
//! sparse files, PAX records); everything that touches the file system is
//! here and goes through [`super::safe`]. Whiteouts become overlayfs
//! whiteouts: `.wh.NAME` a character device 0:0 named `NAME`, and
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, mknodat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use super::safe::{clean_path, cstr, open_beneath, EntryPath, LayerDir};

const COPY_BUF: usize = 256 * 1024;

/// The most a layer's GNU sparse files may leave as holes, all files
/// together. A sparse entry says how big its file is and where its data
/// blocks are: a tar of a few hundred bytes can describe a file of 2^63
/// bytes. The `tar` crate reads the holes as zeros, so pier would spend CPU
/// on every byte of them (and write them out, before holes were kept
/// holes below). Layers written by Docker, BuildKit or Go's `archive/tar`
/// have no sparse entries; GNU `tar --sparse` makes them.
pub const MAX_SPARSE_HOLES: u64 = 1 << 30;
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Metadata of one entry, PAX records applied over the header.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Extracts the tar stream `reader` into `dest` (an empty directory).
/// Returns the reader, so the caller can drain what follows the
/// end-of-archive blocks, and the directories that were created only
/// because entries below them needed them (no entry of their own).
pub fn extract<R: Read>(reader: R, dest: &Path) -> Result<(R, Vec<PathBuf>)> {
    let mut ex = Extractor {
        dir: LayerDir::open(dest)?,
        dirs: Vec::new(),
        buf: vec![0; COPY_BUF],
        implicit: BTreeSet::new(),
        holes: 0,
    };
    let mut ar = tar::Archive::new(reader);
    for entry in ar.entries().context("read layer tar")? {
        let mut e = entry.context("read layer tar entry")?;
        let path = e.path_bytes().into_owned();
        ex.entry(&mut e)
            .with_context(|| format!("layer entry {:?}", String::from_utf8_lossy(&path)))?;
        ex.implicit.extend(ex.dir.created.drain(..));
    }
    ex.finish()?;
    Ok((ar.into_inner(), ex.implicit.into_iter().collect()))
}

struct Extractor {
    dir: LayerDir,
    /// Directories and their mtimes, set last (creating children changes them).
    dirs: Vec<(PathBuf, TimeSpec)>,
    buf: Vec<u8>,
    implicit: BTreeSet<PathBuf>,
    /// Bytes of holes in the sparse files so far.
    holes: u64,
}

impl Extractor {
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<R>) -> Result<()> {
        let kind = e.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let meta = read_meta(e)?;
        let Some(p) = clean_path(&e.path_bytes())? else {
            // The layer root itself ("./"): only its metadata applies.
            if kind.is_dir() {
                self.apply_dir_meta(self.dir.root_fd(), &meta)?;
                self.dirs.push((PathBuf::new(), meta.mtime));
                return Ok(());
            }
            bail!("the layer root is not a directory");
        };
        let name = p.name.as_bytes();
        if name == OPAQUE {
            return self.opaque(&p.parent);
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                return Ok(()); // other AUFS metadata (.wh..wh.plnk, ...): not content
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                bail!("invalid whiteout name");
            }
            return self.whiteout(&p.parent, OsStr::from_bytes(hidden));
        }
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(e, &p, &meta)
            }
            EntryType::Directory => self.directory(&p, &meta),
            EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .context("symlink without target")?
                    .into_owned();
                self.symlink(&p, &target, &meta)
            }
            EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .context("hard link without target")?
                    .into_owned();
                self.hardlink(&p, &target)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let dev = match kind {
                    EntryType::Fifo => 0,
                    _ => {
                        let major = e.header().device_major()?.unwrap_or(0);
                        let minor = e.header().device_minor()?.unwrap_or(0);
                        libc::makedev(major, minor)
                    }
                };
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                self.node(&p, sflag, dev, &meta)
            }
            other => bail!("unsupported tar entry type {other:?}"),
        }
    }

    /// Makes room for a new entry: an existing non-directory is removed; an
    /// existing directory is kept for a directory entry and refused otherwise.
    /// Returns true if a directory is already there.
    fn make_room(&self, parent: RawFd, name: &OsStr, is_dir: bool) -> Result<bool> {
        match fstatat(Some(parent), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(e).context("stat existing entry"),
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                if is_dir {
                    Ok(true)
                } else {
                    bail!("refusing to replace a directory with a non-directory")
                }
            }
            Ok(_) => {
                unlinkat(Some(parent), name, UnlinkatFlags::NoRemoveDir)
                    .context("replace existing entry")?;
                Ok(false)
            }
        }
    }

    /// Runs `create`; if the name is taken, makes room (see
    /// [`Extractor::make_room`]) and runs it again. Trying first saves a
    /// stat per entry in the usual case of a new name.
    fn create<T>(
        &self,
        parent: RawFd,
        name: &OsStr,
        mut create: impl FnMut() -> nix::Result<T>,
    ) -> Result<T> {
        match create() {
            Err(Errno::EEXIST) => {
                self.make_room(parent, name, false)?;
                Ok(create()?)
            }
            r => Ok(r?),
        }
    }

    fn file<R: Read>(&mut self, e: &mut tar::Entry<R>, p: &EntryPath, meta: &Meta) -> Result<()> {
        let sparse = e.header().entry_type() == EntryType::GNUSparse;
        if sparse {
            // `size()` is the file's size, `entry_size()` the data stored.
            let holes = e.size().saturating_sub(e.header().entry_size()?);
            self.holes = self.holes.saturating_add(holes);
            if self.holes > MAX_SPARSE_HOLES {
                bail!(
                    "sparse file of {} bytes: the layer's sparse files have more than {} MiB \
                     of holes, more than pier unpacks",
                    e.size(),
                    MAX_SPARSE_HOLES >> 20
                );
            }
        }
        let parent = self.dir.dir(&p.parent, true)?;
        let fd = self
            .create(parent, &p.name, || {
                nix::fcntl::openat(
                    Some(parent),
                    p.name.as_os_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
            })
            .context("create file")?;
        // SAFETY: openat returned a new fd that nothing else owns.
        let mut f = unsafe { File::from_raw_fd(fd) };
        loop {
            let n = match e.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err).context("read file content from layer"),
            };
            if sparse && self.buf[..n].iter().all(|&b| b == 0) {
                // A hole stays a hole (as GNU tar extracts it).
                f.seek(SeekFrom::Current(n as i64))
                    .context("seek over a hole")?;
            } else {
                f.write_all(&self.buf[..n]).context("write file")?;
            }
        }
        if sparse {
            let end = f.stream_position().context("seek")?;
            f.set_len(end).context("set the size of a sparse file")?;
        }
        let fd = f.as_raw_fd();
        // chown before chmod: chown clears set-user-ID bits; xattrs after
        // chown: it drops security.capability.
        fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .context("chown")?;
        fchmod(fd, Mode::from_bits_truncate(meta.mode)).context("chmod")?;
        set_xattrs(fd, &meta.xattrs)?;
        nix::sys::stat::futimens(fd, &meta.mtime, &meta.mtime).context("set times")?;
        Ok(())
    }

    fn directory(&mut self, p: &EntryPath, meta: &Meta) -> Result<()> {
        let parent = self.dir.dir(&p.parent, true)?;
        let mkdir = || {
            nix::sys::stat::mkdirat(
                Some(parent),
                p.name.as_os_str(),
                Mode::from_bits_truncate(0o700),
            )
        };
        match mkdir() {
            Err(Errno::EEXIST) => {
                if !self.make_room(parent, &p.name, true)? {
                    mkdir().context("mkdir")?;
                }
            }
            r => r.context("mkdir")?,
        }
        let fd = open_beneath(
            parent,
            Path::new(&p.name),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        )
        .context("open directory")?;
        self.apply_dir_meta(fd.as_raw_fd(), meta)?;
        self.implicit.remove(&p.full());
        self.dirs.push((p.full(), meta.mtime));
        Ok(())
    }

    fn apply_dir_meta(&self, fd: RawFd, meta: &Meta) -> Result<()> {
        fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .context("chown")?;
        fchmod(fd, Mode::from_bits_truncate(meta.mode)).context("chmod")?;
        set_xattrs(fd, &meta.xattrs)
    }

    fn symlink(&mut self, p: &EntryPath, target: &[u8], meta: &Meta) -> Result<()> {
        // The target is stored as is, never followed here: it is resolved
        // only inside the container's root at run time.
        let parent = self.dir.dir(&p.parent, true)?;
        self.create(parent, &p.name, || {
            symlinkat(OsStr::from_bytes(target), Some(parent), p.name.as_os_str())
        })
        .context("symlink")?;
        self.own_and_time(parent, &p.name, meta)
    }

    fn hardlink(&mut self, p: &EntryPath, target: &[u8]) -> Result<()> {
        let Some(t) = clean_path(target).context("hard link target")? else {
            bail!("hard link to the layer root refused");
        };
        let tparent = open_beneath(
            self.dir.root_fd(),
            &t.parent,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        )
        .map_err(|e| link_error(e, &t))?;
        let parent = self.dir.dir(&p.parent, true)?;
        self.make_room(parent, &p.name, false)?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        linkat(
            Some(tparent.as_raw_fd()),
            t.name.as_os_str(),
            Some(parent),
            p.name.as_os_str(),
            AtFlags::empty(),
        )
        .map_err(|e| link_error(e, &t))
    }

    fn node(&mut self, p: &EntryPath, kind: SFlag, dev: libc::dev_t, meta: &Meta) -> Result<()> {
        let parent = self.dir.dir(&p.parent, true)?;
        self.create(parent, &p.name, || {
            mknodat(
                Some(parent),
                p.name.as_os_str(),
                kind,
                Mode::from_bits_truncate(0o600),
                dev,
            )
        })
        .context("mknod")?;
        self.own_and_time(parent, &p.name, meta)?;
        fchmodat(
            Some(parent),
            p.name.as_os_str(),
            Mode::from_bits_truncate(meta.mode),
            FchmodatFlags::FollowSymlink,
        )
        .context("chmod")
    }

    fn own_and_time(&self, parent: RawFd, name: &OsStr, meta: &Meta) -> Result<()> {
        fchownat(
            Some(parent),
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .context("chown")?;
        nix::sys::stat::utimensat(
            Some(parent),
            name,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .context("set times")
    }

    fn whiteout(&mut self, parent_rel: &Path, name: &OsStr) -> Result<()> {
        let parent = self.dir.dir(parent_rel, true)?;
        // overlayfs: a character device 0:0 in a lower layer hides the name.
        self.create(parent, name, || {
            mknodat(
                Some(parent),
                name,
                SFlag::S_IFCHR,
                Mode::empty(),
                libc::makedev(0, 0),
            )
        })
        .context("mknod whiteout")
    }

    fn opaque(&mut self, parent_rel: &Path) -> Result<()> {
        self.dir.dir(parent_rel, true)?;
        let fd = self.dir.open_dir(parent_rel)?;
        set_xattr(fd.as_raw_fd(), b"trusted.overlay.opaque", b"y").context("mark directory opaque")
    }

    fn finish(&mut self) -> Result<()> {
        self.dir.forget();
        // Children first, so setting a parent's time is the last change to it.
        for (rel, mtime) in self.dirs.iter().rev() {
            let fd: OwnedFd = self.dir.open_dir(rel)?;
            nix::sys::stat::futimens(fd.as_raw_fd(), mtime, mtime)
                .with_context(|| format!("set times of {}", rel.display()))?;
        }
        Ok(())
    }
}

fn link_error(e: Errno, t: &EntryPath) -> anyhow::Error {
    let shown = t.full().display().to_string();
    match e {
        Errno::ENOENT => anyhow::anyhow!("hard link target {shown:?} is not in this layer"),
        Errno::ELOOP | Errno::ENOTDIR => {
            anyhow::anyhow!(
                "hard link target {shown:?} goes through a symlink or non-directory: refused"
            )
        }
        Errno::EXDEV => anyhow::anyhow!("hard link target {shown:?} escapes the layer: refused"),
        Errno::EPERM => anyhow::anyhow!("hard link target {shown:?} is a directory: refused"),
        e => anyhow::Error::new(e).context(format!("hard link to {shown:?}")),
    }
}

fn read_meta<R: Read>(e: &mut tar::Entry<R>) -> Result<Meta> {
    let h = e.header();
    let mut meta = Meta {
        mode: h.mode().context("mode")? & 0o7777,
        uid: u32::try_from(h.uid().context("uid")?).context("uid out of range")?,
        gid: u32::try_from(h.gid().context("gid")?).context("gid out of range")?,
        mtime: TimeSpec::new(h.mtime().unwrap_or(0).min(i64::MAX as u64) as i64, 0),
        xattrs: Vec::new(),
    };
    if let Some(pax) = e.pax_extensions().context("PAX records")? {
        for ext in pax {
            let ext = ext.context("PAX record")?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            match key {
                b"uid" => meta.uid = parse_num(value).context("PAX uid")?,
                b"gid" => meta.gid = parse_num(value).context("PAX gid")?,
                b"mtime" => meta.mtime = parse_time(value).context("PAX mtime")?,
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        meta.xattrs.push((name.to_vec(), value.to_vec()));
                    }
                }
            }
        }
    }
    Ok(meta)
}

fn parse_num(v: &[u8]) -> Result<u32> {
    Ok(std::str::from_utf8(v)?.trim().parse()?)
}

fn parse_time(v: &[u8]) -> Result<TimeSpec> {
    let s = std::str::from_utf8(v)?.trim();
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse()?;
    let mut nanos: i64 = 0;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        nanos = format!("{digits:0<9}").parse()?;
    }
    Ok(TimeSpec::new(secs, nanos))
}

/// Sets the xattrs of a layer entry. `trusted.overlay.*` (and
/// `user.overlay.*`) from the layer are dropped: they would let a layer
/// forge overlayfs redirects, metacopy or opaque markers and reach into
/// other layers. Other failures are ignored except for file capabilities.
fn set_xattrs(fd: RawFd, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
    for (name, value) in xattrs {
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            continue;
        }
        let r = set_xattr(fd, name, value);
        if name.as_slice() == b"security.capability" {
            r.context("set file capabilities")?;
        }
    }
    Ok(())
}

fn set_xattr(fd: RawFd, name: &[u8], value: &[u8]) -> Result<()> {
    let c = cstr(OsStr::from_bytes(name))?;
    // SAFETY: valid fd, NUL-terminated name, value pointer and length match.
    let r = unsafe { libc::fsetxattr(fd, c.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setxattr {}", String::from_utf8_lossy(name)));
    }
    Ok(())
}

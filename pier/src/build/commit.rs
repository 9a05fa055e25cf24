//! A build step's changes become a layer: the overlay's upper directory is
//! written as an OCI layer tar (gzip) in one pass, hashing the plain tar for
//! the diff-id, and then the directory itself is moved into the store as
//! the unpacked layer (it already is one: overlayfs records a deletion as a
//! 0:0 character device and an opaque directory as
//! `trusted.overlay.opaque=y`, exactly the form `unpack` produces), so the
//! next step mounts it without extracting anything.
//!
//! In the tar, those become OCI whiteouts: `.wh.NAME` files and
//! `DIR/.wh..wh..opq`. Other `trusted.overlay.*` xattrs (origin, impure)
//! describe this one mount only: they are left out of the tar and removed
//! from the directory. Redirects and metacopy would mean the upper directory
//! is not a complete layer; the build mounts refuse them, and a step whose
//! upper directory has one fails.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::digest::{Digest, Hasher};
use crate::store::Store;

/// A layer made from a build step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLayer {
    /// sha256 of the plain tar.
    pub diff_id: Digest,
    /// The gzip blob's digest.
    pub blob: Digest,
    /// The blob's size.
    pub size: u64,
}

/// Hashes what is written through it.
struct Tee<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// True if `dir` has no entries.
pub fn is_empty_dir(dir: &Path) -> Result<bool> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .next()
        .is_none())
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in paths")
}

/// The xattrs of `p` (not following symlinks).
fn xattrs(p: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c = cpath(p);
    let mut names = vec![0u8; 4096];
    // SAFETY: buffer and length match; c is a valid C string.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOTSUP) {
            return Ok(Vec::new());
        }
        return Err(e).with_context(|| format!("list xattrs of {}", p.display()));
    }
    let mut out = Vec::new();
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
    {
        let cn = CString::new(name).expect("no NUL");
        let mut val = vec![0u8; 65536];
        // SAFETY: as above.
        let m =
            unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        if m < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("read xattr of {}", p.display()));
        }
        val.truncate(m as usize);
        out.push((name.to_vec(), val));
    }
    Ok(out)
}

fn remove_xattr(p: &Path, name: &[u8]) -> Result<()> {
    let c = cpath(p);
    let cn = CString::new(name).expect("no NUL");
    // SAFETY: valid C strings.
    if unsafe { libc::lremovexattr(c.as_ptr(), cn.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("remove xattr of {}", p.display()));
    }
    Ok(())
}

struct Walker<W: Write> {
    tar: tar::Builder<W>,
    upper: PathBuf,
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> Walker<W> {
    fn header(meta: &std::fs::Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid() as u64);
        h.set_gid(meta.gid() as u64);
        h.set_mtime(meta.mtime().max(0) as u64);
        h.set_size(0);
        h
    }

    /// Writes the PAX xattr records of `p` (cleaning overlay-private ones);
    /// returns true if the directory is opaque.
    fn xattrs(&mut self, p: &Path, rel: &Path) -> Result<bool> {
        let mut opaque = false;
        let mut keep = Vec::new();
        for (name, value) in xattrs(p)? {
            if let Some(ov) = name.strip_prefix(b"trusted.overlay.") {
                match ov {
                    b"opaque" => opaque = value == b"y",
                    b"redirect" | b"metacopy" => bail!(
                        "{} has an overlayfs {} xattr: the layer would be incomplete",
                        rel.display(),
                        String::from_utf8_lossy(ov)
                    ),
                    _ => remove_xattr(p, &name)?,
                }
                continue;
            }
            keep.push((
                format!("SCHILY.xattr.{}", String::from_utf8_lossy(&name)),
                value,
            ));
        }
        if !keep.is_empty() {
            self.tar
                .append_pax_extensions(keep.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .context("write xattr records")?;
        }
        Ok(opaque)
    }

    fn walk(&mut self, rel: &Path) -> Result<()> {
        let dir = self.upper.join(rel);
        let mut names: Vec<OsString> = std::fs::read_dir(&dir)
            .with_context(|| format!("read {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("read {}", dir.display()))?;
        names.sort();
        for name in names {
            let r = rel.join(&name);
            let p = self.upper.join(&r);
            let meta =
                std::fs::symlink_metadata(&p).with_context(|| format!("stat {}", p.display()))?;
            let ft = meta.file_type();
            if ft.is_char_device() && meta.rdev() == 0 {
                // overlayfs whiteout → OCI whiteout file.
                let mut wh = OsString::from(".wh.");
                wh.push(&name);
                let mut h = Self::header(&meta, tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                self.tar
                    .append_data(&mut h, rel.join(wh), std::io::empty())
                    .context("write whiteout")?;
                continue;
            }
            if ft.is_socket() {
                continue; // tar cannot hold sockets (Docker skips them too)
            }
            let opaque = self.xattrs(&p, &r)?;
            if ft.is_dir() {
                let mut h = Self::header(&meta, tar::EntryType::Directory);
                self.tar
                    .append_data(&mut h, &r, std::io::empty())
                    .with_context(|| format!("write {}", r.display()))?;
                if opaque {
                    let mut h = Self::header(&meta, tar::EntryType::Regular);
                    h.set_mode(0o644);
                    self.tar
                        .append_data(&mut h, r.join(".wh..wh..opq"), std::io::empty())
                        .context("write opaque marker")?;
                }
                self.walk(&r)?;
            } else if ft.is_symlink() {
                let target =
                    std::fs::read_link(&p).with_context(|| format!("readlink {}", p.display()))?;
                let mut h = Self::header(&meta, tar::EntryType::Symlink);
                self.tar
                    .append_link(&mut h, &r, target)
                    .with_context(|| format!("write {}", r.display()))?;
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    if let Some(first) = self.links.get(&key) {
                        let mut h = Self::header(&meta, tar::EntryType::Link);
                        self.tar
                            .append_link(&mut h, &r, first)
                            .with_context(|| format!("write {}", r.display()))?;
                        continue;
                    }
                    self.links.insert(key, r.clone());
                }
                let f = File::open(&p).with_context(|| format!("open {}", p.display()))?;
                let mut h = Self::header(&meta, tar::EntryType::Regular);
                h.set_size(meta.len());
                self.tar
                    .append_data(&mut h, &r, f)
                    .with_context(|| format!("write {}", r.display()))?;
            } else {
                let kind = if ft.is_fifo() {
                    tar::EntryType::Fifo
                } else if ft.is_char_device() {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                let mut h = Self::header(&meta, kind);
                if !ft.is_fifo() {
                    let rdev = meta.rdev();
                    h.set_device_major(libc::major(rdev)).ok();
                    h.set_device_minor(libc::minor(rdev)).ok();
                }
                self.tar
                    .append_data(&mut h, &r, std::io::empty())
                    .with_context(|| format!("write {}", r.display()))?;
            }
        }
        Ok(())
    }
}

/// Writes the layer tar of the (unmounted) upper directory `upper` into
/// the store as a gzip blob. The directory is cleaned of overlay-private
/// xattrs on the way.
pub fn write_layer(store: &Store, upper: &Path) -> Result<NewLayer> {
    let blob = store.blob_writer(None)?;
    let gz = flate2::write::GzEncoder::new(
        BufWriter::with_capacity(1 << 20, blob),
        flate2::Compression::fast(),
    );
    let tee = Tee {
        inner: gz,
        hasher: Hasher::new(),
    };
    let mut w = Walker {
        tar: tar::Builder::new(BufWriter::with_capacity(1 << 20, tee)),
        upper: upper.to_path_buf(),
        links: HashMap::new(),
    };
    w.walk(Path::new(""))?;
    let tee = w
        .tar
        .into_inner()
        .context("finish layer tar")?
        .into_inner()
        .map_err(|e| e.into_error())
        .context("flush layer tar")?;
    let diff_id = tee.hasher.finish();
    let blob = tee
        .inner
        .finish()
        .context("compress layer")?
        .into_inner()
        .map_err(|e| e.into_error())
        .context("flush layer blob")?;
    let size = blob.written();
    let digest = blob.commit()?;
    Ok(NewLayer {
        diff_id,
        blob: digest,
        size,
    })
}

/// Moves the upper directory `upper` into the store as the unpacked layer
/// `diff_id` (no extraction needed), unless that layer is already there.
pub fn adopt_upper(store: &Store, upper: &Path, diff_id: &Digest) -> Result<()> {
    if store.has_layer(diff_id) {
        return std::fs::remove_dir_all(upper)
            .with_context(|| format!("remove {}", upper.display()));
    }
    let tmp = store.tmp_path("layer");
    std::fs::create_dir(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    let fs = tmp.join("fs");
    std::fs::rename(upper, &fs)
        .with_context(|| format!("move {} to {}", upper.display(), fs.display()))?;
    let dir = File::open(&tmp).with_context(|| format!("open {}", tmp.display()))?;
    // SAFETY: valid fd. The files must be on disk before the layer appears.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        let e = std::io::Error::last_os_error();
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e).context("syncfs");
    }
    let dst = store.layer_dir(diff_id);
    if let Err(e) = std::fs::rename(&tmp, &dst) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dst.is_dir() {
            return Err(e)
                .with_context(|| format!("rename {} to {}", tmp.display(), dst.display()));
        }
    }
    Ok(())
}

/// Removes from `upper` the mount points the runtime had to create because
/// the image lacked them (`paths`, relative; only if still empty), so a
/// step's layer holds only what the step made.
pub fn drop_created_mountpoints(upper: &Path, paths: &[PathBuf]) {
    for rel in paths {
        let p = upper.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            let _ = std::fs::remove_dir(&p);
        } else if meta.is_file() && meta.len() == 0 {
            let _ = std::fs::remove_file(&p);
        }
        // Parents created for it (e.g. /etc for /etc/hosts) when empty.
        let mut parent = rel.parent();
        while let Some(par) = parent.filter(|x| !x.as_os_str().is_empty()) {
            if std::fs::remove_dir(upper.join(par)).is_err() {
                break;
            }
            parent = par.parent();
        }
    }
}

/// The name of the whiteout for `name` (for tests).
pub fn whiteout_name(name: &OsStr) -> OsString {
    let mut s = OsString::from(".wh.");
    s.push(name);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn upper_dir_becomes_oci_layer_with_whiteouts() {
        let root = std::env::temp_dir().join(format!("pier-commit-{}", std::process::id()));
        let store = Store::open(&root.join("store")).unwrap();
        let upper = store.tmp_path("upper");
        std::fs::create_dir_all(upper.join("etc/opq")).unwrap();
        std::fs::write(upper.join("etc/new"), b"data").unwrap();
        std::fs::hard_link(upper.join("etc/new"), upper.join("etc/new2")).unwrap();
        std::os::unix::fs::symlink("new", upper.join("etc/link")).unwrap();
        nix::sys::stat::mknod(
            &upper.join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        let c = cpath(&upper.join("etc/opq"));
        // SAFETY: valid C strings and buffer.
        let r = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(r, 0);
        let l = write_layer(&store, &upper).unwrap();
        let blob = std::fs::read(store.blob_path(&l.blob)).unwrap();
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(Digest::of(&plain), l.diff_id);
        let mut ar = tar::Archive::new(&plain[..]);
        let entries: Vec<(String, tar::EntryType)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type(),
                )
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc",
                "etc/.wh.gone",
                "etc/link",
                "etc/new",
                "etc/new2",
                "etc/opq",
                "etc/opq/.wh..wh..opq"
            ]
        );
        assert_eq!(entries[4].1, tar::EntryType::Link);
        adopt_upper(&store, &upper, &l.diff_id).unwrap();
        assert!(store.layer_path(&l.diff_id).join("etc/new").is_file());
        assert!(!upper.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}

//! The content store under `--root` (default `/var/lib/pier`):
//!
//! ```text
//! lock                   flock: shared by every writer, exclusive for prune
//! names.json, names.lock image names → manifest digests (see `names`)
//! blobs/sha256/<hex>     content-addressed blobs: manifests, configs, layers
//! layers/sha256/<hex>/   one unpacked layer per diff-id, shared by images:
//!                        fs/ (the files) and implicit (see `unpack`)
//! mounts/<id>.json       leases: layers in use by a mounted rootfs
//! build-cache/<key>.json results of build steps (see `build::cache`)
//! tmp/                   temporary files and directories, same filesystem;
//!                        also the mounted roots of build steps
//! ```
//!
//! Everything appears under its final name by an atomic `rename(2)` of a
//! complete, synced file or directory from `tmp/`, so a crash leaves at most
//! garbage in `tmp/`, unreferenced blobs and layers, and stale leases (all
//! removed by `prune`), never a half-written blob or layer. `check`
//! verifies that.

mod blobs;
mod check;
mod gc;
mod lock;
mod names;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};

pub use blobs::{BlobWriter, Expected};
pub use check::{CheckReport, Garbage};
pub use gc::GcStats;
pub use lock::Lock;
pub use names::{NameEntry, Names};

use crate::digest::Digest;

/// Default store root.
pub const DEFAULT_ROOT: &str = "/var/lib/pier";

/// Largest manifest, index or config read into memory (Docker's limit for
/// manifests is 4 MiB; configs of real images are far smaller).
pub const MAX_JSON_BLOB: u64 = 8 << 20;

/// An open store. Holds the store lock (shared, or exclusive for garbage
/// collection) for as long as it lives.
pub struct Store {
    root: PathBuf,
    _lock: Lock,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, holding the store lock
    /// shared.
    pub fn open(root: &Path) -> Result<Store> {
        Store::open_with(root, false)
    }

    /// Opens the store holding the lock exclusive (waits for every other
    /// `pier` process using it): for garbage collection.
    pub fn open_exclusive(root: &Path) -> Result<Store> {
        Store::open_with(root, true)
    }

    fn open_with(root: &Path, exclusive: bool) -> Result<Store> {
        for d in ["blobs/sha256", "layers/sha256", "mounts", "tmp"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).with_context(|| format!("create {}", p.display()))?;
        }
        let lock_path = root.join("lock");
        let lock = if exclusive {
            Lock::exclusive(&lock_path)?
        } else {
            Lock::shared(&lock_path)?
        };
        let root = std::fs::canonicalize(root)
            .with_context(|| format!("resolve store root {}", root.display()))?;
        Ok(Store { root, _lock: lock })
    }

    /// The store root (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `d` lives (whether or not it is there).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// True if the blob is in the store.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Reads a small blob (manifest, index, config) into memory, refusing
    /// blobs over [`MAX_JSON_BLOB`].
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        let meta =
            std::fs::metadata(&p).with_context(|| format!("blob {d} is not in the store"))?;
        if meta.len() > MAX_JSON_BLOB {
            bail!(
                "blob {d} is {} bytes, too large for a manifest or config",
                meta.len()
            );
        }
        std::fs::read(&p).with_context(|| format!("read {}", p.display()))
    }

    /// A writer for a new blob; with `expected`, its size and digest are
    /// checked on commit (and the size while writing).
    pub fn blob_writer(&self, expected: Option<Expected>) -> Result<BlobWriter> {
        BlobWriter::new(
            self.tmp_path("blob"),
            self.root.join("blobs/sha256"),
            expected,
        )
    }

    /// Stores `data` as a blob and returns its digest.
    pub fn put_blob(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(data);
        if self.has_blob(&d) {
            return Ok(d);
        }
        let mut w = self.blob_writer(None)?;
        w.write_all(data).context("write blob")?;
        w.commit()
    }

    /// The directory of the unpacked layer with diff-id `d`: `fs/` (the
    /// layer's files, an overlayfs lower directory) and `implicit` (see
    /// [`crate::unpack`]).
    pub fn layer_dir(&self, d: &Digest) -> PathBuf {
        self.root.join("layers/sha256").join(d.hex())
    }

    /// The files of the unpacked layer with diff-id `d`.
    pub fn layer_path(&self, d: &Digest) -> PathBuf {
        self.layer_dir(d).join("fs")
    }

    /// True if the layer with diff-id `d` is unpacked.
    pub fn has_layer(&self, d: &Digest) -> bool {
        self.layer_dir(d).is_dir()
    }

    /// A fresh path under `tmp/` (nothing is created there).
    pub fn tmp_path(&self, what: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        self.root.join("tmp").join(format!(
            "{what}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// The name index as it is now.
    pub fn names(&self) -> Result<Names> {
        Names::load(&self.root.join("names.json"))
    }

    /// Changes the name index under its exclusive lock; `f`'s error leaves
    /// the index unchanged.
    pub fn update_names<T>(&self, f: impl FnOnce(&mut Names) -> Result<T>) -> Result<T> {
        let _l = Lock::exclusive(&self.root.join("names.lock"))?;
        let path = self.root.join("names.json");
        let mut names = Names::load(&path)?;
        let r = f(&mut names)?;
        names.save(&path, &self.tmp_path("names"))?;
        Ok(r)
    }

    /// The directory of rootfs leases.
    pub(crate) fn mounts_dir(&self) -> PathBuf {
        self.root.join("mounts")
    }
}

/// Writes `data` to a new file at `path` and fsyncs it; on failure (a full
/// disk) the partial file is removed.
pub(crate) fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    let r = f
        .write_all(data)
        .with_context(|| format!("write {}", path.display()))
        .and_then(|()| {
            f.sync_all()
                .with_context(|| format!("fsync {}", path.display()))
        });
    if r.is_err() {
        let _ = std::fs::remove_file(path);
    }
    r
}

/// A fresh store in a unique directory under the temp dir, for unit tests
/// (`tag` names the test module; the caller removes the directory).
#[cfg(test)]
pub(crate) fn test_store(tag: &str) -> (PathBuf, Store) {
    let dir = std::env::temp_dir().join(format!(
        "pier-{tag}-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let s = Store::open(&dir).unwrap();
    (dir, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_store() -> (PathBuf, Store) {
        test_store("store")
    }

    #[test]
    fn blob_commit_verifies_and_renames() {
        let (dir, s) = tmp_store();
        let d = s.put_blob(b"hello").unwrap();
        assert!(s.has_blob(&d));
        assert_eq!(s.read_blob(&d).unwrap(), b"hello");

        // Wrong digest: nothing under either digest, no temp file left.
        let other = Digest::of(b"other");
        let mut w = s
            .blob_writer(Some(Expected {
                digest: other.clone(),
                size: 5,
            }))
            .unwrap();
        w.write_all(b"world").unwrap();
        let err = w.commit().unwrap_err().to_string();
        assert!(err.contains(other.as_str()), "{err}");
        assert!(!s.has_blob(&other));
        assert!(!s.has_blob(&Digest::of(b"world")));
        assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0);

        // Too much data is refused while writing.
        let d = Digest::of(b"abc");
        let mut w = s
            .blob_writer(Some(Expected {
                digest: d.clone(),
                size: 3,
            }))
            .unwrap();
        assert!(w.write_all(b"abcd").is_err());
        drop(w);
        assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn names_update_is_atomic() {
        let (dir, s) = tmp_store();
        let d = Digest::of(b"m");
        s.update_names(|n| {
            n.images.insert(
                "a".into(),
                NameEntry {
                    manifest: d.clone(),
                    index: None,
                    source: None,
                },
            );
            Ok(())
        })
        .unwrap();
        let r: Result<()> = s.update_names(|n| {
            n.images.clear();
            bail!("no")
        });
        assert!(r.is_err());
        assert_eq!(s.names().unwrap().images["a"].manifest, d);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

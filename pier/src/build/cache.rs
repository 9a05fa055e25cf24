//! The build cache, keyed like Docker's: each step's key is the sha256 of
//! the previous step's key (for the first, the base image's config digest)
//! and the step itself — the instruction with its variables expanded, the
//! build arguments a `RUN` sees, and for `COPY`/`ADD` the content hash of
//! the copied files (or the identity of the `--from` stage or image).
//! Editing a step, or a file it copies, changes its key and every later
//! key, so the build reruns from there on.
//!
//! An entry (`ROOT/build-cache/<key>.json`) holds the step's result: its
//! layer (blob and diff-id) if it made one, and the time the step ran, so a
//! fully cached rebuild reproduces the same config and image ID. An entry
//! whose blob was pruned is a miss.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::store::Store;

/// A cached step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// When the step first ran (RFC 3339), for the history.
    pub created: String,
    /// The layer it made, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<CachedLayer>,
}

/// A layer of a cached step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CachedLayer {
    /// sha256 of the plain tar.
    pub diff_id: Digest,
    /// The blob.
    pub blob: Digest,
    /// Its size.
    pub size: u64,
}

/// The next key in the chain.
pub fn next_key(prev: &Digest, step: &str) -> Digest {
    let mut h = Hasher::new();
    h.update(prev.as_str().as_bytes());
    h.update(b"\n");
    h.update(step.as_bytes());
    h.finish()
}

fn path(store: &Store, key: &Digest) -> PathBuf {
    store
        .root()
        .join("build-cache")
        .join(format!("{}.json", key.hex()))
}

/// The entry for `key`, if there is one whose layer is still in the store.
pub fn get(store: &Store, key: &Digest) -> Option<Entry> {
    let data = std::fs::read(path(store, key)).ok()?;
    let e: Entry = serde_json::from_slice(&data).ok()?;
    if let Some(l) = &e.layer {
        if !store.has_blob(&l.blob) {
            return None;
        }
    }
    Some(e)
}

/// Records `entry` for `key` (atomically).
pub fn put(store: &Store, key: &Digest, entry: &Entry) -> Result<()> {
    let p = path(store, key);
    let dir = p.parent().expect("has parent");
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let tmp = store.tmp_path("cache");
    std::fs::write(&tmp, serde_json::to_vec(entry)?)
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &p).with_context(|| format!("rename to {}", p.display()))
}

/// Removes the entries whose layer blob is gone (they are misses for
/// ever) and entries that cannot be read; returns how many. For garbage
/// collection, after unreferenced blobs were removed.
pub fn drop_stale(store: &Store) -> Result<usize> {
    let dir = store.root().join("build-cache");
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
    };
    let mut n = 0;
    for e in rd {
        let p = e?.path();
        let entry = std::fs::read(&p)
            .ok()
            .and_then(|d| serde_json::from_slice::<Entry>(&d).ok());
        let stale = match entry {
            Some(Entry { layer: Some(l), .. }) => !store.has_blob(&l.blob),
            Some(_) => false,
            None => true,
        };
        if stale {
            std::fs::remove_file(&p).with_context(|| format!("remove {}", p.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_and_entries() {
        let root = std::env::temp_dir().join(format!("pier-cache-{}", std::process::id()));
        let s = Store::open(&root).unwrap();
        let k0 = Digest::of(b"base");
        let k1 = next_key(&k0, "RUN a");
        assert_ne!(k1, next_key(&k0, "RUN b"));
        assert_eq!(k1, next_key(&k0, "RUN a"));
        assert!(get(&s, &k1).is_none());
        let e = Entry {
            created: "2026-01-01T00:00:00Z".into(),
            layer: None,
        };
        put(&s, &k1, &e).unwrap();
        assert_eq!(get(&s, &k1), Some(e));
        let blob = s.put_blob(b"layer").unwrap();
        let e2 = Entry {
            created: "x".into(),
            layer: Some(CachedLayer {
                diff_id: Digest::of(b"d"),
                blob: blob.clone(),
                size: 5,
            }),
        };
        put(&s, &k0, &e2).unwrap();
        assert!(get(&s, &k0).is_some());
        std::fs::remove_file(s.blob_path(&blob)).unwrap();
        assert!(get(&s, &k0).is_none(), "pruned blob: miss");
        // The stale entry goes, the one without a layer stays.
        assert_eq!(drop_stale(&s).unwrap(), 1);
        assert!(!path(&s, &k0).exists() && path(&s, &k1).exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}

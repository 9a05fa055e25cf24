//! The name index: `names.json`, image names → manifest digests.
//!
//! Read without a lock (it is only ever replaced whole by an atomic rename);
//! changed under an exclusive `names.lock` with a read-modify-write.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// What one name points at.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NameEntry {
    /// The image manifest (for one platform).
    pub manifest: Digest,
    /// The index (manifest list) the manifest was picked from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
    /// `registry/repository` the image came from (for cross-repository
    /// blob mounts on push).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The whole index.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Names {
    /// Canonical names (`registry/repo:tag` or `registry/repo@digest`).
    pub images: BTreeMap<String, NameEntry>,
}

impl Names {
    /// Reads `path`; a missing file is an empty index.
    pub fn load(path: &Path) -> Result<Names> {
        match std::fs::read(path) {
            Ok(b) => {
                serde_json::from_slice(&b).with_context(|| format!("parse {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Names::default()),
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }

    /// Writes `path` atomically: to `tmp` (in the store's `tmp/`, so that
    /// `pier prune` removes what a crash leaves), fsync, rename. A failed
    /// write (a full disk) removes `tmp` and leaves `path` as it was.
    pub fn save(&self, path: &Path, tmp: &Path) -> Result<()> {
        let data = serde_json::to_vec_pretty(self)?;
        let r = super::write_synced(tmp, &data).and_then(|()| {
            crate::failpoint::hit("names-before-rename");
            std::fs::rename(tmp, path)
                .with_context(|| format!("rename {} to {}", tmp.display(), path.display()))
        });
        if r.is_err() {
            let _ = std::fs::remove_file(tmp);
        }
        r
    }
}

//! Garbage collection (`pier prune`): removes blobs and unpacked layers that
//! no name reaches and no mounted rootfs uses, and everything left in
//! `tmp/` by interrupted or crashed processes. Runs with the store lock
//! held exclusive, so no other `pier` is half-way through adding content.

use std::collections::HashSet;

use anyhow::{Context, Result};

use super::Store;
use crate::digest::Digest;
use crate::image::Image;

/// What a collection removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcStats {
    /// Blobs removed.
    pub blobs: usize,
    /// Unpacked layers removed.
    pub layers: usize,
    /// Bytes of blobs removed.
    pub bytes: u64,
}

impl Store {
    /// Removes unreferenced blobs, layers and temporary files. Needs a store
    /// opened with [`Store::open_exclusive`].
    pub fn gc(&self) -> Result<GcStats> {
        let mut keep_blobs: HashSet<Digest> = HashSet::new();
        let mut keep_layers: HashSet<Digest> =
            crate::rootfs::leased_layers(self)?.into_iter().collect();
        for (name, e) in self.names()?.images {
            keep_blobs.insert(e.manifest.clone());
            if let Some(i) = e.index {
                keep_blobs.insert(i);
            }
            let img = Image::load(self, &e.manifest).with_context(|| format!("image {name}"))?;
            keep_blobs.insert(img.config_digest.clone());
            for l in img.layers()? {
                keep_blobs.insert(l.digest);
                keep_layers.insert(l.diff_id);
            }
        }
        let mut stats = GcStats::default();
        let blobs = self.root.join("blobs/sha256");
        for e in std::fs::read_dir(&blobs).with_context(|| format!("read {}", blobs.display()))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let keep =
                Digest::parse(&format!("sha256:{name}")).is_ok_and(|d| keep_blobs.contains(&d));
            if !keep {
                stats.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(e.path())
                    .with_context(|| format!("remove {}", e.path().display()))?;
                stats.blobs += 1;
            }
        }
        let layers = self.root.join("layers/sha256");
        for e in std::fs::read_dir(&layers).with_context(|| format!("read {}", layers.display()))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let keep =
                Digest::parse(&format!("sha256:{name}")).is_ok_and(|d| keep_layers.contains(&d));
            if !keep {
                std::fs::remove_dir_all(e.path())
                    .with_context(|| format!("remove {}", e.path().display()))?;
                stats.layers += 1;
            }
        }
        let tmp = self.root.join("tmp");
        for e in std::fs::read_dir(&tmp).with_context(|| format!("read {}", tmp.display()))? {
            let p = e?.path();
            let r = if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            r.with_context(|| format!("remove {}", p.display()))?;
        }
        Ok(stats)
    }
}

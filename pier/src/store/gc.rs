//! Garbage collection (`pier prune`): removes blobs and unpacked layers that
//! no name reaches and no mounted rootfs uses, and everything left in
//! `tmp/` by interrupted or crashed processes: build steps of dead builds
//! (their containers, overlay mounts and leases, see
//! [`crate::build::leftovers`]), partial blobs and layers, stale leases, and
//! build cache entries whose layer is gone. Runs with the store lock held
//! exclusive, so no other `pier` is half-way through adding content, and
//! everything in `tmp/` belongs to a process that is gone.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::mount::{umount2, MntFlags};

use super::Store;
use crate::digest::Digest;
use crate::image::Image;
use crate::rootfs::{has_mounts_under, leases, mounts_under};

/// What a collection removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcStats {
    /// Blobs removed.
    pub blobs: usize,
    /// Unpacked layers removed.
    pub layers: usize,
    /// Bytes of blobs removed.
    pub bytes: u64,
    /// Entries of `tmp/` removed (leftovers of interrupted commands).
    pub tmp: usize,
    /// Leases of rootfs directories that are gone (or torn) removed.
    pub leases: usize,
    /// Build cache entries whose layer blob is gone removed.
    pub cache: usize,
}

impl Store {
    /// Removes unreferenced blobs, layers and temporary files. Needs a store
    /// opened with [`Store::open_exclusive`].
    pub fn gc(&self) -> Result<GcStats> {
        let mut stats = GcStats::default();
        let tmp = self.root.join("tmp");
        // Steps of dead builds first: their containers still use the mounts.
        let reaped = crate::build::leftovers::reap_dead_steps(self)?;
        stats.tmp += reaped.removed;
        // Whatever else is mounted in tmp/ was left by a dead process.
        for m in mounts_under(&tmp)? {
            if reaped.failed.iter().any(|f| m.starts_with(f)) {
                continue;
            }
            umount2(&m, MntFlags::empty())
                .or_else(|_| umount2(&m, MntFlags::MNT_DETACH))
                .with_context(|| format!("unmount {}", m.display()))?;
        }
        for (p, lease) in leases(self)? {
            let stale = match &lease {
                Some(l) => {
                    (l.dir.starts_with(&tmp) && !reaped.failed.iter().any(|f| l.dir.starts_with(f)))
                        || !l.dir.exists()
                }
                None => true,
            };
            if stale {
                std::fs::remove_file(&p).with_context(|| format!("remove {}", p.display()))?;
                stats.leases += 1;
            }
        }
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
        for e in std::fs::read_dir(&tmp).with_context(|| format!("read {}", tmp.display()))? {
            let p = e?.path();
            if reaped.failed.contains(&p) {
                continue;
            }
            remove_leftover(&p)?;
            stats.tmp += 1;
        }
        stats.cache = crate::build::cache::drop_stale(self)?;
        Ok(stats)
    }
}

/// Removes a file or directory of `tmp/`, never crossing into a mount (that
/// would delete the files of whatever is mounted there).
fn remove_leftover(p: &Path) -> Result<()> {
    let r = if p.is_dir() && !p.is_symlink() {
        if has_mounts_under(p)? {
            bail!("{} is still mounted", p.display());
        }
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    };
    r.with_context(|| format!("remove {}", p.display()))
}

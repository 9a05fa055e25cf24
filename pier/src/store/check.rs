//! Verification of the store (`pier check`), like a file system's fsck: every
//! blob's content hashes to its name, every named image is complete
//! (manifest, index, config and layer blobs present and readable), every
//! unpacked layer and lease is well-formed. It changes nothing, and tells
//! apart problems (a store that lies: corrupted or missing content) from
//! garbage (what interrupted commands leave and `pier prune` removes).

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;

use anyhow::{Context, Result};
use serde::Serialize;

use super::Store;
use crate::digest::{Digest, Hasher};
use crate::image::Image;
use crate::rootfs::leases;

/// What `pier prune` would remove.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Garbage {
    /// Entries of `tmp/`.
    pub tmp: usize,
    /// Blobs no name reaches.
    pub blobs: usize,
    /// Unpacked layers no name or lease uses.
    pub layers: usize,
    /// Leases whose directory is gone, or torn.
    pub leases: usize,
    /// Build cache entries that cannot be read.
    pub cache: usize,
}

/// The result of [`Store::check`].
#[derive(Debug, Default, Clone, Serialize)]
pub struct CheckReport {
    /// Named images.
    pub images: usize,
    /// Blobs (all verified).
    pub blobs: usize,
    /// Unpacked layers.
    pub layers: usize,
    /// What is wrong, one line each; empty for a sound store.
    pub problems: Vec<String>,
    /// What `pier prune` would remove (not a problem).
    pub garbage: Garbage,
}

/// sha256 of a file's content.
fn digest_of_file(f: &mut File) -> std::io::Result<Digest> {
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(h.finish()),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl Store {
    /// Verifies the store (reads every blob).
    pub fn check(&self) -> Result<CheckReport> {
        let mut r = CheckReport::default();
        let blobs_dir = self.root.join("blobs/sha256");
        let mut blobs: HashSet<Digest> = HashSet::new();
        for e in std::fs::read_dir(&blobs_dir)
            .with_context(|| format!("read {}", blobs_dir.display()))?
        {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(d) = Digest::parse(&format!("sha256:{name}")) else {
                r.problems
                    .push(format!("blobs/sha256/{name}: not a digest"));
                continue;
            };
            if !e.file_type()?.is_file() {
                r.problems.push(format!("blob {d}: not a regular file"));
                continue;
            }
            let got = File::open(e.path()).and_then(|mut f| digest_of_file(&mut f));
            match got {
                Ok(got) if got == d => {
                    blobs.insert(d);
                }
                Ok(got) => r
                    .problems
                    .push(format!("blob {d}: content has digest {got}")),
                Err(err) => r.problems.push(format!("blob {d}: {err}")),
            }
        }
        r.blobs = blobs.len();

        let layers_dir = self.root.join("layers/sha256");
        let mut layers: HashSet<Digest> = HashSet::new();
        for e in std::fs::read_dir(&layers_dir)
            .with_context(|| format!("read {}", layers_dir.display()))?
        {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(d) = Digest::parse(&format!("sha256:{name}")) else {
                r.problems
                    .push(format!("layers/sha256/{name}: not a digest"));
                continue;
            };
            if !e.path().join("fs").is_dir() || e.path().join("fs").is_symlink() {
                r.problems
                    .push(format!("layer {d}: no fs/ directory (half-made)"));
                continue;
            }
            layers.insert(d);
        }
        r.layers = layers.len();

        let mut used_blobs: HashSet<Digest> = HashSet::new();
        let mut used_layers: HashSet<Digest> = HashSet::new();
        match self.names() {
            Err(e) => r.problems.push(format!("{e:#}")),
            Ok(names) => {
                r.images = names.images.len();
                for (name, e) in names.images {
                    used_blobs.insert(e.manifest.clone());
                    if let Some(i) = &e.index {
                        used_blobs.insert(i.clone());
                        if !blobs.contains(i) {
                            r.problems
                                .push(format!("image {name}: index blob {i} is missing"));
                        }
                    }
                    let img = match Image::load(self, &e.manifest) {
                        Ok(img) => img,
                        Err(err) => {
                            r.problems.push(format!("image {name}: {err:#}"));
                            continue;
                        }
                    };
                    used_blobs.insert(img.config_digest.clone());
                    for l in img.layers()? {
                        if !blobs.contains(&l.digest) {
                            r.problems
                                .push(format!("image {name}: layer blob {} is missing", l.digest));
                        }
                        used_blobs.insert(l.digest);
                        used_layers.insert(l.diff_id);
                    }
                }
            }
        }

        let tmp = self.root.join("tmp");
        for (p, lease) in leases(self)? {
            match lease {
                Some(l) if l.dir.exists() && !l.dir.starts_with(&tmp) => {
                    for d in l.layers {
                        if !layers.contains(&d) {
                            r.problems.push(format!(
                                "lease {}: layer {d} of the rootfs at {} is missing",
                                p.display(),
                                l.dir.display()
                            ));
                        }
                        used_layers.insert(d);
                    }
                }
                // Gone, or of a step in tmp/ (whose owner may still run:
                // its layers count as used until prune knows better).
                Some(l) => {
                    if l.dir.exists() {
                        used_layers.extend(l.layers);
                    }
                    r.garbage.leases += 1;
                }
                None => r.garbage.leases += 1,
            }
        }
        r.garbage.blobs = blobs.difference(&used_blobs).count();
        r.garbage.layers = layers.difference(&used_layers).count();
        r.garbage.tmp = std::fs::read_dir(&tmp)
            .with_context(|| format!("read {}", tmp.display()))?
            .count();
        let cache = self.root.join("build-cache");
        if let Ok(rd) = std::fs::read_dir(&cache) {
            for e in rd.flatten() {
                let ok = std::fs::read(e.path()).ok().is_some_and(|d| {
                    serde_json::from_slice::<crate::build::cache::Entry>(&d).is_ok()
                });
                if !ok {
                    r.garbage.cache += 1;
                }
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn finds_corrupt_blobs_incomplete_images_and_garbage() {
        let (dir, s) = crate::store::test_store("check");
        let r = s.check().unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.garbage, Garbage::default());

        let good = s.put_blob(b"good").unwrap();
        let bad = s.put_blob(b"bad").unwrap();
        std::fs::write(s.blob_path(&bad), b"flipped").unwrap();
        std::fs::write(dir.join("tmp/blob-crashed"), b"part").unwrap();
        std::fs::create_dir_all(dir.join("layers/sha256").join(Digest::of(b"x").hex())).unwrap();
        let mut w = s.blob_writer(None).unwrap();
        w.write_all(b"in flight").unwrap();
        // An image whose manifest is missing.
        let missing = Digest::of(b"no such manifest");
        s.update_names(|n| {
            n.images.insert(
                "h/r:1".into(),
                super::super::NameEntry {
                    manifest: missing.clone(),
                    index: None,
                    source: None,
                },
            );
            Ok(())
        })
        .unwrap();
        let r = s.check().unwrap();
        drop(w);
        let text = r.problems.join("\n");
        assert_eq!(r.problems.len(), 3, "{text}");
        assert!(
            text.contains(&format!("blob {bad}: content has digest")),
            "{text}"
        );
        assert!(text.contains("no fs/ directory"), "{text}");
        assert!(text.contains("image h/r:1"), "{text}");
        assert_eq!(r.blobs, 1);
        assert_eq!(r.garbage.blobs, 1, "{good} is unreferenced");
        assert_eq!(r.garbage.tmp, 2);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

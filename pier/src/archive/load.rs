//! `pier load`: reads the archive's table of entries once (names, offsets,
//! sizes, symlinks), then copies each needed blob straight from its offset
//! into the store, verified. OCI layouts (`index.json`) are preferred;
//! otherwise a `docker save` archive (`manifest.json`) is converted.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::image::ImageIndex;

use super::copy_blob;
use crate::digest::Digest;
use crate::image::{desc_digest, parse_manifest, select_platform, Fetched, PlatformSpec};
use crate::reference::ImageRef;
use crate::store::{NameEntry, Store, MAX_JSON_BLOB};
use crate::unpack::{sniff, Compression};

/// The table of an archive: regular files by name, and symlinks.
pub(super) struct Archive {
    path: PathBuf,
    files: HashMap<String, (u64, u64)>,
    links: HashMap<String, String>,
}

fn norm(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

impl Archive {
    fn open(path: &Path) -> Result<Archive> {
        let f = File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mut ar = tar::Archive::new(BufReader::with_capacity(1 << 16, f));
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        for e in ar.entries_with_seek().context("read archive")? {
            let e = e.context("read archive entry")?;
            let name = norm(&String::from_utf8_lossy(&e.path_bytes()));
            match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    files.insert(name, (e.raw_file_position(), e.size()));
                }
                tar::EntryType::Symlink => {
                    let t = e
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .unwrap_or_default();
                    let dir = name.rsplit_once('/').map(|x| x.0).unwrap_or("");
                    let target = norm(&format!("{dir}/{t}"));
                    links.insert(name, target);
                }
                tar::EntryType::Link => {
                    let t = e
                        .link_name_bytes()
                        .map(|t| norm(&String::from_utf8_lossy(&t)))
                        .unwrap_or_default();
                    links.insert(name, t);
                }
                _ => {}
            }
        }
        Ok(Archive {
            path: path.to_path_buf(),
            files,
            links,
        })
    }

    fn has(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// A reader over entry `name` (following links inside the archive) and
    /// its size.
    pub(super) fn entry(&self, name: &str) -> Result<(impl Read, u64)> {
        let mut n = norm(name);
        for _ in 0..16 {
            if let Some(&(off, size)) = self.files.get(&n) {
                let mut f = File::open(&self.path)?;
                f.seek(SeekFrom::Start(off))?;
                return Ok((BufReader::with_capacity(1 << 20, f).take(size), size));
            }
            match self.links.get(&n) {
                Some(t) => n = t.clone(),
                None => break,
            }
        }
        bail!("archive has no file {name:?}")
    }

    pub(super) fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let (r, size) = self.entry(name)?;
        if size > MAX_JSON_BLOB {
            bail!("{name} in the archive is too large ({size} bytes)");
        }
        let mut v = Vec::new();
        r.take(MAX_JSON_BLOB).read_to_end(&mut v)?;
        Ok(v)
    }

    fn blob_name(d: &Digest) -> String {
        format!("blobs/sha256/{}", d.hex())
    }

    fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let b = self.read_small(&Archive::blob_name(d))?;
        if Digest::of(&b) != *d {
            bail!("blob {d} in the archive does not match its digest");
        }
        Ok(b)
    }
}

/// Loads every image of the archive at `input`; returns the names given.
pub fn load(
    store: &Store,
    input: &Path,
    name: Option<&str>,
    platform: &PlatformSpec,
) -> Result<Vec<String>> {
    // A compressed archive is decompressed to a temporary file first: the
    // blobs are then read by offset.
    let mut head = [0u8; 4];
    let n = File::open(input)
        .with_context(|| format!("open {}", input.display()))?
        .read(&mut head)?;
    let tmp = match sniff(&head[..n]) {
        Compression::None => None,
        c => {
            let t = store.tmp_path("load");
            let f = File::open(input)?;
            let mut out = File::create(&t).with_context(|| format!("create {}", t.display()))?;
            let mut r: Box<dyn Read> = match c {
                Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(f))),
                _ => Box::new(zstd::stream::read::Decoder::new(f)?),
            };
            let copied = std::io::copy(&mut r, &mut out).context("decompress archive");
            if let Err(e) = copied {
                let _ = std::fs::remove_file(&t);
                return Err(e);
            }
            Some(t)
        }
    };
    let path = tmp.clone().unwrap_or_else(|| input.to_path_buf());
    let r = Archive::open(&path).and_then(|ar| {
        if ar.has("index.json") {
            load_oci(store, &ar, name, platform)
        } else if ar.has("manifest.json") {
            super::docker::load_docker(store, &ar, name)
        } else {
            bail!("{} is neither an OCI image layout (index.json) nor a docker save archive (manifest.json)", input.display())
        }
    });
    if let Some(t) = tmp {
        let _ = std::fs::remove_file(t);
    }
    r.with_context(|| format!("load {}", input.display()))
}

fn load_oci(
    store: &Store,
    ar: &Archive,
    name: Option<&str>,
    platform: &PlatformSpec,
) -> Result<Vec<String>> {
    let index: ImageIndex =
        serde_json::from_slice(&ar.read_small("index.json")?).context("parse index.json")?;
    if name.is_some() && index.manifests().len() != 1 {
        bail!(
            "--name needs an archive with one image ({} here)",
            index.manifests().len()
        );
    }
    let mut names = Vec::new();
    for desc in index.manifests() {
        let ann = desc.annotations().clone().unwrap_or_default();
        let full = ann.get("io.containerd.image.name");
        let tag = ann.get("org.opencontainers.image.ref.name");
        let img_name = match (name, full, tag) {
            (Some(n), _, _) => ImageRef::parse(n)?,
            (None, Some(f), _) => ImageRef::parse(f)?,
            (None, None, Some(t)) if t.contains('/') => ImageRef::parse(t)?,
            (None, None, Some(t)) => {
                bail!("the archive names an image only by tag {t:?}: give --name REPO[:TAG]")
            }
            (None, None, None) => bail!("the archive has an unnamed image: give --name REPO[:TAG]"),
        };
        let top = desc_digest(desc)?;
        let top_bytes = ar.read_blob(&top)?;
        let (mdigest, mbytes, index_digest) = match parse_manifest(&top_bytes, None)? {
            Fetched::Manifest(_) => (top.clone(), top_bytes.clone(), None),
            Fetched::Index(idx) => {
                let d = desc_digest(select_platform(&idx, platform)?)?;
                (d.clone(), ar.read_blob(&d)?, Some(top.clone()))
            }
        };
        let Fetched::Manifest(m) = parse_manifest(&mbytes, None)? else {
            bail!("{mdigest} is not an image manifest")
        };
        let mut blobs = vec![(desc_digest(m.config())?, m.config().size())];
        for l in m.layers() {
            blobs.push((desc_digest(l)?, l.size()));
        }
        for (d, size) in &blobs {
            let (mut r, _) = ar.entry(&Archive::blob_name(d))?;
            copy_blob(store, &mut r, d, *size)?;
        }
        store.put_blob(&mbytes)?;
        if index_digest.is_some() {
            store.put_blob(&top_bytes)?;
        }
        let canon = img_name.to_string();
        let entry = NameEntry {
            manifest: mdigest,
            index: index_digest,
            source: None,
        };
        store.update_names(|n| {
            n.images.insert(canon.clone(), entry);
            Ok(())
        })?;
        names.push(canon);
    }
    Ok(names)
}

pub(super) use Archive as LoadArchive;

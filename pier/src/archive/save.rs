//! `pier save`: an OCI image layout as a tar (`oci-layout`, `index.json`,
//! `blobs/sha256/...`), plus Docker's `manifest.json` so `docker load`
//! takes it too. Written to a temporary file renamed into place.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use crate::digest::Digest;
use crate::image::{Image, OCI_INDEX};
use crate::reference::ImageRef;
use crate::store::Store;

fn header(path: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).expect("short path");
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h
}

fn add_bytes<W: Write>(b: &mut tar::Builder<W>, path: &str, data: &[u8]) -> Result<()> {
    b.append(&header(path, data.len() as u64), data)
        .with_context(|| format!("write {path}"))
}

/// Writes `image` (named `name`, if any) to `out`.
pub fn save(store: &Store, image: &Image, name: Option<&str>, out: &Path) -> Result<()> {
    let tmp = out.with_file_name(format!(
        ".{}.pier-tmp-{}",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let r = (|| -> Result<()> {
        let f = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, f));
        add_bytes(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let manifest_bytes = store.read_blob(&image.manifest_digest)?;
        let mut annotations = serde_json::Map::new();
        let mut repo_tags = Vec::new();
        if let Some(n) = name {
            let r = ImageRef::parse(n)?;
            annotations.insert("io.containerd.image.name".into(), json!(n));
            annotations.insert(
                "org.opencontainers.image.ref.name".into(),
                json!(r.tag.clone().unwrap_or_default()),
            );
            if r.tag.is_some() {
                repo_tags.push(n.to_string());
            }
        }
        let media_type = image
            .manifest
            .media_type()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| crate::image::OCI_MANIFEST.to_string());
        let index = json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{
                "mediaType": media_type, "digest": image.manifest_digest,
                "size": manifest_bytes.len(), "annotations": annotations,
            }],
        });
        let layers = image.layers()?;
        let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
        let docker = json!([{
            "Config": blob(&image.config_digest),
            "RepoTags": repo_tags,
            "Layers": layers.iter().map(|l| blob(&l.digest)).collect::<Vec<_>>(),
        }]);
        add_bytes(&mut b, "index.json", index.to_string().as_bytes())?;
        add_bytes(&mut b, "manifest.json", docker.to_string().as_bytes())?;
        add_bytes(&mut b, &blob(&image.manifest_digest), &manifest_bytes)?;
        add_bytes(&mut b, &blob(&image.config_digest), &image.config_bytes)?;
        let mut seen = std::collections::HashSet::new();
        for l in &layers {
            if !seen.insert(l.digest.clone()) {
                continue;
            }
            let p = store.blob_path(&l.digest);
            let mut f =
                File::open(&p).with_context(|| format!("blob {} is not in the store", l.digest))?;
            let size = f.metadata()?.len();
            b.append(&header(&blob(&l.digest), size), &mut f)
                .with_context(|| format!("write layer {}", l.digest))?;
        }
        let w = b.into_inner().context("finish tar")?;
        let f = w
            .into_inner()
            .map_err(|e| e.into_error())
            .context("flush")?;
        f.sync_all()?;
        Ok(())
    })();
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out).with_context(|| format!("rename to {}", out.display()))
}

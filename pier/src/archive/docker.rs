//! `docker save` archives: `manifest.json` lists each image's config file,
//! repo tags and layer tars; pier stores them as blobs and writes a Docker
//! schema2 manifest for them.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::json;

use super::load::LoadArchive;
use crate::digest::Digest;
use crate::reference::ImageRef;
use crate::store::{NameEntry, Store};
use crate::unpack::{sniff, Compression};

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Loads the images of a `docker save` archive.
pub(super) fn load_docker(
    store: &Store,
    ar: &LoadArchive,
    name: Option<&str>,
) -> Result<Vec<String>> {
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&ar.read_small("manifest.json")?).context("parse manifest.json")?;
    if name.is_some() && entries.len() != 1 {
        bail!(
            "--name needs an archive with one image ({} here)",
            entries.len()
        );
    }
    let mut names = Vec::new();
    for e in entries {
        let config = ar.read_small(&e.config)?;
        let cfg: oci_spec::image::ImageConfiguration =
            serde_json::from_slice(&config).with_context(|| format!("parse {}", e.config))?;
        let diff_ids = cfg.rootfs().diff_ids();
        if diff_ids.len() != e.layers.len() {
            bail!(
                "{}: {} layers but {} diff-ids in the config",
                e.config,
                e.layers.len(),
                diff_ids.len()
            );
        }
        let config_digest = store.put_blob(&config)?;
        let mut layers = Vec::new();
        for (path, diff_id) in e.layers.iter().zip(diff_ids) {
            let (mut r, _) = ar.entry(path)?;
            let mut w = store.blob_writer(None)?;
            let mut head = [0u8; 4];
            let n = std::io::Read::read(&mut r, &mut head)?;
            std::io::Write::write_all(&mut w, &head[..n])?;
            std::io::copy(&mut r, &mut w).with_context(|| format!("copy layer {path}"))?;
            let size = w.written();
            let d = w.commit()?;
            let media_type = match sniff(&head[..n]) {
                Compression::None => {
                    if d.as_str() != diff_id {
                        bail!("layer {path} has digest {d}, the config says {diff_id}");
                    }
                    "application/vnd.docker.image.rootfs.diff.tar"
                }
                Compression::Gzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            };
            layers.push(json!({"mediaType": media_type, "size": size, "digest": d}));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": crate::image::DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": config.len(), "digest": config_digest,
            },
            "layers": layers,
        });
        let mbytes = serde_json::to_vec(&manifest)?;
        let mdigest: Digest = store.put_blob(&mbytes)?;
        let tags: Vec<String> = match name {
            Some(n) => vec![n.to_string()],
            None => e.repo_tags.unwrap_or_default(),
        };
        if tags.is_empty() {
            bail!("image {config_digest} in the archive has no name: give --name REPO[:TAG]");
        }
        for t in tags {
            let canon = ImageRef::parse(&t)?.to_string();
            let entry = NameEntry {
                manifest: mdigest.clone(),
                index: None,
                source: None,
            };
            store.update_names(|n| {
                n.images.insert(canon.clone(), entry);
                Ok(())
            })?;
            names.push(canon);
        }
    }
    Ok(names)
}

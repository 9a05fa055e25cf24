//! Images in the store: manifests (OCI and Docker schema2), indexes,
//! platform selection, configs, and resolving a name to an image.
//!
//! The JSON types are `oci-spec`'s: Docker schema2 manifests and manifest
//! lists have the same shape as OCI manifests and indexes, only other media
//! types. Manifest bytes are always kept exactly as received, since their
//! digest is over the bytes.

use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use crate::digest::Digest;
use crate::reference::ImageRef;
use crate::store::Store;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker schema2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The `Accept` header for manifests: every kind pier understands.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A platform as `os/arch[/variant]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformSpec {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`.
    pub arch: String,
    /// e.g. `v8` for arm64.
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<PlatformSpec> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts[..] {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(PlatformSpec {
                os: os.into(),
                arch: arch.into(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => {
                Ok(PlatformSpec {
                    os: os.into(),
                    arch: arch.into(),
                    variant: Some(v.into()),
                })
            }
            _ => bail!("invalid platform {s:?}: expected os/arch[/variant]"),
        }
    }

    /// The platform of this machine (`linux/amd64` on x86_64).
    pub fn host() -> PlatformSpec {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        PlatformSpec {
            os: "linux".into(),
            arch: arch.into(),
            variant: None,
        }
    }

    fn matches(&self, d: &Descriptor) -> bool {
        let Some(p) = d.platform() else { return false };
        p.os().to_string() == self.os
            && p.architecture().to_string() == self.arch
            && (self.variant.is_none() || p.variant().as_deref() == self.variant.as_deref())
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What a manifest-ish blob turned out to be.
pub enum Fetched {
    /// An image manifest.
    Manifest(Box<ImageManifest>),
    /// An index / manifest list.
    Index(Box<ImageIndex>),
}

/// Parses manifest bytes as a manifest or an index, by the media type given
/// (the HTTP `Content-Type`) or else by the `mediaType` field and shape.
pub fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<Fetched> {
    let v: serde_json::Value = serde_json::from_slice(bytes).context("manifest is not JSON")?;
    let field = v.get("mediaType").and_then(|m| m.as_str());
    let ct = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
    let mt = field.or(ct.filter(|c| !c.is_empty() && *c != "application/json"));
    let is_index = match mt {
        Some(OCI_INDEX) | Some(DOCKER_LIST) => true,
        Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => false,
        Some("application/vnd.docker.distribution.manifest.v1+json")
        | Some("application/vnd.docker.distribution.manifest.v1+prettyjws") => {
            bail!("Docker schema1 manifests are not supported (deprecated format)")
        }
        Some(other) if v.get("manifests").is_none() && v.get("layers").is_none() => {
            bail!("unsupported manifest media type {other:?}")
        }
        _ => v.get("manifests").is_some(),
    };
    if is_index {
        Ok(Fetched::Index(
            serde_json::from_value(v).context("parse image index")?,
        ))
    } else {
        Ok(Fetched::Manifest(
            serde_json::from_value(v).context("parse image manifest")?,
        ))
    }
}

/// Picks the manifest for `platform` from an index.
pub fn select_platform<'a>(
    index: &'a ImageIndex,
    platform: &PlatformSpec,
) -> Result<&'a Descriptor> {
    if let Some(d) = index.manifests().iter().find(|d| platform.matches(d)) {
        return Ok(d);
    }
    let offered: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(|d| d.platform().as_ref())
        .map(|p| format!("{}/{}", p.os(), p.architecture()))
        .collect();
    bail!(
        "no manifest for platform {platform} in the index (it offers: {})",
        offered.join(", ")
    )
}

/// The validated digest of a descriptor.
pub fn desc_digest(d: &Descriptor) -> Result<Digest> {
    Digest::parse(d.digest().as_ref())
}

/// An image in the store: its manifest and config.
pub struct Image {
    /// The manifest digest.
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The config blob's digest (the image ID).
    pub config_digest: Digest,
    /// The raw config JSON.
    pub config_bytes: Vec<u8>,
    /// The parsed config.
    pub config: ImageConfiguration,
}

/// A layer of an image: the blob and the diff-id of its uncompressed tar.
#[derive(Clone, Debug)]
pub struct Layer {
    /// Compressed blob digest.
    pub digest: Digest,
    /// Compressed size.
    pub size: u64,
    /// Media type of the blob.
    pub media_type: String,
    /// sha256 of the uncompressed tar (from the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
}

impl Image {
    /// Loads the image whose manifest is `manifest_digest` from the store.
    pub fn load(store: &Store, manifest_digest: &Digest) -> Result<Image> {
        let bytes = store.read_blob(manifest_digest)?;
        let manifest = match parse_manifest(&bytes, None)? {
            Fetched::Manifest(m) => *m,
            Fetched::Index(_) => bail!("{manifest_digest} is an index, not an image manifest"),
        };
        let config_digest = desc_digest(manifest.config())?;
        let config_bytes = store.read_blob(&config_digest)?;
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .with_context(|| format!("parse image config {config_digest}"))?;
        let img = Image {
            manifest_digest: manifest_digest.clone(),
            manifest,
            config_digest,
            config_bytes,
            config,
        };
        img.layers()?;
        Ok(img)
    }

    /// The layers, bottom first, each with its diff-id.
    pub fn layers(&self) -> Result<Vec<Layer>> {
        layers_of(&self.manifest, &self.config)
    }

    /// The sum of the blob sizes (config and compressed layers). The sizes
    /// are the manifest's word: a sum past `u64::MAX` shows as `u64::MAX`.
    pub fn size(&self) -> u64 {
        self.manifest
            .layers()
            .iter()
            .fold(self.manifest.config().size(), |a, l| {
                a.saturating_add(l.size())
            })
    }
}

/// Pairs a manifest's layers with the config's diff-ids, checking they agree
/// in number and that every digest is valid.
pub fn layers_of(manifest: &ImageManifest, config: &ImageConfiguration) -> Result<Vec<Layer>> {
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        bail!(
            "image has {} layers but its config lists {} diff-ids",
            manifest.layers().len(),
            diff_ids.len()
        );
    }
    manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(l, id)| {
            Ok(Layer {
                digest: desc_digest(l)?,
                size: l.size(),
                media_type: l.media_type().to_string(),
                diff_id: Digest::parse(id).context("config diff-id")?,
            })
        })
        .collect()
}

/// Finds an image in the store by name (`busybox`, `host/repo:tag`),
/// `name@digest`, manifest digest or image ID (config digest, or a unique
/// prefix of at least 4 hex digits). Returns the canonical name if it was
/// found by name.
pub fn resolve(store: &Store, s: &str) -> Result<(Option<String>, Image)> {
    let names = store.names()?;
    if let Ok(r) = ImageRef::parse(s) {
        let canon = r.to_string();
        if let Some(e) = names.images.get(&canon) {
            return Ok((Some(canon), Image::load(store, &e.manifest)?));
        }
        if let Some(d) = &r.digest {
            // By digest: any name of the same repository with that manifest
            // or index digest, else the manifest blob itself.
            if let Some(e) = names
                .images
                .values()
                .find(|e| &e.manifest == d || e.index.as_ref() == Some(d))
            {
                return Ok((None, Image::load(store, &e.manifest)?));
            }
            if store.has_blob(d) {
                return Ok((None, Image::load(store, d)?));
            }
        }
    }
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut found: Vec<(String, Digest)> = Vec::new();
        for (name, e) in &names.images {
            if e.manifest.hex().starts_with(hex) {
                found.push((name.clone(), e.manifest.clone()));
                continue;
            }
            if let Ok(img) = Image::load(store, &e.manifest) {
                if img.config_digest.hex().starts_with(hex) {
                    found.push((name.clone(), e.manifest.clone()));
                }
            }
        }
        found.dedup_by(|a, b| a.1 == b.1);
        let mut distinct: Vec<&Digest> = found.iter().map(|f| &f.1).collect();
        distinct.sort();
        distinct.dedup();
        match distinct.len() {
            0 => {}
            1 => return Ok((None, Image::load(store, distinct[0])?)),
            _ => bail!("image ID prefix {s:?} is ambiguous"),
        }
    }
    bail!(
        "image {s:?} not found in the store {}",
        store.root().display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_size_does_not_overflow_on_hostile_sizes() {
        // Caught by fuzz/fuzz_targets/image_json.rs (corpus/image_json/
        // regression-size-overflow): layer sizes summing past u64::MAX
        // panicked `pier images` in debug builds.
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"{OCI_CONFIG}","size":10,"digest":"{}"}},
            "layers":[{{"mediaType":"{OCI_LAYER_GZIP}","size":18446744073709551615,"digest":"{}"}},
                      {{"mediaType":"{OCI_LAYER_GZIP}","size":5,"digest":"{}"}}]}}"#,
            d('a'),
            d('b'),
            d('c')
        );
        let Fetched::Manifest(m) = parse_manifest(json.as_bytes(), None).unwrap() else {
            panic!("not a manifest");
        };
        let mut img = Image {
            manifest_digest: Digest::of(json.as_bytes()),
            manifest: *m,
            config_digest: Digest::parse(&d('a')).unwrap(),
            config_bytes: Vec::new(),
            config: ImageConfiguration::default(),
        };
        assert_eq!(img.size(), u64::MAX);
        img.manifest.layers_mut().pop();
        img.manifest.layers_mut()[0].set_size(7);
        assert_eq!(img.size(), 17);
    }
}

//! `pier import`: a root filesystem tar (plain, gzip or zstd) becomes a
//! one-layer image, like `docker import`. The input is read once: it is
//! decompressed, hashed for the diff-id, and gzip-compressed into the blob
//! (itself hashed) in one pass.

use std::io::{BufRead, BufReader, Read, Write};

use anyhow::{Context, Result};
use serde_json::json;

use super::now_rfc3339;
use crate::digest::Hasher;
use crate::image::{PlatformSpec, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use crate::reference::ImageRef;
use crate::store::{NameEntry, Store};
use crate::unpack::{sniff, Compression};

/// Hashes what is written through it, then passes it on.
struct Tee<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Imports the tar read from `input` as image `name`; returns the canonical
/// name and the manifest digest.
pub fn import(
    store: &Store,
    input: impl Read,
    name: &str,
) -> Result<(String, crate::digest::Digest)> {
    let r = ImageRef::parse(name)?;
    let mut input = BufReader::with_capacity(1 << 20, input);
    let comp = sniff(input.fill_buf().context("read input")?);
    let mut plain: Box<dyn Read> = match comp {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Compression::None => Box::new(input),
    };
    let blob = store.blob_writer(None)?;
    let gz = flate2::write::GzEncoder::new(blob, flate2::Compression::fast());
    let mut tee = Tee {
        inner: gz,
        hasher: Hasher::new(),
    };
    std::io::copy(&mut plain, &mut tee).context("read the root filesystem tar")?;
    let diff_id = tee.hasher.finish();
    let blob = tee.inner.finish().context("compress layer")?;
    let size = blob.written();
    let layer = blob.commit()?;
    let host = PlatformSpec::host();
    let created = now_rfc3339();
    let config = json!({
        "created": created, "architecture": host.arch, "os": host.os,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "pier import"}],
    });
    let config = serde_json::to_vec(&config)?;
    let config_digest = store.put_blob(&config)?;
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "size": size, "digest": layer}],
    });
    let mdigest = store.put_blob(&serde_json::to_vec(&manifest)?)?;
    let canon = r.to_string();
    let entry = NameEntry {
        manifest: mdigest.clone(),
        index: None,
        source: None,
    };
    store.update_names(|n| {
        n.images.insert(canon.clone(), entry);
        Ok(())
    })?;
    Ok((canon, mdigest))
}

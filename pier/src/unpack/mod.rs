//! Unpacking layers (hostile input) into per-layer directories.
//!
//! A layer is extracted into a fresh directory under the store's `tmp/`,
//! its diff-id (sha256 of the uncompressed tar) checked against the image
//! config, the file system synced, and the directory renamed to
//! `layers/sha256/<diff-id>`. Each layer directory holds only that layer's
//! changes, with whiteouts in overlayfs form, ready to be a lower layer.
//! See `safe` for how nothing escapes the directory.

mod decompress;
mod extract;
pub mod safe;

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{bail, Context, Result};

pub use decompress::{sniff, Compression};

use crate::digest::Digest;
use crate::image::Layer;
use crate::store::Store;

/// Unpacks `layer` (whose blob is in the store) unless it already is.
pub fn unpack_layer(store: &Store, layer: &Layer) -> Result<()> {
    if store.has_layer(&layer.diff_id) {
        return Ok(());
    }
    let tmp = store.tmp_path("layer");
    std::fs::create_dir(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    let r = (|| -> Result<()> {
        let blob = store.blob_path(&layer.digest);
        let f = File::open(&blob).with_context(|| format!("open {}", blob.display()))?;
        let diff_id = unpack_stream(f, &tmp)?;
        if diff_id != layer.diff_id {
            bail!(
                "uncompressed content has digest {diff_id}, the config says {}",
                layer.diff_id
            );
        }
        // Crash safety: the files must be on disk before the directory
        // appears under its final name.
        let dir = File::open(&tmp)?;
        // SAFETY: valid fd.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("syncfs");
        }
        Ok(())
    })();
    if let Err(e) = r {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!("unpack layer {}", layer.digest)));
    }
    let dst = store.layer_path(&layer.diff_id);
    if let Err(e) = std::fs::rename(&tmp, &dst) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another pier process unpacked the same layer meanwhile: fine.
        if !dst.is_dir() {
            return Err(e)
                .with_context(|| format!("rename {} to {}", tmp.display(), dst.display()));
        }
    }
    Ok(())
}

/// Unpacks a (gzip, zstd or plain) layer tar read from `input` into the
/// empty directory `dest`; returns the diff-id of the stream.
pub fn unpack_stream<R: Read + Send + 'static>(input: R, dest: &Path) -> Result<Digest> {
    let stream = decompress::Decompressed::start(input)?;
    let stream = extract::extract(stream, dest)?;
    stream.finish()
}

#[cfg(test)]
mod tests;

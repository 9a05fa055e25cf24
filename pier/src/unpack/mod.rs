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
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use decompress::{sniff, Compression};
pub use extract::MAX_SPARSE_HOLES;

/// The file, beside a layer's `fs/`, listing its implicit directories.
const IMPLICIT: &str = "implicit";

use crate::digest::Digest;
use crate::image::Layer;
use crate::store::Store;

/// Unpacks `layer` (whose blob is in the store) unless it already is.
pub fn unpack_layer(store: &Store, layer: &Layer) -> Result<()> {
    if store.has_layer(&layer.diff_id) {
        return Ok(());
    }
    let tmp = store.tmp_path("layer");
    let fs = tmp.join("fs");
    std::fs::create_dir_all(&fs).with_context(|| format!("create {}", fs.display()))?;
    let r = (|| -> Result<()> {
        let blob = store.blob_path(&layer.digest);
        let f = File::open(&blob).with_context(|| format!("open {}", blob.display()))?;
        let Unpacked { diff_id, implicit } = unpack_stream(f, &fs)?;
        if diff_id != layer.diff_id {
            bail!(
                "uncompressed content has digest {diff_id}, the config says {}",
                layer.diff_id
            );
        }
        let mut list = Vec::new();
        for p in implicit {
            list.extend_from_slice(p.as_os_str().as_bytes());
            list.push(0);
        }
        std::fs::write(tmp.join(IMPLICIT), list).context("write the implicit directory list")?;
        crate::failpoint::hit("pull-in-unpack");
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
    let dst = store.layer_dir(&layer.diff_id);
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

/// What [`unpack_stream`] found.
pub struct Unpacked {
    /// sha256 of the uncompressed stream.
    pub diff_id: Digest,
    /// Directories the layer has no entry for, created because entries
    /// below them needed them.
    pub implicit: Vec<PathBuf>,
}

/// Unpacks a (gzip, zstd or plain) layer tar read from `input` into the
/// empty directory `dest`.
pub fn unpack_stream<R: Read + Send + 'static>(input: R, dest: &Path) -> Result<Unpacked> {
    let stream = decompress::Decompressed::start(input)?;
    let (stream, implicit) = extract::extract(stream, dest)?;
    Ok(Unpacked {
        diff_id: stream.finish()?,
        implicit,
    })
}

/// The implicit directories of an unpacked layer (relative paths).
pub fn implicit_dirs(store: &Store, diff_id: &Digest) -> Result<Vec<PathBuf>> {
    let p = store.layer_dir(diff_id).join(IMPLICIT);
    let data = match std::fs::read(&p) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("read {}", p.display())),
    };
    Ok(data
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| PathBuf::from(std::ffi::OsStr::from_bytes(s)))
        .collect())
}

#[cfg(test)]
mod tests;

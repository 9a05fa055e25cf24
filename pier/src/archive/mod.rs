//! Images in and out of files: `pier save` (OCI image layout tar, with a
//! Docker `manifest.json` beside it), `pier load` (OCI layout tars and
//! `docker save` tars) and `pier import` (a root filesystem tar becomes a
//! one-layer image).

mod docker;
mod import;
mod load;
mod save;

pub use import::import;
pub use load::load;
pub use save::save;

use std::io::{Read, Write};

use anyhow::{Context, Result};

use crate::digest::Digest;
use crate::store::{Expected, Store};

/// Copies `size` bytes of `r` into the store as blob `digest`, verified.
pub(crate) fn copy_blob(store: &Store, r: &mut dyn Read, digest: &Digest, size: u64) -> Result<()> {
    if store.has_blob(digest) {
        return Ok(());
    }
    let mut w = store.blob_writer(Some(Expected {
        digest: digest.clone(),
        size,
    }))?;
    std::io::copy(r, &mut w).with_context(|| format!("blob {digest}"))?;
    w.flush()?;
    w.commit()?;
    Ok(())
}

/// An RFC 3339 timestamp of now (UTC, seconds).
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

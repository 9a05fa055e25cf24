//! `pier push`: every blob the registry lacks (checked with HEAD) is
//! mounted from the repository the image came from when that is on the
//! same registry, else uploaded (monolithic PUT, or PATCH chunks); the
//! manifest goes last, so the registry never holds a manifest whose blobs
//! are missing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};

use crate::digest::Digest;
use crate::image::Image;
use crate::progress::Progress;
use crate::reference::ImageRef;
use crate::registry::Client;
use crate::store::Store;

/// Options of a push.
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    /// Upload blobs larger than this in PATCH chunks of this size.
    pub chunk_size: Option<u64>,
    /// Repository (on the target registry) to mount blobs from.
    pub mount_from: Option<String>,
    /// Progress bars (on a terminal).
    pub progress: bool,
    /// Blobs uploaded at once.
    pub parallel: usize,
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct Pushed {
    /// The manifest digest.
    pub digest: Option<Digest>,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs the registry already had.
    pub existing: usize,
}

/// Pushes `image` to `target` (tag or digest) through `client`.
pub fn push(
    store: &Store,
    client: &Client,
    image: &Image,
    target: &ImageRef,
    opts: &PushOptions,
) -> Result<Pushed> {
    let mut blobs: Vec<(Digest, u64)> = image
        .layers()?
        .into_iter()
        .map(|l| (l.digest, l.size))
        .collect();
    blobs.push((image.config_digest.clone(), image.manifest.config().size()));
    let progress = Progress::new(opts.progress);
    let stats = Mutex::new(Pushed::default());
    let queue = Mutex::new(blobs);
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let workers = opts.parallel.clamp(1, 8);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Some((d, size)) = queue.lock().unwrap().pop() else {
                    return;
                };
                let bar = progress.bar(&d, size, "checking");
                let r = push_blob(store, client, &d, size, opts);
                match r {
                    Ok(kind) => {
                        bar.done(kind);
                        let mut st = stats.lock().unwrap();
                        match kind {
                            "exists" => st.existing += 1,
                            "mounted" => st.mounted += 1,
                            _ => st.uploaded += 1,
                        }
                    }
                    Err(e) => {
                        bar.done("failed");
                        stop.store(true, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    let bytes = store.read_blob(&image.manifest_digest)?;
    let media_type = image
        .manifest
        .media_type()
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_else(|| crate::image::OCI_MANIFEST.to_string());
    client.put_manifest(&target.reference(), &bytes, &media_type)?;
    let mut st = stats.into_inner().unwrap();
    st.digest = Some(image.manifest_digest.clone());
    Ok(st)
}

fn push_blob(
    store: &Store,
    client: &Client,
    d: &Digest,
    size: u64,
    opts: &PushOptions,
) -> Result<&'static str> {
    if client.has_blob(d)? {
        return Ok("exists");
    }
    let path = store.blob_path(d);
    if !path.is_file() {
        anyhow::bail!("blob {d} is not in the store (pull the image again)");
    }
    let url = match &opts.mount_from {
        Some(from) if from != &client.repository => match client.mount_blob(d, from)? {
            None => return Ok("mounted"),
            Some(url) => url,
        },
        _ => client.start_upload()?,
    };
    client
        .upload_blob(&url, d, &path, size, opts.chunk_size)
        .with_context(|| format!("push blob {d}"))?;
    Ok("pushed")
}

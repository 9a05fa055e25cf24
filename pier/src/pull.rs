//! `pier pull`: manifest (and index) first, then the config and layer blobs
//! in parallel, each streamed to a temporary file while hashed and verified
//! before it is renamed into the store, layers unpacked as soon as their
//! blob is in. The name is written last, so an interrupted pull leaves only
//! complete, verified blobs (which the next pull reuses) and no name.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use oci_spec::image::ImageConfiguration;

use crate::digest::Digest;
use crate::image::{
    desc_digest, layers_of, parse_manifest, select_platform, Fetched, Layer, PlatformSpec,
};
use crate::progress::{Bar, Progress};
use crate::reference::ImageRef;
use crate::registry::Client;
use crate::store::{Expected, NameEntry, Store};
use crate::unpack::unpack_layer;

/// Options of a pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Which manifest to pick from an index.
    pub platform: PlatformSpec,
    /// Unpack the layers (so a rootfs can be mounted at once).
    pub unpack: bool,
    /// Blobs downloaded at once.
    pub parallel: usize,
    /// Progress bars (on a terminal).
    pub progress: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: PlatformSpec::host(),
            unpack: true,
            parallel: 4,
            progress: false,
        }
    }
}

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The canonical name written to the index.
    pub name: String,
    /// The image manifest's digest.
    pub manifest: Digest,
    /// The index digest, if the reference pointed at one.
    pub index: Option<Digest>,
    /// The config digest (image ID).
    pub config: Digest,
    /// Blobs downloaded (not already in the store).
    pub downloaded: usize,
}

/// Pulls `r` from `client` into `store`.
pub fn pull(store: &Store, client: &Client, r: &ImageRef, opts: &PullOptions) -> Result<Pulled> {
    let (bytes, ct, digest) = client.get_manifest(&r.reference())?;
    let (manifest_bytes, manifest_digest, index) = match parse_manifest(&bytes, ct.as_deref())? {
        Fetched::Manifest(_) => (bytes, digest, None),
        Fetched::Index(idx) => {
            let d = select_platform(&idx, &opts.platform).with_context(|| format!("pull {r}"))?;
            let want = desc_digest(d)?;
            let (mb, _, md) = client.get_manifest(want.as_str())?;
            (mb, md, Some((digest, bytes)))
        }
    };
    let manifest = match parse_manifest(&manifest_bytes, None)? {
        Fetched::Manifest(m) => *m,
        Fetched::Index(_) => bail!("{r}: the index points at another index"),
    };
    let config_desc = manifest.config();
    let config_digest = desc_digest(config_desc)?;
    let progress = Progress::new(opts.progress);
    let stop = AtomicBool::new(false);
    let mut downloaded = 0;
    if !store.has_blob(&config_digest) {
        let bar = progress.bar(&config_digest, config_desc.size(), "config");
        fetch_blob(
            store,
            client,
            &Expected {
                digest: config_digest.clone(),
                size: config_desc.size(),
            },
            &stop,
            &bar,
        )?;
        downloaded += 1;
    }
    let config_bytes = store.read_blob(&config_digest)?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
        .with_context(|| format!("parse image config {config_digest}"))?;
    let layers = layers_of(&manifest, &config)?;
    downloaded += fetch_layers(store, client, &layers, opts, &progress)?;

    // Everything is in: manifest (and index) blobs, then the name.
    store.put_blob(&manifest_bytes)?;
    let index_digest = match index {
        Some((d, b)) => {
            store.put_blob(&b)?;
            Some(d)
        }
        None => None,
    };
    let name = r.to_string();
    crate::failpoint::hit("pull-before-name");
    let entry = NameEntry {
        manifest: manifest_digest.clone(),
        index: index_digest.clone(),
        source: Some(r.name()),
    };
    store.update_names(|n| {
        n.images.insert(name.clone(), entry);
        Ok(())
    })?;
    Ok(Pulled {
        name,
        manifest: manifest_digest,
        index: index_digest,
        config: config_digest,
        downloaded,
    })
}

/// Downloads (and unpacks) the layers on `opts.parallel` threads. Returns
/// how many blobs were downloaded. The first error stops the others.
fn fetch_layers(
    store: &Store,
    client: &Client,
    layers: &[Layer],
    opts: &PullOptions,
    progress: &Progress,
) -> Result<usize> {
    let queue: Mutex<VecDeque<(&Layer, Bar)>> = Mutex::new(
        layers
            .iter()
            .map(|l| {
                let have = store.has_blob(&l.digest);
                let bar = progress.bar(&l.digest, l.size, if have { "exists" } else { "waiting" });
                (l, bar)
            })
            .collect(),
    );
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let downloaded = std::sync::atomic::AtomicUsize::new(0);
    let workers = opts.parallel.clamp(1, 16).min(layers.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Some((layer, bar)) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                let r = (|| -> Result<()> {
                    if !store.has_blob(&layer.digest) {
                        bar.set("downloading");
                        fetch_blob(
                            store,
                            client,
                            &Expected {
                                digest: layer.digest.clone(),
                                size: layer.size,
                            },
                            &stop,
                            &bar,
                        )?;
                        downloaded.fetch_add(1, Ordering::Relaxed);
                    }
                    if opts.unpack && !store.has_layer(&layer.diff_id) {
                        unpack_layer(store, layer)?;
                    }
                    bar.done("done");
                    Ok(())
                })();
                if let Err(e) = r {
                    bar.done("failed");
                    stop.store(true, Ordering::Relaxed);
                    first_error.lock().unwrap().get_or_insert(e);
                    return;
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    Ok(downloaded.into_inner())
}

/// Streams one blob from the registry into the store, verified.
fn fetch_blob(
    store: &Store,
    client: &Client,
    e: &Expected,
    stop: &AtomicBool,
    bar: &Bar,
) -> Result<()> {
    let what = format!("blob {}", e.digest);
    let resp = client.get_blob(&e.digest)?;
    let mut body = resp.into_body().into_reader();
    let mut w = store.blob_writer(Some(e.clone()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if stop.load(Ordering::Relaxed) {
            bail!("{what}: cancelled (another download failed)");
        }
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                return Err(err).with_context(|| {
                    format!("{what}: download failed after {} bytes", w.written())
                })
            }
        };
        w.write_all(&buf[..n])
            .with_context(|| format!("{what}: write"))?;
        crate::failpoint::hit("pull-in-blob");
        bar.inc(n as u64);
    }
    w.commit()?;
    Ok(())
}

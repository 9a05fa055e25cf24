//! `pier images`, `inspect`, `tag`, `rmi`, `prune`, `mount`, `umount`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use super::Cli;
use crate::image::{resolve, Image};
use crate::reference::ImageRef;
use crate::rootfs::RootfsMount;
use crate::store::Store;

/// `pier images`.
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Output format: `table` or `json`.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Only image IDs.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `pier inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Image name, digest or ID.
    pub image: String,
}

/// `pier tag`.
#[derive(Args, Debug)]
pub struct TagArgs {
    /// Existing image.
    pub source: String,
    /// New name.
    pub target: String,
}

/// `pier rmi`.
#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Image names, digests or IDs.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove every name of an image given by ID or digest.
    #[arg(long, short)]
    pub force: bool,
}

/// `pier check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Output format: `text` or `json`.
    #[arg(long, default_value = "text")]
    pub format: String,
}

/// `pier mount`.
#[derive(Args, Debug)]
pub struct MountArgs {
    /// Image name, digest or ID.
    pub image: String,
    /// Container directory: gets rootfs/ (the mount), upper/ and work/.
    pub dir: PathBuf,
}

/// `pier umount`.
#[derive(Args, Debug)]
pub struct UmountArgs {
    /// Container directory given to `pier mount`.
    pub dir: PathBuf,
}

/// Splits a canonical name into repository and tag (`<none>` for digests).
fn split_name(name: &str) -> (String, String) {
    if let Some((repo, _)) = name.split_once('@') {
        let (r, t) = split_name(repo);
        return (r, if t == "<none>" { t } else { t.to_string() });
    }
    let slash = name.rfind('/').unwrap_or(0);
    match name[slash..].rfind(':') {
        Some(i) => (
            name[..slash + i].to_string(),
            name[slash + i + 1..].to_string(),
        ),
        None => (name.to_string(), "<none>".to_string()),
    }
}

fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[u]).replace(".000", "")
    }
}

pub(super) fn images(cli: &Cli, a: &ImagesArgs) -> Result<()> {
    let store = cli.open_store()?;
    let mut rows = Vec::new();
    for (name, e) in store.names()?.images {
        let img = Image::load(&store, &e.manifest).with_context(|| format!("image {name}"))?;
        let (repo, tag) = split_name(&name);
        let created = img.config.created().clone().unwrap_or_default();
        rows.push((repo, tag, img, created, e));
    }
    match a.format.as_str() {
        "json" => {
            let v: Vec<_> = rows
                .iter()
                .map(|(repo, tag, img, created, e)| {
                    json!({
                        "Repository": repo, "Tag": tag, "ID": img.config_digest,
                        "Digest": e.index.as_ref().unwrap_or(&img.manifest_digest),
                        "Manifest": img.manifest_digest, "Created": created, "Size": img.size(),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        "table" if a.quiet => {
            let mut ids: Vec<&str> = rows.iter().map(|r| r.2.config_digest.short()).collect();
            ids.dedup();
            for id in ids {
                println!("{id}");
            }
        }
        "table" => {
            println!(
                "{:<40} {:<16} {:<14} {:<22} {:>10}",
                "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"
            );
            for (repo, tag, img, created, _) in &rows {
                let created: String = created
                    .chars()
                    .take(19)
                    .collect::<String>()
                    .replace('T', " ");
                println!(
                    "{:<40} {:<16} {:<14} {:<22} {:>10}",
                    repo,
                    tag,
                    img.config_digest.short(),
                    created,
                    human_size(img.size())
                );
            }
        }
        other => bail!("unknown --format {other:?} (table or json)"),
    }
    Ok(())
}

pub(super) fn inspect(cli: &Cli, a: &InspectArgs) -> Result<()> {
    let store = cli.open_store()?;
    let (_, img) = resolve(&store, &a.image)?;
    let names: Vec<String> = store
        .names()?
        .images
        .into_iter()
        .filter(|(_, e)| e.manifest == img.manifest_digest)
        .map(|(n, _)| n)
        .collect();
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.read_blob(&img.manifest_digest)?)?;
    let config: serde_json::Value = serde_json::from_slice(&img.config_bytes)?;
    let layers: Vec<_> = img
        .layers()?
        .iter()
        .map(|l| json!({"Digest": l.digest, "DiffID": l.diff_id, "Size": l.size, "MediaType": l.media_type}))
        .collect();
    let v = json!({
        "Id": img.config_digest, "Digest": img.manifest_digest, "Names": names,
        "Size": img.size(), "Layers": layers, "Manifest": manifest, "Config": config,
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

pub(super) fn tag(cli: &Cli, a: &TagArgs) -> Result<()> {
    let store = cli.open_store()?;
    let (src_name, img) = resolve(&store, &a.source)?;
    let target = ImageRef::parse(&a.target)?;
    if target.digest.is_some() {
        bail!("{}: a tag target cannot have a digest", a.target);
    }
    let names = store.names()?;
    let src_entry = src_name.and_then(|n| names.images.get(&n).cloned());
    let entry = crate::store::NameEntry {
        manifest: img.manifest_digest.clone(),
        index: None,
        source: src_entry.and_then(|e| e.source),
    };
    store.update_names(|n| {
        n.images.insert(target.to_string(), entry);
        Ok(())
    })
}

pub(super) fn rmi(cli: &Cli, a: &RmiArgs) -> Result<()> {
    {
        let store = cli.open_store()?;
        for s in &a.images {
            let names = store.names()?;
            let exact = ImageRef::parse(s)
                .ok()
                .map(|r| r.to_string())
                .filter(|n| names.images.contains_key(n));
            let remove: Vec<String> = match exact {
                Some(n) => vec![n],
                None => {
                    let (_, img) = resolve(&store, s)?;
                    let all: Vec<String> = names
                        .images
                        .iter()
                        .filter(|(_, e)| e.manifest == img.manifest_digest)
                        .map(|(n, _)| n.clone())
                        .collect();
                    if all.len() > 1 && !a.force {
                        bail!(
                            "{s} has {} names ({}): remove them by name or use --force",
                            all.len(),
                            all.join(", ")
                        );
                    }
                    all
                }
            };
            store.update_names(|n| {
                for name in &remove {
                    n.images.remove(name);
                }
                Ok(())
            })?;
            for n in remove {
                println!("Untagged: {n}");
            }
        }
    }
    prune(cli)
}

pub(super) fn prune(cli: &Cli) -> Result<()> {
    let store = Store::open_exclusive(&cli.root)?;
    let st = store.gc()?;
    println!(
        "Deleted {} blobs ({}) and {} layers",
        st.blobs,
        human_size(st.bytes),
        st.layers
    );
    if st.tmp + st.leases + st.cache > 0 {
        println!(
            "Removed {} leftovers of interrupted commands, {} stale leases, {} stale cache entries",
            st.tmp, st.leases, st.cache
        );
    }
    Ok(())
}

pub(super) fn check(cli: &Cli, a: &CheckArgs) -> Result<()> {
    if a.format != "text" && a.format != "json" {
        bail!("unknown --format {:?} (text or json)", a.format);
    }
    let store = cli.open_store()?;
    let r = store.check()?;
    if a.format == "json" {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        for p in &r.problems {
            eprintln!("pier: check: {p}");
        }
        println!(
            "{} images, {} blobs, {} layers: {}",
            r.images,
            r.blobs,
            r.layers,
            if r.problems.is_empty() {
                "no problems".to_string()
            } else {
                format!("{} problems", r.problems.len())
            }
        );
        let g = r.garbage;
        if g != crate::store::Garbage::default() {
            println!(
                "garbage (pier prune removes it): {} temporary entries, {} unreferenced blobs, \
                 {} unreferenced layers, {} stale leases, {} bad cache entries",
                g.tmp, g.blobs, g.layers, g.leases, g.cache
            );
        }
    }
    if !r.problems.is_empty() {
        bail!("the store has {} problems", r.problems.len());
    }
    Ok(())
}

pub(super) fn mount(cli: &Cli, a: &MountArgs) -> Result<()> {
    let store = cli.open_store()?;
    let (_, img) = resolve(&store, &a.image)?;
    let m = RootfsMount::mount(&store, &img, &a.dir)?;
    println!("{}", m.rootfs.display());
    Ok(())
}

pub(super) fn umount(cli: &Cli, a: &UmountArgs) -> Result<()> {
    let store = cli.open_store()?;
    RootfsMount::unmount(&store, &a.dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_names() {
        assert_eq!(
            split_name("127.0.0.1:5000/a/b:1"),
            ("127.0.0.1:5000/a/b".into(), "1".into())
        );
        assert_eq!(split_name("docker.io/library/busybox:latest").1, "latest");
        let d = format!("h:1/r@sha256:{}", "a".repeat(64));
        assert_eq!(split_name(&d), ("h:1/r".into(), "<none>".into()));
        assert_eq!(human_size(1_500_000), "1.500MB");
        assert_eq!(human_size(999), "999B");
    }
}

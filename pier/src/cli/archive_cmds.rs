//! `pier save`, `load`, `import`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::Cli;
use crate::archive;
use crate::image::{resolve, PlatformSpec};

/// `pier save`.
#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Image name, digest or ID.
    pub image: String,
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// `pier load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Input file (OCI image layout tar or `docker save` tar, maybe
    /// compressed).
    #[arg(short, long)]
    pub input: PathBuf,
    /// Name for the image (needed when the archive names it only by tag).
    #[arg(long)]
    pub name: Option<String>,
    /// Platform to pick from a multi-platform index.
    #[arg(long)]
    pub platform: Option<String>,
}

/// `pier import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Root filesystem tar (plain, gzip or zstd); `-` for stdin.
    pub tarball: PathBuf,
    /// Name of the new image.
    pub name: String,
}

pub(super) fn save(cli: &Cli, a: &SaveArgs) -> Result<()> {
    let store = cli.open_store()?;
    let (name, img) = resolve(&store, &a.image)?;
    archive::save(&store, &img, name.as_deref(), &a.output)
        .with_context(|| format!("save {}", a.image))?;
    println!(
        "Saved {} to {}",
        name.unwrap_or_else(|| img.manifest_digest.to_string()),
        a.output.display()
    );
    Ok(())
}

pub(super) fn load(cli: &Cli, a: &LoadArgs) -> Result<()> {
    let store = cli.open_store()?;
    let platform = match &a.platform {
        Some(p) => PlatformSpec::parse(p)?,
        None => PlatformSpec::host(),
    };
    for n in archive::load(&store, &a.input, a.name.as_deref(), &platform)? {
        println!("Loaded image: {n}");
    }
    Ok(())
}

pub(super) fn import(cli: &Cli, a: &ImportArgs) -> Result<()> {
    let store = cli.open_store()?;
    let (name, digest) = if a.tarball.as_os_str() == "-" {
        archive::import(&store, std::io::stdin().lock(), &a.name)?
    } else {
        let f = std::fs::File::open(&a.tarball)
            .with_context(|| format!("open {}", a.tarball.display()))?;
        archive::import(&store, f, &a.name)
            .with_context(|| format!("import {}", a.tarball.display()))?
    };
    println!("Imported {name}");
    println!("Digest: {digest}");
    Ok(())
}

//! `pier save`, `load`, `import`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::Cli;

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
    /// Input file (OCI image layout tar or `docker save` tar).
    #[arg(short, long)]
    pub input: PathBuf,
}

/// `pier import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Root filesystem tar (plain, gzip or zstd).
    pub tarball: PathBuf,
    /// Name of the new image.
    pub name: String,
}

pub(super) fn save(_cli: &Cli, _a: &SaveArgs) -> Result<()> {
    bail!("pier save is not implemented yet")
}

pub(super) fn load(_cli: &Cli, _a: &LoadArgs) -> Result<()> {
    bail!("pier load is not implemented yet")
}

pub(super) fn import(_cli: &Cli, _a: &ImportArgs) -> Result<()> {
    bail!("pier import is not implemented yet")
}

//! `berth start`.

use anyhow::Result;

use super::Global;
use crate::container::{self, state::ContainerDir};

/// Arguments of `start`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container ID.
    id: String,
}

/// Runs `start`.
pub fn run(g: &Global, a: Args) -> Result<()> {
    let dir = ContainerDir::open(&g.root, &a.id)?;
    let state = dir.load()?;
    container::start(&dir, &state)
}

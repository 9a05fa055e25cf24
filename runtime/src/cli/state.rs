//! `berth state`.

use anyhow::Result;

use super::Global;
use crate::container::{self, state::ContainerDir};

/// Arguments of `state`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container ID.
    id: String,
}

/// Runs `state`: the container's state as indented JSON.
pub fn run(g: &Global, a: Args) -> Result<()> {
    let dir = ContainerDir::open(&g.root, &a.id)?;
    let state = dir.load()?;
    println!(
        "{}",
        serde_json::to_string_pretty(&container::view(&dir, &state))?
    );
    Ok(())
}

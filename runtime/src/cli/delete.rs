//! `berth delete`.

use anyhow::Result;

use super::Global;
use crate::container;

/// Arguments of `delete`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kill the container first if it still runs.
    #[arg(short = 'f', long)]
    force: bool,
    /// Container ID.
    id: String,
}

/// Runs `delete`.
pub fn run(g: &Global, a: Args) -> Result<()> {
    container::delete(&g.root, &a.id, a.force)
}

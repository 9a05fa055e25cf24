//! `berth kill`.

use anyhow::Result;

use super::Global;
use crate::container::{self, state::ContainerDir};
use crate::signals;

/// Arguments of `kill`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Send the signal to every process of the container.
    #[arg(short = 'a', long)]
    all: bool,
    /// Container ID.
    id: String,
    /// Signal: a name (TERM, SIGTERM) or a number; SIGTERM by default.
    #[arg(default_value = "SIGTERM")]
    signal: String,
}

/// Runs `kill`.
pub fn run(g: &Global, a: Args) -> Result<()> {
    let sig = signals::parse(&a.signal)?;
    let dir = ContainerDir::open(&g.root, &a.id)?;
    let state = dir.load()?;
    container::kill(&dir, &state, sig, a.all)
}

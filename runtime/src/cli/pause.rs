//! `berth pause`: freezes every process of the container (cgroup freezer).

use anyhow::{bail, Result};

use super::Global;
use crate::cgroups::Cgroup;
use crate::container::state::{ContainerDir, Status};

/// Arguments of `pause`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container ID.
    id: String,
}

/// Runs `pause`.
pub fn run(g: &Global, a: Args) -> Result<()> {
    let dir = ContainerDir::open(&g.root, &a.id)?;
    let state = dir.load()?;
    match dir.status(&state) {
        Status::Running | Status::Created => {}
        _ => bail!("container not running"),
    }
    Cgroup::open(&state.cgroup_path)?.freeze()
}

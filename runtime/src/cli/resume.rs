//! `berth resume`: thaws a paused container.

use anyhow::{bail, Result};

use super::Global;
use crate::cgroups::Cgroup;
use crate::container::state::{ContainerDir, Status};

/// Arguments of `resume`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container ID.
    id: String,
}

/// Runs `resume`.
pub fn run(g: &Global, a: Args) -> Result<()> {
    let dir = ContainerDir::open(&g.root, &a.id)?;
    let state = dir.load()?;
    if dir.status(&state) != Status::Paused {
        bail!("container not paused");
    }
    Cgroup::open(&state.cgroup_path)?.thaw()
}

//! `berth run`: create + start, and in the foreground wait for the container
//! process, forwarding signals to it, then delete the container.

use std::os::fd::AsFd;

use anyhow::Result;

use super::create::CreateFlags;
use super::Global;
use crate::container::{self, create::create};
use crate::{config, foreground};

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    flags: CreateFlags,
    /// Return once the container runs instead of waiting for it.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Keep the container's state after it exits (foreground only).
    #[arg(long)]
    keep: bool,
    /// Accepted for runc compatibility: berth always reaps its own children.
    #[arg(long = "no-subreaper")]
    no_subreaper: bool,
    /// Container ID.
    id: String,
}

/// Runs `run`; returns the exit code (the container's, or 128+N if it was
/// killed by signal N).
pub fn run(g: &Global, a: Args) -> Result<i32> {
    let set = if a.detach {
        None
    } else {
        Some(foreground::block_signals()?)
    };
    // A terminal without a console socket in the foreground: berth is the
    // console, as runc is.
    let mut relay = None;
    let mut console = a.flags.connect_console()?;
    if console.is_none() && !a.detach && wants_terminal(&a.flags)? {
        let (theirs, ours) = foreground::console_pair()?;
        console = Some(theirs);
        relay = Some(ours);
    }
    let created = create(&a.flags.opts(g, &a.id), console)?;
    let pid = created.state.pid;
    let master = match &relay {
        Some(r) => Some(foreground::receive_master(r)?),
        None => None,
    };
    if let Some(m) = &master {
        // Before start: a process that reads its terminal size at once
        // (`stty size`) must not see 0x0. runc sets it only after start.
        foreground::copy_window_size(m.as_fd());
    }
    if let Err(e) = container::start(&created.dir, &created.state) {
        let _ = container::destroy(created.dir, &created.state);
        return Err(e);
    }
    let Some(set) = set else { return Ok(0) };
    // Let other commands (state, kill, exec) at the container while it runs.
    drop(created.dir);
    let code = foreground::wait(pid, &set, master)?;
    if !a.keep {
        container::delete(&g.root, &a.id, true)?;
    }
    Ok(code)
}

fn wants_terminal(flags: &CreateFlags) -> Result<bool> {
    let bundle = std::fs::canonicalize(&flags.bundle).unwrap_or_else(|_| flags.bundle.clone());
    Ok(config::load(&bundle)
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false))
}

//! `berth run`: create + start, and in the foreground wait for the container
//! process, forwarding signals to it, then delete the container.

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::create::CreateFlags;
use super::Global;
use crate::container::{self, create::create};

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

/// Signals a foreground `run` passes on to the container process.
fn forwarded() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGALRM,
        Signal::SIGPIPE,
        Signal::SIGCONT,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set
}

/// Runs `run`; returns the exit code (the container's, or 128+N if it was
/// killed by signal N).
pub fn run(g: &Global, a: Args) -> Result<i32> {
    let set = forwarded();
    if !a.detach {
        // Blocked before the container exists, so no signal is lost; the
        // init unblocks everything before it execs the process.
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
            .context("sigprocmask")?;
    }
    let created = create(&a.flags.opts(g, &a.id))?;
    let pid = created.state.pid;
    if let Err(e) = container::start(&created.dir, &created.state) {
        let _ = container::destroy(created.dir, &created.state);
        return Err(e);
    }
    if a.detach {
        return Ok(0);
    }
    // Let other commands (state, kill, exec) at the container while it runs.
    drop(created.dir);
    let code = wait_forwarding(pid, &set)?;
    if !a.keep {
        container::delete(&g.root, &a.id, true)?;
    }
    Ok(code)
}

fn wait_forwarding(pid: i32, set: &SigSet) -> Result<i32> {
    let sfd = SignalFd::new(set).context("signalfd")?;
    loop {
        // Reap first: the process may be gone before any SIGCHLD is read.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return Ok(code),
                Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                    return Ok(128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => break,
                Ok(_) => continue,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e).context("waitpid"),
            }
        }
        match sfd.read_signal() {
            Ok(Some(info)) => {
                let sig = info.ssi_signo as i32;
                if sig != libc::SIGCHLD {
                    // SAFETY: plain syscall.
                    unsafe { libc::kill(pid, sig) };
                }
            }
            Ok(None) => {}
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e).context("read signalfd"),
        }
    }
}

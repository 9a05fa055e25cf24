//! `berth exec`: run a new process in a running container, as `runc exec`.

use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{Capability, Process, User};

use super::Global;
use crate::container::exec::{exec, ExecOpts};
use crate::container::state::ContainerDir;
use crate::foreground;

/// Arguments of `exec`.
#[derive(Debug, clap::Args)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// A process.json (the OCI `process` object) describing the process; the
    /// other process flags are then ignored.
    #[arg(short = 'p', long, value_name = "FILE")]
    process: Option<PathBuf>,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    tty: bool,
    /// Unix socket that receives the pty master (with --tty).
    #[arg(long = "console-socket", value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Set an environment variable (repeatable).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// UID[:GID] to run as.
    #[arg(short = 'u', long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// Additional group (repeatable).
    #[arg(short = 'g', long = "additional-gids", value_name = "GID")]
    additional_gids: Vec<u32>,
    /// Add a capability to the bounding, effective and permitted sets (repeatable).
    #[arg(short = 'c', long = "cap", value_name = "CAP")]
    cap: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Return once the process runs.
    #[arg(short = 'd', long)]
    detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file", value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Pass N extra descriptors (3 to 3+N-1) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0, value_name = "N")]
    preserve_fds: u32,
    /// AppArmor profile (refused: AppArmor is not enabled here).
    #[arg(long, value_name = "PROFILE")]
    apparmor: Option<String>,
    /// SELinux label (refused: SELinux is not enabled here).
    #[arg(long = "process-label", value_name = "LABEL")]
    process_label: Option<String>,
    /// Allow exec in a paused container.
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// Container ID.
    id: String,
    /// Command and arguments.
    args: Vec<String>,
}

fn parse_user(s: &str) -> Result<(u32, Option<u32>)> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = u
        .parse()
        .with_context(|| format!("--user {s:?}: UID must be a number"))?;
    let gid = g
        .map(|g| {
            g.parse()
                .with_context(|| format!("--user {s:?}: GID must be a number"))
        })
        .transpose()?;
    Ok((uid, gid))
}

fn build_process(a: &Args, base: Option<&Process>) -> Result<Process> {
    if let Some(p) = &a.process {
        let data = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
        return serde_json::from_slice(&data).with_context(|| format!("parse {}", p.display()));
    }
    if a.args.is_empty() {
        bail!("exec: no command given (berth exec ID COMMAND [ARGS...])");
    }
    let mut p = base.cloned().unwrap_or_default();
    p.set_args(Some(a.args.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(a.env.iter().cloned());
    p.set_env(Some(env));
    let mut user: User = p.user().clone();
    if let Some(u) = &a.user {
        let (uid, gid) = parse_user(u)?;
        user.set_uid(uid);
        if let Some(g) = gid {
            user.set_gid(g);
        }
    }
    if !a.additional_gids.is_empty() {
        user.set_additional_gids(Some(a.additional_gids.clone()));
    }
    p.set_user(user);
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let add = |set: &Option<oci_spec::runtime::Capabilities>, cap: Capability| {
            let mut set = set.clone().unwrap_or_default();
            set.insert(cap);
            Some(set)
        };
        for name in &a.cap {
            let cap: Capability = serde_json::from_value(serde_json::json!(name))
                .with_context(|| format!("--cap {name}: unknown capability"))?;
            caps.set_bounding(add(caps.bounding(), cap));
            caps.set_effective(add(caps.effective(), cap));
            caps.set_permitted(add(caps.permitted(), cap));
        }
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

/// Runs `exec`; returns the exit code of the process (0 with --detach).
pub fn run(g: &Global, a: Args) -> Result<i32> {
    if let Some(p) = a.apparmor.as_deref().filter(|p| !p.is_empty()) {
        bail!("apparmor profile {p:?} specified but AppArmor is not enabled on this system");
    }
    if let Some(l) = a.process_label.as_deref().filter(|l| !l.is_empty()) {
        bail!("selinux label {l:?} specified but SELinux is not enabled on this system");
    }
    let dir = ContainerDir::open(&g.root, &a.id)?;
    let state = dir.load()?;
    let mut process = build_process(&a, state.config.process().as_ref())?;
    let set = if a.detach {
        None
    } else {
        Some(foreground::block_signals()?)
    };
    let mut relay = None;
    let console = match &a.console_socket {
        Some(p) => Some(
            std::os::unix::net::UnixStream::connect(p)
                .with_context(|| format!("connect to console socket {}", p.display()))?,
        ),
        None if process.terminal().unwrap_or(false) && !a.detach => {
            let (theirs, ours) = foreground::console_pair()?;
            relay = Some(ours);
            // The process is running by the time its master comes back:
            // its first look at the window size must already be right.
            if process.console_size().is_none() {
                if let Some(ws) = foreground::window_size(std::io::stdin().as_fd()) {
                    let size = oci_spec::runtime::BoxBuilder::default()
                        .height(ws.rows as u64)
                        .width(ws.cols as u64)
                        .build()
                        .context("console size")?;
                    process.set_console_size(Some(size));
                }
            }
            Some(theirs)
        }
        None => None,
    };
    let opts = ExecOpts {
        process,
        console,
        pid_file: a.pid_file.clone(),
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
    };
    let pid = exec(&g.root, &dir, &state, opts)?;
    let master = match &relay {
        Some(r) => Some(foreground::receive_master(r)?),
        None => None,
    };
    drop(dir);
    match set {
        None => Ok(0),
        Some(set) => foreground::wait(pid, &set, master),
    }
}

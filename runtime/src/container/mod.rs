//! The container lifecycle: create, start, kill, delete, and the state view.

pub mod create;
pub mod exec;
pub mod state;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::Serialize;

use crate::hooks::{self, HookState};
use crate::process::init::START_TOKEN;
use crate::{cgroups, sys};
use state::{process_matches, ContainerDir, State, Status, START_SOCKET};

/// The JSON `berth state` prints (runc's shape).
#[derive(Debug, Serialize)]
pub struct StateView {
    /// Runtime spec version.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// Container ID.
    pub id: String,
    /// Host pid of the container process, 0 once stopped.
    pub pid: i32,
    /// Lifecycle status.
    pub status: String,
    /// Absolute bundle path.
    pub bundle: String,
    /// Absolute rootfs path.
    pub rootfs: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Annotations, if any.
    #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
    pub annotations: std::collections::HashMap<String, String>,
    /// Owner (empty for root).
    pub owner: String,
}

/// The state view of a container.
pub fn view(dir: &ContainerDir, state: &State) -> StateView {
    let status = dir.status(state);
    StateView {
        oci_version: oci_spec::runtime::VERSION.to_string(),
        id: state.id.clone(),
        pid: if status == Status::Stopped {
            0
        } else {
            state.pid
        },
        status: status.as_str().to_string(),
        bundle: state.bundle.to_string_lossy().into_owned(),
        rootfs: state.rootfs.to_string_lossy().into_owned(),
        created: state.created.clone(),
        annotations: state.annotations(),
        owner: state.owner.clone(),
    }
}

fn hook_state<'a>(
    state: &'a State,
    status: &'a str,
    annotations: &'a std::collections::HashMap<String, String>,
) -> HookState<'a> {
    HookState {
        oci_version: oci_spec::runtime::VERSION,
        id: &state.id,
        status,
        pid: Some(state.pid),
        bundle: &state.bundle,
        annotations: Some(annotations),
    }
}

/// `start`: releases the waiting init; returns once the user process runs
/// (or with the error that kept it from running).
pub fn start(dir: &ContainerDir, state: &State) -> Result<()> {
    match dir.status(state) {
        Status::Created => {}
        Status::Stopped => bail!("cannot start a container that has stopped"),
        Status::Running | Status::Paused => bail!("cannot start an already running container"),
        Status::Creating => bail!("container {} is still being created", state.id),
    }
    let sock = format!("/proc/self/fd/{}/{START_SOCKET}", dir.raw_fd());
    let mut conn = UnixStream::connect(&sock).context("connect to the container's init")?;
    conn.write_all(START_TOKEN)
        .context("signal the container's init")?;
    // The init closes the connection by execve (it is close-on-exec), or
    // writes why it could not run the process.
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    let _ = std::fs::remove_file(dir.start_socket());
    if !reply.is_empty() {
        bail!("{reply}");
    }
    let annotations = state.annotations();
    let hooks = state.config.hooks().clone().unwrap_or_default();
    hooks::run_all_warn(
        "poststart",
        hooks.poststart().as_deref().unwrap_or_default(),
        &hook_state(state, "running", &annotations),
    );
    Ok(())
}

/// `kill`: sends `sig` to the init, or with `all` to every process of the
/// container's cgroup.
pub fn kill(dir: &ContainerDir, state: &State, sig: i32, all: bool) -> Result<()> {
    if dir.status(state) == Status::Stopped {
        bail!("container not running");
    }
    let cgroup = cgroups::Cgroup::open(&state.cgroup_path)?;
    if all {
        return cgroup.signal_all(sig);
    }
    signal_init(state, sig)?;
    // A frozen v1 task does not die until thawed (runc thaws for SIGKILL).
    if sig == libc::SIGKILL && cgroup.is_frozen() {
        cgroup.thaw()?;
    }
    Ok(())
}

fn signal_init(state: &State, sig: i32) -> Result<()> {
    let pidfd = match sys::pidfd_open(state.pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => bail!("container not running"),
        Err(e) => return Err(e).with_context(|| format!("pidfd_open {}", state.pid)),
    };
    // The pidfd pins the process: if it is still ours now, the signal cannot
    // reach a reused pid.
    if !process_matches(state.pid, state.pid_start_time) {
        bail!("container not running");
    }
    sys::pidfd_send_signal(pidfd.as_fd(), sig)
        .with_context(|| format!("send signal {sig} to pid {}", state.pid))
}

/// Kills the container's processes and waits (up to `timeout`) for the init
/// to be gone.
fn kill_and_wait(state: &State, timeout: Duration) -> Result<()> {
    if let Ok(pidfd) = sys::pidfd_open(state.pid) {
        if process_matches(state.pid, state.pid_start_time) {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            // A paused container's init dies only once thawed (cgroup v1).
            if let Ok(cg) = cgroups::Cgroup::open(&state.cgroup_path) {
                if cg.is_frozen() {
                    cg.thaw()?;
                }
            }
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            let ms = PollTimeout::try_from(timeout.as_millis() as i32).unwrap_or(PollTimeout::MAX);
            loop {
                match poll(&mut fds, ms) {
                    Err(nix::Error::EINTR) => continue,
                    Ok(0) => bail!("container init {} did not exit after SIGKILL", state.pid),
                    _ => break,
                }
            }
        }
    }
    // Whatever else is left in the cgroup goes with it in `destroy`.
    Ok(())
}

/// `delete`: removes a stopped (or, with `force`, any) container.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let dir = match ContainerDir::open(root, id) {
        Ok(d) => d,
        Err(e) if force && e.to_string().contains("does not exist") => return Ok(()),
        Err(e) => return Err(e),
    };
    let state = match dir.load() {
        Ok(s) => s,
        Err(e) => {
            // A create that died before writing any state left only the
            // directory: nothing else of it can exist.
            if !dir.path.join(state::STATE_FILE).exists() {
                dir.remove()?;
                if force {
                    return Ok(());
                }
            }
            return Err(e);
        }
    };
    match dir.status(&state) {
        Status::Stopped => {}
        Status::Created | Status::Creating => kill_and_wait(&state, Duration::from_secs(10))?,
        s @ (Status::Running | Status::Paused) => {
            if !force {
                bail!(
                    "cannot delete container {id} that is not stopped: {}",
                    s.as_str()
                );
            }
            kill_and_wait(&state, Duration::from_secs(10))?;
        }
    }
    destroy(dir, &state)
}

/// Removes the cgroup (killing stragglers), runs poststop hooks, removes the
/// state directory.
pub fn destroy(dir: ContainerDir, state: &State) -> Result<()> {
    cgroups::remove(&state.cgroup_path)?;
    let annotations = state.annotations();
    let hooks = state.config.hooks().clone().unwrap_or_default();
    hooks::run_all_warn(
        "poststop",
        hooks.poststop().as_deref().unwrap_or_default(),
        &hook_state(state, "stopped", &annotations),
    );
    dir.remove()
}

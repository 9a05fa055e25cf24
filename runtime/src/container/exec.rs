//! `exec`: a new process in a running container.
//!
//! The process joins every namespace of the container's init through a pidfd
//! (one `setns` for all of them, the kernel orders them, user namespace
//! first), is moved into the container's cgroup by the parent, and runs
//! `berth init` from the sealed binary (CVE-2019-5736: it is visible inside the
//! container), which sets up credentials, capabilities, rlimits, cwd and the
//! terminal, then `execve`s.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::Process;

use super::create::write_pid_file;
use super::state::{process_matches, ContainerDir, State, Status};
use crate::process::{spawn, InitPlan};
use crate::sync::{self, Msg};
use crate::{cgroups, namespaces, sealed_exe, sys};

/// Options of `exec`.
pub struct ExecOpts {
    /// The process to run.
    pub process: Process,
    /// Connected console socket (for `process.terminal`).
    pub console: Option<UnixStream>,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
    /// `--ignore-paused`.
    pub ignore_paused: bool,
}

/// Namespaces of `pid` that differ from ours (only those are joined: joining
/// one's own user namespace is an error).
fn differing_namespaces(state: &State) -> Result<libc::c_int> {
    let mut flags = 0;
    let nss = state
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in nss {
        let name = namespaces::name(ns.typ());
        let theirs = std::fs::read_link(format!("/proc/{}/ns/{name}", state.pid))
            .with_context(|| format!("read the container's {name} namespace"))?;
        let ours = std::fs::read_link(format!("/proc/self/ns/{name}")).ok();
        if ours.as_ref() != Some(&theirs) {
            flags |= namespaces::flag(ns.typ());
        }
    }
    Ok(flags)
}

/// Starts the process; returns its host pid once it runs (the `execve`
/// succeeded) or the error that kept it from running.
pub fn exec(root: &std::path::Path, dir: &ContainerDir, state: &State, o: ExecOpts) -> Result<i32> {
    match dir.status(state) {
        Status::Running | Status::Created => {}
        Status::Paused if o.ignore_paused => {}
        Status::Paused => bail!("cannot exec in a paused container (use --ignore-paused)"),
        Status::Stopped => bail!("cannot exec in a stopped container"),
        Status::Creating => bail!("cannot exec in a container that is still being created"),
    }
    if o.process.args().as_ref().is_none_or(|a| a.is_empty()) {
        bail!("exec: no command given");
    }
    if !o.process.cwd().is_absolute() {
        bail!(
            "exec: cwd {} must be an absolute path",
            o.process.cwd().display()
        );
    }
    if o.process.terminal().unwrap_or(false) != o.console.is_some() {
        bail!("exec: a terminal needs a console socket, and a console socket needs a terminal");
    }
    let pidfd = sys::pidfd_open(state.pid).context("pidfd_open of the container's init")?;
    if !process_matches(state.pid, state.pid_start_time) {
        bail!("cannot exec in a stopped container");
    }
    let flags = differing_namespaces(state)?;
    let exe = sealed_exe::open(root)?;
    let (parent, child) = sync::pair()?;
    let pid = spawn::spawn_exec(&pidfd, flags, &exe, child)?;
    let guard = KillOnDrop(Some(pid));
    cgroups::Cgroup::open(&state.cgroup_path)?.add_process(pid)?;
    let plan = InitPlan {
        id: state.id.clone(),
        bundle: state.bundle.clone(),
        rootfs: state.rootfs.clone(),
        spec: state.config.clone(),
        process: o.process,
        host_pid: pid,
        no_pivot: false,
        no_new_keyring: true,
        preserve_fds: o.preserve_fds,
        extra_env: Vec::new(),
        new_cgroupns: false,
        cgroup_path: state.cgroup_path.clone(),
        console: o.console.is_some(),
        exec: true,
        exec_ns_flags: flags & !(libc::CLONE_NEWPID | libc::CLONE_NEWTIME),
    };
    let mut fds = vec![pidfd.as_raw_fd()];
    fds.extend(o.console.iter().map(|c| c.as_raw_fd()));
    let sent = parent.send_with_fds(&Msg::Plan(Box::new(plan)), &fds);
    drop(o.console);
    if let Err(e) = sent {
        // The child failed before reading the plan: its reason comes first.
        if let Ok(Some((Msg::Error(reason), _))) = parent.recv_with_fds() {
            bail!("{reason}");
        }
        return Err(e);
    }
    // The channel closes on a successful execve (it is close-on-exec).
    match parent.recv_with_fds()? {
        None => {}
        Some((Msg::Error(e), _)) => bail!("{e}"),
        Some((m, _)) => bail!("setup protocol: unexpected {m:?}"),
    }
    if let Some(p) = &o.pid_file {
        write_pid_file(p, pid)?;
    }
    guard.disarm();
    Ok(pid)
}

/// Kills and reaps the exec'd process if setting it up fails.
struct KillOnDrop(Option<i32>);

impl KillOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

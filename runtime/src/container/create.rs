//! `create`: the parent side of setting up a container.
//!
//! Order of events (each step undone by [`Cleanup`] if a later one fails):
//! 1. validate the bundle (nothing exists on the host yet);
//! 2. create and lock `--root/ID`, write a first `state.json` (pid 0) so a
//!    crash from here on can be cleaned by `delete --force`;
//! 3. create the cgroup and apply the resources;
//! 4. spawn the init into its namespaces (see `process::spawn`), move it
//!    into the cgroup, set `oom_score_adj`;
//! 5. send it the plan; run prestart/createRuntime hooks when it asks;
//! 6. on `Ready`, record its pid and start time, write the pid file.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::LinuxNamespaceType;

use super::state::{proc_stat, write_atomic, ContainerDir, State, START_SOCKET};
use crate::hooks::{self, HookState};
use crate::namespaces;
use crate::process::spawn::{self, SpawnConfig, Spawned};
use crate::process::{spec_process, InitPlan};
use crate::sync::{self, Msg};
use crate::{cgroups, config, failpoint, sealed_exe};

/// Options of `create` (and of `run`).
#[derive(Clone, Debug, Default)]
pub struct CreateOpts {
    /// `--root`.
    pub root: PathBuf,
    /// Container ID.
    pub id: String,
    /// `--bundle`.
    pub bundle: PathBuf,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--no-new-keyring`.
    pub no_new_keyring: bool,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
}

/// Undoes a partial create when dropped while armed.
struct Cleanup {
    dir: Option<ContainerDir>,
    cgroup: Option<PathBuf>,
    spawned: Spawned,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        use nix::sys::signal::{kill, Signal::SIGKILL};
        use nix::unistd::Pid;
        // The intermediate first: once it is reaped, the init (if any) is
        // re-parented to us (we are a child subreaper) and can be reaped too.
        for pid in [self.spawned.intermediate, self.spawned.init]
            .into_iter()
            .flatten()
        {
            let _ = kill(Pid::from_raw(pid), SIGKILL);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        }
        if let Some(cg) = &self.cgroup {
            if let Err(e) = cgroups::remove(cg) {
                crate::logging::warn(&format!("cleanup after failed create: {e:#}"));
            }
        }
        if let Err(e) = dir.remove() {
            crate::logging::warn(&format!("cleanup after failed create: {e:#}"));
        }
    }
}

/// A created container: its locked directory and state.
pub struct Created {
    /// The container directory, still locked.
    pub dir: ContainerDir,
    /// Its state.
    pub state: State,
}

/// Creates the container; on success the init waits for `start`. `console`
/// is the connected console socket (`--console-socket`) that receives the pty
/// master when `process.terminal` is true.
pub fn create(o: &CreateOpts, console: Option<UnixStream>) -> Result<Created> {
    let bundle =
        fs::canonicalize(&o.bundle).with_context(|| format!("bundle {}", o.bundle.display()))?;
    let spec = config::load(&bundle)?;
    config::validate(&spec)?;
    let rootfs = config::rootfs_path(&spec, &bundle)?;
    let cgroup_path = cgroups::cgroup_path(&spec, &o.id, o.systemd_cgroup)?;
    let ns = namespaces::Plan::from_spec(&spec);
    let joins = ns.open_joins()?;
    let process = spec_process(&spec);
    if process.terminal().unwrap_or(false) && console.is_none() {
        bail!("process.terminal is true: --console-socket is required");
    }
    if !process.terminal().unwrap_or(false) && console.is_some() {
        bail!("--console-socket was given but process.terminal is false");
    }
    let (preserve_fds, extra_env) = listen_fds(o.preserve_fds);
    check_preserved_fds(preserve_fds)?;

    let dir = ContainerDir::create(&o.root, &o.id)?;
    let mut state = State {
        id: o.id.clone(),
        pid: 0,
        pid_start_time: 0,
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        created: crate::logging::now_rfc3339(),
        owner: String::new(),
        cgroup_path: cgroup_path.clone(),
        config: spec,
    };
    let mut guard = Cleanup {
        dir: Some(dir),
        cgroup: None,
        spawned: Spawned::default(),
    };
    let dir = guard.dir.as_ref().expect("set above");
    dir.save(&state)?;
    failpoint::hit("create-after-state-dir");

    // The cgroup exists with its limits before the init does: the init only
    // has to be moved in, which keeps the parent's work after `clone` short.
    guard.cgroup = Some(cgroup_path.clone());
    let cgroup = cgroups::create(&cgroup_path, &state.config)?;
    failpoint::hit("create-after-cgroup");

    let exe = sealed_exe::open(&o.root)?;
    // Bound through the directory's descriptor: the socket path stays short
    // whatever the length of --root.
    let listener = UnixListener::bind(format!("/proc/self/fd/{}/{START_SOCKET}", dir.raw_fd()))
        .with_context(|| format!("bind {}", dir.start_socket().display()))?;
    let (parent, child) = sync::pair()?;
    // Orphans of the intermediate process come to us, so a failed create can
    // reap everything it started.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let linux = state.config.linux().clone().unwrap_or_default();
    let uid_maps = linux.uid_mappings().clone().unwrap_or_default();
    let gid_maps = linux.gid_mappings().clone().unwrap_or_default();
    let pid = spawn::spawn(
        SpawnConfig {
            ns: &ns,
            joins,
            exe: &exe,
            uid_maps: &uid_maps,
            gid_maps: &gid_maps,
            time_offsets: spawn::time_offsets(&state.config),
        },
        &parent,
        child,
        &mut guard.spawned,
    )?;
    drop(exe);
    cgroup.add_process(pid)?;
    failpoint::hit("create-after-spawn");
    if let Some(adj) = process.oom_score_adj() {
        let p = format!("/proc/{pid}/oom_score_adj");
        fs::write(&p, adj.to_string()).with_context(|| format!("write {p}"))?;
    }

    let plan = InitPlan {
        id: o.id.clone(),
        bundle: bundle.clone(),
        rootfs,
        spec: state.config.clone(),
        process,
        host_pid: pid,
        no_pivot: o.no_pivot,
        no_new_keyring: o.no_new_keyring,
        preserve_fds,
        extra_env,
        new_cgroupns: ns.creates(LinuxNamespaceType::Cgroup),
        cgroup_path: cgroup_path.clone(),
        console: console.is_some(),
        exec: false,
        exec_ns_flags: 0,
    };
    let mut fds = vec![listener.as_raw_fd()];
    fds.extend(console.as_ref().map(|c| c.as_raw_fd()));
    parent.send_with_fds(&Msg::Plan(Box::new(plan)), &fds)?;
    drop(listener);
    drop(console);
    failpoint::hit("create-after-plan");
    let hooks = state.config.hooks().clone().unwrap_or_default();
    loop {
        match parent.recv_with_fds()? {
            None => bail!("container init exited during setup{}", exit_note(pid)),
            Some((Msg::RunCreateRuntimeHooks, _)) => {
                let hs = HookState {
                    oci_version: oci_spec::runtime::VERSION,
                    id: &o.id,
                    status: "creating",
                    pid: Some(pid),
                    bundle: &bundle,
                    annotations: state.config.annotations().as_ref(),
                };
                #[allow(deprecated)]
                let prestart = hooks.prestart().clone().unwrap_or_default();
                failpoint::hit("create-in-hooks");
                hooks::run_all("prestart", &prestart, &hs)?;
                hooks::run_all(
                    "createRuntime",
                    hooks.create_runtime().as_deref().unwrap_or_default(),
                    &hs,
                )?;
                parent.send(&Msg::HooksDone)?;
            }
            Some((Msg::Ready, _)) => break,
            Some((Msg::Error(e), _)) => bail!("{e}"),
            Some((m, _)) => bail!("setup protocol: unexpected {m:?}"),
        }
    }
    failpoint::hit("create-after-ready");
    state.pid = pid;
    state.pid_start_time = proc_stat(pid)
        .map(|s| s.start_time)
        .context("container init vanished")?;
    dir.save(&state)?;
    failpoint::hit("create-after-state");
    if let Some(p) = &o.pid_file {
        write_pid_file(p, pid)?;
    }
    let dir = guard.dir.take().expect("set above");
    Ok(Created { dir, state })
}

/// `LISTEN_FDS` from the caller's environment adds that many descriptors to
/// the preserved ones and tells the container they are its sockets.
fn listen_fds(preserve: u32) -> (u32, Vec<String>) {
    match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(n) if n > 0 => (
            preserve + n,
            vec![format!("LISTEN_FDS={n}"), "LISTEN_PID=1".to_string()],
        ),
        _ => (preserve, Vec::new()),
    }
}

/// Every descriptor to pass on must be open in berth: otherwise the number
/// would be free for berth's own files, which would then reach the container.
fn check_preserved_fds(n: u32) -> Result<()> {
    for fd in 3..3 + n as i32 {
        if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
            bail!("descriptor {fd} is to be preserved (--preserve-fds/LISTEN_FDS) but is not open");
        }
    }
    Ok(())
}

fn exit_note(pid: i32) -> String {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => format!(" (exit status {code})"),
        Ok(WaitStatus::Signaled(_, sig, _)) => format!(" (killed by {sig})"),
        _ => String::new(),
    }
}

/// Writes the pid file atomically, as runc does (callers poll for it).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    write_atomic(&path, pid.to_string().as_bytes(), 0o644)
}

//! `berth init`: the container's first process, run from the sealed binary
//! inside the container's namespaces.
//!
//! It receives the [`InitPlan`] from the parent, builds the root filesystem,
//! sets up the process (hostname, sysctls, terminal, rlimits, user,
//! capabilities, no_new_privs, cwd) and reports `Ready`. Then it blocks on the
//! start socket until `berth start` connects, runs the startContainer hooks and
//! `execve`s the user process. A failure before `Ready` reaches `berth create`
//! on the setup channel; a failure after it reaches `berth start` on the start
//! connection.
//!
//! Descriptor hygiene (CVE-2024-21626): the first thing done is marking every
//! descriptor above the preserved ones close-on-exec, and again right before
//! `execve`; everything berth opens is close-on-exec anyway. The working
//! directory is resolved inside the container's root, magic links refused, and
//! checked to be reachable from `/` after the switch.

use std::convert::Infallible;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::{caps, rlimits, sched, user, InitPlan, INIT_FD_ENV};
use crate::console::{self, WinSize};
use crate::hooks::{self, HookState};
use crate::namespaces;
use crate::rootfs::{self, resolve, RootfsCtx};
use crate::seccomp;
use crate::sync::{Channel, Msg};
use crate::{sys, sysctl};

/// The message `berth start` sends on the start socket.
pub const START_TOKEN: &[u8] = b"start";

/// Entry point of `berth init`; never returns.
pub fn main() -> ! {
    let fd = match std::env::var(INIT_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    {
        Some(fd) => fd,
        None => {
            eprintln!("berth init is internal to berth and cannot be run by hand");
            sys::exit_now(1);
        }
    };
    // SAFETY: the parent passed this descriptor for us alone.
    let chan = unsafe { Channel::from_raw(fd) };
    let err = match run(&chan) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = chan.send(&Msg::Error(format!("{err:#}")));
    sys::exit_now(1)
}

fn run(chan: &Channel) -> Result<Infallible> {
    let (msg, fds) = chan
        .recv_with_fds()?
        .context("berth went away before sending the plan")?;
    let Msg::Plan(plan) = msg else {
        bail!("setup protocol: expected a plan, got {msg:?}")
    };
    // Nothing the caller of berth left open, beyond the preserved descriptors,
    // may reach the container.
    sys::cloexec_from(3 + plan.preserve_fds).context("close_range")?;
    nix::unistd::setsid().context("setsid")?;
    if let Some(cpus) = plan
        .process
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.initial().clone())
    {
        sched::set_affinity(&cpus)?;
    }
    if let Some(p) = plan
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.personality().as_ref())
    {
        sched::apply_personality(p)?;
    }
    let mut fds = fds.into_iter();
    if plan.exec {
        let pidfd = fds
            .next()
            .context("pidfd of the container's init missing")?;
        let console_socket = if plan.console {
            Some(fds.next().context("console socket missing")?)
        } else {
            None
        };
        // The container's filter; a NOTIFY agent is reached while the host's
        // paths are still visible (before joining the mount namespace).
        let seccomp = match plan
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
        {
            Some(s) => {
                let state = HookState {
                    oci_version: oci_spec::runtime::VERSION,
                    id: &plan.id,
                    status: "running",
                    pid: Some(plan.host_pid),
                    bundle: &plan.bundle,
                    annotations: plan.spec.annotations().as_ref(),
                };
                let state = serde_json::to_value(state).context("container state")?;
                Some(seccomp::Installer::new(s, state)?)
            }
            None => None,
        };
        if plan.exec_ns_flags != 0 {
            super::spawn::setns_pidfd(&pidfd, plan.exec_ns_flags)
                .context("join the container's namespaces")?;
        }
        if plan.exec_ns_flags & libc::CLONE_NEWUSER != 0 {
            super::spawn::become_ns_root()?;
        }
        drop(pidfd);
        return exec_process(&plan, console_socket, seccomp);
    }
    let listener = UnixListener::from(fds.next().context("start socket missing")?);
    let console_socket = if plan.console {
        Some(fds.next().context("console socket missing")?)
    } else {
        None
    };
    // Device nodes get exactly the modes of the config; the process's umask
    // is set with its user.
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0) };
    if plan.new_cgroupns {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .context("unshare cgroup namespace")?;
    }
    if !plan.no_new_keyring {
        join_session_keyring(&plan.id)?;
    }

    let spec = &plan.spec;
    let ns = namespaces::Plan::from_spec(spec);
    let state = |status| HookState {
        oci_version: oci_spec::runtime::VERSION,
        id: &plan.id,
        status,
        pid: Some(plan.host_pid),
        bundle: &plan.bundle,
        annotations: spec.annotations().as_ref(),
    };
    let hooks = spec.hooks().clone().unwrap_or_default();
    // seccomp: compiled now, and the NOTIFY agent reached while the host's
    // paths are still visible; loaded by prepare_process.
    let mut seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(seccomp::Installer::new(
            s,
            serde_json::to_value(state("creating")).context("container state")?,
        )?),
        None => None,
    };
    let setup_root = ns.creates(LinuxNamespaceType::Mount);
    if setup_root {
        rootfs::prepare(&RootfsCtx {
            spec,
            rootfs: &plan.rootfs,
            bundle: &plan.bundle,
            cgroup_path: &plan.cgroup_path,
            ns: &ns,
        })?;
    }
    // prestart and createRuntime hooks run in the runtime's namespaces: the
    // parent runs them while we wait.
    chan.send(&Msg::RunCreateRuntimeHooks)?;
    chan.expect(Msg::HooksDone)?;
    hooks::run_all(
        "createContainer",
        hooks.create_container().as_deref().unwrap_or_default(),
        &state("creating"),
    )?;
    if setup_root {
        rootfs::pivot(&plan.rootfs, plan.no_pivot)?;
    }

    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).with_context(|| format!("sethostname {h}"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        set_domainname(d)?;
    }
    let linux = spec.linux().as_ref();
    if let Some(s) = linux.and_then(|l| l.sysctl().as_ref()) {
        sysctl::apply(s)?;
    }
    let process = &plan.process;
    terminal(process, console_socket, true)?;
    if setup_root {
        rootfs::finalize(spec)?;
    }

    let prepared = prepare_process(process, &plan.extra_env, seccomp.as_mut())?;
    chan.send(&Msg::Ready)?;

    let mut conn = wait_for_start(&listener)?;
    let r = (|| -> Result<Infallible> {
        hooks::run_all(
            "startContainer",
            hooks.start_container().as_deref().unwrap_or_default(),
            &state("created"),
        )?;
        exec(&prepared, plan.preserve_fds)
    })();
    let err = match r {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = conn.write_all(format!("{err:#}").as_bytes());
    sys::exit_now(1)
}

/// `berth exec`: the process already sits in the container's namespaces and
/// cgroup; set it up and run it. The parent learns of success when the
/// channel (close-on-exec) closes without an error message.
fn exec_process(
    plan: &InitPlan,
    console_socket: Option<OwnedFd>,
    mut seccomp: Option<seccomp::Installer>,
) -> Result<Infallible> {
    let process = &plan.process;
    terminal(process, console_socket, false)?;
    let prepared = prepare_process(process, &plan.extra_env, seccomp.as_mut())?;
    exec(&prepared, plan.preserve_fds)
}

/// With `process.terminal`: a pty from the container's devpts as the
/// process's controlling terminal and stdio, its master sent to the console
/// socket (and, for the container's init, bound onto `/dev/console`).
fn terminal(process: &Process, console_socket: Option<OwnedFd>, bind_console: bool) -> Result<()> {
    if !process.terminal().unwrap_or(false) {
        return Ok(());
    }
    let socket =
        console_socket.context("process.terminal is set but no console socket was given")?;
    let size = process.console_size().map(|b| WinSize {
        rows: b.height() as u16,
        cols: b.width() as u16,
    });
    let slave = console::setup(&socket, size, bind_console)?;
    console::make_controlling(&slave)
}

/// The user process, ready to be `execve`d.
pub struct Prepared {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

/// Sets rlimits, switches user and capabilities, enters the working
/// directory, resolves the executable and loads the seccomp filter; what
/// remains is `execve`.
pub fn prepare_process(
    process: &Process,
    extra_env: &[String],
    mut seccomp: Option<&mut seccomp::Installer>,
) -> Result<Prepared> {
    rlimits::apply(process.rlimits().as_deref().unwrap_or_default())?;
    // Scheduling first: raising priorities needs the capabilities the user
    // switch below may drop.
    if let Some(s) = process.scheduler() {
        sched::apply_scheduler(s)?;
    }
    if let Some(io) = process.io_priority() {
        sched::apply_io_priority(io.class(), io.priority())?;
    }
    let caps = caps::plan(process.capabilities().as_ref())?;
    caps::drop_bounding(&caps)?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    // seccomp, without no_new_privs: loading a filter then needs
    // CAP_SYS_ADMIN, so it happens before the user and capability switch
    // (and no_new_privs stays clear, as the config asks).
    if let Some(s) = seccomp.as_mut().filter(|_| !nnp) {
        s.install()?;
    }
    let u = process.user();
    user::switch(u, setgroups_allowed())?;
    caps::apply(&caps)?;
    if nnp {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_NO_NEW_PRIVS)");
        }
    }
    enter_cwd(process.cwd())?;
    if let Some(cpus) = process
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.cpu_affinity_final().clone())
    {
        sched::set_affinity(&cpus)?;
    }

    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    env.extend(extra_env.iter().cloned());
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user::home_dir(u.uid())));
    }
    let path_var = env.iter().rev().find_map(|e| e.strip_prefix("PATH="));
    let args = process.args().clone().unwrap_or_default();
    let path = lookup(&args[0], path_var)?;
    let cs = |s: &str| CString::new(s).with_context(|| format!("{s:?} contains a NUL byte"));
    let prepared = Prepared {
        path: CString::new(path.as_os_str().as_encoded_bytes()).context("executable path")?,
        args: args.iter().map(|a| cs(a)).collect::<Result<_>>()?,
        env: env.iter().map(|e| cs(e)).collect::<Result<_>>()?,
    };
    // seccomp, with no_new_privs: as late as possible, so the profile
    // constrains as little of berth's own setup as possible (as runc).
    if let Some(s) = seccomp.filter(|_| nnp) {
        s.install()?;
    }
    Ok(prepared)
}

/// Resets signals, closes what must not leak, and runs the process.
pub fn exec(p: &Prepared, preserve_fds: u32) -> Result<Infallible> {
    reset_signals();
    sys::cloexec_from(3 + preserve_fds).context("close_range")?;
    for fd in 3..3 + preserve_fds as i32 {
        // Preserved descriptors pass through execve even if the caller made
        // them close-on-exec; a closed one is not an error (runc ignores it).
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        );
    }
    let argv = sys::ptr_array(&p.args);
    let envp = sys::ptr_array(&p.env);
    // SAFETY: NULL-terminated arrays of C strings that outlive the call.
    unsafe { libc::execve(p.path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Err(std::io::Error::last_os_error()).with_context(|| format!("exec {:?}", p.path))
}

fn wait_for_start(listener: &UnixListener) -> Result<UnixStream> {
    loop {
        let (mut conn, _) = listener.accept().context("accept on start socket")?;
        let mut buf = [0u8; 16];
        let mut got = 0;
        while got < START_TOKEN.len() {
            match conn.read(&mut buf[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        if &buf[..got] == START_TOKEN {
            return Ok(conn);
        }
    }
}

fn reset_signals() {
    // SAFETY: resetting dispositions and the mask affects only this process,
    // which is about to execve.
    unsafe {
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() != "deny")
        .unwrap_or(true)
}

/// Enters `cwd`, resolved inside the container's root without magic links,
/// and refuses a working directory outside it.
fn enter_cwd(cwd: &Path) -> Result<()> {
    let root = sys::openat(
        libc::AT_FDCWD,
        Path::new("/"),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .context("open /")?;
    let dir = resolve::open(root.as_fd(), cwd, libc::O_PATH | libc::O_DIRECTORY)
        .with_context(|| format!("cwd {}", cwd.display()))?;
    nix::unistd::fchdir(dir.as_raw_fd()).with_context(|| format!("chdir {}", cwd.display()))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        Ok(p) => bail!(
            "cwd {} resolves outside the container ({})",
            cwd.display(),
            p.display()
        ),
        Err(e) => Err(e).with_context(|| {
            format!(
                "cwd {} is not reachable from the container's root",
                cwd.display()
            )
        }),
    }
}

/// Finds the executable as `execvp` would, in the container's root.
fn lookup(arg0: &str, path_var: Option<&str>) -> Result<PathBuf> {
    use nix::unistd::{access, AccessFlags};
    let usable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file()) && access(p, AccessFlags::X_OK).is_ok()
    };
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        match std::fs::metadata(&p) {
            Err(e) => {
                let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT));
                bail!("exec: {arg0:?}: {}", errno.desc().to_lowercase())
            }
            Ok(m) if m.is_dir() => bail!("exec: {arg0:?}: is a directory"),
            Ok(_) if !usable(&p) => bail!("exec: {arg0:?}: permission denied"),
            Ok(_) => return Ok(p),
        }
    }
    let path_var =
        path_var.unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path_var.split(':') {
        let p = Path::new(if dir.is_empty() { "." } else { dir }).join(arg0);
        if usable(&p) {
            return Ok(p);
        }
    }
    bail!("exec: {arg0:?}: executable file not found in $PATH")
}

fn set_domainname(name: &str) -> Result<()> {
    // SAFETY: pointer and length of a valid buffer.
    if unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) } < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setdomainname {name}"));
    }
    Ok(())
}

/// A session keyring of the container's own, so it cannot see the caller's
/// keys (runc does the same unless `--no-new-keyring`).
fn join_session_keyring(id: &str) -> Result<()> {
    let name = CString::new(id).context("container id")?;
    // SAFETY: KEYCTL_JOIN_SESSION_KEYRING takes a C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            1, /* KEYCTL_JOIN_SESSION_KEYRING */
            name.as_ptr(),
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        // Kernels without keyrings, or a quota in a user namespace, are no
        // reason to fail the container (runc ignores ENOSYS the same way).
        if !matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EDQUOT)) {
            return Err(e).context("join a new session keyring");
        }
    }
    Ok(())
}

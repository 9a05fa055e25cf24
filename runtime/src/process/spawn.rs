//! Starting the container's init in its namespaces.
//!
//! Two ways, picked by the configuration:
//!
//! - **direct** (the common case: every namespace is new, no time namespace):
//!   one `clone` with all `CLONE_NEW*` flags. The child waits for its id maps
//!   if it has a user namespace, becomes root in it, and `execveat`s the sealed
//!   berth binary as `berth init`.
//! - **intermediate** (a namespace is joined by path, or a time namespace is
//!   asked for): a plain fork joins the namespaces by path (user first, while
//!   it still holds the host's capabilities), unshares the user namespace (the
//!   parent writes the maps), unshares the rest, writes the time offsets, and
//!   forks the init, whose pid it reports before exiting.
//!
//! Between `clone` and `execveat` the child only makes system calls and talks
//! on the channel; the CLI is single-threaded, so the forked copy of the heap
//! is consistent. The cgroup namespace is created later by the init, once the
//! parent has moved it into its cgroup, so that the namespace's root is the
//! container's cgroup.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType};

use super::INIT_FD_ENV;
use crate::namespaces::{self, Plan};
use crate::sync::{Channel, Msg};
use crate::sys;

/// What the spawner needs besides the namespace plan.
pub struct SpawnConfig<'a> {
    /// Namespaces to create and join.
    pub ns: &'a Plan,
    /// Opened namespace files to join, in join order.
    pub joins: Vec<(LinuxNamespaceType, File)>,
    /// Sealed handle on the berth binary.
    pub exe: &'a OwnedFd,
    /// uid mappings of a new user namespace.
    pub uid_maps: &'a [LinuxIdMapping],
    /// gid mappings of a new user namespace.
    pub gid_maps: &'a [LinuxIdMapping],
    /// Contents for `/proc/self/timens_offsets` of a new time namespace.
    pub time_offsets: Option<String>,
}

/// Pids of the processes a spawn started, for cleanup on failure.
#[derive(Default, Debug)]
pub struct Spawned {
    /// The container's init.
    pub init: Option<i32>,
    /// The intermediate process, if one was used.
    pub intermediate: Option<i32>,
}

/// Starts the init; returns its host pid once it runs `berth init` (or failed).
/// `parent` and `child` are the two ends of the setup channel.
pub fn spawn(cfg: SpawnConfig, parent: &Channel, child: Channel, out: &mut Spawned) -> Result<i32> {
    let argv = [CString::from(c"berth"), CString::from(c"init")];
    let envp = [CString::new(format!("{INIT_FD_ENV}={}", child.raw())).expect("no NUL")];
    let exec = ExecArgs {
        exe: cfg.exe.as_raw_fd(),
        argv: sys::ptr_array(&argv),
        envp: sys::ptr_array(&envp),
    };
    let new_user = cfg.ns.creates(LinuxNamespaceType::User);
    let direct = cfg.joins.is_empty() && !cfg.ns.creates(LinuxNamespaceType::Time);

    if direct {
        let flags = (cfg.ns.new & !libc::CLONE_NEWCGROUP) as libc::c_ulong;
        // SAFETY: berth's CLI is single-threaded (see the module doc).
        let pid = unsafe { sys::clone_fork(flags) }.context("clone")?;
        if pid == 0 {
            child_direct(&child, new_user, &exec);
        }
        drop(child);
        out.init = Some(pid);
        if new_user {
            write_id_maps(pid, cfg.uid_maps, cfg.gid_maps)?;
            parent.send(&Msg::IdMapsWritten)?;
        }
        return Ok(pid);
    }

    // SAFETY: as above.
    let pid = unsafe { sys::clone_fork(0) }.context("fork")?;
    if pid == 0 {
        intermediate(&cfg, &child, &exec);
    }
    drop(child);
    out.intermediate = Some(pid);
    let init = loop {
        match parent.recv_with_fds()? {
            None => bail!("namespace setup process exited before starting the init"),
            Some((Msg::WriteIdMaps, _)) => {
                write_id_maps(pid, cfg.uid_maps, cfg.gid_maps)?;
                parent.send(&Msg::IdMapsWritten)?;
            }
            Some((Msg::InitPid(p), _)) => break p,
            Some((Msg::Error(e), _)) => bail!("{e}"),
            Some((m, _)) => bail!("setup protocol: unexpected {m:?}"),
        }
    };
    out.init = Some(init);
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)
        .context("wait for intermediate process")?;
    out.intermediate = None;
    Ok(init)
}

/// Starts the process of `berth exec`. It runs `berth init` from the sealed
/// binary at once (still in berth's own namespaces: `execveat` of a handle on
/// a detached mount fails once in another mount namespace); the init then
/// joins the container's namespaces through the pidfd it gets with its plan.
/// The pid and time namespaces only apply to children, so this process
/// enters them "for children" first and the fork lands inside them. Returns
/// the host pid.
pub fn spawn_exec(
    pidfd: &OwnedFd,
    ns_flags: libc::c_int,
    exe: &OwnedFd,
    child: Channel,
) -> Result<i32> {
    let argv = [CString::from(c"berth"), CString::from(c"init")];
    let envp = [CString::new(format!("{INIT_FD_ENV}={}", child.raw())).expect("no NUL")];
    let exec = ExecArgs {
        exe: exe.as_raw_fd(),
        argv: sys::ptr_array(&argv),
        envp: sys::ptr_array(&envp),
    };
    let for_children = ns_flags & (libc::CLONE_NEWPID | libc::CLONE_NEWTIME);
    if for_children != 0 {
        setns_pidfd(pidfd, for_children).context("join the container's pid/time namespaces")?;
    }
    // SAFETY: berth's CLI is single-threaded (see the module doc).
    let pid = unsafe { sys::clone_fork(0) }.context("fork")?;
    if pid == 0 {
        match exec_init(&child, &exec) {
            Ok(()) => sys::exit_now(1),
            Err(e) => fail(&child, e),
        }
    }
    Ok(pid)
}

/// `setns(2)` into several namespaces of the process behind `pidfd` at once.
pub fn setns_pidfd(pidfd: &OwnedFd, flags: libc::c_int) -> std::io::Result<()> {
    // SAFETY: plain syscall on a valid pidfd.
    if unsafe { libc::setns(pidfd.as_raw_fd(), flags) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

struct ExecArgs {
    exe: i32,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

/// Reports `err` on the channel and exits: the parent turns it into the error
/// of `create`.
fn fail(chan: &Channel, err: anyhow::Error) -> ! {
    let _ = chan.send(&Msg::Error(format!("{err:#}")));
    sys::exit_now(1)
}

fn child_direct(chan: &Channel, new_user: bool, exec: &ExecArgs) -> ! {
    let r = (|| -> Result<()> {
        if new_user {
            chan.expect(Msg::IdMapsWritten)?;
            become_ns_root()?;
        }
        exec_init(chan, exec)
    })();
    match r {
        Ok(()) => sys::exit_now(1),
        Err(e) => fail(chan, e),
    }
}

fn intermediate(cfg: &SpawnConfig, chan: &Channel, exec: &ExecArgs) -> ! {
    let r = (|| -> Result<()> {
        for (t, f) in &cfg.joins {
            namespaces::join(*t, f)
                .with_context(|| format!("join {} namespace", namespaces::name(*t)))?;
        }
        if cfg.ns.creates(LinuxNamespaceType::User) {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
                .context("unshare user namespace")?;
            chan.send(&Msg::WriteIdMaps)?;
            chan.expect(Msg::IdMapsWritten)?;
            become_ns_root()?;
        }
        let rest = cfg.ns.new & !(libc::CLONE_NEWUSER | libc::CLONE_NEWCGROUP);
        if rest != 0 {
            // SAFETY: plain syscall.
            if unsafe { libc::unshare(rest) } < 0 {
                return Err(std::io::Error::last_os_error()).context("unshare namespaces");
            }
        }
        if let Some(offsets) = &cfg.time_offsets {
            std::fs::write("/proc/self/timens_offsets", offsets)
                .context("write /proc/self/timens_offsets")?;
        }
        // SAFETY: single-threaded, as everywhere in the CLI.
        let pid = unsafe { sys::clone_fork(0) }.context("fork init")?;
        if pid == 0 {
            let r = exec_init(chan, exec);
            match r {
                Ok(()) => sys::exit_now(1),
                Err(e) => fail(chan, e),
            }
        }
        chan.send(&Msg::InitPid(pid))?;
        Ok(())
    })();
    match r {
        Ok(()) => sys::exit_now(0),
        Err(e) => fail(chan, e),
    }
}

/// Makes the process root of its (new) user namespace, so that it keeps its
/// capabilities across `execve`.
pub fn become_ns_root() -> Result<()> {
    // SAFETY: plain syscalls.
    unsafe {
        if libc::setresgid(0, 0, 0) < 0 {
            return Err(std::io::Error::last_os_error()).context("setresgid(0) in user namespace");
        }
        if libc::setresuid(0, 0, 0) < 0 {
            return Err(std::io::Error::last_os_error()).context("setresuid(0) in user namespace");
        }
    }
    Ok(())
}

fn exec_init(chan: &Channel, exec: &ExecArgs) -> Result<()> {
    // Only the channel crosses into `berth init`; every other descriptor of
    // the parent is close-on-exec.
    nix::fcntl::fcntl(
        chan.raw(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .context("clear close-on-exec on the setup channel")?;
    let err = sys::execveat_fd(exec.exe, &exec.argv, &exec.envp);
    Err(err).context("execveat sealed berth binary")
}

/// Writes `/proc/PID/{uid,gid}_map` of a child's new user namespace.
pub fn write_id_maps(pid: i32, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<()> {
    let fmt = |maps: &[LinuxIdMapping]| {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (file, maps) in [("uid_map", uids), ("gid_map", gids)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, fmt(maps)).with_context(|| format!("write {path}"))?;
    }
    Ok(())
}

/// Formats `linux.timeOffsets` for `/proc/self/timens_offsets`.
pub fn time_offsets(spec: &oci_spec::runtime::Spec) -> Option<String> {
    let offsets = spec.linux().as_ref()?.time_offsets().as_ref()?;
    let mut s = String::new();
    for (clock, off) in offsets {
        s.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    Some(s)
}

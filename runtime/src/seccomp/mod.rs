//! `linux.seccomp`: the OCI profile compiled to a BPF program and loaded
//! into the container process.
//!
//! # Design
//!
//! The goal is libseccomp's verdict (what runc and crun load) for every
//! architecture, syscall number and argument, with berth's own code
//! generation. The filter compiler is Firecracker's `seccompiler`, which
//! does not map 1:1 onto the OCI model; the gaps and how they are closed:
//!
//! - **One match action per filter** in seccompiler, while profiles mix
//!   ALLOW, ERRNO(n), KILL... berth uses seccompiler only for what it does
//!   well, the argument checks of one rule (`SeccompRule` to BPF, 64-bit
//!   comparisons on 32-bit BPF words), and lays out the program itself
//!   ([`compile`]): an architecture dispatch, a binary search over syscall
//!   number intervals, and per syscall an ordered list of rules, each
//!   followed by its own `ret ACTION`.
//! - **Which rule wins** when several match is libseccomp's ([`policy`]):
//!   an unconditional rule for a syscall beats its conditional ones (the
//!   first unconditional one wins); conditional rules are tried in the
//!   order of libseccomp's decision tree (higher argument index first,
//!   then `==`/`!=`/masked before `<`/`<=` before `>`/`>=`, then the more
//!   specific value), and a rule whose checks are a prefix of another's
//!   comes first. Rules whose action is the default action are dropped
//!   (runc and crun skip them, libseccomp refuses them); two checks of the
//!   same argument in one entry become separate rules (runc and crun do
//!   that too, libseccomp refuses them in one rule); two rules with equal
//!   checks and different actions are an error (libseccomp's EEXIST).
//!   Where libseccomp 2.5 itself is inconsistent (its verdict depends on
//!   the order rules were added, or its code generator reuses a stale
//!   accumulator and returns a verdict no rule asks for; both happen with
//!   several argument rules of mixed actions on one syscall) berth gives
//!   the order-independent, rule-exact verdict; the differential test
//!   counts those cases separately.
//! - **No NOTIFY, no flags** in seccompiler's API: berth emits
//!   `SECCOMP_RET_USER_NOTIF` itself and loads the program with
//!   `seccomp(2)` ([`load`]), passing `SECCOMP_FILTER_FLAG_LOG`,
//!   `SPEC_ALLOW`, `WAIT_KILLABLE_RECV` as given and adding `NEW_LISTENER`
//!   when a rule notifies; the listener goes to the agent ([`notify`]).
//!   `TSYNC` is accepted and not passed: the process that loads the filter
//!   has a single thread (and the kernel refuses TSYNC with NEW_LISTENER).
//! - **`apply_filter` forces no_new_privs**: berth never calls it. With
//!   `noNewPrivileges: false` the filter is loaded while the init still
//!   holds `CAP_SYS_ADMIN` (before the user switch), so no_new_privs stays
//!   clear; with `true`, as late as possible, after no_new_privs and the
//!   working directory, right before the init reports ready (as runc).
//! - **Syscall names** are resolved by berth ([`syscalls`]) per
//!   architecture, from tables generated out of the kernel headers and
//!   libseccomp (`scripts/gen-seccomp-tables`) plus the syscalls newer than
//!   libseccomp 2.5. A name unknown on every filtered architecture is
//!   skipped with a warning (runc and crun do the same); a name known on
//!   one architecture only gets a rule there. On i386 the socket and IPC
//!   calls also get a rule on `socketcall(2)`/`ipc(2)` with the sub-call as
//!   argument 0, as libseccomp does.
//! - **x32 and i386** are told apart as libseccomp does: i386 by its audit
//!   value; x32 shares x86_64's audit value and is recognised by
//!   `__X32_SYSCALL_BIT` in the number. An architecture the profile does
//!   not list, including x32 numbers in an x86_64-only filter, gets
//!   libseccomp's bad-architecture action, `SECCOMP_RET_KILL_THREAD`
//!   (seccompiler would kill the process on any other audit value and
//!   ignore x32 numbers). Arguments of 32-bit ABIs are compared on their
//!   low 32 bits. Architectures that cannot run on this host (arm64 on
//!   x86_64...) are accepted and need no rules.
//!
//! The resulting [`Policy::verdict`] is the specification; the compiled
//! program is tested against it and against libseccomp's own BPF
//! (`runtime/tests/seccomp_differential.rs`).

pub mod compile;
pub mod interp;
pub mod load;
pub mod notify;
pub mod policy;
pub mod syscalls;
mod tables;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use seccompiler::BpfProgram;
use serde_json::{json, Value};

pub use policy::Policy;
pub use syscalls::Arch;

/// A profile compiled and checked, ready to load.
#[derive(Debug)]
pub struct Prepared {
    /// The resolved profile.
    pub policy: Policy,
    /// The BPF program.
    pub program: BpfProgram,
    /// `SECCOMP_FILTER_FLAG_*` to load it with (`NEW_LISTENER` included
    /// when a rule notifies).
    pub flags: u64,
    /// The agent's socket, when a rule notifies.
    pub listener_path: Option<PathBuf>,
    /// `listenerMetadata`.
    pub listener_metadata: String,
}

/// Compiles `linux.seccomp`. Every error a profile can cause is found here,
/// before anything is created on the host.
pub fn prepare(s: &LinuxSeccomp) -> Result<Prepared> {
    let policy = Policy::from_oci(s)?;
    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        let (_, _, bit) = load::FLAGS
            .iter()
            .find(|x| x.0 == *f)
            .expect("all OCI flags are known");
        if *bit != load::FLAG_TSYNC {
            flags |= bit;
        }
    }
    let listener_path = s
        .listener_path()
        .clone()
        .filter(|p| !p.as_os_str().is_empty());
    if policy.uses_notify {
        match &listener_path {
            None => bail!("SCMP_ACT_NOTIFY is used but linux.seccomp.listenerPath is not set"),
            Some(p) if !p.is_absolute() => {
                bail!(
                    "linux.seccomp.listenerPath {} must be absolute",
                    p.display()
                )
            }
            Some(_) => {}
        }
        // berth's own sendmsg hands the listener to the agent right after
        // the load: a notified sendmsg would wait for an agent that has no
        // listener yet.
        for (arch, table) in &policy.arches {
            for t in syscalls::resolve(*arch, "sendmsg") {
                let syscalls::Target::Direct(nr) = t else {
                    continue;
                };
                let notifies = match table.get(&nr) {
                    Some(policy::Verdict::Always(a)) => *a == policy::ret::USER_NOTIF,
                    Some(policy::Verdict::Rules(r)) => {
                        r.iter().any(|r| r.action == policy::ret::USER_NOTIF)
                    }
                    None => false,
                };
                if notifies {
                    bail!("SCMP_ACT_NOTIFY cannot be used for sendmsg: berth needs it to reach the agent");
                }
            }
        }
        flags |= load::FLAG_NEW_LISTENER;
    }
    let program = compile::compile(&policy)?;
    Ok(Prepared {
        policy,
        program,
        flags,
        listener_path,
        listener_metadata: s.listener_metadata().clone().unwrap_or_default(),
    })
}

impl Prepared {
    /// Loads the filter into the calling thread; returns the listener
    /// descriptor when a rule notifies (to hand to the agent).
    pub fn load(&self) -> Result<Option<OwnedFd>> {
        load::install(&self.program, self.flags)
    }

    /// The agent's socket, if the profile notifies.
    pub fn agent_path(&self) -> Option<&Path> {
        if self.flags & load::FLAG_NEW_LISTENER != 0 {
            self.listener_path.as_deref()
        } else {
            None
        }
    }
}

/// Loads a container's filter and, for NOTIFY, hands the listener to the
/// agent: what `berth init` (and `berth exec`) do once, at the right point
/// of the process setup.
pub struct Installer {
    prepared: Prepared,
    agent: Option<notify::Agent>,
    state: Value,
}

impl Installer {
    /// Prepares the profile and connects to the agent if it notifies (call
    /// this while the host's paths are visible). `state` is the container
    /// state to send to the agent (`ociVersion`, `id`, `status`, `pid`,
    /// `bundle`, `annotations`).
    pub fn new(s: &LinuxSeccomp, state: Value) -> Result<Installer> {
        let prepared = prepare(s)?;
        let agent = prepared
            .agent_path()
            .map(notify::Agent::connect)
            .transpose()?;
        Ok(Installer {
            prepared,
            agent,
            state,
        })
    }

    /// Loads the filter and sends the listener to the agent.
    pub fn install(&mut self) -> Result<()> {
        let listener = self.prepared.load()?;
        if let (Some(fd), Some(agent)) = (listener, self.agent.take()) {
            let pid = self.state["pid"].as_i64().unwrap_or(0) as i32;
            let msg = json!({
                "ociVersion": oci_spec::runtime::VERSION,
                "fds": ["seccompFd"],
                "pid": pid,
                "metadata": self.prepared.listener_metadata,
                "state": self.state,
            });
            agent.send(fd, &msg)?;
        }
        Ok(())
    }
}

/// What berth's seccomp really supports on this machine, in the runtime
/// spec's `features.json` shape (`linux.seccomp`): the actions the kernel
/// knows, every operator, the architectures berth can filter, the flags
/// berth knows and those the kernel accepts.
pub fn features() -> Value {
    use LinuxSeccompAction::*;
    let actions: Vec<String> = [
        ScmpActAllow,
        ScmpActErrno,
        ScmpActKill,
        ScmpActKillProcess,
        ScmpActKillThread,
        ScmpActLog,
        ScmpActNotify,
        ScmpActTrace,
        ScmpActTrap,
    ]
    .into_iter()
    .filter(|a| load::action_supported(policy::action_code(*a, None).unwrap_or(0) & !0xffff))
    .map(|a| a.to_string())
    .collect();
    use LinuxSeccompOperator::*;
    let operators: Vec<String> = [
        ScmpCmpEq,
        ScmpCmpGe,
        ScmpCmpGt,
        ScmpCmpLe,
        ScmpCmpLt,
        ScmpCmpMaskedEq,
        ScmpCmpNe,
    ]
    .iter()
    .map(|o| o.to_string())
    .collect();
    let native = Arch::native();
    let archs: Vec<&str> = if native.is_some() {
        Arch::ALL.iter().map(|a| a.oci_name()).collect()
    } else {
        vec![]
    };
    let known: Vec<&str> = load::FLAGS.iter().map(|f| f.1).collect();
    let supported: Vec<&str> = load::FLAGS
        .iter()
        .filter(|f| load::flag_supported(f.2))
        .map(|f| f.1)
        .collect();
    json!({
        "enabled": native.is_some(),
        "actions": actions,
        "operators": operators,
        "archs": archs,
        "knownFlags": known,
        "supportedFlags": supported,
    })
}

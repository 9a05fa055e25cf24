//! The container's processes: how they are spawned into their namespaces
//! (`spawn`), what the init does inside them (`init`), and the credential,
//! capability and rlimit setup of the user process.

pub mod caps;
pub mod init;
pub mod rlimits;
pub mod sched;
pub mod spawn;
pub mod user;

use std::path::PathBuf;

use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};

/// Environment variable naming the setup channel's descriptor in `berth init`.
pub const INIT_FD_ENV: &str = "_BERTH_INIT_FD";

/// Everything the init needs to know, sent by the parent after the init runs
/// from the sealed binary. Descriptors travel with the message: the start
/// listener first (for `exec`: the pidfd of the container's init), then the
/// console socket if `console` is set.
#[derive(Debug, Serialize, Deserialize)]
pub struct InitPlan {
    /// Container ID.
    pub id: String,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path on the host.
    pub rootfs: PathBuf,
    /// The configuration.
    pub spec: Spec,
    /// The process to run (the config's, or `exec`'s).
    pub process: Process,
    /// Host pid of the init (for the hooks' state).
    pub host_pid: i32,
    /// `--no-pivot`: move the rootfs onto `/` and chroot instead of pivot_root.
    pub no_pivot: bool,
    /// `--no-new-keyring`: keep the caller's session keyring.
    pub no_new_keyring: bool,
    /// Descriptors 3..3+N are passed to the process (`--preserve-fds` plus
    /// `LISTEN_FDS`).
    pub preserve_fds: u32,
    /// Variables added to the process environment (`LISTEN_FDS`, `LISTEN_PID`).
    pub extra_env: Vec<String>,
    /// Create a cgroup namespace now that the init sits in its cgroup.
    pub new_cgroupns: bool,
    /// The container's cgroup, relative to the hierarchy roots.
    pub cgroup_path: PathBuf,
    /// A console socket descriptor comes with the plan.
    pub console: bool,
    /// `berth exec`: run `process` in the container that exists already (no
    /// rootfs, no hooks, no start socket).
    pub exec: bool,
    /// `berth exec`: namespaces (`CLONE_NEW*`) to join through the pidfd of
    /// the container's init, which comes first among the descriptors.
    pub exec_ns_flags: libc::c_int,
}

/// The `process` section of a spec (validated to exist).
pub fn spec_process(spec: &Spec) -> Process {
    spec.process().clone().unwrap_or_default()
}

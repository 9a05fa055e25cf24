//! Which namespaces a container creates and which it joins by path.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::{Context, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// The name of a namespace type as `/proc/PID/ns/` spells it.
pub fn name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The `CLONE_NEW*` flag of a namespace type.
pub fn flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

/// The order in which namespaces are joined: the user namespace first (it
/// grants the capabilities to join the others), the mount namespace last
/// (joining it changes how the remaining paths resolve).
const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
];

/// The namespaces of a container, split into new ones and joined ones.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// `CLONE_NEW*` flags of the namespaces to create.
    pub new: libc::c_int,
    /// Namespaces to join, in [`JOIN_ORDER`].
    pub join: Vec<(LinuxNamespaceType, PathBuf)>,
}

impl Plan {
    /// Builds the plan from `linux.namespaces`.
    pub fn from_spec(spec: &Spec) -> Plan {
        let mut plan = Plan::default();
        let nss = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for t in JOIN_ORDER {
            if let Some(ns) = nss.iter().find(|n| n.typ() == t) {
                match ns.path() {
                    Some(p) => plan.join.push((t, p.clone())),
                    None => plan.new |= flag(t),
                }
            }
        }
        plan
    }

    /// True if a namespace of type `t` is created.
    pub fn creates(&self, t: LinuxNamespaceType) -> bool {
        self.new & flag(t) != 0
    }

    /// True if a namespace of type `t` is joined by path.
    pub fn joins(&self, t: LinuxNamespaceType) -> bool {
        self.join.iter().any(|(j, _)| *j == t)
    }

    /// Opens every namespace to join (before any fork, so a bad path is an
    /// error of `create` itself).
    pub fn open_joins(&self) -> Result<Vec<(LinuxNamespaceType, File)>> {
        self.join
            .iter()
            .map(|(t, p)| {
                let f = File::open(p)
                    .with_context(|| format!("open {} namespace {}", name(*t), p.display()))?;
                Ok((*t, f))
            })
            .collect()
    }
}

/// `setns(2)` into an opened namespace file.
pub fn join(t: LinuxNamespaceType, f: &File) -> std::io::Result<()> {
    // SAFETY: plain syscall on a valid descriptor.
    if unsafe { libc::setns(f.as_raw_fd(), flag(t)) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_orders_user_first_mount_last() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.0","linux":{"namespaces":[
            {"type":"mount","path":"/proc/1/ns/mnt"},{"type":"pid"},
            {"type":"network","path":"/proc/1/ns/net"},{"type":"user","path":"/proc/1/ns/user"}]}}"#,
        )
        .unwrap();
        let p = Plan::from_spec(&spec);
        assert_eq!(p.new, libc::CLONE_NEWPID);
        let order: Vec<_> = p.join.iter().map(|(t, _)| name(*t)).collect();
        assert_eq!(order, ["user", "net", "mnt"]);
        assert!(p.creates(LinuxNamespaceType::Pid) && p.joins(LinuxNamespaceType::Network));
    }
}

//! Loading and validating a bundle's `config.json`.
//!
//! Validation happens before anything is created on the host, so a bad bundle
//! fails with one line naming the problem and leaves nothing behind.

use std::collections::HashSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use crate::namespaces;

/// Loads `config.json` from `bundle` (already absolute).
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let data = fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    let spec: Spec =
        serde_json::from_slice(&data).with_context(|| format!("parse {}", path.display()))?;
    Ok(spec)
}

/// Resolves `root.path` against the bundle and checks it is a directory.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .context("config.json: root is missing")?;
    if root.path().as_os_str().is_empty() {
        bail!("config.json: root.path is empty");
    }
    let p = bundle.join(root.path());
    let canon = fs::canonicalize(&p).with_context(|| format!("rootfs {}", p.display()))?;
    if !canon.is_dir() {
        bail!("rootfs {} is not a directory", canon.display());
    }
    Ok(canon)
}

/// Checks everything that can be checked without touching the host.
pub fn validate(spec: &Spec) -> Result<()> {
    validate_version(spec.version())?;
    let process = spec
        .process()
        .as_ref()
        .context("config.json: process is missing")?;
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => bail!("config.json: process.args must not be empty"),
    }
    if !process.cwd().is_absolute() {
        bail!(
            "config.json: process.cwd {:?} must be an absolute path",
            process.cwd()
        );
    }
    let linux = spec
        .linux()
        .as_ref()
        .context("config.json: linux section is missing")?;
    let nss = linux.namespaces().clone().unwrap_or_default();
    let mut seen = HashSet::new();
    for ns in &nss {
        if !seen.insert(ns.typ()) {
            bail!(
                "config.json: namespace {} is listed twice",
                namespaces::name(ns.typ())
            );
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                bail!(
                    "config.json: namespace path {} must be absolute",
                    p.display()
                );
            }
        }
    }
    let has = |t: LinuxNamespaceType| seen.contains(&t);
    let new_userns = nss
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    validate_id_mappings("uid", linux.uid_mappings().as_deref(), new_userns)?;
    validate_id_mappings("gid", linux.gid_mappings().as_deref(), new_userns)?;
    if !has(LinuxNamespaceType::Mount) {
        bail!("config.json: a mount namespace is required");
    }
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        bail!("config.json: hostname requires a uts namespace");
    }
    if spec.domainname().as_deref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts)
    {
        bail!("config.json: domainname requires a uts namespace");
    }
    if linux.time_offsets().is_some() && !has(LinuxNamespaceType::Time) {
        bail!("config.json: timeOffsets require a time namespace");
    }
    for key in linux.sysctl().iter().flat_map(|m| m.keys()) {
        validate_sysctl(key, &has)?;
    }
    if let Some(p) = linux.rootfs_propagation() {
        crate::rootfs::options::propagation_flag(p)
            .with_context(|| format!("config.json: rootfsPropagation {p:?}"))?;
    }
    for m in spec.mounts().iter().flatten() {
        validate_container_path("mount destination", m.destination())?;
        crate::rootfs::options::parse(m.options().as_deref().unwrap_or_default())
            .with_context(|| format!("mount {}", m.destination().display()))?;
    }
    for d in linux.devices().iter().flatten() {
        validate_container_path("device path", d.path())?;
    }
    for p in linux
        .masked_paths()
        .iter()
        .chain(linux.readonly_paths().iter())
        .flatten()
    {
        validate_container_path("masked/readonly path", Path::new(p))?;
    }
    if linux.intel_rdt().is_some() {
        bail!("config.json: linux.intelRdt is not supported by berth (no resctrl on this host)");
    }
    if linux.memory_policy().is_some() {
        bail!("config.json: linux.memoryPolicy is not supported by berth yet");
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        bail!("config.json: linux.netDevices is not supported by berth yet");
    }
    if let Some(s) = linux.seccomp() {
        let p = crate::seccomp::prepare(s).context("config.json: linux.seccomp")?;
        for name in &p.policy.unknown_names {
            crate::logging::warn(&format!("unknown seccomp syscall {name:?} ignored"));
        }
    }
    if let Some(profile) = process.apparmor_profile() {
        if !profile.is_empty() {
            bail!(
                "apparmor profile {profile:?} specified but AppArmor is not enabled on this system"
            );
        }
    }
    if let Some(label) = process.selinux_label() {
        if !label.is_empty() {
            bail!("selinux label {label:?} specified but SELinux is not enabled on this system");
        }
    }
    Ok(())
}

fn validate_version(v: &str) -> Result<()> {
    let parts: Vec<&str> = v.split(['.', '-', '+']).collect();
    let numeric = |s: &&str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if parts.len() < 3 || !parts[..3].iter().all(numeric) {
        bail!("config.json: ociVersion {v:?} is not a semantic version");
    }
    if parts[0] != "1" {
        bail!("config.json: ociVersion {v:?} is not supported (berth implements 1.x)");
    }
    Ok(())
}

/// A path inside the container: absolute, and without `..` (which could only
/// be meant to climb out of the rootfs).
pub fn validate_container_path(what: &str, p: &Path) -> Result<()> {
    if !p.is_absolute() {
        bail!(
            "config.json: {what} {} must be an absolute path",
            p.display()
        );
    }
    if p.components().any(|c| c == Component::ParentDir) {
        bail!(
            "config.json: {what} {} must not contain \"..\"",
            p.display()
        );
    }
    Ok(())
}

fn validate_id_mappings(
    kind: &str,
    maps: Option<&[LinuxIdMapping]>,
    new_userns: bool,
) -> Result<()> {
    let maps = maps.unwrap_or_default();
    if !new_userns {
        if !maps.is_empty() {
            bail!("config.json: {kind} mappings need a new user namespace");
        }
        return Ok(());
    }
    if maps.is_empty() {
        bail!("config.json: a new user namespace needs {kind} mappings");
    }
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for m in maps {
        if m.size() == 0 {
            bail!(
                "config.json: {kind} mapping {}:{} has size 0",
                m.container_id(),
                m.host_id()
            );
        }
        let start = m.container_id() as u64;
        let end = start + m.size() as u64;
        let host_end = m.host_id() as u64 + m.size() as u64;
        if end > u32::MAX as u64 || host_end > u32::MAX as u64 {
            bail!(
                "config.json: {kind} mapping {}:{}:{} overflows",
                m.container_id(),
                m.host_id(),
                m.size()
            );
        }
        if ranges.iter().any(|&(s, e)| start < e && s < end) {
            bail!(
                "config.json: {kind} mappings overlap at container id {}",
                m.container_id()
            );
        }
        ranges.push((start, end));
    }
    if !ranges.iter().any(|&(s, e)| s == 0 && e > 0) {
        bail!("config.json: {kind} mappings must map the container's root (id 0)");
    }
    Ok(())
}

/// runc's rule: a sysctl may only be set in a namespace the container owns.
fn validate_sysctl(key: &str, has: &dyn Fn(LinuxNamespaceType) -> bool) -> Result<()> {
    if key.is_empty() || key.contains("..") || key.starts_with(['.', '/']) {
        bail!("config.json: invalid sysctl {key:?}");
    }
    let k = key.replace('/', ".");
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if ipc.contains(&k.as_str()) || k.starts_with("fs.mqueue.") {
        if !has(LinuxNamespaceType::Ipc) {
            bail!("sysctl {key:?} is not allowed without a private ipc namespace");
        }
        return Ok(());
    }
    if k.starts_with("net.") {
        if !has(LinuxNamespaceType::Network) {
            bail!("sysctl {key:?} is not allowed without a private network namespace");
        }
        return Ok(());
    }
    if k == "kernel.hostname" || k == "kernel.domainname" {
        if !has(LinuxNamespaceType::Uts) {
            bail!("sysctl {key:?} is not allowed without a private uts namespace");
        }
        return Ok(());
    }
    bail!("sysctl {key:?} is not in a separate kernel namespace");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    const BASE: &str = r#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
        "root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}}"#;

    #[test]
    fn base_is_valid() {
        validate(&spec(BASE)).unwrap();
    }

    #[test]
    fn versions() {
        for ok in ["1.0.0", "1.0.2-dev", "1.2.1", "1.1.0+x"] {
            validate_version(ok).unwrap();
        }
        for bad in ["", "1", "1.0", "2.0.0", "0.5.0", "x.y.z", "latest"] {
            assert!(validate_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn relative_and_escaping_mounts_are_refused() {
        let mut s = spec(BASE);
        let m: oci_spec::runtime::Mount =
            serde_json::from_str(r#"{"destination":"tmp","type":"tmpfs","source":"tmpfs"}"#)
                .unwrap();
        s.set_mounts(Some(vec![m]));
        assert!(format!("{:#}", validate(&s).unwrap_err()).contains("absolute"));
        let m: oci_spec::runtime::Mount =
            serde_json::from_str(r#"{"destination":"/a/../../etc","type":"tmpfs"}"#).unwrap();
        s.set_mounts(Some(vec![m]));
        assert!(format!("{:#}", validate(&s).unwrap_err()).contains(".."));
    }

    #[test]
    fn userns_mappings() {
        let j = |maps: &str| {
            spec(&BASE.replace(
                r#""linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}"#,
                &format!(
                    r#""linux":{{"namespaces":[{{"type":"mount"}},{{"type":"user"}}],{maps}}}"#
                ),
            ))
        };
        assert!(validate(&j(r#""uidMappings":[],"gidMappings":[]"#)).is_err());
        assert!(validate(&j(
            r#""uidMappings":[{"containerID":0,"hostID":1000,"size":0}],"gidMappings":[{"containerID":0,"hostID":1000,"size":1}]"#
        ))
        .is_err());
        assert!(validate(&j(
            r#""uidMappings":[{"containerID":5,"hostID":1000,"size":1}],"gidMappings":[{"containerID":0,"hostID":1000,"size":1}]"#
        ))
        .is_err());
        validate(&j(
            r#""uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"gidMappings":[{"containerID":0,"hostID":100000,"size":65536}]"#,
        ))
        .unwrap();
    }

    #[test]
    fn unknown_namespace_is_a_parse_error() {
        let r: Result<Spec, _> =
            serde_json::from_str(&BASE.replace(r#"{"type":"pid"}"#, r#"{"type":"bogus"}"#));
        assert!(r.is_err());
    }

    #[test]
    fn sysctl_needs_namespace() {
        let no = |_: LinuxNamespaceType| false;
        let yes = |_: LinuxNamespaceType| true;
        assert!(validate_sysctl("net.ipv4.ip_forward", &no).is_err());
        validate_sysctl("net.ipv4.ip_forward", &yes).unwrap();
        assert!(validate_sysctl("kernel.panic", &yes).is_err());
        validate_sysctl("kernel.shmmax", &yes).unwrap();
    }
}

//! The container's cgroup, through youki's `libcgroups` (v1, hybrid and v2).
//!
//! berth only ever creates, changes and removes the cgroup it computed for the
//! container (`cgroup_path`); it never touches the caller's or anyone else's.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libcgroups::common::{
    create_cgroup_manager, AnyCgroupManager, CgroupConfig, CgroupManager, ControllerOpt,
};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

/// Parent of the default cgroups (`/berth/ID`).
pub const DEFAULT_PARENT: &str = "/berth";

/// A cgroup v1 hierarchy mounted on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted (`/sys/fs/cgroup/memory`).
    pub mount_point: PathBuf,
    /// Its controllers, with `name=...` for named hierarchies.
    pub controllers: Vec<String>,
}

/// How cgroups are mounted on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// cgroup v1 hierarchies (empty on a pure v2 host).
    pub v1: Vec<Hierarchy>,
    /// The cgroup2 mount, if any (`/sys/fs/cgroup` or `/sys/fs/cgroup/unified`).
    pub unified: Option<PathBuf>,
}

impl Layout {
    /// Reads `/proc/self/mountinfo`.
    pub fn detect() -> Result<Layout> {
        let info =
            fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
        Ok(Self::parse(&info))
    }

    fn parse(mountinfo: &str) -> Layout {
        let mut layout = Layout {
            v1: Vec::new(),
            unified: None,
        };
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = match left.split(' ').nth(4) {
                Some(m) => PathBuf::from(unescape(m)),
                None => continue,
            };
            let mut r = right.split(' ');
            let (fstype, _source, super_opts) = (r.next(), r.next(), r.next().unwrap_or(""));
            match fstype {
                Some("cgroup2") if layout.unified.is_none() => layout.unified = Some(mount_point),
                Some("cgroup") => {
                    let known = [
                        "cpu",
                        "cpuacct",
                        "cpuset",
                        "memory",
                        "devices",
                        "freezer",
                        "pids",
                        "blkio",
                        "net_cls",
                        "net_prio",
                        "perf_event",
                        "hugetlb",
                        "rdma",
                        "misc",
                    ];
                    let controllers = super_opts
                        .split(',')
                        .filter(|o| known.contains(o) || o.starts_with("name="))
                        .map(str::to_string)
                        .collect();
                    if !layout.v1.iter().any(|h| h.mount_point == mount_point) {
                        layout.v1.push(Hierarchy {
                            mount_point,
                            controllers,
                        });
                    }
                }
                _ => {}
            }
        }
        layout
    }

    /// True on a host where cgroup v2 is the only hierarchy.
    pub fn is_unified(&self) -> bool {
        self.v1.is_empty() && self.unified.is_some()
    }

    /// The directory of `cgroup` in the hierarchy with `controller`.
    pub fn dir_of(&self, controller: &str, cgroup: &Path) -> Option<PathBuf> {
        if self.is_unified() {
            return self.unified.as_ref().map(|u| join(u, cgroup));
        }
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| join(&h.mount_point, cgroup))
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Joins an absolute cgroup path below a hierarchy root.
pub fn join(root: &Path, cgroup: &Path) -> PathBuf {
    root.join(cgroup.strip_prefix("/").unwrap_or(cgroup))
}

/// The container's cgroup path: `linux.cgroupsPath` if absolute, or
/// `/berth/ID` by default.
pub fn cgroup_path(spec: &Spec, id: &str, systemd: bool) -> Result<PathBuf> {
    if systemd {
        bail!("--systemd-cgroup: systemd is not running on this machine (no systemd cgroup driver available)");
    }
    let configured = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    match configured {
        None => Ok(Path::new(DEFAULT_PARENT).join(id)),
        Some(p) if p.as_os_str().is_empty() => Ok(Path::new(DEFAULT_PARENT).join(id)),
        Some(p) if p.is_absolute() => {
            crate::config::validate_container_path("cgroupsPath", &p)?;
            if p == Path::new("/") {
                bail!("cgroupsPath \"/\" would be the root cgroup");
            }
            Ok(p)
        }
        Some(p) => bail!(
            "relative cgroupsPath {} is not supported by berth yet; use an absolute path",
            p.display()
        ),
    }
}

fn manager(path: &Path) -> Result<AnyCgroupManager> {
    create_cgroup_manager(CgroupConfig {
        cgroup_path: path.to_path_buf(),
        systemd_cgroup: false,
        container_name: String::new(),
    })
    .with_context(|| format!("cgroup manager for {}", path.display()))
}

/// Creates the cgroup, moves `pid` into it and applies `linux.resources`.
pub fn create(path: &Path, spec: &Spec, pid: i32) -> Result<()> {
    let m = manager(path)?;
    m.add_task(Pid::from_raw(pid))
        .with_context(|| format!("add pid {pid} to cgroup {}", path.display()))?;
    let default = Default::default();
    let linux = spec.linux().as_ref();
    let resources = linux
        .and_then(|l| l.resources().as_ref())
        .unwrap_or(&default);
    let opt = ControllerOpt {
        resources,
        disable_oom_killer: resources
            .memory()
            .as_ref()
            .and_then(|m| m.disable_oom_killer())
            .unwrap_or(false),
        oom_score_adj: None,
        freezer_state: None,
    };
    m.apply(&opt)
        .with_context(|| format!("apply resources to cgroup {}", path.display()))?;
    Ok(())
}

/// Moves `pid` into the existing cgroup (for `exec`), without touching its
/// resources.
pub fn add_process(path: &Path, pid: i32) -> Result<()> {
    manager(path)?
        .add_task(Pid::from_raw(pid))
        .with_context(|| format!("add pid {pid} to cgroup {}", path.display()))
}

/// Kills what is left in the cgroup and removes it (a missing cgroup is fine).
pub fn remove(path: &Path) -> Result<()> {
    manager(path)?
        .remove()
        .with_context(|| format!("remove cgroup {}", path.display()))
}

/// Pids in the container's cgroup.
pub fn pids(path: &Path) -> Result<Vec<i32>> {
    let m = manager(path)?;
    let pids = m
        .get_all_pids()
        .with_context(|| format!("list processes of cgroup {}", path.display()))?;
    Ok(pids.into_iter().map(|p| p.as_raw()).collect())
}

/// True if the container's cgroup is frozen.
pub fn is_frozen(path: &Path) -> bool {
    let Ok(layout) = Layout::detect() else {
        return false;
    };
    if layout.is_unified() {
        return layout
            .dir_of("", path)
            .and_then(|d| fs::read_to_string(d.join("cgroup.freeze")).ok())
            .is_some_and(|s| s.trim() == "1");
    }
    layout
        .dir_of("freezer", path)
        .and_then(|d| fs::read_to_string(d.join("freezer.state")).ok())
        .is_some_and(|s| s.trim() == "FROZEN")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 0:23 / /sys rw - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";

    #[test]
    fn parses_hybrid_layout() {
        let l = Layout::parse(HYBRID);
        assert_eq!(
            l.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(l.v1.len(), 3);
        assert_eq!(l.v1[1].controllers, ["cpu", "cpuacct"]);
        assert!(!l.is_unified());
        assert_eq!(
            l.dir_of("cpuacct", Path::new("/berth/x")).unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/berth/x")
        );
    }

    #[test]
    fn default_and_absolute_paths() {
        let spec: Spec = serde_json::from_str(r#"{"ociVersion":"1.0.0","linux":{}}"#).unwrap();
        assert_eq!(
            cgroup_path(&spec, "c1", false).unwrap(),
            Path::new("/berth/c1")
        );
        let spec: Spec =
            serde_json::from_str(r#"{"ociVersion":"1.0.0","linux":{"cgroupsPath":"/x/y"}}"#)
                .unwrap();
        assert_eq!(cgroup_path(&spec, "c1", false).unwrap(), Path::new("/x/y"));
        assert!(cgroup_path(&spec, "c1", true).is_err());
        let spec: Spec =
            serde_json::from_str(r#"{"ociVersion":"1.0.0","linux":{"cgroupsPath":"/x/../.."}}"#)
                .unwrap();
        assert!(cgroup_path(&spec, "c1", false).is_err());
    }
}

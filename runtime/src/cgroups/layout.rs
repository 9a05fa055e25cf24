//! How cgroups are mounted on this host, read once per command from
//! `/proc/self/mountinfo` (a few dozen lines; no per-controller re-parsing).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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

    /// Parses the text of a `mountinfo` file.
    pub fn parse(mountinfo: &str) -> Layout {
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

    /// The v1 hierarchies berth manages: those with at least one resource
    /// controller (named ones such as `name=systemd` are left alone).
    pub fn managed_v1(&self) -> impl Iterator<Item = &Hierarchy> {
        self.v1
            .iter()
            .filter(|h| h.controllers.iter().any(|c| !c.starts_with("name=")))
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

/// The caller's own cgroup in each hierarchy, from `/proc/self/cgroup`:
/// `(controllers, path)`; v2 is the entry with empty controllers.
pub fn own_cgroups() -> Result<Vec<(String, PathBuf)>> {
    let text = fs::read_to_string("/proc/self/cgroup").context("read /proc/self/cgroup")?;
    Ok(parse_proc_cgroup(&text))
}

fn parse_proc_cgroup(text: &str) -> Vec<(String, PathBuf)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            Some((ctrls.to_string(), PathBuf::from(path)))
        })
        .collect()
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
    fn managed_skips_named_hierarchies() {
        let l = Layout::parse(HYBRID);
        let names: Vec<_> = l.managed_v1().map(|h| h.controllers.join(",")).collect();
        assert_eq!(names, ["cpu,cpuacct", "memory"]);
    }

    #[test]
    fn parses_unified_layout_and_proc_cgroup() {
        let l = Layout::parse("31 1 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert!(l.is_unified());
        assert_eq!(
            l.dir_of("memory", Path::new("/a")).unwrap(),
            Path::new("/sys/fs/cgroup/a")
        );
        let own = parse_proc_cgroup("4:memory:/x/y\n0::/init.scope\n");
        assert_eq!(own[0], ("memory".to_string(), PathBuf::from("/x/y")));
        assert_eq!(own[1], (String::new(), PathBuf::from("/init.scope")));
    }
}

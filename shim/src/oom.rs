//! Whether the OOM killer struck a container's cgroup.
//!
//! The shim finds the container's memory cgroup from `/proc/PID/cgroup` while
//! the process is alive (after it is reaped the link is gone) and counts
//! `oom_kill` events: in `memory.events` on cgroup v2, in
//! `memory.oom_control` on cgroup v1 (hybrid hosts like ours have the memory
//! controller on v1). The count at creation is the baseline; a higher count
//! at exit means the OOM killer killed a process of the container.

use std::path::{Path, PathBuf};

/// The counter files of one container's memory cgroup.
#[derive(Debug, Default)]
pub struct OomWatch {
    files: Vec<PathBuf>,
    baseline: u64,
}

impl OomWatch {
    /// Finds the memory cgroup of `pid`; an empty watch if there is none.
    pub fn for_pid(pid: i32) -> OomWatch {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let files = counter_files(&cgroups, &mountinfo)
            .into_iter()
            .filter(|f| f.exists())
            .collect();
        let mut w = OomWatch { files, baseline: 0 };
        w.baseline = w.count();
        w
    }

    /// The counter files watched (`memory.oom_control` on v1,
    /// `memory.events` on v2).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Sum of the `oom_kill` counters now.
    pub fn count(&self) -> u64 {
        self.files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .map(|t| oom_kill_count(&t))
            .sum()
    }

    /// Whether there were OOM kills since the watch started.
    pub fn oom_killed(&self) -> bool {
        self.count() > self.baseline
    }
}

/// Candidate counter files for the cgroups in `cgroups` (the text of
/// `/proc/PID/cgroup`) given the mounts in `mountinfo`.
fn counter_files(cgroups: &str, mountinfo: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in cgroups.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            if let Some((root, mnt)) = mount_of(mountinfo, |fstype, _| fstype == "cgroup2") {
                files.push(join(&mnt, &root, path).join("memory.events"));
            }
        } else if ctrls.split(',').any(|c| c == "memory") {
            let found = mount_of(mountinfo, |fstype, opts| {
                fstype == "cgroup" && opts.split(',').any(|o| o == "memory")
            });
            if let Some((root, mnt)) = found {
                files.push(join(&mnt, &root, path).join("memory.oom_control"));
            }
        }
    }
    files
}

/// (mount root, mount point) of the first mount whose filesystem type and
/// super options satisfy `pred`.
fn mount_of(mountinfo: &str, pred: impl Fn(&str, &str) -> bool) -> Option<(String, PathBuf)> {
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() >= 5 && r.len() >= 3 && pred(r[0], r[2]) {
            return Some((l[3].to_string(), PathBuf::from(l[4])));
        }
    }
    None
}

fn join(mnt: &Path, root: &str, path: &str) -> PathBuf {
    let rel = path
        .strip_prefix(root)
        .unwrap_or(path)
        .trim_start_matches('/');
    mnt.join(rel)
}

/// The `oom_kill N` line of `memory.events` or `memory.oom_control`.
fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .filter_map(|n| n.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn finds_v1_and_v2_counter_files() {
        let cg = "5:memory:/berth-test/c1\n4:cpu,cpuacct:/berth-test/c1\n0::/berth-test/c1\n";
        assert_eq!(
            counter_files(cg, MOUNTINFO),
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/berth-test/c1/memory.oom_control"),
                PathBuf::from("/sys/fs/cgroup/unified/berth-test/c1/memory.events"),
            ]
        );
    }

    #[test]
    fn reads_oom_kill_from_both_formats() {
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            3
        );
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n"),
            1
        );
        assert_eq!(oom_kill_count("low 0\n"), 0);
    }
}

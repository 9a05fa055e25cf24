//! cgroup v1: one directory per hierarchy, resources written as runc's `fs`
//! driver writes them.
//!
//! berth writes these files itself instead of going through libcgroups' v1
//! manager: that manager re-reads `/proc/self/mountinfo` and
//! `/proc/self/cgroup` (through a fresh procfs handle) for each of its 12
//! controllers on every construction, ~900 syscalls per `create` here,
//! and v1 needs no value conversions (the spec's fields are v1's files).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};

use super::devices;
use super::fsutil::{read, write, write_str};

/// The container's directory in one v1 hierarchy.
#[derive(Clone, Debug)]
pub struct Dir {
    /// The hierarchy's controllers (`["cpu", "cpuacct"]`).
    pub controllers: Vec<String>,
    /// The hierarchy's mount point.
    pub root: PathBuf,
    /// The container's directory in it.
    pub dir: PathBuf,
}

/// The directory of the hierarchy holding `controller`.
pub fn dir_of<'a>(dirs: &'a [Dir], controller: &str) -> Option<&'a Path> {
    dirs.iter()
        .find(|d| d.controllers.iter().any(|c| c == controller))
        .map(|d| d.dir.as_path())
}

fn need<'a>(dirs: &'a [Dir], controller: &str) -> Result<&'a Path> {
    dir_of(dirs, controller).with_context(|| {
        format!("the cgroup v1 {controller} controller is not mounted on this host")
    })
}

/// Creates the directories and applies `res` (before any process is moved
/// in, so none ever runs unlimited).
pub fn create(dirs: &[Dir], res: &LinuxResources) -> Result<()> {
    for d in dirs {
        fs::create_dir_all(&d.dir).with_context(|| format!("mkdir {}", d.dir.display()))?;
        if d.controllers.iter().any(|c| c == "cpuset") {
            init_cpuset(&d.root, &d.dir)?;
        }
    }
    apply(dirs, res, true)
}

/// A new cpuset cgroup starts with no cpus and no memory nodes, and no
/// process can join it: copy the parent's into every empty level.
fn init_cpuset(root: &Path, dir: &Path) -> Result<()> {
    let rel = dir.strip_prefix(root).unwrap_or(Path::new(""));
    let mut parent = root.to_path_buf();
    for comp in rel.components() {
        let cur = parent.join(comp);
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if read(&cur.join(f))?.trim().is_empty() {
                let v = read(&parent.join(f))?;
                write_str(&cur.join(f), v.trim())?;
            }
        }
        parent = cur;
    }
    Ok(())
}

/// Applies `res`; devices only when `devices` (on create: `update` never
/// changes them, and rewriting the list would briefly deny everything to a
/// running container).
pub fn apply(dirs: &[Dir], res: &LinuxResources, with_devices: bool) -> Result<()> {
    if let Some(cpu) = res.cpu() {
        apply_cpu(dirs, cpu)?;
    }
    if let Some(m) = res.memory() {
        apply_memory(need(dirs, "memory")?, m)?;
    }
    if let Some(p) = res.pids() {
        if p.limit() != 0 {
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".to_string()
            };
            write_str(&need(dirs, "pids")?.join("pids.max"), &v)?;
        }
    }
    if let Some(b) = res.block_io() {
        apply_blkio(need(dirs, "blkio")?, b)?;
    }
    for h in res.hugepage_limits().as_deref().unwrap_or_default() {
        let dir = dir_of(dirs, "hugetlb").context(
            "hugepageLimits: this host has no cgroup v1 hugetlb hierarchy (hugetlb limits \
             cannot be applied)",
        )?;
        write(
            &dir.join(format!("hugetlb.{}.limit_in_bytes", h.page_size())),
            h.limit(),
        )?;
    }
    if let Some(n) = res.network() {
        if let Some(id) = n.class_id() {
            write(&need(dirs, "net_cls")?.join("net_cls.classid"), id)?;
        }
        for p in n.priorities().as_deref().unwrap_or_default() {
            write_str(
                &need(dirs, "net_prio")?.join("net_prio.ifpriomap"),
                &format!("{} {}", p.name(), p.priority()),
            )?;
        }
    }
    if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        bail!("linux.resources.unified needs cgroup v2; this host uses cgroup v1");
    }
    if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        bail!("linux.resources.rdma is not supported by berth yet");
    }
    if with_devices {
        let dir = need(dirs, "devices")?;
        let rules = devices::rules(res.devices().as_deref())?;
        // Start from "deny everything", then the rules in order.
        write_str(&dir.join("devices.deny"), "a")?;
        for r in &rules {
            let f = if r.allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            write_str(&dir.join(f), &devices::v1_line(r))?;
        }
    }
    Ok(())
}

fn apply_cpu(dirs: &[Dir], cpu: &LinuxCpu) -> Result<()> {
    if cpu.cpus().is_some() || cpu.mems().is_some() {
        let dir = need(dirs, "cpuset")?;
        if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
            write_str(&dir.join("cpuset.cpus"), c)?;
        }
        if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
            write_str(&dir.join("cpuset.mems"), m)?;
        }
    }
    let wants_cpu = cpu.shares().is_some()
        || cpu.quota().is_some()
        || cpu.period().is_some()
        || cpu.burst().is_some()
        || cpu.realtime_period().is_some()
        || cpu.realtime_runtime().is_some()
        || cpu.idle().is_some();
    if !wants_cpu {
        return Ok(());
    }
    let dir = need(dirs, "cpu")?;
    if let Some(s) = cpu.shares().filter(|&s| s != 0) {
        write(&dir.join("cpu.shares"), s)?;
    }
    let quota = cpu.quota().filter(|&q| q != 0);
    // A period smaller than the current one can be refused (EINVAL) until
    // the quota is lowered too: then write it again after the quota (runc).
    let mut period_pending = None;
    if let Some(p) = cpu.period().filter(|&p| p != 0) {
        if let Err(e) = write(&dir.join("cpu.cfs_period_us"), p) {
            if quota.is_none() || !is_errno(&e, libc::EINVAL) {
                return Err(e);
            }
            period_pending = Some(p);
        }
    }
    if let Some(q) = quota {
        write(&dir.join("cpu.cfs_quota_us"), q)?;
        if let Some(p) = period_pending {
            write(&dir.join("cpu.cfs_period_us"), p)?;
        }
    }
    if let Some(b) = cpu.burst() {
        write(&dir.join("cpu.cfs_burst_us"), b)?;
    }
    let rt_period = cpu.realtime_period().filter(|&p| p != 0);
    let rt_runtime = cpu.realtime_runtime().filter(|&r| r != 0);
    if let Some(p) = rt_period {
        write(&dir.join("cpu.rt_period_us"), p)?;
    }
    if let Some(r) = rt_runtime {
        write(&dir.join("cpu.rt_runtime_us"), r)?;
    }
    if let Some(i) = cpu.idle() {
        write(&dir.join("cpu.idle"), i)?;
    }
    Ok(())
}

const LIMIT: &str = "memory.limit_in_bytes";
const MEMSW: &str = "memory.memsw.limit_in_bytes";

fn apply_memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    // Unlimited memory without a swap value means unlimited swap too.
    if limit == -1 && swap == 0 && dir.join(MEMSW).exists() {
        swap = -1;
    }
    let set_limit = |v: i64| -> Result<()> {
        write(&dir.join(LIMIT), v).map_err(|e| {
            if is_errno(&e, libc::EBUSY) {
                let usage = read(&dir.join("memory.usage_in_bytes")).unwrap_or_default();
                anyhow::anyhow!(
                    "cannot set memory limit to {v}: the container uses {} bytes",
                    usage.trim()
                )
            } else {
                e
            }
        })
    };
    let set_swap = |v: i64| write(&dir.join(MEMSW), v);
    // memsw must stay >= the memory limit at every step: raise memsw first
    // when the new memsw is above the current limit.
    if limit != 0 && swap != 0 {
        let cur: i64 = read(&dir.join(LIMIT))?.trim().parse().unwrap_or(i64::MAX);
        if swap == -1 || cur < swap {
            set_swap(swap)?;
            set_limit(limit)?;
        } else {
            set_limit(limit)?;
            set_swap(swap)?;
        }
    } else {
        if limit != 0 {
            set_limit(limit)?;
        }
        if swap != 0 {
            set_swap(swap)?;
        }
    }
    if m.kernel().is_some_and(|k| k != 0) {
        crate::logging::warn("memory.kernel is ignored: kernel memory limits are gone from Linux");
    }
    if let Some(t) = m.kernel_tcp().filter(|&t| t != 0) {
        write(&dir.join("memory.kmem.tcp.limit_in_bytes"), t)?;
    }
    if let Some(r) = m.reservation().filter(|&r| r != 0) {
        write(&dir.join("memory.soft_limit_in_bytes"), r)?;
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            bail!("memory.swappiness {s} is invalid (0 to 100)");
        }
        write(&dir.join("memory.swappiness"), s)?;
    }
    if m.disable_oom_killer() == Some(true) {
        write_str(&dir.join("memory.oom_control"), "1")?;
    }
    Ok(())
}

fn apply_blkio(dir: &Path, b: &oci_spec::runtime::LinuxBlockIo) -> Result<()> {
    // Kernels with the BFQ scheduler and no CFQ have only the bfq files.
    let (weight_file, weight_dev_file) = if dir.join("blkio.weight").exists() {
        ("blkio.weight", "blkio.weight_device")
    } else {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    };
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        write(&dir.join(weight_file), w)?;
    }
    if let Some(w) = b.leaf_weight().filter(|&w| w != 0) {
        write(&dir.join("blkio.leaf_weight"), w)?;
    }
    for wd in b.weight_device().as_deref().unwrap_or_default() {
        if let Some(w) = wd.weight() {
            let line = format!("{}:{} {w}", wd.major(), wd.minor());
            write_str(&dir.join(weight_dev_file), &line)?;
        }
        if let Some(w) = wd.leaf_weight() {
            let line = format!("{}:{} {w}", wd.major(), wd.minor());
            write_str(&dir.join("blkio.leaf_weight_device"), &line)?;
        }
    }
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ];
    for (file, list) in throttles {
        for t in list.as_deref().unwrap_or_default() {
            let line = format!("{}:{} {}", t.major(), t.minor(), t.rate());
            write_str(&dir.join(file), &line)?;
        }
    }
    Ok(())
}

/// True if `e` was caused by the OS error `errno`.
pub fn is_errno(e: &anyhow::Error, errno: i32) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.raw_os_error() == Some(errno))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake v1 hierarchy in a temporary directory (cgroup files must exist
    /// before they are written).
    fn fake(files: &[&str]) -> (PathBuf, Vec<Dir>) {
        let base = std::env::temp_dir().join(format!(
            "berth-v1-test-{}-{}",
            std::process::id(),
            files.len()
        ));
        let _ = fs::remove_dir_all(&base);
        let dir = base.join("c");
        fs::create_dir_all(&dir).unwrap();
        for f in files {
            fs::write(dir.join(f), "").unwrap();
        }
        let dirs = vec![Dir {
            controllers: vec!["memory".into(), "cpu".into(), "pids".into()],
            root: base.clone(),
            dir,
        }];
        (base, dirs)
    }

    #[test]
    fn writes_memory_cpu_and_pids_files() {
        let (base, dirs) = fake(&[
            LIMIT,
            MEMSW,
            "memory.soft_limit_in_bytes",
            "memory.swappiness",
            "memory.oom_control",
            "cpu.shares",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "pids.max",
        ]);
        let res: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":1048576,"swap":2097152,"reservation":4096,
                "swappiness":10,"disableOOMKiller":true},
                "cpu":{"shares":512,"quota":20000,"period":100000},
                "pids":{"limit":-1}}"#,
        )
        .unwrap();
        apply(&dirs, &res, false).unwrap();
        let r = |f: &str| fs::read_to_string(dirs[0].dir.join(f)).unwrap();
        assert_eq!(r(LIMIT), "1048576");
        assert_eq!(r(MEMSW), "2097152");
        assert_eq!(r("memory.soft_limit_in_bytes"), "4096");
        assert_eq!(r("memory.swappiness"), "10");
        assert_eq!(r("memory.oom_control"), "1");
        assert_eq!(r("cpu.shares"), "512");
        assert_eq!(r("cpu.cfs_quota_us"), "20000");
        assert_eq!(r("cpu.cfs_period_us"), "100000");
        assert_eq!(r("pids.max"), "max");
        let bad: LinuxResources = serde_json::from_str(r#"{"unified":{"a.b":"1"}}"#).unwrap();
        assert!(apply(&dirs, &bad, false).is_err());
        fs::remove_dir_all(base).unwrap();
    }
}

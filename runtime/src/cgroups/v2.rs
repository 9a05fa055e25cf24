//! cgroup v2: one directory in the unified hierarchy.
//!
//! berth creates the directory and moves the process in itself (a handful
//! of syscalls), hands cpu, cpuset, memory, hugetlb and `unified` to
//! libcgroups' v2 controllers (whose v1→v2 conversions are runc's: shares →
//! weight with runc 1.3's quadratic fit, memory+swap → swap), and does the
//! rest itself:
//! - `pids.limit` 0 means "unset" as in runc (libcgroups writes 1);
//! - blkio weight → io weight: libcgroups computes it in `u16` and
//!   overflows for any weight above 16;
//! - `unified` keys are checked to be plain file names (libcgroups joins them
//!   to the cgroup path as given, so `../x` would write outside it);
//! - memory+swap equal to memory writes `memory.swap.max` 0 (no swap) as
//!   runc does; libcgroups skips the computed 0 and leaves swap unlimited;
//! - devices: an eBPF filter (`bpf.rs`).

use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path};

use anyhow::{bail, Context, Result};
use libcgroups::common::{CgroupManager, ControllerOpt};
use oci_spec::runtime::{LinuxBlockIo, LinuxResources};

use super::fsutil::{read, write, write_str};
use super::{bpf, devices, layout::join};

/// Creates the cgroup `cgroup` below the cgroup2 mount `root`, applies `res`,
/// then moves `pid` in.
pub fn create(root: &Path, cgroup: &Path, res: &LinuxResources) -> Result<()> {
    let mut cur = root.to_path_buf();
    for comp in cgroup.components() {
        let Component::Normal(name) = comp else {
            continue;
        };
        // A cgroup holding processes cannot enable domain controllers for
        // its children (the kernel's no-internal-process rule; the root is
        // exempt): leave it as it is.
        if cur == root || read(&cur.join("cgroup.procs"))?.trim().is_empty() {
            enable_controllers(&cur)?;
        }
        cur.push(name);
        match fs::create_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("mkdir {}", cur.display())),
        }
    }
    apply(root, cgroup, res, true)
}

/// Enables in `dir`'s children every controller `dir` has, writing only
/// what is missing (so a parent that is already set up is never written).
fn enable_controllers(dir: &Path) -> Result<()> {
    let available = read(&dir.join("cgroup.controllers"))?;
    let enabled = read(&dir.join("cgroup.subtree_control"))?;
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    let missing: Vec<String> = available
        .split_whitespace()
        .filter(|c| !enabled.contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let file = dir.join("cgroup.subtree_control");
    if write_str(&file, &missing.join(" ")).is_err() {
        // One by one: a controller that cannot be enabled here fails later,
        // with a clear error, only if a limit needs it (runc does the same).
        for m in &missing {
            let _ = write_str(&file, m);
        }
    }
    Ok(())
}

/// Applies `res` to the cgroup (devices only when `with_devices`: on create).
pub fn apply(root: &Path, cgroup: &Path, res: &LinuxResources, with_devices: bool) -> Result<()> {
    let dir = join(root, cgroup);
    if let Some(u) = res.unified() {
        for key in u.keys() {
            if key.is_empty() || key.contains('/') || key == "." || key == ".." {
                bail!("linux.resources.unified: key {key:?} must be a cgroup file name");
            }
        }
    }
    if let Some(p) = res.pids() {
        if p.limit() != 0 {
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".to_string()
            };
            write_str(&dir.join("pids.max"), &v)?;
        }
    }
    if let Some(b) = res.block_io() {
        apply_io(&dir, b)?;
    }
    if res.network().is_some() {
        crate::logging::warn(
            "linux.resources.network is ignored: cgroup v2 has no net_cls/net_prio",
        );
    }
    if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        bail!("linux.resources.rdma is not supported by berth yet");
    }
    if res
        .memory()
        .as_ref()
        .is_some_and(|m| m.disable_oom_killer() == Some(true))
    {
        crate::logging::warn("memory.disableOOMKiller is ignored: cgroup v2 has no such setting");
    }
    let mut rest = res.clone();
    rest.set_pids(None)
        .set_block_io(None)
        .set_devices(None)
        .set_network(None);
    if rest != LinuxResources::default() {
        let m = libcgroups::v2::manager::Manager::new(root.to_path_buf(), cgroup.to_path_buf())
            .with_context(|| format!("cgroup {}", dir.display()))?;
        let opt = ControllerOpt {
            resources: &rest,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        };
        m.apply(&opt)
            .with_context(|| format!("apply resources to cgroup {}", dir.display()))?;
        // memory+swap equal to memory means "no swap": runc writes 0, but
        // libcgroups skips a computed 0 and leaves swap unlimited.
        if let Some(mem) = res.memory() {
            if let (Some(l), Some(s)) = (mem.limit(), mem.swap()) {
                if l > 0 && s == l {
                    write_str(&dir.join("memory.swap.max"), "0")?;
                }
            }
        }
    }
    if with_devices {
        let rules = devices::rules(res.devices().as_deref())?;
        bpf::attach(&dir, &rules)?;
    }
    Ok(())
}

/// runc's conversion of a blkio weight (10..1000) to an io weight
/// (1..10000): `1 + (weight - 10) * 9999 / 990`.
pub fn blkio_weight_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w) - 10) * 9999 / 990
}

fn apply_io(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    let bfq = dir.join("io.bfq.weight");
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        if !(10..=1000).contains(&w) {
            bail!("blockIO.weight {w} is invalid (10 to 1000)");
        }
        // BFQ takes the blkio range as is; io.weight takes the converted one.
        if bfq.exists() {
            write(&bfq, w)?;
        } else {
            write(&dir.join("io.weight"), blkio_weight_to_io_weight(w))?;
        }
    }
    if b.leaf_weight().is_some_and(|w| w != 0) {
        bail!("blockIO.leafWeight is not supported on cgroup v2");
    }
    for wd in b.weight_device().as_deref().unwrap_or_default() {
        if let Some(w) = wd.weight() {
            if !bfq.exists() {
                crate::logging::warn(
                    "blockIO.weightDevice is ignored: no BFQ scheduler (io.bfq.weight) here",
                );
                break;
            }
            write_str(&bfq, &format!("{}:{} {w}", wd.major(), wd.minor()))?;
        }
    }
    let throttles = [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ];
    for (key, list) in throttles {
        for t in list.as_deref().unwrap_or_default() {
            let line = format!("{}:{} {key}={}", t.major(), t.minor(), t.rate());
            write_str(&dir.join("io.max"), &line)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fake cgroup2 root with one child cgroup `c` whose files exist.
    fn fake(name: &str, files: &[&str]) -> PathBuf {
        let root = std::env::temp_dir().join(format!("berth-v2-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("c")).unwrap();
        fs::write(root.join("cgroup.controllers"), "cpu memory pids io").unwrap();
        for f in files {
            fs::write(root.join("c").join(f), "").unwrap();
        }
        root
    }

    fn apply_json(root: &Path, json: &str) -> Result<()> {
        let res: LinuxResources = serde_json::from_str(json).unwrap();
        apply(root, Path::new("/c"), &res, false)
    }

    #[test]
    fn cpu_shares_become_runc_weights() {
        // runc (opencontainers/cgroups ConvertCPUSharesToCgroupV2Value since
        // runc 1.3.2): 2 -> 1, 1024 -> 100 (the defaults match), 262144 -> 10000.
        let root = fake("cpu", &["cpu.weight", "cpu.max"]);
        for (shares, weight) in [(2u64, 1u64), (1024, 100), (262144, 10000), (512, 59)] {
            fs::write(root.join("c/cpu.weight"), "").unwrap();
            apply_json(&root, &format!(r#"{{"cpu":{{"shares":{shares}}}}}"#)).unwrap();
            let got = fs::read_to_string(root.join("c/cpu.weight")).unwrap();
            assert_eq!(got, weight.to_string(), "shares {shares}");
        }
        apply_json(&root, r#"{"cpu":{"quota":20000,"period":100000}}"#).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("c/cpu.max")).unwrap(),
            "20000 100000"
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn memory_swap_is_converted_and_pids_zero_is_unset() {
        let root = fake(
            "mem",
            &["memory.max", "memory.swap.max", "memory.low", "pids.max"],
        );
        apply_json(
            &root,
            r#"{"memory":{"limit":1048576,"swap":3145728,"reservation":4096},"pids":{"limit":0}}"#,
        )
        .unwrap();
        let r = |f: &str| fs::read_to_string(root.join("c").join(f)).unwrap();
        assert_eq!(r("memory.max"), "1048576");
        assert_eq!(r("memory.swap.max"), "2097152", "v2 swap excludes memory");
        assert_eq!(r("memory.low"), "4096");
        assert_eq!(r("pids.max"), "", "0 leaves pids.max alone");
        apply_json(&root, r#"{"memory":{"limit":1048576,"swap":1048576}}"#).unwrap();
        assert_eq!(r("memory.swap.max"), "0", "memory+swap == memory: no swap");
        apply_json(&root, r#"{"pids":{"limit":10}}"#).unwrap();
        assert_eq!(r("pids.max"), "10");
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn io_weight_and_throttles() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10000);
        let root = fake("io", &["io.weight", "io.max"]);
        apply_json(
            &root,
            r#"{"blockIO":{"weight":500,"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1024}]}}"#,
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(root.join("c/io.weight")).unwrap(),
            "4950"
        );
        assert_eq!(
            fs::read_to_string(root.join("c/io.max")).unwrap(),
            "8:0 rbps=1024"
        );
        assert!(apply_json(&root, r#"{"blockIO":{"weight":5}}"#).is_err());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn unified_keys_must_be_file_names() {
        let root = fake("unified", &["memory.high"]);
        apply_json(&root, r#"{"unified":{"memory.high":"65536"}}"#).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("c/memory.high")).unwrap(),
            "65536"
        );
        for key in ["../cgroup.procs", "a/b", ".."] {
            let e = apply_json(&root, &format!(r#"{{"unified":{{"{key}":"1"}}}}"#)).unwrap_err();
            assert!(e.to_string().contains("file name"), "{key}: {e}");
        }
        fs::remove_dir_all(root).unwrap();
    }
}

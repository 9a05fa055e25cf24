//! `berth update`: changes the resource limits of a running container, from
//! a `LinuxResources` JSON (`--resources FILE|-`) or runc's per-field flags.
//!
//! As in runc, a field left out or set to 0 is unchanged; the changed fields
//! are written to the cgroup and remembered in the container's state (so a
//! later `update` or `events` sees them). Devices are never changed.

use std::io::Read;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use super::Global;
use crate::cgroups::Cgroup;
use crate::container::state::{ContainerDir, Status};

/// Arguments of `update`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON file with the resources to change (`-`: standard input); the
    /// other flags are then ignored.
    #[arg(short = 'r', long, value_name = "FILE|-")]
    resources: Option<String>,
    /// Block I/O weight (10 to 1000).
    #[arg(long = "blkio-weight", value_name = "N")]
    blkio_weight: Option<u16>,
    /// CPU CFS period (microseconds).
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    /// CPU CFS quota (microseconds per period; -1: none).
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CPU CFS burst (microseconds).
    #[arg(long = "cpu-burst")]
    cpu_burst: Option<u64>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-share")]
    cpu_share: Option<u64>,
    /// CPU realtime period (microseconds).
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    /// CPU realtime runtime (microseconds).
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    cpu_rt_runtime: Option<i64>,
    /// SCHED_IDLE for the container's cpu cgroup (0 or 1).
    #[arg(long = "cpu-idle")]
    cpu_idle: Option<i64>,
    /// CPUs to use (`0-2,4`).
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Memory nodes to use.
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Memory limit (bytes, or with a unit: 64m, 1g; -1: none).
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// Memory reservation (soft limit).
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    /// Memory + swap limit (-1: unlimited swap).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Kernel memory limit (ignored by Linux today).
    #[arg(long = "kernel-memory", allow_hyphen_values = true)]
    kernel_memory: Option<String>,
    /// Kernel TCP buffer memory limit (cgroup v1).
    #[arg(long = "kernel-memory-tcp", allow_hyphen_values = true)]
    kernel_memory_tcp: Option<String>,
    /// Maximum number of tasks (-1: none).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Intel RDT L3 cache schema (not supported).
    #[arg(long = "l3-cache-schema")]
    l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (not supported).
    #[arg(long = "mem-bw-schema")]
    mem_bw_schema: Option<String>,
    /// Container ID.
    id: String,
}

/// Runs `update`.
pub fn run(g: &Global, a: Args) -> Result<()> {
    if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
        bail!("Intel RDT (--l3-cache-schema, --mem-bw-schema) is not supported by berth");
    }
    let delta = normalize(match &a.resources {
        Some(src) => read_resources(src)?,
        None => from_flags(&a)?,
    });
    let dir = ContainerDir::open(&g.root, &a.id)?;
    let mut state = dir.load()?;
    if matches!(dir.status(&state), Status::Stopped | Status::Creating) {
        bail!("container not running");
    }
    Cgroup::open(&state.cgroup_path)?.update(&delta)?;
    let mut linux = state.config.linux().clone().unwrap_or_default();
    let mut res = linux.resources().clone().unwrap_or_default();
    merge(&mut res, &delta);
    linux.set_resources(Some(res));
    state.config.set_linux(Some(linux));
    dir.save(&state)
}

fn read_resources(src: &str) -> Result<LinuxResources> {
    let text = if src == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("read resources from standard input")?;
        s
    } else {
        std::fs::read_to_string(src).with_context(|| format!("read {src}"))?
    };
    let r: LinuxResources =
        serde_json::from_str(&text).with_context(|| format!("parse resources from {src}"))?;
    if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        bail!("update: devices cannot be changed on a running container");
    }
    Ok(r)
}

fn from_flags(a: &Args) -> Result<LinuxResources> {
    let mem = |v: &Option<String>, what: &str| -> Result<Option<i64>> {
        v.as_deref()
            .map(|s| parse_bytes(s).with_context(|| format!("--{what} {s:?}")))
            .transpose()
    };
    let mut memory = LinuxMemory::default();
    memory
        .set_limit(mem(&a.memory, "memory")?)
        .set_reservation(mem(&a.memory_reservation, "memory-reservation")?)
        .set_swap(mem(&a.memory_swap, "memory-swap")?)
        .set_kernel(mem(&a.kernel_memory, "kernel-memory")?)
        .set_kernel_tcp(mem(&a.kernel_memory_tcp, "kernel-memory-tcp")?);
    let mut cpu = LinuxCpu::default();
    cpu.set_shares(a.cpu_share)
        .set_quota(a.cpu_quota)
        .set_period(a.cpu_period)
        .set_burst(a.cpu_burst)
        .set_realtime_period(a.cpu_rt_period)
        .set_realtime_runtime(a.cpu_rt_runtime)
        .set_idle(a.cpu_idle)
        .set_cpus(a.cpuset_cpus.clone())
        .set_mems(a.cpuset_mems.clone());
    let mut r = LinuxResources::default();
    r.set_memory(Some(memory)).set_cpu(Some(cpu));
    if let Some(w) = a.blkio_weight {
        let mut b = LinuxBlockIo::default();
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    if let Some(l) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(l);
        r.set_pids(Some(p));
    }
    Ok(r)
}

/// A size in bytes as runc's flags take it (docker's `RAMInBytes`): a
/// number with an optional binary unit (`k`, `m`, `g`, `t`, `p`, optionally
/// followed by `b` or `ib`), or -1.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let s = s.trim();
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.to_ascii_lowercase();
    let t = lower.strip_suffix('b').unwrap_or(&lower);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            let exp = "kmgtp".find(c).expect("listed") as u32 + 1;
            (t[..t.len() - 1].trim_end(), 1024f64.powi(exp as i32))
        }
        _ => (t, 1.0),
    };
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| *n >= 0.0 && n.is_finite())
        .with_context(|| format!("invalid size {s:?}"))?;
    Ok((n * mult) as i64)
}

/// Drops fields that are 0 or empty: they mean "unchanged" (runc).
fn normalize(mut r: LinuxResources) -> LinuxResources {
    let nz = |v: Option<i64>| v.filter(|&v| v != 0);
    let nzu = |v: Option<u64>| v.filter(|&v| v != 0);
    if let Some(m) = r.memory_mut() {
        let (l, res, sw, k, kt) = (
            m.limit(),
            m.reservation(),
            m.swap(),
            m.kernel(),
            m.kernel_tcp(),
        );
        m.set_limit(nz(l))
            .set_reservation(nz(res))
            .set_swap(nz(sw))
            .set_kernel(nz(k))
            .set_kernel_tcp(nz(kt));
    }
    if let Some(c) = r.cpu_mut() {
        let (sh, q, p) = (c.shares(), c.quota(), c.period());
        let (rp, rr) = (c.realtime_period(), c.realtime_runtime());
        c.set_shares(nzu(sh))
            .set_quota(nz(q))
            .set_period(nzu(p))
            .set_realtime_period(nzu(rp))
            .set_realtime_runtime(nz(rr));
        let cpus = c.cpus().clone().filter(|s| !s.is_empty());
        let mems = c.mems().clone().filter(|s| !s.is_empty());
        c.set_cpus(cpus).set_mems(mems);
    }
    if r.pids().as_ref().is_some_and(|p| p.limit() == 0) {
        r.set_pids(None);
    }
    if let Some(b) = r.block_io_mut() {
        let w = b.weight().filter(|&w| w != 0);
        b.set_weight(w);
    }
    r
}

/// Copies every field set in `delta` into `res`.
fn merge(res: &mut LinuxResources, delta: &LinuxResources) {
    macro_rules! take {
        ($dst:expr, $src:expr, $($get:ident / $set:ident),+) => {
            $( if $src.$get().is_some() { $dst.$set($src.$get()); } )+
        };
    }
    if let Some(dm) = delta.memory() {
        let mut m = (*res.memory()).unwrap_or_default();
        take!(
            m,
            dm,
            limit / set_limit,
            reservation / set_reservation,
            swap / set_swap,
            kernel / set_kernel,
            kernel_tcp / set_kernel_tcp,
            swappiness / set_swappiness
        );
        res.set_memory(Some(m));
    }
    if let Some(dc) = delta.cpu() {
        let mut c = res.cpu().clone().unwrap_or_default();
        take!(
            c,
            dc,
            shares / set_shares,
            quota / set_quota,
            period / set_period,
            burst / set_burst,
            realtime_period / set_realtime_period,
            realtime_runtime / set_realtime_runtime,
            idle / set_idle
        );
        if dc.cpus().is_some() {
            c.set_cpus(dc.cpus().clone());
        }
        if dc.mems().is_some() {
            c.set_mems(dc.mems().clone());
        }
        res.set_cpu(Some(c));
    }
    if delta.pids().is_some() {
        res.set_pids(*delta.pids());
    }
    if let Some(db) = delta.block_io() {
        let mut b = res.block_io().clone().unwrap_or_default();
        take!(b, db, weight / set_weight, leaf_weight / set_leaf_weight);
        res.set_block_io(Some(b));
    }
    if let Some(du) = delta.unified() {
        let mut u = res.unified().clone().unwrap_or_default();
        u.extend(du.clone());
        res.set_unified(Some(u));
    }
    if delta.hugepage_limits().is_some() {
        res.set_hugepage_limits(delta.hugepage_limits().clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_runc() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("2kb").unwrap(), 2048);
        assert_eq!(parse_bytes("1.5MiB").unwrap(), 3 << 19);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        for bad in ["", "m", "12x", "-5"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zero_means_unchanged_and_merge_keeps_the_rest() {
        let delta: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":1048576,"swap":0},"cpu":{"shares":0,"quota":20000},
                "pids":{"limit":0}}"#,
        )
        .unwrap();
        let delta = normalize(delta);
        assert_eq!(delta.memory().as_ref().unwrap().swap(), None);
        assert_eq!(delta.cpu().as_ref().unwrap().shares(), None);
        assert!(delta.pids().is_none());
        let mut res: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":5,"swap":7},"cpu":{"shares":512},"pids":{"limit":10}}"#,
        )
        .unwrap();
        merge(&mut res, &delta);
        let m = res.memory().as_ref().unwrap();
        assert_eq!((m.limit(), m.swap()), (Some(1048576), Some(7)));
        let c = res.cpu().as_ref().unwrap();
        assert_eq!((c.shares(), c.quota()), (Some(512), Some(20000)));
        assert_eq!(res.pids().as_ref().unwrap().limit(), 10);
    }
}

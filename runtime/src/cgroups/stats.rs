//! Resource usage of a cgroup in the JSON shape of runc's `events` (its
//! `types.Stats`): field names, units (nanoseconds, bytes) and which fields
//! are left out when zero all follow runc, so tools parsing runc's output
//! parse berth's.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::Serialize;

/// runc's `types.Stats`.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    /// CPU time and throttling.
    pub cpu: Cpu,
    /// cpuset settings (v1 only, as in runc).
    pub cpuset: CpuSet,
    /// Memory usage.
    pub memory: Memory,
    /// Task counts.
    pub pids: Pids,
    /// Block I/O.
    pub blkio: Blkio,
    /// Huge page usage by page size (`2MB`).
    pub hugetlb: BTreeMap<String, Hugetlb>,
    /// Intel RDT (not supported: always empty).
    pub intel_rdt: BTreeMap<String, u64>,
    /// Network interfaces (runc leaves them out: `null`).
    pub network_interfaces: Option<Vec<()>>,
}

fn zero(v: &u64) -> bool {
    *v == 0
}

/// CPU stats.
#[derive(Debug, Default, Serialize)]
pub struct Cpu {
    /// Usage.
    pub usage: CpuUsage,
    /// CFS throttling.
    pub throttling: Throttling,
}

/// CPU usage in nanoseconds.
#[derive(Debug, Default, Serialize)]
pub struct CpuUsage {
    /// Total.
    #[serde(skip_serializing_if = "zero")]
    pub total: u64,
    /// Per cpu (v1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Per cpu, kernel mode (v1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    /// Per cpu, user mode (v1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    /// Kernel mode.
    pub kernel: u64,
    /// User mode.
    pub user: u64,
}

/// CFS throttling.
#[derive(Debug, Default, Serialize)]
pub struct Throttling {
    /// Periods elapsed.
    #[serde(skip_serializing_if = "zero")]
    pub periods: u64,
    /// Periods throttled.
    #[serde(rename = "throttledPeriods", skip_serializing_if = "zero")]
    pub throttled_periods: u64,
    /// Time throttled, nanoseconds.
    #[serde(rename = "throttledTime", skip_serializing_if = "zero")]
    pub throttled_time: u64,
}

/// cpuset settings.
#[derive(Debug, Default, Serialize)]
pub struct CpuSet {
    /// Cpus.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    /// `cpuset.cpu_exclusive`.
    pub cpu_exclusive: u64,
    /// Memory nodes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    /// `cpuset.mem_hardwall`.
    pub mem_hardwall: u64,
    /// `cpuset.mem_exclusive`.
    pub mem_exclusive: u64,
    /// `cpuset.memory_migrate`.
    pub memory_migrate: u64,
    /// `cpuset.memory_spread_page`.
    pub memory_spread_page: u64,
    /// `cpuset.memory_spread_slab`.
    pub memory_spread_slab: u64,
    /// `cpuset.memory_pressure`.
    pub memory_pressure: u64,
    /// `cpuset.sched_load_balance`.
    pub sched_load_balance: u64,
    /// `cpuset.sched_relax_domain_level`.
    pub sched_relax_domain_level: i64,
}

/// One memory counter set.
#[derive(Debug, Default, Serialize)]
pub struct MemoryEntry {
    /// Limit in bytes.
    pub limit: u64,
    /// Usage in bytes.
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    /// Peak usage in bytes.
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    /// Times the limit was hit.
    pub failcnt: u64,
}

/// Memory stats.
#[derive(Debug, Default, Serialize)]
pub struct Memory {
    /// Page cache.
    #[serde(skip_serializing_if = "zero")]
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// Memory + swap (as v1 counts it, also on v2).
    pub swap: MemoryEntry,
    /// Kernel memory (v1).
    pub kernel: MemoryEntry,
    /// Kernel TCP memory (v1).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// `memory.stat`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// Task counts.
#[derive(Debug, Default, Serialize)]
pub struct Pids {
    /// Tasks now.
    #[serde(skip_serializing_if = "zero")]
    pub current: u64,
    /// Limit (0: none).
    #[serde(skip_serializing_if = "zero")]
    pub limit: u64,
}

/// One block I/O counter.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct BlkioEntry {
    /// Device major.
    #[serde(skip_serializing_if = "zero")]
    pub major: u64,
    /// Device minor.
    #[serde(skip_serializing_if = "zero")]
    pub minor: u64,
    /// Operation (`Read`, `Write`, ...).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// Value.
    #[serde(skip_serializing_if = "zero")]
    pub value: u64,
}

/// Block I/O stats.
#[derive(Debug, Default, Serialize)]
pub struct Blkio {
    /// Bytes.
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// Operations.
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

/// Huge page usage of one size.
#[derive(Debug, Default, Serialize)]
pub struct Hugetlb {
    /// Usage in bytes.
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    /// Peak usage in bytes.
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    /// Times the limit was hit.
    pub failcnt: u64,
}

fn read(dir: &Path, file: &str) -> Option<String> {
    fs::read_to_string(dir.join(file)).ok()
}

/// A number from a one-value file; `max` reads as `u64::MAX`.
fn num(dir: &Path, file: &str) -> u64 {
    read(dir, file).map(|s| parse_num(s.trim())).unwrap_or(0)
}

fn parse_num(s: &str) -> u64 {
    if s == "max" {
        u64::MAX
    } else {
        s.parse().unwrap_or(0)
    }
}

/// `key value` lines (`memory.stat`, `cpu.stat`, `memory.events`).
pub fn keyed(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    read(dir, file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// A cpu/node list such as `0-3,8`.
fn ranges(s: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
            out.extend(a..=b);
        }
    }
    out
}

/// Huge page sizes the kernel has, as cgroup file names spell them (`2MB`).
fn hugepage_sizes() -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/sys/kernel/mm/hugepages")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(kb) = name
            .strip_prefix("hugepages-")
            .and_then(|s| s.strip_suffix("kB"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        out.push(match kb {
            k if k >= 1 << 20 => format!("{}GB", k >> 20),
            k if k >= 1 << 10 => format!("{}MB", k >> 10),
            k => format!("{k}KB"),
        });
    }
    out
}

/// Stats of a v1 cgroup; `find` gives its directory for a controller.
pub fn v1(find: impl Fn(&str) -> Option<std::path::PathBuf>) -> Stats {
    let mut s = Stats::default();
    if let Some(d) = find("cpuacct") {
        s.cpu.usage.total = num(&d, "cpuacct.usage");
        s.cpu.usage.percpu = read(&d, "cpuacct.usage_percpu")
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        // `cpu user system` per line, nanoseconds.
        for line in read(&d, "cpuacct.usage_all")
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            if f.len() == 3 {
                s.cpu.usage.percpu_user.push(f[1]);
                s.cpu.usage.percpu_kernel.push(f[2]);
            }
        }
        // cpuacct.stat counts USER_HZ ticks.
        let st = keyed(&d, "cpuacct.stat");
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        s.cpu.usage.user = st.get("user").copied().unwrap_or(0) * 1_000_000_000 / hz;
        s.cpu.usage.kernel = st.get("system").copied().unwrap_or(0) * 1_000_000_000 / hz;
    }
    if let Some(d) = find("cpu") {
        let st = keyed(&d, "cpu.stat");
        s.cpu.throttling.periods = st.get("nr_periods").copied().unwrap_or(0);
        s.cpu.throttling.throttled_periods = st.get("nr_throttled").copied().unwrap_or(0);
        s.cpu.throttling.throttled_time = st.get("throttled_time").copied().unwrap_or(0);
    }
    if let Some(d) = find("cpuset") {
        let c = &mut s.cpuset;
        c.cpus = ranges(&read(&d, "cpuset.cpus").unwrap_or_default());
        c.mems = ranges(&read(&d, "cpuset.mems").unwrap_or_default());
        c.cpu_exclusive = num(&d, "cpuset.cpu_exclusive");
        c.mem_hardwall = num(&d, "cpuset.mem_hardwall");
        c.mem_exclusive = num(&d, "cpuset.mem_exclusive");
        c.memory_migrate = num(&d, "cpuset.memory_migrate");
        c.memory_spread_page = num(&d, "cpuset.memory_spread_page");
        c.memory_spread_slab = num(&d, "cpuset.memory_spread_slab");
        c.memory_pressure = num(&d, "cpuset.memory_pressure");
        c.sched_load_balance = num(&d, "cpuset.sched_load_balance");
        c.sched_relax_domain_level = read(&d, "cpuset.sched_relax_domain_level")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
    }
    if let Some(d) = find("memory") {
        let entry = |prefix: &str| MemoryEntry {
            limit: num(&d, &format!("{prefix}.limit_in_bytes")),
            usage: num(&d, &format!("{prefix}.usage_in_bytes")),
            max: num(&d, &format!("{prefix}.max_usage_in_bytes")),
            failcnt: num(&d, &format!("{prefix}.failcnt")),
        };
        s.memory.usage = entry("memory");
        s.memory.swap = entry("memory.memsw");
        s.memory.kernel = entry("memory.kmem");
        s.memory.kernel_tcp = entry("memory.kmem.tcp");
        s.memory.raw = keyed(&d, "memory.stat");
        s.memory.cache = s.memory.raw.get("total_cache").copied().unwrap_or(0);
    }
    if let Some(d) = find("pids") {
        s.pids = pids(&d);
    }
    if let Some(d) = find("blkio") {
        s.blkio.io_service_bytes_recursive =
            blkio_v1(&read(&d, "blkio.throttle.io_service_bytes_recursive").unwrap_or_default());
        s.blkio.io_serviced_recursive =
            blkio_v1(&read(&d, "blkio.throttle.io_serviced_recursive").unwrap_or_default());
    }
    if let Some(d) = find("hugetlb") {
        for size in hugepage_sizes() {
            let h = Hugetlb {
                usage: num(&d, &format!("hugetlb.{size}.usage_in_bytes")),
                max: num(&d, &format!("hugetlb.{size}.max_usage_in_bytes")),
                failcnt: num(&d, &format!("hugetlb.{size}.failcnt")),
            };
            s.hugetlb.insert(size, h);
        }
    }
    s
}

fn pids(d: &Path) -> Pids {
    let limit = num(d, "pids.max");
    Pids {
        current: num(d, "pids.current"),
        limit: if limit == u64::MAX { 0 } else { limit },
    }
}

/// `MAJ:MIN Op value` lines (the trailing `Total N` line has no device).
fn blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [dev, op, value] = f[..] else { return None };
            let (maj, min) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                op: op.to_string(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// Stats of a v2 cgroup directory.
pub fn v2(d: &Path) -> Stats {
    let mut s = Stats::default();
    let cpu = keyed(d, "cpu.stat");
    let get = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    s.cpu.usage.total = get(&cpu, "usage_usec") * 1000;
    s.cpu.usage.user = get(&cpu, "user_usec") * 1000;
    s.cpu.usage.kernel = get(&cpu, "system_usec") * 1000;
    s.cpu.throttling.periods = get(&cpu, "nr_periods");
    s.cpu.throttling.throttled_periods = get(&cpu, "nr_throttled");
    s.cpu.throttling.throttled_time = get(&cpu, "throttled_usec") * 1000;

    let events = keyed(d, "memory.events");
    s.memory.usage = MemoryEntry {
        limit: num(d, "memory.max"),
        usage: num(d, "memory.current"),
        max: num(d, "memory.peak"),
        failcnt: get(&events, "max"),
    };
    // v1 reports swap as memory+swap; runc reports v2 the same way.
    let swap_limit = num(d, "memory.swap.max");
    s.memory.swap = MemoryEntry {
        limit: if swap_limit == u64::MAX || s.memory.usage.limit == u64::MAX {
            u64::MAX
        } else {
            swap_limit + s.memory.usage.limit
        },
        usage: num(d, "memory.swap.current") + s.memory.usage.usage,
        max: 0,
        failcnt: keyed(d, "memory.swap.events")
            .get("fail")
            .copied()
            .unwrap_or(0),
    };
    s.memory.raw = keyed(d, "memory.stat");
    s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
    s.pids = pids(d);
    for line in read(d, "io.stat").unwrap_or_default().lines() {
        let mut f = line.split_whitespace();
        let Some((maj, min)) = f.next().and_then(|dev| dev.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (maj.parse(), min.parse()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let value = v.parse().unwrap_or(0);
            let (list, op) = match k {
                "rbytes" => (&mut s.blkio.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut s.blkio.io_service_bytes_recursive, "Write"),
                "rios" => (&mut s.blkio.io_serviced_recursive, "Read"),
                "wios" => (&mut s.blkio.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    for size in hugepage_sizes() {
        if !d.join(format!("hugetlb.{size}.current")).exists() {
            continue;
        }
        let h = Hugetlb {
            usage: num(d, &format!("hugetlb.{size}.current")),
            max: 0,
            failcnt: keyed(d, &format!("hugetlb.{size}.events"))
                .get("max")
                .copied()
                .unwrap_or(0),
        };
        s.hugetlb.insert(size, h);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_blkio_lines() {
        assert_eq!(ranges("0-2,5\n"), [0, 1, 2, 5]);
        assert_eq!(ranges(""), Vec::<u16>::new());
        let b = blkio_v1("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n");
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].op, "Read");
        assert_eq!(b[0].value, 4096);
        assert_eq!(parse_num("max"), u64::MAX);
    }

    #[test]
    fn json_shape_matches_runc() {
        let mut s = Stats::default();
        s.pids.current = 3;
        s.memory.usage.limit = 100;
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["pids"], serde_json::json!({"current": 3}));
        assert_eq!(
            v["memory"]["usage"],
            serde_json::json!({"limit": 100, "failcnt": 0})
        );
        assert_eq!(
            v["cpu"]["usage"],
            serde_json::json!({"kernel": 0, "user": 0})
        );
        assert_eq!(v["cpu"]["throttling"], serde_json::json!({}));
        assert!(v["memory"].get("kernelTCP").is_some());
        assert!(v["network_interfaces"].is_null());
        assert_eq!(v["intel_rdt"], serde_json::json!({}));
    }
}

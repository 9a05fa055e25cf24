//! `RUNTIME events --stats ID` (runc's JSON shape, which berth, runc and
//! crun print) as containerd's cgroup v1 `Metrics` message, what `ctr task
//! metrics` and the CRI plugin read. The v1 message is used on cgroup v2 hosts
//! too (containerd's consumers accept both kinds; the v2 message is not in
//! containerd-shim-protos): the runtime has already mapped v2 counters into
//! runc's fields.

use containerd_shim_protos::cgroups::metrics::{
    BlkIOEntry, BlkIOStat, CPUStat, CPUUsage, HugetlbStat, MemoryEntry, MemoryStat, Metrics,
    PidsStat, Throttle,
};
use containerd_shim_protos::protobuf::reflect::ReflectValueBox;
use containerd_shim_protos::protobuf::{MessageField, MessageFull};
use serde_json::Value;

/// Converts the `data` object of a stats event.
pub fn metrics(data: &Value) -> Metrics {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let mut m = Metrics::new();

    let cpu = &data["cpu"];
    let mut usage = CPUUsage::new();
    usage.total = n(&cpu["usage"]["total"]);
    usage.kernel = n(&cpu["usage"]["kernel"]);
    usage.user = n(&cpu["usage"]["user"]);
    usage.per_cpu = list(&cpu["usage"]["percpu"]);
    let mut thr = Throttle::new();
    thr.periods = n(&cpu["throttling"]["periods"]);
    thr.throttled_periods = n(&cpu["throttling"]["throttledPeriods"]);
    thr.throttled_time = n(&cpu["throttling"]["throttledTime"]);
    let mut c = CPUStat::new();
    c.usage = MessageField::some(usage);
    c.throttling = MessageField::some(thr);
    m.cpu = MessageField::some(c);

    let mem = &data["memory"];
    let mut ms = MemoryStat::new();
    // memory.stat keys are the message's field names, except for the page
    // counters.
    let desc = MemoryStat::descriptor();
    if let Some(raw) = mem["raw"].as_object() {
        for (k, v) in raw {
            let name = k
                .replace("pgpgin", "pg_pg_in")
                .replace("pgpgout", "pg_pg_out")
                .replace("pgmajfault", "pg_maj_fault")
                .replace("pgfault", "pg_fault");
            if let Some(f) = desc.field_by_name(&name) {
                if f.proto().type_() == containerd_shim_protos::protobuf::descriptor::field_descriptor_proto::Type::TYPE_UINT64 {
                    f.set_singular_field(&mut ms, ReflectValueBox::U64(n(v)));
                }
            }
        }
    }
    if ms.cache == 0 {
        ms.cache = n(&mem["cache"]);
    }
    ms.usage = MessageField::some(entry(&mem["usage"]));
    ms.swap = MessageField::some(entry(&mem["swap"]));
    ms.kernel = MessageField::some(entry(&mem["kernel"]));
    ms.kernel_tcp = MessageField::some(entry(&mem["kernelTCP"]));
    m.memory = MessageField::some(ms);

    let mut p = PidsStat::new();
    p.current = n(&data["pids"]["current"]);
    p.limit = n(&data["pids"]["limit"]);
    m.pids = MessageField::some(p);

    let mut b = BlkIOStat::new();
    b.io_service_bytes_recursive = blkio(&data["blkio"]["ioServiceBytesRecursive"]);
    b.io_serviced_recursive = blkio(&data["blkio"]["ioServicedRecursive"]);
    m.blkio = MessageField::some(b);

    if let Some(h) = data["hugetlb"].as_object() {
        for (size, v) in h {
            let mut s = HugetlbStat::new();
            s.pagesize = size.clone();
            s.usage = n(&v["usage"]);
            s.max = n(&v["max"]);
            s.failcnt = n(&v["failcnt"]);
            m.hugetlb.push(s);
        }
    }
    m
}

fn list(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_u64().unwrap_or(0)).collect())
        .unwrap_or_default()
}

fn entry(v: &Value) -> MemoryEntry {
    let mut e = MemoryEntry::new();
    e.limit = v["limit"].as_u64().unwrap_or(0);
    e.usage = v["usage"].as_u64().unwrap_or(0);
    e.max = v["max"].as_u64().unwrap_or(0);
    e.failcnt = v["failcnt"].as_u64().unwrap_or(0);
    e
}

fn blkio(v: &Value) -> Vec<BlkIOEntry> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            let mut e = BlkIOEntry::new();
            e.major = x["major"].as_u64().unwrap_or(0);
            e.minor = x["minor"].as_u64().unwrap_or(0);
            e.op = x["op"].as_str().unwrap_or_default().to_string();
            e.value = x["value"].as_u64().unwrap_or(0);
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn runc_stats_become_v1_metrics() {
        let data = json!({
            "cpu": {"usage": {"total": 5, "percpu": [2, 3], "kernel": 1, "user": 4},
                    "throttling": {"periods": 7, "throttledPeriods": 1}},
            "memory": {"usage": {"limit": 100, "usage": 50, "max": 60, "failcnt": 0},
                       "raw": {"cache": 9, "rss": 8, "pgfault": 3, "total_pgmajfault": 2,
                               "unknown_key": 1}},
            "pids": {"current": 2, "limit": 20},
            "blkio": {"ioServiceBytesRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 4}]},
            "hugetlb": {"2MB": {"usage": 0, "max": 0, "failcnt": 0}}
        });
        let m = metrics(&data);
        assert_eq!(m.cpu.usage.per_cpu, vec![2, 3]);
        assert_eq!(m.cpu.throttling.throttled_periods, 1);
        assert_eq!(m.memory.usage.usage, 50);
        assert_eq!((m.memory.cache, m.memory.rss), (9, 8));
        assert_eq!(m.memory.pg_fault, 3);
        assert_eq!(m.memory.total_pg_maj_fault, 2);
        assert_eq!((m.pids.current, m.pids.limit), (2, 20));
        assert_eq!(m.blkio.io_service_bytes_recursive[0].op, "Read");
        assert_eq!(m.hugetlb[0].pagesize, "2MB");
    }
}

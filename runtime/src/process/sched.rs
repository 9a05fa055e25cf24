//! Scheduling attributes of the container process: `process.scheduler`,
//! `process.ioPriority`, `process.execCPUAffinity` and `linux.personality`.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    IOPriorityClass, LinuxPersonality, LinuxPersonalityDomain, LinuxSchedulerFlag,
    LinuxSchedulerPolicy, Scheduler,
};

/// `struct sched_attr` of sched_setattr(2) (version 1, 56 bytes).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

fn policy(p: LinuxSchedulerPolicy) -> u32 {
    match p {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    }
}

fn flag(f: &LinuxSchedulerFlag) -> u64 {
    match f {
        LinuxSchedulerFlag::SchedResetOnFork => 0x01,
        LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
        LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
        LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
        LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
        LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
        LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
    }
}

/// Applies `process.scheduler` with sched_setattr(2).
pub fn apply_scheduler(s: &Scheduler) -> Result<()> {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: policy(*s.policy()),
        flags: s.flags().iter().flatten().map(flag).fold(0, |a, b| a | b),
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0).max(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        ..Default::default()
    };
    // SAFETY: pointer to a correctly sized sched_attr.
    if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) } < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("sched_setattr {:?}", s.policy()));
    }
    Ok(())
}

/// Applies `process.ioPriority` with ioprio_set(2).
pub fn apply_io_priority(class: IOPriorityClass, priority: i64) -> Result<()> {
    if !(0..=7).contains(&priority) {
        bail!("ioPriority.priority {priority} is out of range 0..7");
    }
    let class = match class {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let value = (class << 13) | priority;
    // SAFETY: plain syscall: IOPRIO_WHO_PROCESS, this process.
    if unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, value) } < 0 {
        return Err(std::io::Error::last_os_error()).context("ioprio_set");
    }
    Ok(())
}

/// Applies `linux.personality`.
pub fn apply_personality(p: &LinuxPersonality) -> Result<()> {
    if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        bail!("linux.personality.flags are not supported");
    }
    let domain = match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // SAFETY: plain syscall.
    if unsafe { libc::personality(domain) } < 0 {
        return Err(std::io::Error::last_os_error()).context("personality");
    }
    Ok(())
}

/// Parses a cpu list such as `0-3,7`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let (a, b): (usize, usize) = (
            a.parse().with_context(|| format!("cpu list {s:?}"))?,
            b.parse().with_context(|| format!("cpu list {s:?}"))?,
        );
        if a > b || b >= libc::CPU_SETSIZE as usize {
            bail!("cpu list {s:?}: bad range {part}");
        }
        cpus.extend(a..=b);
    }
    if cpus.is_empty() {
        bail!("cpu list {s:?} is empty");
    }
    Ok(cpus)
}

/// Pins the process to the cpus of `list` (sched_setaffinity).
pub fn set_affinity(list: &str) -> Result<()> {
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in parse_cpu_list(list)? {
        // SAFETY: cpu is below CPU_SETSIZE (checked by the parser).
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pointer and size of a valid cpu_set_t.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("sched_setaffinity {list}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        for bad in ["", "3-1", "x", "0-99999"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sched_attr_is_the_kernels_size() {
        assert_eq!(std::mem::size_of::<SchedAttr>(), 56);
    }
}

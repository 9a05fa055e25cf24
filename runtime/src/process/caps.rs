//! The five capability sets of the container process.
//!
//! Order matters and is split in two steps around the uid switch:
//! [`drop_bounding`] runs while the init still has `CAP_SETPCAP` (before
//! `setresuid`), [`apply`] runs after it (with `PR_SET_KEEPCAPS` keeping the
//! permitted set across the switch) and sets effective, permitted and
//! inheritable in one `capset`, then raises the ambient ones.

use std::str::FromStr;

use anyhow::{Context, Result};
use caps::{CapSet, Capability};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

/// The capability sets, as kernel bitmasks (bit N = capability N).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapPlan {
    /// Bounding set.
    pub bounding: u64,
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
    /// Ambient set.
    pub ambient: u64,
    /// Every capability this kernel knows.
    pub known: u64,
}

/// The capabilities this kernel knows, as a mask: one read of
/// `cap_last_cap` instead of probing each capability with a prctl.
fn known_mask() -> u64 {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&l| l < 64);
    match last {
        Some(l) => u64::MAX >> (63 - l),
        None => caps::runtime::thread_all_supported()
            .iter()
            .fold(0, |m, c| m | c.bitmask()),
    }
}

/// Converts an OCI capability to the kernel's.
pub fn to_kernel(c: &oci_spec::runtime::Capability) -> Result<Capability> {
    let name = serde_json::to_value(c).context("capability name")?;
    let name = name.as_str().unwrap_or_default();
    Capability::from_str(name).map_err(|e| anyhow::anyhow!("unknown capability {name}: {e}"))
}

fn mask(set: &Option<Capabilities>, known: u64) -> Result<u64> {
    let mut m = 0;
    for c in set.iter().flatten() {
        let k = to_kernel(c)?;
        // A capability this kernel does not know cannot be granted; runc
        // skips it with a warning, and so does berth.
        if known & k.bitmask() != 0 {
            m |= k.bitmask();
        } else {
            crate::logging::warn(&format!(
                "capability {k} is not supported by the kernel, skipped"
            ));
        }
    }
    Ok(m)
}

/// Builds the plan from `process.capabilities` (absent: no capabilities).
pub fn plan(caps: Option<&LinuxCapabilities>) -> Result<CapPlan> {
    let known = known_mask();
    let Some(c) = caps else {
        return Ok(CapPlan {
            known,
            ..Default::default()
        });
    };
    Ok(CapPlan {
        bounding: mask(c.bounding(), known)?,
        effective: mask(c.effective(), known)?,
        permitted: mask(c.permitted(), known)?,
        inheritable: mask(c.inheritable(), known)?,
        ambient: mask(c.ambient(), known)?,
        known,
    })
}

/// Drops every capability outside `plan.bounding` from the bounding set.
pub fn drop_bounding(plan: &CapPlan) -> Result<()> {
    for bit in bits(plan.known & !plan.bounding) {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, bit as libc::c_ulong, 0, 0, 0) } < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("drop capability {bit} from the bounding set"));
        }
    }
    Ok(())
}

fn bits(mask: u64) -> impl Iterator<Item = u32> {
    (0..64).filter(move |b| mask & (1u64 << b) != 0)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Sets effective, permitted and inheritable at once, then the ambient set.
pub fn apply(plan: &CapPlan) -> Result<()> {
    let mut hdr = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let lo = |m: u64| m as u32;
    let hi = |m: u64| (m >> 32) as u32;
    let data = [
        CapData {
            effective: lo(plan.effective),
            permitted: lo(plan.permitted),
            inheritable: lo(plan.inheritable),
        },
        CapData {
            effective: hi(plan.effective),
            permitted: hi(plan.permitted),
            inheritable: hi(plan.inheritable),
        },
    ];
    // SAFETY: header and two data words as capset(2) expects for version 3.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error()).context("capset");
    }
    caps::clear(None, CapSet::Ambient).context("clear ambient capabilities")?;
    for bit in bits(plan.ambient) {
        let raise = libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong;
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, raise, bit as libc::c_ulong, 0, 0) } < 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| {
                format!("raise ambient capability {bit} (an ambient capability must be permitted and inheritable too)")
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_from_spec() {
        let c: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_CHOWN","CAP_KILL"],"effective":["CAP_KILL"],"permitted":["CAP_KILL"]}"#,
        )
        .unwrap();
        let p = plan(Some(&c)).unwrap();
        assert_eq!(p.bounding, (1 << 0) | (1 << 5));
        assert_eq!(p.effective, 1 << 5);
        assert_eq!(p.inheritable, 0);
        let none = plan(None).unwrap();
        assert_eq!((none.bounding, none.effective, none.ambient), (0, 0, 0));
        assert!(none.known & (1 << 21) != 0, "CAP_SYS_ADMIN is known");
    }
}

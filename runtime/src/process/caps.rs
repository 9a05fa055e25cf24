//! The five capability sets of the container process.
//!
//! Order matters and is split in two steps around the uid switch:
//! [`drop_bounding`] runs while the init still has `CAP_SETPCAP` (before
//! `setresuid`), [`apply`] runs after it (with `PR_SET_KEEPCAPS` keeping the
//! permitted set across the switch) and sets effective, permitted and
//! inheritable in one `capset`, then raises the ambient ones.

use std::str::FromStr;

use anyhow::{Context, Result};
use caps::{CapSet, Capability, CapsHashSet};
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
}

/// Converts an OCI capability to the kernel's.
pub fn to_kernel(c: &oci_spec::runtime::Capability) -> Result<Capability> {
    let name = serde_json::to_value(c).context("capability name")?;
    let name = name.as_str().unwrap_or_default();
    Capability::from_str(name).map_err(|e| anyhow::anyhow!("unknown capability {name}: {e}"))
}

fn mask(set: &Option<Capabilities>, known: &CapsHashSet) -> Result<u64> {
    let mut m = 0;
    for c in set.iter().flatten() {
        let k = to_kernel(c)?;
        // A capability this kernel does not know cannot be granted; runc
        // skips it with a warning, and so does berth.
        if known.contains(&k) {
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
    let Some(c) = caps else {
        return Ok(CapPlan::default());
    };
    let known = caps::runtime::thread_all_supported();
    Ok(CapPlan {
        bounding: mask(c.bounding(), &known)?,
        effective: mask(c.effective(), &known)?,
        permitted: mask(c.permitted(), &known)?,
        inheritable: mask(c.inheritable(), &known)?,
        ambient: mask(c.ambient(), &known)?,
    })
}

/// Drops every capability outside `plan.bounding` from the bounding set.
pub fn drop_bounding(plan: &CapPlan) -> Result<()> {
    for cap in caps::runtime::thread_all_supported() {
        if plan.bounding & cap.bitmask() == 0 {
            caps::drop(None, CapSet::Bounding, cap)
                .with_context(|| format!("drop {cap} from the bounding set"))?;
        }
    }
    Ok(())
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
    for cap in caps::runtime::thread_all_supported() {
        if plan.ambient & cap.bitmask() != 0 {
            caps::raise(None, CapSet::Ambient, cap).with_context(|| {
                format!("raise ambient {cap} (an ambient capability must be permitted and inheritable too)")
            })?;
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
        assert_eq!(plan(None).unwrap(), CapPlan::default());
    }
}

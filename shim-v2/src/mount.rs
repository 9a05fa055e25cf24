//! Mounting the rootfs containerd's snapshotter describes (an overlay, a
//! bind mount) on `BUNDLE/rootfs`, and unmounting it.
//!
//! Done here rather than with `containerd_shim::mount::mount_rootfs`: that
//! one mounts in a forked child and waits for it through the crate's reaper,
//! which this shim does not run (berth-shim's core reaps every child).

use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Mounts `source` of type `fstype` with containerd's `options` on `target`.
pub fn mount_rootfs(fstype: &str, source: &str, options: &[String], target: &Path) -> Result<()> {
    let (flags, data) = parse_options(options);
    let data = data.join(",");
    if data.len() >= page_size() - 512 {
        bail!(
            "mount options of {fstype} are too long ({} bytes)",
            data.len()
        );
    }
    let fstype_opt = Some(fstype).filter(|t| !t.is_empty() && *t != "bind");
    let data_opt = Some(data.as_str()).filter(|d| !d.is_empty());
    let first = if flags.contains(MsFlags::MS_BIND) {
        flags - MsFlags::MS_RDONLY
    } else {
        flags
    };
    mount(Some(source), target, fstype_opt, first, data_opt)
        .with_context(|| format!("mount {fstype} {source} on {}", target.display()))?;
    // A read-only bind mount takes a remount.
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            flags | MsFlags::MS_REMOUNT,
            None::<&str>,
        )
        .with_context(|| format!("remount {} read-only", target.display()))?;
    }
    Ok(())
}

/// Unmounts `target` (and what is mounted below it), lazily.
pub fn unmount(target: &Path) -> Result<()> {
    loop {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("unmount {}", target.display())),
        }
    }
}

/// Mount flags and the remaining filesystem options.
fn parse_options(options: &[String]) -> (MsFlags, Vec<&str>) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        let (set, f) = match o.as_str() {
            "ro" => (true, MsFlags::MS_RDONLY),
            "rw" => (false, MsFlags::MS_RDONLY),
            "bind" => (true, MsFlags::MS_BIND),
            "rbind" => (true, MsFlags::MS_BIND | MsFlags::MS_REC),
            "nosuid" => (true, MsFlags::MS_NOSUID),
            "suid" => (false, MsFlags::MS_NOSUID),
            "nodev" => (true, MsFlags::MS_NODEV),
            "dev" => (false, MsFlags::MS_NODEV),
            "noexec" => (true, MsFlags::MS_NOEXEC),
            "exec" => (false, MsFlags::MS_NOEXEC),
            "noatime" => (true, MsFlags::MS_NOATIME),
            "relatime" => (true, MsFlags::MS_RELATIME),
            "sync" => (true, MsFlags::MS_SYNCHRONOUS),
            "async" => (false, MsFlags::MS_SYNCHRONOUS),
            "defaults" => (true, MsFlags::empty()),
            other => {
                data.push(other);
                continue;
            }
        };
        if set {
            flags |= f;
        } else {
            flags -= f;
        }
    }
    (flags, data)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["ro", "rbind", "nosuid", "workdir=/w", "index=off"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (f, d) = parse_options(&opts);
        assert_eq!(
            f,
            MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID
        );
        assert_eq!(d, vec!["workdir=/w", "index=off"]);
        let (f, _) = parse_options(&["ro".to_string(), "rw".to_string()]);
        assert_eq!(f, MsFlags::empty());
    }
}

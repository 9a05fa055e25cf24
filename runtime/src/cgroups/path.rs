//! Where the container's cgroup goes: `linux.cgroupsPath` resolved the way
//! runc's cgroupfs driver resolves it.
//!
//! - absolute: that path below every hierarchy's root;
//! - relative: below the caller's own cgroup (runc does the same);
//! - empty or missing: `/berth/ID`, so that a container never lands in the
//!   caller's cgroup by accident;
//! - `slice:prefix:name` is the systemd driver's syntax, valid only with
//!   `--systemd-cgroup`, which berth refuses with a clear error.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Result};
use oci_spec::runtime::Spec;

use super::layout::{own_cgroups, Layout};

/// Parent of the default cgroups (`/berth/ID`).
pub const DEFAULT_PARENT: &str = "/berth";

/// The container's cgroup path, absolute (relative to each hierarchy root).
pub fn cgroup_path(spec: &Spec, id: &str, systemd: bool) -> Result<PathBuf> {
    let configured = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .filter(|p| !p.as_os_str().is_empty());
    if systemd {
        return systemd_path(configured.as_deref());
    }
    let Some(p) = configured else {
        return Ok(Path::new(DEFAULT_PARENT).join(id));
    };
    if p.to_string_lossy().contains(':') && !p.is_absolute() {
        bail!(
            "cgroupsPath {} is in the systemd driver's slice:prefix:name form; \
             it needs --systemd-cgroup",
            p.display()
        );
    }
    if p.components().any(|c| c == Component::ParentDir) {
        bail!(
            "config.json: cgroupsPath {} must not contain \"..\"",
            p.display()
        );
    }
    if p.is_absolute() {
        if p.components().all(|c| c == Component::RootDir) {
            bail!("cgroupsPath \"/\" would be the root cgroup");
        }
        return Ok(p);
    }
    relative(&p, &Layout::detect()?, &own_cgroups()?)
}

/// Resolves a relative path below the caller's own cgroup. On v1 the caller
/// may sit in different cgroups per hierarchy (on the CI machine its memory
/// cgroup differs from the others); berth keeps one path per container, so
/// it refuses that case instead of guessing.
fn relative(p: &Path, layout: &Layout, own: &[(String, PathBuf)]) -> Result<PathBuf> {
    let mut base: Option<&Path> = None;
    for (ctrls, path) in own {
        let relevant = if layout.is_unified() {
            ctrls.is_empty()
        } else {
            layout.managed_v1().any(|h| {
                h.controllers
                    .iter()
                    .any(|c| ctrls.split(',').any(|o| o == c))
            })
        };
        if !relevant {
            continue;
        }
        match base {
            None => base = Some(path),
            Some(b) if b == path => {}
            Some(b) => bail!(
                "relative cgroupsPath {}: the caller is in different cgroups per hierarchy \
                 ({} and {}); use an absolute cgroupsPath",
                p.display(),
                b.display(),
                path.display()
            ),
        }
    }
    let base = base.unwrap_or(Path::new("/"));
    Ok(base.join(p))
}

/// `--systemd-cgroup`: the systemd driver talks to systemd over D-Bus; berth
/// does not have it.
fn systemd_path(configured: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = configured {
        let s = p.to_string_lossy();
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 3 || parts[0].is_empty() && parts[2].is_empty() {
            bail!("--systemd-cgroup: cgroupsPath {s:?} must have the form slice:prefix:name");
        }
    }
    if !Path::new("/run/systemd/system").exists() {
        bail!("--systemd-cgroup: systemd is not running on this machine");
    }
    bail!("--systemd-cgroup: the systemd cgroup driver is not implemented in berth yet")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: Option<&str>) -> Spec {
        let linux = match path {
            Some(p) => serde_json::json!({ "cgroupsPath": p }),
            None => serde_json::json!({}),
        };
        serde_json::from_value(serde_json::json!({"ociVersion": "1.0.0", "linux": linux})).unwrap()
    }

    #[test]
    fn default_and_absolute_paths() {
        assert_eq!(
            cgroup_path(&spec(None), "c1", false).unwrap(),
            Path::new("/berth/c1")
        );
        assert_eq!(
            cgroup_path(&spec(Some("")), "c1", false).unwrap(),
            Path::new("/berth/c1")
        );
        assert_eq!(
            cgroup_path(&spec(Some("/x/y")), "c1", false).unwrap(),
            Path::new("/x/y")
        );
        for bad in ["/x/../..", "/", "x/../y", "system.slice:berth:c1"] {
            assert!(cgroup_path(&spec(Some(bad)), "c1", false).is_err(), "{bad}");
        }
    }

    #[test]
    fn systemd_is_refused_clearly() {
        let e = cgroup_path(&spec(Some("system.slice:berth:c1")), "c1", true).unwrap_err();
        assert!(e.to_string().contains("systemd"), "{e}");
        let e = cgroup_path(&spec(Some("nocolons")), "c1", true).unwrap_err();
        assert!(e.to_string().contains("slice:prefix:name"), "{e}");
    }

    #[test]
    fn relative_paths_go_below_the_callers_cgroup() {
        let hybrid = Layout::parse(
            "1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             2 0 0:2 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
             3 0 0:3 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n",
        );
        let own = |m: &str| {
            vec![
                ("memory".to_string(), PathBuf::from(m)),
                ("pids".to_string(), PathBuf::from("/a")),
                ("name=systemd".to_string(), PathBuf::from("/elsewhere")),
            ]
        };
        assert_eq!(
            relative(Path::new("c/d"), &hybrid, &own("/a")).unwrap(),
            Path::new("/a/c/d")
        );
        assert!(relative(Path::new("c"), &hybrid, &own("/b")).is_err());
        let v2 = Layout::parse("1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let own = vec![(String::new(), PathBuf::from("/user.slice"))];
        assert_eq!(
            relative(Path::new("c"), &v2, &own).unwrap(),
            Path::new("/user.slice/c")
        );
    }
}

//! The OCI runtime config (`config.json`) of a container or a build step,
//! with the defaults Docker and Podman use: Docker's default capability
//! set, masked and read-only `/proc` and `/sys` paths, the default seccomp
//! profile, `/dev/shm`, `/dev/mqueue`, devpts, a read-only sysfs and cgroup
//! mount, the default device allow-list, and new pid, ipc, uts, mount and
//! network namespaces.

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::user::User;

/// Docker's default capabilities (moby `oci/caps/defaults.go`).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows (for `--cap-add ALL`).
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's masked paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The default `PATH` of a container whose image sets none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Normalizes a capability name (`net_admin` → `CAP_NET_ADMIN`).
pub fn cap_name(s: &str) -> Result<String> {
    let up = s.to_uppercase();
    let name = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if !ALL_CAPS.contains(&name.as_str()) {
        bail!("unknown capability {s:?}");
    }
    Ok(name)
}

/// Docker's default set with `--cap-add` and `--cap-drop` applied (`ALL`
/// accepted in both; drops apply after adds, as in Docker).
pub fn capabilities(add: &[String], drop: &[String]) -> Result<Vec<String>> {
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    for a in add {
        if a.eq_ignore_ascii_case("ALL") {
            caps = ALL_CAPS.iter().map(|s| s.to_string()).collect();
            continue;
        }
        let n = cap_name(a)?;
        if !caps.contains(&n) {
            caps.push(n);
        }
    }
    for d in drop {
        if d.eq_ignore_ascii_case("ALL") {
            caps.clear();
            continue;
        }
        let n = cap_name(d)?;
        caps.retain(|c| c != &n);
    }
    Ok(caps)
}

/// The container's network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetNs {
    /// A new, empty one (only loopback).
    New,
    /// The host's.
    Host,
    /// One prepared beforehand (bridge networks).
    Path(PathBuf),
}

/// What goes into a config.
#[derive(Clone, Debug)]
pub struct SpecOpts {
    /// `process.args`.
    pub args: Vec<String>,
    /// `process.env` (`K=V`).
    pub env: Vec<String>,
    /// `process.cwd`.
    pub cwd: String,
    /// The user.
    pub user: User,
    /// `process.terminal`.
    pub terminal: bool,
    /// The hostname (uts namespace).
    pub hostname: String,
    /// The capabilities (bounding set; also effective/permitted for root).
    pub caps: Vec<String>,
    /// `linux.seccomp` (None: unconfined).
    pub seccomp: Option<Value>,
    /// `process.noNewPrivileges`.
    pub no_new_privileges: bool,
    /// Read-only root filesystem.
    pub read_only: bool,
    /// Network namespace.
    pub netns: NetNs,
    /// Extra mounts (OCI mount objects), after the defaults.
    pub mounts: Vec<Value>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// CPU limit in CPUs (quota over a 100 ms period).
    pub cpus: Option<f64>,
    /// Pids limit.
    pub pids: Option<i64>,
    /// `linux.cgroupsPath`.
    pub cgroups_path: String,
    /// Annotations.
    pub annotations: Vec<(String, String)>,
}

fn m(dest: &str, typ: &str, src: &str, opts: &[&str]) -> Value {
    json!({"destination": dest, "type": typ, "source": src, "options": opts})
}

/// A bind mount object.
pub fn bind(src: &str, dest: &str, read_only: bool) -> Value {
    let mut o = vec!["rbind", "rprivate"];
    if read_only {
        o.push("ro");
    }
    m(dest, "bind", src, &o)
}

/// The default devices a container may use (Docker's list; the runtime
/// creates them in `/dev`).
fn device_rules() -> Value {
    let allow = |t: &str, maj: i64, min: Option<i64>, acc: &str| json!({"allow": true, "type": t, "major": maj, "minor": min, "access": acc});
    json!([
        {"allow": false, "access": "rwm"},
        allow("c", 1, Some(3), "rwm"),    // null
        allow("c", 1, Some(5), "rwm"),    // zero
        allow("c", 1, Some(7), "rwm"),    // full
        allow("c", 1, Some(8), "rwm"),    // random
        allow("c", 1, Some(9), "rwm"),    // urandom
        allow("c", 5, Some(0), "rwm"),    // tty
        allow("c", 5, Some(1), "rwm"),    // console
        allow("c", 5, Some(2), "rwm"),    // ptmx
        allow("c", 136, None, "rwm"),     // pts/*
        allow("c", 10, Some(200), "rwm"), // net/tun
    ])
}

/// Builds the config.
pub fn generate(o: &SpecOpts) -> Value {
    let root_user = o.user.uid == 0;
    let eff: Vec<String> = if root_user {
        o.caps.clone()
    } else {
        Vec::new()
    };
    let mut mounts = vec![
        m("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        m(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        m(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        m(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        m(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
        m(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        m(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
    ];
    mounts.extend(o.mounts.iter().cloned());
    let mut ns = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    match &o.netns {
        NetNs::New => ns.push(json!({"type": "network"})),
        NetNs::Host => {}
        NetNs::Path(p) => ns.push(json!({"type": "network", "path": p})),
    }
    let mut resources = json!({"devices": device_rules()});
    if let Some(mem) = o.memory {
        resources["memory"] = json!({"limit": mem});
    }
    if let Some(c) = o.cpus {
        let period: u64 = 100_000;
        resources["cpu"] = json!({"quota": (c * period as f64).round() as i64, "period": period});
    }
    if let Some(p) = o.pids {
        resources["pids"] = json!({"limit": p});
    }
    let mut linux = json!({
        "namespaces": ns,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
        "resources": resources,
        "cgroupsPath": o.cgroups_path,
    });
    if let Some(s) = &o.seccomp {
        linux["seccomp"] = s.clone();
    }
    let mut process = json!({
        "terminal": o.terminal,
        "user": {"uid": o.user.uid, "gid": o.user.gid},
        "args": o.args,
        "env": o.env,
        "cwd": o.cwd,
        "capabilities": {
            "bounding": o.caps,
            "effective": eff,
            "permitted": eff,
        },
        "noNewPrivileges": o.no_new_privileges,
    });
    if !o.user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(o.user.additional_gids);
    }
    let mut cfg = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": o.read_only},
        "mounts": mounts,
        "linux": linux,
    });
    if o.netns != NetNs::Host {
        cfg["hostname"] = json!(o.hostname);
    }
    if !o.annotations.is_empty() {
        let a: serde_json::Map<String, Value> = o
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        cfg["annotations"] = Value::Object(a);
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SpecOpts {
        SpecOpts {
            args: vec!["sh".into()],
            env: vec![DEFAULT_PATH.into()],
            cwd: "/".into(),
            user: User::default(),
            terminal: false,
            hostname: "h".into(),
            caps: capabilities(&[], &[]).unwrap(),
            seccomp: None,
            no_new_privileges: false,
            read_only: false,
            netns: NetNs::New,
            mounts: vec![],
            memory: Some(1 << 20),
            cpus: Some(0.5),
            pids: Some(10),
            cgroups_path: "/pier/x".into(),
            annotations: vec![],
        }
    }

    #[test]
    fn capability_flags() {
        let c = capabilities(&["net_admin".into()], &["CAP_KILL".into(), "mknod".into()]).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_KILL".to_string()));
        assert!(!c.contains(&"CAP_MKNOD".to_string()));
        assert_eq!(capabilities(&[], &["ALL".into()]).unwrap().len(), 0);
        assert_eq!(
            capabilities(&["ALL".into()], &[]).unwrap().len(),
            ALL_CAPS.len()
        );
        assert!(capabilities(&["bogus".into()], &[]).is_err());
    }

    #[test]
    fn defaults_and_limits() {
        let v = generate(&opts());
        assert_eq!(
            v["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 1 << 20);
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 10);
        assert!(v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/dev/shm"));
        assert_eq!(v["linux"]["namespaces"].as_array().unwrap().len(), 5);
        let mut o = opts();
        o.user.uid = 1000;
        o.netns = NetNs::Host;
        let v = generate(&o);
        assert_eq!(v["process"]["capabilities"]["effective"], json!([]));
        assert_eq!(v["linux"]["namespaces"].as_array().unwrap().len(), 4);
        assert!(v.get("hostname").is_none());
    }
}

//! `berth features`: what this build of berth really supports, in the
//! runtime-spec "features" document shape.

use anyhow::Result;
use serde_json::{json, Value};

use super::Global;
use crate::rootfs::options;

/// The features document.
pub fn document() -> Value {
    let caps: Vec<String> = {
        let mut c: Vec<String> = caps::runtime::thread_all_supported()
            .iter()
            .map(|c| c.to_string())
            .collect();
        c.sort();
        c
    };
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci_spec::runtime::VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": options::known(),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": crate::seccomp::features(),
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "org.berth.version": env!("CARGO_PKG_VERSION"),
            "org.berth.commit": option_env!("BERTH_COMMIT").unwrap_or("unknown"),
            "org.berth.checkpoint.enabled": "false"
        }
    })
}

/// Arguments of `features` (none).
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `features`.
pub fn run(_g: &Global, _a: Args) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(&document())?);
    Ok(())
}

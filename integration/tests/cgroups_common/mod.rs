//! Helpers shared by the `cgroups_*` tests: containers whose process waits
//! for trigger files in its (writable) rootfs, and the container's cgroup
//! files on either layout (v1 hierarchies, or pure v2 in `scripts/vm-test`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_integration::{Bundle, Container, TEST_CGROUP_PARENT};
use serde_json::{json, Value};

/// True when `/sys/fs/cgroup` is a pure cgroup v2 mount.
pub fn is_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A bundle running `sh -c SCRIPT` with a writable rootfs and `resources`.
pub fn bundle(script: &str, resources: Value) -> Bundle {
    let mut b = Bundle::new(&["sh", "-c", script]);
    b.config["root"]["readonly"] = json!(false);
    let devices = b.config["linux"]["resources"]["devices"].clone();
    let mut res = resources;
    if res.get("devices").is_none() {
        res["devices"] = devices;
    }
    b.config["linux"]["resources"] = res;
    b
}

/// Path of `file` in the container's cgroup (`controller` picks the v1
/// hierarchy; ignored on v2).
pub fn cg_file(c: &Container, controller: &str, file: &str) -> PathBuf {
    let rel = format!("{}/{}", TEST_CGROUP_PARENT.trim_start_matches('/'), c.id);
    if is_v2() {
        Path::new("/sys/fs/cgroup").join(rel).join(file)
    } else {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(rel)
            .join(file)
    }
}

/// Reads a cgroup file, trimmed.
pub fn read_cg(c: &Container, controller: &str, file: &str) -> String {
    let p = cg_file(c, controller, file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Polls `cond` until it holds or `secs` pass (generous: the v2 lane runs
/// under software emulation).
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// Creates `/tmp/NAME` in the container (the rootfs is a host directory).
pub fn trigger(b: &Bundle, name: &str) {
    std::fs::write(b.rootfs().join("tmp").join(name), "").unwrap();
}

/// Reads `/tmp/NAME` in the container, if it exists.
pub fn result(b: &Bundle, name: &str) -> Option<String> {
    std::fs::read_to_string(b.rootfs().join("tmp").join(name))
        .ok()
        .map(|s| s.trim().to_string())
}

/// `berth run -d`, waiting until the container runs.
pub fn run_detached(c: &Container, b: &Bundle) {
    c.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &c.id]);
    wait_for("running", 30, || c.status() == "running");
}

/// `berth events --stats ID`, parsed.
pub fn stats(c: &Container) -> Value {
    let out = c.ok(&["events", "--stats", &c.id]);
    let v: Value = serde_json::from_str(out.trim()).expect("stats JSON");
    assert_eq!(v["type"], "stats", "{v}");
    assert_eq!(v["id"], c.id.as_str(), "{v}");
    v["data"].clone()
}

/// A shell snippet: start up to N `sleep` tasks, one line in /tmp/FILE per
/// task that started; runs in its own shell (ash exits when a fork fails).
pub fn spawner(n: u32, file: &str, secs: u32) -> String {
    format!(
        "sh -c 'i=0; while [ $i -lt {n} ]; do (echo x >> /tmp/{file}; exec sleep {secs}) & i=$((i+1)); done; wait' 2>/tmp/{file}.err"
    )
}

/// Lines of /tmp/FILE in the container.
pub fn lines(b: &Bundle, file: &str) -> usize {
    result(b, file).map(|s| s.lines().count()).unwrap_or(0)
}

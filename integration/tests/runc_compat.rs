//! Drives berth and Debian's runc through the call sequence containerd's runc
//! shim uses, on the same bundle, and compares what they print: the JSON
//! shapes (keys and value types) and the statuses must be the same.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_integration::{
    bin, capture, cgroup_dirs, unique_id, Bundle, TempDir, TEST_CGROUP_PARENT,
};
use serde_json::{json, Value};

struct Runtime {
    name: &'static str,
    bin: PathBuf,
    root: TempDir,
    id: String,
}

impl Runtime {
    fn new(name: &'static str, bin: PathBuf) -> Runtime {
        Runtime {
            name,
            bin,
            root: TempDir::new(&format!("compat-{name}")),
            id: unique_id(&format!("compat-{name}")),
        }
    }

    fn cmd(&self, args: &[&str]) -> (bool, String, String) {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path()).args(args);
        let out = capture(c);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.cmd(args);
        assert!(ok, "{} {args:?}: {err}", self.name);
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args))
            .unwrap_or_else(|e| panic!("{} {args:?}: not JSON: {e}", self.name))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.cmd(&["delete", "--force", &self.id]);
        for d in cgroup_dirs(&format!("{TEST_CGROUP_PARENT}/{}", self.id)) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The shape of a JSON value: object keys with the shapes of their values,
/// array element shapes, and the type names of scalars.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => json!(a.first().map(shape).into_iter().collect::<Vec<_>>()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

fn bundle_for(rt: &Runtime, base: &Bundle) -> PathBuf {
    let dir = rt.root.path().join("bundle");
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = base.config.clone();
    cfg["linux"]["cgroupsPath"] = json!(format!("{TEST_CGROUP_PARENT}/{}", rt.id));
    cfg["root"]["path"] = json!(base.rootfs());
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&cfg).unwrap(),
    )
    .unwrap();
    dir
}

fn wait_stopped(rt: &Runtime) {
    for _ in 0..250 {
        if rt.json(&["state", &rt.id])["status"] == "stopped" {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} did not stop", rt.name);
}

/// Runs the containerd sequence; returns what each step printed, by step.
fn sequence(rt: &Runtime, base: &Bundle) -> BTreeMap<&'static str, Value> {
    let bundle = bundle_for(rt, base);
    let pid_file = rt.root.path().join("pid");
    let exec_pid = rt.root.path().join("exec.pid");
    let log = rt.root.path().join("log.json");
    let b = bundle.to_str().unwrap();
    let (l, p, ep) = (
        log.to_str().unwrap(),
        pid_file.to_str().unwrap(),
        exec_pid.to_str().unwrap(),
    );
    let mut seen = BTreeMap::new();
    rt.ok(&[
        "--log",
        l,
        "--log-format",
        "json",
        "create",
        "--bundle",
        b,
        "--pid-file",
        p,
        &rt.id,
    ]);
    let pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let st = rt.json(&["state", &rt.id]);
    assert_eq!(st["pid"], pid, "{}", rt.name);
    seen.insert("state-created", st);
    rt.ok(&["--log", l, "--log-format", "json", "start", &rt.id]);
    seen.insert("state-running", rt.json(&["state", &rt.id]));
    seen.insert("list", rt.json(&["list", "--format", "json"]));
    rt.ok(&[
        "--log",
        l,
        "--log-format",
        "json",
        "exec",
        "--detach",
        "--pid-file",
        ep,
        &rt.id,
        "sleep",
        "100",
    ]);
    let epid: i32 = std::fs::read_to_string(&exec_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        Path::new(&format!("/proc/{epid}")).exists(),
        "{}: exec'd process missing",
        rt.name
    );
    rt.ok(&["--log", l, "--log-format", "json", "kill", &rt.id, "9"]);
    wait_stopped(rt);
    seen.insert("state-stopped", rt.json(&["state", &rt.id]));
    rt.ok(&["--log", l, "--log-format", "json", "delete", &rt.id]);
    let (ok, _, _) = rt.cmd(&["--log", l, "--log-format", "json", "state", &rt.id]);
    assert!(!ok, "{}: state of a deleted container succeeded", rt.name);
    let last = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    seen.insert(
        "log-error-line",
        serde_json::from_str(&last).unwrap_or(Value::Null),
    );
    seen
}

#[test]
fn berth_and_runc_print_the_same_shapes() {
    berth_integration::require_root();
    assert!(
        Path::new("/usr/sbin/runc").exists() || Path::new("/usr/bin/runc").exists(),
        "runc is missing (scripts/setup)"
    );
    let runc_bin = ["/usr/sbin/runc", "/usr/bin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap();
    let base = Bundle::new(&["sleep", "1000"]);
    let berth = Runtime::new("berth", bin("berth"));
    let runc = Runtime::new("runc", runc_bin);
    let a = sequence(&berth, &base);
    let b = sequence(&runc, &base);
    for (step, va) in &a {
        let vb = &b[step];
        assert_eq!(
            shape(va),
            shape(vb),
            "{step}: berth printed {va}\nrunc printed {vb}"
        );
    }
    for step in ["state-created", "state-running", "state-stopped"] {
        assert_eq!(a[step]["status"], b[step]["status"], "{step}");
    }
    assert_eq!(a["state-stopped"]["pid"], 0);
    assert_eq!(a["log-error-line"]["level"], "error");
}

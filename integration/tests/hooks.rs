//! OCI hooks: order, namespaces, the state on stdin, failures and timeouts.

use berth_integration::{Bundle, Container, TempDir};
use serde_json::{json, Value};

fn hook(log: &str, name: &str) -> Value {
    // Each hook appends its name and the state it got on stdin as one line.
    json!({"path": "/bin/sh", "args": ["sh", "-c", format!("printf '{name} %s\\n' \"$(cat)\" >> {log}")]})
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    let dir = TempDir::new("hooks");
    let host_log = dir.path().join("log");
    let host_log = host_log.to_str().unwrap();
    let mut b = Bundle::new(&["sh", "-c", "echo process >> /hooklog/log"]);
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/hooklog", "type": "bind", "source": dir.path().to_str().unwrap(), "options": ["bind"]}));
    b.config["hooks"] = json!({
        "prestart": [hook(host_log, "prestart")],
        "createRuntime": [hook(host_log, "createRuntime")],
        "createContainer": [hook(host_log, "createContainer")],
        // Runs inside the container after pivot_root: /hooklog is the bind.
        "startContainer": [hook("/hooklog/log", "startContainer")],
        "poststart": [hook(host_log, "poststart")],
        "poststop": [hook(host_log, "poststop")],
    });
    let c = Container::new("hk", &mut b);
    let (code, _, err) = c.run(&b);
    assert_eq!(code, 0, "{err}");
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    let names: Vec<&str> = log
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .filter(|n| *n != "process")
        .collect();
    assert_eq!(
        names,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ],
        "{log}"
    );
    let want_status = [
        ("createRuntime", "creating"),
        ("createContainer", "creating"),
        ("startContainer", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ];
    for (name, status) in want_status {
        let line = log
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap();
        let st: Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
        assert_eq!(st["status"], status, "{name}: {st}");
        assert_eq!(st["id"], c.id.as_str());
        assert_eq!(st["bundle"], b.path().to_str().unwrap());
        assert!(st["pid"].as_i64().unwrap() > 0, "{name}: {st}");
        assert!(st["ociVersion"].is_string());
    }
    let pos = |n: &str| log.lines().position(|l| l.starts_with(n)).unwrap();
    assert!(
        pos("startContainer") < pos("process"),
        "startContainer runs before the process"
    );
}

#[test]
fn create_container_hook_runs_in_the_container_mount_namespace() {
    let dir = TempDir::new("hookns");
    let out = dir.path().join("ns");
    let mut b = Bundle::new(&["true"]);
    b.config["hooks"] = json!({
        "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", format!("echo rt=$(readlink /proc/self/ns/mnt) >> {}", out.display())]}],
        "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", format!("echo cc=$(readlink /proc/self/ns/mnt) >> {}", out.display())]}],
    });
    let c = Container::new("hkns", &mut b);
    assert_eq!(c.run(&b).0, 0);
    let text = std::fs::read_to_string(&out).unwrap();
    let host = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .to_string()
    };
    assert_eq!(
        get("rt="),
        host.to_str().unwrap(),
        "createRuntime runs in the runtime's namespace"
    );
    assert_ne!(
        get("cc="),
        host.to_str().unwrap(),
        "createContainer runs in the container's namespace"
    );
}

#[test]
fn failing_poststart_and_poststop_only_warn() {
    let mut b = Bundle::new(&["true"]);
    b.config["hooks"] = json!({
        "poststart": [{"path": "/bin/false"}],
        "poststop": [{"path": "/bin/false"}],
    });
    let c = Container::new("hkw", &mut b);
    let (code, _, err) = c.run(&b);
    assert_eq!(code, 0, "{err}");
}

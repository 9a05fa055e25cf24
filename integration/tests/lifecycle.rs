//! The lifecycle as containerd's runc shim drives it, and as `run` does it.

use std::process::Stdio;

use berth_integration::{Bundle, Container};

#[test]
fn containerd_sequence_create_start_state_kill_delete() {
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = Container::new("lc", &mut b);
    let log = c.root.path().join("log.json");
    let pid_file = c.root.path().join("pid");
    let log_s = log.to_str().unwrap();
    c.ok(&["--log", log_s, "--log-format", "json", "create", "--bundle", b.path().to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), &c.id]);
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let st = c.state();
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["id"], c.id.as_str());
    assert_eq!(st["bundle"], b.path().to_str().unwrap());
    for key in ["ociVersion", "rootfs", "created", "owner"] {
        assert!(st.get(key).is_some(), "state lacks {key}: {st}");
    }
    c.ok(&["--log", log_s, "--log-format", "json", "start", &c.id]);
    assert_eq!(c.status(), "running");
    // The process that runs is sleep, not berth.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.ends_with("busybox"), "{exe:?}");
    c.ok(&["--log", log_s, "--log-format", "json", "kill", &c.id, "9"]);
    for _ in 0..100 {
        if c.status() == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(c.status(), "stopped");
    assert_eq!(c.state()["pid"], 0);
    c.ok(&["--log", log_s, "--log-format", "json", "delete", &c.id]);
    let out = c.berth(&["--log", log_s, "--log-format", "json", "state", &c.id]);
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().last().expect("an error line");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("does not exist"), "{v}");
    assert!(v["time"].is_string());
    assert!(!c.root.path().join(&c.id).exists());
    assert!(c.cgroup_dirs().is_empty(), "cgroup left: {:?}", c.cgroup_dirs());
}

#[test]
fn run_exits_with_the_process_code_and_128_plus_signal() {
    let mut b = Bundle::new(&["sh", "-c", "exit 42"]);
    let c = Container::new("rc", &mut b);
    assert_eq!(c.run(&b).0, 42);
    assert!(!c.root.path().join(&c.id).exists(), "foreground run deletes the container");

    // A container's init cannot be killed from inside its pid namespace, so
    // the signal comes from `berth kill`.
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = Container::new("rs", &mut b);
    let mut run = c.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &c.id]);
    let mut child = run.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for(|| c.berth(&["state", &c.id]).status.success() && c.status() == "running");
    c.ok(&["kill", &c.id, "KILL"]);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 9));
}

fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..250 {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("condition not met within 5 s");
}

#[test]
fn delete_refuses_running_without_force() {
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = Container::new("df", &mut b);
    c.ok(&["run", "-d", "-b", b.path().to_str().unwrap(), &c.id]);
    let out = c.berth(&["delete", &c.id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not stopped"));
    c.ok(&["delete", "--force", &c.id]);
    assert!(c.cgroup_dirs().is_empty());
    assert!(!c.root.path().join(&c.id).exists());
}

#[test]
fn missing_container_and_unknown_flag_are_errors() {
    let mut b = Bundle::new(&["true"]);
    let c = Container::new("mi", &mut b);
    for args in [vec!["state", "nope"], vec!["start", "nope"], vec!["kill", "nope"], vec!["delete", "nope"], vec!["create", "--bogus", "x"]] {
        let out = c.berth(&args);
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.trim().is_empty(), "{args:?}: no error text");
    }
    // `delete --force` of a missing container is not an error (runc).
    c.ok(&["delete", "--force", "nope"]);
}

#[test]
fn bundle_flag_spellings_and_version() {
    let mut b = Bundle::new(&["true"]);
    let c = Container::new("sp", &mut b);
    let p = b.path().to_str().unwrap();
    c.ok(&["run", &format!("--bundle={p}"), &c.id]);
    c.ok(&["run", "-b", p, &c.id]);
    let v = c.ok(&["--version"]);
    let lines: Vec<&str> = v.lines().collect();
    assert!(lines[0].starts_with("berth version "), "{v}");
    assert!(lines[1].starts_with("commit: "), "{v}");
    assert!(lines[2].starts_with("spec: 1."), "{v}");
}

//! berth-shim: daemonizing, create failures, exit recording, signals to the
//! shim, the control requests, with berth, runc and crun underneath.

use std::process::Command;
use std::time::Duration;

use berth_integration::per_runtime;
use berth_integration::shim::{alive, cri_payload, cri_records, wait_until, Runtime, ShimTest};
use berth_integration::{bin, capture, pids_with_cmdline, Bundle};
use serde_json::{json, Value};

fn log_text(t: &ShimTest) -> String {
    String::from_utf8_lossy(&cri_payload(
        &cri_records(&std::fs::read(t.log_path()).unwrap_or_default()),
        "stdout",
    ))
    .into_owned()
}

per_runtime!(
    caller_dies_right_after_start,
    caller_dies,
    [Berth, Runc, Crun]
);

/// The process that started the shim is killed right after the shim
/// returned: the container runs on, its output is logged, its exit is
/// recorded.
fn caller_dies(rt: Runtime) {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 15 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done; exit 7",
    ]);
    let t = ShimTest::new("shcd", rt, &mut b);
    let shim = t.shim_cmd(
        &b,
        &["--log-path", t.log_path().to_str().unwrap(), "--start"],
    );
    // The caller leads its own process group and kills the whole group (as
    // a closing terminal would) right after the shim returned.
    let mut caller = Command::new("setsid");
    caller
        .arg("sh")
        .arg("-c")
        .arg("\"$0\" \"$@\" && kill -KILL 0")
        .arg(shim.get_program())
        .args(shim.get_args());
    let out = capture(caller);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9),
        "the caller is killed after the shim returned: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(t.runtime_status().as_deref(), Some("running"));
    wait_until(10, || log_text(&t).contains("tick 2"));
    let seen = log_text(&t).lines().count();
    wait_until(10, || log_text(&t).lines().count() > seen);
    let exit = t.wait_exit_file(20);
    assert_eq!(exit["exit_code"], 7, "{exit}");
    assert_eq!(exit["signal"], Value::Null);
    assert_eq!(exit["oom_killed"], false);
    assert_eq!(exit["pid"], t.container_pid());
    let expected: String = (0..15).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(log_text(&t), expected);
}

per_runtime!(
    create_failure_is_reported_and_leaves_nothing,
    create_failure,
    [Berth, Runc, Crun]
);

/// A failed `create` comes back to the caller as the runtime's own error and
/// leaves no state directory, log file, container or process.
fn create_failure(rt: Runtime) {
    let mut b = Bundle::new(&["/no/such/binary"]);
    let t = ShimTest::new("shcf", rt, &mut b);
    let out = t.start(
        &b,
        &["--log-path", t.log_path().to_str().unwrap(), "--start"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("create failed") && err.contains("/no/such/binary"),
        "{err}"
    );
    assert!(!t.state_dir().exists(), "state dir left behind");
    assert!(!t.log_path().exists(), "log file left behind");
    assert_eq!(t.runtime_status(), None, "container left behind");
    wait_until(5, || pids_with_cmdline(&t.id).is_empty());
}

#[test]
fn bad_arguments_are_refused_before_anything_is_made() {
    let mut b = Bundle::new(&["true"]);
    let t = ShimTest::new("shba", Runtime::Berth, &mut b);
    let out = t.start(&b, &["--log-format", "xml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown log format"));
    let out = t.start(&b, &["--terminal"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("process.terminal is false"));
    assert!(!t.state_dir().exists());
    let help = capture({
        let mut c = Command::new(bin("berth-shim"));
        c.arg("--help");
        c
    });
    let help = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "CONTROL PROTOCOL",
        "WHEN THE SHIM DIES",
        "\"op\":\"exec\"",
        "--log-max-size",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

per_runtime!(
    exit_within_a_millisecond_is_captured,
    quick_exit,
    [Berth, Runc, Crun]
);

/// A container that writes and exits at once has its output and exit
/// status captured.
fn quick_exit(rt: Runtime) {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "echo fast out; echo fast err >&2; seq 1 3000; exit 3",
    ]);
    let t = ShimTest::new("shqe", rt, &mut b);
    t.start_ok(
        &b,
        &["--log-path", t.log_path().to_str().unwrap(), "--start"],
    );
    let exit = t.wait_exit_file(10);
    assert_eq!(exit["exit_code"], 3, "{exit}");
    let recs = cri_records(&std::fs::read(t.log_path()).unwrap());
    let mut expected = "fast out\n".to_string();
    expected.extend((1..=3000).map(|i| format!("{i}\n")));
    assert_eq!(
        String::from_utf8(cri_payload(&recs, "stdout")).unwrap(),
        expected
    );
    assert_eq!(cri_payload(&recs, "stderr"), b"fast err\n");
}

#[test]
fn control_requests_drive_the_container_with_several_clients() {
    let mut b = Bundle::new(&["sh", "-c", "echo started; sleep 1000"]);
    let t = ShimTest::new("shcr", Runtime::Berth, &mut b);
    t.start_ok(&b, &[]);
    // Whoever reaches the socket can exec in the container: root only.
    let mode = |p: std::path::PathBuf| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(t.state_dir()), 0o700);
    assert_eq!(mode(t.state_dir().join("shim.sock")), 0o600);
    let st = t.request(json!({"op": "state"}));
    assert_eq!(st["ok"], true);
    assert_eq!(st["status"], "created");
    assert_eq!(st["runtime_status"], "created");
    assert_eq!(st["pid"], t.container_pid());
    assert_eq!(st["shim_pid"], t.shim_pid());

    // A wait stays pending while other clients are served.
    let mut waiter = t.connect();
    waiter.send_frame(0, b""); // garbage before the request line is refused...
    let bad = waiter.request(&json!({"op": "wait"}));
    assert_eq!(bad["ok"], false, "{bad}");
    let mut waiter = t.connect();
    let wait_thread = std::thread::spawn(move || waiter.request(&json!({"op": "wait"})));

    assert_eq!(t.request(json!({"op": "bogus"}))["ok"], false);
    assert_eq!(
        t.request(json!({"op": "kill", "signal": "-9"}))["ok"],
        false
    );
    assert_eq!(t.request(json!({"op": "start"})), json!({"ok": true}));
    assert_eq!(t.request(json!({"op": "start"}))["ok"], false);
    assert_eq!(t.request(json!({"op": "state"}))["status"], "running");
    assert_eq!(
        t.request(json!({"op": "reopen-log"}))["ok"],
        false,
        "no log file"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(!wait_thread.is_finished());
    assert_eq!(
        t.request(json!({"op": "kill", "signal": "KILL"})),
        json!({"ok": true})
    );
    let w = wait_thread.join().unwrap();
    assert_eq!(w["ok"], true, "{w}");
    assert_eq!(w["exit"]["signal"], 9);
    assert_eq!(w["exit"]["exit_code"], 137);
    let file = t.wait_exit_file(5);
    assert_eq!(file, w["exit"]);
    let shim = t.shim_pid();
    t.wait_shim_gone(shim, 10);
    assert!(!t.state_dir().join("shim.sock").exists());
    // The shim is gone; ctl answers from the exit file.
    let st = t.ctl_state();
    assert_eq!(st["shim"], "exited");
    assert_eq!(st["status"], "stopped");
    assert_eq!(st["exit"], file);
    let out = t.ctl(&["wait"]);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), file);
}

#[test]
fn sigterm_to_the_shim_is_passed_on_and_the_exit_recorded() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done",
    ]);
    let t = ShimTest::new("shst", Runtime::Berth, &mut b);
    t.start_ok(
        &b,
        &["--log-path", t.log_path().to_str().unwrap(), "--start"],
    );
    wait_until(10, || log_text(&t).contains("ready"));
    let shim = t.shim_pid();
    // SAFETY: kill(2) of the shim this test started.
    unsafe { libc::kill(shim, libc::SIGTERM) };
    let exit = t.wait_exit_file(10);
    assert_eq!(exit["exit_code"], 42, "{exit}");
    assert_eq!(log_text(&t), "ready\ngot-term\n");
    t.wait_shim_gone(shim, 10);
}

per_runtime!(
    sigkill_to_the_shim_leaves_a_truthful_state,
    shim_killed,
    [Berth, Runc]
);

/// A killed shim does not take the container down silently: the runtime
/// and `ctl state` tell the truth, and what is lost (later output, the exit
/// status) is lost as documented.
fn shim_killed(rt: Runtime) {
    let mut b = Bundle::new(&["sh", "-c", "while :; do echo tick; sleep 0.05; done"]);
    let t = ShimTest::new("shsk", rt, &mut b);
    t.start_ok(
        &b,
        &["--log-path", t.log_path().to_str().unwrap(), "--start"],
    );
    wait_until(10, || log_text(&t).contains("tick"));
    let shim = t.shim_pid();
    // SAFETY: kill(2) of the shim this test started.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    t.wait_shim_gone(shim, 10);
    assert_eq!(t.runtime_status().as_deref(), Some("running"));
    let st = t.ctl_state();
    assert_eq!(st["shim"], "dead", "{st}");
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["exit"], Value::Null);
    // Nobody reads the container's output any more.
    let size = std::fs::metadata(t.log_path()).unwrap().len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::metadata(t.log_path()).unwrap().len(), size);
    let out = t.runtime_cmd(&["kill", &t.id, "KILL"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(10, || t.runtime_status().as_deref() == Some("stopped"));
    let st = t.ctl_state();
    assert_eq!(
        (st["shim"].as_str(), st["status"].as_str()),
        (Some("dead"), Some("stopped")),
        "{st}"
    );
    assert_eq!(
        st["exit"],
        Value::Null,
        "the exit status is lost with the shim"
    );
    assert!(!t.state_dir().join("exit.json").exists());
}

per_runtime!(oom_kill_is_flagged, oom_killed, [Berth, Runc]);

/// The exit file flags an OOM kill, read from the memory cgroup (v1
/// `memory.oom_control` on this host).
fn oom_killed(rt: Runtime) {
    // tail buffers a line that never ends, so it grows until the limit.
    let mut b = Bundle::new(&["sh", "-c", "tail /dev/zero; echo survived"]);
    b.config["linux"]["resources"]["memory"] =
        json!({"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024});
    let t = ShimTest::new("shoo", rt, &mut b);
    t.start_ok(
        &b,
        &["--log-path", t.log_path().to_str().unwrap(), "--start"],
    );
    let exit = t.wait_exit_file(30);
    assert_eq!(exit["oom_killed"], true, "{exit}");

    // And a container that ends normally is not flagged.
    let mut b = Bundle::new(&["true"]);
    b.config["linux"]["resources"]["memory"] =
        json!({"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024});
    let t = ShimTest::new("shoo", rt, &mut b);
    t.start_ok(&b, &["--start"]);
    assert_eq!(t.wait_exit_file(10)["oom_killed"], false);
}

#[test]
fn exit_command_runs_and_delete_removes_the_container() {
    let mut b = Bundle::new(&["sh", "-c", "exit 5"]);
    let t = ShimTest::new("shec", Runtime::Runc, &mut b);
    let out_file = t.path("exit-command.out");
    let script = format!(
        "echo \"$BERTH_SHIM_ID $BERTH_SHIM_EXIT_CODE $1 $(cat $BERTH_SHIM_STATE_DIR/exit.json)\" > {}",
        out_file.display()
    );
    t.start_ok(
        &b,
        &[
            "--start",
            "--delete",
            "--exit-command",
            "/bin/sh",
            "--exit-command-arg=-c",
            "--exit-command-arg",
            &script,
            "--exit-command-arg",
            "sh",
            "--exit-command-arg",
            "arg1",
        ],
    );
    let exit = t.wait_exit_file(10);
    wait_until(10, || out_file.exists() && t.runtime_status().is_none());
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(text.starts_with(&format!("{} 5 arg1 {{", t.id)), "{text}");
    assert!(text.contains(&exit["exited_at"].as_str().unwrap().to_string()));
    assert!(!alive(t.container_pid()));
}

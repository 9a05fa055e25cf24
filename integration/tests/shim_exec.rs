//! berth-shim: `exec` through `RUNTIME exec`, with its own stdio and exit
//! status. Tested with berth, runc and crun.

use berth_integration::per_runtime;
use std::time::Duration;

use berth_integration::shim::{cri_payload, cri_records, frame, rss_kib, Runtime, ShimTest};
use berth_integration::Bundle;
use serde_json::json;

per_runtime!(
    exec_has_its_own_stdio_and_exit_status,
    exec_stdio,
    [Berth, Runc, Crun]
);

fn exec_stdio(rt: Runtime) {
    let mut b = Bundle::new(&["sh", "-c", "echo main; sleep 1000"]);
    let t = ShimTest::new("shex", rt, &mut b);
    t.start_ok(
        &b,
        &["--log-path", t.log_path().to_str().unwrap(), "--start"],
    );

    // Arguments, separate streams, exit code.
    let mut c = t.connect();
    let v =
        c.request(&json!({"op": "exec", "args": ["sh", "-c", "echo out; echo err >&2; exit 7"]}));
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["pid"].as_i64().unwrap() > 0);
    let (out, err, last) = c.collect();
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
    let (kind, exit) = last.unwrap();
    assert_eq!(kind, frame::EXIT);
    assert_eq!(exit["exit_code"], 7);
    assert_eq!(exit["pid"], v["pid"]);

    // Input, and its end.
    let mut c = t.connect();
    assert_eq!(
        c.request(&json!({"op": "exec", "args": ["cat"], "stdin": true}))["ok"],
        true
    );
    c.send_frame(frame::STDIN, b"abc\n");
    c.send_frame(frame::STDIN_CLOSE, b"");
    let (out, _, last) = c.collect();
    assert_eq!(out, b"abc\n");
    assert_eq!(last.unwrap().1["exit_code"], 0);

    // Killed by a signal: the real status, reaped by the shim.
    let mut c = t.connect();
    assert_eq!(
        c.request(&json!({"op": "exec", "args": ["sh", "-c", "kill -9 $$"]}))["ok"],
        true
    );
    let exit = c.collect().2.unwrap().1;
    assert_eq!(
        (exit["signal"].as_i64(), exit["exit_code"].as_i64()),
        (Some(9), Some(137)),
        "{exit}"
    );

    // A full OCI process.
    let mut c = t.connect();
    let process = json!({
        "args": ["sh", "-c", "echo $FOO; pwd"],
        "env": ["FOO=bar", "PATH=/bin"],
        "cwd": "/tmp",
        "user": {"uid": 0, "gid": 0},
        "terminal": false,
    });
    assert_eq!(
        c.request(&json!({"op": "exec", "process": process}))["ok"],
        true
    );
    assert_eq!(c.collect().0, b"bar\n/tmp\n");

    // A terminal.
    let mut c = t.connect();
    assert_eq!(
        c.request(&json!({"op": "exec", "args": ["sh", "-c", "tty"], "tty": true}))["ok"],
        true
    );
    let (out, _, last) = c.collect();
    assert!(
        String::from_utf8_lossy(&out).starts_with("/dev/pts/"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(last.unwrap().1["exit_code"], 0);

    // A failure comes back as the runtime's error.
    let v = t.request(json!({"op": "exec", "args": ["/no/such/binary"]}));
    assert_eq!(v["ok"], false, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("exec failed") && e.contains("/no/such/binary"),
        "{e}"
    );

    // The exec'd processes wrote nothing to the container's log.
    let recs = cri_records(&std::fs::read(t.log_path()).unwrap());
    assert_eq!(cri_payload(&recs, "stdout"), b"main\n");
    assert!(cri_payload(&recs, "stderr").is_empty());

    // The ctl client runs the same.
    let out = t.ctl(&["exec", "sh", "-c", "echo via ctl; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"via ctl\n");
}

/// Open descriptors of a process.
fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// A long-lived shim does not grow: after many execs, attached clients and
/// state requests its descriptors are exactly as before and its RSS has not
/// grown (within a few pages of allocator slack). `BERTH_STRESS_TRIALS`
/// sets the number of cycles (default 50, as in CI; 1000 for the full run).
#[test]
fn long_lived_shim_leaks_nothing() {
    let trials: usize = std::env::var("BERTH_STRESS_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut b = Bundle::new(&["sh", "-c", "while :; do echo tick; sleep 0.01; done"]);
    let t = ShimTest::new("shlk", Runtime::Berth, &mut b);
    t.start_ok(
        &b,
        &["--log-path", t.log_path().to_str().unwrap(), "--start"],
    );
    let shim = t.shim_pid();
    let cycle = || {
        let mut c = t.connect();
        let v = c.request(&json!({"op": "exec", "args": ["sh", "-c", "echo hi"]}));
        assert_eq!(v["ok"], true, "{v}");
        let (out, _, last) = c.collect();
        assert_eq!(out, b"hi\n");
        assert_eq!(last.unwrap().1["exit_code"], 0);
        let mut a = t.connect();
        assert_eq!(a.request(&json!({"op": "attach"})), json!({"ok": true}));
        let (kind, _) = a.frame().expect("output reaches the attached client");
        assert_eq!(kind, frame::STDOUT);
        drop(a);
        assert_eq!(t.request(json!({"op": "state"}))["status"], "running");
    };
    // Warm up: buffers, the allocator's arenas, lazily opened files.
    for _ in 0..20 {
        cycle();
    }
    // Let the shim notice the last client left.
    std::thread::sleep(Duration::from_millis(200));
    let (fds, rss) = (fd_count(shim), rss_kib(shim));
    for _ in 0..trials {
        cycle();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(fd_count(shim), fds, "descriptors of the shim");
    let grown = rss_kib(shim).saturating_sub(rss);
    assert!(
        grown <= 64,
        "the shim grew by {grown} KiB in {trials} cycles (from {rss} KiB)"
    );
}

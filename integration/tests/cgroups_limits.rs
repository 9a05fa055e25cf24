//! Resource limits that bite: memory (OOM kill + `events`), pids, cpu quota,
//! devices, and `update` of a running container. They run on this host's v1
//! layout and, through `scripts/vm-test`, on pure cgroup v2.

#[path = "cgroups_common/mod.rs"]
mod common;

use std::fs::File;
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_integration::Container;
use common::*;
use serde_json::{json, Value};

const MIB: i64 = 1 << 20;

/// A command that fills a `mib` MiB buffer (dd reads /dev/zero into it).
fn hog(mib: u32) -> String {
    format!("dd if=/dev/zero of=/dev/null bs={mib}M count=1 2>/dev/null")
}

#[test]
fn memory_limit_oom_kills_and_events_reports_it() {
    let script = format!(
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; exec {}",
        hog(256)
    );
    let mut b = bundle(
        &script,
        json!({"memory": {"limit": 32 * MIB, "swap": 32 * MIB}}),
    );
    let c = Container::new("oom", &mut b);
    let out = c.root.path().join("run.out");
    // --keep: the cgroup stays until the test is done with it (without it,
    // `run` may remove the cgroup before a slow `events` read the counter).
    let mut run = c
        .cmd(&[
            "run",
            "--keep",
            "--bundle",
            b.path().to_str().unwrap(),
            &c.id,
        ])
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_for("running", 30, || {
        c.berth(&["state", &c.id]).status.success() && c.status() == "running"
    });
    let limit = if is_v2() {
        read_cg(&c, "", "memory.max")
    } else {
        read_cg(&c, "memory", "memory.limit_in_bytes")
    };
    assert_eq!(limit, (32 * MIB).to_string());

    let ev_path = c.root.path().join("events.out");
    let mut events = c
        .cmd(&["events", "--interval", "200ms", &c.id])
        .stdin(Stdio::null())
        .stdout(File::create(&ev_path).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // The first stats event shows the OOM watch is in place.
    wait_for("a stats event", 60, || {
        std::fs::read_to_string(&ev_path)
            .unwrap_or_default()
            .contains("\"type\":\"stats\"")
    });
    trigger(&b, "go");

    let status = wait_child(&mut run, 120);
    let printed = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "OOM-killed init exits 137; output {printed:?}"
    );
    let ev_status = wait_child(&mut events, 60);
    assert!(
        ev_status.success(),
        "events ends 0 when the container stops: {ev_status}"
    );
    let text = std::fs::read_to_string(&ev_path).unwrap();
    let ooms: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "oom")
        .collect();
    assert!(!ooms.is_empty(), "no oom event in {text}");
    assert_eq!(ooms[0], json!({"type": "oom", "id": c.id}));
}

fn wait_child(child: &mut std::process::Child, secs: u64) -> std::process::ExitStatus {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("process {} still running after {secs} s", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pids_limit_stops_the_task_past_the_limit() {
    // init sh + spawner sh + 8 sleeps = 10 tasks; the 11th cannot start.
    let script = format!(
        "{}; echo $? > /tmp/rc; exec sleep 1000",
        spawner(12, "started", 1000)
    );
    let mut b = bundle(&script, json!({"pids": {"limit": 10}}));
    let c = Container::new("pids", &mut b);
    run_detached(&c, &b);
    assert_eq!(read_cg(&c, "pids", "pids.max"), "10");
    wait_for("the spawner to end", 60, || {
        result(&b, "rc").is_some_and(|s| !s.is_empty())
    });
    wait_for("8 tasks to start", 30, || lines(&b, "started") >= 8);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lines(&b, "started"), 8, "tasks that started");
    assert_ne!(result(&b, "rc").unwrap(), "0", "the spawner hit the limit");
    assert!(
        result(&b, "started.err")
            .unwrap_or_default()
            .contains("fork"),
        "fork failed"
    );
    let pids: Vec<i32> = serde_json::from_str(&c.ok(&["ps", "--format", "json", &c.id])).unwrap();
    assert_eq!(pids.len(), 9, "init + 8 sleeps: {pids:?}");
}

#[test]
fn cpu_quota_holds_a_busy_loop_near_20_percent() {
    let mut b = bundle(
        "while :; do :; done",
        json!({"cpu": {"quota": 20000, "period": 100000}}),
    );
    let c = Container::new("cpu", &mut b);
    run_detached(&c, &b);
    if is_v2() {
        assert_eq!(read_cg(&c, "", "cpu.max"), "20000 100000");
    } else {
        assert_eq!(read_cg(&c, "cpu", "cpu.cfs_quota_us"), "20000");
    }
    std::thread::sleep(Duration::from_millis(300));
    let (s1, t1) = (stats(&c), Instant::now());
    std::thread::sleep(Duration::from_secs(1));
    let (s2, t2) = (stats(&c), Instant::now());
    let used = s2["cpu"]["usage"]["total"].as_u64().unwrap()
        - s1["cpu"]["usage"]["total"].as_u64().unwrap();
    let share = used as f64 / (t2 - t1).as_nanos() as f64;
    let throttled = |s: &Value| {
        s["cpu"]["throttling"]["throttledPeriods"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        (0.05..=0.35).contains(&share),
        "cpu share {share:.3}, expected about 0.2"
    );
    assert!(
        throttled(&s2) > throttled(&s1),
        "the quota throttled the loop: {} -> {}",
        throttled(&s1),
        throttled(&s2)
    );
}

#[test]
fn device_not_in_the_allow_list_cannot_be_opened() {
    for allow in [false, true] {
        let script = "ls -l /dev/loopctl; exec 3<>/dev/loopctl && echo opened";
        let mut b = bundle(script, json!({}));
        b.config["linux"]["devices"] = json!([{"path": "/dev/loopctl", "type": "c", "major": 10, "minor": 237, "fileMode": 438}]);
        if allow {
            let mut rules = b.config["linux"]["resources"]["devices"]
                .as_array()
                .unwrap()
                .clone();
            rules.push(
                json!({"allow": true, "type": "c", "major": 10, "minor": 237, "access": "rw"}),
            );
            b.config["linux"]["resources"]["devices"] = json!(rules);
        }
        let c = Container::new("dev", &mut b);
        let (_, out, err) = c.run(&b);
        assert!(
            out.contains("10,") && out.contains("237"),
            "the node exists: {out} {err}"
        );
        if allow {
            assert!(
                !err.contains("Operation not permitted"),
                "allowed device refused: {err}"
            );
        } else {
            assert!(
                err.contains("Operation not permitted"),
                "device not in the list opened: {out} {err}"
            );
        }
    }
}

#[test]
fn update_lowers_memory_and_pids_limits_of_a_running_container() {
    let mut script = String::new();
    for r in 1..=2 {
        script.push_str(&format!(
            "while [ ! -e /tmp/go{r} ]; do sleep 0.05; done; sh /hog.sh >/dev/null; echo $? > /tmp/mem{r}; \
             {}; echo done > /tmp/done{r}; ",
            spawner(6, &format!("started{r}"), 1)
        ));
    }
    script.push_str("exec sleep 1000");
    let mut b = bundle(
        &script,
        json!({"memory": {"limit": 256 * MIB, "swap": 256 * MIB}, "pids": {"limit": 100}}),
    );
    std::fs::write(b.rootfs().join("hog.sh"), hog(48)).unwrap();
    let c = Container::new("upd", &mut b);
    run_detached(&c, &b);

    trigger(&b, "go1");
    wait_for("round 1", 120, || result(&b, "done1").is_some());
    assert_eq!(result(&b, "mem1").unwrap(), "0", "48 MiB fit in 256 MiB");
    assert_eq!(lines(&b, "started1"), 6, "6 tasks fit in 100");

    c.ok(&[
        "update",
        "--memory",
        "32m",
        "--memory-swap",
        "32m",
        "--pids-limit",
        "5",
        &c.id,
    ]);
    if is_v2() {
        assert_eq!(read_cg(&c, "", "memory.max"), (32 * MIB).to_string());
        assert_eq!(read_cg(&c, "", "memory.swap.max"), "0");
    } else {
        assert_eq!(
            read_cg(&c, "memory", "memory.limit_in_bytes"),
            (32 * MIB).to_string()
        );
    }
    assert_eq!(read_cg(&c, "pids", "pids.max"), "5");

    trigger(&b, "go2");
    wait_for("round 2", 120, || result(&b, "done2").is_some());
    assert_eq!(
        result(&b, "mem2").unwrap(),
        "137",
        "48 MiB no longer fit: OOM kill"
    );
    let started = lines(&b, "started2");
    assert!(
        started <= 3,
        "init + spawner + 3 tasks fill 5 pids; {started} started"
    );
    assert!(result(&b, "started2.err")
        .unwrap_or_default()
        .contains("fork"));

    // The new limits are part of the container's configuration now.
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(c.root.path().join(&c.id).join("state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        saved["config"]["linux"]["resources"]["memory"]["limit"],
        32 * MIB
    );
    assert_eq!(saved["config"]["linux"]["resources"]["pids"]["limit"], 5);
}

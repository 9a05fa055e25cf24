//! Controlling a container through its cgroup: pause/resume, `events
//! --stats` and `ps` against the cgroup files, `kill --all`, and `delete`
//! removing the cgroup. Both lanes: this host's v1 layout and pure v2
//! (`scripts/vm-test`).

#[path = "cgroups_common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use berth_integration::Container;
use common::*;
use serde_json::json;

fn counter(b: &berth_integration::Bundle) -> u64 {
    result(b, "count").and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn pause_stops_a_counter_and_resume_restarts_it() {
    let script = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done";
    let mut b = bundle(script, json!({}));
    let c = Container::new("pause", &mut b);
    run_detached(&c, &b);
    wait_for("the counter to start", 30, || counter(&b) > 2);

    c.ok(&["pause", &c.id]);
    assert_eq!(c.status(), "paused");
    let list = c.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.contains(&c.id) && l.contains("paused")),
        "{list}"
    );
    let frozen = counter(&b);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(counter(&b), frozen, "the counter advanced while paused");
    let again = c.berth(&["pause", &c.id]);
    assert!(
        !again.status.success(),
        "pausing a paused container is an error (runc)"
    );

    c.ok(&["resume", &c.id]);
    assert_eq!(c.status(), "running");
    wait_for("the counter to advance again", 30, || {
        counter(&b) > frozen + 2
    });
    let again = c.berth(&["resume", &c.id]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("not paused"));
}

/// Pids listed in the cgroup's `cgroup.procs` (one hierarchy on v1).
fn cgroup_procs(c: &Container) -> BTreeSet<i32> {
    read_cg(c, "pids", "cgroup.procs")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn stats_and_ps_match_the_cgroup() {
    let script = "sleep 1000 & sleep 1000 & exec sleep 1000";
    let mut b = bundle(
        script,
        json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 50}}),
    );
    let c = Container::new("stats", &mut b);
    run_detached(&c, &b);
    wait_for("3 processes", 30, || cgroup_procs(&c).len() == 3);

    let s = stats(&c);
    assert_eq!(s["pids"], json!({"current": 3, "limit": 50}));
    assert_eq!(read_cg(&c, "pids", "pids.current"), "3");
    let (limit, usage_file) = if is_v2() {
        (
            read_cg(&c, "", "memory.max"),
            read_cg(&c, "", "memory.current"),
        )
    } else {
        (
            read_cg(&c, "memory", "memory.limit_in_bytes"),
            read_cg(&c, "memory", "memory.usage_in_bytes"),
        )
    };
    assert_eq!(
        s["memory"]["usage"]["limit"].as_u64().unwrap().to_string(),
        limit
    );
    assert_eq!(limit, (64u64 << 20).to_string());
    // Sleeping processes: usage barely moves between the two reads.
    let usage = s["memory"]["usage"]["usage"].as_u64().unwrap() as i64;
    let file: i64 = usage_file.parse().unwrap();
    assert!(
        (usage - file).abs() < 1 << 20,
        "usage {usage} vs file {file}"
    );
    let total = s["cpu"]["usage"]["total"].as_u64().unwrap();
    let cpu_file = if is_v2() {
        read_cg(&c, "", "cpu.stat")
            .lines()
            .find_map(|l| {
                l.strip_prefix("usage_usec ")
                    .map(|v| v.parse::<u64>().unwrap() * 1000)
            })
            .unwrap()
    } else {
        read_cg(&c, "cpuacct", "cpuacct.usage").parse().unwrap()
    };
    assert!(
        total <= cpu_file && cpu_file - total < 50_000_000,
        "cpu {total} vs {cpu_file}"
    );
    for key in ["cpu", "memory", "pids", "blkio", "hugetlb", "intel_rdt"] {
        assert!(s.get(key).is_some(), "stats lack {key}: {s}");
    }

    let pids: Vec<i32> = serde_json::from_str(&c.ok(&["ps", "--format", "json", &c.id])).unwrap();
    assert_eq!(
        pids.iter().copied().collect::<BTreeSet<_>>(),
        cgroup_procs(&c)
    );
    let table = c.ok(&["ps", &c.id]);
    let mut rows = table.lines();
    assert!(rows.next().unwrap().contains("PID"), "{table}");
    assert_eq!(
        rows.filter(|l| l.contains("sleep 1000")).count(),
        3,
        "{table}"
    );
}

#[test]
fn kill_all_reaches_every_process_also_when_paused() {
    let script = "sleep 1000 & sleep 1000 & exec sleep 1000";
    let mut b = bundle(script, json!({}));
    let c = Container::new("killall", &mut b);
    run_detached(&c, &b);
    wait_for("3 processes", 30, || cgroup_procs(&c).len() == 3);
    c.ok(&["pause", &c.id]);
    let out = c.berth(&["delete", &c.id]);
    assert!(
        !out.status.success(),
        "delete of a paused container needs --force"
    );
    c.ok(&["kill", "--all", &c.id, "KILL"]);
    wait_for("every process to die", 30, || cgroup_procs(&c).is_empty());
    wait_for("stopped", 30, || c.status() == "stopped");
    c.ok(&["delete", &c.id]);
    assert!(
        c.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        c.cgroup_dirs()
    );
}

#[test]
fn delete_force_of_a_running_container_removes_its_cgroup() {
    let script = "sleep 1000 & exec sleep 1000";
    let mut b = bundle(script, json!({"pids": {"limit": 20}}));
    let c = Container::new("delcg", &mut b);
    run_detached(&c, &b);
    wait_for("2 processes", 30, || cgroup_procs(&c).len() == 2);
    // A process moved into a child cgroup of the container's, as a container
    // managing its own cgroups would do: delete must remove that too.
    let child = cg_file(&c, "pids", "sub");
    std::fs::create_dir(&child).unwrap();
    let pid = *cgroup_procs(&c).iter().next().unwrap();
    std::fs::write(child.join("cgroup.procs"), pid.to_string()).unwrap();
    assert!(!c.cgroup_dirs().is_empty());
    c.ok(&["delete", "--force", &c.id]);
    assert!(
        c.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        c.cgroup_dirs()
    );
    assert!(!child.exists());
    // Gone, or a zombie waiting for its new parent to reap it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .trim_start()
        .chars()
        .next();
    assert!(
        matches!(state, None | Some('Z') | Some('X')),
        "process {pid} survived: {stat}"
    );
}

#[test]
fn systemd_driver_and_bad_resources_fail_clearly_and_leave_nothing() {
    let mut b = bundle("true", json!({}));
    let c = Container::new("sysd", &mut b);
    let out = c.berth(&[
        "--systemd-cgroup",
        "run",
        "--bundle",
        b.path().to_str().unwrap(),
        &c.id,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("systemd"),
        "{out:?}"
    );
    assert!(!c.root.path().join(&c.id).exists());

    // An unknown unified key on v2, a unified key at all on v1: refused,
    // and the cgroup made for it is gone again.
    b.config["linux"]["resources"]["unified"] = json!({"../cgroup.procs": "1"});
    b.write();
    let out = c.berth(&["run", "--bundle", b.path().to_str().unwrap(), &c.id]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unified"),
        "{out:?}"
    );
    assert!(!c.root.path().join(&c.id).exists());
    assert!(
        c.cgroup_dirs().is_empty(),
        "cgroup left: {:?}",
        c.cgroup_dirs()
    );
    assert!(!c.berth(&["state", &c.id]).status.success());
}

/// The hierarchy directories berth manages on this host (v1) or the cgroup2
/// root (v2).
fn hierarchy_roots() -> Vec<std::path::PathBuf> {
    if is_v2() {
        return vec!["/sys/fs/cgroup".into()];
    }
    [
        "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
    ]
    .iter()
    .map(|c| std::path::Path::new("/sys/fs/cgroup").join(c))
    .filter(|p| p.join("cgroup.procs").exists())
    .collect()
}

#[test]
fn relative_cgroups_path_goes_below_the_callers_cgroup() {
    let mut b = bundle("exec sleep 1000", json!({}));
    let c = Container::new("rel", &mut b);
    b.config["linux"]["cgroupsPath"] = json!("sub");
    b.write();
    // A caller cgroup of the test's own, in every hierarchy.
    let caller = format!("berth-test/{}-caller", c.id);
    let mut procs = Vec::new();
    for root in hierarchy_roots() {
        let mut cur = root.clone();
        for part in caller.split('/') {
            let parent = cur.clone();
            cur.push(part);
            if std::fs::create_dir(&cur).is_ok() && !is_v2() && cur.join("cpuset.cpus").exists() {
                // A new v1 cpuset cgroup is empty until given cpus and nodes.
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let v = std::fs::read_to_string(parent.join(f)).unwrap();
                    std::fs::write(cur.join(f), v.trim()).unwrap();
                }
            }
        }
        procs.push(cur.join("cgroup.procs"));
    }
    let _cleanup = CallerCgroups(
        procs
            .iter()
            .map(|p| p.parent().unwrap().to_path_buf())
            .collect(),
        c.cmd(&["delete", "--force", &c.id]),
    );
    let moves: Vec<String> = procs
        .iter()
        .map(|p| format!("echo $$ > {}", p.display()))
        .collect();
    let script = format!(
        "{} && exec {} --root {} run -d --bundle {} {} </dev/null",
        moves.join(" && "),
        berth_integration::bin("berth").display(),
        c.root.path().display(),
        b.path().display(),
        c.id
    );
    let out = berth_integration::capture({
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", &script]);
        cmd
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sub: Vec<_> = procs
        .iter()
        .map(|p| p.parent().unwrap().join("sub"))
        .collect();
    for d in &sub {
        let pids = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
        assert_eq!(pids.lines().count(), 1, "{}: {pids:?}", d.display());
    }
    c.ok(&["delete", "--force", &c.id]);
    for d in &sub {
        assert!(!d.exists(), "{} left", d.display());
    }
}

/// Removes the caller cgroups (after deleting the container below them),
/// also when the test fails.
struct CallerCgroups(Vec<std::path::PathBuf>, std::process::Command);

impl Drop for CallerCgroups {
    fn drop(&mut self) {
        let _ = berth_integration::capture(std::mem::replace(
            &mut self.1,
            std::process::Command::new("true"),
        ));
        for d in &self.0 {
            let _ = std::fs::remove_dir(d.join("sub"));
            let _ = std::fs::remove_dir(d);
        }
    }
}

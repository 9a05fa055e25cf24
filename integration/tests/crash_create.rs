//! Crash safety of `create`: berth is killed with SIGKILL at each failpoint
//! of `create` (a debug-build feature, `BERTH_FAILPOINT`); afterwards
//! `delete --force` succeeds and nothing is left: no state directory, no
//! cgroup, no mount, no process. `BERTH_STRESS_TRIALS` sets the number of
//! trials (default 50, as in CI; 1000 for the full run).

use std::time::{Duration, Instant};

use berth_integration::{cgroup_dirs, mounts_containing, Bundle, Container};
use serde_json::json;

const POINTS: &[&str] = &[
    "create-after-state-dir",
    "create-after-spawn",
    "create-after-cgroup",
    "create-after-plan",
    "create-in-hooks",
    "create-after-ready",
    "create-after-state",
];

/// Children of this process (orphans of killed berth processes come to us:
/// we are a child subreaper). Reaps the dead ones; returns the living.
fn living_children() -> Vec<i32> {
    // SAFETY: waitpid on our own children.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
    let me = std::process::id() as i32;
    let mut kids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        if f[1].parse::<i32>() == Ok(me) && f[0] != "Z" {
            kids.push(pid);
        }
    }
    kids
}

#[test]
fn create_killed_at_any_point_leaves_nothing_after_delete_force() {
    berth_integration::require_root();
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let trials: usize = std::env::var("BERTH_STRESS_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.config["hooks"] = json!({"createRuntime": [{"path": "/bin/true"}]});
    let mut failures = Vec::new();
    for i in 0..trials {
        let point = POINTS[i % POINTS.len()];
        let c = Container::new("crash", &mut b);
        let mut cmd = c.cmd(&["create", "-b", b.path().to_str().unwrap(), &c.id]);
        cmd.env("BERTH_FAILPOINT", point);
        let out = berth_integration::capture(cmd);
        use std::os::unix::process::ExitStatusExt;
        if out.status.signal() != Some(libc::SIGKILL) {
            failures.push(format!("{point}: berth was not killed ({})", out.status));
        }
        let del = c.berth(&["delete", "--force", &c.id]);
        if !del.status.success() {
            failures.push(format!(
                "{point}: delete --force failed: {}",
                String::from_utf8_lossy(&del.stderr)
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut kids = living_children();
        while !kids.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            kids = living_children();
        }
        if !kids.is_empty() {
            failures.push(format!("{point}: processes left: {kids:?}"));
            for k in kids {
                // SAFETY: our own orphaned descendants.
                unsafe { libc::kill(k, libc::SIGKILL) };
            }
        }
        if c.root.path().join(&c.id).exists() {
            failures.push(format!("{point}: state directory left"));
        }
        let cg = c.cgroup_dirs();
        if !cg.is_empty() {
            failures.push(format!("{point}: cgroup left: {cg:?}"));
        }
        if mounts_containing(b.path().to_str().unwrap()) > 0
            || mounts_containing(c.root.path().to_str().unwrap()) > 0
        {
            failures.push(format!("{point}: mount left"));
        }
    }
    for d in cgroup_dirs(berth_integration::TEST_CGROUP_PARENT) {
        let _ = std::fs::remove_dir(d);
    }
    assert!(
        failures.is_empty(),
        "{} problems in {trials} trials:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn failpoint_names_match_the_runtime() {
    // The list above must follow berth's (a renamed point would never fire
    // and the test above would see berth exit normally instead).
    let src = std::fs::read_to_string(
        berth_integration::workspace_root().join("runtime/src/failpoint.rs"),
    )
    .unwrap();
    for p in POINTS {
        assert!(
            src.contains(&format!("\"{p}\"")),
            "{p} is not a failpoint of berth"
        );
    }
}

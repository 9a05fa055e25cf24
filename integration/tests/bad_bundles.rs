//! The corpus of broken bundles in `integration/bad-bundles/`: each gets a
//! one-line error naming what is wrong, a non-zero exit, and leaves no state
//! directory, mount, cgroup or process behind.

use std::path::Path;

use berth_integration::{
    busybox_rootfs, capture, cgroup_dirs, mounts_containing, unique_id, workspace_root, TempDir,
    TEST_CGROUP_PARENT,
};

fn processes_rooted_in(rootfs: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(root) = std::fs::read_link(e.path().join("root")) {
            if root.starts_with(rootfs) {
                pids.push(pid);
            }
        }
    }
    pids
}

fn check_case(case: &Path) -> Result<(), String> {
    let name = case.file_name().unwrap().to_string_lossy().into_owned();
    let expect = std::fs::read_to_string(case.join("expect"))
        .unwrap()
        .trim()
        .to_string();
    let bundle = TempDir::new(&format!("bad-{name}"));
    let root = TempDir::new("bad-root");
    let id = unique_id("bad");
    if !case.join("no-rootfs").exists() {
        busybox_rootfs(&bundle.path().join("rootfs"));
    }
    if let Ok(text) = std::fs::read_to_string(case.join("config.json")) {
        let text = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(mut v) if v.get("linux").is_some_and(|l| l.is_object()) => {
                v["linux"]["cgroupsPath"] = serde_json::json!(format!("{TEST_CGROUP_PARENT}/{id}"));
                serde_json::to_string_pretty(&v).unwrap()
            }
            _ => text,
        };
        std::fs::write(bundle.path().join("config.json"), text).unwrap();
    }
    let mut cmd = std::process::Command::new(berth_integration::bin("berth"));
    cmd.arg("--root")
        .arg(root.path())
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(&id);
    let out = capture(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut problems = Vec::new();
    if out.status.success() {
        problems.push("exit status 0".to_string());
    }
    if stderr.trim().lines().count() != 1 {
        problems.push(format!("stderr is not one line: {stderr:?}"));
    }
    if !stderr.contains(&expect) {
        problems.push(format!("stderr lacks {expect:?}: {stderr:?}"));
    }
    if root.path().join(&id).exists() {
        problems.push("state directory left".into());
    }
    let cgroups = cgroup_dirs(&format!("{TEST_CGROUP_PARENT}/{id}"));
    if !cgroups.is_empty() {
        problems.push(format!("cgroups left: {cgroups:?}"));
    }
    if mounts_containing(bundle.path().to_str().unwrap()) > 0 {
        problems.push("mount left".into());
    }
    let procs = processes_rooted_in(&bundle.path().join("rootfs"));
    if !procs.is_empty() {
        problems.push(format!("processes left: {procs:?}"));
        for p in procs {
            // SAFETY: these processes were started by this test's berth.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
    for d in cgroups {
        let _ = std::fs::remove_dir(d);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{name}: {}", problems.join("; ")))
    }
}

#[test]
fn every_bad_bundle_fails_cleanly() {
    berth_integration::require_root();
    let dir = workspace_root().join("integration/bad-bundles");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "corpus too small");
    let failures: Vec<String> = cases.iter().filter_map(|c| check_case(c).err()).collect();
    for d in cgroup_dirs(TEST_CGROUP_PARENT) {
        let _ = std::fs::remove_dir(d);
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

//! Crash safety of berth-shim: the shim is killed with SIGKILL at each
//! failpoint of its startup (`BERTH_SHIM_FAILPOINT`, debug builds), at
//! random moments of its startup (the caller and the daemon, wherever they
//! are; a delay drawn from a seeded generator, the seed printed) and at
//! random moments while the container runs. Afterwards `berth state` tells
//! the truth (the container exists exactly when the runtime says so, and
//! its init is alive exactly when the status is created or running; at the
//! failpoints, the status is the one the point implies), `berth-shim ctl
//! state` reports the shim dead, and `berth delete --force` leaves nothing:
//! no state directory, no cgroup, no mount, no process. The shim cannot
//! adopt a container, so `delete --force` is the way to clean up.
//!
//! `BERTH_STRESS_TRIALS` sets the number of trials (CI: 50; by hand: 1000).

use std::time::{Duration, Instant};

use berth_integration::crash::{self, Rng};
use berth_integration::shim::{alive, Runtime, ShimTest};
use berth_integration::{
    cgroup_dirs, mounts_containing, pids_with_cmdline, require_root, workspace_root, Bundle,
    TEST_CGROUP_PARENT,
};
use serde_json::Value;

/// The shim's failpoints (`shim/src/failpoint.rs`) and the container status
/// each implies (None: no container).
const POINTS: &[(&str, Option<&str>)] = &[
    ("shim-after-state-dir", None),
    ("shim-after-daemonize", None),
    // The runtime's create goes on without the shim and completes.
    ("shim-during-runtime", Some("created")),
    ("shim-after-create", Some("created")),
    ("shim-after-adopt", Some("created")),
    ("shim-after-start", Some("running")),
    ("shim-after-ready", Some("running")),
];

/// How a trial kills the shim.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// At a failpoint.
    At(usize),
    /// Every shim process of the trial, this many ms after it was started.
    Startup(u64),
    /// The daemon, this many ms after the caller returned.
    Running(u64),
}

/// Pids of the shim processes of `t` (the caller and the daemon share the
/// command line: both name the trial's state directory).
fn shim_pids(t: &ShimTest) -> Vec<i32> {
    let dir = t.state_dir().to_string_lossy().into_owned();
    pids_with_cmdline(&dir)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "berth-shim")
        })
        .collect()
}

/// Waits until no process runs that names the trial's runtime root (the
/// shim, or a runtime command it started and that outlived it).
fn wait_settled(t: &ShimTest, ctx: &str) {
    let root = t.root().to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        crash::living_children(&[]);
        let busy: Vec<i32> = pids_with_cmdline(&root)
            .into_iter()
            .filter(|p| alive(*p))
            .collect();
        if busy.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ctx}: still running: {:?}",
            busy.iter().map(|p| crash::describe(*p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Checks that `berth state` agrees with the processes; returns the status
/// (None: the runtime does not know the container).
fn truthful_status(t: &ShimTest, ctx: &str) -> Option<String> {
    let out = t.runtime_cmd(&["state", &t.id]);
    let cg = format!("{TEST_CGROUP_PARENT}/{}", t.id);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("does not exist"), "{ctx}: berth state: {err}");
        // No container: nothing of it runs.
        for d in cgroup_dirs(&cg) {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            assert!(
                procs.trim().is_empty(),
                "{ctx}: berth says no container, but {} holds {procs}",
                d.display()
            );
        }
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("state JSON");
    let status = v["status"].as_str().unwrap_or_default().to_string();
    let pid = v["pid"].as_i64().unwrap_or(0) as i32;
    match status.as_str() {
        "created" | "running" => {
            assert!(
                pid > 0 && alive(pid),
                "{ctx}: {status} but pid {pid} is gone: {v}"
            );
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            // Started, the init may not have reached its exec yet.
            let ok = match status.as_str() {
                "created" => cmd.trim() == "berth init",
                _ => cmd.trim() == "sleep 1000" || cmd.trim() == "berth init",
            };
            assert!(ok, "{ctx}: {status}, pid {pid} runs {cmd:?}: {v}");
        }
        "stopped" => assert!(
            pid <= 0 || !alive(pid),
            "{ctx}: stopped but {pid} lives: {v}"
        ),
        other => panic!("{ctx}: status {other:?}: {v}"),
    }
    Some(status)
}

#[test]
fn shim_killed_at_any_point_keeps_state_truthful_and_delete_force_cleans_up() {
    require_root();
    crash::become_subreaper();
    let trials = crash::trials(50);
    let mut rng = Rng::from_env("shim");
    // No output: a container whose stdout lost its reader must not die of
    // SIGPIPE while the test compares the runtime's word with /proc.
    let mut b = Bundle::new(&["sleep", "1000"]);

    // How long a startup takes: the random kills are spread over it.
    let t0 = ShimTest::new("crsh", Runtime::Berth, &mut b);
    let start = Instant::now();
    t0.start_ok(&b, &["--start"]);
    let startup = start.elapsed();
    drop(t0);
    eprintln!("a shim startup takes {startup:?}; {trials} trials");
    let span = (startup.as_millis() as u64 * 12 / 10).max(5);

    let started = Instant::now();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..trials {
        let how = match i % 3 {
            0 => Kill::At((i / 3) % POINTS.len()),
            1 => Kill::Startup(rng.below(span)),
            _ => Kill::Running(rng.below(100)),
        };
        let ctx = format!("trial {i} ({how:?})");
        let t = ShimTest::new("crsh", Runtime::Berth, &mut b);
        let mut cmd = t.shim_cmd(
            &b,
            &["--start", "--log-path", t.log_path().to_str().unwrap()],
        );
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        match how {
            Kill::At(k) => {
                cmd.env("BERTH_SHIM_FAILPOINT", POINTS[k].0);
                let st = cmd.status().unwrap();
                // Before the daemon reported, its caller fails (or, before
                // the fork, is the one killed); after, it succeeds.
                assert_eq!(st.success(), k + 1 == POINTS.len(), "{ctx}: caller {st}");
            }
            Kill::Startup(ms) => {
                let mut child = cmd.spawn().unwrap();
                std::thread::sleep(Duration::from_millis(ms));
                // The caller first (by pid: it may not even have reached
                // its exec), then the daemon it may have forked, until no
                // shim of the trial is left.
                let _ = child.kill();
                child.wait().unwrap();
                loop {
                    let pids = shim_pids(&t);
                    if pids.is_empty() {
                        break;
                    }
                    for p in pids {
                        // SAFETY: kill(2) of a shim this test started.
                        unsafe { libc::kill(p, libc::SIGKILL) };
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Kill::Running(ms) => {
                let st = cmd.status().unwrap();
                assert!(st.success(), "{ctx}: shim start failed");
                std::thread::sleep(Duration::from_millis(ms));
                // SAFETY: kill(2) of the shim this test started.
                unsafe { libc::kill(t.shim_pid(), libc::SIGKILL) };
            }
        }
        wait_settled(&t, &ctx);
        let status = truthful_status(&t, &ctx);
        match how {
            Kill::At(k) => assert_eq!(status.as_deref(), POINTS[k].1, "{ctx}"),
            Kill::Running(_) => assert_eq!(status.as_deref(), Some("running"), "{ctx}"),
            Kill::Startup(_) => {}
        }
        *seen
            .entry(status.clone().unwrap_or_else(|| "none".into()))
            .or_default() += 1;
        // The shim's client does not claim the shim is alive.
        if t.state_dir().join("shim.json").exists() {
            let st = t.ctl_state();
            assert_eq!(st["shim"], "dead", "{ctx}: {st}");
            assert_eq!(
                st["runtime_status"].as_str(),
                status.as_deref(),
                "{ctx}: {st}"
            );
        } else {
            let out = t.ctl(&["state"]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(!text.contains("\"running\""), "{ctx}: ctl state: {text}");
        }

        let out = t.runtime_cmd(&["delete", "--force", &t.id]);
        assert!(
            out.status.success(),
            "{ctx}: delete --force: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !t.root().join(&t.id).exists(),
            "{ctx}: state directory left"
        );
        let cg = cgroup_dirs(&format!("{TEST_CGROUP_PARENT}/{}", t.id));
        assert!(cg.is_empty(), "{ctx}: cgroup left: {cg:?}");
        let root = t.root().to_string_lossy().into_owned();
        assert_eq!(mounts_containing(&root), 0, "{ctx}: mount left");
        assert_eq!(
            mounts_containing(b.path().to_str().unwrap()),
            0,
            "{ctx}: mount left"
        );
        let kids = crash::wait_children_gone(&[], 5);
        if !kids.is_empty() {
            crash::kill_children(&[]);
            panic!("{ctx}: processes left: {kids:?}");
        }
    }
    eprintln!(
        "{trials} trials in {:?}; statuses seen: {seen:?}",
        started.elapsed()
    );
}

#[test]
fn failpoint_names_match_the_shim() {
    let src = std::fs::read_to_string(workspace_root().join("shim/src/failpoint.rs")).unwrap();
    for (p, _) in POINTS {
        assert!(
            src.contains(&format!("\"{p}\"")),
            "{p} is not a failpoint of berth-shim"
        );
    }
    // And in the same order.
    let pos: Vec<usize> = POINTS
        .iter()
        .map(|(p, _)| src.find(&format!("\"{p}\"")).unwrap())
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]));
}

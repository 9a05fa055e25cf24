//! `pier run` and friends: foreground exit codes and output, the bundle's
//! defaults (capabilities, seccomp, masked paths, /dev/shm, user, env,
//! volumes, read-only), detached containers held by berth-shim (ps, logs,
//! exec, stop, start, wait, kill, rm), and that nothing is left behind.

use std::time::Duration;

use berth_integration::pier_env::PierEnv;
use berth_integration::TempDir;
use serde_json::Value;

fn base() -> PierEnv {
    let p = PierEnv::new();
    p.busybox_image("base:1");
    p
}

#[test]
fn foreground_exit_codes_output_and_rm() {
    let p = base();
    let o = p.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "base:1",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 42",
    ]);
    assert_eq!(o.status.code(), Some(42));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    // Killed by a signal: 128+N (tini as PID 1 reports its child's death
    // as 128+N, as the shim does for the init itself).
    let o = p.run(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "none",
        "base:1",
        "sh",
        "-c",
        "kill -9 $$",
    ]);
    assert_eq!(o.status.code(), Some(137));
    assert!(p.container_ids().is_empty(), "--rm left a container");
    // Without --rm the container stays, exited, with its code.
    let o = p.run(&[
        "run",
        "--name",
        "kept",
        "--network",
        "none",
        "base:1",
        "sh",
        "-c",
        "exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5));
    let ps = p.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (5)") && ps.contains("kept"), "{ps}");
    let o = p.run(&["wait", "kept"]);
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "5\n");
    let (_, err) = p.fails(&[
        "run",
        "--name",
        "kept",
        "--network",
        "none",
        "base:1",
        "true",
    ]);
    assert!(err.contains("already in use"), "{err}");
    p.ok(&["rm", "kept"]);
    let (_, err) = p.fails(&["run", "--network", "none", "nosuchimage:1", "true"]);
    assert!(err.contains("not found"), "{err}");
    let (_, err) = p.fails(&["run", "--network", "none", "base:1", "/no/such/binary"]);
    assert!(!err.is_empty());
    assert!(
        p.container_ids().is_empty(),
        "a failed run left a container"
    );
    p.assert_clean();
}

#[test]
fn bundle_defaults_and_flags() {
    let p = base();
    let vol = TempDir::new("vol");
    std::fs::write(vol.path().join("hostfile"), "from host").unwrap();
    let envf = vol.path().join("env");
    std::fs::write(&envf, "# comment\nFROM_FILE=yes\n").unwrap();
    let script = "grep -E '^Cap(Bnd|Eff)' /proc/self/status; grep Seccomp: /proc/self/status; \
                  grep NoNewPrivs /proc/self/status; \
                  mount | grep -c ' /dev/shm '; \
                  echo $A $FROM_FILE $HOSTNAME; pwd; id -u; cat /data/hostfile; echo; \
                  touch /data/x 2>&1 | grep -c Read-only; touch /rootfile 2>&1 | grep -c Read-only; \
                  hostname; ls /sys/class/net";
    let out = p.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "A=a",
        "--env-file",
        envf.to_str().unwrap(),
        "-w",
        "/tmp",
        "-u",
        "1000",
        "-v",
        &format!("{}:/data:ro", vol.path().display()),
        "--read-only",
        "--hostname",
        "box",
        "--security-opt",
        "no-new-privileges",
        "--cap-drop",
        "NET_RAW",
        "base:1",
        "sh",
        "-c",
        script,
    ]);
    let lines: Vec<&str> = out.lines().collect();
    // Docker's 14 default capabilities minus NET_RAW in the bounding set;
    // none effective for a non-root user.
    assert_eq!(lines[0], "CapEff:\t0000000000000000", "{out}");
    assert_eq!(lines[1], "CapBnd:\t00000000a80405fb", "{out}");
    assert_eq!(lines[2], "Seccomp:\t2", "{out}");
    assert_eq!(lines[3], "NoNewPrivs:\t1", "{out}");
    assert_eq!(lines[4], "1", "/dev/shm is mounted: {out}");
    assert_eq!(lines[5], "a yes box", "{out}");
    assert_eq!(lines[6], "/tmp");
    assert_eq!(lines[7], "1000");
    assert_eq!(lines[8], "from host");
    assert_eq!(lines[9], "1", "the volume is read-only: {out}");
    assert_eq!(lines[10], "1", "the root is read-only: {out}");
    assert_eq!(lines[11], "box");
    assert_eq!(lines[12], "lo", "--network none: only loopback: {out}");
    // Masked and read-only /proc paths.
    let out = p.ok(&[
        "run", "--rm", "--network", "none", "base:1", "sh", "-c",
        "head -c 16 /proc/kcore 2>/dev/null | wc -c; echo x 2>&1 > /proc/sys/kernel/domainname | grep -c Read-only",
    ]);
    assert_eq!(out, "0\n1\n", "{out}");
    // The default seccomp profile refuses what Podman's profile refuses.
    let o = p.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "base:1",
        "unshare",
        "-m",
        "true",
    ]);
    assert_ne!(o.status.code(), Some(0));
    let o = p.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--security-opt",
        "seccomp=unconfined",
        "--cap-add",
        "SYS_ADMIN",
        "base:1",
        "unshare",
        "-m",
        "true",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Entrypoint override and limits land in the config.
    let id = p.run_detached(&[
        "--network",
        "none",
        "-m",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "--entrypoint",
        "sleep",
        "base:1",
        "100",
    ]);
    let v: Value = serde_json::from_str(&p.ok(&["inspect", &id])).unwrap();
    assert_eq!(v["State"]["Status"], "running");
    let cfg: Value = serde_json::from_slice(
        &std::fs::read(v["Bundle"].as_str().unwrap().to_string() + "/config.json").unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["process"]["args"], serde_json::json!(["sleep", "100"]));
    assert_eq!(cfg["linux"]["resources"]["memory"]["limit"], 64 << 20);
    assert_eq!(cfg["linux"]["resources"]["pids"]["limit"], 50);
    assert_eq!(cfg["linux"]["resources"]["cpu"]["quota"], 50000);
    let cg = format!("{}/{id}", p.cgroup_parent);
    let limit = std::fs::read_to_string(format!("/sys/fs/cgroup/memory{cg}/memory.limit_in_bytes"))
        .unwrap();
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    p.ok(&["rm", "-f", &id]);
    p.assert_clean();
}

#[test]
fn detached_lifecycle_logs_exec_stop_start_rm() {
    let p = base();
    let id = p.run_detached(&[
        "--name",
        "svc",
        "--network",
        "none",
        "--init",
        "base:1",
        "sh",
        "-c",
        "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    assert_eq!(id.len(), 64);
    let ps = p.ok(&["ps"]);
    assert!(ps.contains("svc") && ps.contains("Up"), "{ps}");
    assert_eq!(p.ok(&["ps", "-q"]).trim(), &id[..12]);
    // logs (wait for the first line).
    let mut logs = String::new();
    for _ in 0..100 {
        logs = p.ok(&["logs", "svc"]);
        if logs.contains("started") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(logs, "started\n");
    // exec: output, exit code, env, user.
    let o = p.run(&[
        "exec",
        "-e",
        "X=1",
        "-u",
        "1000",
        "svc",
        "sh",
        "-c",
        "echo $X $(id -u); exit 9",
    ]);
    assert_eq!(o.status.code(), Some(9));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1 1000\n");
    // stop: the trap runs, the exit code is recorded, the mount is gone.
    p.ok(&["stop", "-t", "5", "svc"]);
    assert!(p.ok(&["logs", "svc"]).contains("bye"));
    let ps = p.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (0)"), "{ps}");
    let here = p.dir.path().to_string_lossy().into_owned();
    assert_eq!(
        berth_integration::mounts_containing(&here),
        0,
        "stop left the rootfs mounted"
    );
    let (_, err) = p.fails(&["exec", "svc", "true"]);
    assert!(err.contains("not running"), "{err}");
    // start again: the container's changes survive a stop.
    p.ok(&["start", "svc"]);
    p.ok(&["exec", "svc", "sh", "-c", "echo kept > /state"]);
    p.ok(&["restart", "-t", "5", "svc"]);
    assert_eq!(p.ok(&["exec", "svc", "cat", "/state"]), "kept\n");
    assert!(p.ok(&["logs", "--tail", "1", "svc"]).ends_with("started\n"));
    // kill and wait.
    p.ok(&["kill", "-s", "KILL", "svc"]);
    let o = p.run(&["wait", "svc"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "137\n");
    let (_, err) = p.fails(&["rm", "nope"]);
    assert!(err.contains("no such container"), "{err}");
    p.ok(&["rm", "svc"]);
    assert!(p.container_ids().is_empty());
    // rm -f of a running container; logs -f ends when the container does.
    let id = p.run_detached(&[
        "--network",
        "none",
        "base:1",
        "sh",
        "-c",
        "echo one; sleep 0.3; echo two",
    ]);
    let out = p.ok(&["logs", "-f", &id]);
    assert_eq!(out, "one\ntwo\n");
    let id = p.run_detached(&["--network", "none", "base:1", "sleep", "100"]);
    let (_, err) = p.fails(&["rm", &id]);
    assert!(err.contains("running"), "{err}");
    p.ok(&["rm", "-f", &id]);
    // run -d --rm: removed by the shim's exit command after it exits.
    let id = p.run_detached(&["--rm", "--network", "none", "base:1", "true"]);
    let mut gone = false;
    for _ in 0..200 {
        if !p.store().join("containers").join(&id).exists() {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gone, "run -d --rm left the container");
    p.assert_clean();
}

#[test]
fn runtime_flag_selects_runc() {
    let p = base();
    let o = p.run(&[
        "--runtime",
        "/usr/sbin/runc",
        "run",
        "--rm",
        "--network",
        "none",
        "base:1",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let id = p.ok(&[
        "--runtime",
        "/usr/sbin/runc",
        "run",
        "-d",
        "--network",
        "none",
        "base:1",
        "sleep",
        "100",
    ]);
    let id = id.trim();
    p.remember(id);
    let v: Value = serde_json::from_str(&p.ok(&["inspect", id])).unwrap();
    assert_eq!(v["Runtime"], "/usr/sbin/runc");
    assert_eq!(v["State"]["Status"], "running");
    p.ok(&["stop", "-t", "1", id]);
    p.ok(&["rm", "-f", id]);
    p.assert_clean();
}

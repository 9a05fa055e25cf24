//! Attacks on the runtime from a hostile container or rootfs; each test runs
//! the attack and asserts it fails.

use std::path::Path;

use berth_integration::{bin, capture, pass_fd, Bundle, Container, TempDir};
use serde_json::json;

/// CVE-2019-5736: a process in the container opens the runtime binary
/// through `/proc/PID/exe` of berth's init (visible while it waits for
/// `start`) and tries to write it. The init runs from a sealed handle, so the
/// write fails and the host binary is unchanged.
#[test]
fn cve_2019_5736_runtime_binary_cannot_be_overwritten() {
    let mut b = Bundle::new(&["true"]);
    let c = Container::new("exe", &mut b);
    c.ok(&["create", "-b", b.path().to_str().unwrap(), &c.id]);
    let pid = c.state()["pid"].as_i64().unwrap();
    let berth = std::fs::read(bin("berth")).unwrap();
    // What a process joining the container would see as /proc/1/exe.
    let exe = format!("/proc/{pid}/exe");
    let target = std::fs::read_link(&exe).unwrap();
    assert_ne!(
        target,
        bin("berth"),
        "init runs straight from the host binary"
    );
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(&exe)
        .expect_err("the init's exe must not be writable");
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::EROFS) | Some(libc::ETXTBSY) | Some(libc::EPERM)
        ),
        "{err}"
    );
    c.ok(&["delete", "--force", &c.id]);
    assert_eq!(std::fs::read(bin("berth")).unwrap(), berth);
}

/// CVE-2024-21626: descriptors of the caller must not reach the container,
/// and a working directory through a leaked descriptor is refused.
#[test]
fn cve_2024_21626_no_host_fd_and_no_cwd_outside() {
    let host_dir = TempDir::new("leak");
    let mut b = Bundle::new(&["sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '"]);
    let c = Container::new("fd", &mut b);
    // An inherited, non-close-on-exec descriptor of a host directory at 7.
    let dir = std::fs::File::open(host_dir.path()).unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&dir);
    let mut cmd = c.cmd(&["run", "-b", b.path().to_str().unwrap(), &c.id]);
    pass_fd(&mut cmd, raw, 7);
    let out = capture(cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fds: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    // 0, 1, 2 and the one `ls` opens for the directory listing.
    assert!(
        fds.len() <= 4 && fds.iter().all(|&f| f <= 3),
        "leaked descriptors: {fds:?}"
    );

    let mut b = Bundle::new(&["pwd"]);
    b.config["process"]["cwd"] = json!("/proc/self/fd/7");
    let c = Container::new("cwd", &mut b);
    let mut cmd = c.cmd(&["run", "-b", b.path().to_str().unwrap(), &c.id]);
    pass_fd(&mut cmd, raw, 7);
    let out = capture(cmd);
    assert!(
        !out.status.success(),
        "cwd through a leaked fd was accepted: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cwd"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CVE-2021-30465 / CVE-2019-19921: mount destinations through hostile
/// symlinks in the rootfs land inside the rootfs, never on the host.
#[test]
fn cve_2021_30465_mount_targets_stay_in_rootfs() {
    let victim = TempDir::new("victim");
    let mut b = Bundle::new(&["sh", "-c", "ls /evil /up; mount | grep -c tmpfs"]);
    let rootfs = b.rootfs();
    // Absolute and relative symlinks pointing out of the rootfs.
    std::os::unix::fs::symlink(victim.path(), rootfs.join("evil")).unwrap();
    std::os::unix::fs::symlink("../../../../../../..", rootfs.join("up")).unwrap();
    let m = b.config["mounts"].as_array_mut().unwrap();
    m.push(json!({"destination": "/evil/mnt", "type": "tmpfs", "source": "tmpfs"}));
    m.push(json!({"destination": "/up/tmp/escape", "type": "tmpfs", "source": "tmpfs"}));
    let c = Container::new("sym", &mut b);
    let (code, out, err) = c.run(&b);
    assert_eq!(code, 0, "{out} {err}");
    assert!(
        !victim.path().join("mnt").exists(),
        "a directory was created outside the rootfs"
    );
    assert!(
        !Path::new("/tmp/escape").exists(),
        "a directory was created outside the rootfs"
    );
    assert!(
        rootfs
            .join(victim.path().strip_prefix("/").unwrap())
            .join("mnt")
            .is_dir(),
        "created under the rootfs"
    );

    // /proc must not be mounted through a symlink.
    let mut b = Bundle::new(&["true"]);
    let rootfs = b.rootfs();
    std::fs::remove_dir(rootfs.join("proc")).unwrap();
    std::os::unix::fs::symlink("/tmp", rootfs.join("proc")).unwrap();
    let c = Container::new("prc", &mut b);
    let (code, _, err) = c.run(&b);
    assert_ne!(code, 0);
    assert!(err.contains("symlink") || err.contains("/proc"), "{err}");
}

/// A rootfs that swaps a mount target between a directory and a symlink to
/// the host in a loop while containers start: no mount ever lands outside.
#[test]
fn symlink_race_on_mount_target() {
    let victim = TempDir::new("race-victim");
    let mut b = Bundle::new(&["true"]);
    let rootfs = b.rootfs();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/race/dir", "type": "tmpfs", "source": "tmpfs"}));
    let c = Container::new("race", &mut b);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        let (race, victim) = (rootfs.join("race"), victim.path().to_path_buf());
        std::thread::spawn(move || {
            let tmp = race.with_extension("tmp");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::create_dir_all(race.join("dir"));
                let _ = std::os::unix::fs::symlink(&victim, &tmp);
                let _ = std::fs::rename(&tmp, &race);
                let _ = std::fs::remove_file(&race);
            }
        })
    };
    for _ in 0..20 {
        let _ = c.run(&b);
        let _ = c.berth(&["delete", "--force", &c.id]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    assert!(
        !victim.path().join("dir").exists(),
        "the race made berth create a directory outside the rootfs"
    );
    assert_eq!(
        berth_integration::mounts_containing(victim.path().to_str().unwrap()),
        0,
        "a mount landed on the host"
    );
}

/// CVE-2025-31133: `/dev/null` replaced by a symlink to a procfs file before
/// masking: berth must refuse to mask with it, not bind the target.
#[test]
fn cve_2025_31133_dev_null_symlink_is_refused() {
    let mut b = Bundle::new(&["true"]);
    // /dev comes from the rootfs (bind-mounted), with a hostile null.
    let dev = b.rootfs().join("dev");
    std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", dev.join("null")).unwrap();
    let m = b.config["mounts"].as_array_mut().unwrap();
    m.retain(|m| {
        m["destination"] != "/dev"
            && m["destination"] != "/dev/pts"
            && m["destination"] != "/dev/shm"
            && m["destination"] != "/dev/mqueue"
    });
    let rootfs_dev = dev.to_str().unwrap().to_string();
    m.push(
        json!({"destination": "/dev", "type": "bind", "source": rootfs_dev, "options": ["rbind"]}),
    );
    let c = Container::new("null", &mut b);
    let (code, _, err) = c.run(&b);
    assert_ne!(code, 0, "masking with a symlinked /dev/null was accepted");
    assert!(err.contains("/dev/null"), "{err}");
    assert!(c.cgroup_dirs().is_empty());
}

/// CVE-2025-52565: `/dev/console` is never a path the container chose.
#[test]
fn cve_2025_52565_dev_console_symlink_is_refused() {
    use std::os::unix::net::UnixListener;
    let dir = TempDir::new("console");
    let sock = dir.path().join("c.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut b = Bundle::new(&["true"]);
    b.config["process"]["terminal"] = json!(true);
    let dev = b.rootfs().join("dev");
    std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", dev.join("console")).unwrap();
    let m = b.config["mounts"].as_array_mut().unwrap();
    m.retain(|m| m["destination"] != "/dev");
    m.push(json!({"destination": "/dev", "type": "bind", "source": dev.to_str().unwrap(), "options": ["rbind"]}));
    let c = Container::new("con", &mut b);
    let out = c.berth(&[
        "create",
        "--console-socket",
        sock.to_str().unwrap(),
        "-b",
        b.path().to_str().unwrap(),
        &c.id,
    ]);
    drop(listener);
    assert!(
        !out.status.success(),
        "a symlinked /dev/console was mounted over"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("console"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CVE-2025-52881: a sysctl write redirected by a bind mount over
/// `/proc/sys/...` in the config must not land on another file.
#[test]
fn cve_2025_52881_sysctl_writes_use_a_verified_procfs() {
    let decoy = TempDir::new("decoy");
    std::fs::write(decoy.path().join("ip_forward"), "0").unwrap();
    let mut b = Bundle::new(&["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward"]);
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    b.config["linux"]["readonlyPaths"] = json!([]);
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/proc/sys/net/ipv4/ip_forward", "type": "bind",
        "source": decoy.path().join("ip_forward").to_str().unwrap(), "options": ["bind"]}));
    let c = Container::new("sysctl", &mut b);
    let (code, _, err) = c.run(&b);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(decoy.path().join("ip_forward")).unwrap(),
        "0",
        "the sysctl was written to the decoy"
    );
}

/// Without CAP_SYS_ADMIN nothing can be mounted; without CAP_NET_RAW no raw
/// socket.
#[test]
fn capabilities_limit_what_root_in_the_container_can_do() {
    // busybox ping opens a raw socket; without CAP_NET_RAW it says
    // "permission denied" (lo is down in the new network namespace, so the
    // ping itself fails either way).
    let script = "mount -t tmpfs t /tmp 2>/dev/null && echo MOUNTED; \
                  ping -c1 -W1 127.0.0.1 2>&1 | grep -q 'permission denied' || echo RAW_SOCKET; echo end";
    let mut b = Bundle::new(&["sh", "-c", script]);
    let caps = json!(["CAP_CHOWN", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID"]);
    b.config["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps});
    let c = Container::new("caps", &mut b);
    let (code, out, err) = c.run(&b);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("end"));
    assert!(!out.contains("MOUNTED"), "mounted without CAP_SYS_ADMIN");
    assert!(
        !out.contains("RAW_SOCKET"),
        "raw socket without CAP_NET_RAW"
    );

    // The same container with the capabilities can do both: the test above
    // fails for the right reason.
    let mut b = Bundle::new(&["sh", "-c", script]);
    let caps = json!(["CAP_SYS_ADMIN", "CAP_NET_RAW"]);
    b.config["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps});
    let c = Container::new("caps2", &mut b);
    let (_, out, _) = c.run(&b);
    assert!(
        out.contains("MOUNTED") && out.contains("RAW_SOCKET"),
        "{out}"
    );
}

const CAPDUMP: &str = r#"
#include <stdio.h>
#include <string.h>
int main(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Cap", 3)) fputs(line, stdout);
    return 0;
}
"#;

/// The bounding set holds across exec of a setuid-root binary by a non-root
/// user: it gains at most the bounding set.
#[test]
fn bounding_set_holds_across_setuid_exec() {
    let mut b = Bundle::new(&["/bin/capdump"]);
    let prog = b.rootfs().join("bin/capdump");
    berth_integration::compile_static_c(CAPDUMP, &prog);
    std::os::unix::fs::chown(&prog, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let caps = json!(["CAP_CHOWN", "CAP_KILL"]);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["process"]["noNewPrivileges"] = json!(false);
    b.config["process"]["capabilities"] =
        json!({"bounding": caps, "effective": [], "permitted": []});
    let c = Container::new("suid", &mut b);
    let (code, out, err) = c.run(&b);
    assert_eq!(code, 0, "{out} {err}");
    let prm = out
        .lines()
        .find_map(|l| l.strip_prefix("CapPrm:"))
        .expect("CapPrm")
        .trim();
    // The setuid exec did raise privileges (the test would not prove anything
    // otherwise), but only up to the bounding set (CHOWN=0, KILL=5).
    assert_eq!(u64::from_str_radix(prm, 16).unwrap(), 1 | 1 << 5, "{out}");
}

/// Ambient capabilities reach a non-root process's exec'd program.
#[test]
fn ambient_capabilities_for_non_root() {
    let caps = json!(["CAP_NET_BIND_SERVICE"]);
    let mut b = Bundle::new(&["sh", "-c", "grep -E 'CapEff|CapAmb' /proc/self/status; nc -l -p 80 -w 1 & sleep 0.3; netstat -ltn | grep -c ':80 '"]);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": caps});
    let c = Container::new("amb", &mut b);
    let (code, out, err) = c.run(&b);
    assert_eq!(code, 0, "{out} {err}");
    let amb = out
        .lines()
        .find_map(|l| l.strip_prefix("CapAmb:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(u64::from_str_radix(&amb, 16).unwrap(), 1 << 10);
    assert_eq!(
        out.lines().last().unwrap().trim(),
        "1",
        "uid 1000 could not bind port 80: {out}"
    );
}

//! `exec`, terminals and the rest of the CLI.

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use berth_integration::{Bundle, Container, TempDir};
use serde_json::json;

fn running(prefix: &str, edit: impl FnOnce(&mut Bundle)) -> (Bundle, Container) {
    let mut b = Bundle::new(&["sleep", "1000"]);
    edit(&mut b);
    let c = Container::new(prefix, &mut b);
    c.ok(&["run", "-d", "-b", b.path().to_str().unwrap(), &c.id]);
    (b, c)
}

#[test]
fn exec_joins_the_containers_namespaces_and_cgroup() {
    let (_b, c) = running("ex", |b| b.config["hostname"] = json!("exec-host"));
    let init = c.state()["pid"].as_i64().unwrap();
    let out = c.ok(&["exec", &c.id, "sh", "-c", "hostname; echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; \
                      for n in mnt net ipc uts pid cgroup; do readlink /proc/self/ns/$n; done; cat /proc/self/cgroup"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "exec-host");
    assert_ne!(lines[1], "1", "exec is not the init: {out}");
    assert!(
        lines[1].parse::<u32>().unwrap() < 100,
        "exec runs in the container's pid namespace: {out}"
    );
    assert_eq!(
        lines[2].trim(),
        "sleep 1000",
        "pid 1 is the container's init: {out}"
    );
    for (i, n) in ["mnt", "net", "ipc", "uts", "pid", "cgroup"]
        .iter()
        .enumerate()
    {
        let init_ns = std::fs::read_link(format!("/proc/{init}/ns/{n}")).unwrap();
        assert_eq!(lines[3 + i], init_ns.to_str().unwrap(), "{n}");
    }
    let init_cg = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    let exec_cg: Vec<&str> = lines[9..].to_vec();
    // Seen from the container's cgroup namespace both are at its root.
    for l in exec_cg {
        assert!(l.ends_with(":/"), "{l}");
    }
    assert!(init_cg.contains(&c.id), "{init_cg}");
}

#[test]
fn exec_user_caps_env_cwd_and_exit_code() {
    let (_b, c) = running("exu", |b| {
        let caps = json!(["CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID"]);
        b.config["process"]["capabilities"] =
            json!({"bounding": caps, "effective": caps, "permitted": caps});
    });
    assert_eq!(
        c.ok(&["exec", "--user", "1000:1000", &c.id, "id"]).trim(),
        "uid=1000(user) gid=1000(user)"
    );
    assert_eq!(
        c.ok(&[
            "exec",
            "-e",
            "X=1",
            "--cwd",
            "/tmp",
            &c.id,
            "sh",
            "-c",
            "echo $X $(pwd)"
        ])
        .trim(),
        "1 /tmp"
    );
    let out = c.berth(&["exec", &c.id, "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    // The container's caps allow mounting; an exec with a restricted set
    // (through --process) cannot.
    assert!(c
        .berth(&["exec", &c.id, "mount", "-t", "tmpfs", "t", "/tmp"])
        .status
        .success());
    let dir = TempDir::new("proc");
    let p = dir.path().join("process.json");
    std::fs::write(&p, json!({"args": ["mount", "-t", "tmpfs", "t", "/tmp"], "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/bin"], "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}}).to_string()).unwrap();
    let out = c.berth(&["exec", "--process", p.to_str().unwrap(), &c.id]);
    assert!(!out.status.success(), "mount worked without CAP_SYS_ADMIN");
    // --cap adds to the process's sets.
    let out = c.ok(&[
        "exec",
        "--cap",
        "CAP_NET_RAW",
        &c.id,
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    let eff = u64::from_str_radix(out.split_whitespace().last().unwrap(), 16).unwrap();
    assert_ne!(eff & (1 << 13), 0, "{out}");
}

#[test]
fn exec_detach_pid_file_and_errors() {
    let (_b, c) = running("exd", |_| {});
    let pf = c.root.path().join("exec.pid");
    c.ok(&[
        "exec",
        "-d",
        "--pid-file",
        pf.to_str().unwrap(),
        &c.id,
        "sleep",
        "100",
    ]);
    let pid: i32 = std::fs::read_to_string(&pf)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmd, "sleep\x00100\x00");
    let out = c.berth(&["exec", &c.id, "no-such-binary"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("executable file not found"));
    c.ok(&["kill", &c.id, "KILL"]);
    for _ in 0..100 {
        if c.status() == "stopped" {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = c.berth(&["exec", &c.id, "true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stopped"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn recv_fd(sock: &std::os::unix::net::UnixStream) -> OwnedFd {
    use nix_free::recv_one_fd;
    recv_one_fd(sock)
}

/// Minimal SCM_RIGHTS receive with libc only (the tests do not depend on nix).
mod nix_free {
    use super::*;
    use std::os::fd::AsRawFd;

    pub fn recv_one_fd(sock: &std::os::unix::net::UnixStream) -> OwnedFd {
        let mut buf = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = [0u8; 64];
        // SAFETY: msghdr points at live buffers for the duration of the call.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_mut_ptr().cast();
            msg.msg_iovlen = 1;
            msg.msg_control = cmsg.as_mut_ptr().cast();
            msg.msg_controllen = cmsg.len();
            let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, 0);
            assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
            let c = libc::CMSG_FIRSTHDR(&msg);
            assert!(
                !c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS,
                "no descriptor received"
            );
            let fd: RawFd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
            OwnedFd::from_raw_fd(fd)
        }
    }
}

/// Reads a pty master until the process side is gone (EIO once every slave
/// descriptor is closed).
fn read_until_closed(m: &mut std::fs::File) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = m.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn console_socket_gets_a_working_pty_with_the_requested_size() {
    let dir = TempDir::new("cons");
    let sock_path = dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let mut b = Bundle::new(&["sh"]);
    b.config["process"]["terminal"] = json!(true);
    b.config["process"]["consoleSize"] = json!({"height": 40, "width": 100});
    let c = Container::new("tty", &mut b);
    let accept = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        recv_fd(&s)
    });
    c.ok(&[
        "create",
        "--console-socket",
        sock_path.to_str().unwrap(),
        "-b",
        b.path().to_str().unwrap(),
        &c.id,
    ]);
    let master = accept.join().unwrap();
    c.ok(&["start", &c.id]);
    let mut m = std::fs::File::from(master);
    m.write_all(b"stty size; tty; echo mark-$((2+3)); exit\n")
        .unwrap();
    let text = read_until_closed(&mut m);
    assert!(text.contains("40 100"), "window size: {text}");
    assert!(text.contains("mark-5"), "{text}");
    assert!(
        text.contains("/dev/pts/0") || text.contains("/dev/console"),
        "{text}"
    );
}

#[test]
fn exec_with_console_socket() {
    let dir = TempDir::new("econs");
    let sock_path = dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let (_b, c) = running("etty", |_| {});
    let accept = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        recv_fd(&s)
    });
    c.ok(&[
        "exec",
        "-d",
        "-t",
        "--console-socket",
        sock_path.to_str().unwrap(),
        &c.id,
        "sh",
        "-c",
        "tty; echo done-$((1+1))",
    ]);
    let mut m = std::fs::File::from(accept.join().unwrap());
    let text = read_until_closed(&mut m);
    assert!(
        text.contains("/dev/pts/") && text.contains("done-2"),
        "{text}"
    );
}

#[test]
fn foreground_terminal_without_console_socket_relays_like_runc() {
    // `script` gives berth a terminal, as an interactive shell would.
    let mut b = Bundle::new(&["sh", "-c", "stty size; echo relay-$((3*3)); exit 4"]);
    b.config["process"]["terminal"] = json!(true);
    let c = Container::new("fgt", &mut b);
    let berth = berth_integration::bin("berth");
    let cmd = format!(
        "stty rows 21 cols 77; {} --root {} run -b {} {}",
        berth.display(),
        c.root.path().display(),
        b.path().display(),
        c.id
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("21 77"), "{text}");
    assert!(text.contains("relay-9"), "{text}");
    assert_eq!(out.status.code(), Some(4), "{text}");
}

#[test]
fn features_list_spec_and_kill_spellings() {
    let (b, c) = running("misc", |_| {});
    let f: serde_json::Value = serde_json::from_str(&c.ok(&["features"])).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert!(f["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h == "createContainer"));
    assert!(f["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == "rro"));
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "time"));
    assert!(f["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "CAP_SYS_ADMIN"));
    let list: serde_json::Value =
        serde_json::from_str(&c.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], c.id.as_str());
    assert_eq!(list[0]["status"], "running");
    assert_eq!(c.ok(&["list", "-q"]).trim(), c.id);
    let table = c.ok(&["list"]);
    assert!(table.starts_with("ID") && table.contains(&c.id) && table.contains("running"));
    // The same harmless signal by name, SIG-name and number; then KILL to all.
    c.ok(&["kill", &c.id, "CONT"]);
    c.ok(&["kill", &c.id, "SIGCONT"]);
    c.ok(&["kill", &c.id, "18"]);
    assert!(!c.berth(&["kill", &c.id, "NOPE"]).status.success());
    c.ok(&["kill", "--all", &c.id, "KILL"]);
    drop(b);
}

#[test]
fn spec_output_runs_as_is() {
    let dir = TempDir::new("spec");
    berth_integration::busybox_rootfs(&dir.path().join("rootfs"));
    let c = Container {
        id: berth_integration::unique_id("spec"),
        root: TempDir::new("root"),
    };
    c.ok(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    // The default process is `sh` with no terminal: with stdin from
    // /dev/null it exits 0 at once.
    let out = c.berth(&["run", "--bundle", dir.path().to_str().unwrap(), &c.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !c.berth(&["spec", "--bundle", dir.path().to_str().unwrap()])
            .status
            .success(),
        "spec must not overwrite"
    );
    // The default cgroup parent berth made: removed if nothing else uses it.
    for d in berth_integration::cgroup_dirs("/berth") {
        let _ = std::fs::remove_dir(d);
    }
}

#[test]
fn exec_gets_the_containers_seccomp_filter() {
    let (_b, c) = running("exsc", |b| {
        b.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    });
    let out = c.berth(&[
        "exec",
        &c.id,
        "sh",
        "-c",
        "mkdir /tmp/x; echo rc=$?; grep Seccomp: /proc/self/status",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rc=1"),
        "mkdir was not refused in exec: {text}"
    );
    assert!(text.contains("Seccomp:\t2"), "{text}");
}

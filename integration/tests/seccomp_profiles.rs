//! seccomp end to end: the Podman/Docker default profile, NOTIFY to an
//! agent, filter flags, refused profiles, and `noNewPrivileges`.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};

use berth_integration::{Bundle, Container, TempDir};
use serde_json::{json, Value};

/// Compiles `tests/helpers/NAME.c` statically into the rootfs's `/bin`.
fn helper(b: &Bundle, name: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/helpers/{name}.c"));
    let out = b.rootfs().join("bin").join(name);
    let st = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("cc (apt-get install gcc libc6-dev)");
    assert!(st.success(), "compile {name}");
}

/// The containers/common default profile as Podman hands it to the
/// runtime on amd64 with its default capabilities.
fn podman_default() -> Value {
    let raw: Value = serde_json::from_slice(
        &std::fs::read("/usr/share/containers/seccomp.json")
            .expect("apt-get install golang-github-containers-common"),
    )
    .unwrap();
    let caps = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_CHROOT",
    ];
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|l| l.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let mut syscalls = Vec::new();
    for sc in raw["syscalls"].as_array().unwrap() {
        let (inc, exc) = (&sc["includes"], &sc["excludes"]);
        if !list(&inc["caps"])
            .iter()
            .all(|c| caps.contains(&c.as_str()))
            || list(&exc["caps"])
                .iter()
                .any(|c| caps.contains(&c.as_str()))
        {
            continue;
        }
        let arches = list(&inc["arches"]);
        if !arches.is_empty() && !arches.iter().any(|a| a == "amd64")
            || list(&exc["arches"]).iter().any(|a| a == "amd64")
        {
            continue;
        }
        let mut e = json!({"names": sc["names"], "action": sc["action"]});
        if let Some(a) = sc["args"].as_array().filter(|a| !a.is_empty()) {
            e["args"] = json!(a);
        }
        if sc["errnoRet"].is_u64() {
            e["errnoRet"] = sc["errnoRet"].clone();
        }
        syscalls.push(e);
    }
    json!({"defaultAction": raw["defaultAction"], "defaultErrnoRet": raw["defaultErrnoRet"],
           "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": syscalls})
}

/// Runs `script` in a container (with the helpers) under `seccomp` (or
/// none); returns (exit code, stdout, stderr).
fn run(seccomp: Option<Value>, script: &str) -> (i32, String, String) {
    let mut b = Bundle::new(&["sh", "-c", script]);
    helper(&b, "sysprobe");
    if let Some(s) = seccomp {
        b.config["linux"]["seccomp"] = s;
    }
    let c = Container::new("sc", &mut b);
    c.run(&b)
}

// x86_64 syscall numbers used below.
const ADD_KEY: u32 = 248;
const KEYCTL: u32 = 250;
const BPF: u32 = 321;
const SOCKET: u32 = 41;
const UNSHARE: u32 = 272;
const MOUNT: u32 = 165;
const PTRACE: u32 = 101;
const IO_URING_SETUP: u32 = 425;

#[test]
fn default_profile_runs_busybox_and_blocks_what_it_blocks() {
    let probes = format!(
        "sysprobe {ADD_KEY} 0 0 0 0 0; sysprobe {BPF} 0 0 0; sysprobe {SOCKET} 16 3 9; sysprobe {IO_URING_SETUP} 1 0; \
         sysprobe {UNSHARE} 0x20000; sysprobe {MOUNT} 0 0 0 0 0; sysprobe {KEYCTL} 0 0; sysprobe {PTRACE} 16 1"
    );
    let workload = "echo hello; ls / >/dev/null && cat /etc/passwd | wc -l; ls /bin/sh; \
                    sleep 0.1; date +%Y >/dev/null; id -u; sort </etc/group | head -1; sh -c 'exit 3'; echo sub=$?";
    let (code, out, err) = run(Some(podman_default()), &format!("{workload}; {probes}"));
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..6],
        ["hello", "2", "/bin/sh", "0", "root:x:0:", "sub=3"],
        "{out}\n{err}"
    );
    // Blocked by the profile: add_key, io_uring_setup (default action,
    // ENOSYS), bpf (EPERM rule), an audit netlink socket (EINVAL rule).
    // unshare, mount, keyctl and ptrace are allowed by this profile and
    // reach the kernel: unshare and ptrace of pid 1 fail with EPERM for
    // lack of capabilities, mount and keyctl with EFAULT/EINVAL for their
    // NULL arguments (not a seccomp answer).
    assert_eq!(
        lines[6..],
        [
            "errno 38", "errno 1", "errno 22", "errno 38", "errno 1", "errno 14", "errno 22",
            "errno 1"
        ],
        "{out}"
    );
    let (_, out, _) = run(
        Some(podman_default()),
        "mount -t tmpfs none /tmp; echo rc=$?",
    );
    assert_eq!(out.trim(), "rc=1", "mount must fail inside");

    // The same probes without the profile show it was seccomp: add_key,
    // io_uring and socket give other answers.
    let (_, out, _) = run(None, &probes);
    let plain: Vec<&str> = out.lines().collect();
    assert_ne!(plain[0], "errno 38", "{out}");
    assert_ne!(plain[2], "errno 22", "{out}");
    assert_ne!(plain[3], "errno 38", "{out}");
}

#[test]
fn filter_is_active_and_errno_kill_and_args_apply() {
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77},
            {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [{"index": 1, "value": 4242, "op": "SCMP_CMP_EQ"}]},
            {"names": ["sync"], "action": "SCMP_ACT_KILL_PROCESS"}
        ]
    });
    let (code, out, err) = run(
        Some(profile),
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; sysprobe 110; sysprobe 140 0 4242; \
         sysprobe 140 0 4243; sysprobe 162; echo rc=$?",
    );
    let lines: Vec<&str> = out.lines().collect();
    // berth spec's default sets noNewPrivileges: true. getpriority with
    // another argument reaches the kernel (ESRCH); sync kills with SIGSYS.
    assert_eq!(
        lines,
        [
            "NoNewPrivs:\t1",
            "Seccomp:\t2",
            "errno 77",
            "errno 13",
            "errno 3",
            "rc=159"
        ],
        "{out}\n{err}"
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn filter_flags_are_passed_to_the_kernel() {
    // SECCOMP_FILTER_FLAG_LOG makes the kernel log ERRNO verdicts (audit
    // type 1326); without the flag they are not logged.
    let count = || {
        let out = Command::new("dmesg").output().expect("dmesg");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("type=1326") && l.contains("syscall=110"))
            .count()
    };
    let profile = |flags: Value| {
        json!({
            "defaultAction": "SCMP_ACT_ALLOW", "flags": flags,
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5}]
        })
    };
    let before = count();
    let (_, out, err) = run(Some(profile(json!([]))), "sysprobe 110");
    assert_eq!(out.trim(), "errno 5", "{err}");
    let unflagged = count();
    assert_eq!(
        unflagged, before,
        "an ERRNO verdict was logged without SECCOMP_FILTER_FLAG_LOG"
    );
    let (_, out, err) = run(
        Some(profile(json!([
            "SECCOMP_FILTER_FLAG_LOG",
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            "SECCOMP_FILTER_FLAG_TSYNC"
        ]))),
        "sysprobe 110; sysprobe 110",
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["errno 5", "errno 5"],
        "{err}"
    );
    let mut logged = count();
    for _ in 0..50 {
        if logged > unflagged {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        logged = count();
    }
    assert!(
        logged > unflagged,
        "SECCOMP_FILTER_FLAG_LOG: no audit record of the ERRNO verdict"
    );
}

#[test]
fn refused_profiles_are_clear_errors_and_leave_nothing_behind() {
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "listenerPath",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}),
            "default action",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "index 6",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_KILL", "errnoRet": 3}]}),
            "errnoRet",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_BOGUS"}]}),
            "SCMP_ACT_BOGUS",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]}),
            "SECCOMP_FILTER_FLAG_BOGUS",
        ),
    ];
    for (profile, needle) in cases {
        let mut b = Bundle::new(&["true"]);
        b.config["linux"]["seccomp"] = profile.clone();
        let c = Container::new("sr", &mut b);
        let out = c.berth(&["create", "--bundle", b.path().to_str().unwrap(), &c.id]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{profile} was accepted");
        assert!(
            err.contains(needle),
            "{profile}: error does not name {needle:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
        assert!(!c.root.path().join(&c.id).exists(), "state left behind");
        assert!(
            c.cgroup_dirs().is_empty(),
            "cgroup left behind: {:?}",
            c.cgroup_dirs()
        );
    }
}

/// Receives the agent message: (JSON, descriptor).
fn recv_agent(conn: &std::os::unix::net::UnixStream) -> (Value, OwnedFd) {
    let mut buf = vec![0u8; 65536];
    let mut cbuf = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr over live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.len();
    // SAFETY: valid socket and msghdr.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, 0) };
    assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel filled the control buffer.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    assert!(!cmsg.is_null(), "no SCM_RIGHTS");
    // SAFETY: one descriptor in the SCM_RIGHTS payload.
    let fd = unsafe { *(libc::CMSG_DATA(cmsg) as *const i32) };
    let mut data = buf[..n as usize].to_vec();
    let mut rest = Vec::new();
    let mut c = conn;
    c.read_to_end(&mut rest).unwrap();
    data.extend(rest);
    // SAFETY: just received, owned by us.
    (serde_json::from_slice(&data).expect("agent JSON"), unsafe {
        OwnedFd::from_raw_fd(fd)
    })
}

#[test]
fn notify_reaches_the_agent_which_answers_the_syscall() {
    let dir = TempDir::new("agent");
    let sock = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut b = Bundle::new(&["sh", "-c", "mkdir /tmp/x; echo rc=$?"]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock, "listenerMetadata": "tenant=42",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    b.config["annotations"] = json!({"org.test": "yes"});
    let c = Container::new("sn", &mut b);
    let out_path = dir.path().join("out");
    let out_file = std::fs::File::create(&out_path).unwrap();
    let mut child = c
        .cmd(&["run", "--bundle", b.path().to_str().unwrap(), &c.id])
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    listener.set_nonblocking(false).unwrap();
    let (conn, _) = listener.accept().unwrap();
    let (state, fd) = recv_agent(&conn);
    assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
    assert_eq!(state["metadata"], "tenant=42");
    assert_eq!(state["state"]["id"], c.id.as_str());
    assert_eq!(state["state"]["annotations"]["org.test"], "yes");
    let pid = state["pid"].as_i64().unwrap();
    assert!(pid > 1 && state["state"]["pid"] == pid, "{state}");

    // Answer the first notification (the mkdir) with EXDEV.
    // SAFETY: zeroed plain structs filled by the kernel / by us.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) };
    assert_eq!(r, 0, "NOTIF_RECV: {}", std::io::Error::last_os_error());
    assert!(
        req.data.nr == 83 || req.data.nr == 258,
        "notified syscall {}",
        req.data.nr
    );
    let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
    resp.id = req.id;
    resp.error = -libc::EXDEV;
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) };
    assert_eq!(r, 0, "NOTIF_SEND: {}", std::io::Error::last_os_error());

    let status = child.wait().unwrap();
    let out = std::fs::read_to_string(&out_path).unwrap();
    assert!(status.success(), "{out}");
    assert_eq!(
        out.trim(),
        "rc=1",
        "mkdir must fail with the agent's answer"
    );
}

#[test]
fn no_new_privileges_stops_setuid_and_false_keeps_it_clear() {
    for (nnp, want) in [(false, "euid=0"), (true, "euid=1000")] {
        let mut b = Bundle::new(&["/bin/euid"]);
        helper(&b, "euid");
        std::fs::set_permissions(
            b.rootfs().join("bin/euid"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        // A filter is loaded in both cases: without no_new_privs it needs
        // CAP_SYS_ADMIN, which the user process does not have.
        b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}]});
        let c = Container::new("nnp", &mut b);
        let (code, out, err) = c.run(&b);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), want, "noNewPrivileges={nnp}: {err}");
    }
}

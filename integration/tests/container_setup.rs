//! What a process sees from inside the container: every bullet of the
//! runtime-core issue's "Isolation and process setup" section.

use std::os::unix::fs::MetadataExt;

use berth_integration::{Bundle, Container, TempDir};
use serde_json::json;

/// Runs `script` with `sh -c` in a container made from `edit`ed defaults;
/// returns stdout, asserting exit code 0.
fn run_sh(prefix: &str, script: &str, edit: impl FnOnce(&mut Bundle)) -> String {
    let mut b = Bundle::new(&["sh", "-c", script]);
    edit(&mut b);
    let c = Container::new(prefix, &mut b);
    let (code, out, err) = c.run(&b);
    assert_eq!(code, 0, "container failed: stdout={out} stderr={err}");
    out
}

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("{key} missing in output:\n{out}"))
        .trim()
}

#[test]
fn hostname_and_domainname() {
    let out = run_sh(
        "hn",
        "echo H=$(hostname); echo D=$(cat /proc/sys/kernel/domainname)",
        |b| {
            b.config["hostname"] = json!("box-1");
            b.config["domainname"] = json!("example.test");
        },
    );
    assert_eq!(field(&out, "H="), "box-1");
    assert_eq!(field(&out, "D="), "example.test");
}

#[test]
fn namespaces_are_new_by_inode() {
    let script =
        "for n in pid net ipc uts mnt cgroup; do echo $n=$(readlink /proc/self/ns/$n); done";
    let out = run_sh("ns", script, |_| {});
    for n in ["pid", "net", "ipc", "uts", "mnt", "cgroup"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{n}")).unwrap();
        let inside = field(&out, &format!("{n}="));
        assert_ne!(
            inside,
            host.to_str().unwrap(),
            "{n} namespace is the host's"
        );
    }
    // The process is pid 1 of its pid namespace and sees its cgroup as "/".
    let out = run_sh(
        "ns1",
        "echo P=$$; grep -c ':/$' /proc/self/cgroup; echo C=$(head -1 /proc/self/cgroup)",
        |_| {},
    );
    assert_eq!(field(&out, "P="), "1");
    assert!(field(&out, "C=").ends_with(":/"), "{out}");
}

#[test]
fn joins_a_network_namespace_by_path() {
    let name = format!("berth-it-{}", std::process::id());
    berth_integration::sh(&format!("ip netns add {name}"));
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }
    let _del = Del(name.clone());
    let path = format!("/run/netns/{name}");
    let want = std::fs::metadata(&path).unwrap().ino();
    let out = run_sh("nsj", "echo N=$(readlink /proc/self/ns/net)", |b| {
        let nss = b.config["linux"]["namespaces"].as_array_mut().unwrap();
        for ns in nss.iter_mut() {
            if ns["type"] == "network" {
                ns["path"] = json!(path);
            }
        }
    });
    assert_eq!(field(&out, "N="), format!("net:[{want}]"));
}

#[test]
fn user_namespace_maps_ids() {
    let out = run_sh(
        "us",
        "echo U=$(cat /proc/self/uid_map | tr -s ' '); id -u; touch /tmp/f; echo done",
        |b| {
            b.config["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            b.config["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            b.config["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            // A writable /tmp owned by the mapped root.
            b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}));
            let rootfs = b.rootfs();
            chown_tree(&rootfs, 100000, 100000);
        },
    );
    assert_eq!(field(&out, "U="), "0 100000 65536");
    assert!(out.lines().any(|l| l == "0"), "{out}");
    assert!(out.contains("done"));
}

fn chown_tree(p: &std::path::Path, uid: u32, gid: u32) {
    let _ = std::os::unix::fs::lchown(p, Some(uid), Some(gid));
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

#[test]
fn time_namespace_offsets() {
    let out = run_sh("tn", "echo UP=$(cut -d. -f1 /proc/uptime)", |b| {
        b.config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        b.config["linux"]["timeOffsets"] =
            json!({"boottime": {"secs": 86400 * 400, "nanosecs": 0}});
    });
    let up: u64 = field(&out, "UP=").parse().unwrap();
    assert!(up >= 86400 * 400, "uptime {up} lacks the offset");
}

#[test]
fn mounts_types_options_and_readonly_root() {
    let host = TempDir::new("bindsrc");
    std::fs::write(host.path().join("file"), "from-host").unwrap();
    let src = host.path().to_str().unwrap().to_string();
    let script = "grep -E ' /(data|t|etc/hosts2|dev/shm|sys) ' /proc/self/mounts; cat /data/file; \
                  touch /data/x 2>/dev/null && echo DATA_RW; touch /t/x && echo T_RW; \
                  stat -c MODE=%a /t; touch /x 2>/dev/null || echo ROOT_RO";
    let out = run_sh("mnt", script, |b| {
        let m = b.config["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/data", "type": "bind", "source": src, "options": ["rbind", "ro", "nosuid", "nodev"]}));
        m.push(json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "noexec", "size=1m", "mode=1750"]}));
    });
    let data = out
        .lines()
        .find(|l| l.contains(" /data "))
        .expect("/data mounted");
    assert!(
        data.contains("ro,") && data.contains("nosuid") && data.contains("nodev"),
        "{data}"
    );
    let t = out
        .lines()
        .find(|l| l.contains(" /t "))
        .expect("/t mounted");
    assert!(
        t.starts_with("tmpfs") && t.contains("size=1024k") && t.contains("noexec"),
        "{t}"
    );
    assert!(out.contains("from-host"));
    assert!(!out.contains("DATA_RW"), "ro bind mount was writable");
    assert!(out.contains("T_RW"));
    assert_eq!(field(&out, "MODE="), "1750");
    assert!(out.contains("ROOT_RO"), "root.readonly not applied: {out}");
}

#[test]
fn default_devices_symlinks_and_config_devices() {
    let script = "for d in null zero full random urandom tty fuse0; do stat -c \"$d %t:%T %a %F\" /dev/$d; done; \
                  ls -l /dev/fd /dev/stdin /dev/stdout /dev/stderr /dev/ptmx | sed 's/.* \\/dev/\\/dev/'; \
                  echo hi > /dev/null && echo NULL_OK; head -c 4 /dev/zero | od -An -tx1";
    let out = run_sh("dev", script, |b| {
        b.config["linux"]["devices"] = json!([{"path": "/dev/fuse0", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640, "uid": 0, "gid": 0}]);
        b.config["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    });
    for (name, dev) in [
        ("null", "1:3"),
        ("zero", "1:5"),
        ("full", "1:7"),
        ("random", "1:8"),
        ("urandom", "1:9"),
        ("tty", "5:0"),
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name}: {out}"));
        assert!(
            line.contains(&format!(" {dev} 666 character special")),
            "{line}"
        );
    }
    let fuse = out
        .lines()
        .find(|l| l.starts_with("fuse0 "))
        .expect("configured device");
    assert!(fuse.contains(" a:e5 640 character special"), "{fuse}");
    assert!(out.contains("/dev/fd -> /proc/self/fd"));
    assert!(out.contains("/dev/stderr -> /proc/self/fd/2"));
    assert!(out.contains("/dev/ptmx -> pts/ptmx"));
    assert!(out.contains("NULL_OK"));
    assert!(out.contains("00 00 00 00"));
}

#[test]
fn capabilities_from_proc_status() {
    let out = run_sh("cap", "grep ^Cap /proc/self/status", |b| {
        let caps = json!(["CAP_CHOWN", "CAP_KILL"]);
        b.config["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"], "effective": caps, "permitted": caps,
            "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]});
    });
    // CAP_CHOWN = bit 0, CAP_KILL = bit 5, CAP_NET_RAW = bit 13.
    assert_eq!(
        field(&out, "CapBnd:"),
        format!("{:016x}", 1u64 | 1 << 5 | 1 << 13)
    );
    assert_eq!(field(&out, "CapEff:"), format!("{:016x}", 1u64 | 1 << 5));
    assert_eq!(field(&out, "CapPrm:"), format!("{:016x}", 1u64 | 1 << 5));
    assert_eq!(field(&out, "CapInh:"), format!("{:016x}", 1u64 << 5));
    assert_eq!(field(&out, "CapAmb:"), format!("{:016x}", 1u64 << 5));
}

#[test]
fn rlimits_user_groups_umask_cwd_env() {
    let script = "echo NOFILE=$(ulimit -n)/$(ulimit -Hn); echo CORE=$(ulimit -c); echo ID=$(id -u):$(id -g):$(id -G); \
                  echo UMASK=$(umask); echo PWD=$(pwd); echo HOME=$HOME; echo FOO=$FOO";
    let out = run_sh("usr", script, |b| {
        b.config["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]);
        b.config["process"]["user"] =
            json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 20], "umask": 63});
        b.config["process"]["cwd"] = json!("/tmp");
        b.config["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("FOO=bar baz"));
        b.config["process"]["capabilities"] = json!({});
    });
    assert_eq!(field(&out, "NOFILE="), "512/1000");
    assert_eq!(field(&out, "CORE="), "0");
    assert_eq!(field(&out, "ID="), "1000:1000:1000 5 20");
    assert_eq!(field(&out, "UMASK="), "0077");
    assert_eq!(field(&out, "PWD="), "/tmp");
    assert_eq!(field(&out, "HOME="), "/home/user");
    assert_eq!(field(&out, "FOO="), "bar baz");
}

#[test]
fn masked_and_readonly_paths() {
    let script = "echo K=$(wc -c < /proc/timer_list); ls /sys/firmware | wc -l | sed 's/^/F=/'; \
                  echo x > /proc/sysrq-trigger 2>/dev/null && echo SYSRQ_WRITABLE; \
                  echo 1 > /proc/sys/vm/overcommit_memory 2>/dev/null && echo SYS_WRITABLE; \
                  echo x > /proc/timer_list 2>/dev/null; echo K2=$(wc -c < /proc/timer_list); \
                  umount /proc/timer_list 2>/dev/null && echo UNMASKED; echo end";
    let out = run_sh("msk", script, |_| {});
    assert_eq!(field(&out, "K="), "0");
    assert_eq!(field(&out, "F="), "0");
    assert_eq!(field(&out, "K2="), "0", "a write reached the masked file");
    for bad in ["SYSRQ_WRITABLE", "SYS_WRITABLE", "UNMASKED"] {
        assert!(!out.contains(bad), "{bad}: {out}");
    }
    assert!(out.contains("end"));
}

#[test]
fn sysctls_are_set_in_the_containers_namespaces() {
    let out = run_sh(
        "sys",
        "echo F=$(cat /proc/sys/net/ipv4/ip_forward); echo M=$(cat /proc/sys/kernel/shmmni)",
        |b| {
            b.config["linux"]["sysctl"] =
                json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
        },
    );
    assert_eq!(field(&out, "F="), "1");
    assert_eq!(field(&out, "M="), "1234");
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/shmmni")
            .unwrap()
            .trim(),
        "1234"
    );
}

#[test]
fn oom_score_adj_and_no_pivot() {
    let out = run_sh("oom", "echo O=$(cat /proc/self/oom_score_adj)", |b| {
        b.config["process"]["oomScoreAdj"] = json!(123);
    });
    assert_eq!(field(&out, "O="), "123");
    let mut b = Bundle::new(&["sh", "-c", "echo ok; ls /"]);
    let c = Container::new("np", &mut b);
    let out = c.ok(&["run", "--no-pivot", "-b", b.path().to_str().unwrap(), &c.id]);
    assert!(out.contains("ok") && out.contains("bin"), "{out}");
}

#[test]
fn preserve_fds_and_listen_fds() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "ls /proc/self/fd | sort -n | tr '\\n' ' '; echo; echo L=$LISTEN_FDS:$LISTEN_PID; cat <&3",
    ]);
    let c = Container::new("pfd", &mut b);
    let dir = TempDir::new("pfd");
    let f = dir.path().join("three");
    std::fs::write(&f, "via-fd-3").unwrap();
    let file = std::fs::File::open(&f).unwrap();
    let mut cmd = c.cmd(&[
        "run",
        "--preserve-fds",
        "1",
        "-b",
        b.path().to_str().unwrap(),
        &c.id,
    ]);
    use std::os::fd::AsRawFd;
    let raw = file.as_raw_fd();
    berth_integration::pass_fd(&mut cmd, raw, 3);
    // LISTEN_FDS=1 adds descriptor 4 to the preserved ones.
    berth_integration::pass_fd(&mut cmd, 0, 4);
    cmd.env("LISTEN_FDS", "1");
    let out = berth_integration::capture(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only stdio, the preserved descriptors (1 + LISTEN_FDS=1) and ls's own.
    let fds: Vec<u32> = stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert!(fds.contains(&3), "{fds:?}");
    assert!(
        fds.iter().all(|&f| f <= 5),
        "a descriptor beyond the preserved ones leaked: {fds:?}"
    );
    assert!(stdout.contains("L=1:1"), "{stdout}");
    assert!(stdout.contains("via-fd-3"), "{stdout}");
}

#[test]
fn propagation_of_root_and_mounts() {
    let script =
        "awk '$5 == \"/\" || $5 == \"/shared\" || $5 == \"/private\"' /proc/self/mountinfo";
    let out = run_sh("prop", script, |b| {
        b.config["linux"]["rootfsPropagation"] = json!("shared");
        let m = b.config["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/shared", "type": "tmpfs", "source": "tmpfs", "options": ["rshared"]}));
        m.push(json!({"destination": "/private", "type": "tmpfs", "source": "tmpfs", "options": ["rprivate"]}));
    });
    let line = |mp: &str| {
        out.lines()
            .find(|l| l.split(' ').nth(4) == Some(mp))
            .unwrap_or_else(|| panic!("{mp}: {out}"))
            .to_string()
    };
    assert!(
        line("/").contains("shared:"),
        "rootfsPropagation=shared: {out}"
    );
    assert!(line("/shared").contains("shared:"), "{out}");
    let private = line("/private");
    assert!(
        !private.contains("shared:") && !private.contains("master:"),
        "{private}"
    );
    let out = run_sh("prop2", "awk '$5 == \"/\"' /proc/self/mountinfo", |b| {
        b.config["linux"]["rootfsPropagation"] = json!("private");
    });
    assert!(
        !out.contains("shared:") && !out.contains("master:"),
        "rootfsPropagation=private: {out}"
    );
}

#[test]
fn devices_in_a_user_namespace_are_bound_from_the_host() {
    let out = run_sh(
        "udev",
        "stat -c '%t:%T' /dev/null /dev/zero; echo x > /dev/null && echo NULL_OK",
        |b| {
            b.config["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
            b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
            // gid=5 is not mapped in this namespace.
            for m in b.config["mounts"].as_array_mut().unwrap() {
                if m["destination"] == "/dev/pts" {
                    m["options"] = json!([
                        "nosuid",
                        "noexec",
                        "newinstance",
                        "ptmxmode=0666",
                        "mode=0620"
                    ]);
                }
            }
        },
    );
    assert!(out.starts_with("1:3\n1:5\n"), "{out}");
    assert!(out.contains("NULL_OK"));
}

#[test]
fn the_containers_cgroup_is_its_sys_fs_cgroup() {
    let out = run_sh(
        "cgv",
        "cat /sys/fs/cgroup/pids/pids.max; grep -c . /sys/fs/cgroup/pids/cgroup.procs",
        |b| {
            b.config["linux"]["resources"]["pids"] = json!({"limit": 77});
        },
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "77", "{out}");
}

#[test]
fn no_new_privileges_flag() {
    let out = run_sh("nnp", "grep NoNewPrivs /proc/self/status", |b| {
        b.config["process"]["noNewPrivileges"] = json!(true)
    });
    assert_eq!(field(&out, "NoNewPrivs:"), "1");
    let out = run_sh("nnp0", "grep NoNewPrivs /proc/self/status", |b| {
        b.config["process"]["noNewPrivileges"] = json!(false)
    });
    assert_eq!(field(&out, "NoNewPrivs:"), "0");
}

#[test]
fn scheduler_io_priority_affinity_and_personality() {
    let script = "echo POLICY=$(cut -d' ' -f41 /proc/self/stat); echo NICE=$(cut -d' ' -f19 /proc/self/stat); \
                  echo CPUS=$(grep Cpus_allowed_list /proc/self/status | cut -f2); echo ARCH=$(uname -m); \
                  ionice -p $$ | sed 's/^/IO=/'";
    let out = run_sh("sched", script, |b| {
        b.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
        b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
        b.config["process"]["execCPUAffinity"] = json!({"final": "0"});
        b.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    });
    assert_eq!(field(&out, "POLICY="), "3", "SCHED_BATCH: {out}");
    assert_eq!(field(&out, "NICE="), "7", "{out}");
    assert_eq!(field(&out, "CPUS="), "0", "{out}");
    assert!(
        field(&out, "ARCH=").starts_with('i'),
        "LINUX32 personality: {out}"
    );
    assert!(field(&out, "IO=").starts_with("idle"), "{out}");
}

#[test]
fn tmpcopyup_fills_the_tmpfs_with_what_was_there() {
    let out = run_sh("cpup", "grep -c root /etc/passwd; ls -l /etc/link | sed 's/.*-> //'; echo x > /etc/new && echo WRITABLE; \
                               awk '$5 == \"/etc\"' /proc/self/mountinfo | grep -c tmpfs", |b| {
        std::os::unix::fs::symlink("/nonexistent/target", b.rootfs().join("etc/link")).unwrap();
        b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/etc", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "nosuid"]}));
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["1", "/nonexistent/target", "WRITABLE", "1"],
        "{out}"
    );
}

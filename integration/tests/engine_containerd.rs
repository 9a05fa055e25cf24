//! containerd 1.6 with berth as its OCI runtime: `ctr run --runc-binary`
//! (containerd's own runc shim driving berth) and `ctr run --runtime
//! io.containerd.berth.v2` (berth's shim v2 driving berth, or runc through its
//! options). The same case matrix runs with runc and crun under containerd's
//! runc shim, so a failure is clearly berth's or its shim's.
//!
//! Each test starts its own containerd (root, state and sockets in a
//! temporary directory, CRI disabled, its own namespace), imports a busybox
//! image it builds, runs the matrix and stops the daemon by pid; its shims use
//! `/run/containerd/{s,runc,berth}/NAMESPACE`, cleaned up too.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_integration::engines::{
    assert_runtime_holds, busybox_archive, doc, doc_block, in_terminal, run_timeout, shell_quote,
    stderr, stdout, wait_for, EngineDir, IMAGE,
};
use berth_integration::shim::Runtime;
use berth_integration::{bin, cgroup_dirs};

/// A containerd of this test.
struct Containerd {
    dir: EngineDir,
    sock: PathBuf,
    ns: String,
}

/// How containers are run.
#[derive(Clone)]
enum Mode {
    /// containerd's runc shim (`io.containerd.runc.v2`) with this binary.
    RuncBinary(PathBuf),
    /// `io.containerd.berth.v2`, optionally with a runtime config file
    /// (`--runtime-config-path`).
    ShimV2(Option<PathBuf>),
}

impl Containerd {
    /// A containerd with an image to run.
    fn start() -> Containerd {
        let c = Containerd::launch("disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n");
        let archive = busybox_archive(c.dir.path());
        c.ok(&["images", "import", archive.to_str().unwrap()]);
        c
    }

    /// A containerd whose config is the test's directories, then `extra`.
    fn launch(extra: &str) -> Containerd {
        let mut dir = EngineDir::new("ctrd");
        let ns = dir.name.clone();
        let sock = dir.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n{extra}\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = sock.display(),
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(dir.join("config.toml"));
        // containerd looks the shim v2 binary up in its PATH, and the shim
        // finds berth there by default.
        let bin_dir = bin("berth").parent().unwrap().to_path_buf();
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", bin_dir.display()));
        dir.spawn_daemon(cmd, "containerd.log");
        for sub in ["runc", "berth"] {
            dir.remove_at_cleanup(Path::new("/run/containerd").join(sub).join(&ns));
        }
        let c = Containerd { dir, sock, ns };
        wait_for(30, "containerd's socket", || {
            c.ctr_out(&["version"]).status.success()
        });
        c
    }

    fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.sock)
            .arg("--namespace")
            .arg(&self.ns)
            .args(args);
        cmd
    }

    fn ctr_out(&self, args: &[&str]) -> Output {
        run_timeout(self.ctr_cmd(args), 60)
    }

    /// `ctr ARGS` must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr_out(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed ({}): {}{}\ncontainerd log:\n{}",
            out.status,
            stdout(&out),
            stderr(&out),
            self.dir.log("containerd.log")
        );
        stdout(&out)
    }

    /// The shell command line of `ctr ARGS` (for `script`).
    fn ctr_line(&self, args: &[&str]) -> String {
        let mut words = vec![
            "ctr".to_string(),
            "--address".into(),
            self.sock.display().to_string(),
            "--namespace".into(),
            self.ns.clone(),
        ];
        words.extend(args.iter().map(|s| s.to_string()));
        words
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The shim socket of task `id`: `/run/containerd/s/sha256(ADDRESS/NS/ID)`.
    fn shim_socket(&self, id: &str) -> PathBuf {
        let key = format!("{}/{}/{id}", self.sock.display(), self.ns);
        let out = Command::new("sh")
            .args(["-c", "printf %s \"$1\" | sha256sum", "sh", &key])
            .output()
            .unwrap();
        let hash = stdout(&out)
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        assert_eq!(hash.len(), 64, "sha256sum: {}", stdout(&out));
        Path::new("/run/containerd/s").join(hash)
    }

    /// Removes the shim sockets a killed shim would leave for `ids`.
    fn forget_sockets(&mut self, ids: &[String]) {
        for id in ids {
            let s = self.shim_socket(id);
            self.dir.remove_at_cleanup(s);
        }
    }
}

/// The `ctr run` / `ctr task exec` options that choose the runtime.
fn runtime_args(mode: &Mode) -> Vec<String> {
    match mode {
        Mode::RuncBinary(p) => vec![
            "--runtime".into(),
            "io.containerd.runc.v2".into(),
            "--runc-binary".into(),
            p.display().to_string(),
        ],
        Mode::ShimV2(cfg) => {
            let mut v = vec!["--runtime".into(), "io.containerd.berth.v2".into()];
            if let Some(c) = cfg {
                v.push("--runtime-config-path".into());
                v.push(c.display().to_string());
            }
            v
        }
    }
}

/// `ctr run` arguments: runtime, cgroup under the test's parent, fifo dir in
/// the test's directory, then `extra`, image, id and command.
fn run_args(c: &Containerd, mode: &Mode, id: &str, extra: &[&str], cmd: &[&str]) -> Vec<String> {
    let fifo = c.dir.join("fifo");
    std::fs::create_dir_all(&fifo).unwrap();
    let mut v = vec!["run".to_string()];
    v.extend(runtime_args(mode));
    v.push("--cgroup".into());
    v.push(format!("{}/{id}", c.dir.cgroup_parent()));
    v.push("--fifo-dir".into());
    v.push(fifo.display().to_string());
    v.extend(extra.iter().map(|s| s.to_string()));
    v.push(IMAGE.into());
    v.push(id.into());
    v.extend(cmd.iter().map(|s| s.to_string()));
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The whole case matrix against one containerd with one way of running.
fn matrix(c: &mut Containerd, mode: Mode, tag: &str) {
    if let Mode::ShimV2(_) = &mode {
        // containerd finds it in the PATH it was given (the build's
        // directory): a clear failure if it was not built.
        bin("containerd-shim-berth-v2");
    }
    let id = |n: &str| format!("{tag}-{n}");
    let ids: Vec<String> = ["run", "det", "tty", "oom", "bad"]
        .iter()
        .map(|n| id(n))
        .collect();
    c.forget_sockets(&ids);
    let fifo = c.dir.join("fifo").display().to_string();

    // run: output, default seccomp profile (--seccomp), exit status.
    let a = run_args(
        c,
        &mode,
        &id("run"),
        &["--rm", "--seccomp"],
        &[
            "sh",
            "-c",
            "echo hello; grep Seccomp: /proc/self/status; exit 3",
        ],
    );
    let out = c.ctr_out(&strs(&a));
    assert_eq!(out.status.code(), Some(3), "[{tag}] run: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("hello"), "[{tag}] run output: {text}");
    assert!(
        text.contains("Seccomp:\t2"),
        "[{tag}] no seccomp filter: {text}"
    );

    // A detached container: exec, ps, metrics, pause/resume, kill, delete.
    let det = id("det");
    let a = run_args(
        c,
        &mode,
        &det,
        &["-d"],
        &["sh", "-c", "trap 'exit 7' TERM; sleep 1000 & wait"],
    );
    c.ok(&strs(&a));
    // (The short sleep: containerd's runc shim, with runc too, now and then
    // loses the stderr of an exec that exits at once.)
    let out = c.ctr_out(&[
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "e1",
        &det,
        "sh",
        "-c",
        "echo in-exec; echo to-stderr >&2; sleep 0.2; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "[{tag}] exec: {}", stderr(&out));
    assert!(stdout(&out).contains("in-exec"), "[{tag}] exec stdout");
    assert!(stderr(&out).contains("to-stderr"), "[{tag}] exec stderr");
    let line = c.ctr_line(&[
        "task",
        "exec",
        "-t",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "e2",
        &det,
        "sh",
        "-c",
        "sleep 0.2; [ -t 0 ] && echo exec-has-tty",
    ]);
    let out = in_terminal(&line, 60);
    assert!(
        stdout(&out).contains("exec-has-tty"),
        "[{tag}] exec -t: {}{}",
        stdout(&out),
        stderr(&out)
    );

    if let Mode::RuncBinary(runtime) = &mode {
        // containerd's runc shim gives the runtime the root
        // /run/containerd/runc/NAMESPACE.
        let root = Path::new("/run/containerd/runc").join(&c.ns);
        assert_runtime_holds(runtime, Some(&root), &det);
    }
    // An exec reading its stdin (ctr passes its own) to the end, which ctr
    // signals with CloseIO.
    let line = c.ctr_line(&[
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "e4",
        &det,
        "sh",
        "-c",
        "tr a-z A-Z; echo end",
    ]);
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("printf 'piped input\\n' | {line}")]);
    let out = run_timeout(cmd, 60);
    assert!(
        stdout(&out).contains("PIPED INPUT\nend"),
        "[{tag}] exec -i: {}{}",
        stdout(&out),
        stderr(&out)
    );

    let count_pids = |c: &Containerd| {
        let ps = c.ok(&["task", "ps", &det]);
        ps.lines().skip(1).filter(|l| !l.trim().is_empty()).count()
    };
    assert_eq!(count_pids(c), 2, "[{tag}] task ps: sh and sleep");
    // A detached exec, killed by its exec ID.
    c.ok(&[
        "task",
        "exec",
        "-d",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "e3",
        &det,
        "sleep",
        "1000",
    ]);
    assert_eq!(count_pids(c), 3, "[{tag}] task ps with the exec");
    c.ok(&[
        "task",
        "kill",
        "--exec-id",
        "e3",
        "--signal",
        "SIGKILL",
        &det,
    ]);
    wait_for(30, "the exec to end", || count_pids(c) == 2);

    let metrics = c.ok(&["task", "metrics", &det]);
    let value = |key: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(key)).then(|| w.next().unwrap_or("").parse().unwrap_or(0))
            })
            .unwrap_or_else(|| panic!("[{tag}] no {key} in metrics:\n{metrics}"))
    };
    assert!(value("pids.current") >= 2, "[{tag}] metrics:\n{metrics}");
    assert!(
        value("memory.usage_in_bytes") > 0,
        "[{tag}] metrics:\n{metrics}"
    );

    let status = |c: &Containerd| -> String {
        let ls = c.ok(&["task", "ls"]);
        ls.lines()
            .find(|l| l.split_whitespace().next() == Some(det.as_str()))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    };
    c.ok(&["task", "pause", &det]);
    assert_eq!(status(c), "PAUSED", "[{tag}] after pause");
    let freezer = cgroup_dirs(&format!("{}/{det}", c.dir.cgroup_parent()))
        .into_iter()
        .map(|d| d.join("freezer.state"))
        .find(|f| f.exists());
    if let Some(f) = &freezer {
        assert_eq!(
            std::fs::read_to_string(f).unwrap().trim(),
            "FROZEN",
            "[{tag}] freezer"
        );
    }
    c.ok(&["task", "resume", &det]);
    assert_eq!(status(c), "RUNNING", "[{tag}] after resume");

    c.ok(&["task", "kill", "--signal", "SIGTERM", &det]);
    wait_for(30, "the task to stop", || status(c) == "STOPPED");
    let out = c.ctr_out(&["task", "delete", &det]);
    assert!(
        stderr(&out).contains("exit code 7"),
        "[{tag}] task delete reports the exit status: {}",
        stderr(&out)
    );
    c.ok(&["containers", "delete", &det]);

    // A container with a terminal.
    let a = run_args(
        c,
        &mode,
        &id("tty"),
        &["--rm", "-t"],
        &["sh", "-c", "sleep 0.2; [ -t 0 ] && echo has-tty; echo done"],
    );
    let line = c.ctr_line(&strs(&a));
    let out = in_terminal(&line, 60);
    let text = stdout(&out);
    assert!(
        text.contains("has-tty") && text.contains("done"),
        "[{tag}] run -t: {text}{}",
        stderr(&out)
    );

    // An OOM kill reaches containerd as a /tasks/oom event. (The sleep:
    // containerd's runc shim starts watching for OOM after `start`, and
    // misses a kill that comes sooner, with runc too. The quick terminal
    // cases above sleep for a similar race in its terminal copying.)
    let events_path = c.dir.join(&format!("events-{tag}"));
    let mut events = c
        .ctr_cmd(&["events"])
        .stdout(std::fs::File::create(&events_path).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let oom = id("oom");
    let a = run_args(
        c,
        &mode,
        &oom,
        &["--rm", "--memory-limit", "33554432"],
        &[
            "sh",
            "-c",
            "sleep 0.5; dd if=/dev/zero of=/dev/null bs=256M count=1",
        ],
    );
    let out = c.ctr_out(&strs(&a));
    assert_eq!(
        out.status.code(),
        Some(137),
        "[{tag}] oom: {}",
        stderr(&out)
    );
    let found = || {
        std::fs::read_to_string(&events_path)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("/tasks/oom") && l.contains(&oom))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !found() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = events.kill();
    let _ = events.wait();
    assert!(
        found(),
        "[{tag}] no /tasks/oom event:\n{}",
        std::fs::read_to_string(&events_path).unwrap_or_default()
    );

    // A failure reaches ctr with the runtime's message.
    let a = run_args(c, &mode, &id("bad"), &["--rm"], &["/no-such-program-here"]);
    let out = c.ctr_out(&strs(&a));
    assert!(!out.status.success(), "[{tag}] bad command ran");
    assert!(
        stderr(&out).contains("no-such-program-here"),
        "[{tag}] the runtime's error does not reach ctr: {}",
        stderr(&out)
    );
    let _ = c.ctr_out(&["containers", "delete", &id("bad")]);

    // Nothing is left: no task, no container, no cgroup.
    assert_eq!(c.ok(&["task", "ls", "-q"]).trim(), "", "[{tag}] tasks left");
    assert_eq!(
        c.ok(&["containers", "ls", "-q"]).trim(),
        "",
        "[{tag}] containers left"
    );
}

#[test]
fn containerd_runc_shim_with_berth() {
    let mut c = Containerd::start();
    let berth = c.dir.runtime_path(Runtime::Berth);
    matrix(&mut c, Mode::RuncBinary(berth), "berth");
}

#[test]
fn containerd_runc_shim_with_runc() {
    let mut c = Containerd::start();
    let runc = c.dir.runtime_path(Runtime::Runc);
    matrix(&mut c, Mode::RuncBinary(runc), "runc");
}

#[test]
fn containerd_runc_shim_with_crun() {
    let mut c = Containerd::start();
    let crun = c.dir.runtime_path(Runtime::Crun);
    matrix(&mut c, Mode::RuncBinary(crun), "crun");
}

#[test]
fn containerd_berth_shim_v2_with_berth() {
    let mut c = Containerd::start();
    matrix(&mut c, Mode::ShimV2(None), "shimv2");
}

/// The shim v2 drives another runc-compatible runtime when its options say
/// so: the runtime config file from docs/engines/containerd.md, with the
/// binary and root of this test.
#[test]
fn containerd_berth_shim_v2_with_runc() {
    let mut c = Containerd::start();
    let text = doc_block(&doc("containerd.md"), "json berth-shim-v2.json");
    let root = c.dir.join("runc-root");
    let text = text
        .replace("/usr/local/bin/berth", "/usr/sbin/runc")
        .replace("/run/containerd/berth", &root.display().to_string());
    let cfg = c.dir.join("berth-shim-v2.json");
    std::fs::write(&cfg, text).unwrap();
    matrix(&mut c, Mode::ShimV2(Some(cfg)), "shimv2-runc");
}

/// containerd 1.6 loads its CRI plugin (which checks its runtime entries when
/// it starts) with the `config.toml` entries of docs/engines/containerd.md,
/// and the RuntimeClass handlers of docs/engines/kubernetes.md are those
/// entries. No pod runs here: there is no kubelet or crictl on this machine.
#[test]
fn containerd_cri_plugin_loads_the_documented_runtimes() {
    let documented = doc_block(&doc("containerd.md"), "toml config.toml");
    for handler in doc_block(&doc("kubernetes.md"), "yaml runtimeclass.yaml")
        .lines()
        .filter_map(|l| l.strip_prefix("handler: "))
    {
        assert!(
            documented.contains(&format!(".containerd.runtimes.{}]", handler.trim())),
            "RuntimeClass handler {handler} is not a runtime of containerd.md"
        );
    }
    // A default runc entry as `containerd config default` has, and CNI
    // directories of the test's own (the plugin creates its conf dir).
    let cni = std::env::temp_dir().join(format!("berth-it-cni-{}", std::process::id()));
    let extra = format!(
        "[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"{cni}/bin\"\n  \
         conf_dir = \"{cni}/conf\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  \
         runtime_type = \"io.containerd.runc.v2\"\n{documented}",
        cni = cni.display()
    );
    let mut c = Containerd::launch(&extra);
    c.dir.remove_at_cleanup(cni);
    let plugins = c.ok(&["plugins", "ls"]);
    let cri = plugins
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("cri"))
        .unwrap_or_else(|| panic!("no cri plugin:\n{plugins}"));
    assert!(
        cri.split_whitespace().last() == Some("ok"),
        "the CRI plugin did not load: {cri}\n{}",
        c.dir.log("containerd.log")
    );
}

/// The Task service calls `ctr` does not make: Update (new resources through
/// `RUNTIME update --resources`), Connect and Stats, by a ttrpc client of
/// containerd-shim-berth-v2's socket.
#[test]
fn containerd_berth_shim_v2_update_connect_stats() {
    use containerd_shim_protos::protobuf::well_known_types::any::Any;
    use containerd_shim_protos::protobuf::MessageField;
    use containerd_shim_protos::shim::shim::{ConnectRequest, StatsRequest, UpdateTaskRequest};
    use containerd_shim_protos::{Client, TaskClient};

    let mut c = Containerd::start();
    let id = "upd".to_string();
    c.forget_sockets(std::slice::from_ref(&id));
    let a = run_args(
        &c,
        &Mode::ShimV2(None),
        &id,
        &["-d", "--memory-limit", "67108864"],
        &["sleep", "1000"],
    );
    c.ok(&strs(&a));
    let sock = c.shim_socket(&id);
    let client = Client::connect(&format!("unix://{}", sock.display())).expect("connect");
    let task = TaskClient::new(client);
    let ctx = || containerd_shim_protos::ttrpc::context::with_timeout(10_000_000_000);

    let connected = task
        .connect(ctx(), &ConnectRequest::new())
        .expect("Connect");
    let ls = c.ok(&["task", "ls"]);
    let pid: u32 = ls
        .lines()
        .find(|l| l.starts_with(&id))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {ls}"));
    assert_eq!(connected.task_pid, pid);
    assert!(
        std::fs::read_to_string(format!("/proc/{}/cmdline", connected.shim_pid))
            .unwrap_or_default()
            .contains("containerd-shim-berth-v2"),
        "Connect names another process as the shim"
    );

    let read_limit = || {
        let dirs = cgroup_dirs(&format!("{}/{id}", c.dir.cgroup_parent()));
        dirs.iter()
            .map(|d| d.join("memory.limit_in_bytes"))
            .chain(dirs.iter().map(|d| d.join("memory.max")))
            .find_map(|f| std::fs::read_to_string(f).ok())
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_eq!(read_limit(), "67108864");
    let mut req = UpdateTaskRequest::new();
    req.id = id.clone();
    let mut any = Any::new();
    any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into();
    any.value = br#"{"memory": {"limit": 100663296, "swap": 100663296}}"#.to_vec();
    req.resources = MessageField::some(any);
    task.update(ctx(), &req).expect("Update");
    assert_eq!(read_limit(), "100663296", "the limit after Update");

    let mut sreq = StatsRequest::new();
    sreq.id = id.clone();
    let stats = task.stats(ctx(), &sreq).expect("Stats");
    assert_eq!(stats.stats.type_url, "io.containerd.cgroups.v1.Metrics");
    assert!(!stats.stats.value.is_empty());

    c.ok(&["task", "kill", "--signal", "SIGKILL", &id]);
    wait_for(30, "the task to stop", || {
        c.ok(&["task", "ls"])
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("STOPPED"))
    });
    let _ = c.ctr_out(&["task", "delete", &id]);
    c.ok(&["containers", "delete", &id]);
}

/// A shim v2 killed with SIGKILL: containerd notices, runs
/// `containerd-shim-berth-v2 delete`, which force-deletes the container with
/// the runtime the shim had chosen and unmounts its rootfs. Nothing of the
/// container is left.
#[test]
fn containerd_berth_shim_v2_killed_shim_is_cleaned_up() {
    let mut c = Containerd::start();
    let id = "dead".to_string();
    c.forget_sockets(std::slice::from_ref(&id));
    let a = run_args(&c, &Mode::ShimV2(None), &id, &["-d"], &["sleep", "1000"]);
    c.ok(&strs(&a));
    let ls = c.ok(&["task", "ls"]);
    let pid: i32 = ls
        .lines()
        .find(|l| l.starts_with(&id))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {ls}"));
    let shim = berth_integration::pids_with_cmdline(&format!("-namespace {} -id {id} ", c.ns))
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .unwrap_or_default()
                .contains("containerd-shim-berth-v2")
        })
        .expect("the shim's pid");
    // SAFETY: kill(2) of the shim this test started (through containerd).
    unsafe { libc::kill(shim, libc::SIGKILL) };
    wait_for(30, "the container to be gone", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    wait_for(30, "containerd to drop the task", || {
        !c.ok(&["task", "ls"]).lines().any(|l| l.starts_with(&id))
    });
    let root = Path::new("/run/containerd/berth").join(&c.ns);
    let out = run_timeout(
        {
            let mut cmd = Command::new(bin("berth"));
            cmd.arg("--root").arg(&root).args(["list", "-q"]);
            cmd
        },
        30,
    );
    assert!(
        !stdout(&out).lines().any(|l| l == id),
        "berth still lists the container: {}",
        stdout(&out)
    );
    let rootfs = c.dir.join("state");
    assert_eq!(
        berth_integration::engines::mounts_below(&rootfs)
            .iter()
            .filter(|m| m.ends_with("rootfs"))
            .count(),
        0,
        "the rootfs is still mounted"
    );
    c.ok(&["containers", "delete", &id]);
}

//! Helpers of the engine tests (`tests/engine_*.rs`): containerd, Podman and
//! Docker from Debian, each started by the test with its own root, state and
//! socket directories under one temporary directory, with berth (or runc, or
//! crun) as its OCI runtime.
//!
//! [`EngineDir`] owns that directory and cleans up after the test, also when
//! it panicked: it stops the daemon it started (by pid), kills what is left
//! of the test's containers (the processes of its own cgroups, and shims or
//! monitors whose command line names its directory), unmounts everything
//! below the directory and removes its cgroups and the extra paths the test
//! registered (the `/run/containerd/...` directories its shims used).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::shim::Runtime;
use crate::{bin, busybox_rootfs, cgroup_dirs, require_root, unique_id, TempDir};

/// Name of the test image in every engine (a docker-archive tag).
pub const IMAGE: &str = "localhost/berth-busybox:test";

/// Default seccomp profile of Podman (and of Debian's containers-common).
pub const PODMAN_SECCOMP: &str = "/usr/share/containers/seccomp.json";

/// Debian's runc.
pub const RUNC: &str = "/usr/sbin/runc";

/// What the names of the engine tests' directories start with, after
/// [`TempDir`]'s own prefix.
const ENGINE_DIR_TAG: &str = "eng-";

/// The path prefix of every engine test's directory (and so of every mount
/// its daemons make on the host): `/tmp/berth-it-eng-`. Tests that count
/// the host's mounts leave these out.
pub fn engine_dir_prefix() -> String {
    std::env::temp_dir()
        .join(format!("berth-it-{ENGINE_DIR_TAG}"))
        .display()
        .to_string()
}

/// The working directory of one engine test and what it must clean up.
pub struct EngineDir {
    dir: TempDir,
    /// A name unique to this test (`ENGINE-PID-N`), used for namespaces,
    /// cgroup parents and container names.
    pub name: String,
    daemons: Vec<Child>,
    extra: Vec<PathBuf>,
}

impl EngineDir {
    /// A new directory for a test of `engine`, named after
    /// [`engine_dir_prefix`].
    pub fn new(engine: &str) -> EngineDir {
        require_root();
        let name = unique_id(engine);
        // Short: Podman refuses a runroot path over 50 characters.
        let dir = TempDir::new(&format!("{ENGINE_DIR_TAG}{engine}"));
        assert!(dir
            .path()
            .display()
            .to_string()
            .starts_with(&engine_dir_prefix()));
        EngineDir {
            dir,
            name,
            daemons: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `DIR/NAME`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The absolute cgroup parent of this test's containers
    /// (`/berth-test/NAME`).
    pub fn cgroup_parent(&self) -> String {
        format!("{}/{}", crate::TEST_CGROUP_PARENT, self.name)
    }

    /// A path outside the directory to remove (recursively) at cleanup.
    pub fn remove_at_cleanup(&mut self, p: PathBuf) {
        self.extra.push(p);
    }

    /// The runtime binary an engine is given: berth from the workspace,
    /// Debian's runc, or a wrapper that runs crun in a mount namespace where
    /// the hybrid host's cgroup2 mount is hidden (HOST-NOTES.md).
    pub fn runtime_path(&self, rt: Runtime) -> PathBuf {
        match rt {
            Runtime::Berth => bin("berth"),
            Runtime::Runc => PathBuf::from(RUNC),
            Runtime::Crun => {
                let w = self.join("crun-wrapper");
                if !w.exists() {
                    write_exe(
                        &w,
                        "#!/bin/sh\nexec unshare -m --propagation private sh -c \
                         'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun \"$@\"' sh \"$@\"\n",
                    );
                }
                w
            }
        }
    }

    /// Starts a daemon; it is stopped (SIGTERM, then SIGKILL after 20 s) at
    /// cleanup, in reverse order of starting. Its output goes to
    /// `DIR/LOGNAME`.
    pub fn spawn_daemon(&mut self, mut cmd: Command, logname: &str) -> u32 {
        let log = std::fs::File::create(self.join(logname)).expect("daemon log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let pid = child.id();
        self.daemons.push(child);
        pid
    }

    /// The text of a daemon log (for failure messages).
    pub fn log(&self, logname: &str) -> String {
        let text = std::fs::read_to_string(self.join(logname)).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text[start..].to_string()
    }

    /// Stops the daemons (SIGTERM, up to 20 s, then SIGKILL) and reaps them.
    pub fn stop_daemons(&mut self) {
        while let Some(mut child) = self.daemons.pop() {
            // SAFETY: kill(2) of our own child, not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

impl Drop for EngineDir {
    fn drop(&mut self) {
        self.stop_daemons();
        let dir = format!("{}/", self.path().display());
        // Shims and monitors the daemons started (their command lines name
        // this directory: socket, bundle or root paths), then the processes
        // still in this test's cgroups. Both are this test's own.
        for _ in 0..3 {
            let mut pids = crate::pids_with_cmdline(&dir);
            pids.extend(cgroup_procs(&self.cgroup_parent()));
            pids.retain(|&p| p != std::process::id() as i32);
            if pids.is_empty() {
                break;
            }
            // A killed containerd-shim-berth-v2 leaves its state directory.
            for &p in &pids {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmd).contains("containerd-shim-berth-v2") {
                    self.extra
                        .push(Path::new("/run/containerd/berth-shim").join(p.to_string()));
                }
            }
            for p in pids {
                // SAFETY: kill(2) of a process this test started.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        unmount_below(self.path());
        for p in &self.extra {
            unmount_below(p);
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
        remove_cgroup_tree(&self.cgroup_parent());
        for d in cgroup_dirs(crate::TEST_CGROUP_PARENT) {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

/// Writes an executable script.
pub fn write_exe(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Pids in the cgroup `path` and below it, in every hierarchy.
pub fn cgroup_procs(path: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut stack = cgroup_dirs(path);
    while let Some(d) = stack.pop() {
        if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    pids.sort();
    pids.dedup();
    pids
}

/// Removes the cgroup `path` and every cgroup below it (deepest first), in
/// every hierarchy. Only empty cgroups can go: run after their processes.
pub fn remove_cgroup_tree(path: &str) {
    fn rm(d: &Path) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rm(&e.path());
            }
        }
        let _ = std::fs::remove_dir(d);
    }
    for d in cgroup_dirs(path) {
        rm(&d);
    }
}

/// Mount points at or below `dir` in this mount namespace.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .map(PathBuf::from)
        .collect()
}

/// Unmounts (lazily) everything at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    for _ in 0..3 {
        let mut mounts = mounts_below(dir);
        if mounts.is_empty() {
            return;
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        for m in mounts {
            let _ = nix_umount(&m);
        }
    }
}

fn nix_umount(p: &Path) -> std::io::Result<()> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: umount2 with a valid C string.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `cmd` with stdin from /dev/null and output captured through files
/// (a detached container may inherit them); kills it after `secs` seconds
/// and panics, so that a hanging engine fails the test instead of CI.
pub fn run_timeout(mut cmd: Command, secs: u64) -> Output {
    let dir = TempDir::new("out");
    let out = std::fs::File::create(dir.path().join("stdout")).unwrap();
    let err = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
            panic!("{cmd:?} did not finish in {secs} s; stderr: {text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(dir.path().join("stdout")).unwrap(),
        stderr: std::fs::read(dir.path().join("stderr")).unwrap(),
    }
}

/// Asserts that `RUNTIME [--root ROOT] state ID` says the container runs:
/// the runtime under test created it (a runtime cannot read another's
/// state).
pub fn assert_runtime_holds(runtime: &Path, root: Option<&Path>, id: &str) {
    let mut cmd = Command::new(runtime);
    if let Some(r) = root {
        cmd.arg("--root").arg(r);
    }
    cmd.args(["state", id]);
    let out = run_timeout(cmd, 30);
    assert!(
        out.status.success() && stdout(&out).contains("\"running\""),
        "{} --root {root:?} state {id}: {}{}",
        runtime.display(),
        stdout(&out),
        stderr(&out)
    );
}

/// `script -qec 'CMD' /dev/null`: runs a shell command with a terminal on
/// its stdio (what `-t`/`-it` options need), output captured.
pub fn in_terminal(shell_cmd: &str, secs: u64) -> Output {
    let mut cmd = Command::new("script");
    cmd.args(["-qec", shell_cmd, "/dev/null"]);
    run_timeout(cmd, secs)
}

/// Quotes a word for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Builds the busybox test image (one layer, `CMD ["sh"]`) with umoci and
/// exports it with skopeo as a docker-archive tagged [`IMAGE`], which
/// containerd, Podman and Docker all import. Returns the archive's path.
pub fn busybox_archive(dir: &Path) -> PathBuf {
    let layout = dir.join("image-oci");
    let work = dir.join("image-bundle");
    let image = format!("{}:test", layout.display());
    let umoci = |args: &[&str]| {
        let out = Command::new("umoci").args(args).output().expect("umoci");
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    umoci(&["unpack", "--image", &image, work.to_str().unwrap()]);
    busybox_rootfs(&work.join("rootfs"));
    umoci(&["repack", "--image", &image, work.to_str().unwrap()]);
    umoci(&[
        "config",
        "--image",
        &image,
        "--config.cmd",
        "sh",
        "--config.env",
        "PATH=/bin",
    ]);
    let _ = std::fs::remove_dir_all(&work);
    let archive = dir.join("busybox.tar");
    let out = Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{image}"))
        .arg(format!("docker-archive:{}:{IMAGE}", archive.display()))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&layout);
    archive
}

/// Waits until `cond` holds, polling every 50 ms; panics with `what` after
/// `secs` seconds.
pub fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A doc file's text (`docs/engines/NAME`).
pub fn doc(name: &str) -> String {
    let p = crate::workspace_root().join("docs/engines").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The body of the fenced code block in `markdown` whose opening line is
/// exactly "```LANG title" (e.g. "```toml config.toml"): the configuration
/// the docs show, which the tests then use.
pub fn doc_block(markdown: &str, lang_and_title: &str) -> String {
    let fence = format!("```{lang_and_title}");
    let mut lines = markdown.lines();
    lines
        .by_ref()
        .find(|l| l.trim_end() == fence)
        .unwrap_or_else(|| panic!("no block {fence:?} in the doc"));
    let mut body = String::new();
    for l in lines {
        if l.trim_end() == "```" {
            return body;
        }
        body.push_str(l);
        body.push('\n');
    }
    panic!("unterminated block {fence:?}");
}

/// Text of an output's stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Text of an output's stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A Docker-like command line (Podman, Docker) of one test.
pub trait CliEngine {
    /// A short name for failure messages (engine and runtime).
    fn tag(&self) -> String;
    /// The command with global options, then `args`.
    fn command(&self, args: &[&str]) -> Command;
    /// `run` options every container of the test gets (network, cgroup
    /// parent, runtime).
    fn run_options(&self) -> Vec<String>;
    /// The daemon's or engine's log, for failure messages.
    fn log(&self) -> String;
    /// Asserts that the running container `id` (full ID) is held by the
    /// runtime under test, not by a default one.
    fn check_runtime(&self, id: &str);
}

fn cli_out(e: &dyn CliEngine, args: &[&str]) -> Output {
    run_timeout(e.command(args), 90)
}

fn cli_ok(e: &dyn CliEngine, args: &[&str]) -> String {
    let out = cli_out(e, args);
    assert!(
        out.status.success(),
        "[{}] {args:?} failed ({}): {}{}\nlog:\n{}",
        e.tag(),
        out.status,
        stdout(&out),
        stderr(&out),
        e.log()
    );
    stdout(&out)
}

/// `run OPTIONS EXTRA IMAGE CMD...` arguments.
fn cli_run_args(e: &dyn CliEngine, extra: &[&str], cmd: &[&str]) -> Vec<String> {
    let mut v = vec!["run".to_string()];
    v.extend(e.run_options());
    v.extend(extra.iter().map(|s| s.to_string()));
    v.push(IMAGE.to_string());
    v.extend(cmd.iter().map(|s| s.to_string()));
    v
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The shell command line of an engine command (for `script`).
fn cli_line(e: &dyn CliEngine, args: &[&str]) -> String {
    let cmd = e.command(args);
    let mut words = vec!["env".to_string()];
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            words.push(format!("{}={}", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    words.push(cmd.get_program().to_string_lossy().into_owned());
    words.extend(cmd.get_args().map(|w| w.to_string_lossy().into_owned()));
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The memory and pids cgroup directories of a process (v1 `memory` and
/// `pids` hierarchies, or the unified one for both).
fn memory_and_pids_cgroups(pid: &str) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = |ctrl: &str| -> Option<String> {
        text.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, p) = (f.next()?, f.next()?, f.next()?);
            c.split(',').any(|x| x == ctrl).then(|| p.to_string())
        })
    };
    let base = Path::new("/sys/fs/cgroup");
    match (path("memory"), path("pids")) {
        (Some(m), Some(p)) => (
            base.join("memory").join(m.trim_start_matches('/')),
            base.join("pids").join(p.trim_start_matches('/')),
        ),
        _ => {
            let u = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
            let d = base.join(u.trim_start_matches('/'));
            (d.clone(), d)
        }
    }
}

/// The case matrix of the Docker-like engines: run (output, exit status,
/// default seccomp profile), a detached container (exec, exec -it, logs,
/// top, pause/unpause, stop, rm), run -it, --memory, --pids-limit, update,
/// --cap-drop, --read-only, and a failing command whose error reaches the
/// user.
pub fn cli_matrix(e: &dyn CliEngine) {
    let tag = e.tag();

    // run: output, exit status, default seccomp profile, default caps.
    let a = cli_run_args(
        e,
        &["--rm"],
        &[
            "sh",
            "-c",
            "echo hello; grep Seccomp: /proc/self/status; \
             touch /tmp/f && chown 1000 /tmp/f && echo chown-ok; exit 3",
        ],
    );
    let out = cli_out(e, &as_strs(&a));
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "[{tag}] run: {text}{}\n{}",
        stderr(&out),
        e.log()
    );
    assert!(text.contains("hello"), "[{tag}] run output: {text}");
    assert!(text.contains("Seccomp:\t2"), "[{tag}] no seccomp: {text}");
    assert!(text.contains("chown-ok"), "[{tag}] default caps: {text}");

    // A detached container.
    let name = format!("det-{}", std::process::id());
    let a = cli_run_args(
        e,
        &["-d", "--name", &name],
        &[
            "sh",
            "-c",
            "echo log-line; trap 'exit 7' TERM; sleep 1000 & wait",
        ],
    );
    cli_ok(e, &as_strs(&a));
    let out = cli_out(
        e,
        &[
            "exec",
            &name,
            "sh",
            "-c",
            "echo in-exec; echo err-line >&2; sleep 0.2; exit 5",
        ],
    );
    assert_eq!(out.status.code(), Some(5), "[{tag}] exec: {}", stderr(&out));
    assert!(stdout(&out).contains("in-exec"), "[{tag}] exec stdout");
    assert!(stderr(&out).contains("err-line"), "[{tag}] exec stderr");
    let line = cli_line(
        e,
        &[
            "exec",
            "-it",
            &name,
            "sh",
            "-c",
            "sleep 0.5; [ -t 0 ] && echo exec-tty",
        ],
    );
    let out = in_terminal(&line, 90);
    assert!(
        stdout(&out).contains("exec-tty"),
        "[{tag}] exec -it: {}{}",
        stdout(&out),
        stderr(&out)
    );
    wait_for(30, "the log line", || {
        stdout(&cli_out(e, &["logs", &name])).contains("log-line")
    });
    let full_id = cli_ok(e, &["inspect", "--format", "{{.Id}}", &name]);
    e.check_runtime(full_id.trim());
    let top = cli_ok(e, &["top", &name]);
    assert!(top.contains("sleep 1000"), "[{tag}] top: {top}");
    let state = |e: &dyn CliEngine| {
        cli_ok(e, &["inspect", "--format", "{{.State.Status}}", &name])
            .trim()
            .to_string()
    };
    cli_ok(e, &["pause", &name]);
    assert_eq!(state(e), "paused", "[{tag}] after pause");
    cli_ok(e, &["unpause", &name]);
    assert_eq!(state(e), "running", "[{tag}] after unpause");
    cli_ok(e, &["stop", "-t", "20", &name]);
    assert_eq!(state(e), "exited", "[{tag}] after stop");
    let code = cli_ok(e, &["inspect", "--format", "{{.State.ExitCode}}", &name]);
    assert_eq!(code.trim(), "7", "[{tag}] exit code after SIGTERM");
    cli_ok(e, &["rm", &name]);

    // A terminal.
    let a = cli_run_args(
        e,
        &["--rm", "-it"],
        &[
            "sh",
            "-c",
            // Podman 4.3 loses the output of a terminal container that
            // writes and exits before its attach is ready (with runc too):
            // wait a little first.
            "sleep 0.5; [ -t 0 ] && [ -t 1 ] && echo has-tty; echo done",
        ],
    );
    let out = in_terminal(&cli_line(e, &as_strs(&a)), 90);
    assert!(
        stdout(&out).contains("has-tty") && stdout(&out).contains("done"),
        "[{tag}] run -it: {}{}",
        stdout(&out),
        stderr(&out)
    );

    // --memory and --pids-limit reach the container's cgroups; the pids
    // limit holds.
    let lim = format!("lim-{}", std::process::id());
    let a = cli_run_args(
        e,
        &[
            "-d",
            "--name",
            &lim,
            "--memory",
            "64m",
            "--pids-limit",
            "20",
        ],
        &["sleep", "1000"],
    );
    cli_ok(e, &as_strs(&a));
    let pid = cli_ok(e, &["inspect", "--format", "{{.State.Pid}}", &lim]);
    let (mem, pids) = memory_and_pids_cgroups(pid.trim());
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let limit = if mem.join("memory.max").exists() {
        read(mem.join("memory.max"))
    } else {
        read(mem.join("memory.limit_in_bytes"))
    };
    assert_eq!(
        limit,
        "67108864",
        "[{tag}] memory limit in {}",
        mem.display()
    );
    assert_eq!(read(pids.join("pids.max")), "20", "[{tag}] pids limit");
    let out = cli_out(
        e,
        &[
            "exec",
            &lim,
            "sh",
            "-c",
            "for i in $(seq 30); do sleep 30 & done; echo forks-done",
        ],
    );
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("can't fork") || text.contains("Resource temporarily unavailable"),
        "[{tag}] the pids limit does not hold: {text}"
    );
    // update: new limits reach the running container's cgroup (the runtime's
    // `update`; Docker's runc shim passes them on stdin, `--resources -`).
    cli_ok(
        e,
        &["update", "--memory", "128m", "--memory-swap", "128m", &lim],
    );
    let limit = if mem.join("memory.max").exists() {
        read(mem.join("memory.max"))
    } else {
        read(mem.join("memory.limit_in_bytes"))
    };
    assert_eq!(limit, "134217728", "[{tag}] memory limit after update");
    cli_ok(e, &["rm", "-f", &lim]);

    // --cap-drop
    let a = cli_run_args(
        e,
        &["--rm", "--cap-drop", "CHOWN"],
        &[
            "sh",
            "-c",
            "touch /tmp/f && chown 1000 /tmp/f && echo chown-ok",
        ],
    );
    let out = cli_out(e, &as_strs(&a));
    assert!(
        !out.status.success() && !stdout(&out).contains("chown-ok"),
        "[{tag}] --cap-drop CHOWN: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        format!("{}{}", stdout(&out), stderr(&out)).contains("Operation not permitted"),
        "[{tag}] --cap-drop CHOWN: {}{}",
        stdout(&out),
        stderr(&out)
    );

    // --read-only
    let a = cli_run_args(e, &["--rm", "--read-only"], &["sh", "-c", "touch /etc/x"]);
    let out = cli_out(e, &as_strs(&a));
    assert!(!out.status.success(), "[{tag}] --read-only: wrote /etc/x");
    assert!(
        stderr(&out).contains("Read-only file system") || stdout(&out).contains("Read-only"),
        "[{tag}] --read-only: {}{}",
        stdout(&out),
        stderr(&out)
    );

    // A failure reaches the user with the runtime's message.
    let a = cli_run_args(e, &["--rm"], &["/no-such-program-here"]);
    let out = cli_out(e, &as_strs(&a));
    assert!(!out.status.success(), "[{tag}] bad command ran");
    assert!(
        stderr(&out).contains("no-such-program-here"),
        "[{tag}] the runtime's error does not reach the user: {}",
        stderr(&out)
    );

    let left = cli_ok(e, &["ps", "-a", "-q"]);
    assert_eq!(left.trim(), "", "[{tag}] containers left");
}

//! Shared helpers of the root-only end-to-end tests in `tests/`.
//!
//! Every test gets its own container ID, its own `--root` state directory and
//! its own cgroup under [`TEST_CGROUP_PARENT`]; [`Container`] deletes the
//! container, its state and its cgroup when dropped, also when the test
//! panicked. The binaries are taken from the workspace's `target/debug`
//! (build them first: `cargo build --workspace --bins`), or from
//! `$BERTH_TARGET_DIR`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};

pub mod crash;
pub mod engines;
pub mod pier_env;
pub mod registry;
pub mod shim;

/// Parent of every cgroup the tests create (absolute, in every hierarchy).
pub const TEST_CGROUP_PARENT: &str = "/berth-test";

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// Path of a binary built by the workspace (`berth`, `berth-shim`, `pier`).
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("BERTH_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug"));
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// Panics unless the tests run as root (they need namespaces, mounts and
/// cgroups); CI runs them as root.
pub fn require_root() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the integration tests must run as root"
    );
}

/// A unique ID for a test container: `PREFIX-PID-N`.
pub fn unique_id(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A temporary directory removed on drop (unmounting nothing: tests never
/// leave mounts in it).
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `/tmp/berth-it-NAME-PID-N`.
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("berth-it-{}", unique_id(name)));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fills `rootfs` with Debian's busybox-static and a symlink per applet.
pub fn busybox_rootfs(rootfs: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: apt-get install busybox-static"
    );
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "root"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
}

/// A bundle in a temporary directory: busybox rootfs and a config that starts
/// from `berth spec`'s default.
pub struct Bundle {
    dir: TempDir,
    /// The config, written by [`Bundle::write`].
    pub config: Value,
}

impl Bundle {
    /// A bundle running `args` with the default config and a test cgroup.
    pub fn new(args: &[&str]) -> Bundle {
        let dir = TempDir::new("bundle");
        busybox_rootfs(&dir.path().join("rootfs"));
        let out = Command::new(bin("berth"))
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "berth spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        let mut b = Bundle { dir, config };
        b.config["process"]["args"] = json!(args);
        b
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The rootfs directory.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Writes `config.json`.
    pub fn write(&self) {
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }
}

/// A container under test: its ID, its own `--root`, cleaned up on drop.
pub struct Container {
    /// Container ID.
    pub id: String,
    /// `--root` of this test.
    pub root: TempDir,
}

impl Container {
    /// A new container ID and state root; sets the bundle's cgroupsPath to
    /// `TEST_CGROUP_PARENT/ID` and writes the config.
    pub fn new(prefix: &str, bundle: &mut Bundle) -> Container {
        require_root();
        let id = unique_id(prefix);
        bundle.config["linux"]["cgroupsPath"] = json!(format!("{TEST_CGROUP_PARENT}/{id}"));
        bundle.write();
        Container {
            id,
            root: TempDir::new("root"),
        }
    }

    /// `berth --root ROOT ARGS...` with stdout and stderr captured.
    ///
    /// They are captured through files, not pipes: a detached container
    /// inherits berth's stdio and would keep a pipe open for as long as it
    /// runs.
    pub fn berth(&self, args: &[&str]) -> Output {
        capture(self.cmd(args))
    }

    /// The command for `berth --root ROOT ARGS...`, to adjust before running.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("berth"));
        c.arg("--root").arg(self.root.path()).args(args);
        c
    }

    /// Runs berth and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `berth run --bundle B ID` in the foreground: (exit code, stdout, stderr).
    pub fn run(&self, bundle: &Bundle) -> (i32, String, String) {
        let out = self.berth(&["run", "--bundle", bundle.path().to_str().unwrap(), &self.id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `berth state ID` parsed.
    pub fn state(&self) -> Value {
        serde_json::from_str(&self.ok(&["state", &self.id])).expect("state JSON")
    }

    /// The status field of `berth state`.
    pub fn status(&self) -> String {
        self.state()["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The cgroup directories of this container in every v1 hierarchy and the
    /// unified one (those that exist).
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup_dirs(&format!("{TEST_CGROUP_PARENT}/{}", self.id))
    }
}

/// Existing directories of the cgroup `path` across all mounted hierarchies.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    let rel = path.trim_start_matches('/');
    let direct = Path::new("/sys/fs/cgroup").join(rel);
    if direct.is_dir() {
        dirs.push(direct);
    }
    for e in entries.flatten() {
        let d = e.path().join(rel);
        if d.is_dir() && !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.berth(&["delete", "--force", &self.id]);
        // The container's cgroup is gone with it; remove what is left (the
        // test parent, if no other test uses it any more).
        for d in cgroup_dirs(&format!("{TEST_CGROUP_PARENT}/{}", self.id)) {
            let _ = std::fs::remove_dir(&d);
        }
        for d in cgroup_dirs(TEST_CGROUP_PARENT) {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

/// Runs `cmd` with stdin from /dev/null and stdout/stderr captured through
/// temporary files (see [`Container::berth`]).
pub fn capture(mut cmd: Command) -> Output {
    let dir = TempDir::new("out");
    let out = std::fs::File::create(dir.path().join("stdout")).unwrap();
    let err = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .expect("spawn");
    Output {
        status,
        stdout: std::fs::read(dir.path().join("stdout")).unwrap(),
        stderr: std::fs::read(dir.path().join("stderr")).unwrap(),
    }
}

/// Makes `cmd`'s child inherit `fd` as descriptor `target` (not
/// close-on-exec).
pub fn pass_fd(cmd: &mut Command, fd: std::os::fd::RawFd, target: std::os::fd::RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let r = if fd == target {
                libc::fcntl(target, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, target)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Count of mount entries whose line contains `needle` in this process's
/// mount namespace.
pub fn mounts_containing(needle: &str) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Pids of processes whose command line contains `needle`.
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd)
            .replace('\0', " ")
            .contains(needle)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Compiles a small C program statically with gcc into `out` (for test
/// helpers that must run inside a busybox rootfs).
pub fn compile_static_c(src: &str, out: &Path) {
    let dir = TempDir::new("cc");
    let c = dir.path().join("prog.c");
    std::fs::write(&c, src).unwrap();
    let st = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(out)
        .arg(&c)
        .status()
        .expect("gcc");
    assert!(st.success(), "gcc failed");
}

/// Output of a command as a string, asserting success.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().expect("sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

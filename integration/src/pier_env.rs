//! Helpers of the `pier_build_*` and `pier_run_*` tests: a pier with its own
//! store, run root and cgroup parent (under `/berth-test`), a busybox base
//! image, and checks that nothing was left behind (mounts, network
//! namespaces, links, shims, proxies, cgroups). On drop every container of
//! the test is force-removed and its cgroups deleted.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::{bin, capture, cgroup_dirs, require_root, unique_id, TempDir, TEST_CGROUP_PARENT};

/// A pier for one test.
pub struct PierEnv {
    /// Temporary directory (store, run root, contexts).
    pub dir: TempDir,
    /// `--cgroup-parent`.
    pub cgroup_parent: String,
}

impl Default for PierEnv {
    fn default() -> Self {
        PierEnv::new()
    }
}

impl PierEnv {
    /// A fresh store and run root.
    pub fn new() -> PierEnv {
        require_root();
        let dir = TempDir::new("pierenv");
        let cgroup_parent = format!("{TEST_CGROUP_PARENT}/{}", unique_id("pier"));
        PierEnv { dir, cgroup_parent }
    }

    /// The store.
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The run root.
    pub fn runroot(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// `pier --root S --runroot R --cgroup-parent C ARGS...`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("pier"));
        c.arg("--root")
            .arg(self.store())
            .arg("--runroot")
            .arg(self.runroot())
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .args(args);
        c
    }

    /// Runs pier (stdin from /dev/null, output through files).
    pub fn run(&self, args: &[&str]) -> Output {
        capture(self.cmd(args))
    }

    /// Runs pier, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "pier {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs pier, asserts failure, returns (stdout, stderr).
    pub fn fails(&self, args: &[&str]) -> (String, String) {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "pier {args:?} succeeded: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// A directory for a build context, with the given files.
    pub fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let d = self.dir.path().join(name);
        for (p, content) in files {
            let f = d.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, content).unwrap();
        }
        d
    }

    /// Imports a busybox root filesystem as image `name`.
    pub fn busybox_image(&self, name: &str) {
        let rootfs = self.dir.path().join("bb-rootfs");
        if !rootfs.exists() {
            crate::busybox_rootfs(&rootfs);
        }
        let tar = self.dir.path().join("bb.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        self.ok(&["import", tar.to_str().unwrap(), name]);
    }

    /// IDs of every container of this store.
    pub fn container_ids(&self) -> Vec<String> {
        std::fs::read_dir(self.store().join("containers"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What this test left behind: mounts under its directory, network
    /// namespaces and links of its containers, bridges of its store,
    /// processes mentioning its run root, cgroups under its parent, and
    /// runtime state. Empty when clean.
    pub fn leftovers(&self) -> Vec<String> {
        let mut v = Vec::new();
        let here = self.dir.path().to_string_lossy().into_owned();
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for l in mi.lines().filter(|l| l.contains(&here)) {
            v.push(format!("mount: {l}"));
        }
        let mut ids: Vec<String> = self.container_ids();
        ids.extend(self.seen_ids());
        for id in &ids {
            let ns = Path::new("/run/netns").join(format!("pier-{}", &id[..16]));
            if ns.exists() {
                v.push(format!("netns: {}", ns.display()));
            }
            let veth = format!("pv{}", &id[..12]);
            if Path::new("/sys/class/net").join(&veth).exists() {
                v.push(format!("veth: {veth}"));
            }
        }
        for net in self.bridge_names() {
            if Path::new("/sys/class/net").join(&net).exists() {
                v.push(format!("bridge: {net}"));
            }
        }
        let rr = self.runroot().to_string_lossy().into_owned();
        for pid in crate::pids_with_cmdline(&rr) {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            if pid != std::process::id() as i32 && !zombie {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                v.push(format!(
                    "process {pid}: {}",
                    String::from_utf8_lossy(&cmd).replace('\0', " ")
                ));
            }
        }
        for d in cgroup_dirs(&self.cgroup_parent) {
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten().filter(|e| e.path().is_dir()) {
                    v.push(format!("cgroup: {}", e.path().display()));
                }
            }
        }
        let rt = self.runroot().join("runtime");
        if let Ok(rd) = std::fs::read_dir(&rt) {
            for e in rd
                .flatten()
                .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
            {
                v.push(format!("runtime state: {}", e.path().display()));
            }
        }
        v
    }

    /// Container IDs ever seen in this test's logs (from `pier run -d`).
    fn seen_ids(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("seen-ids"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Remembers a container ID for [`PierEnv::leftovers`].
    pub fn remember(&self, id: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.path().join("seen-ids"))
            .unwrap();
        writeln!(f, "{}", id.trim()).unwrap();
    }

    /// Bridge device names of this store's networks.
    fn bridge_names(&self) -> Vec<String> {
        let out = self.run(&["network", "ls"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .filter(|id| id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()))
            .map(|id| format!("pbr-{}", &id[..10]))
            .collect()
    }

    /// Asserts [`PierEnv::leftovers`] is empty (retrying for up to 5 s:
    /// shims leave a moment after their container is deleted).
    pub fn assert_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let l = self.leftovers();
            if l.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "left behind:\n{}", l.join("\n"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `pier run -d ARGS` → the container ID (remembered).
    pub fn run_detached(&self, args: &[&str]) -> String {
        let mut a = vec!["run", "-d"];
        a.extend_from_slice(args);
        let id = self.ok(&a).trim().to_string();
        self.remember(&id);
        id
    }
}

impl Drop for PierEnv {
    fn drop(&mut self) {
        for id in self.container_ids() {
            let _ = self.run(&["rm", "--force", &id]);
        }
        // The port proxies and shims of this test, if any survived.
        let rr = self.runroot().to_string_lossy().into_owned();
        for pid in crate::pids_with_cmdline(&rr) {
            if pid != std::process::id() as i32 {
                // SAFETY: plain kill of a process this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let here = self.dir.path().to_string_lossy().into_owned();
        let mut mounts: Vec<&str> = mi
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&here))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        for d in cgroup_dirs(&self.cgroup_parent) {
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten().filter(|e| e.path().is_dir()) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(&d);
        }
        for d in cgroup_dirs(TEST_CGROUP_PARENT) {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

/// Reads `http://127.0.0.1:PORT/PATH` with a raw HTTP/1.0 request (no
/// client dependency), retrying until `timeout`; returns the body.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Option<String> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            if s.write_all(req.as_bytes()).is_ok() {
                let mut resp = String::new();
                if s.read_to_string(&mut resp).is_ok() {
                    if let Some((head, body)) = resp.split_once("\r\n\r\n") {
                        if head.starts_with("HTTP/1.") && head.contains(" 200") {
                            return Some(body.to_string());
                        }
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

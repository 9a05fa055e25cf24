//! The container's cgroup on cgroup v1 (and hybrid) and pure v2 hosts.
//!
//! berth only ever creates, changes, freezes and removes the cgroup it
//! computed for the container ([`cgroup_path`]) and what is below it; it
//! never touches the caller's or anyone else's (except enabling a missing
//! controller in a v2 parent's `cgroup.subtree_control`, as runc does).
//!
//! The layout is read once per command ([`Layout::detect`]); creating the
//! directories and moving the process in are a few direct syscalls. Resource
//! values go through libcgroups' v2 controllers where their conversions are
//! runc's (see `v2.rs`); v1 files take the spec's values as they are
//! (`v1.rs`).

mod bpf;
mod devices;
mod fsutil;
mod layout;
mod path;
pub mod stats;
mod v1;
mod v2;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxResources, Spec};

pub use layout::{join, Hierarchy, Layout};
pub use path::{cgroup_path, DEFAULT_PARENT};

use fsutil::{read, write_str};

/// How long freezing, thawing and emptying a cgroup may take.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A container's cgroup on this host.
pub struct Cgroup {
    layout: Layout,
    path: PathBuf,
}

impl Cgroup {
    /// The cgroup `path` (absolute, below each hierarchy's root), with the
    /// host's layout read now.
    pub fn open(path: &Path) -> Result<Cgroup> {
        Ok(Cgroup {
            layout: Layout::detect()?,
            path: path.to_path_buf(),
        })
    }

    /// The cgroup path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True on a pure cgroup v2 host.
    pub fn is_v2(&self) -> bool {
        self.layout.is_unified()
    }

    fn v2_root(&self) -> Option<&Path> {
        if self.layout.is_unified() {
            self.layout.unified.as_deref()
        } else {
            None
        }
    }

    fn v1_dirs(&self) -> Vec<v1::Dir> {
        self.layout
            .managed_v1()
            .map(|h| v1::Dir {
                controllers: h.controllers.clone(),
                root: h.mount_point.clone(),
                dir: join(&h.mount_point, &self.path),
            })
            .collect()
    }

    /// The directory holding `controller`'s files (v2: the one directory).
    pub fn dir(&self, controller: &str) -> Option<PathBuf> {
        match self.v2_root() {
            Some(root) => Some(join(root, &self.path)),
            None => self.layout.dir_of(controller, &self.path),
        }
    }

    /// Every directory of the cgroup (one per managed hierarchy on v1).
    fn all_dirs(&self) -> Vec<PathBuf> {
        match self.v2_root() {
            Some(root) => vec![join(root, &self.path)],
            None => self.v1_dirs().into_iter().map(|d| d.dir).collect(),
        }
    }

    /// The directory whose `cgroup.procs` lists the container's processes.
    fn procs_dir(&self) -> Option<PathBuf> {
        if self.is_v2() {
            return self.dir("");
        }
        ["pids", "freezer", "devices", "memory", "cpu"]
            .iter()
            .find_map(|c| self.dir(c))
    }

    /// Creates the cgroup and applies `res`; processes join with
    /// [`Cgroup::add_process`] (so none ever runs unlimited).
    pub fn create(&self, res: &LinuxResources) -> Result<()> {
        match self.v2_root() {
            Some(root) => v2::create(root, &self.path, res),
            None => {
                if self.layout.v1.is_empty() {
                    bail!("no cgroup hierarchy is mounted on this host");
                }
                v1::create(&self.v1_dirs(), res)
            }
        }
        .with_context(|| format!("cgroup {}", self.path.display()))
    }

    /// Moves `pid` into the cgroup, without touching its resources.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        let dirs: Vec<PathBuf> = match self.v2_root() {
            Some(root) => vec![join(root, &self.path)],
            None => self.v1_dirs().into_iter().map(|d| d.dir).collect(),
        };
        for d in dirs.iter().filter(|d| d.is_dir()) {
            let procs = d.join("cgroup.procs");
            fs::write(&procs, pid.to_string())
                .with_context(|| format!("add pid {pid} to {}", procs.display()))?;
        }
        Ok(())
    }

    /// Applies changed resources to a running container (devices stay).
    pub fn update(&self, res: &LinuxResources) -> Result<()> {
        match self.v2_root() {
            Some(root) => v2::apply(root, &self.path, res, false),
            None => v1::apply(&self.v1_dirs(), res, false),
        }
        .with_context(|| format!("update cgroup {}", self.path.display()))
    }

    /// Pids of every process in the cgroup and below it; none if it is gone.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        if let Some(d) = self.procs_dir() {
            collect_pids(&d, &mut out)?;
        }
        Ok(out)
    }

    /// True if the cgroup is frozen (paused).
    pub fn is_frozen(&self) -> bool {
        if self.is_v2() {
            return self
                .dir("")
                .and_then(|d| fs::read_to_string(d.join("cgroup.freeze")).ok())
                .is_some_and(|s| s.trim() == "1");
        }
        self.dir("freezer")
            .and_then(|d| fs::read_to_string(d.join("freezer.state")).ok())
            .is_some_and(|s| s.trim() == "FROZEN")
    }

    /// Freezes every process of the cgroup; returns once they are frozen.
    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    /// Thaws the cgroup; returns once its processes run again.
    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let start = Instant::now();
        if self.is_v2() {
            let dir = self.dir("").context("no cgroup2 mount")?;
            write_str(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
            let want = if frozen { "frozen 1" } else { "frozen 0" };
            // The kernel reports the reached state in cgroup.events.
            while !read(&dir.join("cgroup.events"))?.lines().any(|l| l == want) {
                if start.elapsed() > SETTLE_TIMEOUT {
                    bail!("cgroup {} did not reach \"{want}\"", dir.display());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            return Ok(());
        }
        let dir = self
            .dir("freezer")
            .context("the cgroup v1 freezer controller is not mounted on this host")?;
        let file = dir.join("freezer.state");
        let want = if frozen { "FROZEN" } else { "THAWED" };
        let mut n = 0u32;
        loop {
            // FREEZING may stall while a task is in an uninterruptible
            // state; writing FROZEN again retries it.
            if n % 10 == 0 {
                write_str(&file, want)?;
            }
            if read(&file)?.trim() == want {
                return Ok(());
            }
            if start.elapsed() > SETTLE_TIMEOUT {
                if frozen {
                    let _ = write_str(&file, "THAWED");
                }
                bail!("cgroup {} did not reach {want}", dir.display());
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Sends `sig` to every process of the cgroup. The cgroup is frozen
    /// meanwhile so that no process forks past the signal; a paused
    /// container stays paused, except for SIGKILL (a frozen v1 task would
    /// not die until thawed).
    pub fn signal_all(&self, sig: i32) -> Result<()> {
        let was_frozen = self.is_frozen();
        if sig == libc::SIGKILL && self.kill_file().is_some() {
            let r = write_str(&self.kill_file().expect("checked"), "1");
            if was_frozen {
                self.thaw()?;
            }
            return r;
        }
        let can_freeze = self.is_v2() || self.dir("freezer").is_some();
        if can_freeze && !was_frozen {
            self.freeze()?;
        }
        let result = (|| -> Result<()> {
            for pid in self.pids()? {
                // SAFETY: plain syscall; realtime signals are not in nix's enum.
                if unsafe { libc::kill(pid, sig) } < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        return Err(e).with_context(|| format!("signal {sig} to pid {pid}"));
                    }
                }
            }
            Ok(())
        })();
        if can_freeze && (!was_frozen || sig == libc::SIGKILL) {
            self.thaw()?;
        }
        result
    }

    /// `cgroup.kill` (v2, Linux 5.14+), if there is one.
    fn kill_file(&self) -> Option<PathBuf> {
        if !self.is_v2() {
            return None;
        }
        self.dir("")
            .map(|d| d.join("cgroup.kill"))
            .filter(|f| f.exists())
    }

    /// Kills what is left in the cgroup and removes it, with any cgroups the
    /// container made below it. A cgroup that does not exist is fine.
    pub fn remove(&self) -> Result<()> {
        let dirs: Vec<PathBuf> = self.all_dirs().into_iter().filter(|d| d.exists()).collect();
        if dirs.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                break;
            }
            if start.elapsed() > SETTLE_TIMEOUT {
                bail!(
                    "cgroup {}: processes {pids:?} did not exit after SIGKILL",
                    self.path.display()
                );
            }
            self.signal_all(libc::SIGKILL)?;
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        for d in dirs {
            remove_tree(&d)?;
        }
        Ok(())
    }

    /// Usage statistics (runc's `events` shape).
    pub fn stats(&self) -> stats::Stats {
        if self.is_v2() {
            return self.dir("").map(|d| stats::v2(&d)).unwrap_or_default();
        }
        stats::v1(|c| self.dir(c).filter(|d| d.exists()))
    }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let (Some(file), key) = self.oom_file() else {
            return 0;
        };
        let dir = file.parent().unwrap_or(Path::new("/"));
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        stats::keyed(dir, &name).get(key).copied().unwrap_or(0)
    }

    /// The file that counts OOM kills, and its key: `memory.events` on v2
    /// (changes are signalled through inotify), `memory.oom_control` on v1
    /// (through `cgroup.event_control`).
    pub fn oom_file(&self) -> (Option<PathBuf>, &'static str) {
        if self.is_v2() {
            (self.dir("").map(|d| d.join("memory.events")), "oom_kill")
        } else {
            (
                self.dir("memory").map(|d| d.join("memory.oom_control")),
                "oom_kill",
            )
        }
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    match fs::read_to_string(&procs) {
        Ok(text) => out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("read {}", procs.display())),
    }
    for entry in fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let entry = entry.with_context(|| format!("read {}", dir.display()))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&entry.path(), out)?;
        }
    }
    Ok(())
}

/// Removes a cgroup directory and its child cgroups, deepest first (cgroup
/// directories hold only the kernel's files, which go with `rmdir`).
fn remove_tree(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    // A just-killed process may keep the cgroup busy for a moment.
    let start = Instant::now();
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < SETTLE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e).with_context(|| format!("rmdir {}", dir.display())),
        }
    }
}

/// Creates the container's cgroup and applies `linux.resources`.
pub fn create(path: &Path, spec: &Spec) -> Result<Cgroup> {
    let default = LinuxResources::default();
    let res = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .unwrap_or(&default);
    let cg = Cgroup::open(path)?;
    cg.create(res)?;
    Ok(cg)
}

/// Kills what is left in the cgroup and removes it (a missing cgroup is fine).
pub fn remove(path: &Path) -> Result<()> {
    Cgroup::open(path)?.remove()
}

/// Pids in the container's cgroup.
pub fn pids(path: &Path) -> Result<Vec<i32>> {
    Cgroup::open(path)?.pids()
}

/// True if the container's cgroup is frozen.
pub fn is_frozen(path: &Path) -> bool {
    Cgroup::open(path).is_ok_and(|c| c.is_frozen())
}

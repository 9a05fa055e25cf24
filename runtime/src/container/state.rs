//! Persistent container state under `--root/ID/`.
//!
//! Layout of a container directory:
//! - `state.json`: [`State`], rewritten atomically (temp file + rename);
//! - `start.sock`: the socket the waiting init listens on. Its presence means
//!   "created, not started yet"; `start` removes it once the process runs.
//!
//! Every command that reads or changes a container holds an exclusive `flock`
//! on the container directory, so concurrent commands on one ID are serialized.
//! The status is never stored: it is derived from the init process (alive,
//! same start time, not a zombie) each time it is asked for, so it stays true
//! after the process died or was reaped by somebody else.

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

/// Name of the state file inside a container directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the start socket inside a container directory.
pub const START_SOCKET: &str = "start.sock";

/// Lifecycle status, as the OCI runtime spec and runc name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `create` is still setting the container up.
    Creating,
    /// The init waits for `start`.
    Created,
    /// The user process runs.
    Running,
    /// The cgroup is frozen.
    Paused,
    /// The init process is gone.
    Stopped,
}

impl Status {
    /// The lowercase name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What berth remembers about a container between commands.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// Container ID.
    pub id: String,
    /// Host pid of the container's init (later: its user process).
    pub pid: i32,
    /// Start time of `pid` in clock ticks (field 22 of `/proc/PID/stat`), to tell
    /// a reused pid from our process.
    pub pid_start_time: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Owner of the container (empty: root, as runc prints it).
    #[serde(default)]
    pub owner: String,
    /// Cgroup of the container, relative to each hierarchy's root.
    pub cgroup_path: PathBuf,
    /// The container's configuration as it was at create time.
    pub config: Spec,
}

impl State {
    /// Annotations of the config (empty map when none).
    pub fn annotations(&self) -> HashMap<String, String> {
        self.config.annotations().clone().unwrap_or_default()
    }
}

/// A locked container directory.
pub struct ContainerDir {
    /// Path of the directory (`--root/ID`).
    pub path: PathBuf,
    /// The directory, opened and `flock`ed for the lifetime of this value.
    fd: OwnedFd,
}

/// Refuses IDs that could name anything but a direct child of `--root`.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if !ok {
        bail!("invalid container id {id:?}: use letters, digits and _+-. only");
    }
    Ok(())
}

fn lock(path: &Path) -> Result<OwnedFd> {
    let f = fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("flock {}", path.display()));
    }
    Ok(f.into())
}

impl ContainerDir {
    /// Creates and locks a new container directory; fails if the ID is taken.
    pub fn create(root: &Path, id: &str) -> Result<Self> {
        validate_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .with_context(|| format!("create root directory {}", root.display()))?;
        let path = root.join(id);
        match fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                bail!("container with id {id} already exists")
            }
            Err(e) => return Err(e).with_context(|| format!("create {}", path.display())),
        }
        let fd = lock(&path)?;
        Ok(ContainerDir { path, fd })
    }

    /// Opens and locks the directory of an existing container.
    pub fn open(root: &Path, id: &str) -> Result<Self> {
        validate_id(id)?;
        let path = root.join(id);
        let fd = match lock(&path) {
            Ok(fd) => fd,
            Err(e) if is_not_found(&e) => bail!("container {id} does not exist"),
            Err(e) => return Err(e),
        };
        // A concurrent `delete` may have removed the directory while we waited
        // for the lock; the state file is its last entry to go.
        if !path.join(STATE_FILE).exists() && !path.exists() {
            bail!("container {id} does not exist");
        }
        Ok(ContainerDir { path, fd })
    }

    /// Opens the directory of an existing container without locking it (for
    /// `list`, which must not wait for a create in progress).
    pub fn open_unlocked(root: &Path, id: &str) -> Result<Self> {
        validate_id(id)?;
        let path = root.join(id);
        let f = fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
        Ok(ContainerDir { path, fd: f.into() })
    }

    /// Reads `state.json`.
    pub fn load(&self) -> Result<State> {
        let p = self.path.join(STATE_FILE);
        let data = match fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                bail!("container {} does not exist", self.id())
            }
            Err(e) => return Err(e).with_context(|| format!("read {}", p.display())),
        };
        serde_json::from_slice(&data).with_context(|| format!("parse {}", p.display()))
    }

    /// Writes `state.json` atomically.
    pub fn save(&self, state: &State) -> Result<()> {
        let data = serde_json::to_vec(state).context("serialize state")?;
        write_atomic(&self.path.join(STATE_FILE), &data, 0o600)
    }

    /// The container ID (the directory's name).
    pub fn id(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Path of the start socket.
    pub fn start_socket(&self) -> PathBuf {
        self.path.join(START_SOCKET)
    }

    /// Raw descriptor of the locked directory.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Removes the directory and everything in it; the lock goes with it.
    pub fn remove(self) -> Result<()> {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("remove {}", self.path.display())),
        }
    }

    /// The current status of the container described by `state`.
    pub fn status(&self, state: &State) -> Status {
        if !process_matches(state.pid, state.pid_start_time) {
            return Status::Stopped;
        }
        if self.start_socket().exists() {
            return Status::Created;
        }
        if crate::cgroups::is_frozen(&state.cgroup_path) {
            return Status::Paused;
        }
        Status::Running
    }
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == ErrorKind::NotFound)
        || e.chain()
            .filter_map(|c| c.downcast_ref::<nix::Error>())
            .any(|n| *n == nix::Error::ENOENT)
}

/// Writes `data` to `path` through a temp file in the same directory and a
/// rename, so readers see either the old or the new content, never a mix.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(data)?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("write {}", path.display()));
    }
    Ok(())
}

/// Fields of `/proc/PID/stat` that berth needs.
pub struct ProcStat {
    /// One-letter state (`R`, `S`, `Z`...).
    pub state: char,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
}

/// Reads `/proc/PID/stat`; `None` if the process does not exist.
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let data = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: the
    // remaining fields start after the last ')'.
    let rest = &data[data.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3; the start time is field 22.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// True if `pid` is alive, not a zombie, and started at `start_time`.
pub fn process_matches(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match proc_stat(pid) {
        Some(st) => st.start_time == start_time && st.state != 'Z' && st.state != 'X',
        None => false,
    }
}

/// Lists the IDs of all containers under `root` (sorted).
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("read {}", root.display())),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("read {}", root.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if validate_id(&name).is_ok() && entry.path().join(STATE_FILE).exists() {
            ids.push(name);
        }
    }
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        for bad in ["", ".", "..", "a/b", "../x", "a b", "x\0"] {
            assert!(validate_id(bad).is_err(), "{bad:?} must be refused");
        }
        for good in ["a", "abc-123_x.y+z", "0123456789abcdef"] {
            validate_id(good).unwrap();
        }
    }

    #[test]
    fn proc_stat_of_self() {
        let st = proc_stat(std::process::id() as i32).unwrap();
        assert!(st.state != 'Z');
        assert!(st.start_time > 0);
        assert!(process_matches(std::process::id() as i32, st.start_time));
        assert!(!process_matches(
            std::process::id() as i32,
            st.start_time + 1
        ));
    }

    #[test]
    fn create_twice_fails_and_remove_cleans() {
        let root = std::env::temp_dir().join(format!("berth-state-test-{}", std::process::id()));
        let d = ContainerDir::create(&root, "c1").unwrap();
        assert!(ContainerDir::create(&root, "c1").is_err());
        d.remove().unwrap();
        assert!(ContainerDir::open(&root, "c1").is_err());
        fs::remove_dir_all(&root).unwrap();
    }
}

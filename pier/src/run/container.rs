//! Container records and where each container's files live.
//!
//! ```text
//! ROOT/containers/<id>/container.json   the record (image, flags, network, exit)
//! ROOT/containers/<id>/bundle/          config.json, rootfs (overlay), upper, work
//! ROOT/containers/<id>/ctr.log          the shim's log (CRI format)
//! ROOT/containers/<id>/{hosts,hostname,resolv.conf}   bind-mounted files
//! ROOT/containers/<id>/lock             held while the container changes state
//! RUNROOT/c/<id[..16]>/shim/           the shim's state dir (socket, exit.json)
//! RUNROOT/runtime/                      the runtime's --root
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::net::proxy::PortMap;
use crate::net::Attachment;
use crate::store::Lock;

/// How to (re)create a container's config at each start.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct RunSpec {
    /// Entrypoint + command.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// `user[:group]`.
    pub user: String,
    /// Terminal.
    pub tty: bool,
    /// Keep stdin open.
    pub stdin: bool,
    /// Hostname.
    pub hostname: String,
    /// `none`, `host`, `bridge` or a network name.
    pub network: String,
    /// Published ports (as asked).
    pub publish: Vec<PortMap>,
    /// Extra OCI mounts (volumes, tmpfs).
    pub mounts: Vec<Value>,
    /// Memory limit.
    pub memory: Option<i64>,
    /// CPUs.
    pub cpus: Option<f64>,
    /// Pids limit.
    pub pids: Option<i64>,
    /// `--cap-add`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `default`, `unconfined` or a profile path.
    pub seccomp: String,
    /// no_new_privs.
    pub no_new_privileges: bool,
    /// Read-only rootfs.
    pub read_only: bool,
    /// Run tini as PID 1.
    pub init: bool,
    /// Stop signal.
    pub stop_signal: String,
    /// Seconds `stop` waits before SIGKILL.
    pub stop_timeout: u64,
}

/// A container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The image as given.
    pub image: String,
    /// Image ID (config digest).
    pub image_id: String,
    /// Manifest digest.
    pub manifest: String,
    /// Creation time.
    pub created: String,
    /// The runtime binary.
    pub runtime: PathBuf,
    /// Cgroup parent.
    pub cgroup_parent: String,
    /// Remove after exit.
    pub auto_remove: bool,
    /// The config inputs.
    pub spec: RunSpec,
    /// Last start.
    #[serde(default)]
    pub started_at: Option<String>,
    /// Last exit.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Last exit code.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Network attachment while running.
    #[serde(default)]
    pub attachment: Option<Attachment>,
    /// Ports as bound while running.
    #[serde(default)]
    pub ports: Vec<PortMap>,
    /// The port proxy's pid while running.
    #[serde(default)]
    pub proxy_pid: Option<u32>,
}

/// Where containers live.
#[derive(Clone, Debug)]
pub struct Paths {
    /// Store root.
    pub root: PathBuf,
    /// Run root.
    pub runroot: PathBuf,
}

impl Paths {
    /// `ROOT/containers`.
    pub fn all(&self) -> PathBuf {
        self.root.join("containers")
    }
    /// `ROOT/containers/<id>`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.all().join(id)
    }
    /// The bundle.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir(id).join("bundle")
    }
    /// The log.
    pub fn log(&self, id: &str) -> PathBuf {
        self.dir(id).join("ctr.log")
    }
    /// `RUNROOT/c/<first 16 digits of the id>` (short: the shim's socket
    /// path must fit in 108 bytes).
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.runroot.join("c").join(&id[..16.min(id.len())])
    }
    /// The shim's state dir.
    pub fn shim_dir(&self, id: &str) -> PathBuf {
        self.run_dir(id).join("shim")
    }
    /// The runtime's root.
    pub fn runtime_root(&self) -> PathBuf {
        self.runroot.join("runtime")
    }

    /// Locks the container for a state change.
    pub fn lock(&self, id: &str) -> Result<Lock> {
        Lock::exclusive(&self.dir(id).join("lock"))
    }

    /// Locks the container list (name uniqueness).
    pub fn list_lock(&self) -> Result<Lock> {
        std::fs::create_dir_all(self.all())?;
        Lock::exclusive(&self.root.join("containers.lock"))
    }

    /// Loads a record.
    pub fn load(&self, id: &str) -> Result<Record> {
        let p = self.dir(id).join("container.json");
        let d = std::fs::read(&p).with_context(|| format!("no such container: {id}"))?;
        serde_json::from_slice(&d).with_context(|| format!("parse {}", p.display()))
    }

    /// Saves a record atomically.
    pub fn save(&self, r: &Record) -> Result<()> {
        let dir = self.dir(&r.id);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let p = dir.join("container.json");
        let tmp = dir.join("container.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(r)?)
            .with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("write {}", p.display()))
    }

    /// Every record (oldest first).
    pub fn list(&self) -> Result<Vec<Record>> {
        let mut v = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.all()) else {
            return Ok(v);
        };
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if let Ok(r) = self.load(&id) {
                v.push(r);
            }
        }
        v.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    /// Finds a container by full ID, name or unique ID prefix.
    pub fn find(&self, s: &str) -> Result<Record> {
        if s.is_empty() {
            bail!("empty container name");
        }
        let all = self.list()?;
        if let Some(r) = all.iter().find(|r| r.id == s || r.name == s) {
            return Ok(r.clone());
        }
        let m: Vec<&Record> = all.iter().filter(|r| r.id.starts_with(s)).collect();
        match m.len() {
            1 => Ok(m[0].clone()),
            0 => bail!("no such container: {s}"),
            _ => bail!("container ID prefix {s:?} is ambiguous"),
        }
    }
}

/// What a container is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Made, not started (its shim waits).
    Created,
    /// Running.
    Running,
    /// Exited with a code (None if unknown).
    Exited(Option<i32>),
}

impl Status {
    /// Docker's word.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited(_) => "exited",
        }
    }
}

/// The pid in `STATE/shim.pid`, if that process is alive.
pub fn shim_pid(paths: &Paths, id: &str) -> Option<i32> {
    let s = std::fs::read_to_string(paths.shim_dir(id).join("shim.pid")).ok()?;
    let pid: i32 = s.trim().parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    (state != 'Z').then_some(pid)
}

/// The exit file of the current run, if written.
pub fn exit_file(paths: &Paths, id: &str) -> Option<Value> {
    let d = std::fs::read(paths.shim_dir(id).join("exit.json")).ok()?;
    serde_json::from_slice(&d).ok()
}

/// The container's status, from its shim (alive, exited) and record.
pub fn status(paths: &Paths, r: &Record) -> Status {
    if let Some(e) = exit_file(paths, &r.id) {
        return Status::Exited(Some(super::shim_client::exit_code(&e)));
    }
    if shim_pid(paths, &r.id).is_some() {
        let st = super::shim_client::request(
            &paths.shim_dir(&r.id),
            &serde_json::json!({"op": "state"}),
            Some(std::time::Duration::from_secs(5)),
        );
        return match st.ok().as_ref().and_then(|v| v["status"].as_str()) {
            Some("created") => Status::Created,
            Some("stopped") => Status::Exited(None),
            _ => Status::Running,
        };
    }
    Status::Exited(r.exit_code)
}

/// A new container ID (64 hex digits).
pub fn new_id() -> String {
    let mut b = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Docker-like generated names: `pier_` and 8 hex digits of the ID.
pub fn default_name(id: &str) -> String {
    format!("pier_{}", &id[..8])
}

/// True if `name` is a valid container name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Removes a directory tree if it exists.
pub fn remove_tree(p: &Path) -> Result<()> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("remove {}", p.display()))
        }
        _ => Ok(()),
    }
}

//! The OCI runtime, driven only through its runc-compatible command line
//! (berth, runc, crun or a wrapper script): `run` for build steps; `kill`,
//! `delete` and `state` for clean-up. Containers of `pier run` are held by
//! `berth-shim`, which is given the same runtime and `--root`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// A runtime binary and the state root pier gives it.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// The binary.
    pub path: PathBuf,
    /// Its `--root`.
    pub root: PathBuf,
}

/// Finds `name` next to the running `pier` binary, else on `PATH`.
pub fn find_beside_pier(name: &str) -> Result<PathBuf> {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for d in std::env::split_paths(&path) {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{name} not found next to pier or on PATH")
}

impl Runtime {
    /// `explicit` (`--runtime`), or `berth` next to pier or on `PATH`.
    pub fn new(explicit: Option<&Path>, root: PathBuf) -> Result<Runtime> {
        let path = match explicit {
            Some(p) if p.components().count() == 1 && !p.exists() => {
                find_beside_pier(&p.to_string_lossy())?
            }
            Some(p) => {
                if !p.exists() {
                    bail!("runtime {} does not exist", p.display());
                }
                std::fs::canonicalize(p).with_context(|| format!("resolve {}", p.display()))?
            }
            None => find_beside_pier("berth")?,
        };
        Ok(Runtime { path, root })
    }

    /// `RUNTIME --root ROOT ARGS...`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.path);
        c.arg("--root").arg(&self.root).args(args);
        c
    }

    /// `RUNTIME kill ID SIGNAL` (errors ignored: the container may be gone).
    pub fn kill(&self, id: &str, signal: &str) {
        let _ = self
            .cmd(&["kill", id, signal])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// `RUNTIME delete --force ID`; Ok if it is gone afterwards.
    pub fn delete_force(&self, id: &str) -> Result<()> {
        let out = self
            .cmd(&["delete", "--force", id])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {}", self.path.display()))?;
        if !out.status.success() && self.state(id).is_some() {
            bail!(
                "{} delete --force {id}: {}",
                self.path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// `RUNTIME state ID`, or None if the runtime does not know it.
    pub fn state(&self, id: &str) -> Option<Value> {
        let out = self
            .cmd(&["state", id])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }
}

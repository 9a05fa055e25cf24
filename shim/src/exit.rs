//! How a process ended, and the exit file that keeps it after the shim left.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use nix::sys::wait::WaitStatus;
use serde_json::{json, Value};

use crate::timefmt;

/// Name of the exit file in the state directory.
pub const EXIT_FILE: &str = "exit.json";

/// The end of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    /// Its pid.
    pub pid: i32,
    /// Exit code; 128+N when killed by signal N (the shell's convention).
    pub code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Whether the kernel's OOM killer killed a process of its cgroup while
    /// it ran.
    pub oom_killed: bool,
    /// When it was reaped (RFC 3339, UTC).
    pub exited_at: String,
}

impl ExitStatus {
    /// From a `waitpid` result; `None` for stops and continues.
    pub fn from_wait(ws: WaitStatus) -> Option<ExitStatus> {
        let (pid, code, signal) = match ws {
            WaitStatus::Exited(pid, code) => (pid, code, None),
            WaitStatus::Signaled(pid, sig, _) => (pid, 128 + sig as i32, Some(sig as i32)),
            _ => return None,
        };
        Some(ExitStatus {
            pid: pid.as_raw(),
            code,
            signal,
            oom_killed: false,
            exited_at: timefmt::now_string(),
        })
    }

    /// As JSON: `{"pid","exit_code","signal","oom_killed","exited_at"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "pid": self.pid,
            "exit_code": self.code,
            "signal": self.signal,
            "oom_killed": self.oom_killed,
            "exited_at": self.exited_at,
        })
    }

    /// Writes the exit file of `dir` atomically: a temporary file, fsync,
    /// rename over `exit.json`, fsync of the directory. A reader sees the
    /// whole record or no file.
    pub fn write_file(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(".exit.json.tmp");
        let dest = dir.join(EXIT_FILE);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .with_context(|| format!("create {}", tmp.display()))?;
        let mut text = serde_json::to_vec(&self.to_json()).expect("JSON");
        text.push(b'\n');
        f.write_all(&text)
            .with_context(|| format!("write {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("fsync {}", tmp.display()))?;
        std::fs::rename(&tmp, &dest).with_context(|| format!("rename to {}", dest.display()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    #[test]
    fn signal_becomes_128_plus_n_and_file_round_trips() {
        let e = ExitStatus::from_wait(WaitStatus::Signaled(
            Pid::from_raw(7),
            Signal::SIGKILL,
            false,
        ))
        .unwrap();
        assert_eq!((e.code, e.signal), (137, Some(9)));
        let e2 = ExitStatus::from_wait(WaitStatus::Exited(Pid::from_raw(7), 3)).unwrap();
        assert_eq!((e2.code, e2.signal), (3, None));
        let d = std::env::temp_dir().join(format!("berth-shim-ut-exit-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        e.write_file(&d).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(d.join(EXIT_FILE)).unwrap()).unwrap();
        assert_eq!(v, e.to_json());
        assert!(!d.join(".exit.json.tmp").exists());
        std::fs::remove_dir_all(d).unwrap();
    }
}

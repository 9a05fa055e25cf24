//! The OCI runtime, driven through its runc-compatible command line only
//! (`create`, `start`, `kill`, `delete`, `state`, `exec`), so berth, runc and
//! crun are interchangeable.

use std::ffi::OsStr;
use std::io::{Read, Seek};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

/// A runtime binary and the global arguments put before every subcommand
/// (`--root DIR`, `--systemd-cgroup`, ...).
#[derive(Clone, Debug)]
pub struct Runtime {
    /// Path of the binary.
    pub path: PathBuf,
    /// Global arguments.
    pub args: Vec<String>,
}

/// Output of a runtime command that succeeded.
pub struct Output {
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error (warnings).
    pub stderr: Vec<u8>,
}

impl Runtime {
    /// `RUNTIME ARGS... SUB`, ready for more arguments.
    pub fn command(&self, sub: &str) -> Command {
        let mut c = Command::new(&self.path);
        c.args(&self.args).arg(sub);
        c
    }

    /// Runs `RUNTIME ARGS... SUB REST...` to completion with stdin from
    /// /dev/null and its output captured in memory files (never pipes: a
    /// runtime writing much while the shim waits cannot block). Fails with
    /// the runtime's own error message.
    pub fn run<I, S>(&self, sub: &str, rest: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(sub);
        cmd.args(rest);
        run_captured(cmd, &format!("{} {sub}", self.path.display()))
    }
}

/// Runs `cmd` (stdin /dev/null, stdout and stderr captured) to completion.
pub fn run_captured(mut cmd: Command, what: &str) -> Result<Output> {
    let out =
        memfd_create(c"berth-shim-stdout", MemFdCreateFlag::MFD_CLOEXEC).context("memfd_create")?;
    let err =
        memfd_create(c"berth-shim-stderr", MemFdCreateFlag::MFD_CLOEXEC).context("memfd_create")?;
    let mut out = std::fs::File::from(out);
    let mut err = std::fs::File::from(err);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().context("dup memfd")?))
        .stderr(Stdio::from(err.try_clone().context("dup memfd")?));
    let status = cmd.status().with_context(|| format!("run {what}"))?;
    let stdout = read_all(&mut out)?;
    let stderr = read_all(&mut err)?;
    if !status.success() {
        bail!("{what} failed ({status}): {}", message(&stderr));
    }
    Ok(Output { stdout, stderr })
}

/// A runtime's error output as one trimmed message (or a note that it said
/// nothing).
pub fn message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        "(no error message)".to_string()
    } else {
        text.to_string()
    }
}

fn read_all(f: &mut std::fs::File) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    f.rewind().context("seek memfd")?;
    f.read_to_end(&mut v).context("read memfd")?;
    Ok(v)
}

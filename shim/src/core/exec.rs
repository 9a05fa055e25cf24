//! Running another process in the container through `RUNTIME exec`.
//!
//! The runtime is called with `--detach --pid-file`: it returns once the
//! process runs, the process is re-parented to the shim (a child subreaper)
//! and the shim reaps it itself, so its exit code and signal are the real
//! ones, not the runtime's. Its stdio are pipes held by the shim, or a pty
//! received over a console socket.

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::session::Session;
use super::stdio;
use super::{Core, SessionId, Status};
use crate::console::ConsoleSocket;

/// What to run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExecRequest {
    /// A full OCI process object (`RUNTIME exec --process FILE`); when set,
    /// the fields below except `stdin` are ignored.
    pub process: Option<Value>,
    /// Arguments (`RUNTIME exec ID ARGS...`: the rest comes from the
    /// container's own process).
    pub args: Vec<String>,
    /// Extra environment (`--env`).
    pub env: Vec<String>,
    /// Working directory (`--cwd`).
    pub cwd: Option<String>,
    /// Allocate a terminal (`--tty`).
    pub tty: bool,
    /// Give the process an input the caller writes to (otherwise /dev/null).
    pub stdin: bool,
}

impl Core {
    /// Starts a process in the container; returns its session and pid. Its
    /// output goes to the session's subscribers only (not to the log).
    pub fn exec(&mut self, req: ExecRequest) -> Result<(SessionId, i32)> {
        if self.status != Status::Running {
            bail!("container {} is not running", self.cfg.id);
        }
        let id = self.next_exec;
        self.next_exec += 1;
        let dir = &self.cfg.state_dir;
        let pid_file = dir.join(format!("exec-{id}.pid"));
        let process_file = dir.join(format!("exec-{id}.json"));
        let result = self.exec_inner(id, &req, &pid_file, &process_file);
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&process_file);
        result
    }

    fn exec_inner(
        &mut self,
        id: SessionId,
        req: &ExecRequest,
        pid_file: &std::path::Path,
        process_file: &std::path::Path,
    ) -> Result<(SessionId, i32)> {
        let mut cmd = self.cfg.runtime.command("exec");
        cmd.arg("--detach").arg("--pid-file").arg(pid_file);
        let tty = match &req.process {
            Some(p) => p["terminal"].as_bool().unwrap_or(false),
            None => req.tty,
        };
        let console = if tty {
            let c = ConsoleSocket::bind(&self.cfg.state_dir.join(format!("exec-{id}.sock")))?;
            cmd.arg("--console-socket").arg(c.path());
            Some(c)
        } else {
            None
        };
        match &req.process {
            Some(p) => {
                std::fs::write(process_file, serde_json::to_vec(p)?)
                    .with_context(|| format!("write {}", process_file.display()))?;
                cmd.arg("--process").arg(process_file).arg(&self.cfg.id);
            }
            None => {
                if req.args.is_empty() {
                    bail!("exec needs args or a process");
                }
                if tty {
                    cmd.arg("--tty");
                }
                if let Some(cwd) = &req.cwd {
                    cmd.arg("--cwd").arg(cwd);
                }
                for e in &req.env {
                    cmd.arg("--env").arg(e);
                }
                cmd.arg(&self.cfg.id).args(&req.args);
            }
        }
        let what = format!("{} exec", self.cfg.runtime.path.display());

        let (sources, stdin, pty) = match console {
            Some(console) => stdio::run_with_console(cmd, &what, &console)?,
            None => stdio::run_with_pipes(cmd, &what, req.stdin)?,
        };
        let text = std::fs::read_to_string(pid_file)
            .with_context(|| format!("read the runtime's pid file {}", pid_file.display()))?;
        let pid: i32 = text
            .trim()
            .parse()
            .with_context(|| format!("bad pid {text:?} from exec"))?;
        self.sessions
            .insert(id, Session::new(pid, sources, stdin, pty));
        self.finished = false;
        Ok((id, pid))
    }
}

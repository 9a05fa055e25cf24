//! `RUNTIME create` with the shim holding the container's stdio.

use std::os::fd::OwnedFd;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signalfd::SignalFd;

use super::session::{Session, Source};
use super::stdio;
use super::subscribers::Subscribers;
use super::{Core, CoreConfig, Status, CONTAINER};
use crate::console::ConsoleSocket;
use crate::logfile::LogWriter;
use crate::oom::OomWatch;

/// File in the state directory where the runtime writes the container's pid.
pub const PID_FILE: &str = "pid";

/// Name of the transient console socket in the state directory.
const CONSOLE_SOCKET: &str = "console.sock";

impl Core {
    /// Creates the container with `RUNTIME create` and returns the core
    /// holding it. The container's stdout and stderr are pipes whose read
    /// ends the shim keeps (its stdin too with `cfg.stdin`), or with
    /// `cfg.terminal` a pty whose master comes over a console socket.
    /// `signals` comes from [`super::block_signals`], called before.
    ///
    /// A failed create returns the runtime's own error message (what it
    /// wrote to stderr).
    pub fn create(cfg: CoreConfig, signals: SignalFd) -> Result<Core> {
        let pid_file = cfg.state_dir.join(PID_FILE);
        let mut cmd = cfg.runtime.command("create");
        cmd.arg("--bundle")
            .arg(&cfg.bundle)
            .arg("--pid-file")
            .arg(&pid_file);
        let what = format!("{} create", cfg.runtime.path.display());

        let (sources, stdin, pty) = if cfg.terminal {
            let console = ConsoleSocket::bind(&cfg.state_dir.join(CONSOLE_SOCKET))?;
            cmd.arg("--console-socket").arg(console.path()).arg(&cfg.id);
            stdio::run_with_console(cmd, &what, &console)?
        } else {
            cmd.arg(&cfg.id);
            stdio::run_with_pipes(cmd, &what, cfg.stdin)?
        };

        let mut core = Core {
            status: Status::Created,
            signals,
            sessions: Default::default(),
            subs: Subscribers::new(cfg.client_buffer, cfg.client_timeout),
            log: None,
            log_errors: 0,
            log_lost_bytes: 0,
            oom: OomWatch::default(),
            events: Default::default(),
            next_exec: 1,
            buf: Vec::new(),
            finished: false,
            cfg,
        };
        crate::failpoint::hit("shim-after-create");
        // From here on the container exists: undo it if the shim cannot hold
        // it.
        match core.adopt(sources, stdin, pty) {
            Ok(()) => Ok(core),
            Err(e) => {
                core.destroy();
                Err(e)
            }
        }
    }

    fn adopt(
        &mut self,
        sources: Vec<Source>,
        stdin: Option<OwnedFd>,
        pty: Option<OwnedFd>,
    ) -> Result<()> {
        let pid_file = self.cfg.state_dir.join(PID_FILE);
        let text = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("read the runtime's pid file {}", pid_file.display()))?;
        let pid: i32 = text
            .trim()
            .parse()
            .with_context(|| format!("bad pid {text:?} in {}", pid_file.display()))?;
        self.oom = OomWatch::for_pid(pid);
        if let Some(cfg) = self.cfg.log.clone() {
            self.log = Some(LogWriter::open(cfg)?);
        }
        let mut s = Session::new(pid, sources, stdin, pty);
        s.logged = true;
        s.droppable = true;
        self.sessions.insert(CONTAINER, s);
        // The init may already be gone (it was killed while created).
        self.reap();
        Ok(())
    }

    /// Removes a container the shim cannot hold (`RUNTIME delete --force`).
    pub fn destroy(&mut self) {
        let _ = self.cfg.runtime.run("delete", ["--force", &self.cfg.id]);
        // Give the killed init a moment to be reaped, so no zombie stays.
        for _ in 0..50 {
            self.reap();
            if self
                .sessions
                .get(&CONTAINER)
                .is_none_or(|s| s.exit.is_some())
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

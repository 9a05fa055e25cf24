//! The shim's core: supervision of the container (and of exec'd processes),
//! its stdio and log pipeline, and the recording of its exit.
//!
//! The core knows nothing of any control protocol. A front end (the control
//! socket in [`crate::control`]; a containerd shim v2 ttrpc service could be
//! another) drives it through plain methods: [`Core::start`], [`Core::kill`],
//! [`Core::exec`], [`Core::subscribe`] and [`Core::pop_output`] for output,
//! [`Core::write_stdin`], [`Core::resize`], [`Core::reopen_log`],
//! [`Core::state`]; and it takes part in the front end's poll loop through
//! [`Core::interests`], [`Core::ready`], [`Core::tick`] and
//! [`Core::next_deadline`]. What happened (an exit) comes back as [`Event`]s
//! from [`Core::take_events`].

mod create;
mod exec;
mod session;
mod stdio;
mod subscribers;

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::poll::PollFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::{json, Value};

pub use exec::ExecRequest;
pub use session::STDIN_LIMIT;
pub use subscribers::{Output, SubId};

use crate::exit::ExitStatus;
use crate::fdio;
use crate::logfile::{LogConfig, LogWriter};
use crate::oom::OomWatch;
use crate::runtime::Runtime;
use crate::Stream;
use session::Session;
use subscribers::Subscribers;

/// Identifies a supervised process: [`CONTAINER`] or an exec.
pub type SessionId = u32;

/// The session of the container's init process.
pub const CONTAINER: SessionId = 0;

/// Size of one read from a container's output (a pipe's default capacity).
const CHUNK: usize = 64 * 1024;

/// Reads per output descriptor per wakeup, so one busy stream cannot starve
/// the others.
const READS_PER_WAKEUP: usize = 16;

/// Signals the shim passes on to the container's init instead of dying.
pub const FORWARDED_SIGNALS: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
];

/// What the core needs to know about its container.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// The runtime.
    pub runtime: Runtime,
    /// Container ID.
    pub id: String,
    /// Bundle directory (absolute).
    pub bundle: PathBuf,
    /// The shim's state directory (absolute).
    pub state_dir: PathBuf,
    /// The log file, if any.
    pub log: Option<LogConfig>,
    /// The container has a terminal (its config says process.terminal).
    pub terminal: bool,
    /// Keep the container's stdin open for attached clients.
    pub stdin: bool,
    /// Program and arguments run after the container exited.
    pub exit_command: Option<(PathBuf, Vec<String>)>,
    /// Call `RUNTIME delete` after the container exited.
    pub delete_on_exit: bool,
    /// Bytes queued per attached client before the container is held back.
    pub client_buffer: usize,
    /// How long an attached client may hold the container back.
    pub client_timeout: Duration,
}

/// The container's life as the shim sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Created, not started.
    Created,
    /// Started.
    Running,
    /// Exited.
    Stopped,
}

impl Status {
    /// runc's name.
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

/// Something that happened, for the front end.
#[derive(Clone, Debug)]
pub enum Event {
    /// A session ended and its output was drained; for [`CONTAINER`] the
    /// exit file is written.
    Exited(SessionId, ExitStatus),
}

/// Which descriptor of the core became ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    /// The signal descriptor.
    Signals,
    /// An output descriptor of a session.
    Output(SessionId, Stream),
    /// The input descriptor of a session.
    Input(SessionId),
}

/// The core of a shim holding one container.
pub struct Core {
    cfg: CoreConfig,
    status: Status,
    signals: SignalFd,
    sessions: BTreeMap<SessionId, Session>,
    subs: Subscribers,
    log: Option<LogWriter>,
    log_errors: u32,
    /// Bytes of output that could not be written to the log (disk full...):
    /// reported in `state` and in `shim.log`, never dropped silently.
    log_lost_bytes: u64,
    oom: OomWatch,
    events: VecDeque<Event>,
    next_exec: SessionId,
    buf: Vec<u8>,
    finished: bool,
}

/// Blocks the signals the core handles (SIGCHLD and the forwarded ones) and
/// returns a descriptor that reads them. Call before starting any child, so
/// that no exit is missed.
pub fn block_signals() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED_SIGNALS {
        set.add(s);
    }
    set.thread_block().context("block signals")?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).context("signalfd")
}

impl Core {
    /// The configuration.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// The container's pid.
    pub fn pid(&self) -> i32 {
        self.sessions[&CONTAINER].pid
    }

    /// The container's status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The container's exit, once published.
    pub fn exit_status(&self) -> Option<&ExitStatus> {
        let s = &self.sessions[&CONTAINER];
        s.exit.as_ref().filter(|_| s.finished)
    }

    /// The exit of a session, once published.
    pub fn session_exit(&self, id: SessionId) -> Option<&ExitStatus> {
        self.sessions
            .get(&id)
            .filter(|s| s.finished)
            .and_then(|s| s.exit.as_ref())
    }

    /// Whether the container and every exec ended and everything was
    /// recorded: the shim may leave.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// `RUNTIME start ID`.
    pub fn start(&mut self) -> Result<()> {
        match self.status {
            Status::Created => {}
            Status::Running => bail!("container {} was already started", self.cfg.id),
            Status::Stopped => bail!("container {} has exited", self.cfg.id),
        }
        self.cfg.runtime.run("start", [&self.cfg.id])?;
        self.status = Status::Running;
        Ok(())
    }

    /// `RUNTIME kill [--all] ID SIGNAL`. `signal` is a number or a name
    /// (`TERM`, `SIGTERM`), passed to the runtime as given.
    pub fn kill(&mut self, signal: &str, all: bool) -> Result<()> {
        if signal.is_empty() || !signal.bytes().all(|b| b.is_ascii_alphanumeric()) {
            bail!("invalid signal {signal:?}");
        }
        if self.status == Status::Stopped {
            bail!("container {} has exited", self.cfg.id);
        }
        let mut args = Vec::new();
        if all {
            args.push("--all");
        }
        args.push(&self.cfg.id);
        args.push(signal);
        self.cfg.runtime.run("kill", args)?;
        Ok(())
    }

    /// The container's state: the shim's view, and the runtime's status
    /// (`RUNTIME state`) while the container has not exited.
    pub fn state(&self) -> Value {
        let runtime_status = if self.status == Status::Stopped {
            None
        } else {
            self.cfg
                .runtime
                .run("state", [&self.cfg.id])
                .ok()
                .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
                .and_then(|v| v["status"].as_str().map(str::to_string))
        };
        json!({
            "id": self.cfg.id,
            "pid": self.pid(),
            "status": self.status.name(),
            "runtime_status": runtime_status,
            "exit": self.exit_status().map(ExitStatus::to_json),
            "shim_pid": std::process::id(),
            "bundle": self.cfg.bundle,
            "terminal": self.cfg.terminal,
            "log_lost_bytes": self.log_lost_bytes,
        })
    }

    /// Reopens the log file at its path (after it was moved away).
    pub fn reopen_log(&mut self) -> Result<()> {
        match &mut self.log {
            Some(l) => l.reopen(),
            None => bail!("the shim writes no log file (no --log-path)"),
        }
    }

    /// Sets the terminal size of a session that has a terminal.
    pub fn resize(&self, id: SessionId, rows: u16, cols: u16) -> Result<()> {
        let s = self.sessions.get(&id).context("no such process")?;
        match &s.pty {
            Some(pty) => crate::console::resize(pty.as_fd(), rows, cols),
            None => bail!("the process has no terminal"),
        }
    }

    /// Adds a consumer of a session's output. A consumer of the container may
    /// be dropped when too slow; the consumer of an exec is not.
    pub fn subscribe(&mut self, id: SessionId) -> Result<SubId> {
        let s = self.sessions.get(&id).context("no such process")?;
        let sub = self.subs.add(id, s.droppable);
        if let (true, Some(e)) = (s.finished, &s.exit) {
            self.subs.push_exit(id, e);
        }
        Ok(sub)
    }

    /// Removes a consumer.
    pub fn unsubscribe(&mut self, sub: SubId) {
        self.subs.remove(sub);
    }

    /// Takes the next output queued for a consumer.
    pub fn pop_output(&mut self, sub: SubId) -> Option<Output> {
        self.subs.pop(sub)
    }

    /// Whether the session's input takes more bytes now (false when it has
    /// none or too much is queued).
    pub fn stdin_room(&self, id: SessionId) -> bool {
        self.sessions
            .get(&id)
            .and_then(|s| s.stdin.as_ref())
            .is_some_and(|k| k.pending.len() < STDIN_LIMIT && !k.close_when_flushed)
    }

    /// Whether the session has an open input.
    pub fn has_stdin(&self, id: SessionId) -> bool {
        self.sessions.get(&id).is_some_and(|s| s.stdin.is_some())
    }

    /// Queues input for the session's process; dropped when it has no input.
    pub fn write_stdin(&mut self, id: SessionId, data: &[u8]) {
        if let Some(s) = self.sessions.get_mut(&id) {
            if let Some(k) = &mut s.stdin {
                k.pending.extend_from_slice(data);
                if !k.flush() {
                    s.stdin = None;
                }
            }
        }
    }

    /// Ends the session's input once what is queued is written. With a
    /// terminal the input stays open (it is also the output).
    pub fn close_stdin(&mut self, id: SessionId) {
        if let Some(s) = self.sessions.get_mut(&id) {
            if s.pty.is_some() {
                return;
            }
            if let Some(k) = &mut s.stdin {
                k.close_when_flushed = true;
                if !k.flush() {
                    s.stdin = None;
                }
            }
        }
    }

    /// Descriptors the core waits on, with the events of interest.
    pub fn interests(&self, out: &mut Vec<(RawFd, PollFlags, Token)>) {
        out.push((self.signals.as_raw_fd(), PollFlags::POLLIN, Token::Signals));
        for (&id, s) in &self.sessions {
            if !self.subs.holds_back(id) {
                for src in s.sources.iter().flatten() {
                    out.push((
                        src.fd.as_raw_fd(),
                        PollFlags::POLLIN,
                        Token::Output(id, src.stream),
                    ));
                }
            }
            if let Some(k) = &s.stdin {
                if !k.pending.is_empty() {
                    out.push((k.fd.as_raw_fd(), PollFlags::POLLOUT, Token::Input(id)));
                }
            }
        }
    }

    /// Handles a ready descriptor.
    pub fn ready(&mut self, token: Token) {
        match token {
            Token::Signals => self.handle_signals(),
            Token::Output(id, stream) => self.pump(id, stream),
            Token::Input(id) => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    if let Some(k) = &mut s.stdin {
                        if !k.flush() {
                            s.stdin = None;
                        }
                    }
                }
            }
        }
    }

    /// Time-based work: drops consumers that held the container back too
    /// long.
    pub fn tick(&mut self, now: Instant) {
        self.subs.expire(now);
    }

    /// When [`Core::tick`] has work next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.subs.next_deadline()
    }

    /// Takes what happened since the last call.
    pub fn take_events(&mut self) -> impl Iterator<Item = Event> + '_ {
        self.events.drain(..)
    }

    fn handle_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            let sig = info.ssi_signo as i32;
            if sig == libc::SIGCHLD {
                continue;
            }
            // Passed on to the container's init, as conmon does: the shim
            // stays to record how the container ends.
            let s = &self.sessions[&CONTAINER];
            if s.exit.is_none() {
                // SAFETY: plain kill(2) of our (unreaped) child.
                unsafe { libc::kill(s.pid, sig) };
            }
        }
        self.reap();
    }

    /// Reaps every exited child: the container's init, exec'd processes,
    /// runtime helpers and orphans re-parented to the shim (it is a child
    /// subreaper).
    fn reap(&mut self) {
        loop {
            let ws = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(ws) => ws,
            };
            let Some(mut exit) = ExitStatus::from_wait(ws) else {
                continue;
            };
            let id = self
                .sessions
                .iter()
                .find(|(_, s)| s.pid == exit.pid && s.exit.is_none());
            let Some((&id, _)) = id else { continue };
            if id == CONTAINER {
                exit.oom_killed = self.oom.oom_killed();
                self.status = Status::Stopped;
            }
            self.sessions.get_mut(&id).expect("session").exit = Some(exit);
            // Everything the process wrote is in its pipes now: read it to
            // the end (or until empty, when an orphan still holds a pipe).
            self.pump(id, Stream::Stdout);
            self.pump(id, Stream::Stderr);
            self.check_finished(id);
        }
    }

    /// Reads a session's output: to the log (for the container) and to the
    /// subscribers. Stops when the subscribers are full (backpressure).
    fn pump(&mut self, id: SessionId, stream: Stream) {
        for _ in 0..READS_PER_WAKEUP {
            if self.subs.holds_back(id) {
                return;
            }
            let Some(s) = self.sessions.get_mut(&id) else {
                return;
            };
            let exited = s.exit.is_some();
            let Some(src) = &s.sources[stream as usize] else {
                return;
            };
            if self.buf.len() < CHUNK {
                self.buf.resize(CHUNK, 0);
            }
            match fdio::read(src.fd.as_fd(), &mut self.buf) {
                fdio::Read::Data(n) => {
                    let data = &self.buf[..n];
                    if s.logged {
                        if let Some(log) = &mut self.log {
                            if let Err(e) = log.write(stream, data) {
                                self.log_errors += 1;
                                self.log_lost_bytes += n as u64;
                                if self.log_errors <= 10 {
                                    eprintln!("berth-shim: {e:#}");
                                }
                            }
                        }
                    }
                    if self.subs.any_for(id) {
                        self.subs.push_data(id, stream, &Rc::new(data.to_vec()));
                    }
                }
                fdio::Read::WouldBlock if !exited => return,
                fdio::Read::WouldBlock | fdio::Read::Eof => {
                    s.sources[stream as usize] = None;
                    self.check_finished(id);
                    return;
                }
            }
        }
    }

    /// Publishes a session's end once it exited and its output is drained:
    /// the exit file, `Exit` to subscribers, the exit command and delete.
    fn check_finished(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if s.finished || !s.drained() {
            return;
        }
        let Some(exit) = s.exit.clone() else { return };
        s.finished = true;
        s.stdin = None;
        s.pty = None;
        if id == CONTAINER {
            if self.log_lost_bytes > 0 {
                eprintln!(
                    "berth-shim: {} bytes of output are missing from the log ({} failed writes)",
                    self.log_lost_bytes, self.log_errors
                );
            }
            if let Err(e) = exit.write_file(&self.cfg.state_dir) {
                eprintln!("berth-shim: {e:#}");
            }
            self.run_exit_command(&exit);
            if self.cfg.delete_on_exit {
                if let Err(e) = self.cfg.runtime.run("delete", [&self.cfg.id]) {
                    eprintln!("berth-shim: {e:#}");
                }
            }
        }
        self.subs.push_exit(id, &exit);
        self.events.push_back(Event::Exited(id, exit));
        if id != CONTAINER {
            self.sessions.remove(&id);
        }
        self.finished = self.sessions.values().all(|s| s.finished);
    }

    fn run_exit_command(&self, exit: &ExitStatus) {
        let Some((prog, args)) = &self.cfg.exit_command else {
            return;
        };
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .env("BERTH_SHIM_ID", &self.cfg.id)
            .env("BERTH_SHIM_STATE_DIR", &self.cfg.state_dir)
            .env("BERTH_SHIM_EXIT_CODE", exit.code.to_string());
        if let Err(e) =
            crate::runtime::run_captured(cmd, &format!("exit command {}", prog.display()))
        {
            eprintln!("berth-shim: {e:#}");
        }
    }
}

//! The task: one container and its execs, held by berth-shim's core on one
//! thread that owns the core and runs the poll loop (the core is
//! single-threaded, and it reaps every child with `waitpid(-1)`, so every
//! runtime command is also run from this thread). The ttrpc threads hand it
//! jobs through a channel and wake it through a pipe ([`Handle::call`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use berth_shim::core::{self, Core, CoreConfig, Event, ExecRequest, SessionId, Status, CONTAINER};
use berth_shim::exit::ExitStatus;
use containerd_shim::api::{
    CreateTaskRequest, DeleteResponse, ExecProcessRequest, StateResponse, Status as TaskStatus,
};
use containerd_shim::event::Event as ShimEvent;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Context, ExitSignal};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde_json::Value;

use crate::io::{Io, Which};
use crate::oom::OomNotifier;
use crate::options::RuntimeChoice;
use crate::stats;

/// Where the shims keep their state directories (console sockets, pid and
/// exit files): short paths, since a socket path holds 107 bytes and bundle
/// paths are long.
pub const STATE_ROOT: &str = "/run/containerd/berth-shim";

/// A job run on the task's thread.
type Job = Box<dyn FnOnce(&mut Task) + Send>;

/// The ttrpc side's way to the task's thread.
pub struct Handle {
    tx: mpsc::Sender<Job>,
    wake: File,
}

impl Handle {
    /// Runs `f` on the task's thread and returns its result; an error once
    /// the thread has ended.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Task) -> ttrpc::Result<T> + Send + 'static,
    ) -> ttrpc::Result<T> {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |t| {
            let _ = tx.send(f(t));
        });
        if self.tx.send(job).is_err() {
            return Err(error(Code::UNAVAILABLE, "the shim is shutting down"));
        }
        let _ = (&self.wake).write(&[1]);
        rx.recv()
            .unwrap_or_else(|_| Err(error(Code::UNAVAILABLE, "the shim is shutting down")))
    }
}

/// A ttrpc error with a status code (containerd maps the code to its
/// error kinds: NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION...).
pub fn error(code: Code, msg: impl ToString) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg))
}

fn internal(e: anyhow::Error) -> ttrpc::Error {
    error(Code::UNKNOWN, format!("{e:#}"))
}

/// A process of the task: the init (exec ID "") or an exec.
#[derive(Default)]
struct Proc {
    pid: u32,
    session: Option<SessionId>,
    spec: Option<Value>,
    stdio: [String; 3],
    terminal: bool,
    exit: Option<(u32, SystemTime)>,
    waiters: Vec<mpsc::Sender<(u32, SystemTime)>>,
}

/// The task's state, owned by its thread.
pub struct Task {
    ns: String,
    id: String,
    publisher: RemotePublisher,
    core: Option<Core>,
    bundle: PathBuf,
    rootfs: Option<PathBuf>,
    state_dir: PathBuf,
    init: Proc,
    execs: BTreeMap<String, Proc>,
    ios: Vec<Io>,
    oom: Option<OomNotifier>,
    paused: bool,
    deleted: bool,
    leave: bool,
}

/// Starts the task's thread; `exit` is signalled when it ends (after
/// Shutdown).
pub fn spawn(ns: String, id: String, publisher: RemotePublisher, exit: Arc<ExitSignal>) -> Handle {
    let (tx, rx) = mpsc::channel::<Job>();
    let (r, w) = berth_shim::fdio::pipe().expect("pipe");
    berth_shim::fdio::set_nonblocking(std::os::fd::AsFd::as_fd(&r)).expect("non-blocking pipe");
    std::thread::spawn(move || {
        let state_dir = Path::new(STATE_ROOT).join(std::process::id().to_string());
        let mut task = Task {
            ns,
            id,
            publisher,
            core: None,
            bundle: PathBuf::new(),
            rootfs: None,
            state_dir,
            init: Proc::default(),
            execs: BTreeMap::new(),
            ios: Vec::new(),
            oom: None,
            paused: false,
            deleted: false,
            leave: false,
        };
        task.run(rx, r);
        task.cleanup();
        exit.signal();
    });
    Handle {
        tx,
        wake: File::from(w),
    }
}

fn timestamp(t: SystemTime) -> MessageField<Timestamp> {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    MessageField::some(ts)
}

/// What a poll entry stands for.
enum Slot {
    Wake,
    Core(core::Token),
    Io(usize, Which),
    Oom,
}

impl Task {
    fn run(&mut self, rx: mpsc::Receiver<Job>, wake: OwnedFd) {
        let mut wake = File::from(wake);
        while !self.leave {
            let mut slots = vec![(wake.as_raw_fd(), libc::POLLIN, Slot::Wake)];
            if let Some(core) = &self.core {
                let mut v = Vec::new();
                core.interests(&mut v);
                slots.extend(
                    v.into_iter()
                        .map(|(fd, f, t)| (fd, f.bits(), Slot::Core(t))),
                );
                for (i, io) in self.ios.iter().enumerate() {
                    let mut v = Vec::new();
                    io.interests(core, &mut v);
                    slots.extend(
                        v.into_iter()
                            .map(|(fd, f, w)| (fd, f.bits(), Slot::Io(i, w))),
                    );
                }
            }
            if let Some(o) = &self.oom {
                slots.push((o.fd(), libc::POLLIN, Slot::Oom));
            }
            let mut fds: Vec<libc::pollfd> = slots
                .iter()
                .map(|(fd, ev, _)| libc::pollfd {
                    fd: *fd,
                    events: *ev,
                    revents: 0,
                })
                .collect();
            // Output FIFOs waiting for their reader are checked every tick.
            let draining = self
                .ios
                .iter()
                .any(Io::draining)
                .then(|| Instant::now() + crate::io::DRAIN_TICK);
            let timeout = self
                .core
                .as_ref()
                .and_then(Core::next_deadline)
                .into_iter()
                .chain(draining)
                .min()
                .map(|d| {
                    let ms = d.saturating_duration_since(Instant::now()).as_millis();
                    ms.min(i32::MAX as u128 - 1) as i32 + 1
                })
                .unwrap_or(-1);
            // SAFETY: poll(2) over our own vector.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                continue; // EINTR
            }
            for (pfd, (_, _, slot)) in fds.iter().zip(&slots) {
                if pfd.revents == 0 {
                    continue;
                }
                match slot {
                    Slot::Wake => {
                        let mut buf = [0u8; 64];
                        while wake.read(&mut buf).is_ok_and(|n| n > 0) {}
                    }
                    Slot::Core(t) => {
                        if let Some(c) = &mut self.core {
                            c.ready(*t);
                        }
                    }
                    Slot::Io(i, w) => {
                        if let (Some(c), Some(io)) = (&mut self.core, self.ios.get_mut(*i)) {
                            io.ready(c, *w);
                        }
                    }
                    Slot::Oom => self.check_oom(),
                }
            }
            // Exits first, so that requests see them.
            self.after();
            while let Ok(job) = rx.try_recv() {
                job(self);
            }
            self.after();
        }
    }

    /// Exits reported by the core, output moved to the clients.
    fn after(&mut self) {
        let Some(core) = &mut self.core else { return };
        core.tick(Instant::now());
        let events: Vec<Event> = core.take_events().collect();
        for Event::Exited(sid, status) in events {
            self.on_exit(sid, status);
        }
        let Some(core) = &mut self.core else { return };
        for io in &mut self.ios {
            io.pump(core);
        }
        let mut keep = Vec::new();
        let mut done = Vec::new();
        for mut io in std::mem::take(&mut self.ios) {
            if io.finished() {
                done.push(io);
            } else {
                keep.push(io);
            }
        }
        self.ios = keep;
        for io in done {
            io.detach(core);
        }
    }

    fn on_exit(&mut self, sid: SessionId, status: ExitStatus) {
        let at = SystemTime::now();
        let code = status.code as u32;
        if sid == CONTAINER {
            // An OOM kill is reported before the exit it caused.
            self.check_oom();
        }
        let (exec_id, p) = if sid == CONTAINER {
            (self.id.clone(), &mut self.init)
        } else {
            match self.execs.iter_mut().find(|(_, p)| p.session == Some(sid)) {
                Some((k, p)) => (k.clone(), p),
                None => return,
            }
        };
        p.exit = Some((code, at));
        for w in p.waiters.drain(..) {
            let _ = w.send((code, at));
        }
        let pid = p.pid;
        let mut ev = TaskExit::new();
        ev.container_id = self.id.clone();
        ev.id = exec_id;
        ev.pid = pid;
        ev.exit_status = code;
        ev.exited_at = timestamp(at);
        self.publish(ev);
    }

    fn check_oom(&mut self) {
        if let Some(o) = &mut self.oom {
            if o.ready() {
                let mut ev = TaskOOM::new();
                ev.container_id = self.id.clone();
                self.publish(ev);
            }
        }
    }

    fn publish<E: ShimEvent + 'static>(&self, ev: E) {
        let topic = ev.topic();
        if let Err(e) = self
            .publisher
            .publish(Context::default(), &topic, &self.ns, Box::new(ev))
        {
            log::warn!("publish {topic}: {e}");
        }
    }

    fn core(&mut self) -> ttrpc::Result<&mut Core> {
        self.core
            .as_mut()
            .ok_or_else(|| error(Code::NOT_FOUND, "the task has no container"))
    }

    fn proc_mut(&mut self, exec_id: &str) -> ttrpc::Result<&mut Proc> {
        if exec_id.is_empty() {
            if self.core.is_none() {
                return Err(error(Code::NOT_FOUND, "the task has no container"));
            }
            return Ok(&mut self.init);
        }
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| error(Code::NOT_FOUND, format!("exec {exec_id} not found")))
    }

    /// Create: mounts the rootfs, runs `RUNTIME create` through the core and
    /// joins the client's stdio.
    pub fn create(&mut self, req: CreateTaskRequest) -> ttrpc::Result<u32> {
        if self.core.is_some() {
            return Err(error(
                Code::ALREADY_EXISTS,
                format!("task {} exists", req.id),
            ));
        }
        self.bundle = PathBuf::from(&req.bundle);
        let result = self.create_inner(&req);
        if let Err(e) = &result {
            log::error!("create {}: {e:?}", req.id);
            self.unmount_rootfs();
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
        let pid = result.map_err(internal)?;
        let mut ev = TaskCreate::new();
        ev.container_id = self.id.clone();
        ev.bundle = req.bundle.clone();
        ev.rootfs = req.rootfs.clone();
        let mut tio = TaskIO::new();
        tio.stdin = req.stdin.clone();
        tio.stdout = req.stdout.clone();
        tio.stderr = req.stderr.clone();
        tio.terminal = req.terminal;
        ev.io = MessageField::some(tio);
        ev.pid = pid;
        self.publish(ev);
        Ok(pid)
    }

    fn create_inner(&mut self, req: &CreateTaskRequest) -> anyhow::Result<u32> {
        let choice = RuntimeChoice::resolve(req.options.as_ref(), &self.ns)?;
        if !req.rootfs.is_empty() {
            let rootfs = self.bundle.join("rootfs");
            std::fs::create_dir_all(&rootfs)
                .with_context(|| format!("create {}", rootfs.display()))?;
            self.rootfs = Some(rootfs.clone());
            for m in &req.rootfs {
                crate::mount::mount_rootfs(&m.type_, &m.source, &m.options, &rootfs)?;
            }
        }
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&self.state_dir)
            .with_context(|| format!("create {}", self.state_dir.display()))?;
        choice.save(&self.bundle, &self.state_dir)?;
        let cfg = CoreConfig {
            runtime: choice.runtime(),
            id: req.id.clone(),
            bundle: self.bundle.clone(),
            state_dir: self.state_dir.clone(),
            log: None,
            terminal: req.terminal,
            stdin: !req.stdin.is_empty() || req.terminal,
            exit_command: None,
            delete_on_exit: false,
            client_buffer: 1 << 20,
            // containerd's clients are never cut off: a full FIFO holds the
            // container back, as under the runc shim.
            client_timeout: Duration::from_secs(100 * 365 * 24 * 3600),
        };
        let mut core = Core::create(cfg, child_signals()?)?;
        let io = match Io::open(&mut core, CONTAINER, &req.stdin, &req.stdout, &req.stderr) {
            Ok(io) => io,
            Err(e) => {
                core.destroy();
                return Err(e);
            }
        };
        let pid = core.pid() as u32;
        self.oom = OomNotifier::for_pid(core.pid()).unwrap_or_else(|e| {
            log::warn!("OOM notifications: {e:#}");
            None
        });
        self.ios.push(io);
        self.init = Proc {
            pid,
            session: Some(CONTAINER),
            stdio: [req.stdin.clone(), req.stdout.clone(), req.stderr.clone()],
            terminal: req.terminal,
            ..Default::default()
        };
        self.core = Some(core);
        Ok(pid)
    }

    /// Start of the container (`RUNTIME start`) or of an exec
    /// (`RUNTIME exec --detach --process`).
    pub fn start(&mut self, exec_id: &str) -> ttrpc::Result<u32> {
        if exec_id.is_empty() {
            self.core()?.start().map_err(internal)?;
            let mut ev = TaskStart::new();
            ev.container_id = self.id.clone();
            ev.pid = self.init.pid;
            self.publish(ev);
            return Ok(self.init.pid);
        }
        let p = self.proc_mut(exec_id)?;
        if p.session.is_some() {
            return Err(error(
                Code::ALREADY_EXISTS,
                format!("exec {exec_id} was started"),
            ));
        }
        let req = ExecRequest {
            process: p.spec.clone(),
            stdin: !p.stdio[0].is_empty(),
            ..Default::default()
        };
        let stdio = p.stdio.clone();
        let core = self.core()?;
        let (sid, pid) = core.exec(req).map_err(internal)?;
        let io = Io::open(core, sid, &stdio[0], &stdio[1], &stdio[2]);
        let io = match io {
            Ok(io) => io,
            Err(e) => {
                // SAFETY: kill(2) of the process just started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return Err(internal(e));
            }
        };
        self.ios.push(io);
        let p = self.proc_mut(exec_id)?;
        p.session = Some(sid);
        p.pid = pid as u32;
        let mut ev = TaskExecStarted::new();
        ev.container_id = self.id.clone();
        ev.exec_id = exec_id.to_string();
        ev.pid = pid as u32;
        self.publish(ev);
        Ok(pid as u32)
    }

    /// Exec: records the process (started by Start).
    pub fn exec(&mut self, req: ExecProcessRequest) -> ttrpc::Result<()> {
        if self.execs.contains_key(&req.exec_id) {
            return Err(error(
                Code::ALREADY_EXISTS,
                format!("exec {} exists", req.exec_id),
            ));
        }
        if self.core()?.status() != Status::Running {
            return Err(error(
                Code::FAILED_PRECONDITION,
                "the container is not running",
            ));
        }
        let spec: Value = serde_json::from_slice(&req.spec.value)
            .map_err(|e| error(Code::INVALID_ARGUMENT, format!("exec process spec: {e}")))?;
        self.execs.insert(
            req.exec_id.clone(),
            Proc {
                spec: Some(spec),
                stdio: [req.stdin.clone(), req.stdout.clone(), req.stderr.clone()],
                terminal: req.terminal,
                ..Default::default()
            },
        );
        let mut ev = TaskExecAdded::new();
        ev.container_id = self.id.clone();
        ev.exec_id = req.exec_id;
        self.publish(ev);
        Ok(())
    }

    /// The state of the container or of an exec.
    pub fn state(&mut self, exec_id: &str) -> ttrpc::Result<StateResponse> {
        let paused = self.paused;
        let bundle = self.bundle.display().to_string();
        let core_status = self.core()?.status();
        let p = self.proc_mut(exec_id)?;
        let status = match (exec_id.is_empty(), p.exit, p.session) {
            (_, Some(_), _) => TaskStatus::STOPPED,
            (false, None, None) => TaskStatus::CREATED,
            (false, None, Some(_)) => TaskStatus::RUNNING,
            (true, None, _) => match core_status {
                Status::Created => TaskStatus::CREATED,
                Status::Running if paused => TaskStatus::PAUSED,
                Status::Running => TaskStatus::RUNNING,
                Status::Stopped => TaskStatus::STOPPED,
            },
        };
        let mut r = StateResponse::new();
        r.id = exec_id.to_string();
        r.bundle = bundle;
        r.pid = p.pid;
        r.status = status.into();
        [r.stdin, r.stdout, r.stderr] = p.stdio.clone();
        r.terminal = p.terminal;
        if let Some((code, at)) = p.exit {
            r.exit_status = code;
            r.exited_at = timestamp(at);
        }
        r.exec_id = exec_id.to_string();
        Ok(r)
    }

    /// Kill: `RUNTIME kill [--all]` for the container, kill(2) for an exec.
    pub fn kill(&mut self, exec_id: &str, signal: u32, all: bool) -> ttrpc::Result<()> {
        let p = self.proc_mut(exec_id)?;
        if p.exit.is_some() {
            return Err(error(Code::NOT_FOUND, "process already finished"));
        }
        if !exec_id.is_empty() {
            if p.session.is_none() {
                return Err(error(Code::FAILED_PRECONDITION, "exec not started"));
            }
            // SAFETY: kill(2) of the exec'd process, not reaped yet (its
            // exit is not recorded).
            if unsafe { libc::kill(p.pid as i32, signal as i32) } < 0 {
                let e = std::io::Error::last_os_error();
                return Err(error(Code::UNKNOWN, format!("kill exec {exec_id}: {e}")));
            }
            return Ok(());
        }
        self.core()?
            .kill(&signal.to_string(), all)
            .map_err(internal)
    }

    /// Registers for the end of a process; `tx` gets its exit.
    pub fn wait(
        &mut self,
        exec_id: &str,
        tx: mpsc::Sender<(u32, SystemTime)>,
    ) -> ttrpc::Result<()> {
        let p = self.proc_mut(exec_id)?;
        match p.exit {
            Some(e) => {
                let _ = tx.send(e);
            }
            None => p.waiters.push(tx),
        }
        Ok(())
    }

    /// Delete: an exec's record, or the container (`RUNTIME delete`, or
    /// `delete --force` if never started) and its rootfs mount.
    pub fn delete(&mut self, exec_id: &str) -> ttrpc::Result<DeleteResponse> {
        let mut r = DeleteResponse::new();
        if !exec_id.is_empty() {
            let p = self.proc_mut(exec_id)?;
            if p.session.is_some() && p.exit.is_none() {
                return Err(error(
                    Code::FAILED_PRECONDITION,
                    format!("exec {exec_id} is running"),
                ));
            }
            let p = self.execs.remove(exec_id).expect("exec");
            r.pid = p.pid;
            if let Some((code, at)) = p.exit {
                r.exit_status = code;
                r.exited_at = timestamp(at);
            }
            return Ok(r);
        }
        let core = self.core()?;
        match core.status() {
            Status::Running => {
                return Err(error(Code::FAILED_PRECONDITION, "the container is running"))
            }
            Status::Created => core.destroy(),
            Status::Stopped => {
                let id = core.config().id.clone();
                if let Err(e) = core.config().runtime.run("delete", [&id]) {
                    log::warn!("{e:#}");
                }
            }
        }
        // destroy() reaped the init: publish its exit.
        self.after();
        self.unmount_rootfs();
        self.deleted = true;
        self.oom = None;
        r.pid = self.init.pid;
        let (code, at) = self.init.exit.unwrap_or((137, SystemTime::now()));
        r.exit_status = code;
        r.exited_at = timestamp(at);
        let mut ev = TaskDelete::new();
        ev.container_id = self.id.clone();
        ev.pid = r.pid;
        ev.exit_status = code;
        ev.exited_at = timestamp(at);
        ev.id = self.id.clone();
        self.publish(ev);
        Ok(r)
    }

    /// The container's processes (`RUNTIME ps --format json`).
    pub fn pids(&mut self) -> ttrpc::Result<Vec<ProcessInfo>> {
        let id = self.id.clone();
        let out = self
            .core()?
            .config()
            .runtime
            .run("ps", ["--format", "json", &id])
            .map_err(internal)?;
        let pids: Vec<u32> = serde_json::from_slice(&out.stdout)
            .map_err(|e| error(Code::UNKNOWN, format!("runtime ps output: {e}")))?;
        Ok(pids
            .into_iter()
            .map(|pid| {
                let mut p = ProcessInfo::new();
                p.pid = pid;
                p
            })
            .collect())
    }

    /// Pause or resume (`RUNTIME pause|resume`).
    pub fn set_paused(&mut self, pause: bool) -> ttrpc::Result<()> {
        let id = self.id.clone();
        let sub = if pause { "pause" } else { "resume" };
        self.core()?
            .config()
            .runtime
            .run(sub, [&id])
            .map_err(internal)?;
        self.paused = pause;
        if pause {
            let mut ev = TaskPaused::new();
            ev.container_id = id;
            self.publish(ev);
        } else {
            let mut ev = TaskResumed::new();
            ev.container_id = id;
            self.publish(ev);
        }
        Ok(())
    }

    fn session_of(&mut self, exec_id: &str) -> ttrpc::Result<SessionId> {
        self.proc_mut(exec_id)?
            .session
            .ok_or_else(|| error(Code::FAILED_PRECONDITION, "process not started"))
    }

    /// Window size of a process's terminal (nothing to do once it ended:
    /// clients resize right after start, and a short process may be gone).
    pub fn resize(&mut self, exec_id: &str, width: u32, height: u32) -> ttrpc::Result<()> {
        if self.proc_mut(exec_id)?.exit.is_some() {
            return Ok(());
        }
        let sid = self.session_of(exec_id)?;
        self.core()?
            .resize(sid, height as u16, width as u16)
            .map_err(internal)
    }

    /// Ends a process's input.
    pub fn close_io(&mut self, exec_id: &str) -> ttrpc::Result<()> {
        let sid = self.session_of(exec_id)?;
        let Some(core) = &mut self.core else {
            return Ok(());
        };
        match self.ios.iter_mut().find(|io| io.session == sid) {
            Some(io) => io.close_stdin(core),
            None => core.close_stdin(sid),
        }
        Ok(())
    }

    /// Cgroup statistics (`RUNTIME events --stats`) as containerd's
    /// `io.containerd.cgroups.v1.Metrics`.
    pub fn stats(&mut self) -> ttrpc::Result<Any> {
        let id = self.id.clone();
        let out = self
            .core()?
            .config()
            .runtime
            .run("events", ["--stats", &id])
            .map_err(internal)?;
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| error(Code::UNKNOWN, format!("runtime stats output: {e}")))?;
        let m = stats::metrics(&v["data"]);
        containerd_shim::util::convert_to_any(Box::new(m))
            .map_err(|e| error(Code::UNKNOWN, format!("encode metrics: {e}")))
    }

    /// New resources (`RUNTIME update --resources FILE`).
    pub fn update(&mut self, resources: &[u8]) -> ttrpc::Result<()> {
        let id = self.id.clone();
        let file = self.state_dir.join("update.json");
        std::fs::write(&file, resources)
            .map_err(|e| error(Code::UNKNOWN, format!("write {}: {e}", file.display())))?;
        let r = self.core()?.config().runtime.run(
            "update",
            [
                std::ffi::OsStr::new("--resources"),
                file.as_os_str(),
                id.as_ref(),
            ],
        );
        let _ = std::fs::remove_file(&file);
        r.map(drop).map_err(internal)
    }

    /// The init's pid (0 before Create).
    pub fn task_pid(&self) -> u32 {
        self.init.pid
    }

    /// Shutdown: leaves once the container was deleted (or never made);
    /// returns whether it leaves.
    pub fn shutdown(&mut self) -> bool {
        if self.core.is_some() && !self.deleted {
            return false;
        }
        self.leave = true;
        true
    }

    fn unmount_rootfs(&mut self) {
        if let Some(r) = self.rootfs.take() {
            if let Err(e) = crate::mount::unmount(&r) {
                log::warn!("{e:#}");
            }
        }
    }

    fn cleanup(&mut self) {
        if let Some(core) = &mut self.core {
            for io in std::mem::take(&mut self.ios) {
                io.detach(core);
            }
        }
        self.unmount_rootfs();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// A signal descriptor for SIGCHLD, which `main` blocked in every thread.
fn child_signals() -> anyhow::Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).context("signalfd")
}

/// Blocks SIGCHLD in the calling thread (and the threads it starts later), so
/// that exits are read from the core's signal descriptor.
pub fn block_child_signals() -> anyhow::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.thread_block().context("block SIGCHLD")
}

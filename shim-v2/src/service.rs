//! containerd's side: the shim's lifecycle (`start`, `delete` actions) and
//! the Task service over ttrpc, each request handed to the task's thread.

use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, Empty, ExecProcessRequest, KillRequest, PauseRequest, PidsRequest, PidsResponse,
    ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest, StartResponse, StateRequest,
    StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::ttrpc::Code;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::write_address;
use containerd_shim::{
    api, Config, DeleteResponse, ExitSignal, Flags, StartOpts, TtrpcContext, TtrpcResult,
};

use crate::options::RuntimeChoice;
use crate::task::{self, error, Handle};

/// The shim.
pub struct Service {
    ns: String,
    id: String,
    bundle: PathBuf,
    exit: Arc<ExitSignal>,
}

impl containerd_shim::Shim for Service {
    type T = TaskService;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        Service {
            ns: args.namespace.clone(),
            id: args.id.clone(),
            bundle,
            exit: Arc::new(ExitSignal::default()),
        }
    }

    /// One shim per container (containers of a pod get one each, like
    /// io.containerd.runc.v1): berth-shim's core holds one container.
    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let grouping = opts.id.clone();
        let (_pid, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        write_address(&address)?;
        Ok(address)
    }

    /// Cleanup after a shim died: force-deletes the container with the
    /// runtime the shim had chosen, unmounts the rootfs, removes the shim's
    /// state directory.
    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        if let Ok((choice, state_dir)) = RuntimeChoice::load(&self.bundle) {
            let _ = choice.runtime().run("delete", ["--force", &self.id]);
            if let Some(d) = state_dir {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        let rootfs = self.bundle.join("rootfs");
        let _ = crate::mount::unmount(&rootfs);
        let mut r = DeleteResponse::new();
        r.exit_status = 128 + libc::SIGKILL as u32;
        r.exited_at = MessageField::some(containerd_shim::util::timestamp()?);
        Ok(r)
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        TaskService {
            handle: task::spawn(
                self.ns.clone(),
                self.id.clone(),
                publisher,
                self.exit.clone(),
            ),
        }
    }
}

/// The Task service.
pub struct TaskService {
    handle: Handle,
}

impl containerd_shim::Task for TaskService {
    fn create(&self, _: &TtrpcContext, req: CreateTaskRequest) -> TtrpcResult<CreateTaskResponse> {
        let pid = self.handle.call(move |t| t.create(req))?;
        let mut r = CreateTaskResponse::new();
        r.pid = pid;
        Ok(r)
    }

    fn start(&self, _: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let pid = self.handle.call(move |t| t.start(&req.exec_id))?;
        let mut r = StartResponse::new();
        r.pid = pid;
        Ok(r)
    }

    fn state(&self, _: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        self.handle.call(move |t| t.state(&req.exec_id))
    }

    fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        self.handle.call(move |t| t.exec(req))?;
        Ok(Empty::new())
    }

    fn kill(&self, _: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        self.handle
            .call(move |t| t.kill(&req.exec_id, req.signal, req.all))?;
        Ok(Empty::new())
    }

    /// Blocks this ttrpc thread (not the task's) until the process ended.
    fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let rx = self.handle.call(move |t| {
            let (tx, rx) = std::sync::mpsc::channel();
            t.wait(&req.exec_id, tx).map(|()| rx)
        })?;
        let (code, at) = rx
            .recv()
            .map_err(|_| error(Code::UNAVAILABLE, "the shim is shutting down"))?;
        let mut r = WaitResponse::new();
        r.exit_status = code;
        let d = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut ts =
            containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp::new();
        ts.seconds = d.as_secs() as i64;
        ts.nanos = d.subsec_nanos() as i32;
        r.exited_at = MessageField::some(ts);
        Ok(r)
    }

    fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        self.handle.call(move |t| t.delete(&req.exec_id))
    }

    fn pids(&self, _: &TtrpcContext, _req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let processes = self.handle.call(|t| t.pids())?;
        let mut r = PidsResponse::new();
        r.processes = processes;
        Ok(r)
    }

    fn pause(&self, _: &TtrpcContext, _req: PauseRequest) -> TtrpcResult<Empty> {
        self.handle.call(|t| t.set_paused(true))?;
        Ok(Empty::new())
    }

    fn resume(&self, _: &TtrpcContext, _req: ResumeRequest) -> TtrpcResult<Empty> {
        self.handle.call(|t| t.set_paused(false))?;
        Ok(Empty::new())
    }

    fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        self.handle
            .call(move |t| t.resize(&req.exec_id, req.width, req.height))?;
        Ok(Empty::new())
    }

    fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        if req.stdin {
            self.handle.call(move |t| t.close_io(&req.exec_id))?;
        }
        Ok(Empty::new())
    }

    fn stats(&self, _: &TtrpcContext, _req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let stats = self.handle.call(|t| t.stats())?;
        let mut r = StatsResponse::new();
        r.stats = MessageField::some(stats);
        Ok(r)
    }

    fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let resources = req.resources.value.clone();
        self.handle.call(move |t| t.update(&resources))?;
        Ok(Empty::new())
    }

    fn connect(&self, _: &TtrpcContext, _req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let task_pid = self.handle.call(|t| Ok(t.task_pid()))?;
        let mut r = ConnectResponse::new();
        r.shim_pid = std::process::id();
        r.task_pid = task_pid;
        Ok(r)
    }

    fn shutdown(&self, _: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        self.handle.call(|t| Ok(t.shutdown()))?;
        Ok(api::Empty::new())
    }
}

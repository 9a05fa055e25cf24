//! Starting, stopping and removing containers. pier makes the bundle (the
//! overlay rootfs, `config.json`, the network namespace and bind-mounted
//! `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`), then starts one
//! `berth-shim` per container with `--runtime` set to the chosen runtime;
//! the shim creates and holds the container, so `pier` can exit. The
//! shim's exit command is `pier container-cleanup ID`, which releases what
//! pier made (port proxy, network, mount) once the container exits by
//! itself; `pier stop` and `pier rm` do the same at once (every step is
//! idempotent and runs under the container's lock).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::container::{self, Paths, Record, Status};
use super::runtime::Runtime;
use super::shim_client;
use super::spec::{self, NetNs, SpecOpts};
use super::{seccomp, user};
use crate::image::Image;
use crate::inroot::Root;
use crate::net::{self, proxy, Networks};
use crate::rootfs::RootfsMount;
use crate::store::Store;

/// What container commands need.
pub struct Ctx<'a> {
    /// The store.
    pub store: &'a Store,
    /// Where containers live.
    pub paths: Paths,
    /// This `pier` binary (exit command, port proxy).
    pub pier: PathBuf,
    /// `berth-shim`.
    pub shim: PathBuf,
    /// Global flags to repeat in the exit command (`--root`, ...).
    pub global_args: Vec<String>,
}

impl Ctx<'_> {
    /// The runtime of container `r`.
    pub fn runtime(&self, r: &Record) -> Runtime {
        Runtime {
            path: r.runtime.clone(),
            root: self.paths.runtime_root(),
        }
    }

    fn networks(&self) -> Networks {
        Networks::new(&self.paths.root, &self.paths.runroot)
    }
}

/// The image of a container (its layers for mounting).
fn image_of(ctx: &Ctx<'_>, r: &Record) -> Result<Image> {
    let d = crate::digest::Digest::parse(&r.manifest)?;
    Image::load(ctx.store, &d).with_context(|| format!("image {} of container {}", r.image, r.name))
}

fn write_file(p: &Path, data: &str) -> Result<()> {
    std::fs::write(p, data).with_context(|| format!("write {}", p.display()))
}

/// Prepares and starts the container: mount, network, config, shim; with
/// `start_now` false the shim creates it and waits for a `start` request
/// (foreground runs attach first). The caller holds the container's lock.
pub fn start(ctx: &Ctx<'_>, r: &mut Record, start_now: bool) -> Result<()> {
    if matches!(
        container::status(&ctx.paths, r),
        Status::Running | Status::Created
    ) && container::shim_pid(&ctx.paths, &r.id).is_some()
    {
        bail!("container {} is already running", r.name);
    }
    let res = start_inner(ctx, r, start_now);
    if res.is_err() {
        // Leave nothing half-made: no shim, proxy, network or mount.
        let _ = cleanup_locked(ctx, r, true, false);
        let rt = ctx.runtime(r);
        let _ = rt.delete_force(&r.id);
        if let Some(pid) = container::shim_pid(&ctx.paths, &r.id) {
            // SAFETY: plain kill of the shim we started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = container::remove_tree(&ctx.paths.shim_dir(&r.id));
    }
    res
}

fn start_inner(ctx: &Ctx<'_>, r: &mut Record, start_now: bool) -> Result<()> {
    let p = &ctx.paths;
    let id = r.id.clone();
    let dir = p.dir(&id);
    let shim_dir = p.shim_dir(&id);
    container::remove_tree(&shim_dir)?;
    std::fs::create_dir_all(p.run_dir(&id))
        .with_context(|| format!("create {}", p.run_dir(&id).display()))?;
    let img = image_of(ctx, r)?;
    let bundle = p.bundle(&id);
    std::fs::create_dir_all(&bundle).with_context(|| format!("create {}", bundle.display()))?;
    let m = if bundle.join("upper").exists() {
        RootfsMount::remount(ctx.store, &img.layers()?, &bundle)?
    } else {
        RootfsMount::mount(ctx.store, &img, &bundle)?
    };
    let s = r.spec.clone();
    let root = Root::open(&m.rootfs)?;
    let usr = user::resolve(&root, &s.user)?;
    // The runtime refuses a missing cwd: make it, as Docker does.
    root.mkdir_all(Path::new(&s.cwd), 0, 0)
        .with_context(|| format!("working directory {}", s.cwd))?;
    drop(root);
    // /etc/hosts, /etc/hostname, /etc/resolv.conf.
    let hosts = dir.join("hosts");
    write_file(&dir.join("hostname"), &format!("{}\n", s.hostname))?;
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    write_file(&dir.join("resolv.conf"), &resolv)?;
    let netns = match s.network.as_str() {
        "none" => {
            write_file(&hosts, net::LOCALHOST)?;
            NetNs::New
        }
        "host" => {
            write_file(
                &hosts,
                &std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| net::LOCALHOST.into()),
            )?;
            NetNs::Host
        }
        n => {
            write_file(&hosts, net::LOCALHOST)?;
            let a = ctx
                .networks()
                .attach(n, &id, &r.name, &s.hostname, &hosts)?;
            let path = net::ip::netns_path(&a.netns);
            r.attachment = Some(a);
            p_save(p, r)?;
            NetNs::Path(path)
        }
    };
    let caps = spec::capabilities(&s.cap_add, &s.cap_drop)?;
    let seccomp = match s.seccomp.as_str() {
        "unconfined" => None,
        "default" | "" => {
            let pp = Path::new(seccomp::DEFAULT_PROFILE);
            if pp.exists() {
                Some(seccomp::load(pp, &caps)?)
            } else {
                eprintln!(
                    "pier: warning: {} is missing; the container runs without seccomp",
                    pp.display()
                );
                None
            }
        }
        path => Some(seccomp::load(Path::new(path), &caps)?),
    };
    let mut mounts = vec![
        spec::bind(&hosts.to_string_lossy(), "/etc/hosts", false),
        spec::bind(
            &dir.join("hostname").to_string_lossy(),
            "/etc/hostname",
            false,
        ),
        spec::bind(
            &dir.join("resolv.conf").to_string_lossy(),
            "/etc/resolv.conf",
            false,
        ),
    ];
    mounts.extend(s.mounts.iter().cloned());
    let mut args = s.args.clone();
    if s.init {
        let tini = Path::new("/usr/bin/tini-static");
        if !tini.exists() {
            bail!("--init needs {} (apt-get install tini)", tini.display());
        }
        mounts.push(spec::bind(&tini.to_string_lossy(), "/dev/init", true));
        let mut a = vec!["/dev/init".to_string(), "--".to_string()];
        a.extend(args);
        args = a;
    }
    let opts = SpecOpts {
        args,
        env: s.env.clone(),
        cwd: s.cwd.clone(),
        user: usr,
        terminal: s.tty,
        hostname: s.hostname.clone(),
        caps,
        seccomp,
        no_new_privileges: s.no_new_privileges,
        read_only: s.read_only,
        netns,
        mounts,
        memory: s.memory,
        cpus: s.cpus,
        pids: s.pids,
        cgroups_path: format!("{}/{id}", r.cgroup_parent.trim_end_matches('/')),
        annotations: vec![("org.pier.name".into(), r.name.clone())],
    };
    let cfg = spec::generate(&opts);
    write_file(
        &bundle.join("config.json"),
        &serde_json::to_string_pretty(&cfg)?,
    )?;
    // The shim.
    let rt = ctx.runtime(r);
    let mut cmd = Command::new(&ctx.shim);
    cmd.arg("--runtime")
        .arg(&rt.path)
        .arg("--runtime-arg=--root")
        .arg(format!("--runtime-arg={}", rt.root.display()))
        .arg("--bundle")
        .arg(&bundle)
        .arg("--id")
        .arg(&id)
        .arg("--state-dir")
        .arg(&shim_dir)
        .arg("--log-path")
        .arg(p.log(&id))
        .args(["--log-format", "cri", "--delete"])
        .arg("--exit-command")
        .arg(&ctx.pier);
    for a in &ctx.global_args {
        cmd.arg(format!("--exit-command-arg={a}"));
    }
    cmd.arg("--exit-command-arg=container-cleanup")
        .arg(format!("--exit-command-arg={id}"));
    if s.tty {
        cmd.arg("--terminal");
    }
    if s.stdin {
        cmd.arg("--stdin");
    }
    if start_now {
        cmd.arg("--start");
    }
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("run {}", ctx.shim.display()))?;
    if !out.status.success() {
        bail!(
            "{}",
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .trim_start_matches("berth-shim: ")
        );
    }
    r.started_at = Some(crate::archive::now_rfc3339());
    r.exit_code = None;
    r.finished_at = None;
    // Published ports.
    if !s.publish.is_empty() {
        match &r.attachment {
            Some(a) => {
                let shim_pid = container::shim_pid(p, &id).context("the shim is gone")?;
                let spec = proxy::ProxySpec {
                    target: a.ip,
                    ports: s.publish.clone(),
                    watch_pid: shim_pid,
                };
                let (pid, ports) = proxy::spawn(&ctx.pier, &id, &spec, &dir.join("proxy.log"))?;
                r.proxy_pid = Some(pid);
                r.ports = ports;
            }
            None if s.network == "host" => {} // Docker ignores -p with the host's network
            None => bail!(
                "-p needs a bridge network (the container's network is {})",
                s.network
            ),
        }
    }
    p_save(p, r)
}

fn p_save(p: &Paths, r: &Record) -> Result<()> {
    p.save(r)
}

/// Releases what a stopped container holds: proxy, network, rootfs mount
/// (its changes are kept). Records the exit. Takes the lock.
pub fn cleanup(ctx: &Ctx<'_>, id: &str, from_exit_command: bool) -> Result<()> {
    if from_exit_command {
        // Only for the shim of the current run: a late exit command of an
        // earlier run must not touch the container started since.
        let current = std::fs::read_to_string(ctx.paths.shim_dir(id).join("shim.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if current != Some(nix::unistd::getppid().as_raw()) {
            return Ok(());
        }
    }
    let _l = ctx.paths.lock(id)?;
    let mut r = ctx.paths.load(id)?;
    cleanup_locked(ctx, &mut r, from_exit_command, from_exit_command)
}

fn cleanup_locked(ctx: &Ctx<'_>, r: &mut Record, exited: bool, spawn_remove: bool) -> Result<()> {
    let p = &ctx.paths;
    if !exited && matches!(container::status(p, r), Status::Running) {
        bail!("container {} is running", r.name);
    }
    if let Some(pid) = r.proxy_pid.take() {
        proxy::stop(pid, &r.id);
    }
    if let Some(a) = r.attachment.take() {
        ctx.networks().detach(&a.network, &r.id)?;
    }
    RootfsMount::unmount_keep(&p.bundle(&r.id))?;
    if let Some(e) = container::exit_file(p, &r.id) {
        r.exit_code = Some(shim_client::exit_code(&e));
        r.finished_at = e["exited_at"].as_str().map(str::to_string);
    }
    p.save(r)?;
    if spawn_remove && r.auto_remove {
        // The shim waits for this command, so the removal (which waits
        // for the shim to leave) runs detached.
        let mut c = Command::new(&ctx.pier);
        c.args(&ctx.global_args)
            .args(["rm", "--force", &r.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid only.
        unsafe {
            c.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        c.spawn().context("start the removal")?;
    }
    Ok(())
}

/// Waits for the container to exit; returns its code.
pub fn wait(ctx: &Ctx<'_>, r: &Record) -> Result<i32> {
    let dir = ctx.paths.shim_dir(&r.id);
    loop {
        if let Some(e) = container::exit_file(&ctx.paths, &r.id) {
            return Ok(shim_client::exit_code(&e));
        }
        if container::shim_pid(&ctx.paths, &r.id).is_none() {
            if let Some(e) = container::exit_file(&ctx.paths, &r.id) {
                return Ok(shim_client::exit_code(&e));
            }
            return r
                .exit_code
                .with_context(|| format!("container {} is not running", r.name));
        }
        match shim_client::request(&dir, &json!({"op": "wait"}), None) {
            Ok(v) => return Ok(shim_client::exit_code(&v["exit"])),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Sends a signal through the shim.
pub fn kill(ctx: &Ctx<'_>, r: &Record, signal: &str) -> Result<()> {
    let st = container::status(&ctx.paths, r);
    if !matches!(st, Status::Running | Status::Created) {
        bail!("container {} is not running", r.name);
    }
    let via_shim = shim_client::request(
        &ctx.paths.shim_dir(&r.id),
        &json!({"op": "kill", "signal": signal, "all": false}),
        Some(Duration::from_secs(30)),
    );
    if via_shim.is_err() {
        // The shim does not answer: the runtime can still signal it.
        let rt = ctx.runtime(r);
        if rt.state(&r.id).is_some() {
            rt.kill(&r.id, signal);
            return Ok(());
        }
    }
    via_shim.map(|_| ())
}

/// Waits up to `limit` for the container to exit.
fn wait_for_exit(ctx: &Ctx<'_>, r: &Record, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if container::exit_file(&ctx.paths, &r.id).is_some()
            || container::shim_pid(&ctx.paths, &r.id).is_none()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `pier stop`: the stop signal, then SIGKILL after `timeout` seconds;
/// then the clean-up.
pub fn stop(ctx: &Ctx<'_>, r: &Record, timeout: Option<u64>) -> Result<()> {
    if matches!(
        container::status(&ctx.paths, r),
        Status::Running | Status::Created
    ) {
        let sig = if r.spec.stop_signal.is_empty() {
            "SIGTERM"
        } else {
            r.spec.stop_signal.as_str()
        };
        let _ = kill(ctx, r, sig);
        let deadline = Instant::now() + Duration::from_secs(timeout.unwrap_or(r.spec.stop_timeout));
        while container::exit_file(&ctx.paths, &r.id).is_none()
            && container::shim_pid(&ctx.paths, &r.id).is_some()
        {
            if Instant::now() >= deadline {
                let _ = kill(ctx, r, "SIGKILL");
                if !wait_for_exit(ctx, r, Duration::from_secs(30)) {
                    bail!("container {} did not exit after SIGKILL", r.name);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    cleanup(ctx, &r.id, false)
}

/// Waits (up to `limit`) for the shim to leave, then kills it.
pub fn reap_shim(ctx: &Ctx<'_>, id: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while let Some(pid) = container::shim_pid(&ctx.paths, id) {
        if Instant::now() >= deadline {
            // SAFETY: plain kill of the shim pier started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            std::thread::sleep(Duration::from_millis(50));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `pier rm`: removes a stopped container (running ones only with
/// `force`) and everything it has: state, mount, changes, log.
pub fn remove(ctx: &Ctx<'_>, r: &Record, force: bool) -> Result<()> {
    let st = container::status(&ctx.paths, r);
    if matches!(st, Status::Running | Status::Created) {
        if !force {
            bail!(
                "container {} is running: stop it first or use rm --force",
                r.name
            );
        }
        let _ = kill(ctx, r, "SIGKILL");
        if !wait_for_exit(ctx, r, Duration::from_secs(30)) {
            bail!("container {} did not exit after SIGKILL", r.name);
        }
    }
    // The shim runs its exit command (which takes the lock) before it
    // leaves: wait for it without holding the lock.
    reap_shim(ctx, &r.id, Duration::from_secs(15));
    let _l = ctx.paths.lock(&r.id)?;
    let Ok(mut rec) = ctx.paths.load(&r.id) else {
        return Ok(()); // removed meanwhile
    };
    cleanup_locked(ctx, &mut rec, true, false)?;
    let rt = ctx.runtime(&rec);
    rt.delete_force(&rec.id)?;
    let bundle = ctx.paths.bundle(&rec.id);
    if bundle.exists() {
        RootfsMount::unmount(ctx.store, &bundle)?;
    }
    container::remove_tree(&ctx.paths.run_dir(&rec.id))?;
    container::remove_tree(&ctx.paths.dir(&rec.id))?;
    Ok(())
}

/// The container's `config.json` process, for `exec`.
pub fn process_of(ctx: &Ctx<'_>, r: &Record) -> Result<Value> {
    let p = ctx.paths.bundle(&r.id).join("config.json");
    let v: Value = serde_json::from_slice(
        &std::fs::read(&p).with_context(|| format!("read {}", p.display()))?,
    )?;
    Ok(v["process"].clone())
}

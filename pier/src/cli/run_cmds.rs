//! `pier run`, `ps`, `logs`, `stop`, `kill`, `rm`, `exec`, `wait`, `start`,
//! `restart`, container `inspect`, and the internal `container-cleanup`
//! (the shim's exit command) and `port-proxy`.

use std::io::{IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use super::Cli;
use crate::image::resolve;
use crate::net::proxy;
use crate::run::container::{self, Paths, Record, RunSpec, Status};
use crate::run::create::{self, ProcessFlags};
use crate::run::lifecycle::{self, Ctx};
use crate::run::runtime::find_beside_pier;
use crate::run::shim_client::{self, frame};
use crate::store::Store;

/// `pier run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Container name.
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variable K=V (K alone: the host's value); repeatable.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// File of K=V lines; repeatable.
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Publish a port: [IP:]HOST:CONTAINER[/tcp|udp]; repeatable.
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Bind a host path or named volume: SRC:DST[:ro]; repeatable.
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// type=bind|volume|tmpfs,source=..,target=..[,readonly]; repeatable.
    #[arg(long = "mount")]
    pub mounts: Vec<String>,
    /// A tmpfs at PATH[:OPTIONS]; repeatable.
    #[arg(long = "tmpfs")]
    pub tmpfs: Vec<String>,
    /// Working directory.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// user[:group].
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Replace the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// none, host, bridge (default) or a network's name.
    #[arg(long, default_value = "bridge")]
    pub network: String,
    /// Hostname (default: the first 12 digits of the ID).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Memory limit (e.g. 256m).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// CPU limit (e.g. 0.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Most processes the container may have.
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Add a capability (or ALL); repeatable.
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL); repeatable.
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// seccomp=unconfined|PROFILE, no-new-privileges[:true|false].
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Read-only root filesystem.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Run tini as PID 1 (reaps zombies, forwards signals).
    #[arg(long)]
    pub init: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Signal to stop the container (default: the image's or SIGTERM).
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Seconds `pier stop` waits before SIGKILL.
    #[arg(long = "stop-timeout", default_value_t = 10)]
    pub stop_timeout: u64,
    /// The image.
    pub image: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `pier ps`.
#[derive(Args, Debug)]
pub struct PsArgs {
    /// All containers (default: running ones).
    #[arg(short, long)]
    pub all: bool,
    /// Only IDs.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `pier logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Keep printing new output until the container exits.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    /// Container.
    pub container: String,
}

/// `pier stop` / `pier restart`.
#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds before SIGKILL (default: the container's --stop-timeout).
    #[arg(short = 't', long = "time")]
    pub time: Option<u64>,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `pier kill`.
#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal (default KILL).
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `pier rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill it first if it runs.
    #[arg(short, long)]
    pub force: bool,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Containers by name or ID.
#[derive(Args, Debug)]
pub struct NamesArgs {
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `pier exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Environment K=V; repeatable.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// user[:group].
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Container.
    pub container: String,
    /// Command.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

/// Internal: the shim's exit command.
#[derive(Args, Debug)]
pub struct CleanupArgs {
    /// Container ID.
    pub id: String,
}

/// Internal: the port proxy of a container.
#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Container ID (for `ps` and for `pier stop` to find it).
    pub id: String,
}

fn ctx<'a>(cli: &Cli, store: &'a Store) -> Result<Ctx<'a>> {
    let root = std::fs::canonicalize(&cli.root)?;
    std::fs::create_dir_all(&cli.runroot)
        .with_context(|| format!("create {}", cli.runroot.display()))?;
    let runroot = std::fs::canonicalize(&cli.runroot)?;
    let pier = std::env::current_exe().context("find the pier binary")?;
    let shim = find_beside_pier("berth-shim")?;
    Ok(Ctx {
        store,
        paths: Paths {
            root: root.clone(),
            runroot: runroot.clone(),
        },
        pier,
        shim,
        global_args: vec![
            "--root".into(),
            root.to_string_lossy().into_owned(),
            "--runroot".into(),
            runroot.to_string_lossy().into_owned(),
        ],
    })
}

fn parse_security(r: &RunArgs, s: &mut RunSpec) -> Result<()> {
    s.seccomp = "default".into();
    for o in &r.security_opt {
        let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), ""));
        match k {
            "seccomp" => {
                if v.is_empty() {
                    bail!("--security-opt seccomp needs =unconfined or =PROFILE");
                }
                if v != "unconfined" {
                    let p =
                        std::fs::canonicalize(v).with_context(|| format!("seccomp profile {v}"))?;
                    s.seccomp = p.to_string_lossy().into_owned();
                } else {
                    s.seccomp = v.into();
                }
            }
            "no-new-privileges" => {
                s.no_new_privileges = matches!(v, "" | "true" | "1");
            }
            _ => bail!("--security-opt {o}: unsupported (seccomp=..., no-new-privileges)"),
        }
    }
    Ok(())
}

pub(super) fn run(cli: &Cli, a: &RunArgs) -> Result<i32> {
    let store = cli.open_store()?;
    let ctx = ctx(cli, &store)?;
    let runtime = cli.runtime()?;
    let (_, img) = resolve(&store, &a.image)?;
    let config: Value = serde_json::from_slice(&img.config_bytes).context("parse image config")?;
    let id = container::new_id();
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| container::default_name(&id));
    if !container::valid_name(&name) {
        bail!("invalid container name {name:?}");
    }
    let hostname = a.hostname.clone().unwrap_or_else(|| id[..12].to_string());
    let mut spec = RunSpec {
        tty: a.tty,
        stdin: a.interactive,
        hostname: hostname.clone(),
        network: a.network.clone(),
        memory: a.memory.as_deref().map(create::parse_size).transpose()?,
        cpus: a.cpus,
        pids: a.pids_limit,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        read_only: a.read_only,
        init: a.init,
        stop_signal: a.stop_signal.clone().unwrap_or_default(),
        stop_timeout: a.stop_timeout,
        ..RunSpec::default()
    };
    if let Some(c) = a.cpus {
        if c <= 0.0 {
            bail!("--cpus must be positive");
        }
    }
    if !spec.stop_signal.is_empty() {
        crate::run::signals::parse(&spec.stop_signal)?;
    }
    crate::run::spec::capabilities(&a.cap_add, &a.cap_drop)?;
    parse_security(a, &mut spec)?;
    match a.network.as_str() {
        "none" | "host" => {}
        n => {
            crate::net::Networks::new(&ctx.paths.root, &ctx.paths.runroot).get(n)?;
        }
    }
    for p in &a.publish {
        spec.publish.push(proxy::parse_publish(p)?);
    }
    if !spec.publish.is_empty() && a.network == "none" {
        bail!("-p cannot publish ports of a container with --network none");
    }
    for v in &a.volumes {
        spec.mounts.push(create::volume(v, &ctx.paths.root)?);
    }
    for m in &a.mounts {
        spec.mounts.push(create::mount_flag(m, &ctx.paths.root)?);
    }
    for t in &a.tmpfs {
        spec.mounts.push(create::tmpfs(t)?);
    }
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(create::env_file(f)?);
    }
    env.extend(a.env.iter().filter_map(|e| create::env_entry(e)));
    create::process(
        &mut spec,
        &config,
        &ProcessFlags {
            entrypoint: a.entrypoint.as_deref(),
            command: &a.command,
            env,
            workdir: a.workdir.as_deref(),
            user: a.user.as_deref(),
            tty: a.tty,
            hostname: &hostname,
        },
    )?;
    let mut rec = Record {
        id: id.clone(),
        name: name.clone(),
        image: a.image.clone(),
        image_id: img.config_digest.to_string(),
        manifest: img.manifest_digest.to_string(),
        created: crate::archive::now_rfc3339(),
        runtime: runtime.path.clone(),
        cgroup_parent: cli.cgroup_parent.clone(),
        // A foreground run removes the container itself once it exited;
        // a detached one leaves that to the shim's exit command.
        auto_remove: a.rm && a.detach,
        spec,
        started_at: None,
        finished_at: None,
        exit_code: None,
        attachment: None,
        ports: Vec::new(),
        proxy_pid: None,
    };
    {
        let _l = ctx.paths.list_lock()?;
        if ctx.paths.list()?.iter().any(|r| r.name == name) {
            bail!("the container name {name:?} is already in use");
        }
        ctx.paths.save(&rec)?;
    }
    crate::interrupt::install();
    let started = {
        let _l = ctx.paths.lock(&id)?;
        lifecycle::start(&ctx, &mut rec, a.detach)
    };
    if let Err(e) = started {
        let _ = lifecycle::remove(&ctx, &rec, true);
        return Err(e);
    }
    if a.detach {
        println!("{id}");
        return Ok(0);
    }
    let code = attach_and_start(&ctx, &rec, a.interactive, a.tty);
    let _ = lifecycle::cleanup(&ctx, &id, false);
    if a.rm {
        if let Ok(rec) = ctx.paths.load(&id) {
            lifecycle::remove(&ctx, &rec, true)?;
        }
    }
    code
}

/// Puts the local terminal in raw mode while alive.
struct RawTerm(Option<nix::sys::termios::Termios>);

impl RawTerm {
    fn new(on: bool) -> RawTerm {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        if !on || !std::io::stdin().is_terminal() {
            return RawTerm(None);
        }
        let stdin = std::io::stdin();
        let Ok(orig) = tcgetattr(&stdin) else {
            return RawTerm(None);
        };
        let mut raw = orig.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        RawTerm(Some(orig))
    }
}

impl Drop for RawTerm {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

/// Sends our stdin to the shim as frames (a thread; ends at end of file).
fn forward_stdin(mut s: UnixStream) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        let mut stdin = std::io::stdin();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = shim_client::write_frame(&mut s, frame::CLOSE_STDIN, &[]);
                    return;
                }
                Ok(n) => {
                    if shim_client::write_frame(&mut s, frame::STDIN, &buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

/// Relays frames until the exit frame; signals received meanwhile go to
/// the container (`kill` through the shim). Returns the exit code.
fn relay(ctx: &Ctx<'_>, rec: &Record, mut s: UnixStream) -> Result<Option<i32>> {
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    loop {
        let sig = crate::interrupt::take();
        if sig != 0 {
            let _ = shim_client::request(
                &ctx.paths.shim_dir(&rec.id),
                &json!({"op": "kill", "signal": sig}),
                Some(Duration::from_secs(10)),
            );
        }
        match shim_client::read_frame(&mut s) {
            Ok(Some((frame::STDOUT, d))) => {
                out.write_all(&d)?;
                out.flush()?;
            }
            Ok(Some((frame::STDERR, d))) => {
                err.write_all(&d)?;
            }
            Ok(Some((frame::EXIT, d))) => {
                let v: Value = serde_json::from_slice(&d).unwrap_or_default();
                return Ok(Some(shim_client::exit_code(&v)));
            }
            Ok(Some((frame::DROPPED, _))) | Ok(None) => return Ok(None),
            Ok(Some(_)) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e).context("read from the shim"),
        }
    }
}

fn attach_and_start(ctx: &Ctx<'_>, rec: &Record, stdin: bool, tty: bool) -> Result<i32> {
    let dir = ctx.paths.shim_dir(&rec.id);
    let (s, _) = shim_client::stream(&dir, &json!({"op": "attach", "stdin": stdin}))?;
    let _raw = RawTerm::new(tty && stdin);
    if tty {
        if let Some((rows, cols)) = term_size() {
            let _ = shim_client::request(
                &dir,
                &json!({"op": "resize", "rows": rows, "cols": cols}),
                Some(Duration::from_secs(5)),
            );
        }
    }
    shim_client::request(&dir, &json!({"op": "start"}), Some(Duration::from_secs(60)))?;
    if stdin {
        forward_stdin(s.try_clone()?);
    }
    match relay(ctx, rec, s)? {
        Some(c) => Ok(c),
        None => lifecycle::wait(ctx, rec),
    }
}

fn term_size() -> Option<(u16, u16)> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the struct.
    let r = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

fn short_cmd(r: &Record) -> String {
    let c = r.spec.args.join(" ");
    if c.chars().count() > 20 {
        format!("\"{}…\"", c.chars().take(19).collect::<String>())
    } else {
        format!("\"{c}\"")
    }
}

fn ago(ts: &str) -> String {
    let Ok(t) = humantime::parse_rfc3339(ts) else {
        return ts.to_string();
    };
    let d = std::time::SystemTime::now()
        .duration_since(t)
        .unwrap_or_default()
        .as_secs();
    match d {
        0..=59 => format!("{d} seconds ago"),
        60..=3599 => format!("{} minutes ago", d / 60),
        3600..=86399 => format!("{} hours ago", d / 3600),
        _ => format!("{} days ago", d / 86400),
    }
}

pub(super) fn ps(cli: &Cli, a: &PsArgs) -> Result<()> {
    let store = cli.open_store()?;
    let ctx = ctx(cli, &store)?;
    let mut rows = Vec::new();
    for r in ctx.paths.list()? {
        let st = container::status(&ctx.paths, &r);
        if !a.all && st != Status::Running {
            continue;
        }
        if a.quiet {
            println!("{}", &r.id[..12]);
            continue;
        }
        let status = match &st {
            Status::Running => "Up".to_string(),
            Status::Created => "Created".to_string(),
            Status::Exited(c) => match c {
                Some(c) => format!("Exited ({c})"),
                None => "Exited".to_string(),
            },
        };
        let ports = r
            .ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        rows.push([
            r.id[..12].to_string(),
            r.image.clone(),
            short_cmd(&r),
            ago(&r.created),
            status,
            if st == Status::Running {
                ports
            } else {
                String::new()
            },
            r.name.clone(),
        ]);
    }
    if a.quiet {
        return Ok(());
    }
    let head = [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    let mut w = [0usize; 7];
    for (k, h) in head.iter().enumerate() {
        w[k] = rows
            .iter()
            .map(|r| r[k].chars().count())
            .chain([h.len()])
            .max()
            .unwrap_or(0);
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (k, c) in cells.iter().enumerate() {
            if k + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}   ", width = w[k]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(head.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    Ok(())
}

/// Prints CRI log records from `data` (complete lines only); returns the
/// bytes consumed.
fn print_cri(data: &[u8], out: &mut dyn Write, err: &mut dyn Write) -> usize {
    let mut used = 0;
    for line in data.split_inclusive(|b| *b == b'\n') {
        if !line.ends_with(b"\n") {
            break;
        }
        used += line.len();
        let l = &line[..line.len() - 1];
        let mut parts = l.splitn(4, |b| *b == b' ');
        let (_ts, stream, tag) = (parts.next(), parts.next(), parts.next());
        let text = parts.next().unwrap_or_default();
        let w: &mut dyn Write = if stream == Some(b"stderr") { err } else { out };
        let _ = w.write_all(text);
        if tag == Some(b"F") {
            let _ = w.write_all(b"\n");
        }
    }
    used
}

pub(super) fn logs(cli: &Cli, a: &LogsArgs) -> Result<()> {
    let store = cli.open_store()?;
    let ctx = ctx(cli, &store)?;
    let r = ctx.paths.find(&a.container)?;
    let path = ctx.paths.log(&r.id);
    let data = std::fs::read(&path).unwrap_or_default();
    let mut start = 0;
    if let Some(n) = a.tail {
        // Where each logical line begins (after an `F` record).
        let mut starts = vec![0usize];
        let mut pos = 0;
        for line in data.split_inclusive(|b| *b == b'\n') {
            pos += line.len();
            if line.ends_with(b"\n") && line.splitn(4, |b| *b == b' ').nth(2) == Some(b"F") {
                starts.push(pos);
            }
        }
        if starts.last() == Some(&data.len()) {
            starts.pop(); // the end of the last line starts nothing
        }
        start = if starts.len() > n {
            starts[starts.len() - n]
        } else {
            0
        };
        if n == 0 {
            start = data.len();
        }
    }
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let mut off = start + print_cri(&data[start..], &mut out, &mut err);
    if !a.follow {
        return Ok(());
    }
    crate::interrupt::install();
    loop {
        let running = matches!(
            container::status(&ctx.paths, &r),
            Status::Running | Status::Created
        );
        let data = std::fs::read(&path).unwrap_or_default();
        if data.len() < off {
            off = 0; // rotated or replaced
        }
        off += print_cri(&data[off..], &mut out, &mut err);
        let _ = out.flush();
        if !running || crate::interrupt::interrupted() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(super) fn stop(cli: &Cli, a: &StopArgs) -> Result<()> {
    let store = cli.open_store()?;
    let ctx = ctx(cli, &store)?;
    for c in &a.containers {
        let r = ctx.paths.find(c)?;
        lifecycle::stop(&ctx, &r, a.time)?;
        println!("{c}");
    }
    Ok(())
}

pub(super) fn kill(cli: &Cli, a: &KillArgs) -> Result<()> {
    let store = cli.open_store()?;
    let ctx = ctx(cli, &store)?;
    let sig = crate::run::signals::parse(&a.signal)?;
    for c in &a.containers {
        let r = ctx.paths.find(c)?;
        lifecycle::kill(&ctx, &r, sig.as_str())?;
        println!("{c}");
    }
    Ok(())
}

pub(super) fn rm(cli: &Cli, a: &RmArgs) -> Result<()> {
    let store = cli.open_store()?;
    let ctx = ctx(cli, &store)?;
    let mut failed = None;
    for c in &a.containers {
        match ctx
            .paths
            .find(c)
            .and_then(|r| lifecycle::remove(&ctx, &r, a.force))
        {
            Ok(()) => println!("{c}"),
            Err(e) => {
                eprintln!("pier: {e:#}");
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) if a.containers.len() == 1 => Err(e),
        Some(_) => bail!("some containers could not be removed"),
        None => Ok(()),
    }
}

pub(super) fn wait(cli: &Cli, a: &NamesArgs) -> Result<i32> {
    let store = cli.open_store()?;
    let ctx = ctx(cli, &store)?;
    let mut last = 0;
    for c in &a.containers {
        let r = ctx.paths.find(c)?;
        last = lifecycle::wait(&ctx, &r)?;
        println!("{last}");
    }
    Ok(last)
}

pub(super) fn start(cli: &Cli, a: &NamesArgs) -> Result<()> {
    let store = cli.open_store()?;
    let ctx = ctx(cli, &store)?;
    for c in &a.containers {
        let r = ctx.paths.find(c)?;
        if container::status(&ctx.paths, &r) == Status::Running {
            println!("{c}");
            continue;
        }
        // The previous run's shim must be gone (it runs its exit command,
        // which takes the lock, then deletes the runtime's container)
        // before a new one starts under the same ID and state dir.
        lifecycle::reap_shim(&ctx, &r.id, Duration::from_secs(15));
        let _l = ctx.paths.lock(&r.id)?;
        let mut r = ctx.paths.load(&r.id)?;
        if container::shim_pid(&ctx.paths, &r.id).is_some() {
            bail!("container {c}: its previous shim is still running");
        }
        let rt = ctx.runtime(&r);
        rt.delete_force(&r.id)?;
        lifecycle::start(&ctx, &mut r, true)?;
        println!("{c}");
    }
    Ok(())
}

pub(super) fn restart(cli: &Cli, a: &StopArgs) -> Result<()> {
    stop(cli, a)?;
    start(
        cli,
        &NamesArgs {
            containers: a.containers.clone(),
        },
    )
}

pub(super) fn exec(cli: &Cli, a: &ExecArgs) -> Result<i32> {
    let store = cli.open_store()?;
    let ctx = ctx(cli, &store)?;
    let r = ctx.paths.find(&a.container)?;
    if container::status(&ctx.paths, &r) != Status::Running {
        bail!("container {} is not running", r.name);
    }
    let mut p = lifecycle::process_of(&ctx, &r)?;
    p["args"] = json!(a.command);
    p["terminal"] = json!(a.tty);
    let mut env: Vec<String> = p["env"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for e in a.env.iter().filter_map(|e| create::env_entry(e)) {
        create::set_env(&mut env, &e);
    }
    p["env"] = json!(env);
    if let Some(w) = &a.workdir {
        p["cwd"] = json!(w);
    }
    if let Some(u) = &a.user {
        let root = crate::inroot::Root::open(&ctx.paths.bundle(&r.id).join("rootfs"))?;
        let usr = crate::run::user::resolve(&root, u)?;
        p["user"] = json!({"uid": usr.uid, "gid": usr.gid, "additionalGids": usr.additional_gids});
        if usr.uid != 0 {
            p["capabilities"]["effective"] = json!([]);
            p["capabilities"]["permitted"] = json!([]);
        }
    }
    crate::interrupt::install();
    let dir = ctx.paths.shim_dir(&r.id);
    let (s, _) = shim_client::stream(
        &dir,
        &json!({"op": "exec", "process": p, "stdin": a.interactive}),
    )?;
    let _raw = RawTerm::new(a.tty && a.interactive);
    if a.interactive {
        forward_stdin(s.try_clone()?);
    }
    match relay(&ctx, &r, s)? {
        Some(c) => Ok(c),
        None => bail!("lost the exec session (the shim dropped it)"),
    }
}

/// Container inspect JSON (None if no container matches).
pub(super) fn inspect_container(cli: &Cli, name: &str) -> Result<Option<Value>> {
    let store = cli.open_store()?;
    let ctx = ctx(cli, &store)?;
    let Ok(r) = ctx.paths.find(name) else {
        return Ok(None);
    };
    let st = container::status(&ctx.paths, &r);
    let pid = std::fs::read_to_string(ctx.paths.shim_dir(&r.id).join("pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|_| st == Status::Running)
        .unwrap_or(0);
    let exit = match &st {
        Status::Exited(c) => c.unwrap_or(-1),
        _ => 0,
    };
    Ok(Some(json!({
        "Id": r.id,
        "Name": r.name,
        "Created": r.created,
        "Image": r.image,
        "ImageId": r.image_id,
        "State": {
            "Status": st.word(),
            "Running": st == Status::Running,
            "Pid": pid,
            "ExitCode": exit,
            "StartedAt": r.started_at,
            "FinishedAt": r.finished_at,
        },
        "Config": r.spec,
        "Runtime": r.runtime,
        "CgroupsPath": format!("{}/{}", r.cgroup_parent.trim_end_matches('/'), r.id),
        "AutoRemove": r.auto_remove,
        "NetworkSettings": {
            "Network": r.spec.network,
            "IPAddress": r.attachment.as_ref().map(|x| x.ip.to_string()).unwrap_or_default(),
            "Gateway": r.attachment.as_ref().map(|x| x.gateway.to_string()).unwrap_or_default(),
            "Ports": r.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "SandboxKey": r.attachment.as_ref().map(|x| crate::net::ip::netns_path(&x.netns)),
        },
        "LogPath": ctx.paths.log(&r.id),
        "Bundle": ctx.paths.bundle(&r.id),
    })))
}

pub(super) fn container_cleanup(cli: &Cli, a: &CleanupArgs) -> Result<()> {
    let store = cli.open_store()?;
    let ctx = ctx(cli, &store)?;
    if !ctx.paths.dir(&a.id).join("container.json").exists() {
        return Ok(()); // removed already
    }
    lifecycle::cleanup(&ctx, &a.id, true)
}

pub(super) fn port_proxy(_cli: &Cli, _a: &ProxyArgs) -> Result<()> {
    proxy::serve()
}

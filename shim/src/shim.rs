//! `berth-shim --runtime ... --state-dir DIR`: check the arguments, make the
//! state directory, daemonize, create the container, serve until it ended.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::cli::Options;
use crate::control::{self, Server};
use crate::core::{self, Core, CoreConfig};
use crate::daemon;
use crate::failpoint;
use crate::logfile::LogConfig;
use crate::runtime::Runtime;

/// The shim's own error log in the state directory.
pub const SHIM_LOG: &str = "shim.log";
/// How the shim was started, for clients (`ctl state` when it is gone).
pub const SHIM_JSON: &str = "shim.json";
/// The shim's pid.
pub const SHIM_PID: &str = "shim.pid";

/// Longest path a Unix socket address holds.
const SUN_PATH_MAX: usize = 107;

/// Runs a shim; returns the process's exit code (only the daemon returns:
/// the caller's process exits in [`daemon::daemonize`]).
pub fn main(o: Options) -> i32 {
    let (cfg, start) = match prepare(o) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("berth-shim: {e:#}");
            return 1;
        }
    };
    let created_dir = match make_state_dir(&cfg.state_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth-shim: {e:#}");
            return 1;
        }
    };
    failpoint::hit("shim-after-state-dir");
    let notifier = match daemon::daemonize(&cfg.state_dir.join(SHIM_LOG)) {
        Ok(n) => {
            failpoint::hit("shim-after-daemonize");
            n
        }
        Err(e) => {
            eprintln!("berth-shim: {e:#}");
            cleanup(&cfg, created_dir, false);
            return 1;
        }
    };
    let log_existed = cfg.log.as_ref().is_some_and(|l| l.path.exists());
    match setup(&cfg, start) {
        Ok((mut core, server)) => {
            notifier.ok();
            failpoint::hit("shim-after-ready");
            match server.run(&mut core) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("berth-shim: {e:#}");
                    1
                }
            }
        }
        Err(e) => {
            // Clean up first: the caller returns as soon as it hears.
            cleanup(&cfg, created_dir, log_existed);
            notifier.fail(&format!("{e:#}"));
            1
        }
    }
}

/// Creates (and starts) the container and binds the control socket.
fn setup(cfg: &CoreConfig, start: bool) -> Result<(Core, Server)> {
    let signals = core::block_signals()?;
    let mut core = Core::create(cfg.clone(), signals)?;
    failpoint::hit("shim-after-adopt");
    let ready = (|| {
        let server = Server::bind(&cfg.state_dir)?;
        if start {
            core.start()?;
            failpoint::hit("shim-after-start");
        }
        write_info(cfg)?;
        Ok(server)
    })();
    match ready {
        Ok(server) => Ok((core, server)),
        Err(e) => {
            core.destroy();
            Err(e)
        }
    }
}

/// Checks the options and turns them into the core's configuration (all
/// paths absolute: the daemon runs in /).
fn prepare(o: Options) -> Result<(CoreConfig, bool)> {
    let runtime = resolve_program(&o.runtime)?;
    let bundle = std::fs::canonicalize(&o.bundle)
        .with_context(|| format!("bundle {}", o.bundle.display()))?;
    if !bundle.join("config.json").is_file() {
        bail!("bundle {} has no config.json", bundle.display());
    }
    check_terminal(&bundle, o.terminal)?;
    let state_dir = absolute(&o.state_dir)?;
    let sock = state_dir.join(control::SOCKET);
    if sock.as_os_str().len() > SUN_PATH_MAX {
        bail!(
            "state dir path is too long for a Unix socket ({})",
            sock.display()
        );
    }
    let log = match &o.log_path {
        Some(p) => Some(LogConfig {
            path: absolute(p)?,
            format: o.log_format,
            max_size: o.log_max_size,
            max_files: o.log_max_files,
        }),
        None => None,
    };
    if let Some(l) = &log {
        if let Some(m) = l.max_size {
            if m < crate::logfile::MIN_MAX_SIZE {
                bail!("--log-max-size {m} is below the minimum of 4096 bytes");
            }
        }
    }
    let exit_command = match &o.exit_command {
        Some(p) => Some((resolve_program(p)?, o.exit_command_args.clone())),
        None => None,
    };
    let cfg = CoreConfig {
        runtime: Runtime {
            path: runtime,
            args: o.runtime_args,
        },
        id: o.id,
        bundle,
        state_dir,
        log,
        terminal: o.terminal,
        stdin: o.stdin || o.terminal,
        exit_command,
        delete_on_exit: o.delete,
        client_buffer: o.client_buffer.max(1),
        client_timeout: o.client_timeout,
    };
    Ok((cfg, o.start))
}

/// `--terminal` must match the bundle's process.terminal: a mismatch would
/// make the runtime fail late or leave the container without its pty.
fn check_terminal(bundle: &Path, terminal: bool) -> Result<()> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("parse {}", path.display()))?;
    let wants = v["process"]["terminal"].as_bool().unwrap_or(false);
    match (wants, terminal) {
        (true, false) => bail!("the bundle's process.terminal is true: pass --terminal"),
        (false, true) => bail!("--terminal was given but the bundle's process.terminal is false"),
        _ => Ok(()),
    }
}

/// An absolute path for `p` (made from the current directory if relative).
fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("current directory")?
            .join(p))
    }
}

/// A program path: as given if it has a slash, else looked up in PATH.
fn resolve_program(p: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exe = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if p.as_os_str().to_string_lossy().contains('/') {
        let abs = absolute(p)?;
        if !is_exe(&abs) {
            bail!("{} is not an executable file", abs.display());
        }
        return Ok(abs);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| is_exe(c))
        .with_context(|| format!("{} not found in PATH", p.display()))
}

/// Creates the state directory; an existing one must be empty. Returns
/// whether it was created.
fn make_state_dir(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("state dir {} is not empty", dir.display());
            }
            Ok(false)
        }
        Err(_) => {
            // Only root may reach the control socket: it runs processes in
            // the container.
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(dir)
            .with_context(|| format!("create state dir {}", dir.display()))?;
            Ok(true)
        }
    }
}

/// Removes what a failed start left: the state directory (or the files in
/// it, when the caller made it) and a log file the shim created.
fn cleanup(cfg: &CoreConfig, created_dir: bool, log_existed: bool) {
    if created_dir {
        let _ = std::fs::remove_dir_all(&cfg.state_dir);
    } else if let Ok(entries) = std::fs::read_dir(&cfg.state_dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some(l) = &cfg.log {
        if !log_existed {
            let _ = std::fs::remove_file(&l.path);
        }
    }
}

fn write_info(cfg: &CoreConfig) -> Result<()> {
    let info = json!({
        "shim_pid": std::process::id(),
        "id": cfg.id,
        "bundle": cfg.bundle,
        "runtime": cfg.runtime.path,
        "runtime_args": cfg.runtime.args,
        "log_path": cfg.log.as_ref().map(|l| &l.path),
        "terminal": cfg.terminal,
    });
    let dir = &cfg.state_dir;
    std::fs::write(dir.join(SHIM_PID), format!("{}\n", std::process::id()))
        .with_context(|| format!("write {}", dir.join(SHIM_PID).display()))?;
    std::fs::write(dir.join(SHIM_JSON), serde_json::to_vec_pretty(&info)?)
        .with_context(|| format!("write {}", dir.join(SHIM_JSON).display()))?;
    Ok(())
}

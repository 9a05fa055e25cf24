//! The command line, shaped like runc's so that containerd, Podman, Docker and
//! conformance harnesses can call berth exactly as they call runc.

mod create;
mod delete;
mod events;
mod exec;
mod features;
mod kill;
mod list;
mod pause;
mod ps;
mod resume;
mod run;
mod spec;
mod start;
mod state;
mod update;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::logging::{self, Format};

/// Options every subcommand understands (runc's global flags).
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Root directory for the containers' state.
    #[arg(long, global = true, default_value = "/run/berth", value_name = "DIR")]
    pub root: PathBuf,
    /// Write log records to this file (default: errors go to stderr only).
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Format of the log records.
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    pub log_format: Format,
    /// Log debug records too.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use the systemd cgroup driver (needs a running systemd).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Rootless mode: true, false or auto (berth runs as root: only false/auto work).
    #[arg(long, global = true, value_name = "true|false|auto", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub rootless: Option<String>,
}

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    about = "berth: a runc-compatible OCI container runtime",
    disable_version_flag = true,
    subcommand_required = false
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    /// Print the version.
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a container from a bundle; it waits for `start`.
    Create(create::Args),
    /// Run the user process of a created container.
    Start(start::Args),
    /// Print the state of a container as JSON.
    State(state::Args),
    /// Send a signal to a container's init (or, with --all, to all its processes).
    Kill(kill::Args),
    /// Delete a container and everything it holds on the host.
    Delete(delete::Args),
    /// Run a new process in a running container.
    Exec(exec::Args),
    /// Create and start a container (in the foreground unless --detach).
    Run(run::Args),
    /// List containers.
    List(list::Args),
    /// Write a default config.json.
    Spec(spec::Args),
    /// Print what this runtime supports (runtime-spec features JSON).
    Features(features::Args),
    /// Freeze every process of a container.
    Pause(pause::Args),
    /// Thaw a paused container.
    Resume(resume::Args),
    /// List the processes of a container.
    Ps(ps::Args),
    /// Change the resource limits of a running container.
    Update(Box<update::Args>),
    /// Stream a container's stats and OOM events as JSON (or print stats once).
    Events(events::Args),
    /// Subcommands of runc that berth does not have yet.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

/// Subcommands runc has that later work will add; asking for one is a clear
/// error rather than "unknown command".
const NOT_YET: &[&str] = &["checkpoint", "restore"];

/// Version lines as runc prints them.
pub fn version_text() -> String {
    format!(
        "berth version {}\ncommit: {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        option_env!("BERTH_COMMIT").unwrap_or("unknown"),
        oci_spec::runtime::VERSION
    )
}

/// Parses the command line, runs it, reports errors; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    if cli.version {
        print!("{}", version_text());
        return 0;
    }
    if let Err(e) = logging::init(
        cli.global.log.as_deref(),
        cli.global.log_format,
        cli.global.debug,
    ) {
        eprintln!("berth: {e:#}");
        return 1;
    }
    let Some(command) = cli.command else {
        eprintln!("berth: no command given (see berth --help)");
        return 1;
    };
    match dispatch(&cli.global, command) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            logging::log("error", &msg);
            eprintln!("berth: {msg}");
            1
        }
    }
}

fn dispatch(g: &Global, command: Command) -> Result<i32> {
    if !matches!(command, Command::Spec(_)) {
        check_rootless(g)?;
    }
    match command {
        Command::Create(a) => create::run(g, a).map(|()| 0),
        Command::Start(a) => start::run(g, a).map(|()| 0),
        Command::State(a) => state::run(g, a).map(|()| 0),
        Command::Kill(a) => kill::run(g, a).map(|()| 0),
        Command::Delete(a) => delete::run(g, a).map(|()| 0),
        Command::Exec(a) => exec::run(g, a),
        Command::Run(a) => run::run(g, a),
        Command::List(a) => list::run(g, a).map(|()| 0),
        Command::Spec(a) => spec::run(g, a).map(|()| 0),
        Command::Features(a) => features::run(g, a).map(|()| 0),
        Command::Pause(a) => pause::run(g, a).map(|()| 0),
        Command::Resume(a) => resume::run(g, a).map(|()| 0),
        Command::Ps(a) => ps::run(g, a).map(|()| 0),
        Command::Update(a) => update::run(g, *a).map(|()| 0),
        Command::Events(a) => events::run(g, a).map(|()| 0),
        Command::Other(args) => {
            let name = args.first().map(String::as_str).unwrap_or("");
            if NOT_YET.contains(&name) {
                anyhow::bail!("\"{name}\" is not implemented in berth yet");
            }
            anyhow::bail!("unknown command {name:?} (see berth --help)")
        }
    }
}

fn check_rootless(g: &Global) -> Result<()> {
    match g.rootless.as_deref() {
        None | Some("false") | Some("auto") => Ok(()),
        Some("true") => {
            anyhow::bail!("--rootless=true: rootless containers are not supported by berth yet")
        }
        Some(v) => anyhow::bail!("--rootless: invalid value {v:?} (true, false or auto)"),
    }
}

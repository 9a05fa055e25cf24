//! The `pier` command line (image commands). Each subcommand is a thin
//! layer over the library.

mod archive_cmds;
mod build_cmd;
mod image_cmds;
mod net_cmds;
mod run_cmds;
mod transfer_cmds;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::reference::ImageRef;
use crate::registry::{self, auth};
use crate::store::{Store, DEFAULT_ROOT};

/// pier: container images (registry, store, overlayfs rootfs).
#[derive(Parser, Debug)]
#[command(name = "pier", version, about)]
pub struct Cli {
    /// Store directory.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Registry (host[:port]) to reach over plain HTTP; repeatable.
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    pub insecure: Vec<String>,
    /// Network timeout in seconds (connect, response, silence while reading).
    #[arg(long, global = true, default_value_t = 30)]
    pub timeout: u64,
    /// Credentials file (Docker config.json format).
    #[arg(long = "auth-file", global = true, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// State of running containers, shims and networks (a tmpfs).
    #[arg(long, global = true, default_value = "/run/pier")]
    pub runroot: PathBuf,
    /// OCI runtime binary (default: `berth` next to pier, or on PATH).
    #[arg(long, global = true, value_name = "PATH")]
    pub runtime: Option<PathBuf>,
    /// Absolute cgroup parent of containers and build steps.
    #[arg(long = "cgroup-parent", global = true, default_value = "/pier")]
    pub cgroup_parent: String,
    /// The command.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Pull an image from a registry.
    Pull(transfer_cmds::PullArgs),
    /// Push an image to a registry.
    Push(transfer_cmds::PushArgs),
    /// Store credentials for a registry (checked against it first).
    Login(transfer_cmds::LoginArgs),
    /// Forget the credentials of a registry.
    Logout(transfer_cmds::LogoutArgs),
    /// List images.
    Images(image_cmds::ImagesArgs),
    /// Show an image's manifest and config as JSON.
    Inspect(image_cmds::InspectArgs),
    /// Give an image another name.
    Tag(image_cmds::TagArgs),
    /// Remove image names, then their unreferenced blobs and layers.
    Rmi(image_cmds::RmiArgs),
    /// Remove blobs and layers no image uses, and leftover temporary files.
    Prune,
    /// Verify the store: blob digests, complete images, layers, leases.
    Check(image_cmds::CheckArgs),
    /// Mount an image's rootfs (overlayfs) at DIR/rootfs.
    Mount(image_cmds::MountArgs),
    /// Unmount DIR/rootfs and remove the container's changes.
    Umount(image_cmds::UmountArgs),
    /// Write an image as an OCI image layout tar.
    Save(archive_cmds::SaveArgs),
    /// Load images from an OCI image layout tar or a `docker save` tar.
    Load(archive_cmds::LoadArgs),
    /// Make a one-layer image from a root filesystem tar.
    Import(archive_cmds::ImportArgs),
    /// Build an image from a Dockerfile.
    Build(build_cmd::BuildArgs),
    /// Run a command in a new container.
    Run(Box<run_cmds::RunArgs>),
    /// List containers.
    Ps(run_cmds::PsArgs),
    /// Print a container's output.
    Logs(run_cmds::LogsArgs),
    /// Stop containers (stop signal, then SIGKILL).
    Stop(run_cmds::StopArgs),
    /// Send a signal to containers.
    Kill(run_cmds::KillArgs),
    /// Remove containers.
    Rm(run_cmds::RmArgs),
    /// Run a command in a running container.
    Exec(run_cmds::ExecArgs),
    /// Wait for containers to exit; print (and exit with) the exit code.
    Wait(run_cmds::NamesArgs),
    /// Start stopped containers.
    Start(run_cmds::NamesArgs),
    /// Stop and start containers.
    Restart(run_cmds::StopArgs),
    /// Manage networks.
    Network(net_cmds::NetworkArgs),
    /// Internal: release a stopped container's network and mount (the
    /// shim's exit command).
    #[command(hide = true)]
    ContainerCleanup(run_cmds::CleanupArgs),
    /// Internal: a container's port proxy.
    #[command(hide = true)]
    PortProxy(run_cmds::ProxyArgs),
}

impl Cli {
    fn auth_path(&self) -> PathBuf {
        self.auth_file
            .clone()
            .unwrap_or_else(auth::AuthFile::default_path)
    }

    fn open_store(&self) -> Result<Store> {
        Store::open(&self.root)
    }

    /// The runtime and its state root (`RUNROOT/runtime`).
    fn runtime(&self) -> Result<crate::run::runtime::Runtime> {
        if !self.cgroup_parent.starts_with('/') {
            anyhow::bail!("--cgroup-parent must be an absolute path");
        }
        crate::run::runtime::Runtime::new(self.runtime.as_deref(), self.runroot.join("runtime"))
    }

    /// Registry options for `r`, with stored credentials.
    fn registry_options(&self, r: &ImageRef) -> Result<registry::Options> {
        Ok(registry::Options {
            insecure: self.insecure.clone(),
            timeout: Duration::from_secs(self.timeout.max(1)),
            credentials: auth::lookup(&self.auth_path(), &r.registry)?,
        })
    }
}

/// Runs the CLI; returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let r = match &cli.cmd {
        Cmd::Run(a) => run_cmds::run(&cli, a),
        Cmd::Exec(a) => run_cmds::exec(&cli, a),
        Cmd::Wait(a) => run_cmds::wait(&cli, a),
        _ => run(&cli).map(|()| 0),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pier: {e:#}");
            1
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    match &cli.cmd {
        Cmd::Run(_) | Cmd::Exec(_) | Cmd::Wait(_) => unreachable!("handled in main"),
        Cmd::Ps(a) => run_cmds::ps(cli, a),
        Cmd::Logs(a) => run_cmds::logs(cli, a),
        Cmd::Stop(a) => run_cmds::stop(cli, a),
        Cmd::Kill(a) => run_cmds::kill(cli, a),
        Cmd::Rm(a) => run_cmds::rm(cli, a),
        Cmd::Start(a) => run_cmds::start(cli, a),
        Cmd::Restart(a) => run_cmds::restart(cli, a),
        Cmd::Network(a) => net_cmds::network(cli, a),
        Cmd::ContainerCleanup(a) => run_cmds::container_cleanup(cli, a),
        Cmd::PortProxy(a) => run_cmds::port_proxy(cli, a),
        Cmd::Pull(a) => transfer_cmds::pull(cli, a),
        Cmd::Push(a) => transfer_cmds::push(cli, a),
        Cmd::Login(a) => transfer_cmds::login(cli, a),
        Cmd::Logout(a) => transfer_cmds::logout(cli, a),
        Cmd::Images(a) => image_cmds::images(cli, a),
        Cmd::Inspect(a) => match run_cmds::inspect_container(cli, &a.image)? {
            Some(v) => {
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            }
            None => image_cmds::inspect(cli, a),
        },
        Cmd::Tag(a) => image_cmds::tag(cli, a),
        Cmd::Rmi(a) => image_cmds::rmi(cli, a),
        Cmd::Prune => image_cmds::prune(cli),
        Cmd::Check(a) => image_cmds::check(cli, a),
        Cmd::Mount(a) => image_cmds::mount(cli, a),
        Cmd::Umount(a) => image_cmds::umount(cli, a),
        Cmd::Save(a) => archive_cmds::save(cli, a),
        Cmd::Load(a) => archive_cmds::load(cli, a),
        Cmd::Import(a) => archive_cmds::import(cli, a),
        Cmd::Build(a) => build_cmd::build(cli, a),
    }
}

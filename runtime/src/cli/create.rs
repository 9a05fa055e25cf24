//! `berth create`.

use std::path::PathBuf;

use std::os::unix::net::UnixStream;

use anyhow::{Context, Result};

use super::Global;
use crate::container::create::{create, CreateOpts};

/// Flags shared by `create` and `run`.
#[derive(Debug, clap::Args)]
pub struct CreateFlags {
    /// Path to the bundle (directory holding config.json).
    #[arg(short = 'b', long, default_value = ".", value_name = "DIR")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is true.
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// File to write the container process's pid to.
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root (for a rootfs on a ramdisk).
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N extra descriptors (3 to 3+N-1) to the container process.
    #[arg(long = "preserve-fds", default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
}

impl CreateFlags {
    /// The create options for container `id`.
    pub fn opts(&self, g: &Global, id: &str) -> CreateOpts {
        CreateOpts {
            root: g.root.clone(),
            id: id.to_string(),
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
            systemd_cgroup: g.systemd_cgroup,
        }
    }
}

/// Arguments of `create`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    flags: CreateFlags,
    /// Container ID.
    id: String,
}

impl CreateFlags {
    /// Connects to `--console-socket`, if given.
    pub fn connect_console(&self) -> Result<Option<UnixStream>> {
        self.console_socket
            .as_ref()
            .map(|p| {
                UnixStream::connect(p)
                    .with_context(|| format!("connect to console socket {}", p.display()))
            })
            .transpose()
    }
}

/// Runs `create`.
pub fn run(g: &Global, a: Args) -> Result<()> {
    let console = a.flags.connect_console()?;
    create(&a.flags.opts(g, &a.id), console).map(drop)
}

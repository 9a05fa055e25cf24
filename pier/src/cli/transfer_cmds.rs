//! `pier pull`, `push`, `login`, `logout`.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::Cli;
use crate::image::{resolve, PlatformSpec};
use crate::pull::{pull as do_pull, PullOptions};
use crate::push::{push as do_push, PushOptions};
use crate::reference::ImageRef;
use crate::registry::auth::{AuthFile, Credentials};
use crate::registry::Client;

/// `pier pull`.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image reference (`busybox`, `host:port/repo:tag`, `repo@sha256:...`).
    pub reference: String,
    /// Platform to pick from a multi-platform index (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    /// Only download; unpack layers later (when a rootfs is mounted).
    #[arg(long)]
    pub no_unpack: bool,
    /// Blobs downloaded at once.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `pier push`.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// Image in the store.
    pub image: String,
    /// Where to push (default: the image's own name).
    pub destination: Option<String>,
    /// Upload blobs in PATCH chunks of this many bytes (default: one PUT).
    #[arg(long)]
    pub chunk_size: Option<u64>,
    /// Blobs uploaded at once.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `pier login`.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry host[:port] (an `http://` prefix means plain HTTP).
    pub registry: String,
    /// User name.
    #[arg(long, short)]
    pub username: String,
    /// Password (prefer --password-stdin: arguments are visible to others).
    #[arg(long, short)]
    pub password: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `pier logout`.
#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry host[:port].
    pub registry: String,
}

pub(super) fn pull(cli: &Cli, a: &PullArgs) -> Result<()> {
    let r = ImageRef::parse(&a.reference)?;
    let store = cli.open_store()?;
    let client = Client::new(&r, &cli.registry_options(&r)?, "pull", &[])?;
    let platform = match &a.platform {
        Some(p) => PlatformSpec::parse(p)?,
        None => PlatformSpec::host(),
    };
    let opts = PullOptions {
        platform,
        unpack: !a.no_unpack,
        parallel: a.parallel,
        progress: !a.quiet,
    };
    let p = do_pull(&store, &client, &r, &opts).with_context(|| format!("pull {r}"))?;
    println!("Pulled {}", p.name);
    println!("Digest: {}", p.index.as_ref().unwrap_or(&p.manifest));
    Ok(())
}

pub(super) fn push(cli: &Cli, a: &PushArgs) -> Result<()> {
    let store = cli.open_store()?;
    let (name, image) = resolve(&store, &a.image)?;
    let dest = match (&a.destination, &name) {
        (Some(d), _) => d.clone(),
        (None, Some(n)) => n.clone(),
        (None, None) => bail!(
            "{}: give a destination to push an image found by ID or digest",
            a.image
        ),
    };
    let target = ImageRef::parse(&dest)?;
    // Mount blobs from the repository the image came from, when it is on
    // the same registry.
    let source = name
        .as_ref()
        .and_then(|n| store.names().ok()?.images.get(n)?.source.clone())
        .and_then(|s| {
            s.strip_prefix(&format!("{}/", target.registry))
                .map(str::to_string)
        });
    let extra: Vec<String> = source.iter().cloned().collect();
    let client = Client::new(
        &target,
        &cli.registry_options(&target)?,
        "pull,push",
        &extra,
    )?;
    let opts = PushOptions {
        chunk_size: a.chunk_size,
        mount_from: source,
        progress: !a.quiet,
        parallel: a.parallel,
    };
    let p = do_push(&store, &client, &image, &target, &opts)
        .with_context(|| format!("push {target}"))?;
    println!("Pushed {target}");
    println!("Digest: {}", image.manifest_digest);
    eprintln!(
        "blobs: {} uploaded, {} mounted, {} already there",
        p.uploaded, p.mounted, p.existing
    );
    Ok(())
}

pub(super) fn login(cli: &Cli, a: &LoginArgs) -> Result<()> {
    let password = match (&a.password, a.password_stdin) {
        (Some(_), true) => bail!("give --password or --password-stdin, not both"),
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("read password from stdin")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => {
            if std::io::stdin().is_terminal() {
                bail!("give the password with --password-stdin (no prompt yet)");
            }
            bail!("give the password with --password-stdin");
        }
    };
    if password.is_empty() {
        bail!("empty password");
    }
    // Check the credentials against the registry before storing them.
    let r = ImageRef::parse(&format!(
        "{}/pier-login-check",
        a.registry.trim_end_matches('/')
    ))?;
    let mut opts = cli.registry_options(&r)?;
    let creds = Credentials {
        username: a.username.clone(),
        password,
    };
    opts.credentials = Some(creds.clone());
    Client::new(&r, &opts, "pull", &[])?.ping()?;
    let path = cli.auth_path();
    let mut f = AuthFile::load(&path)?;
    f.set(&r.registry, &creds);
    f.save(&path)?;
    println!("Login Succeeded ({} in {})", r.registry, path.display());
    Ok(())
}

pub(super) fn logout(cli: &Cli, a: &LogoutArgs) -> Result<()> {
    let host = a
        .registry
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let path = cli.auth_path();
    let mut f = AuthFile::load(&path)?;
    if !f.remove(host) {
        bail!("not logged in to {host}");
    }
    f.save(&path)?;
    println!("Removed login credentials for {host}");
    Ok(())
}

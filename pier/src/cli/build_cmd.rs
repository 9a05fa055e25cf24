//! `pier build`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::Cli;
use crate::build::{build as do_build, BuildOptions};
use crate::image::{Image, PlatformSpec};
use crate::pull::{pull, PullOptions};
use crate::reference::ImageRef;
use crate::registry::Client;
use crate::store::Store;

/// `pier build`.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The build context directory.
    pub context: PathBuf,
    /// Name (and tag) of the image; repeatable.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// A build argument K=V; repeatable.
    #[arg(long = "build-arg", value_name = "K=V")]
    pub build_args: Vec<String>,
    /// Build up to this stage.
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step, ignoring the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Platform of the base images (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    /// A label K=V for the image; repeatable.
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Network of RUN steps: none (default) or host.
    #[arg(long, default_value = "none")]
    pub network: String,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Splits `K=V` (a bare `K` takes its value from the environment, as
/// Docker's `--build-arg K`).
fn kv(s: &str, what: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        None if !s.is_empty() && what == "--build-arg" => {
            Ok((s.to_string(), std::env::var(s).unwrap_or_default()))
        }
        _ => bail!("{what} {s:?}: expected KEY=VALUE"),
    }
}

pub(super) fn build(cli: &Cli, a: &BuildArgs) -> Result<()> {
    let network_host = match a.network.as_str() {
        "none" | "default" => false,
        "host" => true,
        n => bail!("--network {n}: build containers support none or host"),
    };
    for t in &a.tags {
        ImageRef::parse(t).with_context(|| format!("-t {t}"))?;
    }
    let platform = a.platform.as_deref().map(PlatformSpec::parse).transpose()?;
    let build_args = a
        .build_args
        .iter()
        .map(|s| kv(s, "--build-arg"))
        .collect::<Result<_>>()?;
    let labels = a
        .labels
        .iter()
        .map(|s| kv(s, "--label"))
        .collect::<Result<_>>()?;
    let runtime = cli.runtime()?;
    let puller = |store: &Store, name: &str, platform: &PlatformSpec| -> Result<Image> {
        let r = ImageRef::parse(name)?;
        let client = Client::new(&r, &cli.registry_options(&r)?, "pull", &[])?;
        let opts = PullOptions {
            platform: platform.clone(),
            progress: false,
            ..PullOptions::default()
        };
        let p = pull(store, &client, &r, &opts).with_context(|| format!("pull {r}"))?;
        Image::load(store, &p.manifest)
    };
    crate::interrupt::install();
    let store = cli.open_store()?;
    // Containers and mounts of builds that were killed.
    crate::build::leftovers::reap_dead_steps(&store)?;
    let opts = BuildOptions {
        context: a.context.clone(),
        dockerfile: a.file.clone(),
        tags: a.tags.clone(),
        build_args,
        target: a.target.clone(),
        no_cache: a.no_cache,
        platform,
        labels,
        network_host,
        runtime,
        cgroup_parent: cli.cgroup_parent.clone(),
        quiet: a.quiet,
        puller: &puller,
    };
    let built = do_build(&store, &opts)?;
    if a.quiet {
        println!("{}", built.id);
    }
    Ok(())
}

//! `containerd-shim-berth-v2`: containerd's runtime v2 shim for berth
//! (`ctr run --runtime io.containerd.berth.v2`, or `runtime_type =
//! "io.containerd.berth.v2"` in containerd's config). The Task service over
//! ttrpc comes from the containerd project's `containerd-shim` crate (sync
//! API); behind it, berth-shim's core holds the container, its stdio and its
//! exit, and drives berth (or any runc-compatible runtime, see [`options`])
//! through its command line.
//!
//! Layout: [`service`] (containerd's side), [`task`] (the container on its
//! own thread), [`io`] (client FIFOs), [`oom`] (OOM events), [`stats`]
//! (metrics), [`options`] (which runtime).

mod io;
mod mount;
mod oom;
mod options;
mod service;
mod stats;
mod task;

fn main() {
    // Before any thread exists: every thread inherits the mask, so SIGCHLD
    // reaches only the core's signal descriptor.
    if let Err(e) = task::block_child_signals() {
        eprintln!("containerd-shim-berth-v2: {e:#}");
        std::process::exit(1);
    }
    let config = containerd_shim::Config {
        // berth-shim's core reaps the children itself.
        no_reaper: true,
        ..Default::default()
    };
    containerd_shim::run::<service::Service>("io.containerd.berth.v2", Some(config));
}

//! berth-shim: one small process per container, like Podman's conmon. The
//! layer above (pier, a test, a script) starts it and may exit at once; the
//! shim keeps the container's stdio, logs and exit status safe until someone
//! collects them. It drives any runc-compatible runtime through its command
//! line only.
//!
//! Layout:
//! - [`core`]: supervision of the container and exec'd processes, the
//!   stdio/log pipeline with backpressure, exit recording. Independent of
//!   any control protocol.
//! - [`control`]: the control socket front end and its poll loop.
//! - [`client`]: `berth-shim ctl`, a client of the control protocol.
//! - [`shim`], [`daemon`], [`cli`]: startup.
//! - [`logfile`], [`exit`], [`oom`], [`runtime`], [`console`], [`timefmt`],
//!   [`fdio`]: one concern each; [`failpoint`]: crash-test hooks (debug
//!   builds only).
//!
//! The control protocol and the note on what is lost when the shim dies are
//! in [`cli::HELP`] (`berth-shim --help`) and in `shim/README.md`.

pub mod cli;
pub mod client;
pub mod console;
pub mod control;
pub mod core;
pub mod daemon;
pub mod exit;
pub mod failpoint;
pub mod fdio;
pub mod logfile;
pub mod oom;
pub mod runtime;
pub mod shim;
pub mod timefmt;

/// An output stream of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (also a terminal's output).
    Stdout = 0,
    /// Standard error.
    Stderr = 1,
}

impl Stream {
    /// `stdout` or `stderr`, as the log formats write it.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

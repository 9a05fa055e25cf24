//! Running `RUNTIME create`/`RUNTIME exec` with the container's stdio made
//! for the shim: fresh pipes, or a pty whose master comes back over the
//! console socket.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::session::Source;
use crate::console::ConsoleSocket;
use crate::fdio;
use crate::runtime;
use crate::Stream;

/// What the shim holds of a process's stdio: the streams to read, the
/// writer for its stdin, and the pty master (with a terminal).
pub type Streams = (Vec<Source>, Option<OwnedFd>, Option<OwnedFd>);

/// Runs `cmd` (which already names `--console-socket`) and takes the pty
/// master it sends.
pub fn run_with_console(cmd: Command, what: &str, console: &ConsoleSocket) -> Result<Streams> {
    runtime::run_captured(cmd, what)?;
    let master = console.receive()?;
    fdio::set_nonblocking(master.as_fd())?;
    let reader = master.try_clone().context("dup pty master")?;
    let writer = master.try_clone().context("dup pty master")?;
    let sources = vec![Source {
        fd: reader,
        stream: Stream::Stdout,
    }];
    Ok((sources, Some(writer), Some(master)))
}

/// Runs `cmd` with new pipes as the process's stdout, stderr and (with
/// `stdin`) stdin; a runc-style runtime passes them on to the process.
pub fn run_with_pipes(mut cmd: Command, what: &str, stdin: bool) -> Result<Streams> {
    let (out_r, out_w) = fdio::pipe()?;
    let (err_r, err_w) = fdio::pipe()?;
    let (in_w, in_r): (Option<OwnedFd>, Stdio) = if stdin {
        let (r, w) = fdio::pipe()?;
        (Some(w), Stdio::from(r))
    } else {
        (None, Stdio::null())
    };
    cmd.stdin(in_r).stdout(out_w).stderr(err_w);
    let status = cmd
        .spawn()
        .and_then(|mut child| {
            crate::failpoint::hit("shim-during-runtime");
            child.wait()
        })
        .with_context(|| format!("run {what}"));
    // The Command holds the child's ends: drop them so that the pipes see
    // end-of-file when the process's side is gone.
    drop(cmd);
    let status = status?;
    if !status.success() {
        // The runtime's error went to the process's stderr (runc-style
        // runtimes pass their own stdio through).
        let mut text = Vec::new();
        let _ = std::fs::File::from(err_r)
            .take(64 * 1024)
            .read_to_end(&mut text);
        bail!("{what} failed ({status}): {}", runtime::message(&text));
    }
    for fd in [&out_r, &err_r].into_iter().chain(in_w.as_ref()) {
        fdio::set_nonblocking(fd.as_fd())?;
    }
    let sources = vec![
        Source {
            fd: out_r,
            stream: Stream::Stdout,
        },
        Source {
            fd: err_r,
            stream: Stream::Stderr,
        },
    ];
    Ok((sources, in_w, None))
}

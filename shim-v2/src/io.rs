//! The stdio of one process as containerd hands it over: paths of FIFOs the
//! client made (or `file://` log files), joined to the session's output and
//! input in berth-shim's core.
//!
//! Output FIFOs are opened read-write, as containerd's runc shim also keeps a
//! read end: the open does not wait for a reader, and a client that went
//! away (`ctr run -d`) does not turn writes into EPIPE; when nobody reads, the
//! FIFO fills, then this queue, then the core's, and the container waits on
//! its pipe, as under the runc shim. The input FIFO is opened read-only and
//! non-blocking: it reports end-of-file only after a writer came and went.
//!
//! Closing: a client may open its read end of an output FIFO late (ctr opens
//! it from a goroutine). If the shim closed the FIFO before that, the pipe and
//! the bytes in it would be gone, so after the process ended the FIFOs stay
//! open until the client has read what is in them, or [`DRAIN_LIMIT`] passed
//! (the client went away).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_shim::core::{Core, Output, SessionId, SubId};
use nix::poll::PollFlags;

/// Bytes held for an output before no more is taken from the core.
const PENDING_LIMIT: usize = 256 * 1024;

/// How long the output FIFOs stay open after the process ended, waiting for
/// the client to read what is in them.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// How often a FIFO being drained is checked.
pub const DRAIN_TICK: Duration = Duration::from_millis(10);

/// An output: the FIFO or file, and whether it is a FIFO.
struct Out {
    file: File,
    fifo: bool,
}

/// Which descriptor of an [`Io`] became ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// Output FIFO number 0 (stdout) or 1 (stderr) takes bytes.
    Out(usize),
    /// The input FIFO has bytes or reached its end.
    In,
}

/// The stdio of one session.
pub struct Io {
    /// The session.
    pub session: SessionId,
    sub: SubId,
    out: [Option<Out>; 2],
    pending: [Vec<u8>; 2],
    stdin: Option<File>,
    done: bool,
    drain_until: Option<Instant>,
}

impl Io {
    /// Opens the client's paths (empty: none) and subscribes to the
    /// session's output.
    pub fn open(
        core: &mut Core,
        session: SessionId,
        stdin: &str,
        stdout: &str,
        stderr: &str,
    ) -> Result<Io> {
        let out = [open_output(stdout)?, open_output(stderr)?];
        let stdin = if stdin.is_empty() {
            None
        } else {
            Some(
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(stdin)
                    .with_context(|| format!("open stdin {stdin}"))?,
            )
        };
        let sub = core.subscribe(session)?;
        Ok(Io {
            session,
            sub,
            out,
            pending: [Vec::new(), Vec::new()],
            stdin,
            done: false,
            drain_until: None,
        })
    }

    /// Descriptors to poll.
    pub fn interests(&self, core: &Core, out: &mut Vec<(RawFd, PollFlags, Which)>) {
        for (i, o) in self.out.iter().enumerate() {
            if let Some(o) = o {
                if !self.pending[i].is_empty() {
                    out.push((o.file.as_raw_fd(), PollFlags::POLLOUT, Which::Out(i)));
                }
            }
        }
        if let Some(f) = &self.stdin {
            if core.stdin_room(self.session) {
                out.push((f.as_raw_fd(), PollFlags::POLLIN, Which::In));
            }
        }
    }

    /// Handles a ready descriptor.
    pub fn ready(&mut self, core: &mut Core, which: Which) {
        match which {
            Which::Out(i) => self.flush(i),
            Which::In => {
                let mut buf = vec![0u8; 64 * 1024];
                let Some(f) = &mut self.stdin else { return };
                match f.read(&mut buf) {
                    Ok(0) => self.close_stdin(core),
                    Ok(n) => core.write_stdin(self.session, &buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => self.close_stdin(core),
                }
            }
        }
    }

    /// Ends the process's input (containerd's CloseIO, or end-of-file). The
    /// client closes its end of the FIFO before it sends CloseIO: what it
    /// wrote is still in the FIFO and is passed on first.
    pub fn close_stdin(&mut self, core: &mut Core) {
        if let Some(mut f) = self.stdin.take() {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                core.write_stdin(self.session, &buf[..n]);
            }
        }
        core.close_stdin(self.session);
    }

    /// Moves output from the core to the FIFOs, as far as they take it.
    pub fn pump(&mut self, core: &mut Core) {
        while !self.done && self.pending.iter().map(Vec::len).sum::<usize>() < PENDING_LIMIT {
            match core.pop_output(self.sub) {
                Some(Output::Data(stream, data)) => {
                    let i = stream as usize;
                    if self.out[i].is_some() {
                        self.pending[i].extend_from_slice(&data);
                    }
                }
                Some(Output::Exit(_)) | Some(Output::Dropped { .. }) => self.done = true,
                None => break,
            }
        }
        for i in 0..2 {
            self.flush(i);
        }
    }

    fn flush(&mut self, i: usize) {
        let Some(o) = &mut self.out[i] else { return };
        while !self.pending[i].is_empty() {
            match o.file.write(&self.pending[i]) {
                Ok(n) => {
                    self.pending[i].drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.out[i] = None;
                    self.pending[i].clear();
                    return;
                }
            }
        }
    }

    /// Whether the process ended and all its output was handed over and
    /// read (or the client had [`DRAIN_LIMIT`] to read it): the FIFOs can
    /// close (the client sees end-of-file).
    pub fn finished(&mut self) -> bool {
        if !self.done || self.pending.iter().any(|p| !p.is_empty()) {
            return false;
        }
        let now = Instant::now();
        let until = *self.drain_until.get_or_insert(now + DRAIN_LIMIT);
        let unread = self
            .out
            .iter()
            .flatten()
            .any(|o| o.fifo && bytes_unread(&o.file) > 0);
        !unread || now >= until
    }

    /// Whether the FIFOs are waiting for the client to read (the task's loop
    /// then wakes every [`DRAIN_TICK`]).
    pub fn draining(&self) -> bool {
        self.drain_until.is_some()
    }

    /// Leaves the core's subscriber list.
    pub fn detach(self, core: &mut Core) {
        core.unsubscribe(self.sub);
    }
}

/// Opens an output path: a FIFO read-write and non-blocking, a `file://`
/// URI or a regular file for appending; empty means none.
fn open_output(path: &str) -> Result<Option<Out>> {
    if path.is_empty() {
        return Ok(None);
    }
    let (path, is_uri) = match path.split_once("://") {
        Some(("file", p)) => (p, true),
        Some((scheme, _)) => bail!("stdio URI scheme {scheme}:// is not supported by berth's shim"),
        None => (path, false),
    };
    let fifo = !is_uri
        && std::fs::metadata(path)
            .map(|m| m.file_type().is_fifo())
            .unwrap_or(false);
    let f = if fifo {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
    } else {
        OpenOptions::new().append(true).create(true).open(path)
    };
    let file = f.with_context(|| format!("open {path}"))?;
    Ok(Some(Out { file, fifo }))
}

/// Bytes in a FIFO that no reader took yet (FIONREAD).
fn bytes_unread(f: &File) -> libc::c_int {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes an int through the pointer.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::FIONREAD, &mut n) } < 0 {
        return 0;
    }
    n
}

//! One supervised process (the container's init, or an exec) and its stdio
//! as the shim holds it: output sources, an input sink, a pty.

use std::os::fd::{AsFd, OwnedFd};

use crate::exit::ExitStatus;
use crate::fdio;
use crate::Stream;

/// Input bytes queued for a process before new input is refused.
pub const STDIN_LIMIT: usize = 64 * 1024;

/// An output descriptor of a process (a pipe read end or the pty master).
pub struct Source {
    /// The descriptor, non-blocking.
    pub fd: OwnedFd,
    /// Which stream its bytes belong to.
    pub stream: Stream,
}

/// The process's input (a pipe write end or the pty master) with the bytes
/// not yet written.
pub struct Sink {
    /// The descriptor, non-blocking.
    pub fd: OwnedFd,
    /// Bytes accepted from clients, not yet written.
    pub pending: Vec<u8>,
    /// Close once `pending` is written (a client ended the input).
    pub close_when_flushed: bool,
}

impl Sink {
    /// Writes what the process takes now. Returns false when the sink is
    /// finished (closed by request, or the process closed its end).
    pub fn flush(&mut self) -> bool {
        while !self.pending.is_empty() {
            match fdio::write(self.fd.as_fd(), &self.pending) {
                Ok(0) => return true,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(_) => return false,
            }
        }
        !self.close_when_flushed
    }
}

/// A supervised process.
pub struct Session {
    /// Its pid.
    pub pid: i32,
    /// Set when it was reaped.
    pub exit: Option<ExitStatus>,
    /// Set once its exit was published (after its output was drained).
    pub finished: bool,
    /// Output descriptors still open, indexed by stream.
    pub sources: [Option<Source>; 2],
    /// Its input, while open.
    pub stdin: Option<Sink>,
    /// The pty master when it has a terminal.
    pub pty: Option<OwnedFd>,
    /// Whether its output goes to the log file.
    pub logged: bool,
    /// Whether its subscribers may be dropped when too slow.
    pub droppable: bool,
}

impl Session {
    /// A session for `pid` with the given descriptors.
    pub fn new(
        pid: i32,
        sources: Vec<Source>,
        stdin: Option<OwnedFd>,
        pty: Option<OwnedFd>,
    ) -> Session {
        let mut slots: [Option<Source>; 2] = [None, None];
        for s in sources {
            let i = s.stream as usize;
            slots[i] = Some(s);
        }
        Session {
            pid,
            exit: None,
            finished: false,
            sources: slots,
            stdin: stdin.map(|fd| Sink {
                fd,
                pending: Vec::new(),
                close_when_flushed: false,
            }),
            pty,
            logged: false,
            droppable: false,
        }
    }

    /// Whether every output descriptor reached its end.
    pub fn drained(&self) -> bool {
        self.sources.iter().all(Option::is_none)
    }
}

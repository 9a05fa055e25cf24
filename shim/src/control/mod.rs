//! The control socket front end: a Unix stream socket in the state
//! directory (`shim.sock`), several clients at once, driven by the shim's
//! single-threaded poll loop together with the [`Core`].
//!
//! Protocol (also in `berth-shim --help`): the client writes one JSON request
//! per line, the shim answers each with one JSON line, `{"ok":true,...}` or
//! `{"ok":false,"error":"..."}`. Requests: `state`, `start`,
//! `kill` (`signal`, `all`), `wait` (answers when the container has exited,
//! with `exit`), `resize` (`rows`, `cols`), `reopen-log`, `attach` (`stdin`)
//! and `exec` (`process` or `args`/`env`/`cwd`/`tty`, and `stdin`). After a
//! successful `attach` or `exec` the connection carries frames (see
//! [`protocol`]) until an exit or dropped frame.

pub mod protocol;
pub mod requests;

use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::json;

use crate::core::{Core, Event, Output, SessionId, SubId, Token, CONTAINER};
use protocol::*;

/// Name of the control socket in the state directory.
pub const SOCKET: &str = "shim.sock";

/// Connections served at once; more are refused.
const MAX_CONNS: usize = 256;

/// Output bytes encoded ahead for one client.
const OUT_AHEAD: usize = 128 * 1024;

/// Bytes read from a client at once.
const READ_CHUNK: usize = 16 * 1024;

/// How long clients get to read their last output once the container ended.
const LINGER: Duration = Duration::from_secs(5);

enum Mode {
    /// Reading request lines.
    Requests,
    /// A `wait` is pending.
    Waiting,
    /// Frames of a session's output; `stdin` when input frames are accepted.
    Stream {
        sub: SubId,
        session: SessionId,
        stdin: bool,
        ended: bool,
    },
}

struct Conn {
    sock: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    mode: Mode,
    read_eof: bool,
    /// Close once `out` is written.
    closing: bool,
    dead: bool,
}

impl Conn {
    fn reply(&mut self, v: serde_json::Value) {
        serde_json::to_writer(&mut self.out, &v).expect("JSON");
        self.out.push(b'\n');
    }

    fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos
    }
}

/// The listening control socket; its file is removed on drop.
pub struct Server {
    listener: Option<UnixListener>,
    path: PathBuf,
    conns: Vec<Conn>,
}

impl Server {
    /// Listens on `STATE_DIR/shim.sock`.
    pub fn bind(state_dir: &Path) -> Result<Server> {
        let path = state_dir.join(SOCKET);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("bind control socket {}", path.display()))?;
        listener.set_nonblocking(true).context("control socket")?;
        // Whoever can connect can exec in the container: owner only.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .with_context(|| format!("chmod {}", path.display()))?;
        Ok(Server {
            listener: Some(listener),
            path,
            conns: Vec::new(),
        })
    }

    /// Runs the poll loop until the container (and every exec) ended, its
    /// exit was recorded and clients got their last output.
    pub fn run(mut self, core: &mut Core) -> Result<()> {
        let mut linger_until: Option<Instant> = None;
        let mut want: Vec<(RawFd, PollFlags, Target)> = Vec::new();
        loop {
            // Input frames held back while a process's stdin was full.
            for c in &mut self.conns {
                if matches!(c.mode, Mode::Stream { .. }) && !c.inbuf.is_empty() {
                    handle_frames(core, c);
                }
            }
            self.fill_and_flush(core);
            self.conns.retain(|c| !c.dead);
            if core.finished() {
                if self.listener.take().is_some() {
                    let _ = std::fs::remove_file(&self.path);
                    linger_until = Some(Instant::now() + LINGER);
                    for c in &mut self.conns {
                        if !matches!(c.mode, Mode::Stream { .. }) {
                            c.closing = true;
                        }
                    }
                    self.conns.retain(|c| !(c.closing && c.pending_out() == 0));
                }
                let late = linger_until.is_some_and(|t| Instant::now() >= t);
                if self.conns.is_empty() || late {
                    return Ok(());
                }
            }

            want.clear();
            let mut core_fds = Vec::new();
            core.interests(&mut core_fds);
            want.extend(
                core_fds
                    .into_iter()
                    .map(|(fd, f, t)| (fd, f, Target::Core(t))),
            );
            if let Some(l) = &self.listener {
                want.push((l.as_raw_fd(), PollFlags::POLLIN, Target::Listener));
            }
            for (i, c) in self.conns.iter().enumerate() {
                let mut f = PollFlags::empty();
                if c.pending_out() > 0 {
                    f |= PollFlags::POLLOUT;
                }
                if !c.read_eof && !c.closing && wants_input(core, c) {
                    f |= PollFlags::POLLIN;
                }
                want.push((c.sock.as_raw_fd(), f, Target::Conn(i)));
            }
            let deadline = [core.next_deadline(), linger_until]
                .into_iter()
                .flatten()
                .min();
            let timeout = match deadline {
                Some(t) => {
                    let ms = t.saturating_duration_since(Instant::now()).as_millis() + 1;
                    PollTimeout::try_from(ms.min(60_000) as u32).unwrap_or(PollTimeout::NONE)
                }
                None => PollTimeout::NONE,
            };
            let mut fds: Vec<PollFd> = want
                .iter()
                // SAFETY: every descriptor stays open until poll returns;
                // the PollFds are dropped before anything is closed.
                .map(|&(fd, f, _)| PollFd::new(unsafe { BorrowedFd::borrow_raw(fd) }, f))
                .collect();
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
            let ready: Vec<(Target, PollFlags)> = fds
                .iter()
                .zip(&want)
                .filter_map(|(p, w)| p.revents().filter(|r| !r.is_empty()).map(|r| (w.2, r)))
                .collect();
            drop(fds);
            for (target, revents) in ready {
                match target {
                    Target::Core(t) => core.ready(t),
                    Target::Listener => self.accept(),
                    Target::Conn(i) => self.conn_ready(core, i, revents),
                }
            }
            core.tick(Instant::now());
            let events: Vec<Event> = core.take_events().collect();
            for Event::Exited(id, exit) in events {
                if id == CONTAINER {
                    for c in &mut self.conns {
                        if matches!(c.mode, Mode::Waiting) {
                            c.reply(json!({"ok": true, "exit": exit.to_json()}));
                            c.mode = Mode::Requests;
                            requests::handle_lines(core, c);
                            if c.read_eof && matches!(c.mode, Mode::Requests) {
                                c.closing = true;
                            }
                        }
                    }
                }
            }
        }
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        while let Ok((sock, _)) = l.accept() {
            if self.conns.len() >= MAX_CONNS || sock.set_nonblocking(true).is_err() {
                continue;
            }
            self.conns.push(Conn {
                sock,
                inbuf: Vec::new(),
                out: Vec::new(),
                out_pos: 0,
                mode: Mode::Requests,
                read_eof: false,
                closing: false,
                dead: false,
            });
        }
    }

    fn conn_ready(&mut self, core: &mut Core, i: usize, revents: PollFlags) {
        let c = &mut self.conns[i];
        if revents.contains(PollFlags::POLLIN) && !c.read_eof {
            let mut buf = [0u8; READ_CHUNK];
            let limit = read_limit(&c.mode, c.inbuf.len());
            if limit == 0 {
                return;
            }
            match c.sock.read(&mut buf[..limit]) {
                Ok(0) => c.read_eof = true,
                Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => c.read_eof = true,
            }
            match c.mode {
                Mode::Requests => requests::handle_lines(core, c),
                Mode::Waiting => {}
                Mode::Stream { .. } => handle_frames(core, c),
            }
            if c.read_eof && matches!(c.mode, Mode::Requests) {
                // A request client hung up: nothing more to answer.
                c.closing = true;
            }
        } else if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            // The client is gone for good (both directions shut).
            drop_conn(core, c);
        }
    }

    /// Encodes queued output for streaming clients and writes what each
    /// client takes without blocking.
    fn fill_and_flush(&mut self, core: &mut Core) {
        for c in &mut self.conns {
            if !c.dead {
                flush_conn(core, c);
            }
        }
    }
}

/// Moves output to the client until its socket is full or nothing is left.
/// (Stopping after one round while output is still queued would leave the
/// client with nothing to wait for, and it would be dropped as too slow.)
fn flush_conn(core: &mut Core, c: &mut Conn) {
    loop {
        fill(core, c);
        if c.pending_out() == 0 {
            break;
        }
        while c.pending_out() > 0 {
            match nix::unistd::write(&c.sock, &c.out[c.out_pos..]) {
                Ok(n) => c.out_pos += n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(_) => {
                    drop_conn(core, c);
                    return;
                }
            }
        }
        if c.pending_out() > 0 {
            // The socket is full: POLLOUT brings us back.
            if c.out_pos > OUT_AHEAD {
                c.out.drain(..c.out_pos);
                c.out_pos = 0;
            }
            return;
        }
        c.out.clear();
        c.out_pos = 0;
    }
    if c.closing {
        drop_conn(core, c);
    }
}

/// Encodes the queued output of a streaming client, up to [`OUT_AHEAD`].
fn fill(core: &mut Core, c: &mut Conn) {
    let Mode::Stream {
        sub, ended: false, ..
    } = c.mode
    else {
        return;
    };
    while c.pending_out() < OUT_AHEAD {
        let Some(o) = core.pop_output(sub) else { break };
        let last = match o {
            Output::Data(s, d) => {
                let kind = match s {
                    crate::Stream::Stdout => FRAME_STDOUT,
                    crate::Stream::Stderr => FRAME_STDERR,
                };
                push_frame(&mut c.out, kind, &d);
                false
            }
            Output::Dropped { stdout, stderr } => {
                let p = json!({"stdout_bytes": stdout, "stderr_bytes": stderr});
                push_frame(&mut c.out, FRAME_DROPPED, p.to_string().as_bytes());
                true
            }
            Output::Exit(e) => {
                push_frame(&mut c.out, FRAME_EXIT, e.to_json().to_string().as_bytes());
                true
            }
        };
        if last {
            if let Mode::Stream { ended, .. } = &mut c.mode {
                *ended = true;
            }
            c.closing = true;
            core.unsubscribe(sub);
            break;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.listener.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Core(Token),
    Listener,
    Conn(usize),
}

/// How many bytes to read from a client now, `buffered` being what it
/// sent and was not used yet. Request lines are bounded: a client that
/// sends more than one line's worth while its `wait` is pending (or before
/// its line ends) is not read from, instead of growing the buffer without
/// end. Streaming clients are bounded by their frame size and stdin
/// backpressure ([`wants_input`]).
fn read_limit(mode: &Mode, buffered: usize) -> usize {
    match mode {
        Mode::Requests | Mode::Waiting => requests::request_room(buffered).min(READ_CHUNK),
        Mode::Stream { .. } => READ_CHUNK,
    }
}

/// Whether to read from a client now: request clients always; streaming
/// clients unless the process's input is full (backpressure to the client).
fn wants_input(core: &Core, c: &Conn) -> bool {
    match c.mode {
        Mode::Requests | Mode::Waiting => read_limit(&c.mode, c.inbuf.len()) > 0,
        Mode::Stream { session, stdin, .. } => {
            !stdin || !core.has_stdin(session) || core.stdin_room(session)
        }
    }
}

/// Applies the input frames of a streaming client.
fn handle_frames(core: &mut Core, c: &mut Conn) {
    let Mode::Stream { session, stdin, .. } = c.mode else {
        return;
    };
    let mut used = 0;
    loop {
        let frame = match parse_frame(&c.inbuf[used..], MAX_CLIENT_FRAME) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => {
                c.read_eof = true;
                break;
            }
        };
        let (kind, payload, n) = frame;
        match kind {
            FRAME_STDIN if stdin => core.write_stdin(session, payload),
            FRAME_STDIN_CLOSE if stdin => core.close_stdin(session),
            FRAME_RESIZE if payload.len() == 4 => {
                let rows = u16::from_be_bytes([payload[0], payload[1]]);
                let cols = u16::from_be_bytes([payload[2], payload[3]]);
                let _ = core.resize(session, rows, cols);
            }
            _ => {}
        }
        used += n;
        if stdin && !core.stdin_room(session) && core.has_stdin(session) {
            break;
        }
    }
    c.inbuf.drain(..used);
    if c.read_eof && stdin && session != CONTAINER {
        // An exec's caller that hung up will send no more input.
        core.close_stdin(session);
    }
}

fn drop_conn(core: &mut Core, c: &mut Conn) {
    if let Mode::Stream {
        sub,
        session,
        stdin,
        ended,
    } = c.mode
    {
        if !ended {
            core.unsubscribe(sub);
        }
        if stdin && session != CONTAINER {
            core.close_stdin(session);
        }
    }
    c.dead = true;
}

#[cfg(test)]
mod tests {
    use super::requests::{take_line, Line};
    use super::*;

    #[test]
    fn a_waiting_client_is_read_up_to_one_request_line_only() {
        // A client that answers its pending `wait` with an endless stream:
        // reading stops once one full line (and its newline) is buffered.
        let mut inbuf = Vec::new();
        for _ in 0..(4 * MAX_REQUEST_LINE / READ_CHUNK) {
            let n = read_limit(&Mode::Waiting, inbuf.len());
            if n == 0 {
                break;
            }
            inbuf.resize(inbuf.len() + n, b'x');
        }
        assert_eq!(inbuf.len(), MAX_REQUEST_LINE + 1);
        // Once answered, the connection reads requests again and the
        // over-long line is refused.
        assert_eq!(read_limit(&Mode::Requests, inbuf.len()), 0);
        assert_eq!(take_line(&mut inbuf), Line::TooLong);
    }
}

//! Waiting in the foreground for a container process (`run`, `exec`):
//! signals are forwarded to it, its exit becomes berth's exit code, and when
//! berth itself is the console (a terminal without `--console-socket`) the pty
//! is relayed to berth's own stdio in raw mode, with window size changes.

use std::io::{IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::console::{self, WinSize};

/// The signals a foreground `run`/`exec` passes on (plus SIGCHLD, which it
/// handles itself).
pub fn forwarded() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGALRM,
        Signal::SIGPIPE,
        Signal::SIGCONT,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set
}

/// Blocks the forwarded signals (before the process exists, so none is
/// lost; berth's init unblocks everything before it execs).
pub fn block_signals() -> Result<SigSet> {
    let set = forwarded();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .context("sigprocmask")?;
    Ok(set)
}

/// A socketpair standing in for `--console-socket`: the first end goes to
/// the container's init, the pty master arrives on the second.
pub fn console_pair() -> Result<(UnixStream, UnixStream)> {
    UnixStream::pair().context("socketpair for the console")
}

/// Receives the pty master sent by the init.
pub fn receive_master(sock: &UnixStream) -> Result<OwnedFd> {
    let mut buf = [0u8; 64];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("receive the pty master")?;
    for c in msg.cmsgs().context("receive the pty master")? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel installed the descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    bail!("the container's init sent no pty master")
}

/// Puts a terminal in raw mode until dropped.
struct RawMode {
    fd: RawFd,
    saved: termios::Termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd) -> Option<RawMode> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode {
            fd: fd.as_raw_fd(),
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: the descriptor is our stdin, open for our whole life.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, termios::SetArg::TCSANOW, &self.saved);
    }
}

/// Gives the container's terminal (`master`) the size of berth's own
/// terminal, its stdin, if that is one. `run` does it before `start`, so
/// that the container never sees a 0x0 terminal; SIGWINCH keeps the size in
/// step afterwards.
pub fn copy_window_size(master: BorrowedFd) {
    if let Some(ws) = window_size(std::io::stdin().as_fd()) {
        let _ = console::set_size(master, ws);
    }
}

fn window_size(fd: BorrowedFd) -> Option<WinSize> {
    let mut w: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills a winsize.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut w) } < 0 {
        return None;
    }
    Some(WinSize {
        rows: w.ws_row,
        cols: w.ws_col,
    })
}

fn exit_code(status: WaitStatus, pid: i32) -> Option<i32> {
    match status {
        WaitStatus::Exited(p, code) if p.as_raw() == pid => Some(code),
        WaitStatus::Signaled(p, sig, _) if p.as_raw() == pid => Some(128 + sig as i32),
        _ => None,
    }
}

/// Waits for `pid` (a child of ours, or an orphan of one, berth being a
/// child subreaper), forwarding signals and relaying `master` if given.
/// Returns its exit code, or 128+N if it was killed by signal N.
pub fn wait(pid: i32, set: &SigSet, master: Option<OwnedFd>) -> Result<i32> {
    let sfd = SignalFd::new(set).context("signalfd")?;
    let stdin = std::io::stdin();
    let raw = master.as_ref().and_then(|_| RawMode::enter(stdin.as_fd()));
    if let (Some(m), Some(ws)) = (&master, window_size(stdin.as_fd())) {
        let _ = console::set_size(m.as_fd(), ws);
    }
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    let mut buf = vec![0u8; 32 * 1024];
    let code = loop {
        if let Some(code) = reap(pid)? {
            break code;
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = &master {
            if master_open {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            }
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            if let Ok(Some(info)) = sfd.read_signal() {
                let sig = info.ssi_signo as i32;
                if sig == libc::SIGWINCH {
                    if let (Some(m), Some(ws)) = (&master, window_size(stdin.as_fd())) {
                        let _ = console::set_size(m.as_fd(), ws);
                    }
                } else if sig != libc::SIGCHLD {
                    // SAFETY: plain syscall.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        }
        let Some(m) = &master else { continue };
        let mut i = 1;
        if master_open {
            if ready.get(i).copied().unwrap_or(false)
                && !copy(m.as_fd(), &mut std::io::stdout(), &mut buf)
            {
                master_open = false;
            }
            i += 1;
        }
        if stdin_open && ready.get(i).copied().unwrap_or(false) {
            let mut w = std::fs::File::from(m.try_clone().context("dup pty master")?);
            if !copy(stdin.as_fd(), &mut w, &mut buf) {
                stdin_open = false;
            }
        }
    };
    // Whatever the process wrote last is still in the pty.
    if let (Some(m), true) = (&master, master_open) {
        let _ = nix::fcntl::fcntl(
            m.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        while copy(m.as_fd(), &mut std::io::stdout(), &mut buf) {}
    }
    drop(raw);
    Ok(code)
}

fn reap(pid: i32) -> Result<Option<i32>> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => return Ok(None),
            Ok(st) => {
                if let Some(code) = exit_code(st, pid) {
                    return Ok(Some(code));
                }
            }
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e).context("waitpid"),
        }
    }
}

/// Copies one read's worth from `from` to `to`; false at end of input (or
/// on an error, such as EIO from a pty whose slave side is closed).
fn copy(from: BorrowedFd, to: &mut dyn Write, buf: &mut [u8]) -> bool {
    match nix::unistd::read(from.as_raw_fd(), buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => to.write_all(&buf[..n]).and_then(|()| to.flush()).is_ok(),
    }
}

//! Receiving a pty master from a runtime (`--console-socket`) and resizing it.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// A listening console socket; its file is removed on drop.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listens at `path`.
    pub fn bind(path: &Path) -> Result<ConsoleSocket> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .with_context(|| format!("bind console socket {}", path.display()))?;
        Ok(ConsoleSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Its path, for `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the pty master a runtime sent, once the runtime command that was
    /// given this socket has finished (its connection waits in the backlog).
    pub fn receive(&self) -> Result<OwnedFd> {
        self.listener
            .set_nonblocking(true)
            .context("console socket")?;
        let conn = match self.listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                bail!("the runtime did not send a terminal over the console socket")
            }
            Err(e) => return Err(e).context("accept on console socket"),
        };
        let mut buf = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .context("recvmsg on console socket")?;
        let mut master = None;
        for c in msg.cmsgs().context("console socket message")? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: SCM_RIGHTS gave us these new descriptors.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    if master.is_none() {
                        master = Some(owned);
                    }
                }
            }
        }
        master.context("the console socket message carried no descriptor")
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sets the window size of the terminal `fd` (the container gets SIGWINCH).
pub fn resize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(std::io::Error::last_os_error()).context("TIOCSWINSZ");
    }
    Ok(())
}

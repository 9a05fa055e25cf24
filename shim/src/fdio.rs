//! Small non-blocking descriptor helpers.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// A pipe, both ends close-on-exec: (read end, write end).
pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe2")
}

/// Sets O_NONBLOCK on `fd` (its open file description).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<()> {
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).context("fcntl F_GETFL")?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags)).context("fcntl F_SETFL")?;
    Ok(())
}

/// Result of a non-blocking read.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// This many bytes were read.
    Data(usize),
    /// Nothing to read now.
    WouldBlock,
    /// End of file: every writer is gone (EIO on a pty master means the
    /// same: the terminal's last slave descriptor was closed).
    Eof,
}

/// Reads into `buf` without blocking.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Read {
    loop {
        match nix::unistd::read(fd.as_raw_fd(), buf) {
            Ok(0) => return Read::Eof,
            Ok(n) => return Read::Data(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Read::WouldBlock,
            Err(_) => return Read::Eof,
        }
    }
}

/// Writes what it can of `data` without blocking: Ok(bytes written), which
/// may be 0 when the descriptor is full.
pub fn write(fd: BorrowedFd<'_>, data: &[u8]) -> nix::Result<usize> {
    loop {
        match nix::unistd::write(fd, data) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(0),
            Err(e) => return Err(e),
        }
    }
}

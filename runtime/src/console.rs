//! The container's terminal (`process.terminal` with `--console-socket`).
//!
//! The pty is allocated from the container's own devpts instance after
//! pivot_root. The slave is obtained from the master with `TIOCGPTPEER`
//! instead of opening `/dev/pts/N` by path, and `/dev/console` is a file berth
//! creates itself and covers with a bind of that slave descriptor, so no path
//! the container controls is followed (CVE-2025-52565). The master goes to the
//! caller over the console socket with SCM_RIGHTS, as runc sends it.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::rootfs::{mount::bind_fd, options::MountOptions, resolve};
use crate::sys;

const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// Window size of the console.
#[derive(Clone, Copy, Debug)]
pub struct WinSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// Allocates a pty from the container's devpts, sends the master to
/// `socket` and returns the slave. With `bind_console` (the container's init,
/// not `exec`), the slave is also bound onto `/dev/console`. Must run inside
/// the container's root (after pivot_root, or after joining its mount
/// namespace).
pub fn setup(socket: &OwnedFd, size: Option<WinSize>, bind_console: bool) -> Result<OwnedFd> {
    let root = sys::openat(
        libc::AT_FDCWD,
        Path::new("/"),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .context("open /")?;
    let master = resolve::open_no_symlinks(
        root.as_fd(),
        Path::new("/dev/pts/ptmx"),
        libc::O_RDWR | libc::O_NOCTTY,
    )
    .context("open /dev/pts/ptmx (is devpts mounted at /dev/pts?)")?;
    if sys::fs_magic(master.as_fd()).context("statfs /dev/pts/ptmx")? != DEVPTS_SUPER_MAGIC {
        bail!("/dev/pts/ptmx is not on a devpts filesystem");
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to an int.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(std::io::Error::last_os_error()).context("unlock pty");
    }
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(std::io::Error::last_os_error()).context("TIOCGPTPEER");
    }
    // SAFETY: fresh descriptor from the kernel.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    if let Some(ws) = size {
        set_size(slave.as_fd(), ws)?;
    }
    if bind_console {
        bind_dev_console(root.as_fd(), slave.as_fd())?;
    }
    send_fd(socket, b"/dev/ptmx", master.as_raw_fd())
        .context("send pty master to the console socket")?;
    Ok(slave)
}

/// Covers `/dev/console` (a file berth creates, or an existing file or
/// device node, never a symlink) with a bind of the pty slave.
fn bind_dev_console(root: BorrowedFd, slave: BorrowedFd) -> Result<()> {
    let dev = resolve::open_no_symlinks(root, Path::new("/dev"), libc::O_PATH | libc::O_DIRECTORY)
        .context("open /dev")?;
    match sys::openat(
        dev.as_raw_fd(),
        Path::new("console"),
        libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY,
        0o600,
    ) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e).context("create /dev/console"),
    }
    let target = sys::openat(
        dev.as_raw_fd(),
        Path::new("console"),
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
    )
    .context("open /dev/console")?;
    let st = nix::sys::stat::fstat(target.as_raw_fd()).context("stat /dev/console")?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG && st.st_mode & libc::S_IFMT != libc::S_IFCHR {
        bail!("/dev/console is neither a file nor a device; refusing to mount over it");
    }
    bind_fd(slave, target.as_fd(), &MountOptions::default()).context("bind pty onto /dev/console")
}

/// Sends `fd` with a name as payload over a unix socket.
pub fn send_fd(socket: &OwnedFd, name: &[u8], fd: i32) -> Result<()> {
    let iov = [IoSlice::new(name)];
    let fds = [fd];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .context("sendmsg")?;
    Ok(())
}

/// Sets the window size of a terminal.
pub fn set_size(tty: std::os::fd::BorrowedFd, ws: WinSize) -> Result<()> {
    let w = libc::winsize {
        ws_row: ws.rows,
        ws_col: ws.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ takes a pointer to a winsize.
    if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &w) } < 0 {
        return Err(std::io::Error::last_os_error()).context("TIOCSWINSZ");
    }
    Ok(())
}

/// Makes `slave` the stdio and controlling terminal of the calling process
/// (which must lead its own session).
pub fn make_controlling(slave: &OwnedFd) -> Result<()> {
    for target in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), target).context("dup2 pty slave")?;
    }
    // SAFETY: TIOCSCTTY takes an int argument.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(std::io::Error::last_os_error()).context("TIOCSCTTY");
    }
    Ok(())
}

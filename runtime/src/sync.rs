//! The channel between `berth create`/`exec` and the processes it starts.
//!
//! A `SOCK_STREAM` socketpair carries length-prefixed JSON messages; file
//! descriptors ride along with SCM_RIGHTS on the first byte of a message and are
//! received close-on-exec.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{bail, Context, Result};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

use crate::process::InitPlan;

/// Largest message accepted (a config with a big seccomp profile is ~100 KiB).
const MAX_MESSAGE: usize = 16 << 20;
/// Most descriptors passed with one message.
const MAX_FDS: usize = 8;

/// Messages of the setup protocol.
#[derive(Debug, Serialize, Deserialize)]
pub enum Msg {
    /// child → parent: a new user namespace exists, write its id maps.
    WriteIdMaps,
    /// parent → child: the id maps are written.
    IdMapsWritten,
    /// intermediate child → parent: host pid of the container's init.
    InitPid(i32),
    /// parent → init: what to set up (with descriptors).
    Plan(Box<InitPlan>),
    /// init → parent: run `prestart` and `createRuntime` hooks now.
    RunCreateRuntimeHooks,
    /// parent → init: the hooks ran.
    HooksDone,
    /// init → parent: set up, waiting for `start`.
    Ready,
    /// any side: setup failed; the text is the error for the user.
    Error(String),
}

/// One end of a setup channel.
pub struct Channel {
    fd: OwnedFd,
}

/// Creates a connected pair of channels (both close-on-exec).
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair")?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// Wraps an inherited descriptor (the init side after `execve`).
    ///
    /// # Safety
    /// `fd` must be an open socket that nothing else owns.
    pub unsafe fn from_raw(fd: RawFd) -> Channel {
        Channel {
            fd: OwnedFd::from_raw_fd(fd),
        }
    }

    /// The raw descriptor (to hand it to a child).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Sends `msg` with `fds` attached.
    pub fn send_with_fds(&self, msg: &Msg, fds: &[RawFd]) -> Result<()> {
        let body = serde_json::to_vec(msg).context("encode setup message")?;
        let len = (body.len() as u32).to_le_bytes();
        let iov = [IoSlice::new(&len), IoSlice::new(&body)];
        let cmsgs = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsgs };
        let mut sent = sendmsg::<()>(self.raw(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
            .context("send setup message")?;
        let total = len.len() + body.len();
        // A stream socket may take a large message in pieces.
        while sent < total {
            let rest: Vec<u8> = len.iter().chain(body.iter()).skip(sent).copied().collect();
            sent += nix::sys::socket::send(self.raw(), &rest, MsgFlags::MSG_NOSIGNAL)
                .context("send setup message")?;
        }
        Ok(())
    }

    /// Sends `msg`.
    pub fn send(&self, msg: &Msg) -> Result<()> {
        self.send_with_fds(msg, &[])
    }

    /// Receives the next message and the descriptors that came with it.
    /// `Ok(None)` means the peer closed the channel.
    pub fn recv_with_fds(&self) -> Result<Option<(Msg, Vec<OwnedFd>)>> {
        let mut len = [0u8; 4];
        let mut fds = Vec::new();
        let mut got = 0;
        while got < len.len() {
            let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
            let mut iov = [IoSliceMut::new(&mut len[got..])];
            let msg = recvmsg::<()>(
                self.raw(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .context("receive setup message")?;
            for c in msg.cmsgs().context("receive setup message")? {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel installed these descriptors for us.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            if msg.bytes == 0 {
                if got == 0 {
                    return Ok(None);
                }
                bail!("setup channel closed in the middle of a message");
            }
            got += msg.bytes;
        }
        let n = u32::from_le_bytes(len) as usize;
        if n > MAX_MESSAGE {
            bail!("setup message too large ({n} bytes)");
        }
        let mut body = vec![0u8; n];
        read_exact(self.fd.as_fd(), &mut body).context("receive setup message")?;
        let msg = serde_json::from_slice(&body).context("decode setup message")?;
        Ok(Some((msg, fds)))
    }

    /// Receives the next message, failing on a closed channel.
    pub fn recv(&self) -> Result<Msg> {
        match self.recv_with_fds()? {
            Some((m, _)) => Ok(m),
            None => bail!("setup channel closed"),
        }
    }

    /// Receives a message of the same kind as `want` (a data-less variant);
    /// an `Error` from the peer becomes the error.
    pub fn expect(&self, want: Msg) -> Result<()> {
        match self.recv()? {
            Msg::Error(e) => bail!("{e}"),
            m if std::mem::discriminant(&m) == std::mem::discriminant(&want) => Ok(()),
            m => bail!("setup protocol: expected {want:?}, got {m:?}"),
        }
    }
}

fn read_exact(fd: BorrowedFd, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match nix::unistd::read(fd.as_raw_fd(), buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_fds_cross() {
        let (a, b) = pair().unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        a.send_with_fds(&Msg::InitPid(42), &[r.as_raw_fd()])
            .unwrap();
        a.send(&Msg::Error("x".repeat(100_000))).unwrap();
        let (m, fds) = b.recv_with_fds().unwrap().unwrap();
        assert!(matches!(m, Msg::InitPid(42)));
        assert_eq!(fds.len(), 1);
        let flags = nix::fcntl::fcntl(fds[0].as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(
            flags & libc::FD_CLOEXEC != 0,
            "received fds are close-on-exec"
        );
        match b.recv().unwrap() {
            Msg::Error(s) => assert_eq!(s.len(), 100_000),
            m => panic!("{m:?}"),
        }
        drop(a);
        assert!(b.recv_with_fds().unwrap().is_none());
    }
}

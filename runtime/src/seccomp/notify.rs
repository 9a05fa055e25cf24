//! `SCMP_ACT_NOTIFY`: handing the listener descriptor to the seccomp agent.
//!
//! The runtime spec's protocol: connect to `listenerPath` (a unix stream
//! socket), send one message whose payload is the container process state
//! (`ociVersion`, `fds: ["seccompFd"]`, `pid`, `metadata`, `state`) and
//! whose `SCM_RIGHTS` carry the listener descriptor, then close.
//!
//! The connection is made early, while the host's paths are still visible
//! (before `pivot_root`); the message is sent right after the filter is
//! loaded, before the process runs, so the agent can answer the very first
//! notified syscall.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde_json::Value;

/// A connection to the seccomp agent.
#[derive(Debug)]
pub struct Agent {
    conn: UnixStream,
}

impl Agent {
    /// Connects to the agent's socket.
    pub fn connect(path: &Path) -> Result<Agent> {
        let conn = UnixStream::connect(path)
            .with_context(|| format!("connect to the seccomp agent at {}", path.display()))?;
        Ok(Agent { conn })
    }

    /// Sends `state` and the listener descriptor, and closes the connection.
    pub fn send(self, listener: OwnedFd, state: &Value) -> Result<()> {
        let msg = serde_json::to_vec(state).context("seccomp agent message")?;
        let fds = [listener.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let mut sent = 0;
        // The descriptor travels with the first byte; a short write of a
        // large state is completed without it.
        while sent < msg.len() {
            let iov = [IoSlice::new(&msg[sent..])];
            let c: &[ControlMessage] = if sent == 0 { &cmsg } else { &[] };
            sent += sendmsg::<()>(self.conn.as_raw_fd(), &iov, c, MsgFlags::MSG_NOSIGNAL, None)
                .context("send the seccomp listener to the agent")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{IoSliceMut, Read};
    use std::os::fd::{AsFd, FromRawFd};

    use nix::sys::socket::{recvmsg, ControlMessageOwned};

    #[test]
    fn state_and_descriptor_reach_the_agent() {
        let dir = std::env::temp_dir().join(format!("berth-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let agent = Agent::connect(&path).unwrap();
        let (mut conn, _) = listener.accept().unwrap();

        let (r, _w) = nix::unistd::pipe().unwrap();
        let ino = nix::sys::stat::fstat(r.as_raw_fd()).unwrap().st_ino;
        let st = serde_json::json!({
            "ociVersion": "1.2.0",
            "fds": ["seccompFd"],
            "pid": 42,
            "metadata": "m=1",
            "state": {"ociVersion": "1.2.0", "id": "c1", "status": "creating", "pid": 42, "bundle": "/b"},
        });
        agent.send(r, &st).unwrap();

        let mut buf = vec![0u8; 4096];
        let mut cbuf = nix::cmsg_space!([i32; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let m = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cbuf),
            MsgFlags::empty(),
        )
        .unwrap();
        let mut got_fd = None;
        for c in m.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(fds) = c {
                got_fd = Some(fds[0]);
            }
        }
        let n = m.bytes;
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).unwrap();
        let mut all = buf[..n].to_vec();
        all.extend(rest);
        let v: serde_json::Value = serde_json::from_slice(&all).unwrap();
        assert_eq!(v["fds"][0], "seccompFd");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["metadata"], "m=1");
        assert_eq!(v["state"]["id"], "c1");
        assert_eq!(v["state"]["status"], "creating");
        // SAFETY: the descriptor was just received and is ours.
        let fd = unsafe { OwnedFd::from_raw_fd(got_fd.expect("SCM_RIGHTS")) };
        assert_eq!(
            nix::sys::stat::fstat(fd.as_fd().as_raw_fd())
                .unwrap()
                .st_ino,
            ino
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

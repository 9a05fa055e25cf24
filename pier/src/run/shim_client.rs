//! A client of `berth-shim`'s control socket (its public protocol, see
//! `berth-shim --help`): one JSON request line, one JSON answer line; then,
//! for `attach` and `exec`, frames `[type u8][len u32 BE][payload]`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Frame types.
pub mod frame {
    /// Container stdout.
    pub const STDOUT: u8 = 1;
    /// Container stderr.
    pub const STDERR: u8 = 2;
    /// Exit (JSON; last frame).
    pub const EXIT: u8 = 3;
    /// Client dropped (last frame).
    pub const DROPPED: u8 = 4;
    /// stdin data (client to shim).
    pub const STDIN: u8 = 16;
    /// close stdin.
    pub const CLOSE_STDIN: u8 = 17;
    /// resize (rows u16, cols u16).
    pub const RESIZE: u8 = 18;
}

/// Connects to `STATE_DIR/shim.sock`.
pub fn connect(state_dir: &Path) -> Result<UnixStream> {
    let p = state_dir.join("shim.sock");
    UnixStream::connect(&p).with_context(|| format!("connect to {}", p.display()))
}

/// Reads one answer line without reading past it (frames may follow).
fn read_line(s: &mut UnixStream) -> Result<Value> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(0) => bail!("the shim closed the connection"),
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => line.push(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("read from the shim"),
        }
    }
    let v: Value = serde_json::from_slice(&line).context("parse the shim's answer")?;
    if v["ok"] != Value::Bool(true) {
        bail!(
            "{}",
            v["error"]
                .as_str()
                .unwrap_or("the shim refused the request")
        );
    }
    Ok(v)
}

/// Sends `req` on a new connection and returns the answer. `timeout`
/// bounds the wait for the answer (None: wait as long as it takes).
pub fn request(state_dir: &Path, req: &Value, timeout: Option<Duration>) -> Result<Value> {
    let mut s = connect(state_dir)?;
    s.set_read_timeout(timeout).ok();
    writeln!(s, "{req}").context("write to the shim")?;
    read_line(&mut s)
}

/// Sends a streaming request (`attach`, `exec`) and returns the stream,
/// positioned at the first frame, with the answer.
pub fn stream(state_dir: &Path, req: &Value) -> Result<(UnixStream, Value)> {
    let mut s = connect(state_dir)?;
    writeln!(s, "{req}").context("write to the shim")?;
    let v = read_line(&mut s)?;
    Ok((s, v))
}

/// Reads one frame; None at end of stream. A read timeout on the socket
/// surfaces as `WouldBlock`/`TimedOut` before any byte of the frame.
pub fn read_frame(s: &mut UnixStream) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut h = [0u8; 5];
    let mut got = 0;
    while got < 5 {
        match s.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "truncated frame",
                ))
            }
            Ok(n) => got += n,
            Err(e)
                if got > 0
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    let mut payload = vec![0u8; len];
    let mut off = 0;
    while off < len {
        match s.read(&mut payload[off..]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "truncated frame",
                ))
            }
            Ok(n) => off += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some((h[0], payload)))
}

/// Writes one frame.
pub fn write_frame(s: &mut UnixStream, t: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut b = Vec::with_capacity(5 + payload.len());
    b.push(t);
    b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    b.extend_from_slice(payload);
    s.write_all(&b)
}

/// The exit code in an exit frame or `exit.json`.
pub fn exit_code(v: &Value) -> i32 {
    v["exit_code"].as_i64().unwrap_or(-1) as i32
}

//! The control protocol's wire format (described in the crate docs and in
//! `berth-shim --help`): JSON request and reply lines, then for `attach` and
//! `exec` binary frames `[type: u8][length: u32 big-endian][payload]`.

/// Shim to client: bytes of the process's stdout (or its terminal).
pub const FRAME_STDOUT: u8 = 1;
/// Shim to client: bytes of the process's stderr.
pub const FRAME_STDERR: u8 = 2;
/// Shim to client: the process ended; payload is the exit JSON. Last frame.
pub const FRAME_EXIT: u8 = 3;
/// Shim to client: the client was too slow and was cut off; payload is
/// `{"stdout_bytes":N,"stderr_bytes":M}`, what it was sent before. Last frame.
pub const FRAME_DROPPED: u8 = 4;
/// Client to shim: bytes for the process's stdin.
pub const FRAME_STDIN: u8 = 16;
/// Client to shim: close the process's stdin (ignored with a terminal).
pub const FRAME_STDIN_CLOSE: u8 = 17;
/// Client to shim: terminal size, payload rows and columns as two u16
/// big-endian.
pub const FRAME_RESIZE: u8 = 18;

/// Largest frame payload a client may send.
pub const MAX_CLIENT_FRAME: usize = 1 << 20;

/// Largest request line.
pub const MAX_REQUEST_LINE: usize = 1 << 20;

/// Appends a frame.
pub fn push_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// A parsed frame: (type, payload, bytes it took in the buffer).
pub type Frame<'a> = (u8, &'a [u8], usize);

/// Splits the first complete frame off `buf`: `Ok(Some((type, payload,
/// bytes used)))`, `Ok(None)` when more bytes are needed, `Err` when the
/// frame is larger than `max`.
pub fn parse_frame(buf: &[u8], max: usize) -> Result<Option<Frame<'_>>, String> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > max {
        return Err(format!("frame of {len} bytes is larger than {max}"));
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    Ok(Some((buf[0], &buf[5..5 + len], 5 + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_wait_for_more_bytes() {
        let mut b = Vec::new();
        push_frame(&mut b, FRAME_STDIN, b"hello");
        push_frame(&mut b, FRAME_STDIN_CLOSE, b"");
        let (k, p, n) = parse_frame(&b, 100).unwrap().unwrap();
        assert_eq!((k, p, n), (FRAME_STDIN, &b"hello"[..], 10));
        let (k, p, _) = parse_frame(&b[n..], 100).unwrap().unwrap();
        assert_eq!((k, p.len()), (FRAME_STDIN_CLOSE, 0));
        assert!(parse_frame(&b[..7], 100).unwrap().is_none());
        assert!(parse_frame(&b, 3).is_err());
    }
}

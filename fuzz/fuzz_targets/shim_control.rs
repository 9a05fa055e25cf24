//! berth-shim's control socket input (`berth_shim::control`): the request
//! lines a client writes, and the binary frames that follow an `attach` or
//! `exec`.
//!
//! The input is the byte stream a client sends. It is read the way the shim
//! reads it (at most 16 KiB at a time, no more than [`request_room`]
//! allows) and split with [`take_line`]; if it ends with `...` (no newline
//! after), the client never stops: the unterminated last line (without the
//! `...`) is sent again and again. Checks:
//! - no panic, no hang: the buffer never holds more than one request line
//!   and its newline; an endless line ends as [`Line::TooLong`] (the shim
//!   answers with an error and hangs up) instead of being read forever;
//! - every line decodes ([`parse_request`]) to a request or an error, an
//!   unknown `op` always to an error; the decoded request has the `op` the
//!   line names, decodes the same with spaces or a `\r` around it, and
//!   decodes to itself when written again the way a client writes it;
//! - after an `attach` or `exec` line the rest is frames
//!   ([`parse_frame`]): a frame is taken only when complete and at most
//!   [`MAX_CLIENT_FRAME`] long, and written again ([`push_frame`]) gives the
//!   same bytes; a longer one is an error, never a wait for 4 GiB.
#![no_main]

use berth_shim::control::protocol::{parse_frame, push_frame, MAX_CLIENT_FRAME, MAX_REQUEST_LINE};
use berth_shim::control::requests::{parse_request, request_room, take_line, Line, Request};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// What the shim reads from a socket at once.
const READ_CHUNK: usize = 16 * 1024;

const OPS: [&str; 8] = [
    "state",
    "start",
    "kill",
    "wait",
    "resize",
    "reopen-log",
    "attach",
    "exec",
];

fn op_of(r: &Request) -> &'static str {
    match r {
        Request::State => "state",
        Request::Start => "start",
        Request::Kill { .. } => "kill",
        Request::Wait => "wait",
        Request::Resize { .. } => "resize",
        Request::ReopenLog => "reopen-log",
        Request::Attach { .. } => "attach",
        Request::Exec(_) => "exec",
    }
}

/// The request as a client writes it (`berth-shim ctl`, pier).
fn encode(r: &Request) -> Value {
    match r {
        Request::Kill { signal, all } => json!({"op": "kill", "signal": signal, "all": all}),
        Request::Resize { rows, cols } => json!({"op": "resize", "rows": rows, "cols": cols}),
        Request::Attach { stdin } => json!({"op": "attach", "stdin": stdin}),
        Request::Exec(e) => json!({
            "op": "exec", "process": e.process, "args": e.args, "env": e.env,
            "cwd": e.cwd, "tty": e.tty, "stdin": e.stdin,
        }),
        other => json!({ "op": op_of(other) }),
    }
}

fn check_request(line: &[u8]) -> Option<Request> {
    let r = parse_request(line);
    let op = serde_json::from_slice::<Value>(line)
        .ok()
        .and_then(|v| v.get("op").and_then(Value::as_str).map(str::to_string));
    let mut padded = b" \t".to_vec();
    padded.extend_from_slice(line);
    padded.extend_from_slice(b" \r");
    match (&r, parse_request(&padded)) {
        (Ok(a), Ok(b)) => assert_eq!(a, &b, "padding changed the request"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("padding changed the answer: {a:?} vs {b:?}"),
    }
    let r = match r {
        Ok(r) => r,
        Err(_) => {
            return None;
        }
    };
    let op = op.expect("a request without a string op was accepted");
    assert!(OPS.contains(&op.as_str()), "unknown op {op:?} accepted");
    assert_eq!(op, op_of(&r), "decoded as another request");
    let again = serde_json::to_vec(&encode(&r)).unwrap();
    let back = parse_request(&again)
        .unwrap_or_else(|e| panic!("{r:?} written as a client does is refused: {e:#}"));
    assert_eq!(
        back,
        r,
        "round trip through {}",
        String::from_utf8_lossy(&again)
    );
    Some(r)
}

fn check_frames(mut buf: &[u8]) {
    loop {
        match parse_frame(buf, MAX_CLIENT_FRAME) {
            Ok(Some((kind, payload, n))) => {
                assert!(payload.len() <= MAX_CLIENT_FRAME);
                assert_eq!(n, 5 + payload.len());
                let mut again = Vec::new();
                push_frame(&mut again, kind, payload);
                assert_eq!(again, &buf[..n], "frame written back differs");
                buf = &buf[n..];
            }
            Ok(None) => {
                if buf.len() >= 5 {
                    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                    assert!(buf.len() < 5 + len, "a complete frame was not taken");
                }
                return;
            }
            Err(_) => {
                let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                assert!(len > MAX_CLIENT_FRAME, "a frame of {len} bytes refused");
                return;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (stream, endless) = match data.strip_suffix(b"...") {
        Some(s) => (s, true),
        None => (data, false),
    };
    // The unterminated tail that an endless client repeats.
    let tail = match stream.iter().rposition(|&b| b == b'\n') {
        Some(i) => &stream[i + 1..],
        None => stream,
    };
    let endless = endless && !tail.is_empty();

    let mut inbuf: Vec<u8> = Vec::new();
    let mut sent = 0usize;
    let mut repeated = 0usize;
    loop {
        // Lines first, as the shim answers them after each read.
        loop {
            match take_line(&mut inbuf) {
                Line::Complete(line) => {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    if let Some(Request::Attach { .. } | Request::Exec(_)) = check_request(&line) {
                        // The connection now carries frames: the rest of
                        // what the client sent (and sends) is one.
                        let mut rest = std::mem::take(&mut inbuf);
                        rest.extend_from_slice(&stream[sent..]);
                        check_frames(&rest);
                        return;
                    }
                }
                Line::Partial => break,
                Line::TooLong => {
                    assert!(inbuf.len() > MAX_REQUEST_LINE);
                    return;
                }
            }
        }
        let room = request_room(inbuf.len());
        assert!(
            inbuf.len() <= MAX_REQUEST_LINE + 1,
            "{} bytes buffered",
            inbuf.len()
        );
        if room == 0 {
            panic!("stuck: the buffer is full and holds no line");
        }
        if sent < stream.len() {
            let n = room.min(READ_CHUNK).min(stream.len() - sent);
            inbuf.extend_from_slice(&stream[sent..sent + n]);
            sent += n;
        } else if endless {
            // The client goes on: the same bytes again, all the shim takes
            // (in one go here; the shim's 16 KiB reads would only make
            // this target scan the line 64 times over).
            let mut n = 0;
            while n < room {
                let k = (room - n).min(tail.len() - repeated % tail.len());
                let start = repeated % tail.len();
                inbuf.extend_from_slice(&tail[start..start + k]);
                repeated += k;
                n += k;
            }
            assert!(
                repeated <= 2 * (MAX_REQUEST_LINE + READ_CHUNK),
                "an endless client is still being read"
            );
        } else {
            return;
        }
    }
});

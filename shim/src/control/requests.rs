//! The control socket's JSON requests: splitting the input into lines,
//! decoding a line into a [`Request`] (no side effects, so it can be tested
//! and fuzzed on its own: `fuzz/fuzz_targets/shim_control.rs`), and mapping
//! a request onto the core.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::protocol::MAX_REQUEST_LINE;
use super::{Conn, Mode};
use crate::core::{Core, ExecRequest, CONTAINER};

/// A decoded control request.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `state`: the container's state.
    State,
    /// `start`.
    Start,
    /// `kill`: a signal (name or number as written; `TERM` if absent) and
    /// whether to signal every process.
    Kill {
        /// The signal as given.
        signal: String,
        /// `all`.
        all: bool,
    },
    /// `wait`: answered once the container has exited.
    Wait,
    /// `resize` the container's terminal.
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// `reopen-log`.
    ReopenLog,
    /// `attach`, with or without input.
    Attach {
        /// Send input frames to the container's stdin.
        stdin: bool,
    },
    /// `exec` a process.
    Exec(ExecRequest),
}

/// What [`take_line`] found in a connection's input.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its `\n`.
    Complete(Vec<u8>),
    /// No newline yet: read more.
    Partial,
    /// More than [`MAX_REQUEST_LINE`] bytes without a newline: the client
    /// is answered with an error and dropped.
    TooLong,
}

/// Takes the first request line out of `buf`.
pub fn take_line(buf: &mut Vec<u8>) -> Line {
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let mut line: Vec<u8> = buf.drain(..=end).collect();
            line.pop();
            Line::Complete(line)
        }
        None if buf.len() > MAX_REQUEST_LINE => Line::TooLong,
        None => Line::Partial,
    }
}

/// How many more bytes a connection reading requests (or waiting for an
/// answer to `wait`) may buffer: the longest line and its newline. A
/// client that sends more without a newline gets [`Line::TooLong`]; one
/// that keeps sending during a `wait` is no longer read from (TCP-style
/// backpressure instead of an ever-growing buffer).
pub fn request_room(buffered: usize) -> usize {
    (MAX_REQUEST_LINE + 1).saturating_sub(buffered)
}

/// Decodes one request line (JSON object with an `"op"`). Unknown
/// operations and malformed fields are errors.
pub fn parse_request(line: &[u8]) -> Result<Request> {
    let req: Value = serde_json::from_slice(line).context("request is not a JSON object")?;
    let op = req["op"].as_str().context("request has no \"op\"")?;
    Ok(match op {
        "state" => Request::State,
        "start" => Request::Start,
        "kill" => Request::Kill {
            signal: match &req["signal"] {
                Value::Null => "TERM".to_string(),
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => bail!("signal must be a name or a number"),
            },
            all: req["all"].as_bool().unwrap_or(false),
        },
        "wait" => Request::Wait,
        "resize" => {
            let (rows, cols) = size(&req)?;
            Request::Resize { rows, cols }
        }
        "reopen-log" => Request::ReopenLog,
        "attach" => Request::Attach {
            stdin: req["stdin"].as_bool().unwrap_or(false),
        },
        "exec" => Request::Exec(exec_request(&req)?),
        _ => bail!("unknown op {op:?}"),
    })
}

/// Answers the complete request lines buffered on `c`, until one switches
/// the connection to another mode.
pub(super) fn handle_lines(core: &mut Core, c: &mut Conn) {
    while matches!(c.mode, Mode::Requests) && !c.closing {
        let line = match take_line(&mut c.inbuf) {
            Line::Complete(line) => line,
            Line::Partial => return,
            Line::TooLong => {
                c.reply(json!({"ok": false, "error": "request line too long"}));
                c.closing = true;
                return;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_request(&line).and_then(|r| handle(core, c, r)) {
            Ok(Some(v)) => c.reply(v),
            Ok(None) => {}
            Err(e) => c.reply(json!({"ok": false, "error": format!("{e:#}")})),
        }
    }
}

/// Carries out one request; `Ok(None)` when the answer comes later (`wait`).
fn handle(core: &mut Core, c: &mut Conn, req: Request) -> Result<Option<Value>> {
    let ok = json!({"ok": true});
    match req {
        Request::State => {
            let mut v = core.state();
            v["ok"] = json!(true);
            Ok(Some(v))
        }
        Request::Start => core.start().map(|_| Some(ok)),
        Request::Kill { signal, all } => core.kill(&signal, all).map(|_| Some(ok)),
        Request::Wait => match core.exit_status() {
            Some(e) => Ok(Some(json!({"ok": true, "exit": e.to_json()}))),
            None => {
                c.mode = Mode::Waiting;
                Ok(None)
            }
        },
        Request::Resize { rows, cols } => core.resize(CONTAINER, rows, cols).map(|_| Some(ok)),
        Request::ReopenLog => core.reopen_log().map(|_| Some(ok)),
        Request::Attach { stdin } => {
            if stdin && !core.has_stdin(CONTAINER) {
                bail!(
                    "the container has no open stdin (start the shim with --stdin or --terminal)"
                );
            }
            let sub = core.subscribe(CONTAINER)?;
            c.mode = Mode::Stream {
                sub,
                session: CONTAINER,
                stdin,
                ended: false,
            };
            Ok(Some(ok))
        }
        Request::Exec(r) => {
            let stdin =
                r.stdin || r.tty || r.process.as_ref().is_some_and(|p| p["terminal"] == true);
            let (session, pid) = core.exec(r)?;
            let sub = core.subscribe(session)?;
            c.mode = Mode::Stream {
                sub,
                session,
                stdin,
                ended: false,
            };
            Ok(Some(json!({"ok": true, "pid": pid})))
        }
    }
}

fn size(req: &Value) -> Result<(u16, u16)> {
    let get = |k: &str| -> Result<u16> {
        req[k]
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .with_context(|| format!("{k} must be a number from 0 to 65535"))
    };
    Ok((get("rows")?, get("cols")?))
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .with_context(|| format!("{key}: not a string"))
            })
            .collect(),
        _ => bail!("{key} must be an array of strings"),
    }
}

fn exec_request(req: &Value) -> Result<ExecRequest> {
    let process = match &req["process"] {
        Value::Null => None,
        p @ Value::Object(_) => Some(p.clone()),
        _ => bail!("process must be an object (an OCI process)"),
    };
    Ok(ExecRequest {
        process,
        args: strings(&req["args"], "args")?,
        env: strings(&req["env"], "env")?,
        cwd: req["cwd"].as_str().map(str::to_string),
        tty: req["tty"].as_bool().unwrap_or(false),
        stdin: req["stdin"].as_bool().unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Request> {
        parse_request(s.as_bytes())
    }

    #[test]
    fn decodes_every_request() {
        assert_eq!(parse(r#"{"op":"state"}"#).unwrap(), Request::State);
        assert_eq!(parse(r#"{"op":"start"}"#).unwrap(), Request::Start);
        assert_eq!(
            parse(r#"{"op":"kill"}"#).unwrap(),
            Request::Kill {
                signal: "TERM".into(),
                all: false
            }
        );
        assert_eq!(
            parse(r#"{"op":"kill","signal":9,"all":true}"#).unwrap(),
            Request::Kill {
                signal: "9".into(),
                all: true
            }
        );
        assert_eq!(
            parse(r#" {"op":"resize","rows":24,"cols":80} "#).unwrap(),
            Request::Resize { rows: 24, cols: 80 }
        );
        assert_eq!(parse(r#"{"op":"wait"}"#).unwrap(), Request::Wait);
        assert_eq!(parse(r#"{"op":"reopen-log"}"#).unwrap(), Request::ReopenLog);
        assert_eq!(
            parse(r#"{"op":"attach","stdin":true}"#).unwrap(),
            Request::Attach { stdin: true }
        );
        let Request::Exec(e) =
            parse(r#"{"op":"exec","args":["sh","-c","x"],"env":["A=1"],"cwd":"/","tty":true}"#)
                .unwrap()
        else {
            panic!("not an exec");
        };
        assert_eq!(e.args, ["sh", "-c", "x"]);
        assert_eq!((e.env.len(), e.cwd.as_deref(), e.tty), (1, Some("/"), true));
    }

    #[test]
    fn refuses_unknown_and_malformed_requests() {
        for bad in [
            "",
            "[]",
            "\"state\"",
            r#"{"op":"State"}"#,
            r#"{"op":"format-disk"}"#,
            r#"{"op":7}"#,
            r#"{"op":"kill","signal":[9]}"#,
            r#"{"op":"resize","rows":65536,"cols":1}"#,
            r#"{"op":"resize","rows":-1,"cols":1}"#,
            r#"{"op":"exec","args":"sh"}"#,
            r#"{"op":"exec","env":[1]}"#,
            r#"{"op":"exec","process":[]}"#,
            "{\"op\":\"state\"",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn lines_are_split_and_bounded() {
        let mut buf = b"{\"op\":\"state\"}\n{\"op\"".to_vec();
        assert_eq!(
            take_line(&mut buf),
            Line::Complete(b"{\"op\":\"state\"}".to_vec())
        );
        assert_eq!(take_line(&mut buf), Line::Partial);
        assert_eq!(buf, b"{\"op\"");
        let mut long = vec![b' '; MAX_REQUEST_LINE];
        assert_eq!(take_line(&mut long), Line::Partial);
        assert_eq!(request_room(long.len()), 1);
        long.push(b'\n');
        assert_eq!(request_room(long.len()), 0);
        assert!(matches!(take_line(&mut long), Line::Complete(l) if l.len() == MAX_REQUEST_LINE));
        let mut too_long = vec![b' '; MAX_REQUEST_LINE + 1];
        assert_eq!(take_line(&mut too_long), Line::TooLong);
    }
}

//! The control socket's JSON requests, mapped onto the core.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::protocol::MAX_REQUEST_LINE;
use super::{Conn, Mode};
use crate::core::{Core, ExecRequest, CONTAINER};

/// Answers the complete request lines buffered on `c`, until one switches
/// the connection to another mode.
pub(super) fn handle_lines(core: &mut Core, c: &mut Conn) {
    while matches!(c.mode, Mode::Requests) && !c.closing {
        let Some(end) = c.inbuf.iter().position(|&b| b == b'\n') else {
            if c.inbuf.len() > MAX_REQUEST_LINE {
                c.reply(json!({"ok": false, "error": "request line too long"}));
                c.closing = true;
            }
            return;
        };
        let line: Vec<u8> = c.inbuf.drain(..=end).collect();
        let line = &line[..line.len() - 1];
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match handle(core, c, line) {
            Ok(Some(v)) => c.reply(v),
            Ok(None) => {}
            Err(e) => c.reply(json!({"ok": false, "error": format!("{e:#}")})),
        }
    }
}

/// One request; `Ok(None)` when the answer comes later (`wait`).
fn handle(core: &mut Core, c: &mut Conn, line: &[u8]) -> Result<Option<Value>> {
    let req: Value = serde_json::from_slice(line).context("request is not a JSON object")?;
    let op = req["op"].as_str().context("request has no \"op\"")?;
    let ok = json!({"ok": true});
    match op {
        "state" => {
            let mut v = core.state();
            v["ok"] = json!(true);
            Ok(Some(v))
        }
        "start" => core.start().map(|_| Some(ok)),
        "kill" => {
            let signal = match &req["signal"] {
                Value::Null => "TERM".to_string(),
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => bail!("signal must be a name or a number"),
            };
            let all = req["all"].as_bool().unwrap_or(false);
            core.kill(&signal, all).map(|_| Some(ok))
        }
        "wait" => match core.exit_status() {
            Some(e) => Ok(Some(json!({"ok": true, "exit": e.to_json()}))),
            None => {
                c.mode = Mode::Waiting;
                Ok(None)
            }
        },
        "resize" => {
            let (rows, cols) = size(&req)?;
            core.resize(CONTAINER, rows, cols).map(|_| Some(ok))
        }
        "reopen-log" => core.reopen_log().map(|_| Some(ok)),
        "attach" => {
            let stdin = req["stdin"].as_bool().unwrap_or(false);
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
        "exec" => {
            let r = exec_request(&req)?;
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
        _ => bail!("unknown op {op:?}"),
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

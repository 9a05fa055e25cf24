//! `berth-shim ctl`: a small client of the control protocol, for scripts and
//! people. It is also an example of the protocol in use.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::{json, Value};

use crate::cli::CtlOptions;
use crate::control::protocol::*;
use crate::control::SOCKET;
use crate::exit::EXIT_FILE;
use crate::fdio;
use crate::runtime::Runtime;
use crate::shim::SHIM_JSON;

/// Exit code of `ctl attach`/`exec` when the stream ended without an exit
/// status (dropped, or the shim died).
pub const NO_STATUS: i32 = 255;

/// Runs a ctl command; returns the process exit code.
pub fn main(o: CtlOptions) -> i32 {
    match run(&o) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth-shim ctl: {e:#}");
            1
        }
    }
}

fn run(o: &CtlOptions) -> Result<i32> {
    let dir = &o.state_dir;
    let args: Vec<&str> = o.command[1..].iter().map(String::as_str).collect();
    match (o.command[0].as_str(), args.as_slice()) {
        ("state", []) => state(dir),
        ("start", []) => simple(dir, json!({"op": "start"})),
        ("reopen-log", []) => simple(dir, json!({"op": "reopen-log"})),
        ("kill", rest) => {
            let all = rest.contains(&"--all");
            let sig: Vec<&&str> = rest.iter().filter(|a| **a != "--all").collect();
            let signal = match sig.as_slice() {
                [] => "TERM",
                [s] => s,
                _ => bail!("usage: kill [SIGNAL] [--all]"),
            };
            simple(dir, json!({"op": "kill", "signal": signal, "all": all}))
        }
        ("resize", [rows, cols]) => {
            let rows: u16 = rows.parse().context("rows")?;
            let cols: u16 = cols.parse().context("cols")?;
            simple(dir, json!({"op": "resize", "rows": rows, "cols": cols}))
        }
        ("wait", []) => wait(dir),
        ("attach", rest) => {
            let stdin = match rest {
                [] => false,
                ["--stdin"] => true,
                _ => bail!("usage: attach [--stdin]"),
            };
            let mut sock = connect(dir)?;
            let (_, left) = request(&mut sock, &json!({"op": "attach", "stdin": stdin}))?;
            stream(sock, left, stdin)
        }
        ("exec", rest) => exec(dir, rest),
        (cmd, _) => bail!("unknown command or wrong arguments: {cmd} (see berth-shim --help)"),
    }
}

fn connect(dir: &Path) -> Result<UnixStream> {
    let p = dir.join(SOCKET);
    UnixStream::connect(&p).with_context(|| format!("connect to {}", p.display()))
}

/// Sends one request and reads its answer line; returns it and the bytes
/// read past it (the start of a frame stream).
fn request(sock: &mut UnixStream, req: &Value) -> Result<(Value, Vec<u8>)> {
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    sock.write_all(&line).context("send request")?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            break i;
        }
        let n = sock.read(&mut chunk).context("read answer")?;
        if n == 0 {
            bail!("the shim closed the connection without answering");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let v: Value = serde_json::from_slice(&buf[..end]).context("bad answer")?;
    if v["ok"] != true {
        bail!("{}", v["error"].as_str().unwrap_or("request failed"));
    }
    Ok((v, buf[end + 1..].to_vec()))
}

fn simple(dir: &Path, req: Value) -> Result<i32> {
    let mut sock = connect(dir)?;
    request(&mut sock, &req)?;
    Ok(0)
}

/// Prints the exit JSON once the container exited (from the exit file when
/// the shim already left).
fn wait(dir: &Path) -> Result<i32> {
    let exit = match connect(dir) {
        Ok(mut sock) => request(&mut sock, &json!({"op": "wait"}))?.0["exit"].clone(),
        Err(e) => match std::fs::read(dir.join(EXIT_FILE)) {
            Ok(t) => serde_json::from_slice(&t).context("bad exit file")?,
            Err(_) => return Err(e),
        },
    };
    println!("{exit}");
    Ok(0)
}

/// The shim's answer, or when it does not answer, what the state directory
/// and the runtime say.
fn state(dir: &Path) -> Result<i32> {
    if let Ok(mut sock) = connect(dir) {
        if let Ok((mut v, _)) = request(&mut sock, &json!({"op": "state"})) {
            if let Some(o) = v.as_object_mut() {
                o.remove("ok");
                o.insert("shim".into(), json!("running"));
            }
            println!("{v}");
            return Ok(0);
        }
    }
    let info_path = dir.join(SHIM_JSON);
    let info: Value = serde_json::from_slice(
        &std::fs::read(&info_path)
            .with_context(|| format!("no shim state: {}", info_path.display()))?,
    )
    .context("bad shim.json")?;
    let exit: Option<Value> = std::fs::read(dir.join(EXIT_FILE))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok());
    let id = info["id"].as_str().unwrap_or_default().to_string();
    let runtime = Runtime {
        path: info["runtime"].as_str().unwrap_or_default().into(),
        args: serde_json::from_value(info["runtime_args"].clone()).unwrap_or_default(),
    };
    let runtime_status = runtime
        .run("state", [&id])
        .ok()
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
        .and_then(|v| v["status"].as_str().map(str::to_string));
    let status = match (&exit, &runtime_status) {
        (Some(_), _) => "stopped".to_string(),
        (None, Some(s)) => s.clone(),
        (None, None) => "unknown".to_string(),
    };
    let v = json!({
        "shim": if exit.is_some() { "exited" } else { "dead" },
        "id": id,
        "status": status,
        "runtime_status": runtime_status,
        "exit": exit,
    });
    println!("{v}");
    Ok(0)
}

fn exec(dir: &Path, rest: &[&str]) -> Result<i32> {
    let (mut tty, mut stdin, mut cwd, mut env) = (false, false, None, Vec::new());
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            "--tty" | "-t" => tty = true,
            "--stdin" | "-i" => stdin = true,
            "--cwd" => {
                i += 1;
                cwd = Some(*rest.get(i).context("--cwd needs a value")?);
            }
            "--env" | "-e" => {
                i += 1;
                env.push(*rest.get(i).context("--env needs a value")?);
            }
            "--" => {
                i += 1;
                break;
            }
            _ => break,
        }
        i += 1;
    }
    let args = &rest[i..];
    if args.is_empty() {
        bail!("usage: exec [--tty] [--stdin] [--cwd DIR] [--env K=V]... ARGS...");
    }
    let mut sock = connect(dir)?;
    let req =
        json!({"op": "exec", "args": args, "env": env, "cwd": cwd, "tty": tty, "stdin": stdin});
    let (_, left) = request(&mut sock, &req)?;
    stream(sock, left, stdin || tty)
}

/// Copies frames to stdout/stderr and (with `stdin`) this process's stdin
/// to the shim, until the exit frame; returns the exit code.
fn stream(sock: UnixStream, mut inbuf: Vec<u8>, stdin: bool) -> Result<i32> {
    sock.set_nonblocking(true)?;
    let mut out: Vec<u8> = Vec::new();
    let mut stdin_open = stdin;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some((kind, payload, n)) =
            parse_frame(&inbuf, usize::MAX).map_err(anyhow::Error::msg)?
        {
            match kind {
                FRAME_STDOUT => std::io::stdout().write_all(payload)?,
                FRAME_STDERR => std::io::stderr().write_all(payload)?,
                FRAME_EXIT => {
                    std::io::stdout().flush()?;
                    let v: Value = serde_json::from_slice(payload).context("bad exit frame")?;
                    return Ok(v["exit_code"].as_i64().unwrap_or(i64::from(NO_STATUS)) as i32);
                }
                FRAME_DROPPED => {
                    eprintln!(
                        "berth-shim ctl: dropped by the shim (too slow) after {}",
                        String::from_utf8_lossy(payload)
                    );
                    return Ok(NO_STATUS);
                }
                _ => {}
            }
            inbuf.drain(..n);
        }
        std::io::stdout().flush()?;
        let stdin_fd = std::io::stdin();
        let mut fds = vec![PollFd::new(
            sock.as_fd(),
            if out.is_empty() {
                PollFlags::POLLIN
            } else {
                PollFlags::POLLIN | PollFlags::POLLOUT
            },
        )];
        if stdin_open && out.len() < 64 * 1024 {
            // SAFETY: stdin stays open for the whole call.
            fds.push(PollFd::new(
                unsafe { BorrowedFd::borrow_raw(stdin_fd.as_raw_fd()) },
                PollFlags::POLLIN,
            ));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        let sock_ev = fds[0].revents().unwrap_or(PollFlags::empty());
        let stdin_ev = fds
            .get(1)
            .and_then(|f| f.revents())
            .unwrap_or(PollFlags::empty());
        drop(fds);
        if sock_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match fdio::read(sock.as_fd(), &mut buf) {
                fdio::Read::Data(n) => inbuf.extend_from_slice(&buf[..n]),
                fdio::Read::WouldBlock => {}
                fdio::Read::Eof => {
                    if parse_frame(&inbuf, usize::MAX).ok().flatten().is_none() {
                        eprintln!("berth-shim ctl: the stream ended without an exit status (the shim died?)");
                        return Ok(NO_STATUS);
                    }
                }
            }
        }
        if !stdin_ev.is_empty() {
            match nix::unistd::read(stdin_fd.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => {
                    push_frame(&mut out, FRAME_STDIN_CLOSE, b"");
                    stdin_open = false;
                }
                Ok(n) => push_frame(&mut out, FRAME_STDIN, &buf[..n]),
            }
        }
        if !out.is_empty() {
            match fdio::write(sock.as_fd(), &out) {
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) => return Err(e).context("write to the shim"),
            }
        }
    }
}

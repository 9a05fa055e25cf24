//! Running OCI hooks: the container state as JSON on stdin, `timeout` honoured.
//!
//! No thread is started (the CLI stays single-threaded for `clone`): the hook's
//! exit is awaited on a pidfd with `poll`, and its output is drained from the
//! same loop so a chatty hook cannot block on a full pipe.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::Hook;
use serde::Serialize;

use crate::sys;

/// The state document hooks receive on stdin (OCI runtime spec "State").
#[derive(Debug, Serialize)]
pub struct HookState<'a> {
    /// Runtime spec version.
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    /// Container ID.
    pub id: &'a str,
    /// Lifecycle status.
    pub status: &'a str,
    /// Host pid of the container process (0 when there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Absolute bundle path.
    pub bundle: &'a Path,
    /// Annotations of the config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<&'a std::collections::HashMap<String, String>>,
}

/// Keeps at most this much of a failing hook's output for the error message.
const OUTPUT_KEPT: usize = 2048;

/// Runs `hooks` in order; the first failure is returned as an error naming the
/// hook kind and path.
pub fn run_all(kind: &str, hooks: &[Hook], state: &HookState) -> Result<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_vec(state).context("encode hook state")?;
    for hook in hooks {
        run_one(hook, &json).with_context(|| format!("{kind} hook {}", hook.path().display()))?;
    }
    Ok(())
}

/// Runs `hooks`, only logging failures (poststart, poststop: the spec says the
/// lifecycle goes on).
pub fn run_all_warn(kind: &str, hooks: &[Hook], state: &HookState) {
    if let Err(e) = run_all(kind, hooks, state) {
        crate::logging::warn(&format!("{e:#}"));
    }
}

fn run_one(hook: &Hook, state_json: &[u8]) -> Result<()> {
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((arg0, rest)) = args.split_first() {
            cmd.arg0(arg0).args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    let out_w2 = out_w.try_clone().context("dup")?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(out_w2));
    let mut child = cmd.spawn().context("start")?;
    // The parent's copies of the write ends went into `cmd`; drop them so the
    // pipe reports EOF when the hook exits.
    drop(cmd);
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that exits without reading its stdin is fine (EPIPE).
        let _ = stdin.write_all(state_json);
    }
    let pidfd = sys::pidfd_open(child.id() as i32).context("pidfd_open")?;
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut output = Vec::new();
    let mut out_open = true;
    loop {
        let timeout = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("timed out after {}s", hook.timeout().unwrap_or_default());
                }
                PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32 + 1)
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        if out_open {
            fds.push(PollFd::new(out_r.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        let exited = fds[0].revents().is_some_and(|r| !r.is_empty());
        let readable = out_open
            && fds
                .get(1)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty());
        if readable {
            let mut buf = [0u8; 4096];
            match nix::unistd::read(out_r.as_raw_fd(), &mut buf) {
                Ok(0) => out_open = false,
                Ok(n) => {
                    let keep = OUTPUT_KEPT.saturating_sub(output.len()).min(n);
                    output.extend_from_slice(&buf[..keep]);
                }
                Err(nix::Error::EINTR) => {}
                Err(_) => out_open = false,
            }
        }
        if exited {
            break;
        }
    }
    let status = child.wait().context("wait")?;
    if !status.success() {
        let text = String::from_utf8_lossy(&output);
        let text = text.trim().replace('\n', " ");
        if text.is_empty() {
            bail!("failed: {status}");
        }
        bail!("failed: {status}: {text}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).unwrap()
    }

    fn state() -> HookState<'static> {
        HookState {
            oci_version: "1.1.0",
            id: "c",
            status: "creating",
            pid: Some(1),
            bundle: Path::new("/b"),
            annotations: None,
        }
    }

    #[test]
    fn hook_gets_state_on_stdin() {
        let dir = std::env::temp_dir().join(format!("berth-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c","cat > {}"]}}"#,
            out.display()
        ));
        run_all("test", &[h], &state()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(v["id"], "c");
        assert_eq!(v["status"], "creating");
        assert_eq!(v["pid"], 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failing_hook_reports_output() {
        let h = hook(r#"{"path":"/bin/sh","args":["sh","-c","echo nope >&2; exit 3"]}"#);
        let e = format!(
            "{:#}",
            run_all("createRuntime", &[h], &state()).unwrap_err()
        );
        assert!(
            e.contains("createRuntime hook /bin/sh") && e.contains("nope"),
            "{e}"
        );
    }

    #[test]
    fn hanging_hook_times_out() {
        let h = hook(r#"{"path":"/bin/sh","args":["sh","-c","exec sleep 30"],"timeout":1}"#);
        let t = Instant::now();
        let e = format!("{:#}", run_all("prestart", &[h], &state()).unwrap_err());
        assert!(e.contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}

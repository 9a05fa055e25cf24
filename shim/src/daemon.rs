//! Daemonizing with a sync pipe: the caller's process waits until the shim
//! reports that the container is created (and the control socket ready) or
//! that it failed, and exits accordingly.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result};
use nix::unistd::{fork, setsid, ForkResult};

/// The daemon's end of the sync pipe.
pub struct Notifier(std::fs::File);

impl Notifier {
    /// Tells the caller that the shim is ready: it exits with status 0.
    pub fn ok(mut self) {
        let _ = self.0.write_all(b"OK\n");
    }

    /// Tells the caller that the shim failed: it prints `msg` and exits 1.
    pub fn fail(mut self, msg: &str) {
        let _ = self.0.write_all(format!("ERR {msg}\n").as_bytes());
    }
}

/// Forks. The parent waits for the child's report and exits the process
/// with it (so this returns only in the child). The child leaves the
/// caller's session, becomes a child subreaper (orphans of the container
/// are re-parented to it, not to init) and has its stdin and stdout on
/// /dev/null and its stderr appended to `log`.
///
/// Must be called while the process has one thread.
pub fn daemonize(log: &Path) -> Result<Notifier> {
    let (r, w): (OwnedFd, OwnedFd) = crate::fdio::pipe()?;
    // SAFETY: the shim is single-threaded here, so the child may do anything.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Parent { .. } => {
            drop(w);
            let mut text = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut text);
            let code = match text.strip_prefix("OK") {
                Some(_) => 0,
                None => {
                    let msg = text.strip_prefix("ERR ").map(str::trim).unwrap_or_default();
                    if msg.is_empty() {
                        eprintln!(
                            "berth-shim: the shim exited during startup (see {})",
                            log.display()
                        );
                    } else {
                        eprintln!("berth-shim: {msg}");
                    }
                    1
                }
            };
            std::process::exit(code);
        }
        ForkResult::Child => {
            drop(r);
            setsid().context("setsid")?;
            nix::sys::prctl::set_child_subreaper(true).context("PR_SET_CHILD_SUBREAPER")?;
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?;
            let err = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .with_context(|| format!("open {}", log.display()))?;
            for (fd, to) in [(&null, 0), (&null, 1), (&err, 2)] {
                nix::unistd::dup2(fd.as_raw_fd(), to).context("dup2")?;
            }
            std::env::set_current_dir("/").context("chdir /")?;
            Ok(Notifier(std::fs::File::from(w)))
        }
    }
}

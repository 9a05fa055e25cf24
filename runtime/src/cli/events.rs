//! `berth events`: a stream of JSON lines, runc's shape:
//! `{"type":"stats","id":ID,"data":{...}}` every `--interval`, and
//! `{"type":"oom","id":ID}` as soon as the kernel's OOM killer kills a
//! process of the container. Ends when the container stops. With `--stats`,
//! prints one stats event and exits.
//!
//! OOM kills are noticed without polling: on v2 through inotify on
//! `memory.events`, on v1 through an eventfd registered for
//! `memory.oom_control` in `cgroup.event_control`; either way the kill is
//! confirmed by the `oom_kill` counter going up.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::Serialize;

use super::Global;
use crate::cgroups::{stats::Stats, Cgroup};
use crate::container::state::{ContainerDir, Status};

/// Arguments of `events`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interval between stats events (`5s`, `500ms`).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Print the stats once and exit.
    #[arg(long)]
    stats: bool,
    /// Container ID.
    id: String,
}

/// One event line.
#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    typ: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Stats>,
}

fn emit(e: &Event) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, e)?;
    out.write_all(b"\n")?;
    out.flush().context("write to standard output")
}

/// Runs `events`.
pub fn run(g: &Global, a: Args) -> Result<()> {
    if a.interval.is_zero() {
        bail!("--interval must be greater than 0");
    }
    let state = {
        let dir = ContainerDir::open(&g.root, &a.id)?;
        let state = dir.load()?;
        if dir.status(&state) == Status::Stopped {
            bail!("container with id {} is not running", a.id);
        }
        state
        // The lock goes here: events runs for long and must not block
        // other commands on the container.
    };
    let cg = Cgroup::open(&state.cgroup_path)?;
    if a.stats {
        return emit(&Event {
            typ: "stats",
            id: &a.id,
            data: Some(cg.stats()),
        });
    }
    let watch = OomWatch::new(&cg)?;
    let mut kills = cg.oom_kills();
    let mut next_tick = Instant::now() + a.interval;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        // Wake at least every 200 ms to notice that the container stopped.
        let wait = wait.min(Duration::from_millis(200));
        let woke = watch.wait(wait)?;
        let now = cg.oom_kills();
        // v1's eventfd fires once per OOM (and when the cgroup goes away);
        // v2 signals every change of memory.events, so compare the counter.
        let oom = if watch.eventfd_based() {
            woke && cg.dir("memory").is_some_and(|d| d.exists())
        } else {
            now > kills
        };
        if oom {
            emit(&Event {
                typ: "oom",
                id: &a.id,
                data: None,
            })?;
        }
        kills = kills.max(now);
        if !running(&g.root, &a.id) {
            return Ok(());
        }
        if Instant::now() >= next_tick {
            emit(&Event {
                typ: "stats",
                id: &a.id,
                data: Some(cg.stats()),
            })?;
            next_tick += a.interval;
        }
    }
}

fn running(root: &Path, id: &str) -> bool {
    let Ok(dir) = ContainerDir::open_unlocked(root, id) else {
        return false;
    };
    dir.load().is_ok_and(|s| dir.status(&s) != Status::Stopped)
}

/// A descriptor that becomes readable when the cgroup may have had an OOM.
struct OomWatch {
    fd: Option<OwnedFd>,
    eventfd: bool,
    // v1: the `memory.oom_control` file must stay open while registered.
    _control: Option<File>,
}

impl OomWatch {
    fn new(cg: &Cgroup) -> Result<OomWatch> {
        let (Some(file), _) = cg.oom_file() else {
            // No memory controller: stats only.
            return Ok(OomWatch {
                fd: None,
                eventfd: false,
                _control: None,
            });
        };
        if cg.is_v2() {
            // SAFETY: plain syscalls; the descriptor is checked and owned.
            let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error()).context("inotify_init1");
            }
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let path = crate::sys::cstr(&file)?;
            // SAFETY: valid descriptor and C string.
            if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) }
                < 0
            {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("inotify_add_watch {}", file.display()));
            }
            return Ok(OomWatch {
                fd: Some(fd),
                eventfd: false,
                _control: None,
            });
        }
        // SAFETY: plain syscall; the descriptor is checked and owned.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(std::io::Error::last_os_error()).context("eventfd");
        }
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        let control = File::open(&file).with_context(|| format!("open {}", file.display()))?;
        let dir = file.parent().unwrap_or(Path::new("/"));
        let line = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
        std::fs::write(dir.join("cgroup.event_control"), line)
            .with_context(|| format!("register OOM notification in {}", dir.display()))?;
        Ok(OomWatch {
            fd: Some(efd),
            eventfd: true,
            _control: Some(control),
        })
    }

    fn eventfd_based(&self) -> bool {
        self.eventfd
    }

    /// Waits up to `timeout`; true if the descriptor fired (it is drained).
    fn wait(&self, timeout: Duration) -> Result<bool> {
        let Some(fd) = &self.fd else {
            std::thread::sleep(timeout);
            return Ok(false);
        };
        let ms = PollTimeout::try_from(timeout.as_millis() as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) | Err(nix::Error::EINTR) => Ok(false),
            Ok(_) => {
                let mut buf = [0u8; 4096];
                // SAFETY: reading into a local buffer from our descriptor.
                while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0
                {
                }
                Ok(true)
            }
            Err(e) => Err(e).context("poll"),
        }
    }
}

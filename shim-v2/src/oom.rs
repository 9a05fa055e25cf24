//! Notices when the kernel's OOM killer kills a process of the container,
//! without polling: on cgroup v1 through an eventfd registered for
//! `memory.oom_control` in `cgroup.event_control`, on v2 through inotify on
//! `memory.events`. Either way the kill is confirmed by the `oom_kill`
//! counter going up (a v1 eventfd also fires when the cgroup is removed).

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use anyhow::{bail, Context, Result};
use berth_shim::oom::OomWatch;

/// A readable descriptor that signals OOM kills in one container.
pub struct OomNotifier {
    fd: OwnedFd,
    // v1: the memory.oom_control file must stay open while registered.
    _control: Option<File>,
    watch: OomWatch,
    last: u64,
}

impl OomNotifier {
    /// Watches the memory cgroup of `pid` (alive). `None` when it has none.
    pub fn for_pid(pid: i32) -> Result<Option<OomNotifier>> {
        let watch = OomWatch::for_pid(pid);
        let Some(file) = watch.files().first().cloned() else {
            return Ok(None);
        };
        let last = watch.count();
        let dir = file.parent().context("cgroup directory")?;
        if file.ends_with("memory.oom_control") {
            // SAFETY: eventfd(2) returns a new descriptor or -1.
            let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if efd < 0 {
                return Err(std::io::Error::last_os_error()).context("eventfd");
            }
            // SAFETY: efd is a new descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(efd) };
            let control = File::open(&file).with_context(|| format!("open {}", file.display()))?;
            let ctl = dir.join("cgroup.event_control");
            std::fs::OpenOptions::new()
                .write(true)
                .open(&ctl)
                .and_then(|mut f| {
                    f.write_all(format!("{} {}", fd.as_raw_fd(), control.as_raw_fd()).as_bytes())
                })
                .with_context(|| format!("register in {}", ctl.display()))?;
            Ok(Some(OomNotifier {
                fd,
                _control: Some(control),
                watch,
                last,
            }))
        } else {
            // SAFETY: inotify_init1(2) returns a new descriptor or -1.
            let ifd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
            if ifd < 0 {
                return Err(std::io::Error::last_os_error()).context("inotify_init1");
            }
            // SAFETY: ifd is a new descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(ifd) };
            let path = CString::new(file.as_os_str().as_bytes())?;
            // SAFETY: valid descriptor and C string.
            if unsafe { libc::inotify_add_watch(ifd, path.as_ptr(), libc::IN_MODIFY) } < 0 {
                let e = std::io::Error::last_os_error();
                bail!("inotify_add_watch {}: {e}", file.display());
            }
            Ok(Some(OomNotifier {
                fd,
                _control: None,
                watch,
                last,
            }))
        }
    }

    /// The descriptor to poll for reading.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads the notification; true when the OOM killer killed since the
    /// last time.
    pub fn ready(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        // SAFETY: read(2) into our buffer; the descriptor is non-blocking.
        while unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        let now = self.watch.count();
        let killed = now > self.last;
        self.last = now;
        killed
    }
}

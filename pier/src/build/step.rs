//! One build step's root filesystem and, for `RUN`, its container.
//!
//! [`StepMount`] mounts an overlay of the current layers with a fresh upper
//! directory under the store's `tmp/` (same file system as `layers/`, so
//! the upper directory can be renamed into place as the new layer) and
//! always cleans up on drop: the container is force-deleted, the overlay
//! unmounted, the directory removed, whether the step succeeded, failed or
//! was interrupted.
//!
//! `RUN` uses the runtime's own `run` command (`RUNTIME --root R run
//! --bundle B ID`): a build step is a foreground process whose output goes
//! to the build log and whose exit code decides the build, which is what
//! `run` does, with no daemon to keep alive; any runc-compatible runtime
//! works (berth, runc, crun). `pier run` containers use `berth-shim`
//! instead, because they outlive the `pier` command.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use nix::mount::{umount2, MntFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::Value;

use super::commit::{adopt_upper, drop_created_mountpoints, is_empty_dir, write_layer, NewLayer};
use super::leftovers;
use crate::image::Layer;
use crate::inroot::Root;
use crate::rootfs::RootfsMount;
use crate::run::runtime::Runtime;
use crate::store::{Lock, Store};

/// A mounted step root filesystem.
pub struct StepMount<'a> {
    store: &'a Store,
    dir: PathBuf,
    rootfs: PathBuf,
    upper: PathBuf,
    mounted: bool,
    container: Option<(Runtime, String)>,
    /// Marks the step as alive (see [`leftovers`]); released last.
    _owner: Lock,
}

impl<'a> StepMount<'a> {
    /// Mounts `layers` (bottom first) with a fresh upper directory.
    pub fn new(store: &'a Store, layers: &[Layer]) -> Result<StepMount<'a>> {
        let dir = store.tmp_path(leftovers::STEP_PREFIX);
        let owner = match leftovers::claim_step_dir(&dir) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let m = match RootfsMount::mount_layers(store, layers, &dir) {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        crate::failpoint::hit("build-step-mounted");
        Ok(StepMount {
            store,
            dir: m.dir,
            rootfs: m.rootfs,
            upper: m.upper,
            mounted: true,
            container: None,
            _owner: owner,
        })
    }

    /// The merged root filesystem.
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// The step directory (the bundle of a `RUN`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn umount(&mut self) -> Result<()> {
        if self.mounted {
            umount2(&self.rootfs, MntFlags::empty())
                .or_else(|_| umount2(&self.rootfs, MntFlags::MNT_DETACH))
                .with_context(|| format!("unmount {}", self.rootfs.display()))?;
            self.mounted = false;
        }
        Ok(())
    }

    /// Unmounts and turns the step's changes into a layer (None if it
    /// changed nothing). `created` are mount points the runtime made that
    /// must not end up in the layer.
    pub fn commit(mut self, created: &[PathBuf]) -> Result<Option<NewLayer>> {
        self.umount()?;
        drop_created_mountpoints(&self.upper, created);
        if is_empty_dir(&self.upper)? {
            return Ok(None);
        }
        let l = write_layer(self.store, &self.upper)?;
        crate::failpoint::hit("build-layer-written");
        adopt_upper(self.store, &self.upper, &l.diff_id)?;
        Ok(Some(l))
    }

    /// Runs the container described by `config` (written to the bundle as
    /// `config.json`) in the foreground with the runtime's `run`, copying
    /// its output to `out`. Returns its exit code (128+N if killed by
    /// signal N). An interrupt kills it.
    pub fn run(
        &mut self,
        rt: &Runtime,
        id: &str,
        config: &Value,
        out: &mut dyn Write,
    ) -> Result<i32> {
        let cfg_path = self.dir.join("config.json");
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(config)?)
            .with_context(|| format!("write {}", cfg_path.display()))?;
        let (r, w) = nix::unistd::pipe().context("pipe")?;
        let mut cmd = rt.cmd(&["run", "--bundle"]);
        cmd.arg(&self.dir)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::from(w.try_clone().context("dup")?))
            .stderr(Stdio::from(w));
        // Its own process group: a Ctrl-C on the terminal reaches pier,
        // which then stops the container and cleans up.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        die_with_parent(&mut cmd);
        crate::interrupt::check()?;
        // Recorded first: if pier dies from here on, whoever cleans up
        // after it (see `leftovers`) finds the container.
        leftovers::record_container(
            &self.dir,
            &leftovers::StepContainer {
                runtime: rt.path.clone(),
                root: std::path::absolute(&rt.root)
                    .with_context(|| format!("resolve {}", rt.root.display()))?,
                id: id.to_string(),
            },
        )?;
        self.container = Some((rt.clone(), id.to_string()));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("run {}", rt.path.display()))?;
        drop(cmd); // closes our copies of the pipe's write end
        let mut reader = std::fs::File::from(r);
        let mut buf = vec![0u8; 65536];
        let mut killed = false;
        loop {
            // Until the output ends: the container may not exist yet when
            // the signal comes, so the kill is repeated.
            if crate::interrupt::interrupted() {
                rt.kill(id, "KILL");
                killed = true;
            }
            let mut fds = [PollFd::new(reader.as_fd_borrowed(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(200u16)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("poll"),
            }
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    crate::failpoint::hit("build-run-output");
                    out.write_all(&buf[..n]).ok();
                    out.flush().ok();
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("read the step's output"),
            }
        }
        let status = loop {
            match child.wait() {
                Ok(s) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("wait for the runtime"),
            }
        };
        if killed {
            bail!("interrupted");
        }
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }
}

/// Makes the runtime's `run` die with pier (SIGKILL as its parent-death
/// signal): killed, pier cannot stop the container, and a `run` left
/// waiting for it would race with the clean-up that `delete --force` does
/// later. The container itself lives on until then; the runtime's own
/// crash safety covers a `run` killed half-way through creating it.
fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before the prctl: the signal never comes.
            if libc::getppid() != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
}

trait AsFdBorrowed {
    fn as_fd_borrowed(&self) -> std::os::fd::BorrowedFd<'_>;
}

impl AsFdBorrowed for std::fs::File {
    fn as_fd_borrowed(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

impl Drop for StepMount<'_> {
    fn drop(&mut self) {
        if let Some((rt, id)) = self.container.take() {
            if rt.state(&id).is_some() {
                rt.kill(&id, "KILL");
                let _ = rt.delete_force(&id);
            }
        }
        if self.umount().is_err() {
            // Never recurse into a directory that may still be a mount.
            return;
        }
        let _ = RootfsMount::unmount(self.store, &self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The mount destinations of a build container that the root filesystem
/// lacks (the runtime creates them; they are dropped from the layer).
pub fn missing_mountpoints(root: &Root, dests: &[&str]) -> Vec<PathBuf> {
    dests
        .iter()
        .filter(|d| !root.exists(Path::new(d)))
        .map(|d| PathBuf::from(d.trim_start_matches('/')))
        .collect()
}

//! What a build step leaves behind when its `pier` process dies (SIGKILL,
//! the OOM killer) before it could clean up: the step directory in the
//! store's `tmp/` with its overlay still mounted and its lease, and for a
//! `RUN`, perhaps a container that is still running.
//!
//! A step directory holds `owner.lock`, locked by the build for as long as
//! the step exists (the kernel drops the lock when the process dies), and,
//! from just before a `RUN` container is started, `container.json`: the
//! runtime, its `--root` and the container ID. A step directory whose lock
//! is free belongs to a dead build; [`reap_dead_steps`] deletes its
//! container through that same runtime, unmounts the overlay and removes the
//! lease and the directory. `pier build` does this when it starts, and
//! `pier prune` (garbage collection) before it empties `tmp/`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::rootfs::{has_mounts_under, RootfsMount};
use crate::run::runtime::Runtime;
use crate::store::{Lock, Store};

/// Name prefix of step directories in the store's `tmp/`.
pub const STEP_PREFIX: &str = "step";
/// The owner's lock in a step directory.
pub const OWNER_LOCK: &str = "owner.lock";
/// The step's container, written before it is started.
pub const CONTAINER_FILE: &str = "container.json";

/// The container of a `RUN` step, as recorded in its step directory.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StepContainer {
    /// The runtime binary.
    pub runtime: PathBuf,
    /// The runtime's `--root`.
    pub root: PathBuf,
    /// The container ID.
    pub id: String,
}

/// Creates the step directory `dir` and locks it for this process. The lock
/// file is locked under a temporary name and then renamed, so no other
/// process ever sees an unlocked `owner.lock` of a live step.
pub fn claim_step_dir(dir: &Path) -> Result<Lock> {
    std::fs::create_dir(dir).with_context(|| format!("create {}", dir.display()))?;
    let fresh = dir.join(format!("{OWNER_LOCK}.new"));
    let lock = Lock::exclusive(&fresh)?;
    let dst = dir.join(OWNER_LOCK);
    std::fs::rename(&fresh, &dst)
        .with_context(|| format!("rename {} to {}", fresh.display(), dst.display()))?;
    Ok(lock)
}

/// Records the step's container in `dir` (before it is started).
pub fn record_container(dir: &Path, c: &StepContainer) -> Result<()> {
    let p = dir.join(CONTAINER_FILE);
    std::fs::write(&p, serde_json::to_vec(c)?).with_context(|| format!("write {}", p.display()))
}

/// What [`reap_dead_steps`] did.
#[derive(Debug, Default)]
pub struct Reaped {
    /// Step directories of dead builds removed.
    pub removed: usize,
    /// Step directories of dead builds that could not be cleaned up (each
    /// error was printed); they are left as they are, never removed while
    /// something may still be mounted in them.
    pub failed: Vec<PathBuf>,
}

/// Cleans up the step directories of builds that died. Steps of live builds
/// (their lock is held) are left alone.
pub fn reap_dead_steps(store: &Store) -> Result<Reaped> {
    let tmp = store.root().join("tmp");
    let mut r = Reaped::default();
    for e in std::fs::read_dir(&tmp).with_context(|| format!("read {}", tmp.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&format!("{STEP_PREFIX}-")) || !e.file_type()?.is_dir() {
            continue;
        }
        let dir = e.path();
        let lock = match Lock::try_exclusive_existing(&dir.join(OWNER_LOCK)) {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(err) => {
                eprintln!("pier: warning: {err:#}");
                r.failed.push(dir);
                continue;
            }
        };
        match clean_step(store, &dir) {
            Ok(()) => r.removed += 1,
            Err(err) => {
                eprintln!(
                    "pier: warning: cleaning up {} of an interrupted build: {err:#}",
                    dir.display()
                );
                r.failed.push(dir);
            }
        }
        drop(lock);
    }
    Ok(r)
}

/// Deletes the step's container, unmounts its overlay, removes its lease and
/// its directory.
fn clean_step(store: &Store, dir: &Path) -> Result<()> {
    let cf = dir.join(CONTAINER_FILE);
    match std::fs::read(&cf) {
        Ok(data) => {
            // A torn file means the process died while writing it, before
            // it started the container.
            if let Ok(c) = serde_json::from_slice::<StepContainer>(&data) {
                let rt = Runtime {
                    path: c.runtime,
                    root: c.root,
                };
                // Whatever state the runtime was killed in (the runtime's
                // `run` dies with pier): `delete --force` removes it all.
                rt.delete_force(&c.id)
                    .with_context(|| format!("delete the build container {}", c.id))?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("read {}", cf.display())),
    }
    RootfsMount::unmount(store, dir)?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("resolve {}", dir.display()))?;
    if has_mounts_under(&dir)? {
        bail!("{} still has mounts", dir.display());
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_store() -> (PathBuf, Store) {
        crate::store::test_store("leftovers")
    }

    #[test]
    fn only_steps_whose_owner_is_gone_are_reaped() {
        let (root, s) = tmp_store();
        let live = s.tmp_path(STEP_PREFIX);
        let lock = claim_step_dir(&live).unwrap();
        assert!(live.join(OWNER_LOCK).is_file());
        assert!(!live.join(format!("{OWNER_LOCK}.new")).exists());
        // A step that is being created (no lock file yet) is not touched.
        let young = s.tmp_path(STEP_PREFIX);
        std::fs::create_dir(&young).unwrap();
        // A dead step: the lock file exists, nobody holds it.
        let dead = s.tmp_path(STEP_PREFIX);
        drop(claim_step_dir(&dead).unwrap());
        std::fs::create_dir_all(dead.join("upper/etc")).unwrap();
        // Torn container file: nothing was started.
        std::fs::write(dead.join(CONTAINER_FILE), b"{\"runt").unwrap();
        let r = reap_dead_steps(&s).unwrap();
        assert_eq!((r.removed, r.failed.len()), (1, 0));
        assert!(live.is_dir() && young.is_dir() && !dead.exists());
        drop(lock);
        let r = reap_dead_steps(&s).unwrap();
        assert_eq!(r.removed, 1);
        assert!(!live.exists() && young.is_dir());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn the_recorded_container_is_deleted_through_its_runtime() {
        let (root, s) = tmp_store();
        let dead = s.tmp_path(STEP_PREFIX);
        drop(claim_step_dir(&dead).unwrap());
        // A fake runtime that logs its arguments.
        let log = root.join("calls");
        let rt = root.join("fake-runtime");
        std::fs::write(
            &rt,
            format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&rt, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let c = StepContainer {
            runtime: rt,
            root: root.join("rt-root"),
            id: "pier-build-0123".into(),
        };
        record_container(&dead, &c).unwrap();
        let r = reap_dead_steps(&s).unwrap();
        assert_eq!(r.removed, 1);
        let calls = std::fs::read_to_string(&log).unwrap();
        assert!(
            calls.contains(&format!(
                "--root {} delete --force pier-build-0123",
                c.root.display()
            )),
            "{calls}"
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}

//! Advisory file locks (`flock(2)`) between concurrent `pier` processes.
//!
//! Every process that adds to the store holds the store lock shared; garbage
//! collection holds it exclusive, so it never deletes a blob that a running
//! pull has written but not yet named. The name index has its own lock, held
//! exclusive only for one read-modify-write.

use std::fs::{File, OpenOptions};
use std::path::Path;

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

/// A held lock; released when dropped (or when the process dies).
pub struct Lock(#[allow(dead_code)] Flock<File>);

impl Lock {
    /// Takes a shared lock on `path` (created if missing), waiting for it.
    pub fn shared(path: &Path) -> Result<Lock> {
        Lock::take(path, FlockArg::LockShared)
    }

    /// Takes an exclusive lock on `path` (created if missing), waiting for it.
    pub fn exclusive(path: &Path) -> Result<Lock> {
        Lock::take(path, FlockArg::LockExclusive)
    }

    fn take(path: &Path, arg: FlockArg) -> Result<Lock> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("open lock file {}", path.display()))?;
        let l = Flock::lock(f, arg)
            .map_err(|(_, e)| e)
            .with_context(|| format!("flock {}", path.display()))?;
        Ok(Lock(l))
    }
}

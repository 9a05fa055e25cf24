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

    /// Takes an exclusive lock on the existing file `path` without waiting:
    /// None if the file is missing or someone holds a lock on it (a lock
    /// held by a process that died is free: the kernel drops it with the
    /// process).
    pub fn try_exclusive_existing(path: &Path) -> Result<Option<Lock>> {
        let f = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("open lock file {}", path.display())),
        };
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Some(Lock(l))),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e).with_context(|| format!("flock {}", path.display())),
        }
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

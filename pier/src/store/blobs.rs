//! Writing blobs into the store: to a temporary file first, hashed and
//! counted while written, verified, synced, then renamed to
//! `blobs/sha256/<hex>`. A blob is therefore either absent or complete and
//! correct under its digest, whatever crashes in between; an abandoned
//! [`BlobWriter`] removes its temporary file.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::digest::{Digest, HashingWriter};

/// Every this many bytes, writeback of what was written is started
/// (`sync_file_range`, which does not wait): the fsync at commit then finds
/// most of the blob on disk already instead of flushing all of it while the
/// pull waits.
const WRITEBACK_STEP: u64 = 8 << 20;

/// What a blob must be: its digest and size (from a descriptor).
#[derive(Clone, Debug)]
pub struct Expected {
    /// The digest.
    pub digest: Digest,
    /// The size in bytes.
    pub size: u64,
}

/// A blob being written. Dropping it without [`BlobWriter::commit`] removes
/// the temporary file.
pub struct BlobWriter {
    out: Option<HashingWriter<File>>,
    /// Bytes already handed to writeback (see `WRITEBACK_STEP`).
    writeback_from: u64,
    tmp: PathBuf,
    blobs_dir: PathBuf,
    expected: Option<Expected>,
    committed: bool,
}

impl BlobWriter {
    pub(super) fn new(
        tmp: PathBuf,
        blobs_dir: PathBuf,
        expected: Option<Expected>,
    ) -> Result<Self> {
        let f = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("create {}", tmp.display()))?;
        Ok(BlobWriter {
            out: Some(HashingWriter::new(f)),
            writeback_from: 0,
            tmp,
            blobs_dir,
            expected,
            committed: false,
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.out.as_ref().map_or(0, |o| o.written())
    }

    /// Verifies size and digest, syncs and renames the blob into place.
    pub fn commit(mut self) -> Result<Digest> {
        let out = self.out.take().expect("committed twice");
        let (file, digest, size) = out.finish();
        if let Some(e) = &self.expected {
            if size != e.size {
                bail!("blob {}: got {size} bytes, expected {}", e.digest, e.size);
            }
            if digest != e.digest {
                bail!(
                    "blob {}: content has digest {digest} (corrupted or wrong blob)",
                    e.digest
                );
            }
        }
        file.sync_all()
            .with_context(|| format!("fsync {}", self.tmp.display()))?;
        drop(file);
        let dst = self.blobs_dir.join(digest.hex());
        std::fs::rename(&self.tmp, &dst)
            .with_context(|| format!("rename {} to {}", self.tmp.display(), dst.display()))?;
        self.committed = true;
        Ok(digest)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let out = self.out.as_mut().expect("write after commit");
        if let Some(e) = &self.expected {
            // Stop a registry that sends more than the descriptor says at
            // once, instead of filling the disk.
            if out.written() + buf.len() as u64 > e.size {
                return Err(io::Error::other(format!(
                    "blob {}: more data than the {} bytes its descriptor says",
                    e.digest, e.size
                )));
            }
        }
        let n = out.write(buf)?;
        let written = out.written();
        if written - self.writeback_from >= WRITEBACK_STEP {
            let fd = std::os::fd::AsRawFd::as_raw_fd(out.get_mut());
            // SAFETY: plain syscall on our file; failure only loses the
            // head start, the fsync at commit still makes the blob durable.
            unsafe {
                libc::sync_file_range(
                    fd,
                    self.writeback_from as libc::off64_t,
                    (written - self.writeback_from) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            self.writeback_from = written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().map_or(Ok(()), |o| o.flush())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

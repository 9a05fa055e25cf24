//! Decompression on its own thread: the layer blob is read, decompressed
//! (gzip via `flate2` with the `zlib-rs` backend, zstd via the `zstd`
//! bindings to the reference library, or plain tar) and hashed for the
//! diff-id on one thread while the extractor creates files on the other, the
//! way `gzip -dc | tar -x` splits the work over two processes.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use anyhow::{anyhow, Context, Result};

use crate::digest::{Digest, Hasher};

const CHUNK: usize = 256 * 1024;

/// How a layer is compressed, from its first bytes (media types lie often
/// enough that the bytes are what counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (possibly multi-member).
    Gzip,
    /// zstd.
    Zstd,
}

/// Detects the compression from the magic bytes.
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// The uncompressed stream, produced by a background thread that also
/// computes its sha256.
pub struct Decompressed {
    rx: Option<Receiver<io::Result<Vec<u8>>>>,
    cur: Vec<u8>,
    pos: usize,
    handle: Option<JoinHandle<Result<Digest>>>,
}

impl Decompressed {
    /// Starts decompressing `input` on a new thread.
    pub fn start<R: Read + Send + 'static>(input: R) -> Result<Decompressed> {
        let mut input = BufReader::with_capacity(CHUNK, input);
        let comp = sniff(input.fill_buf().context("read layer")?);
        let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(8);
        let handle = std::thread::Builder::new()
            .name("decompress".into())
            .spawn(move || -> Result<Digest> {
                let mut dec: Box<dyn Read> = match comp {
                    Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
                    Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
                    Compression::None => Box::new(input),
                };
                let mut hasher = Hasher::new();
                loop {
                    let mut buf = vec![0u8; CHUNK];
                    let mut filled = 0;
                    while filled < CHUNK {
                        match dec.read(&mut buf[filled..]) {
                            Ok(0) => break,
                            Ok(n) => filled += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                let msg = format!("decompress layer ({comp:?}): {e}");
                                let _ = tx.send(Err(io::Error::other(msg.clone())));
                                return Err(anyhow!(msg));
                            }
                        }
                    }
                    if filled == 0 {
                        return Ok(hasher.finish());
                    }
                    buf.truncate(filled);
                    hasher.update(&buf);
                    if tx.send(Ok(buf)).is_err() {
                        return Err(anyhow!("layer extraction stopped"));
                    }
                }
            })
            .context("spawn decompression thread")?;
        Ok(Decompressed {
            rx: Some(rx),
            cur: Vec::new(),
            pos: 0,
            handle: Some(handle),
        })
    }

    /// Reads what is left (the tar's trailing blocks and padding are part of
    /// the diff-id) and returns the sha256 of the whole uncompressed stream.
    pub fn finish(mut self) -> Result<Digest> {
        io::copy(&mut self, &mut io::sink()).context("read the end of the layer")?;
        self.join()
    }

    fn join(&mut self) -> Result<Digest> {
        self.rx = None;
        let h = self.handle.take().expect("joined twice");
        h.join()
            .map_err(|_| anyhow!("decompression thread panicked"))?
    }
}

impl Read for Decompressed {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            let Some(rx) = &self.rx else { return Ok(0) };
            match rx.recv() {
                Ok(Ok(buf)) => {
                    self.cur = buf;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // the thread is done
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for Decompressed {
    fn drop(&mut self) {
        if self.handle.is_some() {
            let _ = self.join();
        }
    }
}

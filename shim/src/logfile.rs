//! The container log file: one record per line of output, stamped, with
//! rotation by size and reopening on request.
//!
//! Formats:
//! - `cri` (Kubernetes): `2026-11-29T11:35:19.123456789Z stdout F text`. `F`
//!   marks a full line (its newline is not written), `P` a partial one: the
//!   bytes of a read that did not end in a newline, or a piece of a line too
//!   long for one record. The payload is written as is, so the log holds
//!   exactly the bytes the container wrote.
//! - `json` (Docker's json-file): `{"log":"text\n","stream":"stdout","time":"..."}`;
//!   a partial record's `log` has no trailing newline. Output that is not
//!   valid UTF-8 goes into `"log_base64"` instead of `"log"` (same meaning,
//!   base64 of the exact bytes) so no byte is ever replaced or lost.
//!
//! Rotation (`max_size`): a record is never split across files. Before a
//! record that would take the file past `max_size`, the file is renamed to
//! `PATH.1` (older ones shift to `PATH.2` ... `PATH.<max_files>`, the oldest
//! is removed) and a new file is started, so the newest data is always kept.
//! Records are cut (as partial records) so that each fits in `max_size`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::timefmt;
use crate::Stream;

/// Smallest `max_size` accepted: room for a header and some payload.
pub const MIN_MAX_SIZE: u64 = 4096;

/// Record format of the log file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Kubernetes CRI text format.
    Cri,
    /// Docker json-file lines.
    Json,
}

impl LogFormat {
    /// Parses `cri` or `json`.
    pub fn parse(s: &str) -> Result<LogFormat> {
        match s {
            "cri" | "k8s-file" => Ok(LogFormat::Cri),
            "json" | "json-file" => Ok(LogFormat::Json),
            _ => bail!("unknown log format {s:?} (use cri or json)"),
        }
    }
}

/// Settings of a log file.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Path of the current file.
    pub path: PathBuf,
    /// Record format.
    pub format: LogFormat,
    /// Rotate before the file would exceed this many bytes.
    pub max_size: Option<u64>,
    /// Rotated files kept (`PATH.1` newest ... `PATH.N` oldest); at least 1.
    pub max_files: u32,
}

/// An open log file.
pub struct LogWriter {
    cfg: LogConfig,
    file: File,
    size: u64,
    /// Records formatted but not yet written.
    out: Vec<u8>,
    /// Scratch buffer for one record.
    rec: Vec<u8>,
    /// Timestamp of the records being written.
    stamp: Vec<u8>,
}

impl LogWriter {
    /// Opens (appending to) or creates the log file.
    pub fn open(cfg: LogConfig) -> Result<LogWriter> {
        if let Some(m) = cfg.max_size {
            if m < MIN_MAX_SIZE {
                bail!("log max size {m} is below the minimum of {MIN_MAX_SIZE} bytes");
            }
        }
        let file = open_append(&cfg.path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            cfg,
            file,
            size,
            out: Vec::new(),
            rec: Vec::new(),
            stamp: Vec::new(),
        })
    }

    /// The log's settings.
    pub fn config(&self) -> &LogConfig {
        &self.cfg
    }

    /// Closes the file and opens `path` again (after an outside rotation
    /// moved it away).
    pub fn reopen(&mut self) -> Result<()> {
        self.file = open_append(&self.cfg.path)?;
        self.size = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(())
    }

    /// Writes the output `data` read from `stream` at one moment: one record
    /// per line; a last piece without newline becomes a partial record.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<()> {
        let (secs, nanos) = timefmt::now();
        self.stamp.clear();
        timefmt::push_rfc3339(&mut self.stamp, secs, nanos);
        let mut rest = data;
        while !rest.is_empty() {
            match memchr(b'\n', rest) {
                Some(i) => {
                    self.record(stream, &rest[..i], true)?;
                    rest = &rest[i + 1..];
                }
                None => {
                    self.record(stream, rest, false)?;
                    rest = &[];
                }
            }
        }
        self.flush()
    }

    /// Formats one record (a full line without its newline, or a partial
    /// piece), cutting it if it would not fit in `max_size`.
    fn record(&mut self, stream: Stream, line: &[u8], full: bool) -> Result<()> {
        self.rec.clear();
        encode(
            self.cfg.format,
            &self.stamp,
            stream,
            line,
            full,
            &mut self.rec,
        );
        if let Some(max) = self.cfg.max_size {
            if self.rec.len() as u64 > max && line.len() > 1 {
                let mid = split_point(line);
                self.record(stream, &line[..mid], false)?;
                return self.record(stream, &line[mid..], full);
            }
            let pending = self.size + self.out.len() as u64;
            if pending > 0 && pending + self.rec.len() as u64 > max {
                self.flush()?;
                self.rotate()?;
            }
        }
        self.out.extend_from_slice(&self.rec);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.file.write_all(&self.out);
        let n = self.out.len() as u64;
        // Cleared also on failure: on a full disk the buffer would otherwise
        // grow with every read and be written twice once space returns.
        self.out.clear();
        match r {
            Ok(()) => {
                self.size += n;
                Ok(())
            }
            Err(e) => {
                // A record cut short (ENOSPC in the middle of it) would be a
                // torn line for every reader of the log: cut the file back to
                // its last whole record. The caller counts the bytes as lost.
                let _ = self.file.set_len(self.size);
                Err(e).with_context(|| format!("write log {}", self.cfg.path.display()))
            }
        }
    }

    /// Shifts `PATH.i` to `PATH.i+1`, moves `PATH` to `PATH.1`, starts a new
    /// `PATH`.
    fn rotate(&mut self) -> Result<()> {
        let n = self.cfg.max_files.max(1);
        let _ = std::fs::remove_file(numbered(&self.cfg.path, n));
        for i in (1..n).rev() {
            let from = numbered(&self.cfg.path, i);
            if from.exists() {
                std::fs::rename(&from, numbered(&self.cfg.path, i + 1))
                    .with_context(|| format!("rename {}", from.display()))?;
            }
        }
        std::fs::rename(&self.cfg.path, numbered(&self.cfg.path, 1))
            .with_context(|| format!("rotate {}", self.cfg.path.display()))?;
        self.reopen()
    }
}

/// `PATH.n`.
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("open log file {}", path.display()))
}

/// Where to cut a too long record: the middle, moved back to the start of a
/// UTF-8 character so that JSON records of text stay text.
fn split_point(line: &[u8]) -> usize {
    let mut mid = line.len() / 2;
    while mid > 1 && (line[mid] & 0xC0) == 0x80 {
        mid -= 1;
    }
    mid
}

/// Appends one record in `format`.
fn encode(
    format: LogFormat,
    stamp: &[u8],
    stream: Stream,
    line: &[u8],
    full: bool,
    out: &mut Vec<u8>,
) {
    match format {
        LogFormat::Cri => {
            out.extend_from_slice(stamp);
            out.push(b' ');
            out.extend_from_slice(stream.name().as_bytes());
            out.extend_from_slice(if full { b" F " } else { b" P " });
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        LogFormat::Json => {
            let mut payload = line.to_vec();
            if full {
                payload.push(b'\n');
            }
            match std::str::from_utf8(&payload) {
                Ok(text) => {
                    out.extend_from_slice(b"{\"log\":");
                    serde_json::to_writer(&mut *out, text).expect("write to Vec");
                }
                Err(_) => {
                    out.extend_from_slice(b"{\"log_base64\":\"");
                    base64(&payload, out);
                    out.push(b'"');
                }
            }
            out.extend_from_slice(b",\"stream\":\"");
            out.extend_from_slice(stream.name().as_bytes());
            out.extend_from_slice(b"\",\"time\":\"");
            out.extend_from_slice(stamp);
            out.extend_from_slice(b"\"}\n");
        }
    }
}

/// Standard base64 with padding.
fn base64(data: &[u8], out: &mut Vec<u8>) {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(A[(n >> 18) as usize & 63]);
        out.push(A[(n >> 12) as usize & 63]);
        out.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if c.len() > 2 {
            A[n as usize & 63]
        } else {
            b'='
        });
    }
}

/// Position of `byte` in `data`, with the C library's vectorised memchr (the
/// shim scans every byte a container writes, also in debug builds).
pub fn memchr(byte: u8, data: &[u8]) -> Option<usize> {
    if data.is_empty() {
        return None;
    }
    // SAFETY: the pointer and length describe the live slice `data`.
    let p = unsafe { libc::memchr(data.as_ptr().cast(), i32::from(byte), data.len()) };
    if p.is_null() {
        None
    } else {
        Some(p as usize - data.as_ptr() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "berth-shim-ut-{name}-{}-{:?}",
            std::process::id(),
            timefmt::now()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Rebuilds the payload of CRI records: F lines get their newline back.
    fn cri_payload(text: &str) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut n = 0;
        for l in text.lines() {
            let mut parts = l.splitn(4, ' ');
            let (ts, stream, tag) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            assert_eq!(ts.len(), 30, "{l}");
            assert_eq!(stream, "stdout");
            out.extend_from_slice(parts.next().unwrap_or("").as_bytes());
            match tag {
                "F" => out.push(b'\n'),
                "P" => {}
                _ => panic!("bad tag in {l}"),
            }
            n += 1;
        }
        (out, n)
    }

    #[test]
    fn cri_full_and_partial_records() {
        let d = tmp("cri");
        let cfg = LogConfig {
            path: d.join("log"),
            format: LogFormat::Cri,
            max_size: None,
            max_files: 1,
        };
        let mut w = LogWriter::open(cfg).unwrap();
        w.write(Stream::Stdout, b"one\ntwo\nthr").unwrap();
        w.write(Stream::Stdout, b"ee\n\n").unwrap();
        let text = std::fs::read_to_string(d.join("log")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].ends_with(" stdout F one"));
        assert!(lines[2].ends_with(" stdout P thr"));
        assert!(lines[3].ends_with(" stdout F ee"));
        assert!(lines[4].ends_with(" stdout F "));
        assert_eq!(cri_payload(&text).0, b"one\ntwo\nthree\n\n");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn json_records_keep_every_byte() {
        let d = tmp("json");
        let cfg = LogConfig {
            path: d.join("log"),
            format: LogFormat::Json,
            max_size: None,
            max_files: 1,
        };
        let mut w = LogWriter::open(cfg).unwrap();
        w.write(Stream::Stderr, b"h\"i\n\xff\xfe\nend").unwrap();
        let text = std::fs::read_to_string(d.join("log")).unwrap();
        let v: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(v[0]["log"], "h\"i\n");
        assert_eq!(v[0]["stream"], "stderr");
        assert_eq!(v[1]["log_base64"], "//4K");
        assert_eq!(v[2]["log"], "end");
        assert_eq!(v[2]["time"].as_str().unwrap().len(), 30);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn rotation_keeps_newest_whole_records_within_max_size() {
        let d = tmp("rot");
        let path = d.join("log");
        let cfg = LogConfig {
            path: path.clone(),
            format: LogFormat::Cri,
            max_size: Some(4096),
            max_files: 2,
        };
        let mut w = LogWriter::open(cfg).unwrap();
        let mut all = Vec::new();
        for i in 0..2000 {
            let line = format!("line {i}\n");
            all.extend_from_slice(line.as_bytes());
            w.write(Stream::Stdout, line.as_bytes()).unwrap();
        }
        // A line longer than max_size is cut into records that each fit.
        let long = vec![b'x'; 10_000];
        w.write(Stream::Stdout, &long).unwrap();
        all.extend_from_slice(&long);
        let mut kept = Vec::new();
        for p in [numbered(&path, 2), numbered(&path, 1), path.clone()] {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(
                text.len() <= 4096,
                "{} is {} bytes",
                p.display(),
                text.len()
            );
            assert!(text.ends_with('\n'));
            kept.extend(cri_payload(&text).0);
        }
        assert!(!numbered(&path, 3).exists());
        assert!(
            all.ends_with(&kept),
            "the files hold a suffix of the output"
        );
        assert!(kept.len() >= 7500, "{} bytes kept", kept.len());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn base64_matches_reference() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            let mut v = Vec::new();
            base64(i.as_bytes(), &mut v);
            assert_eq!(String::from_utf8(v).unwrap(), o);
        }
    }
}

//! Layer unpacking (`pier::unpack::unpack_stream`, what `pier pull`,
//! `pier load` and `ADD archive.tar` run on tars from anywhere).
//!
//! The input is a little script, one entry a line, that builds a layer tar
//! (GNU headers, raw names: nothing is cleaned on the way):
//!
//! ```text
//! dir PATH                    # a directory
//! file PATH [CONTENT]         # a regular file (content: the rest of the line)
//! symlink PATH TARGET
//! hardlink PATH TARGET
//! char PATH MAJOR MINOR       # device nodes
//! block PATH MAJOR MINOR
//! fifo PATH
//! entry TYPE PATH [LINK]      # any type flag (first byte of TYPE: V, 7, g, K...)
//! sparse PATH SIZE [OFF:LEN]...   # GNU sparse file of SIZE bytes, up to 4 data blocks
//! mode 4755 | uid N | gid N   # for the entries that follow
//! pax KEY VALUE               # a PAX record for the next entry
//!                             # (path, linkpath, uid, mtime, SCHILY.xattr.NAME...)
//! gzip                        # gzip the whole stream
//! cut N                       # drop the last N bytes of the tar
//! ```
//!
//! Paths, targets and values may use `\xHH` escapes (`\x00`, a space...);
//! names longer than 100 bytes get a GNU long-name entry.
//!
//! The layer is unpacked into a fresh directory `x/y/layer` of a scratch
//! tree that also holds canaries (`outside/canary`, `x/y/canary`). Checks:
//! no panic, no hang; nothing outside the layer directory is created,
//! removed or changed (names, types, modes, owners, sizes, times, contents,
//! link counts, symlink targets, xattrs of the scratch tree; names in the
//! host's `/`; `/etc/passwd`); no file in the layer has a link count above
//! its names in the layer (a hard link to something outside); the files
//! take no more disk than the input could fill (sparse files keep their
//! holes) and are never bigger than pier allows sparse files to be
//! (RLIMIT_FSIZE: a bigger file kills the target, instead of filling the
//! disk); a layer that unpacks has the diff-id of the tar and its implicit
//! directories exist.
#![no_main]

#[path = "common/canary.rs"]
mod canary;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pier::digest::Digest;
use pier::unpack::{unpack_stream, MAX_SPARSE_HOLES};

const MAX_ENTRIES: usize = 32;
/// Largest file size the target lets pier make (RLIMIT_FSIZE): the holes
/// pier allows in a layer's sparse files and a margin. The input (4 KiB by
/// default, gzip at most ~1000:1) cannot make more data than that.
const MAX_FILE: u64 = MAX_SPARSE_HOLES + (64 << 20);
/// Most disk space a file of the layer may take.
const MAX_BLOCKS: u64 = 64 << 20;

struct Scratch {
    base: PathBuf,
    layer: PathBuf,
    /// Everything under `base` but the layer, as set up.
    expected: BTreeMap<PathBuf, String>,
    host: BTreeSet<String>,
}

static SCRATCH: OnceLock<Scratch> = OnceLock::new();

fn scratch() -> &'static Scratch {
    SCRATCH.get_or_init(|| {
        let base = canary::scratch_dir("unpack");
        fs::create_dir_all(base.join("outside/dir")).unwrap();
        fs::create_dir_all(base.join("x/y")).unwrap();
        fs::write(base.join("outside/canary"), "canary").unwrap();
        fs::write(base.join("x/y/canary"), "canary").unwrap();
        symlink("../outside", base.join("x/y/out")).unwrap();
        // A file pier writes past this size kills the target (SIGXFSZ):
        // a crash libFuzzer reports, not a full disk.
        let lim = libc::rlimit {
            rlim_cur: MAX_FILE,
            rlim_max: MAX_FILE,
        };
        // SAFETY: a plain system call with valid arguments.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) }, 0);
        let layer = base.join("x/y/layer");
        fs::create_dir(&layer).unwrap();
        Scratch {
            expected: canary::tree_outside(&base, &layer),
            host: canary::host_state(),
            base,
            layer,
        }
    })
}

/// Every inode in the layer and how many of its names are in the layer;
/// fails on a link count above that (a name outside).
fn check_links_inside(layer: &Path) {
    let mut seen: HashMap<u64, (u64, u64, PathBuf)> = HashMap::new();
    let mut todo = vec![layer.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                todo.push(p);
                continue;
            }
            assert!(
                m.blocks() * 512 <= MAX_BLOCKS,
                "{} takes {} bytes of disk",
                p.display(),
                m.blocks() * 512
            );
            let e = seen.entry(m.ino()).or_insert((m.nlink(), 0, p));
            e.1 += 1;
        }
    }
    for (nlink, names, p) in seen.values() {
        assert_eq!(
            nlink,
            names,
            "{} has {nlink} links but {names} names in the layer",
            p.display()
        );
    }
}

/// `\xHH` and `\\` escapes.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 4 <= b.len() {
            match u8::from_str_radix(std::str::from_utf8(&b[i + 2..i + 4]).unwrap_or("zz"), 16) {
                Ok(v) => {
                    out.push(v);
                    i += 4;
                }
                Err(_) => {
                    out.push(b[i]);
                    i += 1;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[derive(Default)]
struct TarWriter {
    out: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
    pax: Vec<u8>,
}

impl TarWriter {
    fn padded(&mut self, data: &[u8]) {
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.resize(self.out.len() + pad, 0);
    }

    /// One header (and its data); names over 100 bytes get GNU long-name
    /// entries first.
    fn entry(&mut self, kind: u8, path: &[u8], link: &[u8], data: &[u8], dev: (u32, u32)) {
        if !self.pax.is_empty() {
            let pax = std::mem::take(&mut self.pax);
            self.raw(b'x', b"PaxHeaders/x", b"", &pax, (0, 0), None);
        }
        if link.len() > 100 {
            self.raw(
                b'K',
                b"././@LongLink",
                b"",
                &[link, b"\0"].concat(),
                (0, 0),
                None,
            );
        }
        if path.len() > 100 {
            self.raw(
                b'L',
                b"././@LongLink",
                b"",
                &[path, b"\0"].concat(),
                (0, 0),
                None,
            );
        }
        self.raw(kind, path, link, data, dev, None);
    }

    fn raw(
        &mut self,
        kind: u8,
        path: &[u8],
        link: &[u8],
        data: &[u8],
        dev: (u32, u32),
        sparse: Option<(u64, &[(u64, u64)])>,
    ) {
        let mut h = tar::Header::new_gnu();
        let n = path.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&path[..n]);
        let n = link.len().min(100);
        h.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
        h.set_mode(self.mode);
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::new(kind));
        if dev != (0, 0) {
            let _ = h.set_device_major(dev.0);
            let _ = h.set_device_minor(dev.1);
        }
        if let (Some((real, blocks)), Some(g)) = (sparse, h.as_gnu_mut()) {
            g.set_real_size(real);
            for (slot, (off, len)) in g.sparse.iter_mut().zip(blocks) {
                slot.set_offset(*off);
                slot.set_length(*len);
            }
        }
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        self.padded(data);
    }

    fn pax_record(&mut self, key: &[u8], value: &[u8]) {
        let body = key.len() + value.len() + 3;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        self.pax.extend_from_slice(format!("{len} ").as_bytes());
        self.pax.extend_from_slice(key);
        self.pax.push(b'=');
        self.pax.extend_from_slice(value);
        self.pax.push(b'\n');
    }
}

/// The tar the script describes, and whether to gzip it.
fn build(script: &str) -> (Vec<u8>, bool) {
    let mut w = TarWriter {
        mode: 0o644,
        ..Default::default()
    };
    let (mut gzip, mut cut, mut entries) = (false, 0usize, 0);
    for line in script.lines() {
        let mut words = line.splitn(3, ' ');
        let op = words.next().unwrap_or_default();
        let a = words.next().unwrap_or_default();
        let rest = words.next().unwrap_or_default();
        let num = |s: &str| s.parse::<u64>().unwrap_or(0);
        let (b, c) = rest.split_once(' ').unwrap_or((rest, ""));
        if matches!(
            op,
            "dir"
                | "file"
                | "symlink"
                | "hardlink"
                | "char"
                | "block"
                | "fifo"
                | "entry"
                | "sparse"
        ) {
            if entries == MAX_ENTRIES {
                continue;
            }
            entries += 1;
        }
        let p = unescape(a);
        match op {
            "dir" => w.entry(b'5', &p, b"", b"", (0, 0)),
            "file" => w.entry(b'0', &p, b"", rest.as_bytes(), (0, 0)),
            "symlink" => w.entry(b'2', &p, &unescape(rest), b"", (0, 0)),
            "hardlink" => w.entry(b'1', &p, &unescape(rest), b"", (0, 0)),
            "char" | "block" => {
                let kind = if op == "char" { b'3' } else { b'4' };
                w.entry(kind, &p, b"", b"", (num(b) as u32, num(c) as u32))
            }
            "fifo" => w.entry(b'6', &p, b"", b"", (0, 0)),
            "entry" => {
                let kind = a.bytes().next().unwrap_or(b'0');
                w.entry(kind, &unescape(b), &unescape(c), b"", (0, 0))
            }
            "sparse" => {
                let mut blocks = Vec::new();
                for spec in c.split(' ').filter(|s| !s.is_empty()).take(4) {
                    let (o, l) = spec.split_once(':').unwrap_or((spec, "0"));
                    blocks.push((num(o), num(l).min(4096)));
                }
                let data = vec![b'x'; blocks.iter().map(|b| b.1 as usize).sum()];
                w.raw(b'S', &p, b"", &data, (0, 0), Some((num(b), &blocks)));
            }
            "mode" => w.mode = u32::from_str_radix(a, 8).unwrap_or(0o644),
            "uid" => w.uid = num(a),
            "gid" => w.gid = num(a),
            "pax" => w.pax_record(&p, &unescape(rest)),
            "gzip" => gzip = true,
            "cut" => cut = num(a) as usize,
            _ => {}
        }
    }
    w.out.resize(w.out.len() + 1024, 0);
    let keep = w.out.len().saturating_sub(cut);
    w.out.truncate(keep);
    (w.out, gzip)
}

fuzz_target!(|data: &[u8]| {
    let Ok(script) = std::str::from_utf8(data) else {
        return;
    };
    let s = scratch();
    let (tar, gzip) = build(script);
    let stream = if gzip {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    } else {
        tar.clone()
    };
    let r = unpack_stream(std::io::Cursor::new(stream), &s.layer);

    if let Ok(u) = &r {
        assert_eq!(u.diff_id, Digest::of(&tar), "diff-id");
        for p in &u.implicit {
            let m = fs::symlink_metadata(s.layer.join(p));
            assert!(
                m.is_ok_and(|m| m.is_dir()),
                "implicit directory {} is not there",
                p.display()
            );
        }
    }
    check_links_inside(&s.layer);
    canary::assert_same_tree(&s.expected, &canary::tree_outside(&s.base, &s.layer));
    assert_eq!(
        canary::host_state(),
        s.host,
        "something changed in the host's / or /etc/passwd"
    );
    // Empty again for the next input (the directory itself stays, so that
    // the scratch tree looks the same each time).
    fs::remove_dir_all(&s.layer).unwrap();
    fs::create_dir(&s.layer).unwrap();
});

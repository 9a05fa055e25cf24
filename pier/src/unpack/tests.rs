//! Unpacking tests with crafted tars (they create devices and chown files:
//! run as root, as CI does).

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;

/// A temporary directory removed on drop.
struct Tmp(PathBuf);
impl Tmp {
    fn new() -> Tmp {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "pier-unpack-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds tars with raw (unchecked) names, as an attacker would.
pub(crate) struct Craft(tar::Builder<Vec<u8>>);

impl Craft {
    pub(crate) fn new() -> Craft {
        Craft(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, name: &str, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        let n = name.as_bytes();
        h.as_old_mut().name[..n.len()].copy_from_slice(n);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        h
    }

    fn link_header(kind: tar::EntryType, name: &str, target: &str) -> tar::Header {
        let mut h = Craft::header(kind, name, 0o777);
        let t = target.as_bytes();
        h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
        h
    }

    pub(crate) fn file(mut self, name: &str, data: &[u8], mode: u32, uid: u64) -> Craft {
        let mut h = Craft::header(tar::EntryType::Regular, name, mode);
        h.set_size(data.len() as u64);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    pub(crate) fn dir(mut self, name: &str, mode: u32) -> Craft {
        let mut h = Craft::header(tar::EntryType::Directory, name, mode);
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
        self
    }

    pub(crate) fn symlink(mut self, name: &str, target: &str) -> Craft {
        let mut h = Craft::link_header(tar::EntryType::Symlink, name, target);
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
        self
    }

    pub(crate) fn hardlink(mut self, name: &str, target: &str) -> Craft {
        let mut h = Craft::link_header(tar::EntryType::Link, name, target);
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
        self
    }

    fn node(mut self, name: &str, kind: tar::EntryType, major: u32, minor: u32) -> Craft {
        let mut h = Craft::header(kind, name, 0o640);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
        self
    }

    fn pax_file(mut self, name: &str, data: &[u8], records: &[(&str, &[u8])]) -> Craft {
        self.0
            .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
            .unwrap();
        self.file(name, data, 0o755, 0)
    }

    /// A GNU sparse file of `size` bytes with data blocks `(offset, len)`
    /// (filled with `x`).
    fn sparse(mut self, name: &str, size: u64, blocks: &[(u64, u64)]) -> Craft {
        let mut h = Craft::header(tar::EntryType::GNUSparse, name, 0o644);
        let data = vec![b'x'; blocks.iter().map(|b| b.1 as usize).sum()];
        h.set_size(data.len() as u64);
        let g = h.as_gnu_mut().unwrap();
        g.set_real_size(size);
        for (slot, (off, len)) in g.sparse.iter_mut().zip(blocks) {
            slot.set_offset(*off);
            slot.set_length(*len);
        }
        h.set_cksum();
        self.0.append(&h, &data[..]).unwrap();
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn unpack_bytes(tar: Vec<u8>, dest: &Path) -> Result<Digest> {
    unpack_stream(std::io::Cursor::new(tar), dest).map(|u| u.diff_id)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn unpacks_every_kind_of_entry() {
    let t = Tmp::new();
    let d = t.0.join("layer");
    std::fs::create_dir(&d).unwrap();
    let tar = Craft::new()
        .dir("./", 0o755)
        .dir("./etc/", 0o750)
        .file("./etc/hosts", b"127.0.0.1 localhost\n", 0o644, 0)
        .file("etc/secret", b"s", 0o4755, 1000)
        .file("deep/implicit/dirs", b"x", 0o600, 0)
        .symlink("etc/link", "/does/not/matter")
        .hardlink("etc/hosts2", "./etc/hosts")
        .node("dev-null", tar::EntryType::Char, 1, 3)
        .node("fifo", tar::EntryType::Fifo, 0, 0)
        .file("gone/.wh.old", b"", 0o600, 0)
        .file("opq/.wh..wh..opq", b"", 0o600, 0)
        .file(".wh..wh.plnk", b"", 0o600, 0)
        .pax_file(
            "bin/ping",
            b"ping",
            &[
                (
                    "SCHILY.xattr.security.capability",
                    &[
                        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    ],
                ),
                ("SCHILY.xattr.user.note", b"hi"),
                ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
                ("mtime", b"1234567890.5"),
                ("uid", b"70000"),
            ],
        )
        .finish();
    let expect = Digest::of(&tar);
    assert_eq!(unpack_bytes(tar, &d).unwrap(), expect);

    let m = std::fs::metadata(d.join("etc")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o750);
    assert_eq!(m.mtime(), 1_600_000_000);
    assert_eq!(
        std::fs::read(d.join("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    let s = std::fs::metadata(d.join("etc/secret")).unwrap();
    assert_eq!(
        (s.uid(), s.gid(), s.permissions().mode() & 0o7777),
        (1000, 1000, 0o4755)
    );
    assert_eq!(
        std::fs::read_link(d.join("etc/link")).unwrap(),
        Path::new("/does/not/matter")
    );
    assert_eq!(
        std::fs::metadata(d.join("etc/hosts")).unwrap().ino(),
        std::fs::metadata(d.join("etc/hosts2")).unwrap().ino()
    );
    assert_eq!(std::fs::read(d.join("deep/implicit/dirs")).unwrap(), b"x");
    let n = std::fs::symlink_metadata(d.join("dev-null")).unwrap();
    assert!(n.file_type().is_char_device());
    assert_eq!(n.rdev(), libc::makedev(1, 3));
    assert!(std::fs::symlink_metadata(d.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let w = std::fs::symlink_metadata(d.join("gone/old")).unwrap();
    assert!(
        w.file_type().is_char_device() && w.rdev() == 0,
        "whiteout is a 0:0 char device"
    );
    assert!(!d.join("gone/.wh.old").exists());
    assert_eq!(
        xattr(&d.join("opq"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!d.join("opq/.wh..wh..opq").exists());
    assert!(!d.join(".wh..wh.plnk").exists());
    let p = std::fs::metadata(d.join("bin/ping")).unwrap();
    assert_eq!(
        (p.mtime(), p.mtime_nsec(), p.uid()),
        (1234567890, 500_000_000, 70000)
    );
    assert!(
        xattr(&d.join("bin/ping"), "security.capability").is_some(),
        "file capability kept"
    );
    assert_eq!(
        xattr(&d.join("bin/ping"), "user.note").as_deref(),
        Some(&b"hi"[..])
    );
    assert_eq!(
        xattr(&d.join("bin/ping"), "trusted.overlay.redirect"),
        None,
        "overlay xattr dropped"
    );
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let path = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and buffer.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

/// Unpacks a crafted tar into `t/layer`, with a file `t/outside/victim` that
/// must stay untouched; returns the error text.
fn refused(tar: Vec<u8>) -> String {
    let t = Tmp::new();
    let d = t.0.join("layer");
    let out = t.0.join("outside");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("victim"), b"original").unwrap();
    let err = unpack_bytes(tar, &d).expect_err("hostile layer accepted");
    assert_eq!(std::fs::read(out.join("victim")).unwrap(), b"original");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "nothing created outside"
    );
    assert_eq!(
        std::fs::metadata(out.join("victim")).unwrap().nlink(),
        1,
        "no hard link to outside"
    );
    format!("{err:#}")
}

#[test]
fn refuses_dotdot() {
    let e = refused(
        Craft::new()
            .file("../outside/victim", b"pwned", 0o644, 0)
            .finish(),
    );
    assert!(e.contains("'..'"), "{e}");
    let e = refused(
        Craft::new()
            .dir("a", 0o755)
            .file("a/../../outside/new", b"x", 0o644, 0)
            .finish(),
    );
    assert!(e.contains("'..'"), "{e}");
}

#[test]
fn refuses_absolute_paths() {
    let e = refused(
        Craft::new()
            .file("/etc/pier-test-should-not-exist", b"x", 0o644, 0)
            .finish(),
    );
    assert!(e.contains("absolute"), "{e}");
    assert!(!Path::new("/etc/pier-test-should-not-exist").exists());
}

#[test]
fn refuses_writing_through_symlink_to_outside() {
    // The classic: a -> /etc, then a/passwd.
    let e = refused(
        Craft::new()
            .symlink("a", "/etc")
            .file("a/passwd", b"root::0:0::/:/bin/sh\n", 0o644, 0)
            .finish(),
    );
    assert!(e.contains("symlink"), "{e}");
    // Relative symlink climbing out of the layer, then a file through it.
    let e = refused(
        Craft::new()
            .symlink("a", "../outside")
            .file("a/victim", b"pwned", 0o644, 0)
            .finish(),
    );
    assert!(e.contains("symlink"), "{e}");
    // A symlink inside the layer is refused as a path component too, and so
    // is a whiteout or directory through one.
    let e = refused(
        Craft::new()
            .symlink("a", "../outside")
            .file("a/.wh.victim", b"", 0o644, 0)
            .finish(),
    );
    assert!(e.contains("symlink"), "{e}");
    let e = refused(
        Craft::new()
            .symlink("a", "../outside")
            .dir("a/sub", 0o755)
            .finish(),
    );
    assert!(e.contains("symlink"), "{e}");
}

#[test]
fn refuses_hard_links_to_outside() {
    let e = refused(Craft::new().hardlink("h", "../outside/victim").finish());
    assert!(e.contains("'..'"), "{e}");
    let e = refused(Craft::new().hardlink("h", "/etc/passwd").finish());
    assert!(e.contains("absolute"), "{e}");
    let e = refused(
        Craft::new()
            .symlink("s", "../outside")
            .hardlink("h", "s/victim")
            .finish(),
    );
    assert!(e.contains("symlink"), "{e}");
    let e = refused(Craft::new().hardlink("h", "not/here").finish());
    assert!(e.contains("not in this layer"), "{e}");
}

#[test]
fn hard_link_to_symlink_links_the_symlink() {
    let t = Tmp::new();
    let before = std::fs::metadata("/etc/passwd").unwrap().nlink();
    let tar = Craft::new()
        .symlink("s", "/etc/passwd")
        .hardlink("h", "s")
        .finish();
    unpack_bytes(tar, &t.0).unwrap();
    assert!(std::fs::symlink_metadata(t.0.join("h"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::metadata("/etc/passwd").unwrap().nlink(), before);
}

#[test]
fn refuses_bad_whiteouts_and_replacing_dirs() {
    let e = refused(Craft::new().file(".wh...", b"", 0o644, 0).finish());
    assert!(e.contains("'..'") || e.contains("whiteout"), "{e}");
    let e = refused(
        Craft::new()
            .dir("d", 0o755)
            .file("d", b"x", 0o644, 0)
            .finish(),
    );
    assert!(e.contains("replace a directory"), "{e}");
}

#[test]
fn later_entry_replaces_earlier_file() {
    let t = Tmp::new();
    let tar = Craft::new()
        .file("f", b"one", 0o644, 0)
        .symlink("f", "x")
        .file("f", b"two", 0o600, 0)
        .finish();
    unpack_bytes(tar, &t.0).unwrap();
    assert_eq!(std::fs::read(t.0.join("f")).unwrap(), b"two");
}

#[test]
fn gzip_zstd_and_plain_give_the_same_tree_and_diff_id() {
    let tar = Craft::new()
        .dir("d", 0o755)
        .file("d/f", &vec![7u8; 300_000], 0o644, 0)
        .finish();
    let diff_id = Digest::of(&tar);
    let t = Tmp::new();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for (i, data) in [tar.clone(), gzip(&tar), zst].into_iter().enumerate() {
        let d = t.0.join(i.to_string());
        std::fs::create_dir(&d).unwrap();
        assert_eq!(unpack_bytes(data, &d).unwrap(), diff_id);
        assert_eq!(std::fs::read(d.join("d/f")).unwrap(), vec![7u8; 300_000]);
    }
}

#[test]
fn corrupt_gzip_is_an_error() {
    let tar = Craft::new()
        .file("f", &vec![1u8; 100_000], 0o644, 0)
        .finish();
    let mut gz = gzip(&tar);
    let n = gz.len();
    gz.truncate(n / 2);
    let t = Tmp::new();
    let e = format!("{:#}", unpack_bytes(gz, &t.0).unwrap_err());
    assert!(e.contains("decompress") || e.contains("tar"), "{e}");
}

#[test]
fn unpack_layer_checks_diff_id_and_leaves_nothing() {
    let t = Tmp::new();
    let store = Store::open(&t.0).unwrap();
    let tar = Craft::new().file("f", b"data", 0o644, 0).finish();
    let blob = store.put_blob(&gzip(&tar)).unwrap();
    let wrong = Digest::of(b"not the tar");
    let layer = Layer {
        digest: blob.clone(),
        size: 0,
        media_type: String::new(),
        diff_id: wrong.clone(),
    };
    let e = format!("{:#}", unpack_layer(&store, &layer).unwrap_err());
    assert!(
        e.contains(blob.as_str()) && e.contains("config says"),
        "{e}"
    );
    assert!(!store.has_layer(&wrong));
    assert_eq!(std::fs::read_dir(t.0.join("tmp")).unwrap().count(), 0);

    let layer = Layer {
        diff_id: Digest::of(&tar),
        ..layer
    };
    unpack_layer(&store, &layer).unwrap();
    assert_eq!(
        std::fs::read(store.layer_path(&layer.diff_id).join("f")).unwrap(),
        b"data"
    );
    assert_eq!(std::fs::read_dir(t.0.join("tmp")).unwrap().count(), 0);
}

#[test]
fn records_implicit_directories() {
    let t = Tmp::new();
    let tar = Craft::new()
        .file("a/b/f", b"x", 0o644, 0)
        .dir("a", 0o700)
        .file("c/g", b"y", 0o644, 0)
        .finish();
    let u = unpack_stream(std::io::Cursor::new(tar), &t.0).unwrap();
    assert_eq!(u.implicit, vec![PathBuf::from("a/b"), PathBuf::from("c")]);
    assert_eq!(
        std::fs::metadata(t.0.join("a"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
}

#[test]
fn sparse_files_keep_their_holes_and_huge_ones_are_refused() {
    let t = Tmp::new();
    let d = t.0.join("layer");
    std::fs::create_dir(&d).unwrap();
    // 16 MiB with 1 KiB of data: stays a hole on disk.
    let size = 16 << 20;
    let tar = Craft::new()
        .sparse("s", size, &[(0, 512), (size - 512, 512), (size, 0)])
        .finish();
    unpack_bytes(tar, &d).unwrap();
    let m = std::fs::metadata(d.join("s")).unwrap();
    assert_eq!(m.len(), size);
    assert!(m.blocks() * 512 < 1 << 20, "{} blocks used", m.blocks());
    let data = std::fs::read(d.join("s")).unwrap();
    assert!(data[..512].iter().all(|&b| b == b'x'));
    assert!(data[512..size as usize - 512].iter().all(|&b| b == 0));
    assert!(data[size as usize - 512..].iter().all(|&b| b == b'x'));

    // Caught by fuzz/fuzz_targets/unpack.rs (corpus/unpack/regression-
    // sparse-terabyte): a 2 KiB tar describing a 1 TiB file made pier write
    // a terabyte of zeros. Now refused at once.
    let d = t.0.join("layer2");
    std::fs::create_dir(&d).unwrap();
    let tar = Craft::new()
        .sparse("lastlog", 1 << 40, &[(0, 512), (1 << 40, 0)])
        .finish();
    let started = std::time::Instant::now();
    let err = format!("{:#}", unpack_bytes(tar, &d).unwrap_err());
    assert!(err.contains("more than pier unpacks"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

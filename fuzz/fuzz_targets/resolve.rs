//! Path resolution inside a hostile rootfs (`berth::rootfs::resolve`).
//!
//! The input is a little script, one operation a line, that first builds a
//! tree of directories, files and symlinks in a scratch rootfs (what a
//! malicious image author controls) and then calls the resolver:
//!
//! ```text
//! dir a/b                 # mkdir -p (host calls that never follow links)
//! file a/f                # an empty file
//! link a/l -> ../../x     # a symlink; the target is written as given,
//!                         # except these prefixes, replaced by host paths:
//!                         #   @scratch   the scratch directory
//!                         #   @outside   scratch/outside (holds a canary)
//!                         #   @procroot  /proc/self/root + the scratch path
//!                         #   @procfd    /proc/self/fd/N, N open on outside
//! mkdir /a/l/y            # resolve::mkdir_all
//! create /a/l/f           # resolve::create_file
//! open /a/l path          # resolve::open, flags: path read dir nofollow creat
//! ```
//!
//! Every descriptor the resolver returns must lie inside the rootfs (read
//! back through `/proc/self/fd`), and nothing may appear or change outside
//! it: the scratch tree (names, modes, owners, times, contents, link
//! targets), the host's `/` and `/etc/passwd` are compared with their state
//! before the calls. Lines that do not parse are ignored.
//!
//! Layout, under `$TMPDIR/berth-fuzz-resolve-PID` (removed at exit):
//! `outside/canary` and `x/y/rootfs`. Relative targets keep at most three
//! `..`, so a broken resolver following one on the host stays in the
//! scratch directory; one following an absolute target on the host is
//! caught by the returned descriptor's path (the resolver only ever
//! creates empty directories and files, never truncates).
#![no_main]

#[path = "common/canary.rs"]
mod canary;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use berth::rootfs::resolve::{create_file, fd_path, mkdir_all, open};
use libfuzzer_sys::fuzz_target;

const MAX_BUILD: usize = 16;
const MAX_CALLS: usize = 4;
const MAX_COMPONENTS: usize = 8;

struct Scratch {
    base: PathBuf,
    rootfs: PathBuf,
    outside: OwnedFd,
    /// Everything under `base` but the rootfs, as set up.
    expected: BTreeMap<PathBuf, String>,
    /// The host's `/` and `/etc/passwd` at start.
    host: BTreeSet<String>,
}

static SCRATCH: OnceLock<Scratch> = OnceLock::new();

fn scratch() -> &'static Scratch {
    SCRATCH.get_or_init(|| {
        let base = canary::scratch_dir("resolve");
        let rootfs = base.join("x/y/rootfs");
        fs::create_dir_all(&rootfs).unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        fs::write(base.join("outside/canary"), "canary").unwrap();
        let outside = fs::File::open(base.join("outside")).unwrap().into();
        Scratch {
            expected: canary::tree_outside(&base, &rootfs),
            host: canary::host_state(),
            base,
            rootfs,
            outside,
        }
    })
}

/// A path inside the rootfs for the builder: normal components only.
fn tree_path(p: &str) -> Option<PathBuf> {
    let rel: PathBuf = Path::new(p)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .take(MAX_COMPONENTS)
        .collect();
    (!rel.as_os_str().is_empty()).then_some(rel)
}

/// A symlink target: placeholders replaced, at most three `..`.
fn link_target(s: &Scratch, t: &str) -> PathBuf {
    let (head, rest) = match t.split_once('/') {
        Some((h, r)) => (h, r),
        None => (t, ""),
    };
    let (start, rest) = match head {
        "@scratch" => (s.base.clone(), rest),
        "@outside" => (s.base.join("outside"), rest),
        "@procroot" => (
            Path::new("/proc/self/root").join(s.base.strip_prefix("/").unwrap()),
            rest,
        ),
        "@procfd" => (
            PathBuf::from(format!("/proc/self/fd/{}", s.outside.as_raw_fd())),
            rest,
        ),
        _ if t.starts_with('/') => (PathBuf::from("/"), t),
        _ => (PathBuf::new(), t),
    };
    let mut out = start;
    let mut ups = 0;
    for c in Path::new(rest).components().take(MAX_COMPONENTS) {
        match c {
            Component::ParentDir if ups == 3 => continue,
            Component::ParentDir => ups += 1,
            Component::RootDir => continue,
            _ => {}
        }
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Builds one entry with host calls that never follow a symlink: every
/// proper ancestor must be a real directory (`dir` creates missing ones).
fn build(s: &Scratch, op: &str, rel: &Path, target: Option<&str>) {
    let mut path = s.rootfs.clone();
    let n = rel.components().count();
    for (i, c) in rel.components().enumerate() {
        path.push(c);
        if i + 1 == n {
            break;
        }
        match fs::symlink_metadata(&path) {
            Ok(md) if md.is_dir() => {}
            Err(_) if op == "dir" => {
                if fs::create_dir(&path).is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
    let _ = match (op, target) {
        ("dir", _) => fs::create_dir(&path),
        ("file", _) => fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map(drop),
        ("link", Some(t)) => std::os::unix::fs::symlink(link_target(s, t), &path),
        _ => Ok(()),
    };
}

/// The host path a descriptor refers to must be the rootfs or under it.
fn assert_inside(s: &Scratch, fd: &OwnedFd, what: &str) {
    let real = fs::read_link(fd_path(fd.as_fd())).unwrap();
    assert!(
        real.starts_with(&s.rootfs),
        "{what} resolved to {} outside the rootfs {}",
        real.display(),
        s.rootfs.display()
    );
}

fn call(s: &Scratch, root: std::os::fd::BorrowedFd, op: &str, p: &Path, arg: &str) {
    let what = format!("{op} {}", p.display());
    match op {
        "mkdir" => {
            if let Ok(fd) = mkdir_all(root, p, 0o755) {
                assert_inside(s, &fd, &what);
                let md = fs::metadata(fd_path(fd.as_fd())).unwrap();
                assert!(md.is_dir(), "{what} gave a non-directory");
            }
        }
        "create" => {
            if let Ok(fd) = create_file(root, p) {
                assert_inside(s, &fd, &what);
            }
        }
        "open" => {
            let flags = match arg {
                "read" => libc::O_RDONLY,
                "dir" => libc::O_PATH | libc::O_DIRECTORY,
                "nofollow" => libc::O_RDONLY | libc::O_NOFOLLOW,
                "creat" => libc::O_WRONLY | libc::O_CREAT,
                _ => libc::O_PATH,
            };
            if let Ok(fd) = open(root, p, flags) {
                assert_inside(s, &fd, &what);
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains('\0') {
        return;
    }
    let s = scratch();
    let _ = fs::remove_dir_all(&s.rootfs);
    fs::create_dir(&s.rootfs).unwrap();
    let root = fs::File::open(&s.rootfs).unwrap();

    let (mut built, mut called) = (0, 0);
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let (Some(op), Some(p)) = (words.next(), words.next()) else {
            continue;
        };
        let arg = words.next().unwrap_or_default();
        match op {
            "dir" | "file" | "link" if built < MAX_BUILD => {
                built += 1;
                let target = match (arg, words.next()) {
                    ("->", Some(t)) => Some(t),
                    _ => None,
                };
                if let Some(rel) = tree_path(p) {
                    build(s, op, &rel, target);
                }
            }
            "mkdir" | "create" | "open" if called < MAX_CALLS => {
                called += 1;
                let p: PathBuf = Path::new(p).components().take(MAX_COMPONENTS).collect();
                call(s, root.as_fd(), op, &p, arg);
            }
            _ => {}
        }
    }
    canary::assert_same_tree(&s.expected, &canary::tree_outside(&s.base, &s.rootfs));
    assert_eq!(
        canary::host_state(),
        s.host,
        "something changed in the host's / or /etc/passwd"
    );
});

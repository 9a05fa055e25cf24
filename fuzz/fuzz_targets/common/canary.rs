//! The scratch tree of the targets that must change nothing outside one
//! directory (`resolve`: the rootfs, `unpack`: the layer): the scratch
//! directory itself, what can be seen of it, and of the host.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_scratch() {
    if let Some(base) = SCRATCH.get() {
        let _ = fs::remove_dir_all(base);
    }
}

/// An empty `$TMPDIR/berth-fuzz-TARGET-PID`, removed when the process
/// exits. Called once per process.
pub fn scratch_dir(target: &str) -> PathBuf {
    let tmp = fs::canonicalize(std::env::temp_dir()).expect("temp dir");
    let base = tmp.join(format!("berth-fuzz-{target}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).unwrap();
    SCRATCH.set(base.clone()).expect("one scratch directory");
    // SAFETY: registers a plain function without arguments.
    unsafe { libc::atexit(remove_scratch) };
    base
}

/// What can be seen of every path under `base` but the subtree `inner`:
/// type and mode, owner, link count, size, xattrs, mtime, file contents,
/// symlink targets. `inner`'s parent has no time: the target makes `inner`
/// again for each input, and a new name in the parent shows anyway.
pub fn tree_outside(base: &Path, inner: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![base.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p == inner {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let mut desc = format!(
                "{:o} {}:{} n{} s{} x[{}]",
                m.mode(),
                m.uid(),
                m.gid(),
                m.nlink(),
                m.size(),
                xattrs(&p)
            );
            if Some(p.as_path()) != inner.parent() {
                desc += &format!(" t{}.{}", m.mtime(), m.mtime_nsec());
            }
            if m.is_dir() {
                todo.push(p.clone());
            } else if m.is_file() {
                desc += &format!(" {:?}", fs::read(&p).unwrap());
            } else if m.is_symlink() {
                desc += &format!(" -> {:?}", fs::read_link(&p).unwrap());
            }
            out.insert(p, desc);
        }
    }
    out
}

/// Panics, after printing each difference, when `after` is not `before`.
pub fn assert_same_tree(before: &BTreeMap<PathBuf, String>, after: &BTreeMap<PathBuf, String>) {
    if after == before {
        return;
    }
    for (p, d) in after {
        if before.get(p) != Some(d) {
            eprintln!("changed: {} {d}", p.display());
        }
    }
    for p in before.keys().filter(|p| !after.contains_key(*p)) {
        eprintln!("gone: {}", p.display());
    }
    panic!("something changed outside the directory under test");
}

fn xattrs(p: &Path) -> String {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid path and buffer.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return String::new();
    }
    String::from_utf8_lossy(&buf[..n as usize]).into_owned()
}

/// The names in the host's `/` and `/etc/passwd`'s metadata.
pub fn host_state() -> BTreeSet<String> {
    let mut out: BTreeSet<String> = fs::read_dir("/")
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    if let Ok(m) = fs::symlink_metadata("/etc/passwd") {
        out.insert(format!(
            "/etc/passwd {} {:o} {} {} {} {}",
            m.ino(),
            m.mode(),
            m.uid(),
            m.nlink(),
            m.size(),
            m.mtime()
        ));
    }
    out
}

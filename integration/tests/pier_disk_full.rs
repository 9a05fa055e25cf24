//! pier's store on a full disk: a clear one-line error, nothing half-written
//! (no blob, layer, name index or temporary file), what was there intact,
//! and everything works again once there is room.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_integration::registry::{build_test_image, Auth, Pier, Registry};
use berth_integration::TempDir;

/// A tmpfs mount, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Fills the file system of `dir` with files `dir/fillN`; returns them.
fn fill(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let chunk = vec![0u8; 4096];
    for i in 0.. {
        let f = dir.join(format!("fill{i}"));
        let r = std::fs::write(&f, &chunk);
        files.push(f);
        if r.is_err() {
            break;
        }
    }
    files
}

/// `pier check` finds no problem.
fn assert_checks(p: &Pier) {
    let (ok, out, err) = p.run(&["check", "--format", "json"]);
    assert!(ok, "pier check: {err}\n{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
}

#[test]
fn pull_and_tag_on_a_full_store_fail_cleanly() {
    let reg = Registry::start(Auth::None);
    let dir = TempDir::new("layout");
    for tag in ["1", "2"] {
        let layout = dir.path().join(format!("oci{tag}"));
        build_test_image(&layout, tag);
        reg.skopeo_push(
            &format!("oci:{}:{tag}", layout.display()),
            &format!("full/img:{tag}"),
        );
    }
    let p = Pier::new().insecure(&reg.host);
    // The store's file system: room for one image, then filled up.
    let fs = p.root.path().join("fs");
    let _tmpfs = Tmpfs::mount(&fs, "16m");
    let store = p.store();
    std::fs::create_dir_all(fs.join("store")).unwrap();
    std::os::unix::fs::symlink(fs.join("store"), &store).unwrap();
    let one = format!("{}/full/img:1", reg.host);
    let two = format!("{}/full/img:2", reg.host);
    p.ok(&["pull", "-q", &one]);
    let names = std::fs::read(store.join("names.json")).unwrap();
    let blobs = entries(&store.join("blobs/sha256"));
    let layers = entries(&store.join("layers/sha256"));
    let filler = fs.join("filler");
    std::fs::create_dir(&filler).unwrap();
    let fill_files = fill(&filler);

    // A pull: one clear line, nothing half-made, the other image intact.
    let err = p.fails(&["pull", "-q", &two]);
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        entries(&store.join("tmp")).is_empty(),
        "temporary files left"
    );
    assert_eq!(std::fs::read(store.join("names.json")).unwrap(), names);
    assert!(!p.names().contains("full/img:2"));
    assert_checks(&p);
    // Blobs that were complete before the disk filled may stay (the next
    // pull reuses them); nothing of the first image changed.
    let now = entries(&store.join("blobs/sha256"));
    assert!(blobs.iter().all(|b| now.contains(b)));
    assert!(layers
        .iter()
        .all(|l| entries(&store.join("layers/sha256")).contains(l)));

    // The name index cannot be written: unchanged, no temporary file.
    let err = p.fails(&["tag", &one, "local/copy:1"]);
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(std::fs::read(store.join("names.json")).unwrap(), names);
    assert!(
        entries(&store.join("tmp")).is_empty(),
        "temporary files left"
    );
    let root: Vec<String> = entries(&store)
        .into_iter()
        .filter(|e| e.starts_with("names"))
        .collect();
    assert_eq!(root, ["names.json", "names.lock"]);
    assert_checks(&p);

    // Room again: everything works.
    for f in fill_files {
        let _ = std::fs::remove_file(f);
    }
    p.ok(&["prune"]);
    p.ok(&["pull", "-q", &two]);
    p.ok(&["tag", &one, "local/copy:1"]);
    assert_checks(&p);
    let c = TempDir::new("ctr");
    let rootfs = p.ok(&["mount", &two, c.path().to_str().unwrap()]);
    let hello = std::fs::read_to_string(Path::new(rootfs.trim()).join("etc/hello"));
    p.ok(&["umount", c.path().to_str().unwrap()]);
    assert_eq!(hello.unwrap(), "hello\n");
}

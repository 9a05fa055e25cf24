//! A full disk under `--root`: a clear error, and no half-written state.

use std::process::Command;

use berth_integration::{bin, capture, Bundle, Container, TempDir};

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn create_on_a_full_root_fails_cleanly_and_keeps_existing_state_intact() {
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = Container::new("full", &mut b);
    let dir = TempDir::new("fullfs");
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let _umount = Tmpfs(dir.path().to_path_buf());
    let root = dir.path().join("root");
    let berth = |args: &[&str]| {
        let mut cmd = Command::new(bin("berth"));
        cmd.arg("--root").arg(&root).args(args);
        capture(cmd)
    };
    let bundle = b.path().to_str().unwrap();
    let first = format!("{}-a", c.id);
    assert!(berth(&["create", "-b", bundle, &first]).status.success());
    let good_state = std::fs::read(root.join(&first).join("state.json")).unwrap();
    // Fill the filesystem.
    let mut i = 0;
    while std::fs::write(dir.path().join(format!("fill{i}")), vec![0u8; 4096]).is_ok() {
        i += 1;
    }
    let second = format!("{}-b", c.id);
    let out = berth(&["create", "-b", bundle, &second]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "create on a full disk succeeded");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!root.join(&second).exists(), "half-made state left");
    assert_eq!(
        std::fs::read(root.join(&first).join("state.json")).unwrap(),
        good_state
    );
    assert!(berth(&["delete", "--force", &first]).status.success());
    // Both containers had the bundle's cgroup (the test's); it is gone.
    assert!(c.cgroup_dirs().is_empty(), "cgroup left");
}

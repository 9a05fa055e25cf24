//! Interop both ways with skopeo and umoci: an image pushed by skopeo is
//! pulled by pier and mounts to the same files as `umoci unpack` gives; an
//! image made and pushed by pier is pulled by skopeo, unpacked by umoci and
//! run by runc; archives go both ways.

use std::path::Path;
use std::process::Command;

use berth_integration::registry::{build_test_image, tree_listing, Auth, Pier, Registry};
use berth_integration::{busybox_rootfs, capture, unique_id, TempDir, TEST_CGROUP_PARENT};

fn umoci_unpack(layout_ref: &str, bundle: &Path) {
    let out = Command::new("umoci")
        .args(["unpack", "--image", layout_ref])
        .arg(bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Mounts `image` with pier and returns the listing of its rootfs.
fn pier_listing(p: &Pier, image: &str) -> String {
    let c = TempDir::new("ctr");
    let rootfs = p.ok(&["mount", image, c.path().to_str().unwrap()]);
    let listing = tree_listing(Path::new(rootfs.trim()));
    p.ok(&["umount", c.path().to_str().unwrap()]);
    listing
}

fn assert_same(a: &str, b: &str) {
    if a != b {
        let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
        let only_a: Vec<_> = la.iter().filter(|l| !lb.contains(l)).collect();
        let only_b: Vec<_> = lb.iter().filter(|l| !la.contains(l)).collect();
        panic!("trees differ\nonly in pier: {only_a:#?}\nonly in umoci: {only_b:#?}");
    }
}

#[test]
fn skopeo_pushed_image_unpacks_like_umoci() {
    let reg = Registry::start(Auth::None);
    let dir = TempDir::new("layout");
    let layout = dir.path().join("oci");
    build_test_image(&layout, "1");
    reg.skopeo_push(&format!("oci:{}:1", layout.display()), "interop/img:1");
    let bundle = dir.path().join("umoci");
    umoci_unpack(&format!("{}:1", layout.display()), &bundle);
    let want = tree_listing(&bundle.join("rootfs"));
    assert!(
        want.contains("/etc/layer2") && !want.contains("/etc/doomed"),
        "fixture: {want}"
    );

    let p = Pier::new().insecure(&reg.host);
    let image = format!("{}/interop/img:1", reg.host);
    p.ok(&["pull", &image]);
    assert_same(&pier_listing(&p, &image), &want);
}

#[test]
fn pier_pushed_image_is_pulled_by_skopeo_unpacked_by_umoci_and_run_by_runc() {
    let reg = Registry::start(Auth::None);
    let dir = TempDir::new("import");
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs);
    std::fs::write(rootfs.join("etc/hello"), "hello from pier\n").unwrap();
    let tar = dir.path().join("rootfs.tar.gz");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-czf")
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success());

    let p = Pier::new().insecure(&reg.host);
    let image = format!("{}/from/pier:1", reg.host);
    p.ok(&["import", tar.to_str().unwrap(), &image]);
    p.ok(&["push", &image]);
    let mine = pier_listing(&p, &image);

    let layout = dir.path().join("oci");
    let out = capture({
        let mut c = Command::new("skopeo");
        c.args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{image}"),
        ])
        .arg(format!("oci:{}:x", layout.display()));
        c
    });
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = dir.path().join("bundle");
    umoci_unpack(&format!("{}:x", layout.display()), &bundle);
    assert_same(&mine, &tree_listing(&bundle.join("rootfs")));

    // runc runs umoci's bundle of the image pier pushed.
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    let id = unique_id("pier-runc");
    cfg["process"]["terminal"] = serde_json::json!(false);
    cfg["process"]["args"] = serde_json::json!(["/bin/cat", "/etc/hello"]);
    cfg["linux"]["cgroupsPath"] = serde_json::json!(format!("{TEST_CGROUP_PARENT}/{id}"));
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let state = TempDir::new("runc");
    let out = capture({
        let mut c = Command::new("runc");
        c.arg("--root")
            .arg(state.path())
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(&id);
        c
    });
    let _ = Command::new("runc")
        .arg("--root")
        .arg(state.path())
        .args(["delete", "--force", &id])
        .output();
    for d in berth_integration::cgroup_dirs(&format!("{TEST_CGROUP_PARENT}/{id}")) {
        let _ = std::fs::remove_dir(&d);
    }
    assert!(
        out.status.success(),
        "runc run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from pier\n");
}

#[test]
fn archives_both_ways() {
    let dir = TempDir::new("archives");
    let layout = dir.path().join("oci");
    build_test_image(&layout, "1");
    let bundle = dir.path().join("umoci");
    umoci_unpack(&format!("{}:1", layout.display()), &bundle);
    let want = tree_listing(&bundle.join("rootfs"));
    let p = Pier::new();

    // A docker-save archive made by skopeo loads into pier.
    let docker_tar = dir.path().join("docker.tar");
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", &format!("oci:{}:1", layout.display())])
        .arg(format!(
            "docker-archive:{}:example.com/saved/img:1",
            docker_tar.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = p.ok(&["load", "-i", docker_tar.to_str().unwrap()]);
    assert!(out.contains("example.com/saved/img:1"), "{out}");
    assert_same(&pier_listing(&p, "example.com/saved/img:1"), &want);

    // An OCI archive made by skopeo (named by tag only) needs --name.
    let oci_tar = dir.path().join("oci.tar");
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", &format!("oci:{}:1", layout.display())])
        .arg(format!("oci-archive:{}:1", oci_tar.display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = p.fails(&["load", "-i", oci_tar.to_str().unwrap()]);
    assert!(err.contains("--name"), "{err}");
    p.ok(&[
        "load",
        "-i",
        oci_tar.to_str().unwrap(),
        "--name",
        "example.com/oci/img:2",
    ]);
    assert_same(&pier_listing(&p, "example.com/oci/img:2"), &want);

    // pier save gives an archive skopeo reads (OCI) and pier loads back.
    let saved = dir.path().join("saved.tar");
    p.ok(&[
        "save",
        "example.com/oci/img:2",
        "-o",
        saved.to_str().unwrap(),
    ]);
    let back = dir.path().join("back");
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            &format!("oci-archive:{}", saved.display()),
        ])
        .arg(format!("oci:{}:b", back.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b2 = dir.path().join("umoci2");
    umoci_unpack(&format!("{}:b", back.display()), &b2);
    assert_same(&tree_listing(&b2.join("rootfs")), &want);
    let q = Pier::new();
    q.ok(&["load", "-i", saved.to_str().unwrap()]);
    q.ok(&["inspect", "example.com/oci/img:2"]);

    // A broken archive is a clear error and names nothing.
    let bad = dir.path().join("bad.tar");
    std::fs::write(&bad, b"not a tar at all").unwrap();
    let err = q.fails(&["load", "-i", bad.to_str().unwrap()]);
    assert!(err.contains("bad.tar"), "{err}");
}

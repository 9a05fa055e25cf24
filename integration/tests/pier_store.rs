//! The store: concurrent pulls, garbage collection with mounted rootfs
//! leases, leftovers of crashed processes, and overlay mounts of many layers.

use std::path::Path;
use std::process::Command;

use berth_integration::registry::{build_test_image, Auth, Pier, Registry};
use berth_integration::{capture, TempDir};

#[test]
fn concurrent_pulls_share_one_store() {
    let reg = Registry::start(Auth::None);
    let dir = TempDir::new("layout");
    let layout = dir.path().join("oci");
    build_test_image(&layout, "1");
    reg.skopeo_push(&format!("oci:{}:1", layout.display()), "c/img:1");
    reg.skopeo_push(&format!("oci:{}:1", layout.display()), "c/img:2");
    let p = Pier::new().insecure(&reg.host);
    let children: Vec<_> = (0..4)
        .map(|i| {
            let image = format!("{}/c/img:{}", reg.host, 1 + i % 2);
            let out = dir.path().join(format!("out{i}"));
            let mut c = p.cmd(&["pull", &image]);
            c.stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::fs::File::create(out.with_extension("err")).unwrap());
            (c.spawn().unwrap(), out)
        })
        .collect();
    for (mut c, out) in children {
        let st = c.wait().unwrap();
        assert!(
            st.success(),
            "{}",
            std::fs::read_to_string(out.with_extension("err")).unwrap()
        );
    }
    let names = p.names();
    assert!(
        names.contains("c/img:1") && names.contains("c/img:2"),
        "{names}"
    );
    assert_eq!(p.entries("layers/sha256").len(), 2);
    assert_eq!(p.entries("blobs/sha256").len(), 4);
    assert!(p.entries("tmp").is_empty());
}

#[test]
fn prune_keeps_layers_of_mounted_rootfs_and_cleans_leftovers() {
    let reg = Registry::start(Auth::None);
    let dir = TempDir::new("layout");
    let layout = dir.path().join("oci");
    build_test_image(&layout, "1");
    reg.skopeo_push(&format!("oci:{}:1", layout.display()), "g/img:1");
    let p = Pier::new().insecure(&reg.host);
    let image = format!("{}/g/img:1", reg.host);
    p.ok(&["pull", &image]);
    // What a crash leaves: a partial blob and a half-unpacked layer in tmp/.
    std::fs::write(p.store().join("tmp/blob-crashed"), b"partial").unwrap();
    std::fs::create_dir_all(p.store().join("tmp/layer-crashed/fs/etc")).unwrap();

    let c = TempDir::new("ctr");
    let rootfs = p.ok(&["mount", &image, c.path().to_str().unwrap()]);
    let rootfs = Path::new(rootfs.trim()).to_path_buf();
    let out = p.ok(&["rmi", &image]);
    assert!(
        out.contains("Untagged") && out.contains("Deleted 4 blobs"),
        "{out}"
    );
    assert!(p.entries("blobs/sha256").is_empty());
    assert_eq!(p.entries("layers/sha256").len(), 2, "mounted layers kept");
    assert!(p.entries("tmp").is_empty(), "leftovers removed");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/hello")).unwrap(),
        "hello\n"
    );
    p.ok(&["umount", c.path().to_str().unwrap()]);
    let out = p.ok(&["prune"]);
    assert!(out.contains("2 layers"), "{out}");
    assert!(p.entries("layers/sha256").is_empty());
    assert!(p.entries("mounts").is_empty());
}

#[test]
fn rootfs_of_many_layers_mounts() {
    // 60 layers: more lower directories than fit in mount(2)'s one-page
    // option string, so the new mount API path is used.
    let dir = TempDir::new("many");
    let layout = dir.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let mut c = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(data).unwrap();
        let h = String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()[..64].to_string();
        std::fs::write(blobs.join(&h), data).unwrap();
        (format!("sha256:{h}"), data.len())
    };
    let mut layers = Vec::new();
    for i in 0..60 {
        let src = dir.path().join(format!("src{i}"));
        std::fs::create_dir_all(src.join("layers")).unwrap();
        std::fs::write(src.join(format!("layers/f{i}")), format!("{i}\n")).unwrap();
        let out = Command::new("tar")
            .arg("-C")
            .arg(&src)
            .args(["-cf", "-", "layers"])
            .output()
            .unwrap();
        layers.push(put(&out.stdout));
    }
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.0.clone()).collect::<Vec<_>>()}})
    .to_string();
    let (cd, cs) = put(config.as_bytes());
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": layers.iter().map(|(d, s)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s})).collect::<Vec<_>>()})
    .to_string();
    let (md, ms) = put(manifest.as_bytes());
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "many"}}]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    let tar = dir.path().join("many.tar");
    let out = capture({
        let mut c = Command::new("tar");
        c.arg("-C").arg(&layout).arg("-cf").arg(&tar).arg(".");
        c
    });
    assert!(out.status.success());

    let p = Pier::new();
    p.ok(&[
        "load",
        "-i",
        tar.to_str().unwrap(),
        "--name",
        "local/many:1",
    ]);
    let c = TempDir::new("ctr");
    let rootfs = p.ok(&["mount", "local/many:1", c.path().to_str().unwrap()]);
    let rootfs = Path::new(rootfs.trim()).to_path_buf();
    let n = std::fs::read_dir(rootfs.join("layers")).unwrap().count();
    let first = std::fs::read_to_string(rootfs.join("layers/f0"));
    let last = std::fs::read_to_string(rootfs.join("layers/f59"));
    p.ok(&["umount", c.path().to_str().unwrap()]);
    assert_eq!(n, 60);
    assert_eq!(first.unwrap(), "0\n");
    assert_eq!(last.unwrap(), "59\n");
}

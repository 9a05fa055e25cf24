//! Bad input from registries: corrupted and truncated blobs, a manifest for
//! another platform only, 500s, a registry that hangs, a malicious layer.
//! Each gives a clear error and leaves the store without a name, a bad blob
//! or a temporary file.

use std::io::Write;
use std::process::Command;

use berth_integration::registry::{build_test_image, Auth, Fake, FakeServer, Pier, Registry};
use berth_integration::TempDir;

fn registry_with_image() -> (Registry, TempDir) {
    let reg = Registry::start(Auth::None);
    let dir = TempDir::new("layout");
    let layout = dir.path().join("oci");
    build_test_image(&layout, "1");
    reg.skopeo_push(&format!("oci:{}:1", layout.display()), "test/img:1");
    (reg, dir)
}

/// The digests of the layers of `REPO:TAG` on `reg`, bottom first.
fn layer_digests(reg: &Registry, repo_tag: &str) -> Vec<String> {
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/{repo_tag}", reg.host),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

/// The store holds no name, no blob `bad` and nothing in tmp/.
fn assert_clean(p: &Pier, bad: &str) {
    assert!(
        !p.names().contains("test/img"),
        "a name was written: {}",
        p.names()
    );
    assert!(!p
        .entries("blobs/sha256")
        .contains(&bad.trim_start_matches("sha256:").to_string()));
    assert!(
        p.entries("tmp").is_empty(),
        "tmp/ not empty: {:?}",
        p.entries("tmp")
    );
}

#[test]
fn corrupted_blob_is_refused_and_named() {
    let (reg, _l) = registry_with_image();
    let layers = layer_digests(&reg, "test/img:1");
    let f = reg.blob_file(&layers[0]);
    let mut data = std::fs::read(&f).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&f, &data).unwrap();
    let p = Pier::new().insecure(&reg.host);
    let err = p.fails(&["pull", &format!("{}/test/img:1", reg.host)]);
    assert!(
        err.contains(&layers[0]) && err.contains("corrupted"),
        "{err}"
    );
    assert_clean(&p, &layers[0]);
}

#[test]
fn truncated_blob_is_refused_and_pull_resumes_after_repair() {
    let (reg, _l) = registry_with_image();
    let layers = layer_digests(&reg, "test/img:1");
    let f = reg.blob_file(&layers[1]);
    let good = std::fs::read(&f).unwrap();
    std::fs::write(&f, &good[..good.len() / 2]).unwrap();
    let p = Pier::new().insecure(&reg.host);
    let image = format!("{}/test/img:1", reg.host);
    let err = p.fails(&["pull", "--parallel", "1", &image]);
    assert!(
        err.contains(&layers[1]) && err.contains("expected"),
        "{err}"
    );
    assert_clean(&p, &layers[1]);
    // The blobs that did verify stay for the next pull.
    let kept = p.entries("blobs/sha256");
    assert!(kept.contains(&layers[0][7..].to_string()), "{kept:?}");
    std::fs::write(&f, &good).unwrap();
    p.ok(&["pull", &image]);
    // Prune keeps what the name uses.
    p.ok(&["prune"]);
    assert_eq!(
        p.entries("blobs/sha256").len(),
        4,
        "manifest, config, 2 layers"
    );
}

#[test]
fn index_without_our_platform_is_refused() {
    let (reg, _l) = registry_with_image();
    // An index that offers the image only as linux/arm64.
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/test/img:1", reg.host),
        ])
        .output()
        .unwrap();
    let manifest = out.stdout;
    let digest = format!("sha256:{}", sha256_hex(&manifest));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": manifest.len(),
            "platform": {"architecture": "arm64", "os": "linux"}
        }]
    });
    let put = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.index.v1+json",
            "--data-binary",
            &index.to_string(),
        ])
        .arg(format!("http://{}/v2/test/img/manifests/multi", reg.host))
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let p = Pier::new().insecure(&reg.host);
    let image = format!("{}/test/img:multi", reg.host);
    let err = p.fails(&["pull", &image]);
    assert!(
        err.contains("linux/amd64") && err.contains("linux/arm64"),
        "{err}"
    );
    assert_clean(&p, &digest);
    assert!(p.entries("blobs/sha256").is_empty(), "nothing downloaded");
    p.ok(&["pull", "--platform", "linux/arm64", &image]);
}

fn sha256_hex(data: &[u8]) -> String {
    let mut c = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn server_errors_are_reported() {
    let s = FakeServer::start(Fake::Error500);
    let p = Pier::new().insecure(&s.host);
    let err = p.fails(&["pull", &format!("{}/test/img:1", s.host)]);
    assert!(err.contains("500") && err.contains("test failure"), "{err}");
    assert!(
        s.requests.load(std::sync::atomic::Ordering::Relaxed) >= 2,
        "500 is retried"
    );
    assert!(p.names().is_empty());
}

#[test]
fn hanging_registry_times_out() {
    let s = FakeServer::start(Fake::Hang);
    let p = Pier::new().insecure(&s.host);
    let t = std::time::Instant::now();
    let err = p.fails(&["--timeout", "1", "pull", &format!("{}/test/img:1", s.host)]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        err.to_lowercase().contains("timeout") || err.contains("timed out"),
        "{err}"
    );
}

#[test]
fn unknown_image_is_a_clear_error() {
    let reg = Registry::start(Auth::None);
    let p = Pier::new().insecure(&reg.host);
    let err = p.fails(&["pull", &format!("{}/no/such:1", reg.host)]);
    assert!(err.contains("404") && err.contains("no/such"), "{err}");
    let err = p.fails(&["inspect", "no-such-image"]);
    assert!(err.contains("not found"), "{err}");
}

/// Writes an OCI layout with one image whose single layer is `tar`.
fn layout_with_layer(dir: &std::path::Path, tar: &[u8]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let h = sha256_hex(data);
        std::fs::write(blobs.join(&h), data).unwrap();
        format!("sha256:{h}")
    };
    let layer = put(tar);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer]}, "config": {}
    })
    .to_string();
    let cd = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": tar.len()}]
    })
    .to_string();
    let md = put(manifest.as_bytes());
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "evil"}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

/// A tar: `a -> /etc` then `a/passwd` (built with GNU tar's
/// --transform so the second entry's path goes through the symlink).
fn symlink_escape_tar(work: &std::path::Path) -> Vec<u8> {
    std::fs::create_dir_all(work.join("src")).unwrap();
    std::os::unix::fs::symlink("/etc", work.join("src/a")).unwrap();
    std::fs::write(work.join("src/passwd"), "root::0:0:pwned:/:/bin/sh\n").unwrap();
    let out = Command::new("tar")
        .arg("-C")
        .arg(work.join("src"))
        .args([
            "--transform",
            "s,^passwd$,a/passwd,",
            "-cf",
            "-",
            "a",
            "passwd",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn malicious_layer_is_refused_and_store_unchanged() {
    let reg = Registry::start(Auth::None);
    let dir = TempDir::new("evil");
    let tar = symlink_escape_tar(&dir.path().join("work"));
    let layout = dir.path().join("oci");
    layout_with_layer(&layout, &tar);
    reg.skopeo_push(&format!("oci:{}:evil", layout.display()), "test/img:evil");
    let passwd = std::fs::read("/etc/passwd").unwrap();
    let p = Pier::new().insecure(&reg.host);
    let err = p.fails(&["pull", &format!("{}/test/img:evil", reg.host)]);
    assert!(err.contains("a/passwd") && err.contains("symlink"), "{err}");
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd);
    assert!(p.entries("layers/sha256").is_empty());
    assert_clean(&p, "none");
}

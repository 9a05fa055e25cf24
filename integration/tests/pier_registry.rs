//! pier against a real registry on loopback: anonymous, htpasswd and token
//! auth, pull, push (monolithic, chunked, cross-repository mount), login.

use berth_integration::registry::{build_test_image, Auth, Pier, Registry, PASSWORD, USER};
use berth_integration::TempDir;

/// A registry with the test image pushed as `test/img:1` by skopeo.
fn registry_with_image(auth: Auth) -> (Registry, TempDir) {
    let reg = Registry::start(auth);
    let dir = TempDir::new("layout");
    let layout = dir.path().join("oci");
    build_test_image(&layout, "1");
    reg.skopeo_push(&format!("oci:{}:1", layout.display()), "test/img:1");
    (reg, dir)
}

fn login(p: &Pier, reg: &Registry, password: &str) -> (bool, String, String) {
    let mut c = p.cmd(&["login", &reg.host, "-u", USER, "--password-stdin"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn anonymous_pull_lists_inspects_and_mounts() {
    let (reg, _l) = registry_with_image(Auth::None);
    let p = Pier::new().insecure(&reg.host);
    let image = format!("{}/test/img:1", reg.host);
    let out = p.ok(&["pull", &image]);
    assert!(out.contains(&format!("Pulled {image}")), "{out}");
    let list = p.ok(&["images", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v[0]["Repository"], format!("{}/test/img", reg.host));
    assert_eq!(v[0]["Tag"], "1");
    let id = v[0]["ID"].as_str().unwrap().to_string();
    let table = p.ok(&["images"]);
    assert!(
        table.contains("REPOSITORY") && table.contains(&id[7..19]),
        "{table}"
    );
    let inspect: serde_json::Value = serde_json::from_str(&p.ok(&["inspect", &id[7..19]])).unwrap();
    assert_eq!(inspect["Id"], id.as_str());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(inspect["Config"]["rootfs"]["type"], "layers");
    // Both layers are unpacked once, by diff-id.
    assert_eq!(p.entries("layers/sha256").len(), 2);
    assert!(p.entries("tmp").is_empty());

    // The rootfs: layers merged, whiteouts applied, writes go to upper/.
    let c = TempDir::new("ctr");
    let rootfs = p.ok(&["mount", &image, c.path().to_str().unwrap()]);
    let rootfs = std::path::Path::new(rootfs.trim());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/layer2")).unwrap(),
        "layer2\n"
    );
    assert!(
        !rootfs.join("etc/doomed").exists(),
        "whiteout hides the file"
    );
    assert!(!rootfs.join("opt/gone/old").exists());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("opt/gone/fresh")).unwrap(),
        "new\n"
    );
    let out = std::process::Command::new("chroot")
        .arg(rootfs)
        .args(["/bin/sh", "-c", "cat /etc/hello; echo w > /written"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert!(c.path().join("upper/written").exists());
    p.ok(&["umount", c.path().to_str().unwrap()]);
    assert!(!c.path().join("rootfs").exists() && !c.path().join("upper").exists());

    // Pulling again downloads nothing and changes nothing.
    let blobs = p.entries("blobs/sha256");
    p.ok(&["pull", &image]);
    assert_eq!(p.entries("blobs/sha256"), blobs);
}

#[test]
fn http_prefix_means_plain_http_without_flag() {
    let (reg, _l) = registry_with_image(Auth::None);
    let p = Pier::new();
    let err = p.fails(&[
        "--timeout",
        "5",
        "pull",
        &format!("{}/test/img:1", reg.host),
    ]);
    assert!(err.contains("pull"), "{err}");
    p.ok(&["pull", &format!("http://{}/test/img:1", reg.host)]);
}

#[test]
fn htpasswd_auth_login_and_pull() {
    let (reg, _l) = registry_with_image(Auth::Htpasswd);
    let p = Pier::new().insecure(&reg.host);
    let image = format!("{}/test/img:1", reg.host);
    let err = p.fails(&["pull", &image]);
    assert!(err.contains("401") && err.contains("pier login"), "{err}");
    assert!(!p.names().contains("test/img"));

    let (ok, _, err) = login(&p, &reg, "wrong-password");
    assert!(!ok, "login with a wrong password succeeded");
    assert!(err.contains("401"), "{err}");
    assert!(!p.auth_file.exists());

    let (ok, out, err) = login(&p, &reg, PASSWORD);
    assert!(ok, "{err}");
    assert!(
        !out.contains(PASSWORD) && !err.contains(PASSWORD),
        "password printed"
    );
    let auth = std::fs::read_to_string(&p.auth_file).unwrap();
    assert!(
        auth.contains("auths") && auth.contains(&reg.host) && !auth.contains(PASSWORD),
        "{auth}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&p.auth_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    p.ok(&["pull", &image]);
    p.ok(&["push", &image, &format!("{}/test/copy:1", reg.host)]);
    p.ok(&["logout", &reg.host]);
    let err = p.fails(&["pull", &format!("{}/test/copy:1", reg.host)]);
    assert!(err.contains("401"), "{err}");
}

#[test]
fn token_auth_pull_and_push() {
    let (reg, _l) = registry_with_image(Auth::Token);
    let p = Pier::new().insecure(&reg.host);
    let image = format!("{}/test/img:1", reg.host);
    let err = p.fails(&["pull", &image]);
    assert!(
        err.contains("refused anonymous access") && err.contains("pier login"),
        "{err}"
    );
    assert!(!p.names().contains("test/img"));
    let (ok, _, err) = login(&p, &reg, PASSWORD);
    assert!(ok, "{err}");
    let before = reg
        .token
        .as_ref()
        .unwrap()
        .issued
        .load(std::sync::atomic::Ordering::Relaxed);
    p.ok(&["pull", &image]);
    let after = reg
        .token
        .as_ref()
        .unwrap()
        .issued
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(after > before, "no token was fetched");
    p.ok(&["push", &image, &format!("{}/other/img:2", reg.host)]);
    let q = Pier::new().insecure(&reg.host);
    std::fs::copy(&p.auth_file, &q.auth_file).unwrap();
    q.ok(&["pull", &format!("{}/other/img:2", reg.host)]);
}

#[test]
fn push_chunked_to_another_registry_and_pull_back() {
    let (a, _l) = registry_with_image(Auth::None);
    let b = Registry::start(Auth::None);
    let p = Pier::new().insecure(&a.host).insecure(&b.host);
    let src = format!("{}/test/img:1", a.host);
    p.ok(&["pull", &src]);
    let dst = format!("{}/moved/img:x", b.host);
    let out = p.run(&["push", "--chunk-size", "65536", &src, &dst]);
    assert!(out.0, "{}", out.2);
    assert!(out.2.contains("3 uploaded"), "{}", out.2);
    // skopeo sees the same manifest digest pier has.
    let inspect: serde_json::Value = serde_json::from_str(&p.ok(&["inspect", &src])).unwrap();
    let sk = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{dst}")])
        .output()
        .unwrap();
    assert!(
        sk.status.success(),
        "{}",
        String::from_utf8_lossy(&sk.stderr)
    );
    let sk: serde_json::Value = serde_json::from_slice(&sk.stdout).unwrap();
    assert_eq!(sk["Digest"], inspect["Digest"]);
    // A second push finds every blob there already.
    let out = p.run(&["push", &src, &dst]);
    assert!(out.2.contains("3 already there"), "{}", out.2);
    // Pulled back from b; pushed to another repository of b, the blobs
    // are mounted from the repository the image came from, not uploaded.
    let q = Pier::new().insecure(&b.host);
    q.ok(&["pull", &dst]);
    let out = q.run(&["push", &dst, &format!("{}/mounted/img:y", b.host)]);
    assert!(out.0, "{}", out.2);
    assert!(out.2.contains("3 mounted"), "{}", out.2);
    let r = Pier::new().insecure(&b.host);
    r.ok(&["pull", &format!("{}/mounted/img:y", b.host)]);
}

//! Crash safety of `pier pull` and `pier build`: pier is killed with SIGKILL
//! at random moments (a delay drawn from a seeded generator; the seed is
//! printed and `BERTH_STRESS_SEED` repeats a run) and at its failpoints
//! (`PIER_FAILPOINT`, debug builds), which name the narrow windows random
//! kills rarely hit. After each kill:
//! - the store is consistent: `pier check` finds no problem, every blob
//!   hashes to its name (checked here too), and a name only ever points at
//!   a complete image;
//! - the next command completes (a pull, or a build that reuses the cache
//!   only for the steps that had finished) and the image has the right
//!   files;
//! - `pier prune` reclaims the rest: `tmp/` and `mounts/` are empty and the
//!   blobs and layers on disk are exactly those the named images reference;
//! - a killed build leaves no container, mount, cgroup or process once the
//!   next `pier build` or `pier prune` ran.
//!
//! `BERTH_STRESS_TRIALS` sets the number of trials of each test (CI: 10; by
//! hand: 100 and more).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_integration::crash::{self, Rng};
use berth_integration::pier_env::PierEnv;
use berth_integration::registry::{Auth, Pier, Registry};
use berth_integration::shim::pseudo_random;
use berth_integration::{require_root, workspace_root, TempDir};
use serde_json::Value;

/// pier's failpoints (`pier/src/failpoint.rs`).
const PULL_POINTS: &[&str] = &[
    "pull-in-blob",
    "pull-in-unpack",
    "pull-before-name",
    "names-before-rename",
];
const BUILD_POINTS: &[&str] = &[
    "build-step-mounted",
    "build-run-output",
    "build-layer-written",
    "build-before-cache",
    "build-before-name",
];

/// The entries a store root may hold (anything else is a leftover).
const STORE_ENTRIES: &[&str] = &[
    "blobs",
    "build-cache",
    "containers",
    "layers",
    "lock",
    "mounts",
    "names.json",
    "names.lock",
    "tmp",
];

/// How a trial kills pier.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// SIGKILL after this many milliseconds.
    After(u64),
    /// At this failpoint.
    At(&'static str),
}

/// Runs pier: (success, stdout, stderr).
type PierFn<'a> = &'a dyn Fn(&[&str]) -> (bool, String, String);

/// Starts `cmd` (output to files in `dir`), kills it as `how` says and
/// returns (was it killed, its stdout).
fn run_and_kill(mut cmd: Command, how: Kill, dir: &Path, ctx: &str) -> (bool, String) {
    let out = dir.join("killed.out");
    let err = dir.join("killed.err");
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    if let Kill::At(p) = how {
        cmd.env("PIER_FAILPOINT", p);
    }
    let mut child = cmd.spawn().expect("spawn pier");
    let (status, killed) = match how {
        Kill::After(ms) => crash::kill_after(&mut child, Duration::from_millis(ms)),
        Kill::At(_) => {
            let st = child.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            (st, st.signal() == Some(libc::SIGKILL))
        }
    };
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    if let Kill::At(p) = how {
        assert!(
            killed,
            "{ctx}: failpoint {p} did not fire ({status}): {stderr}"
        );
    } else if !killed {
        assert!(
            status.success(),
            "{ctx}: pier failed before it was killed ({status}): {stderr}"
        );
    }
    (killed, stdout)
}

fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn read_json(p: &Path) -> Result<Value, String> {
    let data = std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()))?;
    serde_json::from_slice(&data).map_err(|e| format!("parse {}: {e}", p.display()))
}

fn hex(d: &Value) -> String {
    d.as_str()
        .and_then(|s| s.strip_prefix("sha256:"))
        .unwrap_or_default()
        .to_string()
}

/// The blobs and unpacked layers (hex digests) the named images reference,
/// read from the store's files directly.
fn referenced(store: &Path) -> Result<(BTreeSet<String>, BTreeSet<String>), String> {
    let names = store.join("names.json");
    let names = if names.exists() {
        read_json(&names)?
    } else {
        serde_json::json!({"images": {}})
    };
    let blob = |h: &str| read_json(&store.join("blobs/sha256").join(h));
    let (mut blobs, mut layers) = (BTreeSet::new(), BTreeSet::new());
    for (name, e) in names["images"].as_object().cloned().unwrap_or_default() {
        let m = hex(&e["manifest"]);
        blobs.insert(m.clone());
        if !e["index"].is_null() {
            blobs.insert(hex(&e["index"]));
        }
        let man = blob(&m).map_err(|e| format!("image {name}: {e}"))?;
        let cfg = hex(&man["config"]["digest"]);
        blobs.insert(cfg.clone());
        for l in man["layers"].as_array().cloned().unwrap_or_default() {
            blobs.insert(hex(&l["digest"]));
        }
        let conf = blob(&cfg).map_err(|e| format!("image {name}: {e}"))?;
        for d in conf["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            layers.insert(hex(&d));
        }
    }
    Ok((blobs, layers))
}

/// sha256 of every blob file, by `sha256sum` (independent of pier's code):
/// the blobs whose content does not match their name.
fn corrupt_blobs(store: &Path) -> Vec<String> {
    let dir = store.join("blobs/sha256");
    let names: Vec<String> = entries(&dir).into_iter().collect();
    if names.is_empty() {
        return Vec::new();
    }
    let out = Command::new("sha256sum")
        .args(&names)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once("  "))
        .filter(|(sum, name)| sum != name)
        .map(|(sum, name)| format!("{name} has content {sum}"))
        .collect()
}

/// The store after a kill: `pier check` finds nothing wrong, every blob is
/// intact, every name reaches a complete image (all its blobs present).
fn assert_consistent(store: &Path, pier: PierFn, ctx: &str) {
    let (ok, out, err) = pier(&["check", "--format", "json"]);
    assert!(ok, "{ctx}: pier check failed: {err}\n{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["problems"], serde_json::json!([]), "{ctx}: {v}");
    let bad = corrupt_blobs(store);
    assert!(bad.is_empty(), "{ctx}: corrupt blobs: {bad:?}");
    let (blobs, _) = referenced(store).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let on_disk = entries(&store.join("blobs/sha256"));
    let missing: Vec<_> = blobs.difference(&on_disk).collect();
    assert!(missing.is_empty(), "{ctx}: named images lack {missing:?}");
}

/// The store after `pier prune`: no leftovers, and exactly the referenced
/// blobs and layers.
fn assert_pruned(store: &Path, pier: PierFn, ctx: &str) {
    let tmp = entries(&store.join("tmp"));
    assert!(tmp.is_empty(), "{ctx}: tmp/ after prune: {tmp:?}");
    let leases = entries(&store.join("mounts"));
    assert!(leases.is_empty(), "{ctx}: leases after prune: {leases:?}");
    let extra: Vec<String> = entries(store)
        .into_iter()
        .filter(|e| !STORE_ENTRIES.contains(&e.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "{ctx}: leftovers in the store root: {extra:?}"
    );
    let (blobs, layers) = referenced(store).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert_eq!(entries(&store.join("blobs/sha256")), blobs, "{ctx}: blobs");
    assert_eq!(
        entries(&store.join("layers/sha256")),
        layers,
        "{ctx}: layers"
    );
    let (ok, out, err) = pier(&["check", "--format", "json"]);
    assert!(ok, "{ctx}: pier check failed: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["problems"], serde_json::json!([]), "{ctx}: {v}");
    for (k, n) in v["garbage"].as_object().unwrap() {
        assert_eq!(n, 0, "{ctx}: garbage {k} after prune: {v}");
    }
}

/// `pier umount DIR` on drop (also when an assertion failed).
struct Mounted<'a>(PierFn<'a>, PathBuf);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = (self.0)(&["umount", self.1.to_str().unwrap()]);
    }
}

/// Mounts `image` and compares its files with `files` (path, content).
fn assert_files(pier: PierFn, image: &str, files: &[(String, Vec<u8>)], ctx: &str) {
    let dir = TempDir::new("crash-mnt");
    let c = dir.path().join("c");
    let (ok, out, err) = pier(&["mount", image, c.to_str().unwrap()]);
    assert!(ok, "{ctx}: mount {image}: {err}");
    let _m = Mounted(pier, c.clone());
    let rootfs = PathBuf::from(out.trim());
    for (p, want) in files {
        let got = std::fs::read(rootfs.join(p)).unwrap_or_else(|e| panic!("{ctx}: {p}: {e}"));
        assert!(got == *want, "{ctx}: {p} differs ({} bytes)", got.len());
    }
}

fn sha256_hex(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

/// Writes an OCI image layout at `layout` (tag `1`) with `n` gzip layers,
/// each a file of `size` incompressible bytes and a small one. Returns the
/// files (path in the image, content).
fn big_image(layout: &Path, n: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |file: &Path| -> (String, u64) {
        let h = sha256_hex(file);
        let len = std::fs::metadata(file).unwrap().len();
        std::fs::rename(file, blobs.join(&h)).unwrap();
        (format!("sha256:{h}"), len)
    };
    let mut files = Vec::new();
    let (mut layers, mut diff_ids) = (Vec::new(), Vec::new());
    for i in 0..n {
        let src = layout.with_extension(format!("src{i}"));
        std::fs::create_dir_all(src.join("data")).unwrap();
        let big = pseudo_random(size, 1000 + i as u64);
        let small = format!("layer {i}\n").into_bytes();
        std::fs::write(src.join(format!("data/layer{i}.bin")), &big).unwrap();
        std::fs::write(src.join(format!("data/layer{i}.txt")), &small).unwrap();
        files.push((format!("data/layer{i}.bin"), big));
        files.push((format!("data/layer{i}.txt"), small));
        let tar = layout.with_extension(format!("layer{i}.tar"));
        let st = Command::new("tar")
            .arg("-C")
            .arg(&src)
            .arg("-cf")
            .arg(&tar)
            .arg("data")
            .status()
            .unwrap();
        assert!(st.success());
        diff_ids.push(format!("sha256:{}", sha256_hex(&tar)));
        let st = Command::new("gzip").arg("-1").arg(&tar).status().unwrap();
        assert!(st.success());
        layers.push(put(&tar.with_extension("tar.gz")));
        std::fs::remove_dir_all(&src).unwrap();
    }
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let cfg_file = layout.with_extension("config");
    std::fs::write(&cfg_file, config.to_string()).unwrap();
    let (cd, cs) = put(&cfg_file);
    let manifest = serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": layers.iter().map(|(d, s)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s}))
            .collect::<Vec<_>>()});
    let man_file = layout.with_extension("manifest");
    std::fs::write(&man_file, manifest.to_string()).unwrap();
    let (md, ms) = put(&man_file);
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": "1"}}]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    files
}

#[test]
fn pull_killed_at_random_moments_leaves_a_consistent_store() {
    require_root();
    crash::become_subreaper();
    let trials = crash::trials(10);
    let mut rng = Rng::from_env("pull");
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("crash-pull");
    let layout = work.path().join("oci");
    let files = big_image(&layout, 4, 2 << 20);
    reg.skopeo_push(&format!("oci:{}:1", layout.display()), "crash/big:1");
    let image = format!("{}/crash/big:1", reg.host);
    let p = Pier::new().insecure(&reg.host);
    let store = p.store();
    let pier = |a: &[&str]| p.run(a);

    // How long a whole pull takes: the kills are spread over it.
    let t = Instant::now();
    p.ok(&["pull", "-q", &image]);
    let full = t.elapsed();
    assert_files(&pier, &image, &files, "first pull");
    p.ok(&["rmi", &image]);
    assert_pruned(&store, &pier, "first pull");
    eprintln!("a whole pull takes {full:?}; {trials} trials");

    let span = (full.as_millis() as u64 * 11 / 10).max(10);
    let (mut killed_n, started) = (0, Instant::now());
    for i in 0..trials {
        let how = if i % 3 == 2 {
            Kill::At(PULL_POINTS[(i / 3) % PULL_POINTS.len()])
        } else {
            Kill::After(rng.below(span))
        };
        let ctx = format!("trial {i} ({how:?})");
        let (killed, _) = run_and_kill(p.cmd(&["pull", "-q", &image]), how, work.path(), &ctx);
        killed_n += killed as usize;
        assert_consistent(&store, &pier, &ctx);
        let listed: Value = serde_json::from_str(&p.ok(&["images", "--format", "json"])).unwrap();
        let n = listed.as_array().unwrap().len();
        assert!(
            n == 0 || (n == 1 && listed[0]["Repository"] == format!("{}/crash/big", reg.host)),
            "{ctx}: {listed}"
        );
        if !killed {
            assert_eq!(n, 1, "{ctx}: a finished pull left no name");
        }
        // Half of the trials prune first (prune must reclaim the partial
        // data), half pull first (the pull reuses what is complete).
        if i % 2 == 0 {
            p.ok(&["prune"]);
            assert_pruned(&store, &pier, &ctx);
        }
        p.ok(&["pull", "-q", &image]);
        assert_files(&pier, &image, &files, &ctx);
        p.ok(&["prune"]);
        assert_pruned(&store, &pier, &ctx);
        p.ok(&["rmi", &image]);
        assert_pruned(&store, &pier, &ctx);
        assert!(entries(&store.join("blobs/sha256")).is_empty(), "{ctx}");
    }
    let leftover = crash::wait_children_gone(&[reg.pid()], 5);
    assert!(leftover.is_empty(), "processes left: {leftover:?}");
    eprintln!(
        "{trials} trials ({killed_n} killed mid-way) in {:?}",
        started.elapsed()
    );
}

/// The build of [`build_killed_at_random_moments_leaves_nothing_behind`]:
/// a COPY of 2 MiB, a RUN that takes a while and writes a layer of 500 kB,
/// and a quick RUN; the layer steps are 2 to 4.
const DOCKERFILE: &str = "FROM base:1
COPY big/ /big/
RUN echo started; sleep 0.3; head -c 500000 /dev/urandom > /r1.bin; echo one > /r1
RUN echo two > /r2; wc -c < /r1.bin > /r1.size
";
const LAYER_STEPS: usize = 3;

/// Steps (after FROM) whose completion the build printed (` ---> <key>`).
fn steps_done(out: &str) -> usize {
    let keys = out
        .lines()
        .filter(|l| {
            l.strip_prefix(" ---> ")
                .is_some_and(|k| k.len() == 12 && k.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .count();
    keys.saturating_sub(1)
}

/// For each step after FROM: whether the build took it from the cache.
fn cache_flags(out: &str) -> Vec<bool> {
    let mut flags = Vec::new();
    for block in out.split("\nStep ").skip(1) {
        flags.push(block.contains("\n ---> Using cache"));
    }
    flags
}

#[test]
fn build_killed_at_random_moments_leaves_nothing_behind() {
    require_root();
    crash::become_subreaper();
    let trials = crash::trials(10);
    let mut rng = Rng::from_env("build");
    let env = PierEnv::new();
    env.busybox_image("base:1");
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let big: Vec<Vec<u8>> = (0..8).map(|i| pseudo_random(256 << 10, 77 + i)).collect();
    let context = env.context("ctx", &[("Dockerfile", DOCKERFILE)]);
    for (i, data) in big.iter().enumerate() {
        let name = format!("big/f{i:02}");
        std::fs::create_dir_all(context.join("big")).unwrap();
        std::fs::write(context.join(&name), data).unwrap();
        files.push((name, data.clone()));
    }
    files.push(("r1".into(), b"one\n".to_vec()));
    files.push(("r2".into(), b"two\n".to_vec()));
    files.push(("r1.size".into(), b"500000\n".to_vec()));
    let store = env.store();
    let pier = |a: &[&str]| {
        let o = env.run(a);
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let build = || env.ok(&["build", "-t", "app:1", context.to_str().unwrap()]);
    let clean = |ctx: &str| {
        let kids = crash::wait_children_gone(&[], 5);
        assert!(kids.is_empty(), "{ctx}: processes left: {kids:?}");
        env.assert_clean();
    };

    let t = Instant::now();
    build();
    let full = t.elapsed();
    assert_files(&pier, "app:1", &files, "first build");
    env.ok(&["rmi", "app:1"]);
    assert_pruned(&store, &pier, "first build");
    assert!(entries(&store.join("build-cache")).is_empty());
    eprintln!("a whole build takes {full:?}; {trials} trials");

    let span = (full.as_millis() as u64 * 11 / 10).max(10);
    let (mut killed_n, started) = (0, Instant::now());
    let work = TempDir::new("crash-build");
    for i in 0..trials {
        let how = if i % 3 == 2 {
            Kill::At(BUILD_POINTS[(i / 3) % BUILD_POINTS.len()])
        } else {
            Kill::After(rng.below(span))
        };
        let ctx = format!("trial {i} ({how:?})");
        let cmd = env.cmd(&["build", "-t", "app:1", context.to_str().unwrap()]);
        let (killed, out) = run_and_kill(cmd, how, work.path(), &ctx);
        killed_n += killed as usize;
        assert_consistent(&store, &pier, &ctx);
        let named = env.ok(&["images"]).contains("docker.io/library/app");
        if !killed {
            assert!(named, "{ctx}: a finished build left no name");
        }
        let done = if named { LAYER_STEPS } else { steps_done(&out) };
        let ctx = format!("{ctx}, {done} steps done");
        // Half of the trials build first (the build cleans up after the
        // dead one), half prune first.
        let rebuilt = if i % 2 == 0 {
            let out = build();
            clean(&ctx);
            out
        } else {
            env.ok(&["prune"]);
            clean(&ctx);
            assert_pruned(&store, &pier, &ctx);
            build()
        };
        // A step that finished may be cached; one that did not never is.
        // (A step killed after its cache entry was written but before it
        // printed its end counts as one more.)
        let flags = cache_flags(&rebuilt);
        assert_eq!(flags.len(), LAYER_STEPS, "{ctx}: {rebuilt}");
        let cached = flags.iter().filter(|c| **c).count();
        assert!(
            flags.iter().skip(cached).all(|c| !c),
            "{ctx}: cached steps after one that ran: {rebuilt}"
        );
        let expected = if i % 2 == 0 || named {
            done..=(done + 1).min(LAYER_STEPS)
        } else {
            0..=0
        };
        assert!(
            expected.contains(&cached),
            "{ctx}: {cached} cached steps, expected {expected:?}:\n{out}\n---\n{rebuilt}"
        );
        assert_files(&pier, "app:1", &files, &ctx);
        env.ok(&["prune"]);
        assert_pruned(&store, &pier, &ctx);
        env.ok(&["rmi", "app:1"]);
        assert_pruned(&store, &pier, &ctx);
        assert!(
            entries(&store.join("build-cache")).is_empty(),
            "{ctx}: stale cache entries"
        );
        clean(&ctx);
    }
    eprintln!(
        "{trials} trials ({killed_n} killed mid-way) in {:?}",
        started.elapsed()
    );
}

#[test]
fn failpoint_names_match_pier() {
    let src = std::fs::read_to_string(workspace_root().join("pier/src/failpoint.rs")).unwrap();
    for p in PULL_POINTS.iter().chain(BUILD_POINTS) {
        assert!(
            src.contains(&format!("\"{p}\"")),
            "{p} is not a failpoint of pier"
        );
    }
}

//! Registries on loopback for the `pier_*` tests: Debian's `docker-registry`
//! (the distribution registry) with its own config and storage on a free
//! 127.0.0.1 port, optionally behind htpasswd or token auth (the token
//! server is [`TokenServer`], a small thread here), a [`FakeServer`] that
//! answers 500 or never answers, and helpers to build test images with
//! `umoci` and push them with `skopeo`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

use crate::{bin, capture, TempDir};

/// Test user and password for authenticated registries.
pub const USER: &str = "pier";
/// Its password.
pub const PASSWORD: &str = "s3cret-pw";

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How the registry authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Anonymous access.
    None,
    /// htpasswd (HTTP Basic) with [`USER`]/[`PASSWORD`].
    Htpasswd,
    /// Bearer tokens from a [`TokenServer`] that knows [`USER`]/[`PASSWORD`].
    Token,
}

/// A running `docker-registry` on 127.0.0.1, stopped (by pid) on drop.
pub struct Registry {
    child: Child,
    /// Its temporary directory (config, storage, keys).
    pub dir: TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The token server, for [`Auth::Token`].
    pub token: Option<TokenServer>,
}

impl Registry {
    /// Starts a registry with `auth` and waits until it answers.
    pub fn start(auth: Auth) -> Registry {
        let dir = TempDir::new("registry");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        let mut token = None;
        match auth {
            Auth::None => {}
            Auth::Htpasswd => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", USER, PASSWORD])
                    .output()
                    .expect("htpasswd (apache2-utils)");
                assert!(out.status.success());
                std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
                cfg += &format!(
                    "auth:\n  htpasswd:\n    realm: pier-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                );
            }
            Auth::Token => {
                let t = TokenServer::start(dir.path(), 300);
                cfg += &format!(
                    "auth:\n  token:\n    realm: http://{}/token\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    t.host,
                    TokenServer::SERVICE,
                    TokenServer::ISSUER,
                    t.cert.display()
                );
                token = Some(t);
            }
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let r = Registry {
            child,
            dir,
            host,
            token,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&r.host).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not start: {}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    /// The registry process's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The registry's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The file holding blob `digest` (`sha256:...`) in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// `--dest-creds`/`--src-creds` value for skopeo when auth is on.
    pub fn creds(&self) -> Option<String> {
        let has_auth = self.token.is_some() || self.dir.path().join("htpasswd").exists();
        has_auth.then(|| format!("{USER}:{PASSWORD}"))
    }

    /// Copies `src` (a skopeo transport reference, e.g. `oci:DIR:TAG`) to
    /// `REPO:TAG` on this registry.
    pub fn skopeo_push(&self, src: &str, repo_tag: &str) {
        let mut c = Command::new("skopeo");
        c.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(cr) = self.creds() {
            c.args(["--dest-creds", &cr]);
        }
        c.arg(src).arg(format!("docker://{}/{repo_tag}", self.host));
        let out = capture(c);
        assert!(
            out.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token server for the registry's token auth: checks Basic credentials
/// and hands out RS256 JWTs (signed with `openssl`) granting what is asked.
pub struct TokenServer {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The certificate the registry trusts.
    pub cert: PathBuf,
    /// Tokens issued so far.
    pub issued: Arc<AtomicUsize>,
    /// Requests refused (bad or missing credentials).
    pub refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    /// The `service` the registry expects.
    pub const SERVICE: &'static str = "pier-test-registry";
    /// The token issuer the registry expects.
    pub const ISSUER: &'static str = "pier-test-issuer";

    /// Starts on a free port; keys go to `dir`; tokens live `ttl` seconds.
    pub fn start(dir: &Path, ttl: u64) -> TokenServer {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=pier-test-token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let x5c = STANDARD.encode(der);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (s, i, r) = (stop.clone(), issued.clone(), refused.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(600);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        handle_token(conn, &key, &x5c, ttl, &i, &r);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TokenServer {
            host,
            cert,
            issued,
            refused,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads a request's line and headers: (request target, headers lowercased).
fn read_request(conn: &TcpStream) -> Option<(String, Vec<(String, String)>)> {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let target = line.split(' ').nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Some((target, headers))
}

fn respond(mut conn: TcpStream, status: &str, body: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle_token(
    conn: TcpStream,
    key: &Path,
    x5c: &str,
    ttl: u64,
    issued: &AtomicUsize,
    refused: &AtomicUsize,
) {
    let Some((target, headers)) = read_request(&conn) else {
        return;
    };
    let want = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")));
    let authorized = headers
        .iter()
        .any(|(k, v)| k == "authorization" && *v == want);
    if !authorized {
        refused.fetch_add(1, Ordering::Relaxed);
        respond(
            conn,
            "401 Unauthorized",
            r#"{"details":"bad or missing credentials"}"#,
        );
        return;
    }
    let query = target.split_once('?').map(|x| x.1).unwrap_or("");
    let mut access = Vec::new();
    for kv in query.split('&') {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        if k != "scope" {
            continue;
        }
        let v = percent_decode(v);
        let parts: Vec<&str> = v.split(':').collect();
        if parts.len() == 3 {
            let actions: Vec<&str> = parts[2].split(',').collect();
            access
                .push(serde_json::json!({"type": parts[0], "name": parts[1], "actions": actions}));
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let n = issued.fetch_add(1, Ordering::Relaxed);
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": TokenServer::ISSUER, "sub": USER, "aud": TokenServer::SERVICE,
        "exp": now + ttl, "nbf": now - 10, "iat": now, "jti": format!("pier-{now}-{n}"),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let mut sig = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut sig).unwrap();
    child.wait().unwrap();
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig));
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": ttl}).to_string();
    respond(conn, "200 OK", &body);
}

/// What a [`FakeServer`] does with each request.
#[derive(Clone, Copy, Debug)]
pub enum Fake {
    /// Answers every request with 500.
    Error500,
    /// Accepts connections and never answers.
    Hang,
}

/// A misbehaving "registry" on 127.0.0.1, stopped on drop.
pub struct FakeServer {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Requests seen.
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    /// Starts the server.
    pub fn start(kind: Fake) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (s, n) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(300);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        n.fetch_add(1, Ordering::Relaxed);
                        match kind {
                            Fake::Error500 => {
                                let _ = read_request(&conn);
                                respond(
                                    conn,
                                    "500 Internal Server Error",
                                    r#"{"errors":[{"code":"UNKNOWN","message":"test failure"}]}"#,
                                );
                            }
                            Fake::Hang => held.push(conn),
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeServer {
            host,
            requests,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A `pier` store for one test: `pier --root DIR --insecure-registry ...`.
pub struct Pier {
    /// The store directory.
    pub root: TempDir,
    /// The credentials file.
    pub auth_file: PathBuf,
    /// Registries reached over plain HTTP.
    pub insecure: Vec<String>,
}

impl Pier {
    /// A fresh store.
    pub fn new() -> Pier {
        crate::require_root();
        let root = TempDir::new("pier");
        let auth_file = root.path().join("auth.json");
        Pier {
            root,
            auth_file,
            insecure: Vec::new(),
        }
    }

    /// Adds an insecure registry.
    pub fn insecure(mut self, host: &str) -> Pier {
        self.insecure.push(host.to_string());
        self
    }

    /// The store root (inside the temp dir).
    pub fn store(&self) -> PathBuf {
        self.root.path().join("store")
    }

    /// The command `pier --root ... ARGS`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("pier"));
        c.arg("--root")
            .arg(self.store())
            .arg("--auth-file")
            .arg(&self.auth_file);
        for h in &self.insecure {
            c.args(["--insecure-registry", h]);
        }
        c.args(args);
        c
    }

    /// Runs pier: (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = capture(self.cmd(args));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs pier and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "pier {args:?} failed: {err}");
        out
    }

    /// Runs pier and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(!ok, "pier {args:?} succeeded: {out}");
        err
    }

    /// `names.json` of the store (empty string if missing).
    pub fn names(&self) -> String {
        std::fs::read_to_string(self.store().join("names.json")).unwrap_or_default()
    }

    /// Entries of a store subdirectory (e.g. `tmp`, `blobs/sha256`).
    pub fn entries(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.store().join(sub))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Default for Pier {
    fn default() -> Self {
        Pier::new()
    }
}

/// Builds an OCI image layout at `layout` with tag `tag` using umoci: layer
/// 1 is a busybox rootfs with files of every kind; layer 2 deletes a file
/// and a directory's contents and adds more (so it has whiteouts).
pub fn build_test_image(layout: &Path, tag: &str) {
    let work = layout.with_extension("bundle");
    let run = |args: &[&str]| {
        let out = Command::new("umoci").args(args).output().expect("umoci");
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let image = format!("{}:{tag}", layout.display());
    if !layout.join("oci-layout").exists() {
        run(&["init", "--layout", layout.to_str().unwrap()]);
    }
    run(&["new", "--image", &image]);
    run(&["unpack", "--image", &image, work.to_str().unwrap()]);
    let rootfs = work.join("rootfs");
    crate::busybox_rootfs(&rootfs);
    let script = r#"
        set -e
        mkdir -p etc/app/sub opt/gone usr/share/doc
        echo hello > etc/hello
        printf 'config\n' > etc/app/app.conf
        echo sub > etc/app/sub/file
        echo bye > opt/gone/old
        echo doomed > etc/doomed
        head -c 300000 /dev/urandom > usr/share/doc/random.bin
        ln etc/hello etc/hello.hardlink
        ln -s ../etc/hello usr/hello.link
        mkfifo usr/fifo
        chown 1000:1000 etc/app/app.conf
        chmod 4755 etc/app/sub/file
        chmod 0700 opt
        chown 33:44 usr/share/doc
        mknod dev-null c 1 3
    "#;
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(&rootfs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --refresh-bundle: the next repack adds a layer on top of this one.
    run(&[
        "repack",
        "--refresh-bundle",
        "--image",
        &image,
        work.to_str().unwrap(),
    ]);
    let script2 = r#"
        set -e
        rm etc/doomed
        rm -rf opt/gone/*
        echo new > opt/gone/fresh
        echo layer2 > etc/layer2
        chmod 0640 etc/hello
    "#;
    let out = Command::new("sh")
        .args(["-c", script2])
        .current_dir(&rootfs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(&["repack", "--image", &image, work.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&work);
}

/// A listing of a tree for comparisons: one line per entry with its type,
/// mode, owner, and size and sha256 (files), target (symlinks) or device
/// numbers. Times are left out.
pub fn tree_listing(root: &Path) -> String {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut lines = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let p = root.join(&rel);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let what = if ft.is_dir() {
            let mut kids: Vec<_> = std::fs::read_dir(&p)
                .unwrap()
                .flatten()
                .map(|e| rel.join(e.file_name()))
                .collect();
            kids.sort();
            stack.extend(kids.into_iter().rev());
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("link -> {}", std::fs::read_link(&p).unwrap().display())
        } else if ft.is_file() {
            let out = Command::new("sha256sum").arg(&p).output().unwrap();
            let sum = String::from_utf8_lossy(&out.stdout)
                .split(' ')
                .next()
                .unwrap_or("")
                .to_string();
            format!("file {} {sum}", m.len())
        } else if ft.is_char_device() || ft.is_block_device() {
            format!("dev {:x}", m.rdev())
        } else if ft.is_fifo() {
            "fifo".to_string()
        } else {
            "other".to_string()
        };
        lines.push(format!(
            "/{} {:o} {}:{} {what}",
            rel.display(),
            m.mode() & 0o7777,
            m.uid(),
            m.gid()
        ));
    }
    lines.join("\n")
}

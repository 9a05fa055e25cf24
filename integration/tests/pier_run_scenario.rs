//! The end-to-end scenario of the `pier build` / `pier run` issue: a web
//! app built from a Dockerfile (WORKDIR, COPY of a requirements file, RUN,
//! COPY of the rest, CMD), run detached with a published port, reached with
//! `curl` on 127.0.0.1, its request visible in `pier logs`, then stopped
//! and removed with nothing left (mount, cgroup, veth, netns, shim, proxy,
//! state).
//!
//! Two variants: busybox `httpd` (fast), and Python's `http.server` on a
//! Debian base made with `debootstrap --variant=minbase --include=python3`
//! and `pier import`ed. The debootstrap root is cached as a tar under
//! `/var/cache/berth-test` (made on first use, under a lock, from Debian's
//! mirror; about two minutes).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_integration::pier_env::PierEnv;
use berth_integration::registry::free_port;

/// `curl -sf http://127.0.0.1:PORT/`, retried until it answers.
fn curl(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .expect("curl");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(Instant::now() < deadline, "no answer on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `pier logs` shows `needle` (on stdout or stderr: like
/// `docker logs`, pier keeps the container's two streams apart).
fn logs_show(p: &PierEnv, c: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = p.run(&["logs", c]);
        assert!(o.status.success());
        let l = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if l.contains(needle) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "logs never showed {needle:?}: {l}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Builds `my-app` from `ctx`, runs it with `-p PUBLISH`, checks the page
/// and the log, stops and removes it, checks nothing is left.
fn scenario(p: &PierEnv, ctx: &Path, publish: &str, port: u16, page: &str, log_line: &str) {
    let out = p.ok(&["build", "-t", "my-app", ctx.to_str().unwrap()]);
    assert!(
        out.contains("Successfully tagged docker.io/library/my-app:latest"),
        "{out}"
    );
    // A rebuild runs nothing.
    let again = p.ok(&["build", "-t", "my-app", ctx.to_str().unwrap()]);
    assert!(!again.contains("Running in"), "{again}");
    let id = p.run_detached(&["-p", publish, "my-app"]);
    assert_eq!(curl(port), page);
    logs_show(p, &id, log_line);
    p.ok(&["stop", &id]);
    p.ok(&["rm", &id]);
    assert!(p.ok(&["ps", "-a", "-q"]).is_empty());
    p.assert_clean();
}

#[test]
fn busybox_httpd_app_builds_runs_and_cleans_up() {
    let p = PierEnv::new();
    p.busybox_image("busybox-base:1");
    let ctx = p.context(
        "app",
        &[
            ("requirements.txt", ""),
            ("index.html", "hello from my-app\n"),
            (
                "Dockerfile",
                "FROM busybox-base:1\nWORKDIR /app\nCOPY requirements.txt .\n\
                 RUN test ! -s requirements.txt && echo no requirements\nCOPY . .\n\
                 STOPSIGNAL SIGKILL\nCMD [\"httpd\", \"-f\", \"-vv\", \"-p\", \"8000\", \"-h\", \"/app\"]\n",
            ),
        ],
    );
    let port = free_port();
    scenario(
        &p,
        &ctx,
        &format!("127.0.0.1:{port}:8000"),
        port,
        "hello from my-app\n",
        "url:/",
    );
}

const APP_PY: &str = r#"import http.server

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from python\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
"#;

/// The cached python base rootfs tar, made with debootstrap if missing.
fn python_base_tar() -> PathBuf {
    let cache = Path::new("/var/cache/berth-test");
    std::fs::create_dir_all(cache).unwrap();
    let tar = cache.join("bookworm-minbase-python3.tar");
    let _lock = berth_lock(&cache.join("python-base.lock"));
    if tar.exists() {
        return tar;
    }
    let tmp = cache.join(format!("python-rootfs.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "--include=python3", "bookworm"])
        .arg(&tmp)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("debootstrap (apt-get install debootstrap)");
    assert!(
        out.status.success(),
        "debootstrap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The downloaded packages are not part of the image.
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "rm -rf {0}/var/cache/apt/archives/*.deb {0}/var/lib/apt/lists/*",
            tmp.display()
        ))
        .status();
    let part = tar.with_extension("tar.part");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&tmp)
        .args(["--numeric-owner", "-cf"])
        .arg(&part)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::rename(&part, &tar).unwrap();
    let _ = std::fs::remove_dir_all(&tmp);
    tar
}

/// An exclusive flock held while the returned file lives.
fn berth_lock(p: &Path) -> std::fs::File {
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)
        .unwrap();
    // SAFETY: flock on an fd we own.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) },
        0
    );
    f
}

#[test]
fn python_app_builds_runs_and_cleans_up() {
    let tar = python_base_tar();
    let p = PierEnv::new();
    p.ok(&["import", tar.to_str().unwrap(), "python-base:bookworm"]);
    // The Dockerfile of the issue. The base has no pip (minbase +
    // python3), so requirements.txt is empty and the RUN step checks that
    // when pip is absent.
    let ctx = p.context(
        "app",
        &[
            ("requirements.txt", ""),
            ("app.py", APP_PY),
            (
                "Dockerfile",
                "FROM python-base:bookworm\nWORKDIR /app\nCOPY requirements.txt .\n\
                 RUN if command -v pip >/dev/null; then pip install -r requirements.txt; else test ! -s requirements.txt; fi\n\
                 COPY . .\nCMD [\"python3\", \"app.py\"]\n",
            ),
        ],
    );
    // `-p 8000:8000` as in the issue when 8000 is free, else another port.
    let (publish, port) = if std::net::TcpListener::bind("0.0.0.0:8000").is_ok() {
        ("8000:8000".to_string(), 8000)
    } else {
        let port = free_port();
        (format!("127.0.0.1:{port}:8000"), port)
    };
    scenario(
        &p,
        &ctx,
        &publish,
        port,
        "hello from python\n",
        "\"GET / HTTP/1.1\" 200",
    );
}

//! Helpers of the berth-shim tests: a shim holding one container of one of
//! the three runtimes (berth, Debian's runc, Debian's crun), a client of its
//! control protocol, and readers of its log formats.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{
    bin, capture, cgroup_dirs, require_root, unique_id, Bundle, TempDir, TEST_CGROUP_PARENT,
};

/// A runc-compatible runtime under the shim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// berth from this workspace.
    Berth,
    /// Debian's runc.
    Runc,
    /// Debian's crun, through a wrapper that hides the cgroup2 mount it
    /// refuses on this hybrid host (see HOST-NOTES.md).
    Crun,
}

/// A shim test: container ID, runtime, its `--root`, the shim's state dir and
/// log; on drop the container is force-deleted, the shim reaped or killed,
/// and the cgroup removed.
pub struct ShimTest {
    /// Container ID.
    pub id: String,
    /// The runtime.
    pub runtime: Runtime,
    dir: TempDir,
}

impl ShimTest {
    /// A new ID and directories; sets the bundle's cgroupsPath to
    /// `TEST_CGROUP_PARENT/ID` and writes its config.
    pub fn new(prefix: &str, runtime: Runtime, bundle: &mut Bundle) -> ShimTest {
        require_root();
        let id = unique_id(prefix);
        bundle.config["linux"]["cgroupsPath"] = json!(format!("{TEST_CGROUP_PARENT}/{id}"));
        bundle.write();
        let dir = TempDir::new("shim");
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        if runtime == Runtime::Crun {
            let w = dir.path().join("crun-wrapper");
            std::fs::write(
                &w,
                "#!/bin/sh\nexec unshare -m --propagation private sh -c \
                 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun \"$@\"' sh \"$@\"\n",
            )
            .unwrap();
            std::fs::set_permissions(&w, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        ShimTest { id, runtime, dir }
    }

    /// The runtime binary the shim is given.
    pub fn runtime_path(&self) -> PathBuf {
        match self.runtime {
            Runtime::Berth => bin("berth"),
            Runtime::Runc => PathBuf::from("/usr/sbin/runc"),
            Runtime::Crun => self.dir.path().join("crun-wrapper"),
        }
    }

    /// The runtime's `--root`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The shim's state directory (made by the shim).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A path for the container log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("ctr.log")
    }

    /// A scratch path in the test's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `berth-shim --runtime R --runtime-arg --root --runtime-arg ROOT
    /// --bundle B --id ID --state-dir S EXTRA...`.
    pub fn shim_cmd(&self, bundle: &Bundle, extra: &[&str]) -> Command {
        let mut c = Command::new(bin("berth-shim"));
        c.arg("--runtime")
            .arg(self.runtime_path())
            .arg("--runtime-arg=--root")
            .arg("--runtime-arg")
            .arg(self.root())
            .arg("--bundle")
            .arg(bundle.path())
            .arg("--id")
            .arg(&self.id)
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(extra);
        c
    }

    /// Starts the shim (it daemonizes) and returns the caller's result.
    pub fn start(&self, bundle: &Bundle, extra: &[&str]) -> Output {
        capture(self.shim_cmd(bundle, extra))
    }

    /// Starts the shim and asserts that it reported success.
    pub fn start_ok(&self, bundle: &Bundle, extra: &[&str]) {
        let out = self.start(bundle, extra);
        assert!(
            out.status.success(),
            "berth-shim failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `berth-shim ctl --state-dir S ARGS...`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut c = Command::new(bin("berth-shim"));
        c.arg("ctl")
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(args);
        capture(c)
    }

    /// `ctl state` parsed.
    pub fn ctl_state(&self) -> Value {
        let out = self.ctl(&["state"]);
        assert!(
            out.status.success(),
            "ctl state: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("state JSON")
    }

    /// `RUNTIME --root ROOT ARGS...`.
    pub fn runtime_cmd(&self, args: &[&str]) -> Output {
        let mut c = Command::new(self.runtime_path());
        c.arg("--root").arg(self.root()).args(args);
        capture(c)
    }

    /// The runtime's status of the container (`RUNTIME state`), or None when
    /// it does not know it.
    pub fn runtime_status(&self) -> Option<String> {
        let out = self.runtime_cmd(&["state", &self.id]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["status"].as_str().map(str::to_string)
    }

    /// A connection to the control socket.
    pub fn connect(&self) -> Client {
        let sock =
            UnixStream::connect(self.state_dir().join("shim.sock")).expect("connect to shim.sock");
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Client {
            sock,
            buf: Vec::new(),
        }
    }

    /// One request on a new connection; the answer.
    pub fn request(&self, req: Value) -> Value {
        self.connect().request(&req)
    }

    /// The shim's pid from its pid file.
    pub fn shim_pid(&self) -> i32 {
        std::fs::read_to_string(self.state_dir().join("shim.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// The container's pid from the runtime's pid file.
    pub fn container_pid(&self) -> i32 {
        std::fs::read_to_string(self.state_dir().join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Waits (up to `secs`) for the exit file and returns it.
    pub fn wait_exit_file(&self, secs: u64) -> Value {
        let p = self.state_dir().join("exit.json");
        wait_until(secs, || p.exists());
        serde_json::from_slice(&std::fs::read(p).unwrap()).expect("exit JSON")
    }

    /// Waits (up to `secs`) until the shim process is gone.
    pub fn wait_shim_gone(&self, pid: i32, secs: u64) {
        wait_until(secs, || !alive(pid));
    }
}

impl Drop for ShimTest {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.state_dir().join("shim.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        let _ = self.runtime_cmd(&["delete", "--force", &self.id]);
        if let Some(pid) = pid {
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(pid) && is_shim(pid) {
                // SAFETY: kill(2) of the shim this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for d in cgroup_dirs(&format!("{TEST_CGROUP_PARENT}/{}", self.id)) {
            let _ = std::fs::remove_dir(&d);
        }
        for d in cgroup_dirs(TEST_CGROUP_PARENT) {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

/// Defines one test per runtime: `per_runtime!(module, body_fn, [Berth, Runc])`
/// makes `module::Berth` and `module::Runc`, each calling `body_fn` with it.
#[macro_export]
macro_rules! per_runtime {
    ($name:ident, $body:ident, [$($rt:ident),*]) => {
        mod $name {
            $(
                #[test]
                #[allow(non_snake_case)]
                fn $rt() {
                    super::$body(berth_integration::shim::Runtime::$rt);
                }
            )*
        }
    };
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

fn is_shim(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("berth-shim"))
}

/// Polls `cond` every 10 ms for up to `secs` seconds; panics if it never held.
pub fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("condition not met within {secs} s");
}

/// Frame types of the control protocol (see `berth-shim --help`).
pub mod frame {
    /// stdout bytes.
    pub const STDOUT: u8 = 1;
    /// stderr bytes.
    pub const STDERR: u8 = 2;
    /// exit JSON, last frame.
    pub const EXIT: u8 = 3;
    /// dropped notice, last frame.
    pub const DROPPED: u8 = 4;
    /// stdin bytes.
    pub const STDIN: u8 = 16;
    /// close stdin.
    pub const STDIN_CLOSE: u8 = 17;
    /// resize: rows u16, cols u16.
    pub const RESIZE: u8 = 18;
}

/// A connection to a shim's control socket, written independently of the
/// shim's own client to check the documented protocol.
pub struct Client {
    /// The socket.
    pub sock: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    /// Sends a request line and reads the answer line.
    pub fn request(&mut self, req: &Value) -> Value {
        let mut line = serde_json::to_vec(req).unwrap();
        line.push(b'\n');
        self.sock.write_all(&line).unwrap();
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let v = serde_json::from_slice(&self.buf[..i]).expect("answer JSON");
                self.buf.drain(..=i);
                return v;
            }
            let mut chunk = [0u8; 4096];
            let n = self.sock.read(&mut chunk).expect("read answer");
            assert!(n > 0, "the shim closed the connection without answering");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a frame.
    pub fn send_frame(&mut self, kind: u8, payload: &[u8]) {
        let mut f = vec![kind];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        self.sock.write_all(&f).unwrap();
    }

    /// Reads the next frame; None at end of file.
    pub fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() >= 5 + len {
                    let kind = self.buf[0];
                    let payload = self.buf[5..5 + len].to_vec();
                    self.buf.drain(..5 + len);
                    return Some((kind, payload));
                }
            }
            let mut chunk = vec![0u8; 256 * 1024];
            let n = self.sock.read(&mut chunk).expect("read frame");
            if n == 0 {
                assert!(self.buf.is_empty(), "end of file inside a frame");
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads frames to the end: (stdout, stderr, the last frame's type and
    /// payload).
    pub fn collect(&mut self) -> (Vec<u8>, Vec<u8>, Option<(u8, Value)>) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some((kind, payload)) = self.frame() {
            match kind {
                frame::STDOUT => out.extend_from_slice(&payload),
                frame::STDERR => err.extend_from_slice(&payload),
                frame::EXIT | frame::DROPPED => {
                    return (
                        out,
                        err,
                        Some((kind, serde_json::from_slice(&payload).unwrap())),
                    )
                }
                k => panic!("unexpected frame type {k}"),
            }
        }
        (out, err, None)
    }
}

/// One record of a CRI log: (stream, full line?, payload).
pub type CriRecord = (String, bool, Vec<u8>);

/// Parses a CRI log, checking each record's shape.
pub fn cri_records(data: &[u8]) -> Vec<CriRecord> {
    let mut recs = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .expect("record ends with a newline");
        let line = &rest[..end];
        rest = &rest[end + 1..];
        assert!(
            line.len() >= 39,
            "short record {:?}",
            String::from_utf8_lossy(line)
        );
        let ts = std::str::from_utf8(&line[..30]).expect("timestamp");
        assert!(
            ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.',
            "{ts}"
        );
        let rest_line = &line[31..];
        let sp = rest_line.iter().position(|&b| b == b' ').expect("stream");
        let stream = String::from_utf8(rest_line[..sp].to_vec()).unwrap();
        assert!(stream == "stdout" || stream == "stderr", "{stream}");
        let tag = rest_line[sp + 1];
        assert!(tag == b'F' || tag == b'P', "tag {}", tag as char);
        assert_eq!(rest_line[sp + 2], b' ');
        recs.push((stream, tag == b'F', rest_line[sp + 3..].to_vec()));
    }
    recs
}

/// The bytes a stream wrote, rebuilt from CRI records (full lines get their
/// newline back).
pub fn cri_payload(recs: &[CriRecord], stream: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (s, full, p) in recs {
        if s == stream {
            out.extend_from_slice(p);
            if *full {
                out.push(b'\n');
            }
        }
    }
    out
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Deterministic pseudo-random bytes (xorshift), for payloads that a lost,
/// repeated or reordered piece would change.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes `path` executable with `text`.
pub fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

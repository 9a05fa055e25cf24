//! berth-shim: the output pipeline (log file, attached clients, flow
//! control), log formats and rotation, stdin and terminals.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use berth_integration::shim::{
    cri_payload, cri_records, frame, pseudo_random, rss_kib, wait_until, Client, Runtime, ShimTest,
};
use berth_integration::Bundle;
use serde_json::{json, Value};

/// The stream the flood container writes: for each block `block N\n` and
/// the seed.
struct Expected {
    seed: Vec<u8>,
    blocks: usize,
    block: usize,
    off: usize,
    total: u64,
}

impl Expected {
    fn new(seed: &[u8], blocks: usize) -> Expected {
        Expected {
            seed: seed.to_vec(),
            blocks,
            block: 0,
            off: 0,
            total: 0,
        }
    }

    /// Checks that `data` continues the stream.
    fn check(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            assert!(
                self.block < self.blocks,
                "more output than written at byte {}",
                self.total
            );
            let header = format!("block {}\n", self.block);
            let hl = header.len();
            let part: &[u8] = if self.off < hl {
                &header.as_bytes()[self.off..]
            } else {
                &self.seed[self.off - hl..]
            };
            let n = part.len().min(data.len());
            assert!(
                part[..n] == data[..n],
                "output differs near byte {}",
                self.total
            );
            data = &data[n..];
            self.off += n;
            self.total += n as u64;
            if self.off == hl + self.seed.len() {
                self.block += 1;
                self.off = 0;
            }
        }
    }

    fn complete(&self) -> bool {
        self.block == self.blocks && self.off == 0
    }
}

/// 512 MiB written as fast as the container can, a log file, one client
/// that keeps up and one that stalls: the log and the fast client get every
/// byte in order; the stalled client gets an exact prefix and is told it
/// was dropped; the shim's memory stays bounded (the container is held back
/// instead).
#[test]
fn flood_of_512_mib_loses_no_byte() {
    const BLOCKS: usize = 512;
    // Random bytes with a newline every 4 KiB on average (and lines split
    // across reads): fewer records keep the check fast in a debug build.
    let mut seed = pseudo_random(1 << 20, 0x5eed);
    for (i, byte) in seed.iter_mut().enumerate() {
        if *byte == b'\n' && i % 16 != 0 {
            *byte = b'x';
        }
    }
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 512 ]; do echo \"block $i\"; cat /seed.bin; i=$((i+1)); done",
    ]);
    std::fs::write(b.rootfs().join("seed.bin"), &seed).unwrap();
    let t = ShimTest::new("shfl", Runtime::Berth, &mut b);
    t.start_ok(
        &b,
        &[
            "--log-path",
            t.log_path().to_str().unwrap(),
            "--client-timeout",
            "1500",
        ],
    );

    let mut fast = t.connect();
    assert_eq!(fast.request(&json!({"op": "attach"})), json!({"ok": true}));
    let mut slow = t.connect();
    assert_eq!(slow.request(&json!({"op": "attach"})), json!({"ok": true}));
    let fast_seed = seed.clone();
    let fast_thread = std::thread::spawn(move || {
        let mut exp = Expected::new(&fast_seed, BLOCKS);
        let last = loop {
            let (kind, payload) = fast.frame().expect("stream ends with a frame");
            match kind {
                frame::STDOUT => exp.check(&payload),
                frame::STDERR => panic!("stderr: {}", String::from_utf8_lossy(&payload)),
                _ => break (kind, payload),
            }
        };
        assert!(
            exp.complete(),
            "fast client got {} bytes, then frame {} {}",
            exp.total,
            last.0,
            String::from_utf8_lossy(&last.1)
        );
        last
    });
    let slow_seed = seed.clone();
    let slow_thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(3500));
        let mut exp = Expected::new(&slow_seed, BLOCKS);
        loop {
            let (kind, payload) = slow.frame().expect("stream ends with a frame");
            match kind {
                frame::STDOUT => exp.check(&payload),
                _ => {
                    return (
                        kind,
                        serde_json::from_slice::<Value>(&payload).unwrap(),
                        exp.total,
                    )
                }
            }
        }
    });
    let started = Instant::now();
    assert_eq!(t.request(json!({"op": "start"})), json!({"ok": true}));
    let shim = t.shim_pid();
    let mut max_rss = 0;
    while !t.state_dir().join("exit.json").exists() {
        max_rss = max_rss.max(rss_kib(shim));
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "flood did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let exit = t.wait_exit_file(1);
    assert_eq!(exit["exit_code"], 0, "{exit}");
    eprintln!(
        "flood: {:?} to exit, shim max RSS {max_rss} KiB",
        started.elapsed()
    );
    assert!(
        max_rss < 64 * 1024,
        "the shim buffered too much: {max_rss} KiB"
    );

    let (kind, payload) = fast_thread.join().unwrap();
    assert_eq!(kind, frame::EXIT);
    assert_eq!(serde_json::from_slice::<Value>(&payload).unwrap(), exit);

    let (kind, notice, got) = slow_thread.join().unwrap();
    assert_eq!(
        kind,
        frame::DROPPED,
        "the stalled client is told it was dropped: {notice}"
    );
    assert_eq!(
        notice["stdout_bytes"], got,
        "it was sent exactly what it got"
    );
    assert!(got < (BLOCKS as u64) << 20);

    // The log, read record by record.
    let mut exp = Expected::new(&seed, BLOCKS);
    let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(t.log_path()).unwrap());
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        // `<30-byte timestamp> stdout F payload\n`: fixed offsets.
        assert!(
            line.len() >= 41 && line[29] == b'Z',
            "{:?}",
            String::from_utf8_lossy(&line[..41.min(line.len())])
        );
        assert_eq!(&line[30..38], b" stdout ");
        let full = match line[38] {
            b'F' => true,
            b'P' => false,
            t => panic!("tag {t}"),
        };
        exp.check(&line[40..line.len() - 1]);
        if full {
            exp.check(b"\n");
        }
    }
    assert!(exp.complete(), "log holds {} bytes", exp.total);
}

#[test]
fn rotation_by_size_keeps_the_newest_whole_records() {
    let mut b = Bundle::new(&["sh", "-c", "seq 1 100000"]);
    let t = ShimTest::new("shrt", Runtime::Berth, &mut b);
    let log = t.log_path();
    t.start_ok(
        &b,
        &[
            "--log-path",
            log.to_str().unwrap(),
            "--log-max-size",
            "64K",
            "--log-max-files",
            "2",
            "--start",
        ],
    );
    t.wait_exit_file(20);
    let name = |n: u32| {
        let mut s = log.as_os_str().to_owned();
        s.push(format!(".{n}"));
        std::path::PathBuf::from(s)
    };
    assert!(!name(3).exists(), "only two rotated files are kept");
    let mut kept = Vec::new();
    for p in [name(2), name(1), log.clone()] {
        let data = std::fs::read(&p).unwrap();
        assert!(
            data.len() <= 64 * 1024,
            "{} has {} bytes",
            p.display(),
            data.len()
        );
        assert!(
            data.len() > 60 * 1024 || p == log,
            "{} is full",
            p.display()
        );
        // Every file holds whole records only.
        kept.extend(cri_payload(&cri_records(&data), "stdout"));
    }
    let all: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    let kept = String::from_utf8(kept).unwrap();
    assert!(kept.ends_with("99999\n100000\n"), "the newest data is kept");
    assert!(
        all.ends_with(&kept),
        "the files hold the newest output, in order, without a gap"
    );
}

#[test]
fn reopen_log_follows_an_outside_rotation() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "echo one; while [ ! -e /tmp/go ]; do sleep 0.02; done; echo two",
    ]);
    let t = ShimTest::new("shro", Runtime::Berth, &mut b);
    let log = t.log_path();
    t.start_ok(
        &b,
        &[
            "--log-path",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "--start",
        ],
    );
    wait_until(10, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("one")
    });
    let moved = t.path("ctr.log.old");
    std::fs::rename(&log, &moved).unwrap();
    assert_eq!(t.request(json!({"op": "reopen-log"})), json!({"ok": true}));
    std::fs::write(b.rootfs().join("tmp/go"), "").unwrap();
    t.wait_exit_file(10);
    let parse = |p: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let old = parse(&moved);
    let new = parse(&log);
    assert_eq!(old.len(), 1);
    assert_eq!(old[0]["log"], "one\n");
    assert_eq!(old[0]["stream"], "stdout");
    assert_eq!(old[0]["time"].as_str().unwrap().len(), 30);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["log"], "two\n");
}

#[test]
fn json_log_keeps_partial_lines_and_bytes_that_are_not_utf8() {
    let mut b = Bundle::new(&["sh", "-c", "printf 'a\\nb'; printf '\\377\\n' >&2"]);
    let t = ShimTest::new("shjs", Runtime::Runc, &mut b);
    t.start_ok(
        &b,
        &[
            "--log-path",
            t.log_path().to_str().unwrap(),
            "--log-format",
            "json",
            "--start",
        ],
    );
    t.wait_exit_file(10);
    let recs: Vec<Value> = std::fs::read_to_string(t.log_path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let out: Vec<&Value> = recs.iter().filter(|r| r["stream"] == "stdout").collect();
    let err: Vec<&Value> = recs.iter().filter(|r| r["stream"] == "stderr").collect();
    let text: String = out.iter().map(|r| r["log"].as_str().unwrap()).collect();
    assert_eq!(text, "a\nb");
    assert_eq!(err.len(), 1);
    assert_eq!(err[0]["log_base64"], "/wo=", "0xff 0x0a in base64");
}

#[test]
fn several_attached_clients_share_output_and_stdin_reaches_the_container() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "while read l; do echo \"got $l\"; echo \"err $l\" >&2; done; echo eof",
    ]);
    let t = ShimTest::new("shat", Runtime::Berth, &mut b);
    t.start_ok(
        &b,
        &[
            "--log-path",
            t.log_path().to_str().unwrap(),
            "--stdin",
            "--start",
        ],
    );
    let mut watcher = t.connect();
    assert_eq!(
        watcher.request(&json!({"op": "attach"})),
        json!({"ok": true})
    );
    let mut writer = t.connect();
    assert_eq!(
        writer.request(&json!({"op": "attach", "stdin": true})),
        json!({"ok": true})
    );
    writer.send_frame(frame::STDIN, b"x\ny");
    writer.send_frame(frame::STDIN, b"\n");
    writer.send_frame(frame::STDIN_CLOSE, b"");
    for c in [&mut watcher, &mut writer] {
        let (out, err, last) = c.collect();
        assert_eq!(String::from_utf8(out).unwrap(), "got x\ngot y\neof\n");
        assert_eq!(String::from_utf8(err).unwrap(), "err x\nerr y\n");
        let (kind, exit) = last.unwrap();
        assert_eq!(kind, frame::EXIT);
        assert_eq!(exit["exit_code"], 0);
    }
    let recs = cri_records(&std::fs::read(t.log_path()).unwrap());
    assert_eq!(cri_payload(&recs, "stdout"), b"got x\ngot y\neof\n");

    // Without --stdin, asking for input is refused.
    let mut b = Bundle::new(&["sleep", "1000"]);
    let t = ShimTest::new("shat", Runtime::Berth, &mut b);
    t.start_ok(&b, &["--start"]);
    let v = t.request(json!({"op": "attach", "stdin": true}));
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("--stdin"), "{v}");
}

#[test]
fn terminal_is_held_by_the_shim_and_resized() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "stty size; read x; echo \"x=$x\"; stty size; exit 4",
    ]);
    b.config["process"]["terminal"] = json!(true);
    let t = ShimTest::new("shtt", Runtime::Berth, &mut b);
    t.start_ok(
        &b,
        &["--log-path", t.log_path().to_str().unwrap(), "--terminal"],
    );
    assert_eq!(
        t.request(json!({"op": "resize", "rows": 30, "cols": 100})),
        json!({"ok": true})
    );
    let mut c: Client = t.connect();
    assert_eq!(
        c.request(&json!({"op": "attach", "stdin": true})),
        json!({"ok": true})
    );
    assert_eq!(t.request(json!({"op": "start"})), json!({"ok": true}));
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("30 100") {
        let (kind, p) = c.frame().expect("output");
        assert_eq!(kind, frame::STDOUT, "terminal output is stdout");
        seen.extend(p);
    }
    let mut size = Vec::new();
    size.extend_from_slice(&40u16.to_be_bytes());
    size.extend_from_slice(&120u16.to_be_bytes());
    c.send_frame(frame::RESIZE, &size);
    c.send_frame(frame::STDIN, b"hello\n");
    let (out, _, last) = c.collect();
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("x=hello") && text.contains("40 120"),
        "{text:?}"
    );
    assert_eq!(last.unwrap().1["exit_code"], 4);
    let log = String::from_utf8_lossy(&cri_payload(
        &cri_records(&std::fs::read(t.log_path()).unwrap()),
        "stdout",
    ))
    .into_owned();
    assert!(log.contains("30 100") && log.contains("x=hello"), "{log:?}");
}

/// Unmounts the tmpfs of a test, also when the test fails. Lazily: the
/// shim may still hold the log open while it leaves.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A log on a full disk: the shim keeps the container running and counts
/// the bytes it could not write (`ctl state`, then `shim.log` at the end),
/// instead of dropping them silently.
#[test]
fn log_on_a_full_disk_reports_the_bytes_it_lost() {
    // 200000 lines of `seq`: 1288895 bytes, on a 64 KiB file system.
    const TOTAL: u64 = 1_288_895;
    let mut b = Bundle::new(&["sh", "-c", "seq 1 200000; sleep 1000"]);
    let t = ShimTest::new("shdf", Runtime::Berth, &mut b);
    let dir = berth_integration::TempDir::new("shdf-log");
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let _fs = Tmpfs(dir.path().to_path_buf());
    let log = dir.path().join("ctr.log");
    t.start_ok(&b, &["--log-path", log.to_str().unwrap(), "--start"]);
    let lost = || t.ctl_state()["log_lost_bytes"].as_u64().unwrap_or(0);
    // Everything is read once the total settles: written + lost = TOTAL.
    wait_until(20, || lost() > TOTAL - 64 * 1024);
    // The log holds whole records only (`cri_records` refuses a torn one):
    // a write cut short by ENOSPC is taken back, and the bytes of every
    // failed write are counted, so the two add up to what was written.
    let logged = cri_payload(&cri_records(&std::fs::read(&log).unwrap()), "stdout");
    let lost_now = lost();
    assert_eq!(
        logged.len() as u64 + lost_now,
        TOTAL,
        "logged {} + lost {lost_now}",
        logged.len()
    );
    let out = t.runtime_cmd(&["kill", &t.id, "KILL"]);
    assert!(out.status.success());
    t.wait_exit_file(20);
    let shim_log = std::fs::read_to_string(t.state_dir().join("shim.log")).unwrap();
    assert!(
        shim_log.contains(&format!(
            "{lost_now} bytes of output are missing from the log"
        )),
        "{shim_log}"
    );
}

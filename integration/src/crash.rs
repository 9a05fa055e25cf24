//! Helpers of the crash tests (`crash_*`): the trial count, a seeded random
//! number generator (the seed is printed, and `BERTH_STRESS_SEED` repeats a
//! run), and the processes that killed commands leave behind.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Number of trials: `BERTH_STRESS_TRIALS`, else `default` (the CI size).
pub fn trials(default: usize) -> usize {
    std::env::var("BERTH_STRESS_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (xorshift64*), seeded from
/// `BERTH_STRESS_SEED` or the clock.
pub struct Rng(u64);

impl Rng {
    /// Seeds from `BERTH_STRESS_SEED` or the clock, and prints the seed.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("BERTH_STRESS_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("{test}: seed {seed} (BERTH_STRESS_SEED={seed} repeats this run)");
        Rng::new(seed)
    }

    /// A generator with this seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Makes this process the child subreaper of its descendants: orphans of
/// killed processes come to it (and are found by [`living_children`])
/// instead of going to init.
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
}

/// Living children of this process except `keep` (e.g. a registry the test
/// runs). Reaps the dead ones first.
pub fn living_children(keep: &[i32]) -> Vec<i32> {
    // Reap every exited child except those in `keep` (whose owner waits
    // for them).
    for pid in children() {
        if keep.contains(&pid) {
            continue;
        }
        // SAFETY: waitpid on our own child, without blocking.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    }
    children()
        .into_iter()
        .filter(|p| !keep.contains(p) && crate::shim::alive(*p))
        .collect()
}

/// Children of this process (any state) from /proc.
fn children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut kids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) == Some(me) {
            kids.push(pid);
        }
    }
    kids
}

/// Waits up to `secs` for every child except `keep` to exit; returns those
/// still alive (as "PID: command line").
pub fn wait_children_gone(keep: &[i32], secs: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let kids = living_children(keep);
        if kids.is_empty() {
            return Vec::new();
        }
        if Instant::now() >= deadline {
            return kids.iter().map(|p| describe(*p)).collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILLs what [`living_children`] finds (a failed trial's leftovers, so
/// the next trial starts clean).
pub fn kill_children(keep: &[i32]) {
    for k in living_children(keep) {
        // SAFETY: kill(2) of an orphaned descendant of this test.
        unsafe { libc::kill(k, libc::SIGKILL) };
    }
}

/// "PID: command line".
pub fn describe(pid: i32) -> String {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    format!(
        "{pid}: {}",
        String::from_utf8_lossy(&cmd).replace('\0', " ").trim()
    )
}

/// Waits `delay`, then SIGKILLs `child` (if it is still running) and reaps
/// it. Returns its status and whether the kill came before it exited.
pub fn kill_after(child: &mut Child, delay: Duration) -> (ExitStatus, bool) {
    let deadline = Instant::now() + delay;
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return (st, false);
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
    }
    let _ = child.kill();
    let st = child.wait().expect("wait");
    use std::os::unix::process::ExitStatusExt;
    (st, st.signal() == Some(libc::SIGKILL))
}

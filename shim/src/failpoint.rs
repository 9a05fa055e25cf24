//! Failpoints for crash-safety tests: with `BERTH_SHIM_FAILPOINT=NAME` in
//! the environment, a debug build of the shim kills itself with SIGKILL when
//! it reaches the point called NAME. Release builds compile this to nothing.

/// The points of a shim's startup, in the order they are reached.
pub const POINTS: &[&str] = &[
    // The caller's process: state directory made, not yet forked.
    "shim-after-state-dir",
    // The daemon, right after the fork.
    "shim-after-daemonize",
    // `RUNTIME create` was spawned and is running (at startup; later the
    // same point is `RUNTIME exec` running).
    "shim-during-runtime",
    // The container is created; the shim does not hold it yet.
    "shim-after-create",
    // The shim holds the container (pid read, log open); no socket yet.
    "shim-after-adopt",
    // Started (with --start); shim.pid and shim.json not written yet.
    "shim-after-start",
    // The caller was told the shim is ready.
    "shim-after-ready",
];

/// Kills the process if `BERTH_SHIM_FAILPOINT` names this point (debug
/// builds).
#[inline]
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("BERTH_SHIM_FAILPOINT").is_some_and(|v| v == name) {
        // SAFETY: raising a signal at ourselves.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_point_is_placed_once() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut all = String::new();
        for f in ["shim.rs", "core/create.rs", "core/stdio.rs"] {
            all += &std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
        }
        for p in super::POINTS {
            let call = format!("failpoint::hit(\"{p}\")");
            assert_eq!(all.matches(&call).count(), 1, "{p}");
        }
    }
}

//! Failpoints for crash-safety tests: with `BERTH_FAILPOINT=NAME` in the
//! environment, a debug build of berth kills itself with SIGKILL when it
//! reaches the point called NAME. Release builds compile this to nothing.

/// The points `create` can be killed at, in the order they are reached.
pub const CREATE_POINTS: &[&str] = &[
    "create-after-state-dir",
    "create-after-cgroup",
    "create-after-spawn",
    "create-after-plan",
    "create-in-hooks",
    "create-after-ready",
    "create-after-state",
];

/// Kills the process if `BERTH_FAILPOINT` names this point (debug builds).
#[inline]
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("BERTH_FAILPOINT").is_some_and(|v| v == name) {
        // SAFETY: raising a signal at ourselves.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

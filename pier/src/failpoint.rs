//! Failpoints for crash-safety tests: with `PIER_FAILPOINT=NAME` in the
//! environment, a debug build of pier kills itself with SIGKILL when it
//! reaches the point called NAME (random kills rarely land in the narrow
//! windows these name). Release builds compile this to nothing.

/// The points of `pier pull`, in the order they are reached.
pub const PULL_POINTS: &[&str] = &[
    // A blob is partly written to its temporary file.
    "pull-in-blob",
    // A layer is extracted to its temporary directory, not yet in place.
    "pull-in-unpack",
    // Every blob and layer is in; the name is not written.
    "pull-before-name",
    // The new name index is written to its temporary file, not renamed.
    "names-before-rename",
];

/// The points of `pier build`, in the order they are reached.
pub const BUILD_POINTS: &[&str] = &[
    // A step's overlay is mounted.
    "build-step-mounted",
    // A `RUN` container wrote its first output: it runs.
    "build-run-output",
    // A step's layer blob is written; the layer directory is not in place.
    "build-layer-written",
    // A step's layer is complete; its cache entry is not written.
    "build-before-cache",
    // The image's config and manifest are written; the name is not.
    "build-before-name",
];

/// Kills the process if `PIER_FAILPOINT` names this point (debug builds).
#[inline]
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("PIER_FAILPOINT").is_some_and(|v| v == name) {
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
        for f in [
            "pull.rs",
            "unpack/mod.rs",
            "store/names.rs",
            "build/step.rs",
            "build/mod.rs",
        ] {
            all += &std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
        }
        for p in super::PULL_POINTS.iter().chain(super::BUILD_POINTS) {
            let call = format!("failpoint::hit(\"{p}\")");
            assert_eq!(all.matches(&call).count(), 1, "{p}");
        }
    }
}

//! Leak checks: many `run`/`delete` cycles and many `exec`s leave the
//! caller's descriptors, the host's mounts, the cgroups, zombies and the
//! files under `--root` exactly as they were. `BERTH_STRESS_TRIALS` sets the
//! number of cycles (default 50, as in CI; 1000 for the full run).

use berth_integration::{cgroup_dirs, Bundle, Container, TEST_CGROUP_PARENT};

fn trials() -> usize {
    std::env::var("BERTH_STRESS_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Moves this test process (and the berth processes it starts) into a
/// private mount namespace: mounts made by other tests running at the same
/// time do not show up in it, so the count only moves if berth leaves one.
/// (The test may run in a thread of its own: the namespace is the thread's,
/// hence `/proc/thread-self` below.)
fn private_mounts() {
    // SAFETY: unshare/mount on this single-purpose test process.
    unsafe {
        assert_eq!(
            libc::unshare(libc::CLONE_NEWNS),
            0,
            "unshare: {}",
            std::io::Error::last_os_error()
        );
        let r = libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        );
        assert_eq!(r, 0, "make / private: {}", std::io::Error::last_os_error());
    }
}

/// The mounts of this namespace, one mountinfo line each (the line starts
/// with the mount's unique id, so a mount made again is a new line).
fn mounts() -> std::collections::BTreeSet<String> {
    std::fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Mounts present now that were not there `before`. Only an added mount can
/// be berth's leak; a mount may also disappear from this private copy of the
/// table, when another test removes the directory it sits on in its own
/// namespace (the kernel detaches mounts on a deleted mountpoint in every
/// namespace), so the count alone is not a sound check.
fn new_mounts(before: &std::collections::BTreeSet<String>) -> Vec<String> {
    mounts().difference(before).cloned().collect()
}

fn zombie_children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|s| {
            let rest = &s[s.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            f[0] == "Z" && f[1] == me
        })
        .count()
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn run_delete_cycles_leak_nothing() {
    private_mounts();
    let mut b = Bundle::new(&["true"]);
    let c = Container::new("leak", &mut b);
    let bundle = b.path().to_str().unwrap().to_string();
    // One cycle first, so lazily created things (the root, its .empty) exist.
    c.ok(&["run", "-b", &bundle, &c.id]);
    let (fds, before, root_files) = (open_fds(), mounts(), files_under(c.root.path()));
    for _ in 0..trials() {
        c.ok(&["run", "-b", &bundle, &c.id]);
    }
    assert_eq!(open_fds(), fds, "descriptors of the caller");
    assert_eq!(new_mounts(&before), Vec::<String>::new(), "mounts left");
    assert_eq!(files_under(c.root.path()), root_files, "files under --root");
    assert_eq!(zombie_children(), 0, "zombies");
    assert!(c.cgroup_dirs().is_empty(), "cgroup left");
}

#[test]
fn execs_leak_nothing() {
    private_mounts();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = Container::new("leakx", &mut b);
    c.ok(&["run", "-d", "-b", b.path().to_str().unwrap(), &c.id]);
    c.ok(&["exec", &c.id, "true"]);
    let procs = |c: &Container| -> usize {
        cgroup_dirs(&format!("{TEST_CGROUP_PARENT}/{}", c.id))
            .iter()
            .find(|d| d.to_string_lossy().contains("/pids/"))
            .map(|d| {
                std::fs::read_to_string(d.join("cgroup.procs"))
                    .unwrap()
                    .lines()
                    .count()
            })
            .unwrap_or(0)
    };
    let (fds, before, root_files, nprocs) =
        (open_fds(), mounts(), files_under(c.root.path()), procs(&c));
    let init = c.state()["pid"].as_i64().unwrap();
    let init_fds = std::fs::read_dir(format!("/proc/{init}/fd"))
        .unwrap()
        .count();
    for _ in 0..trials() {
        c.ok(&["exec", &c.id, "true"]);
    }
    assert_eq!(open_fds(), fds, "descriptors of the caller");
    assert_eq!(new_mounts(&before), Vec::<String>::new(), "mounts left");
    assert_eq!(files_under(c.root.path()), root_files, "files under --root");
    assert_eq!(procs(&c), nprocs, "processes in the container's cgroup");
    assert_eq!(
        std::fs::read_dir(format!("/proc/{init}/fd"))
            .unwrap()
            .count(),
        init_fds,
        "descriptors of the container's init"
    );
    assert_eq!(zombie_children(), 0, "zombies");
}

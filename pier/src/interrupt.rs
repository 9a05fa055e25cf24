//! Ctrl-C and friends during long commands (`pier build`, foreground
//! `pier run`): SIGINT, SIGTERM and SIGHUP set a flag instead of killing
//! pier, so the command stops its container and removes what it made
//! before it exits (an interrupted build leaves no half-made image,
//! container or mount).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static LAST: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    LAST.store(sig, Ordering::SeqCst);
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the handlers (no `SA_RESTART`: blocking reads return `EINTR`
/// so loops notice at once).
pub fn install() {
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to atomics (async-signal-safe).
        let _ = unsafe { sigaction(s, &act) };
        set.add(s);
    }
    // A parent may have started us with these blocked (some test runners
    // and supervisors do); they must reach the handler.
    let _ = set.thread_unblock();
}

/// True once a signal arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Takes the last signal received (0 if none) and clears the flag.
pub fn take() -> i32 {
    INTERRUPTED.store(false, Ordering::SeqCst);
    LAST.swap(0, Ordering::SeqCst)
}

/// An error if interrupted.
pub fn check() -> anyhow::Result<()> {
    if interrupted() {
        anyhow::bail!("interrupted");
    }
    Ok(())
}

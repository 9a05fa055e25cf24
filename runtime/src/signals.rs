//! Signal names as `kill -l` prints them, parsed the way runc parses them:
//! a number, or a name with or without `SIG`, in any case, including
//! `RTMIN+N` and `RTMAX-N`.

use anyhow::{bail, Result};

/// Names of the standard signals (x86-64 numbering).
pub const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Parses a signal given on the command line.
pub fn parse(s: &str) -> Result<i32> {
    let max = libc::SIGRTMAX();
    if let Ok(n) = s.parse::<i32>() {
        if (1..=max).contains(&n) {
            return Ok(n);
        }
        bail!("invalid signal number {n}");
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = NAMES.iter().find(|(k, _)| *k == name) {
        return Ok(n);
    }
    let rt = |base: i32, off: &str, sign: i32| -> Option<i32> {
        let off: i32 = if off.is_empty() { 0 } else { off.parse().ok()? };
        // Checked: `RTMIN+2147483647` is an error, not an overflow (found by
        // fuzz/fuzz_targets/signals.rs).
        let n = base.checked_add(sign.checked_mul(off)?)?;
        (libc::SIGRTMIN()..=max).contains(&n).then_some(n)
    };
    let found = if let Some(rest) = name.strip_prefix("RTMIN") {
        match rest.strip_prefix('+') {
            Some(off) => rt(libc::SIGRTMIN(), off, 1),
            None if rest.is_empty() => rt(libc::SIGRTMIN(), "", 1),
            None => None,
        }
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        match rest.strip_prefix('-') {
            Some(off) => rt(max, off, -1),
            None if rest.is_empty() => rt(max, "", 1),
            None => None,
        }
    } else {
        None
    };
    match found {
        Some(n) => Ok(n),
        None => bail!("unknown signal {s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(parse("TERM").unwrap(), 15);
        assert_eq!(parse("SIGTERM").unwrap(), 15);
        assert_eq!(parse("sigkill").unwrap(), 9);
        assert_eq!(parse("15").unwrap(), 15);
        assert_eq!(parse("RTMIN").unwrap(), libc::SIGRTMIN());
        assert_eq!(parse("SIGRTMIN+3").unwrap(), libc::SIGRTMIN() + 3);
        assert_eq!(parse("RTMAX-1").unwrap(), libc::SIGRTMAX() - 1);
        for bad in [
            "",
            "0",
            "65",
            "FOO",
            "RTMIN+99",
            "-1",
            "RTMIN+2147483647",
            "RTMAX--2147483647",
            "RTMAX--2147483648",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    /// Every name `kill -l` prints is accepted.
    #[test]
    fn all_of_kill_l() {
        let out = std::process::Command::new("sh")
            .args(["-c", "kill -l"])
            .output()
            .unwrap();
        for name in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if name.chars().all(|c| c.is_ascii_digit() || c == ')') {
                continue;
            }
            parse(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

//! `berth::signals::parse` (the signal argument of `berth kill`): never
//! panics, accepts only real signal numbers, and what it accepts reads the
//! same under its other spellings (lower case, with or without `SIG`, the
//! number, the canonical name).
#![no_main]

use berth::signals::{parse, NAMES};
use libfuzzer_sys::fuzz_target;

/// The name `kill -l` would print for `n` (without `SIG`); none for the
/// two real-time signals glibc keeps for itself (32 and 33).
fn canonical(n: i32) -> Option<String> {
    if let Some((name, _)) = NAMES.iter().find(|(_, v)| *v == n) {
        return Some(name.to_string());
    }
    (n >= libc::SIGRTMIN()).then(|| format!("RTMIN+{}", n - libc::SIGRTMIN()))
}

fuzz_target!(|s: &str| {
    let Ok(n) = parse(s) else { return };
    assert!(
        (1..=libc::SIGRTMAX()).contains(&n),
        "{s:?} parsed as {n}, not a signal"
    );
    assert_eq!(parse(&n.to_string()).unwrap(), n, "{s:?}: number of {n}");
    if let Some(name) = canonical(n) {
        assert_eq!(parse(&name).unwrap(), n, "{s:?}: name of {n}");
        assert_eq!(parse(&format!("SIG{name}")).unwrap(), n, "{s:?}: SIG name");
    } else {
        assert!(
            s.trim_start_matches('+')
                .bytes()
                .all(|b| b.is_ascii_digit()),
            "{s:?} names {n}"
        );
    }
    if s.parse::<i32>().is_err() {
        // A name: case does not matter, and `SIG` may be added once.
        assert_eq!(parse(&s.to_ascii_lowercase()).unwrap(), n, "{s:?} lower");
        assert_eq!(parse(&s.to_ascii_uppercase()).unwrap(), n, "{s:?} upper");
        if !s.to_ascii_uppercase().starts_with("SIG") {
            assert_eq!(parse(&format!("sig{s}")).unwrap(), n, "{s:?} with sig");
        }
    }
});

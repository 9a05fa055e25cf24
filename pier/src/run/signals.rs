//! Signal names and numbers (`STOPSIGNAL`, `pier kill -s`, `pier stop`).

use anyhow::{bail, Result};
use nix::sys::signal::Signal;

/// Parses `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| anyhow::anyhow!("unknown signal {s:?}"));
    }
    let up = s.to_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    match name.parse::<Signal>() {
        Ok(sig) => Ok(sig),
        Err(_) => bail!("unknown signal {s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse("sigkill").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("2").unwrap(), Signal::SIGINT);
        assert!(parse("NOPE").is_err());
        assert!(parse("999").is_err());
    }
}

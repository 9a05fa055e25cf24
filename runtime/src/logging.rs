//! runc-compatible logging for `--log FILE` and `--log-format text|json`.
//!
//! containerd's runc shim reads the last `"level":"error"` line of the JSON log
//! to report why a command failed, so every fatal error is written there as one
//! JSON object per line: `{"level":"error","msg":"...","time":"..."}`. The text
//! format mirrors logrus: `time="..." level=error msg="..."`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result};

/// Log line format selected by `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// logrus-style `key=value` text.
    Text,
    /// One JSON object per line.
    Json,
}

struct Logger {
    file: Option<File>,
    format: Format,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up the process-wide logger. Without `path` only errors are printed
/// (to stderr, by the caller); with it every record goes to the file.
pub fn init(path: Option<&Path>, format: Format, debug: bool) -> Result<()> {
    let file = match path {
        Some(p) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .custom_flags(libc::O_CLOEXEC)
                .mode(0o644)
                .open(p)
                .with_context(|| format!("open log file {}", p.display()))?,
        ),
        None => None,
    };
    let _ = LOGGER.set(Logger {
        file,
        format,
        debug,
    });
    Ok(())
}

/// True when `--debug` was given.
pub fn debug_enabled() -> bool {
    LOGGER.get().is_some_and(|l| l.debug)
}

/// Writes one record at `level` ("debug", "info", "warning", "error").
pub fn log(level: &str, msg: &str) {
    let Some(logger) = LOGGER.get() else { return };
    if level == "debug" && !logger.debug {
        return;
    }
    let line = format_line(logger.format, level, msg, &now_rfc3339());
    match &logger.file {
        Some(f) => {
            let _ = (&*f).write_all(line.as_bytes());
        }
        None if logger.debug => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        None => {}
    }
}

/// Logs at debug level, formatting lazily.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::logging::debug_enabled() {
            $crate::logging::log("debug", &format!($($arg)*));
        }
    };
}

/// Logs a warning.
pub fn warn(msg: &str) {
    log("warning", msg);
}

fn format_line(format: Format, level: &str, msg: &str, time: &str) -> String {
    match format {
        Format::Json => {
            let v = serde_json::json!({ "level": level, "msg": msg, "time": time });
            format!("{v}\n")
        }
        Format::Text => {
            let quoted = serde_json::to_string(msg).unwrap_or_default();
            format!("time=\"{time}\" level={level} msg={quoted}\n")
        }
    }
}

/// The current time as RFC 3339 with nanoseconds, in UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_level_msg_time() {
        let line = format_line(Format::Json, "error", "boom \"x\"", "T");
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "boom \"x\"");
        assert_eq!(v["time"], "T");
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
    }

    #[test]
    fn text_line_is_logrus_like() {
        let line = format_line(Format::Text, "error", "a b", "T");
        assert_eq!(line, "time=\"T\" level=error msg=\"a b\"\n");
    }
}

//! Reading and writing cgroup files, with errors that name the file.

use std::fmt::Display;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `value` to the cgroup file `path` in one `write(2)` (the file must
/// exist: cgroup files are never created).
pub fn write_str(path: &Path, value: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    f.write_all(value.as_bytes())
        .with_context(|| format!("write {value:?} to {}", path.display()))
}

/// [`write_str`] of a number or other displayable value.
pub fn write(path: &Path, value: impl Display) -> Result<()> {
    write_str(path, &value.to_string())
}

/// Reads a cgroup file.
pub fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
}

//! `berth ps`: the container's processes, as a JSON list of pids or as the
//! host's `ps` table (default `ps -ef`) filtered to the container's cgroup.

use std::collections::HashSet;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Global;
use crate::cgroups::Cgroup;
use crate::container::state::ContainerDir;

/// Arguments of `ps`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// Container ID.
    id: String,
    /// Options for ps(1) (table format only; default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

/// Runs `ps`.
pub fn run(g: &Global, a: Args) -> Result<()> {
    let state = ContainerDir::open(&g.root, &a.id)?.load()?;
    let pids = Cgroup::open(&state.cgroup_path)?.pids()?;
    if a.format == "json" {
        if !a.ps_args.is_empty() {
            bail!("ps options cannot be used with --format json");
        }
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args = if a.ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        a.ps_args
    };
    let out = Command::new("ps")
        .args(&args)
        .output()
        .context("run ps(1)")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    print!(
        "{}",
        filter_table(&String::from_utf8_lossy(&out.stdout), &pids)?
    );
    Ok(())
}

/// Keeps the header and the lines whose PID column is one of `pids`.
fn filter_table(table: &str, pids: &[i32]) -> Result<String> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|f| f == "PID")
        .context("ps output has no PID column")?;
    let wanted: HashSet<i32> = pids.iter().copied().collect();
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| wanted.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_pid_column() {
        let t = "UID PID PPID CMD\nroot 1 0 init\nroot 42 1 sleep\nroot 43 42 sh\n";
        assert_eq!(
            filter_table(t, &[42]).unwrap(),
            "UID PID PPID CMD\nroot 42 1 sleep\n"
        );
        assert!(filter_table("USER CMD\n", &[1]).is_err());
    }
}

//! `berth list`.

use anyhow::Result;

use super::Global;
use crate::container::{self, state::list_ids, state::ContainerDir};

/// Output format of `list`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ListFormat {
    /// Aligned columns.
    Table,
    /// A JSON array of state objects.
    Json,
}

/// Arguments of `list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "table")]
    format: ListFormat,
    /// Print only the IDs.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// Runs `list`.
pub fn run(g: &Global, a: Args) -> Result<()> {
    let mut views = Vec::new();
    for id in list_ids(&g.root)? {
        // A container deleted meanwhile is simply not listed.
        let Ok(dir) = ContainerDir::open_unlocked(&g.root, &id) else {
            continue;
        };
        let Ok(state) = dir.load() else { continue };
        views.push(container::view(&dir, &state));
    }
    if a.quiet {
        for v in &views {
            println!("{}", v.id);
        }
        return Ok(());
    }
    match a.format {
        ListFormat::Json => println!("{}", serde_json::to_string(&views)?),
        ListFormat::Table => {
            let rows: Vec<[String; 6]> = views
                .iter()
                .map(|v| {
                    [
                        v.id.clone(),
                        v.pid.to_string(),
                        v.status.clone(),
                        v.bundle.clone(),
                        v.created.clone(),
                        v.owner.clone(),
                    ]
                })
                .collect();
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            let mut widths = header.clone().map(|h| h.len());
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.len());
                }
            }
            for r in std::iter::once(&header).chain(&rows) {
                let line: Vec<String> = r
                    .iter()
                    .zip(widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                println!("{}", line.join("   ").trim_end());
            }
        }
    }
    Ok(())
}

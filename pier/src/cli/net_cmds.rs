//! `pier network create|ls|rm`.

use anyhow::Result;
use clap::{Args, Subcommand};

use super::Cli;
use crate::net::Networks;

/// `pier network`.
#[derive(Args, Debug)]
pub struct NetworkArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: NetworkCmd,
}

/// Network subcommands.
#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Define a bridge network.
    Create {
        /// Subnet (default: a free /24 of 10.213.0.0/16, chosen when the
        /// first container joins).
        #[arg(long)]
        subnet: Option<String>,
        /// Name.
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls,
    /// Remove networks (none may have containers).
    #[command(alias = "remove")]
    Rm {
        /// Names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn networks(cli: &Cli) -> Result<Networks> {
    std::fs::create_dir_all(&cli.root)?;
    let root = std::fs::canonicalize(&cli.root)?;
    std::fs::create_dir_all(&cli.runroot)?;
    let runroot = std::fs::canonicalize(&cli.runroot)?;
    Ok(Networks::new(&root, &runroot))
}

pub(super) fn network(cli: &Cli, a: &NetworkArgs) -> Result<()> {
    let n = networks(cli)?;
    match &a.cmd {
        NetworkCmd::Create { subnet, name } => {
            let d = n.create(name, subnet.as_deref())?;
            println!("{}", d.id);
        }
        NetworkCmd::Ls => {
            println!("{:<14} {:<20} {:<8} SUBNET", "NETWORK ID", "NAME", "DRIVER");
            for d in n.list()? {
                let live = n.load_state(&d.name)?.map(|s| s.subnet);
                let subnet = d.subnet.clone().or(live).unwrap_or_else(|| "(auto)".into());
                println!(
                    "{:<14} {:<20} {:<8} {subnet}",
                    &d.id[..12],
                    d.name,
                    "bridge"
                );
            }
            println!("{:<14} {:<20} {:<8}", "host", "host", "host");
            println!("{:<14} {:<20} {:<8}", "none", "none", "null");
        }
        NetworkCmd::Rm { names } => {
            for name in names {
                n.remove(name)?;
                println!("{name}");
            }
        }
    }
    Ok(())
}

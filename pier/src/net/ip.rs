//! iproute2 (`ip`) for links, addresses and network namespaces. Several
//! commands go through one `ip -batch -` process.
//!
//! Why `ip` and not a netlink crate: iproute2 is on every machine that runs
//! containers (and in `scripts/setup`), each call is a few milliseconds,
//! what pier does is exactly what an operator would type to check it, and
//! the Rust netlink crates are either async (`rtnetlink`, tokio) or too
//! low-level to be shorter than this.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

fn ip() -> Command {
    Command::new("ip")
}

/// Runs `ip ARGS` and returns stdout.
pub fn run(args: &[&str]) -> Result<String> {
    let out = ip()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run ip (apt-get install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs several commands through one `ip [-n NETNS] -batch -`.
pub fn batch(netns: Option<&str>, cmds: &[String]) -> Result<()> {
    let mut c = ip();
    if let Some(n) = netns {
        c.args(["-n", n]);
    }
    c.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().context("run ip (apt-get install iproute2)")?;
    {
        let mut stdin = child.stdin.take().expect("piped");
        for cmd in cmds {
            writeln!(stdin, "{cmd}").context("write to ip")?;
        }
    }
    let out = child.wait_with_output().context("wait for ip")?;
    if !out.status.success() {
        bail!(
            "ip{} -batch [{}]: {}",
            netns.map(|n| format!(" -n {n}")).unwrap_or_default(),
            cmds.join("; "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// True if a link named `name` exists in the host namespace.
pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Deletes a link if it exists.
pub fn delete_link(name: &str) -> Result<()> {
    if !link_exists(name) {
        return Ok(());
    }
    match run(&["link", "del", name]) {
        Ok(_) => Ok(()),
        Err(_) if !link_exists(name) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the named network namespace `/run/netns/NAME`.
pub fn netns_add(name: &str) -> Result<()> {
    run(&["netns", "add", name]).map(|_| ())
}

/// Deletes the named network namespace if it exists.
pub fn netns_del(name: &str) -> Result<()> {
    if !netns_path(name).exists() {
        return Ok(());
    }
    run(&["netns", "del", name]).map(|_| ())
}

/// Where `ip netns` keeps a namespace.
pub fn netns_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/run/netns").join(name)
}

/// An IPv4 subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// Network address.
    pub base: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl Subnet {
    /// Parses `A.B.C.D/N` (the host bits are cleared).
    pub fn parse(s: &str) -> Result<Subnet> {
        let (a, p) = s
            .split_once('/')
            .with_context(|| format!("subnet {s:?}: expected A.B.C.D/N"))?;
        let a: Ipv4Addr = a.parse().with_context(|| format!("subnet {s:?}"))?;
        let prefix: u8 = p.parse().with_context(|| format!("subnet {s:?}"))?;
        if !(8..=30).contains(&prefix) {
            bail!("subnet {s:?}: the prefix must be between /8 and /30");
        }
        Ok(Subnet {
            base: Ipv4Addr::from(u32::from(a) & Self::mask(prefix)),
            prefix,
        })
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        }
    }

    /// The gateway (first host address, given to the bridge).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }

    /// The `k`-th host address (1 is the gateway).
    pub fn host(&self, k: u32) -> Option<Ipv4Addr> {
        let size = 1u64 << (32 - self.prefix);
        if (k as u64) == 0 || (k as u64) >= size - 1 {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.base) + k))
    }

    /// True if the two subnets share an address.
    pub fn overlaps(&self, o: &Subnet) -> bool {
        let p = self.prefix.min(o.prefix);
        let m = Self::mask(p);
        u32::from(self.base) & m == u32::from(o.base) & m
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// Subnets in use on the host: every IPv4 address's network and every
/// route except default ones.
pub fn used_subnets() -> Result<Vec<Subnet>> {
    let mut out = Vec::new();
    let addrs: Value =
        serde_json::from_str(&run(&["-j", "-4", "addr", "show"])?).context("parse `ip -j addr`")?;
    for link in addrs.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if let (Some(ip), Some(p)) = (a["local"].as_str(), a["prefixlen"].as_u64()) {
                if let Ok(s) = Subnet::parse(&format!("{ip}/{}", p.clamp(8, 30))) {
                    out.push(s);
                }
            }
        }
    }
    let routes: Value = serde_json::from_str(&run(&["-j", "-4", "route", "show"])?)
        .context("parse `ip -j route`")?;
    for r in routes.as_array().into_iter().flatten() {
        let dst = r["dst"].as_str().unwrap_or("default");
        if dst == "default" {
            continue;
        }
        let dst = if dst.contains('/') {
            dst.to_string()
        } else {
            format!("{dst}/30")
        };
        if let Ok(s) = Subnet::parse(&dst) {
            out.push(s);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let s = Subnet::parse("10.1.2.3/24").unwrap();
        assert_eq!(s.to_string(), "10.1.2.0/24");
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 1, 2, 1));
        assert_eq!(s.host(2), Some(Ipv4Addr::new(10, 1, 2, 2)));
        assert_eq!(s.host(255), None);
        assert!(s.overlaps(&Subnet::parse("10.1.0.0/16").unwrap()));
        assert!(!s.overlaps(&Subnet::parse("10.1.3.0/24").unwrap()));
        assert!(Subnet::parse("10.0.0.0/31").is_err());
        assert!(Subnet::parse("nope").is_err());
    }
}

//! Container networks: `none`, `host`, the default `bridge` and
//! user-defined bridges.
//!
//! A bridge network is a Linux bridge on the host with the network's
//! gateway address; each container gets a network namespace
//! (`/run/netns/pier-<id>`) with one end of a veth pair as `eth0` and an
//! address from the subnet. No default route is set in the container and
//! no NAT or forwarding rule is added on the host: a container reaches its
//! network's members and the host's gateway address, nothing outside
//! (published ports are relayed by [`proxy`]). Names resolve through
//! `/etc/hosts`: every member's file lists every other member and is
//! rewritten in place when one joins or leaves.
//!
//! The kernel objects exist only while used: the bridge is made when the
//! first container joins and deleted when the last leaves, so nothing is
//! left behind. Definitions live in the store (`ROOT/networks/NAME.json`),
//! the live state (subnet chosen, members) in `RUNROOT/networks/NAME.json`.
//! Bridge names and subnets are host-wide, so choosing and creating them
//! happens under a host-wide lock (`/run/pier-net.lock`); an automatic
//! subnet is the first /24 of 10.213.0.0/16 that no host address or route
//! overlaps.

pub mod ip;
pub mod proxy;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use self::ip::Subnet;
use crate::digest::Digest;
use crate::store::Lock;

/// The default bridge network's name.
pub const DEFAULT_BRIDGE: &str = "bridge";

/// A user-defined network's definition.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkDef {
    /// Name.
    pub name: String,
    /// ID (sha256 hex).
    pub id: String,
    /// Fixed subnet (else one is chosen when the bridge comes up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Creation time.
    pub created: String,
}

/// One container on a network.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// Container name.
    pub name: String,
    /// Hostname.
    pub hostname: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its host-side veth.
    pub veth: String,
    /// Its hosts file (rewritten when members change).
    pub hosts: PathBuf,
}

/// The live state of a bridge network.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct NetState {
    /// The bridge device.
    pub bridge: String,
    /// The subnet in use.
    pub subnet: String,
    /// Members by container ID.
    pub members: BTreeMap<String, Member>,
}

/// What a container got from a network.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    /// Network name.
    pub network: String,
    /// The netns name (`/run/netns/NAME`).
    pub netns: String,
    /// Address.
    pub ip: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// Gateway (the bridge).
    pub gateway: Ipv4Addr,
    /// Host-side veth.
    pub veth: String,
    /// Bridge.
    pub bridge: String,
}

/// Networks of one store and run root.
pub struct Networks {
    defs: PathBuf,
    state: PathBuf,
    store_root: PathBuf,
}

const HOST_LOCK: &str = "/run/pier-net.lock";

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

impl Networks {
    /// The networks of store `root` with run state under `runroot`.
    pub fn new(root: &Path, runroot: &Path) -> Networks {
        Networks {
            defs: root.join("networks"),
            state: runroot.join("networks"),
            store_root: root.to_path_buf(),
        }
    }

    fn lock() -> Result<Lock> {
        std::fs::create_dir_all("/run").ok();
        Lock::exclusive(Path::new(HOST_LOCK))
    }

    fn def_path(&self, name: &str) -> PathBuf {
        self.defs.join(format!("{name}.json"))
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.state.join(format!("{name}.json"))
    }

    /// The definition of a bridge network (the default one is implicit).
    pub fn get(&self, name: &str) -> Result<NetworkDef> {
        if name == DEFAULT_BRIDGE {
            return Ok(NetworkDef {
                name: name.into(),
                id: Digest::of(format!("{}\0bridge", self.store_root.display()).as_bytes())
                    .hex()
                    .to_string(),
                subnet: None,
                created: String::new(),
            });
        }
        let p = self.def_path(name);
        let data = std::fs::read(&p).map_err(|_| anyhow::anyhow!("network {name} not found"))?;
        serde_json::from_slice(&data).with_context(|| format!("parse {}", p.display()))
    }

    /// Every bridge network (default first).
    pub fn list(&self) -> Result<Vec<NetworkDef>> {
        let mut v = vec![self.get(DEFAULT_BRIDGE)?];
        if let Ok(rd) = std::fs::read_dir(&self.defs) {
            let mut names: Vec<String> = rd
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .strip_suffix(".json")
                        .map(str::to_string)
                })
                .collect();
            names.sort();
            for n in names {
                v.push(self.get(&n)?);
            }
        }
        Ok(v)
    }

    /// `pier network create NAME [--subnet CIDR]`.
    pub fn create(&self, name: &str, subnet: Option<&str>) -> Result<NetworkDef> {
        if !valid_name(name) || matches!(name, "bridge" | "host" | "none" | "default") {
            bail!("invalid network name {name:?}");
        }
        let subnet = subnet
            .map(Subnet::parse)
            .transpose()?
            .map(|s| s.to_string());
        std::fs::create_dir_all(&self.defs)
            .with_context(|| format!("create {}", self.defs.display()))?;
        let p = self.def_path(name);
        let id = Digest::of(
            format!(
                "{}\0{name}\0{:?}",
                self.store_root.display(),
                std::time::SystemTime::now()
            )
            .as_bytes(),
        );
        let def = NetworkDef {
            name: name.into(),
            id: id.hex().to_string(),
            subnet,
            created: crate::archive::now_rfc3339(),
        };
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&def)?)?;
        // link(2) fails if the name exists: no silent replacement.
        std::fs::hard_link(&tmp, &p).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::anyhow!("network {name} already exists")
            } else {
                anyhow::Error::new(e).context(format!("create {}", p.display()))
            }
        })?;
        let _ = std::fs::remove_file(&tmp);
        Ok(def)
    }

    /// `pier network rm NAME`: refused while containers are on it.
    pub fn remove(&self, name: &str) -> Result<()> {
        if matches!(name, "bridge" | "host" | "none") {
            bail!("{name} is a predefined network and cannot be removed");
        }
        self.get(name)?;
        let _l = Self::lock()?;
        if let Some(s) = self.load_state(name)? {
            if !s.members.is_empty() {
                bail!(
                    "network {name} has active containers: {}",
                    s.members
                        .values()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        std::fs::remove_file(self.def_path(name)).with_context(|| format!("remove network {name}"))
    }

    /// The live state of a network (None if no container uses it).
    pub fn load_state(&self, name: &str) -> Result<Option<NetState>> {
        match std::fs::read(self.state_path(name)) {
            Ok(d) => Ok(Some(
                serde_json::from_slice(&d).context("parse network state")?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("read network state"),
        }
    }

    fn save_state(&self, name: &str, s: &NetState) -> Result<()> {
        std::fs::create_dir_all(&self.state)?;
        let p = self.state_path(name);
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(s)?)?;
        std::fs::rename(&tmp, &p).with_context(|| format!("write {}", p.display()))
    }

    /// The bridge device name of a network: `pbr-` and 10 hex digits of
    /// its ID (IDs include the store, so two stores never share one).
    fn bridge_name(def: &NetworkDef) -> String {
        format!("pbr-{}", &def.id[..10])
    }

    /// Brings the bridge up: picks the subnet and creates the device.
    fn bring_up(&self, def: &NetworkDef) -> Result<NetState> {
        let bridge = Self::bridge_name(def);
        let used = ip::used_subnets()?;
        let subnet = match &def.subnet {
            Some(s) => {
                let s = Subnet::parse(s)?;
                if let Some(u) = used.iter().find(|u| u.overlaps(&s)) {
                    bail!(
                        "network {}: subnet {s} overlaps {u}, in use on this host",
                        def.name
                    );
                }
                s
            }
            None => (0..=255u32)
                .map(|k| Subnet {
                    base: Ipv4Addr::new(10, 213, k as u8, 0),
                    prefix: 24,
                })
                .find(|s| !used.iter().any(|u| u.overlaps(s)))
                .context("no free /24 left in 10.213.0.0/16")?,
        };
        ip::delete_link(&bridge)?;
        let r = ip::batch(
            None,
            &[
                format!("link add {bridge} type bridge"),
                format!(
                    "addr add {}/{} dev {bridge}",
                    subnet.gateway(),
                    subnet.prefix
                ),
                format!("link set {bridge} up"),
            ],
        );
        if let Err(e) = r {
            let _ = ip::delete_link(&bridge);
            return Err(e);
        }
        Ok(NetState {
            bridge,
            subnet: subnet.to_string(),
            members: BTreeMap::new(),
        })
    }

    /// Joins container `id` to network `name`: makes its netns, a veth pair
    /// and an address, and updates every member's hosts file (its own is
    /// `hosts`, made here).
    pub fn attach(
        &self,
        name: &str,
        id: &str,
        cname: &str,
        hostname: &str,
        hosts: &Path,
    ) -> Result<Attachment> {
        let def = self.get(name)?;
        let netns = netns_name(id);
        let veth = format!("pv{}", &id[..12]);
        let _l = Self::lock()?;
        let mut st = match self.load_state(name)? {
            Some(s) if ip::link_exists(&s.bridge) => s,
            _ => self.bring_up(&def)?,
        };
        let subnet = Subnet::parse(&st.subnet)?;
        let taken: Vec<Ipv4Addr> = st.members.values().map(|m| m.ip).collect();
        let addr = (2..)
            .map_while(|k| subnet.host(k))
            .find(|a| !taken.contains(a))
            .with_context(|| format!("network {name}: no free address in {subnet}"))?;
        let r = (|| -> Result<()> {
            ip::netns_del(&netns)?;
            ip::netns_add(&netns)?;
            ip::delete_link(&veth)?;
            ip::batch(
                None,
                &[
                    format!("link add {veth} type veth peer name eth0 netns {netns}"),
                    format!("link set {veth} master {}", st.bridge),
                    format!("link set {veth} up"),
                ],
            )?;
            ip::batch(
                Some(&netns),
                &[
                    format!("addr add {addr}/{} dev eth0", subnet.prefix),
                    "link set eth0 up".into(),
                    "link set lo up".into(),
                ],
            )
        })();
        if let Err(e) = r {
            let _ = ip::delete_link(&veth);
            let _ = ip::netns_del(&netns);
            if st.members.is_empty() {
                let _ = ip::delete_link(&st.bridge);
            }
            return Err(e.context(format!("attach to network {name}")));
        }
        st.members.insert(
            id.to_string(),
            Member {
                name: cname.into(),
                hostname: hostname.into(),
                ip: addr,
                veth: veth.clone(),
                hosts: hosts.to_path_buf(),
            },
        );
        self.save_state(name, &st)?;
        write_hosts_files(&st);
        Ok(Attachment {
            network: name.into(),
            netns,
            ip: addr,
            prefix: subnet.prefix,
            gateway: subnet.gateway(),
            veth,
            bridge: st.bridge.clone(),
        })
    }

    /// Leaves the network: removes the veth, the netns and the member,
    /// rewrites the others' hosts files, and deletes the bridge after the
    /// last member. Idempotent.
    pub fn detach(&self, name: &str, id: &str) -> Result<()> {
        let netns = netns_name(id);
        let veth = format!("pv{}", &id[..12.min(id.len())]);
        let _l = Self::lock()?;
        ip::delete_link(&veth)?;
        ip::netns_del(&netns)?;
        let Some(mut st) = self.load_state(name)? else {
            return Ok(());
        };
        st.members.remove(id);
        if st.members.is_empty() {
            ip::delete_link(&st.bridge)?;
            let _ = std::fs::remove_file(self.state_path(name));
        } else {
            self.save_state(name, &st)?;
            write_hosts_files(&st);
        }
        Ok(())
    }
}

/// The netns name of a container.
pub fn netns_name(id: &str) -> String {
    format!("pier-{}", &id[..16.min(id.len())])
}

/// The base of every hosts file.
pub const LOCALHOST: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// Rewrites each member's hosts file in place (same inode: it is
/// bind-mounted into the container).
fn write_hosts_files(st: &NetState) {
    for (id, m) in &st.members {
        let mut s = String::from(LOCALHOST);
        s.push_str(&format!("{}\t{} {}\n", m.ip, m.hostname, m.name));
        for (oid, o) in &st.members {
            if oid != id {
                s.push_str(&format!("{}\t{} {}\n", o.ip, o.name, o.hostname));
            }
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .create(true)
            .open(&m.hosts)
        {
            use std::io::Write;
            let _ = f.write_all(s.as_bytes());
        }
    }
}

//! Mount options of `config.json`, as runc understands them.
//!
//! Flags become `MS_*` bits (for `mount(2)`) and `MOUNT_ATTR_*` bits (for
//! `mount_setattr(2)` on bind mounts); propagation options are kept apart and
//! applied after the mount exists; the `r`-prefixed recursive options
//! (`rro`, `rnosuid`...) apply to a whole bind tree; anything unknown is
//! filesystem data (`size=64m`, `mode=755`, `newinstance`...).

use anyhow::{bail, Result};

/// A parsed option list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// `MS_*` flags to set.
    pub flags: libc::c_ulong,
    /// `MS_*` flags explicitly turned off (`rw`, `suid`, `dev`, `exec`...).
    pub clear: libc::c_ulong,
    /// Propagation changes (`MS_SHARED`... possibly with `MS_REC`), in order.
    pub propagation: Vec<libc::c_ulong>,
    /// Filesystem-specific data, comma-joined for `mount(2)`.
    pub data: Vec<String>,
    /// `bind` or `rbind` was given.
    pub bind: bool,
    /// `rbind` was given.
    pub recursive: bool,
    /// `MOUNT_ATTR_*` to set on every mount of a bind tree.
    pub rec_set: u64,
    /// `MOUNT_ATTR_*` to clear on every mount of a bind tree.
    pub rec_clr: u64,
    /// runc's `tmpcopyup`: copy what the destination held into a new tmpfs.
    pub tmpcopyup: bool,
}

const FLAGS: &[(&str, bool, libc::c_ulong)] = &[
    ("ro", true, libc::MS_RDONLY),
    ("rw", false, libc::MS_RDONLY),
    ("nosuid", true, libc::MS_NOSUID),
    ("suid", false, libc::MS_NOSUID),
    ("nodev", true, libc::MS_NODEV),
    ("dev", false, libc::MS_NODEV),
    ("noexec", true, libc::MS_NOEXEC),
    ("exec", false, libc::MS_NOEXEC),
    ("sync", true, libc::MS_SYNCHRONOUS),
    ("async", false, libc::MS_SYNCHRONOUS),
    ("dirsync", true, libc::MS_DIRSYNC),
    ("remount", true, libc::MS_REMOUNT),
    ("mand", true, libc::MS_MANDLOCK),
    ("nomand", false, libc::MS_MANDLOCK),
    ("noatime", true, libc::MS_NOATIME),
    ("atime", false, libc::MS_NOATIME),
    ("nodiratime", true, libc::MS_NODIRATIME),
    ("diratime", false, libc::MS_NODIRATIME),
    ("relatime", true, libc::MS_RELATIME),
    ("norelatime", false, libc::MS_RELATIME),
    ("strictatime", true, libc::MS_STRICTATIME),
    ("nostrictatime", false, libc::MS_STRICTATIME),
    ("lazytime", true, libc::MS_LAZYTIME),
    ("nolazytime", false, libc::MS_LAZYTIME),
    ("silent", true, libc::MS_SILENT),
    ("loud", false, libc::MS_SILENT),
    ("nosymfollow", true, 256 /* MS_NOSYMFOLLOW */),
    ("symfollow", false, 256),
];

const RECURSIVE: &[(&str, bool, u64)] = &[
    ("rro", true, libc::MOUNT_ATTR_RDONLY),
    ("rrw", false, libc::MOUNT_ATTR_RDONLY),
    ("rnosuid", true, libc::MOUNT_ATTR_NOSUID),
    ("rsuid", false, libc::MOUNT_ATTR_NOSUID),
    ("rnodev", true, libc::MOUNT_ATTR_NODEV),
    ("rdev", false, libc::MOUNT_ATTR_NODEV),
    ("rnoexec", true, libc::MOUNT_ATTR_NOEXEC),
    ("rexec", false, libc::MOUNT_ATTR_NOEXEC),
    ("rnodiratime", true, libc::MOUNT_ATTR_NODIRATIME),
    ("rdiratime", false, libc::MOUNT_ATTR_NODIRATIME),
    (
        "rnosymfollow",
        true,
        0x0020_0000, /* MOUNT_ATTR_NOSYMFOLLOW */
    ),
    ("rsymfollow", false, 0x0020_0000),
];

const RECURSIVE_ATIME: &[(&str, u64)] = &[
    ("rrelatime", libc::MOUNT_ATTR_RELATIME),
    ("rnoatime", libc::MOUNT_ATTR_NOATIME),
    ("rstrictatime", libc::MOUNT_ATTR_STRICTATIME),
];

/// Every option berth understands, for `berth features` (filesystem data
/// options such as `size=` are passed through and not listed).
pub fn known() -> Vec<&'static str> {
    let mut all: Vec<&str> = FLAGS.iter().map(|(n, _, _)| *n).collect();
    all.extend(["bind", "rbind", "defaults"]);
    all.extend([
        "private",
        "rprivate",
        "shared",
        "rshared",
        "slave",
        "rslave",
        "unbindable",
        "runbindable",
    ]);
    all.extend(RECURSIVE.iter().map(|(n, _, _)| *n));
    all.extend(RECURSIVE_ATIME.iter().map(|(n, _)| *n));
    all.extend(["ratime", "tmpcopyup"]);
    all.sort_unstable();
    all
}

/// The `MS_*` propagation flag of an option, or an error for anything else.
pub fn propagation_flag(opt: &str) -> Result<libc::c_ulong> {
    propagation(opt).ok_or_else(|| anyhow::anyhow!("unknown propagation {opt:?}"))
}

/// The `MS_*` propagation flag of an option, if it is one (no error is built:
/// this runs for every mount option).
fn propagation(opt: &str) -> Option<libc::c_ulong> {
    Some(match opt {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

/// Parses an option list.
pub fn parse(opts: &[String]) -> Result<MountOptions> {
    let mut o = MountOptions::default();
    for opt in opts {
        let opt = opt.as_str();
        if opt.is_empty() || opt == "defaults" {
            continue;
        }
        if let Some(&(_, set, bit)) = FLAGS.iter().find(|(n, _, _)| *n == opt) {
            if set {
                o.flags |= bit;
                o.clear &= !bit;
            } else {
                o.flags &= !bit;
                o.clear |= bit;
            }
        } else if opt == "bind" || opt == "rbind" {
            o.bind = true;
            o.recursive |= opt == "rbind";
        } else if let Some(p) = propagation(opt) {
            o.propagation.push(p);
        } else if let Some(&(_, set, bit)) = RECURSIVE.iter().find(|(n, _, _)| *n == opt) {
            if set {
                o.rec_set |= bit;
                o.rec_clr &= !bit;
            } else {
                o.rec_clr |= bit;
                o.rec_set &= !bit;
            }
        } else if let Some(&(_, attr)) = RECURSIVE_ATIME.iter().find(|(n, _)| *n == opt) {
            o.rec_set = (o.rec_set & !libc::MOUNT_ATTR__ATIME) | attr;
            o.rec_clr |= libc::MOUNT_ATTR__ATIME;
        } else if opt == "ratime" {
            o.rec_set &= !libc::MOUNT_ATTR__ATIME;
            o.rec_clr |= libc::MOUNT_ATTR__ATIME;
        } else if opt == "tmpcopyup" {
            o.tmpcopyup = true;
        } else if opt == "idmap" || opt == "ridmap" {
            bail!("mount option {opt:?} (id-mapped mounts) is not supported by berth yet");
        } else if opt.contains(',') {
            bail!("mount option {opt:?} contains a comma");
        } else {
            o.data.push(opt.to_string());
        }
    }
    Ok(o)
}

impl MountOptions {
    /// `MOUNT_ATTR_*` bits to set and clear on the top mount of a bind.
    pub fn attrs(&self) -> (u64, u64) {
        let mut set = 0;
        let mut clr = 0;
        let pairs = [
            (libc::MS_RDONLY, libc::MOUNT_ATTR_RDONLY),
            (libc::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
            (libc::MS_NODEV, libc::MOUNT_ATTR_NODEV),
            (libc::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
            (libc::MS_NODIRATIME, libc::MOUNT_ATTR_NODIRATIME),
            (256, 0x0020_0000),
        ];
        for (ms, attr) in pairs {
            if self.flags & ms != 0 {
                set |= attr;
            }
            if self.clear & ms != 0 {
                clr |= attr;
            }
        }
        let atime = if self.flags & libc::MS_NOATIME != 0 {
            Some(libc::MOUNT_ATTR_NOATIME)
        } else if self.flags & libc::MS_STRICTATIME != 0 {
            Some(libc::MOUNT_ATTR_STRICTATIME)
        } else if self.flags & libc::MS_RELATIME != 0 {
            Some(libc::MOUNT_ATTR_RELATIME)
        } else {
            None
        };
        if let Some(a) = atime {
            set |= a;
            clr |= libc::MOUNT_ATTR__ATIME;
        }
        (set, clr)
    }

    /// The data string for `mount(2)`.
    pub fn data_string(&self) -> String {
        self.data.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> MountOptions {
        parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_data_and_propagation() {
        let o = p(&[
            "nosuid",
            "noexec",
            "nodev",
            "mode=755",
            "size=65536k",
            "rslave",
        ]);
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV);
        assert_eq!(o.data_string(), "mode=755,size=65536k");
        assert_eq!(o.propagation, vec![libc::MS_SLAVE | libc::MS_REC]);
        assert!(!o.bind);
    }

    #[test]
    fn later_options_win() {
        let o = p(&["ro", "rw"]);
        assert_eq!(o.flags & libc::MS_RDONLY, 0);
        assert_eq!(o.clear & libc::MS_RDONLY, libc::MS_RDONLY);
        let o = p(&["rw", "ro"]);
        assert_eq!(o.flags & libc::MS_RDONLY, libc::MS_RDONLY);
    }

    #[test]
    fn bind_attrs() {
        let o = p(&["rbind", "ro", "nosuid", "rro", "relatime"]);
        assert!(o.bind && o.recursive);
        let (set, clr) = o.attrs();
        assert_eq!(
            set,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_RELATIME
        );
        assert_eq!(clr, libc::MOUNT_ATTR__ATIME);
        assert_eq!(o.rec_set, libc::MOUNT_ATTR_RDONLY);
    }

    #[test]
    fn every_known_option_parses_as_an_option() {
        for name in known() {
            let o = p(&[name]);
            assert!(o.data.is_empty(), "{name} was taken as filesystem data");
        }
    }

    #[test]
    fn idmap_is_a_clear_error() {
        assert!(parse(&["idmap".into()]).is_err());
    }
}

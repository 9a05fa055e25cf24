//! `linux.resources.devices` as a list of rules, with runc's default allowed
//! devices appended, for v1 (`devices.allow`/`devices.deny`) and v2 (eBPF).

use anyhow::{bail, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::bpf::{Rule, ACC_MKNOD, ACC_READ, ACC_WRITE};

/// Devices every container may use whatever its config says (runc's
/// `AllowedDevices`): mknod of any char/block device, null, zero, full, tty,
/// random, urandom, pts, ptmx and tun.
fn defaults() -> Vec<Rule> {
    let all = ACC_MKNOD | ACC_READ | ACC_WRITE;
    let c = |major, minor, access| Rule {
        allow: true,
        typ: b'c',
        major,
        minor,
        access,
    };
    vec![
        c(None, None, ACC_MKNOD),
        Rule {
            typ: b'b',
            ..c(None, None, ACC_MKNOD)
        },
        c(Some(1), Some(3), all),
        c(Some(1), Some(8), all),
        c(Some(1), Some(7), all),
        c(Some(5), Some(0), all),
        c(Some(1), Some(5), all),
        c(Some(1), Some(9), all),
        c(Some(136), None, all),
        c(Some(5), Some(2), all),
        c(Some(10), Some(200), all),
    ]
}

/// The rules to enforce: the config's, in order, then the defaults. The
/// starting point is "deny everything".
pub fn rules(spec_rules: Option<&[LinuxDeviceCgroup]>) -> Result<Vec<Rule>> {
    let mut out = Vec::new();
    for d in spec_rules.unwrap_or_default() {
        out.push(convert(d)?);
    }
    out.extend(defaults());
    Ok(out)
}

fn convert(d: &LinuxDeviceCgroup) -> Result<Rule> {
    let typ = match d.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => b'a',
        LinuxDeviceType::B => b'b',
        LinuxDeviceType::C | LinuxDeviceType::U => b'c',
        LinuxDeviceType::P => bail!("config.json: device cgroup rule of type p (fifo) is invalid"),
    };
    let num = |v: Option<i64>, what: &str| -> Result<Option<u32>> {
        match v {
            None | Some(-1) => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| anyhow::anyhow!("config.json: device cgroup {what} {n} is invalid")),
        }
    };
    let access = match d.access().as_deref() {
        None | Some("") => ACC_MKNOD | ACC_READ | ACC_WRITE,
        Some(a) => {
            let mut m = 0;
            for ch in a.chars() {
                m |= match ch {
                    'r' => ACC_READ,
                    'w' => ACC_WRITE,
                    'm' => ACC_MKNOD,
                    _ => bail!("config.json: device cgroup access {a:?} is invalid (use r, w, m)"),
                };
            }
            m
        }
    };
    Ok(Rule {
        allow: d.allow(),
        typ,
        major: num(d.major(), "major")?,
        minor: num(d.minor(), "minor")?,
        access,
    })
}

/// The line cgroup v1 takes in `devices.allow`/`devices.deny`.
pub fn v1_line(r: &Rule) -> String {
    let n = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_else(|| "*".into());
    let mut acc = String::new();
    for (bit, ch) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
        if r.access & bit != 0 {
            acc.push(ch);
        }
    }
    format!("{} {}:{} {}", r.typ as char, n(r.major), n(r.minor), acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_spec_rules_and_appends_defaults() {
        let spec: Vec<LinuxDeviceCgroup> = serde_json::from_str(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":10,"minor":237,"access":"rw"}]"#,
        )
        .unwrap();
        let r = rules(Some(&spec)).unwrap();
        assert_eq!(v1_line(&r[0]), "a *:* rwm");
        assert_eq!(v1_line(&r[1]), "c 10:237 rw");
        assert_eq!(v1_line(&r[2]), "c *:* m");
        assert_eq!(r.len(), 2 + defaults().len());
        let bad: Vec<LinuxDeviceCgroup> =
            serde_json::from_str(r#"[{"allow":true,"type":"c","access":"rx"}]"#).unwrap();
        assert!(rules(Some(&bad)).is_err());
    }
}

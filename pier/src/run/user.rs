//! `USER` / `-u` / `--chown` values (`name|uid[:group|gid]`) resolved
//! against the container's own `/etc/passwd` and `/etc/group`, as Docker
//! does: a name must exist there, a number need not; the user's groups in
//! `/etc/group` become additional gids.

use std::path::Path;

use anyhow::{bail, Result};

use crate::inroot::Root;

/// A resolved user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary gids.
    pub additional_gids: Vec<u32>,
    /// Home directory (from passwd; `/` if unknown).
    pub home: String,
}

struct PwEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn passwd(root: &Root) -> Result<Vec<PwEntry>> {
    let Some(data) = root.read(Path::new("/etc/passwd"))? else {
        return Ok(Vec::new());
    };
    Ok(String::from_utf8_lossy(&data)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PwEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).unwrap_or(&"/").to_string(),
            })
        })
        .collect())
}

/// (name, gid, members) of each group.
fn groups(root: &Root) -> Result<Vec<(String, u32, Vec<String>)>> {
    let Some(data) = root.read(Path::new("/etc/group"))? else {
        return Ok(Vec::new());
    };
    Ok(String::from_utf8_lossy(&data)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Some((f[0].to_string(), f[2].parse().ok()?, members))
        })
        .collect())
}

/// Resolves `spec` (empty means root) inside the root filesystem.
pub fn resolve(root: &Root, spec: &str) -> Result<User> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let pw = passwd(root)?;
    let entry = match u.parse::<u32>() {
        Ok(uid) => pw.iter().find(|e| e.uid == uid),
        Err(_) => Some(pw.iter().find(|e| e.name == u).ok_or_else(|| {
            anyhow::anyhow!("unable to find user {u}: no matching entries in passwd file")
        })?),
    };
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => entry.map(|e| e.uid).unwrap_or(0),
    };
    let grs = groups(root)?;
    let gid = match g {
        Some(g) if !g.is_empty() => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => match grs.iter().find(|(n, _, _)| n == g) {
                Some((_, gid, _)) => *gid,
                None => bail!("unable to find group {g}: no matching entries in group file"),
            },
        },
        _ => entry.map(|e| e.gid).unwrap_or(0),
    };
    let mut additional_gids = Vec::new();
    if g.is_none() {
        if let Some(e) = entry {
            for (_, id, members) in &grs {
                if members.iter().any(|m| m == &e.name)
                    && *id != gid
                    && !additional_gids.contains(id)
                {
                    additional_gids.push(*id);
                }
            }
        }
    }
    Ok(User {
        uid,
        gid,
        additional_gids,
        home: entry.map(|e| e.home.clone()).unwrap_or_else(|| "/".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_groups() {
        let d = std::env::temp_dir().join(format!("pier-user-{}", std::process::id()));
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(
            d.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.join("etc/group"),
            "root:x:0:\napp:x:1001:\nwheel:x:10:app,x\n",
        )
        .unwrap();
        let r = Root::open(&d).unwrap();
        let u = resolve(&r, "app").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (1000, 1001, vec![10])
        );
        assert_eq!(u.home, "/home/app");
        assert_eq!(resolve(&r, "").unwrap().uid, 0);
        let u = resolve(&r, "4242:wheel").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 10));
        let u = resolve(&r, "1000:5").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.len()), (1000, 5, 0));
        assert!(resolve(&r, "nobody")
            .unwrap_err()
            .to_string()
            .contains("nobody"));
        assert!(resolve(&r, "app:nogroup").is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}

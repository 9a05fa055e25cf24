//! Switching to the container user: groups, gid, uid, umask, `HOME`.

use anyhow::{Context, Result};
use oci_spec::runtime::User;

/// Sets supplementary groups, gid and uid, keeping the permitted capabilities
/// across the switch (they are trimmed right after by `caps::apply`).
/// `setgroups_allowed` is false in a user namespace whose `setgroups` file
/// says `deny`.
pub fn switch(user: &User, setgroups_allowed: bool) -> Result<()> {
    prctl(libc::PR_SET_KEEPCAPS, 1).context("prctl(PR_SET_KEEPCAPS)")?;
    let groups: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    if setgroups_allowed {
        // SAFETY: valid pointer and length.
        if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setgroups {groups:?}"));
        }
    } else if !groups.is_empty() {
        anyhow::bail!(
            "additionalGids {groups:?} cannot be set: setgroups is denied in this user namespace"
        );
    }
    // SAFETY: plain syscalls.
    unsafe {
        if libc::setresgid(user.gid(), user.gid(), user.gid()) < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setresgid {}", user.gid()));
        }
        if libc::setresuid(user.uid(), user.uid(), user.uid()) < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setresuid {}", user.uid()));
        }
    }
    prctl(libc::PR_SET_KEEPCAPS, 0).context("prctl(PR_SET_KEEPCAPS)")?;
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(user.umask().unwrap_or(0o022) as libc::mode_t) };
    Ok(())
}

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> std::io::Result<()> {
    // SAFETY: prctl options used here take one integer argument.
    if unsafe { libc::prctl(option, arg, 0, 0, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The home directory of `uid` in the container's `/etc/passwd` (read after
/// pivot_root), or `/`.
pub fn home_dir(uid: u32) -> String {
    let Ok(passwd) = std::fs::read_to_string("/etc/passwd") else {
        return "/".into();
    };
    home_from_passwd(&passwd, uid).unwrap_or_else(|| "/".into())
}

fn home_from_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 6 && f[2].parse() == Ok(uid) && !f[5].is_empty()).then(|| f[5].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lookup() {
        let p = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\nbad line\n";
        assert_eq!(home_from_passwd(p, 0).as_deref(), Some("/root"));
        assert_eq!(home_from_passwd(p, 33).as_deref(), Some("/var/www"));
        assert_eq!(home_from_passwd(p, 1000), None);
    }
}

//! A read-only handle on berth's own binary for the container's init to run
//! from (CVE-2019-5736).
//!
//! Any process that lives inside a container's namespaces while it runs berth
//! code exposes the binary as `/proc/PID/exe`. If that were the host's
//! `berth` file, a container process could open it (O_PATH, then reopen for
//! writing once berth exits) and replace the runtime on the host. So the init
//! `execveat`s a handle that cannot be written through:
//!
//! 1. an internal overlayfs made with `fsopen`/`fsmount` and never attached to
//!    any mount namespace, with the binary's directory and an empty directory
//!    as its two lower layers and no upper layer: writes fail with `EROFS` and
//!    nothing can "unwrap" the overlay to the real file (zero copy);
//! 2. where that is not possible (no overlayfs, no privilege), a `memfd` copy
//!    of the binary, sealed against writes, growth, shrinking and re-sealing.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::sys;

/// Opens a sealed handle on the running binary. `scratch` is a directory berth
/// owns (the `--root`); an empty directory is kept under it as the overlay's
/// second lower layer.
pub fn open(scratch: &Path) -> Result<OwnedFd> {
    let exe = fs::read_link("/proc/self/exe").context("readlink /proc/self/exe")?;
    match overlay(&exe, scratch) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            crate::debug!(
                "sealed overlay of {} unavailable ({e}), copying to a memfd",
                exe.display()
            );
            memfd_copy()
        }
    }
}

fn escape_lowerdir(p: &Path) -> String {
    p.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(':', "\\:")
}

fn overlay(exe: &Path, scratch: &Path) -> io::Result<OwnedFd> {
    let (dir, name) = match (exe.parent(), exe.file_name()) {
        (Some(d), Some(n)) => (d, n),
        _ => return Err(io::ErrorKind::InvalidInput.into()),
    };
    let empty: PathBuf = scratch.join(".empty");
    match fs::create_dir(&empty) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let fs = sys::fsopen("overlay")?;
    // The binary's directory on top, so a file of the same name in the empty
    // layer could never shadow it.
    let lower = format!("{}:{}", escape_lowerdir(dir), escape_lowerdir(&empty));
    sys::fsconfig_set_string(fs.as_fd(), "lowerdir", &lower)?;
    // xino only produces kernel log noise when the layers are on different
    // filesystems; it does not matter here.
    let _ = sys::fsconfig_set_string(fs.as_fd(), "xino", "off");
    sys::fsconfig_create(fs.as_fd())?;
    let mnt = sys::fsmount(
        fs.as_fd(),
        libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOSUID,
    )?;
    sys::openat(
        mnt.as_raw_fd(),
        Path::new(name),
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
    )
}

fn memfd_copy() -> Result<OwnedFd> {
    // SAFETY: valid C string; the descriptor is owned below.
    let fd = unsafe {
        libc::memfd_create(
            c"berth".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("memfd_create");
    }
    // SAFETY: fresh descriptor.
    let mut memfd = unsafe { File::from_raw_fd(fd) };
    let mut exe = File::open("/proc/self/exe").context("open /proc/self/exe")?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = exe.read(&mut buf).context("read /proc/self/exe")?;
        if n == 0 {
            break;
        }
        memfd.write_all(&buf[..n]).context("write memfd")?;
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: plain fcntl on our descriptor.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error()).context("seal memfd copy of berth");
    }
    Ok(memfd.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever way the handle was made, it can't be opened for writing.
    #[test]
    fn handle_is_not_writable() {
        let scratch = std::env::temp_dir().join(format!("berth-sealed-{}", std::process::id()));
        fs::create_dir_all(&scratch).unwrap();
        let fd = open(&scratch).unwrap();
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let err = fs::OpenOptions::new().write(true).open(&path).unwrap_err();
        assert!(
            matches!(
                err.raw_os_error(),
                Some(libc::EROFS) | Some(libc::EPERM) | Some(libc::ETXTBSY)
            ),
            "unexpected: {err}"
        );
        let memfd = memfd_copy().unwrap();
        let path = format!("/proc/self/fd/{}", memfd.as_raw_fd());
        let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert_eq!(f.write(b"x").unwrap_err().raw_os_error(), Some(libc::EPERM));
        fs::remove_dir_all(&scratch).unwrap();
    }
}

//! Thin, checked wrappers around the Linux system calls that `nix` does not cover
//! (openat2, the new mount API, pidfds, close_range, execveat, raw clone).
//!
//! Every wrapper returns `std::io::Result` with the raw `errno`; callers add the
//! context (which path, which syscall) with `anyhow`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use std::os::unix::ffi::OsStrExt;

/// `AT_FDCWD` as a borrowed descriptor-like value for path-based calls.
pub const AT_FDCWD: RawFd = libc::AT_FDCWD;

fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    // SAFETY: the kernel returned a fresh descriptor that nobody else owns.
    cvt(ret).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Converts a path to a C string; paths with interior NUL bytes are rejected.
pub fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `openat2(2)`: opens `path` relative to `dirfd` with `RESOLVE_*` restrictions.
/// `O_CLOEXEC` is always added.
pub fn openat2(
    dirfd: RawFd,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
        mode as u64
    } else {
        0
    };
    how.resolve = resolve;
    loop {
        // SAFETY: `how` and `c` outlive the call; the size matches the struct.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        match cvt_fd(ret) {
            // openat2 returns EAGAIN with RESOLVE_IN_ROOT/BENEATH when a rename
            // raced with the lookup; retrying is what the man page asks for.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            other => return other,
        }
    }
}

/// `openat(2)` with `O_CLOEXEC` added.
pub fn openat(dirfd: RawFd, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: valid C string; the returned descriptor is owned by the caller.
    let ret = unsafe { libc::openat(dirfd, c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    cvt_fd(ret as libc::c_long)
}

/// `fsopen(2)`.
pub fn fsopen(fstype: &str) -> io::Result<OwnedFd> {
    let c = CString::new(fstype).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: valid C string.
    cvt_fd(unsafe {
        libc::syscall(libc::SYS_fsopen, c.as_ptr(), 1 /* FSOPEN_CLOEXEC */)
    })
}

const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

/// `fsconfig(FSCONFIG_SET_STRING)`.
pub fn fsconfig_set_string(fs: BorrowedFd, key: &str, value: &str) -> io::Result<()> {
    let k = CString::new(key).map_err(|_| io::ErrorKind::InvalidInput)?;
    let v = CString::new(value).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: valid C strings; fs is an fs context descriptor.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            k.as_ptr(),
            v.as_ptr(),
            0,
        )
    })
    .map(drop)
}

/// `fsconfig(FSCONFIG_CMD_CREATE)`.
pub fn fsconfig_create(fs: BorrowedFd) -> io::Result<()> {
    // SAFETY: no pointers are passed.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })
    .map(drop)
}

/// `fsmount(2)` with `FSMOUNT_CLOEXEC` and the given `MOUNT_ATTR_*` flags.
pub fn fsmount(fs: BorrowedFd, attrs: u64) -> io::Result<OwnedFd> {
    // SAFETY: no pointers are passed.
    cvt_fd(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            1, /* FSMOUNT_CLOEXEC */
            attrs,
        )
    })
}

/// `open_tree(2)` of `dirfd` itself (`AT_EMPTY_PATH`), cloned as a detached mount.
pub fn open_tree_clone(dirfd: BorrowedFd, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    // SAFETY: the empty path is a valid C string.
    cvt_fd(unsafe { libc::syscall(libc::SYS_open_tree, dirfd.as_raw_fd(), c"".as_ptr(), flags) })
}

/// `move_mount(2)` of a detached mount `from` onto the object `to` refers to.
pub fn move_mount_fd(from: BorrowedFd, to: BorrowedFd) -> io::Result<()> {
    let flags = 0x4 /* MOVE_MOUNT_F_EMPTY_PATH */ | 0x40 /* MOVE_MOUNT_T_EMPTY_PATH */;
    // SAFETY: the empty paths are valid C strings.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            flags,
        )
    })
    .map(drop)
}

/// `mount_setattr(2)` on the mount `fd` refers to.
pub fn mount_setattr(
    fd: BorrowedFd,
    recursive: bool,
    set: u64,
    clr: u64,
    propagation: u64,
) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: `attr` outlives the call and its size is passed.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// `pidfd_open(2)`.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: no pointers are passed.
    cvt_fd(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })
}

/// `pidfd_send_signal(2)`.
pub fn pidfd_send_signal(pidfd: BorrowedFd, sig: i32) -> io::Result<()> {
    // SAFETY: a null siginfo is allowed.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// Marks every descriptor from `first` upwards close-on-exec (`close_range(2)`
/// with `CLOSE_RANGE_CLOEXEC`), so nothing of the caller leaks through `execve`.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: no pointers are passed.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    })
    .map(drop)
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: runs the program `fd` refers to.
/// Only returns on failure.
pub fn execveat_fd(
    fd: RawFd,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> io::Error {
    // SAFETY: argv and envp are NULL-terminated arrays of valid C strings owned
    // by the caller.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    io::Error::last_os_error()
}

/// Builds a NULL-terminated pointer array over C strings that the caller keeps alive.
pub fn ptr_array(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Raw `clone(2)` with fork semantics (no new stack): returns 0 in the child and
/// the child's pid in the parent.
///
/// # Safety
/// The caller must be single-threaded: the child continues on a copy of the
/// caller's stack and heap, and no lock held by another thread would ever be
/// released in the child. berth's CLI never starts threads.
pub unsafe fn clone_fork(flags: libc::c_ulong) -> io::Result<i32> {
    let ret = libc::syscall(
        libc::SYS_clone,
        flags | libc::SIGCHLD as libc::c_ulong,
        std::ptr::null_mut::<libc::c_void>(),
        std::ptr::null_mut::<libc::c_int>(),
        std::ptr::null_mut::<libc::c_int>(),
        0 as libc::c_ulong,
    );
    cvt(ret).map(|pid| pid as i32)
}

/// Terminates the calling process without running destructors or atexit
/// handlers (used in forked children when something fails).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no shared state.
    unsafe { libc::_exit(code) }
}

/// `statfs(2)` magic of the filesystem `fd` is on.
pub fn fs_magic(fd: BorrowedFd) -> io::Result<i64> {
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64)
}

/// Writes `data` to `fd` completely, retrying on `EINTR` and short writes.
pub fn write_all(fd: BorrowedFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: `data` is a valid buffer.
        let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
    }
    Ok(())
}

//! berth: a runc-compatible low-level OCI runtime.
//!
//! The library holds the lifecycle (`container`), the process setup in the
//! container's namespaces (`process`, `rootfs`) and the host-side pieces
//! (`cgroups`, `hooks`); `cli` is a thin layer over them.
//!
//! Invariant: the CLI never starts a thread. `process::spawn` forks with raw
//! `clone` and relies on the forked heap being consistent.

pub mod cgroups;
pub mod cli;
pub mod config;
pub mod console;
pub mod container;
pub mod failpoint;
pub mod foreground;
pub mod hooks;
pub mod logging;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod sealed_exe;
pub mod seccomp;
pub mod signals;
pub mod sync;
pub mod sys;
pub mod sysctl;

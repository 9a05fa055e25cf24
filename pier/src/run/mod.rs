//! `pier run` and friends: containers from images, each held by one
//! `berth-shim`, with the bundle (config.json + overlay rootfs) generated
//! from the image config and the flags.

pub mod container;
pub mod create;
pub mod lifecycle;
pub mod runtime;
pub mod seccomp;
pub mod shim_client;
pub mod signals;
pub mod spec;
pub mod user;

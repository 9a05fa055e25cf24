//! `pier run` and friends: containers from images, each held by one
//! `berth-shim`, with the bundle (config.json + overlay rootfs) generated
//! from the image config and the flags.

pub mod runtime;
pub mod seccomp;
pub mod signals;
pub mod spec;
pub mod user;

//! pier: container images. Where images come from (registries, archives)
//! and how they become a root filesystem.
//!
//! The library API used by `pier` itself and by later `pier build` /
//! `pier run`:
//!
//! - [`store::Store`]: the content store (`--root`): blobs, names, layers.
//! - [`image::resolve`]: find an image by name, digest or ID; [`image::Image`]
//!   gives its manifest, config and layers.
//! - [`rootfs::RootfsMount`]: mount a container rootfs as an overlayfs of the
//!   image's unpacked layers plus a fresh upper directory, and remove it.
//! - [`pull`], [`push`], [`archive`]: moving images in and out.

pub mod archive;
pub mod build;
pub mod cli;
pub mod digest;
pub mod failpoint;
pub mod image;
pub mod inroot;
pub mod interrupt;
pub mod net;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod run;
pub mod store;
pub mod unpack;

//! Which runtime the shim drives, and with which `--root`.
//!
//! In order of precedence:
//! 1. the task's options from containerd: `containerd.runc.v1.Options`
//!    (`BinaryName`, `Root`: what containerd's config.toml `options` table
//!    and `ctr run --runc-binary` send for runc-style runtimes), or
//!    `runtimeoptions.v1.Options` whose `ConfigPath` names a JSON file
//!    `{"binary_name": "...", "root": "..."}` (what the CRI plugin and
//!    `ctr run --runtime-config-path` send for other runtime types);
//! 2. the environment of containerd (inherited by its shims):
//!    `BERTH_SHIM_RUNTIME` (binary) and `BERTH_SHIM_RUNTIME_ROOT`;
//! 3. `berth` found in PATH, with the root `/run/containerd/berth/NAMESPACE`.
//!
//! The choice is saved in the bundle (`berth-shim-v2-runtime.json`) for the
//! `delete` action, which containerd runs when a shim died.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use containerd_shim::api::Options as RuncOptions;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{CodedInputStream, Message};
use serde_json::{json, Value};

/// Type URL of the runc shim's options.
const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
/// Type URL of the CRI plugin's generic runtime options.
const RUNTIME_OPTIONS: &str = "runtimeoptions.v1.Options";
/// File in the bundle that records the choice.
pub const SAVED: &str = "berth-shim-v2-runtime.json";
/// Environment variable naming the runtime binary.
pub const ENV_RUNTIME: &str = "BERTH_SHIM_RUNTIME";
/// Environment variable naming the runtime's root.
pub const ENV_ROOT: &str = "BERTH_SHIM_RUNTIME_ROOT";

/// The runtime and its state root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeChoice {
    /// Absolute path of the binary.
    pub binary: PathBuf,
    /// `--root` given to every runtime command.
    pub root: PathBuf,
}

impl RuntimeChoice {
    /// Resolves the choice for a task of `namespace` from its options.
    pub fn resolve(options: Option<&Any>, namespace: &str) -> Result<RuntimeChoice> {
        let (mut binary, mut root) = (String::new(), String::new());
        if let Some(any) = options.filter(|a| !a.type_url.is_empty()) {
            let url = any.type_url.rsplit('/').next().unwrap_or_default();
            match url {
                RUNC_OPTIONS => {
                    let o = RuncOptions::parse_from_bytes(&any.value)
                        .context("decode containerd.runc.v1.Options")?;
                    binary = o.binary_name;
                    root = o.root;
                }
                RUNTIME_OPTIONS => {
                    let path = config_path(&any.value)?;
                    if !path.is_empty() {
                        (binary, root) = read_config(Path::new(&path))?;
                    }
                }
                other => bail!("unsupported runtime options type {other:?}"),
            }
        }
        if binary.is_empty() {
            binary = std::env::var(ENV_RUNTIME).unwrap_or_default();
        }
        if root.is_empty() {
            root = std::env::var(ENV_ROOT).unwrap_or_default();
        }
        if binary.is_empty() {
            binary = "berth".into();
        }
        let root = if root.is_empty() {
            Path::new("/run/containerd/berth").join(namespace)
        } else {
            PathBuf::from(root)
        };
        Ok(RuntimeChoice {
            binary: find_program(&binary)?,
            root,
        })
    }

    /// The runtime as berth-shim's core drives it.
    pub fn runtime(&self) -> berth_shim::runtime::Runtime {
        berth_shim::runtime::Runtime {
            path: self.binary.clone(),
            args: vec!["--root".into(), self.root.display().to_string()],
        }
    }

    /// Records the choice (and the shim's state directory) in the bundle.
    pub fn save(&self, bundle: &Path, state_dir: &Path) -> Result<()> {
        let v = json!({
            "binary_name": self.binary,
            "root": self.root,
            "state_dir": state_dir,
        });
        let p = bundle.join(SAVED);
        std::fs::write(&p, serde_json::to_vec_pretty(&v)?)
            .with_context(|| format!("write {}", p.display()))
    }

    /// Reads what [`RuntimeChoice::save`] recorded: the choice and the
    /// shim's state directory.
    pub fn load(bundle: &Path) -> Result<(RuntimeChoice, Option<PathBuf>)> {
        let p = bundle.join(SAVED);
        let text = std::fs::read(&p).with_context(|| format!("read {}", p.display()))?;
        let v: Value =
            serde_json::from_slice(&text).with_context(|| format!("parse {}", p.display()))?;
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let state_dir = Some(s("state_dir"))
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        Ok((
            RuntimeChoice {
                binary: PathBuf::from(s("binary_name")),
                root: PathBuf::from(s("root")),
            },
            state_dir,
        ))
    }
}

/// The `config_path` field (2) of a `runtimeoptions.v1.Options` message.
fn config_path(bytes: &[u8]) -> Result<String> {
    let mut cursor = Cursor::new(bytes);
    let mut is = CodedInputStream::new(&mut cursor);
    let mut path = String::new();
    while let Some(tag) = is.read_raw_tag_or_eof().context("decode runtimeoptions")? {
        let (field, wire) = (tag >> 3, tag & 7);
        let wire = containerd_shim_protos::protobuf::rt::WireType::new(wire)
            .context("decode runtimeoptions: bad wire type")?;
        if field == 2 {
            path = is.read_string().context("decode runtimeoptions")?;
        } else {
            is.skip_field(wire).context("decode runtimeoptions")?;
        }
    }
    Ok(path)
}

/// `{"binary_name": ..., "root": ...}` from a runtime config file.
fn read_config(path: &Path) -> Result<(String, String)> {
    let text =
        std::fs::read(path).with_context(|| format!("read runtime config {}", path.display()))?;
    let v: Value = serde_json::from_slice(&text)
        .with_context(|| format!("parse runtime config {}", path.display()))?;
    let obj = v
        .as_object()
        .with_context(|| format!("{}: not a JSON object", path.display()))?;
    for k in obj.keys() {
        if k != "binary_name" && k != "root" {
            bail!("{}: unknown key {k:?} (binary_name, root)", path.display());
        }
    }
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    Ok((s("binary_name"), s("root")))
}

/// A program path: as given when it has a slash, else looked up in PATH.
fn find_program(name: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exe = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        if !is_exe(&p) {
            bail!("runtime {name} is not an executable file");
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|c| is_exe(c))
        .with_context(|| format!("runtime {name} not found in PATH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_options_and_runtime_options_are_read() {
        let mut o = RuncOptions::new();
        o.binary_name = "/bin/sh".into();
        o.root = "/run/x".into();
        let mut any = Any::new();
        any.type_url = RUNC_OPTIONS.into();
        any.value = o.write_to_bytes().unwrap();
        let c = RuntimeChoice::resolve(Some(&any), "ns").unwrap();
        assert_eq!(c.binary, PathBuf::from("/bin/sh"));
        assert_eq!(c.root, PathBuf::from("/run/x"));

        let dir = std::env::temp_dir().join(format!("shimv2-ut-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("c.json");
        std::fs::write(&cfg, r#"{"binary_name": "/bin/true"}"#).unwrap();
        // runtimeoptions.v1.Options{type_url: "x", config_path: cfg}
        let p = cfg.display().to_string();
        let mut bytes = vec![0x0a, 1, b'x', 0x12, p.len() as u8];
        bytes.extend_from_slice(p.as_bytes());
        let mut any = Any::new();
        any.type_url = RUNTIME_OPTIONS.into();
        any.value = bytes;
        let c = RuntimeChoice::resolve(Some(&any), "ns").unwrap();
        assert_eq!(c.binary, PathBuf::from("/bin/true"));
        assert_eq!(c.root, PathBuf::from("/run/containerd/berth/ns"));

        std::fs::write(&cfg, r#"{"binary": "/bin/true"}"#).unwrap();
        let e = RuntimeChoice::resolve(Some(&any), "ns").unwrap_err();
        assert!(format!("{e:#}").contains("unknown key"), "{e:#}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_options_and_missing_binaries_are_errors() {
        let mut any = Any::new();
        any.type_url = "example.Other".into();
        assert!(RuntimeChoice::resolve(Some(&any), "ns").is_err());
        let mut o = RuncOptions::new();
        o.binary_name = "/no/such/runtime".into();
        any.type_url = RUNC_OPTIONS.into();
        any.value = o.write_to_bytes().unwrap();
        let e = RuntimeChoice::resolve(Some(&any), "ns").unwrap_err();
        assert!(format!("{e:#}").contains("/no/such/runtime"));
    }
}

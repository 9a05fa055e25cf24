//! The default seccomp profile: Podman's `/usr/share/containers/seccomp.json`
//! (Docker's profile format, from Debian's `golang-github-containers-common`)
//! turned into an OCI `linux.seccomp` for a container's capabilities and the
//! host's architecture, as Docker and Podman do: a rule with
//! `includes.caps` applies only if the container has all those
//! capabilities, one with `excludes.caps` only if it has none of them, and
//! `includes/excludes.arches` and `minKernel` filter the same way.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

/// Where Podman's default profile is installed.
pub const DEFAULT_PROFILE: &str = "/usr/share/containers/seccomp.json";

/// Reads `path` (Docker/Podman profile format, or already OCI) and returns
/// the OCI seccomp object for a container with `caps`.
pub fn load(path: &Path, caps: &[String]) -> Result<Value> {
    let data =
        std::fs::read(path).with_context(|| format!("read seccomp profile {}", path.display()))?;
    let v: Value = serde_json::from_slice(&data)
        .with_context(|| format!("parse seccomp profile {}", path.display()))?;
    convert(&v, caps, std::env::consts::ARCH, kernel_version())
        .with_context(|| format!("seccomp profile {}", path.display()))
}

/// The running kernel's (major, minor).
fn kernel_version() -> (u32, u32) {
    let u = nix::sys::utsname::uname().ok();
    let rel = u
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_version(&rel)
}

fn parse_version(s: &str) -> (u32, u32) {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let a = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let b = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    (a, b)
}

/// Go's name of a Rust target architecture (the profile's `arches`).
fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// libseccomp's name of the architecture.
fn scmp_arch(rust_arch: &str) -> String {
    match rust_arch {
        "x86_64" => "SCMP_ARCH_X86_64".into(),
        "x86" => "SCMP_ARCH_X86".into(),
        "aarch64" => "SCMP_ARCH_AARCH64".into(),
        "arm" => "SCMP_ARCH_ARM".into(),
        "powerpc64" => "SCMP_ARCH_PPC64LE".into(),
        "s390x" => "SCMP_ARCH_S390X".into(),
        "riscv64" => "SCMP_ARCH_RISCV64".into(),
        other => format!("SCMP_ARCH_{}", other.to_uppercase()),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Converts a profile for `caps` on `arch` (Rust's name) and `kernel`.
pub fn convert(profile: &Value, caps: &[String], arch: &str, kernel: (u32, u32)) -> Result<Value> {
    let obj = profile
        .as_object()
        .context("the profile is not a JSON object")?;
    let default_action = obj
        .get("defaultAction")
        .and_then(Value::as_str)
        .context("the profile has no defaultAction")?;
    let mut out = Map::new();
    out.insert("defaultAction".into(), json!(default_action));
    if let Some(e) = obj.get("defaultErrnoRet").filter(|v| !v.is_null()) {
        out.insert("defaultErrnoRet".into(), e.clone());
    }
    // Architectures: the host's and its sub-architectures from archMap (or
    // the profile's own list if it is already in OCI form).
    let host = scmp_arch(arch);
    let mut arches = vec![host.clone()];
    if let Some(map) = obj.get("archMap").and_then(Value::as_array) {
        for m in map {
            if m.get("architecture").and_then(Value::as_str) == Some(&host) {
                arches.extend(strings(m.get("subArchitectures")));
            }
        }
    } else if obj.get("architectures").is_some() {
        arches = strings(obj.get("architectures"));
    }
    out.insert("architectures".into(), json!(arches));
    if let Some(f) = obj.get("flags").filter(|v| !v.is_null()) {
        out.insert("flags".into(), f.clone());
    }
    let garch = go_arch(arch);
    let has = |c: &String| caps.iter().any(|x| x == c);
    let mut rules = Vec::new();
    for r in obj
        .get("syscalls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let inc = r.get("includes");
        let exc = r.get("excludes");
        let inc_caps = strings(inc.and_then(|i| i.get("caps")));
        if !inc_caps.iter().all(has) {
            continue;
        }
        let inc_arches = strings(inc.and_then(|i| i.get("arches")));
        if !inc_arches.is_empty() && !inc_arches.iter().any(|a| a == garch) {
            continue;
        }
        if let Some(mk) = inc.and_then(|i| i.get("minKernel")).and_then(Value::as_str) {
            if kernel < parse_version(mk) {
                continue;
            }
        }
        if strings(exc.and_then(|e| e.get("caps"))).iter().any(has) {
            continue;
        }
        if strings(exc.and_then(|e| e.get("arches")))
            .iter()
            .any(|a| a == garch)
        {
            continue;
        }
        let mut names = strings(r.get("names"));
        if let Some(n) = r.get("name").and_then(Value::as_str) {
            names.push(n.to_string());
        }
        if names.is_empty() {
            continue;
        }
        let mut rule = Map::new();
        rule.insert("names".into(), json!(names));
        rule.insert(
            "action".into(),
            r.get("action").cloned().context("a rule has no action")?,
        );
        if let Some(args) = r.get("args").and_then(Value::as_array) {
            if !args.is_empty() {
                rule.insert("args".into(), json!(args));
            }
        }
        if let Some(e) = r.get("errnoRet").filter(|v| !v.is_null()) {
            rule.insert("errnoRet".into(), e.clone());
        }
        rules.push(Value::Object(rule));
    }
    out.insert("syscalls".into(), json!(rules));
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Value {
        json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
            ],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [], "includes": {}, "excludes": {}},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "args": null, "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["umount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
                {"names": ["newer"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "9.1"}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        })
    }

    fn names(v: &Value) -> Vec<String> {
        v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["names"][0].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn filters_by_caps_arch_and_kernel() {
        let p = profile();
        let v = convert(&p, &[], "x86_64", (6, 1)).unwrap();
        assert_eq!(
            v["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
        assert_eq!(v["defaultErrnoRet"], 38);
        assert_eq!(names(&v), ["read", "umount", "arch_prctl", "clone"]);
        assert_eq!(v["syscalls"][1]["errnoRet"], 1);
        assert!(v["syscalls"][0].get("args").is_none());
        assert_eq!(v["syscalls"][3]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");

        let admin = vec!["CAP_SYS_ADMIN".to_string()];
        let v = convert(&p, &admin, "aarch64", (9, 2)).unwrap();
        assert_eq!(
            v["architectures"],
            json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
        );
        assert_eq!(names(&v), ["read", "mount", "newer", "clone"]);
    }

    #[test]
    fn the_installed_profile_converts() {
        let p = Path::new(DEFAULT_PROFILE);
        if !p.exists() {
            return; // golang-github-containers-common not installed
        }
        let v = load(p, &["CAP_CHOWN".to_string()]).unwrap();
        let all: Vec<String> = v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| strings(r.get("names")))
            .collect();
        assert!(all.iter().any(|n| n == "openat"));
        // Only allowed with CAP_SYS_MODULE, which the container lacks: the
        // EPERM rule for it is there instead.
        let rule = v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| strings(r.get("names")).iter().any(|n| n == "init_module"))
            .unwrap();
        assert_eq!(rule["action"], "SCMP_ACT_ERRNO");
    }
}

//! A container's [`RunSpec`] from its image config and the `pier run`
//! flags, as Docker combines them: `--entrypoint` replaces the image's
//! entrypoint (and drops its command), a command replaces the image's
//! command, `-e` and `--env-file` extend the image's environment, `-w` and
//! `-u` override the image's, and volumes, tmpfs and limits come from the
//! flags.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::container::RunSpec;
use super::spec;

/// Parses a size: `512`, `64k`, `512m`, `2g` (binary units, as Docker).
pub fn parse_size(s: &str) -> Result<i64> {
    let t = s.trim().to_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a size (e.g. 512m, 1g)"))?;
    if n <= 0.0 {
        bail!("{s:?}: a size must be positive");
    }
    Ok((n * mul as f64) as i64)
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

/// Reads `--env-file` lines (`K=V`, `K` alone takes the host's value;
/// `#` comments and blank lines skipped).
pub fn env_file(p: &Path) -> Result<Vec<String>> {
    let t = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
    Ok(t.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(env_entry)
        .collect())
}

/// `K=V` as is; `K` takes the host's value (dropped if unset).
pub fn env_entry(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_string())
    } else {
        std::env::var(e).ok().map(|v| format!("{e}={v}"))
    }
}

/// Adds or replaces `K=V` in `env`.
pub fn set_env(env: &mut Vec<String>, kv: &str) {
    let k = kv.split('=').next().unwrap_or(kv);
    env.retain(|e| e.split('=').next() != Some(k));
    env.push(kv.to_string());
}

/// `-v SRC:DST[:ro|rw]`: a host path (absolute) or a named volume under
/// `ROOT/volumes/NAME/_data`.
pub fn volume(v: &str, root: &Path) -> Result<Value> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, ro) = match parts[..] {
        [s, d] => (s, d, false),
        [s, d, o] => match o {
            "ro" => (s, d, true),
            "rw" | "z" | "Z" => (s, d, false),
            _ => bail!("-v {v}: unknown option {o:?} (ro or rw)"),
        },
        _ => bail!("-v {v}: expected SRC:DST[:ro]"),
    };
    if !dst.starts_with('/') {
        bail!("-v {v}: the container path must be absolute");
    }
    let src = named_or_host(src, root, v)?;
    Ok(spec::bind(&src, dst, ro))
}

fn named_or_host(src: &str, root: &Path, what: &str) -> Result<String> {
    if src.starts_with('/') {
        if !Path::new(src).exists() {
            bail!("{what}: {src} does not exist on the host");
        }
        return Ok(src.to_string());
    }
    if src.is_empty()
        || !src
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        bail!("{what}: invalid volume name {src:?}");
    }
    let d = root.join("volumes").join(src).join("_data");
    std::fs::create_dir_all(&d).with_context(|| format!("create volume {}", d.display()))?;
    Ok(d.to_string_lossy().into_owned())
}

/// `--mount type=bind|volume|tmpfs,source=..,target=..[,readonly]`.
pub fn mount_flag(m: &str, root: &Path) -> Result<Value> {
    let mut typ = "volume".to_string();
    let (mut src, mut dst, mut ro, mut size) = (None, None, false, None);
    for kv in m.split(',') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "type" => typ = v.to_string(),
            "source" | "src" => src = Some(v.to_string()),
            "target" | "destination" | "dst" => dst = Some(v.to_string()),
            "readonly" | "ro" => ro = v.is_empty() || v == "true" || v == "1",
            "tmpfs-size" => size = Some(parse_size(v)?),
            _ => bail!("--mount {m}: unknown option {k:?}"),
        }
    }
    let dst = dst.with_context(|| format!("--mount {m}: target is required"))?;
    if !dst.starts_with('/') {
        bail!("--mount {m}: the target must be absolute");
    }
    match typ.as_str() {
        "bind" | "volume" => {
            let src = src.with_context(|| format!("--mount {m}: source is required"))?;
            if typ == "bind" && !src.starts_with('/') {
                bail!("--mount {m}: a bind source must be an absolute path");
            }
            Ok(spec::bind(&named_or_host(&src, root, m)?, &dst, ro))
        }
        "tmpfs" => {
            let mut o = vec!["nosuid".to_string(), "nodev".to_string()];
            if let Some(s) = size {
                o.push(format!("size={s}"));
            }
            Ok(json!({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": o}))
        }
        t => bail!("--mount {m}: unknown type {t:?}"),
    }
}

/// `--tmpfs /path[:opts]`.
pub fn tmpfs(t: &str) -> Result<Value> {
    let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
    if !dst.starts_with('/') {
        bail!("--tmpfs {t}: the path must be absolute");
    }
    let mut o = vec![
        "nosuid".to_string(),
        "nodev".to_string(),
        "noexec".to_string(),
    ];
    o.extend(
        opts.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    );
    Ok(json!({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": o}))
}

/// The process part of the spec from the image config and flags.
pub struct ProcessFlags<'a> {
    /// `--entrypoint` (Some("") clears it).
    pub entrypoint: Option<&'a str>,
    /// The command after the image.
    pub command: &'a [String],
    /// `-e` and `--env-file` entries, in order.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<&'a str>,
    /// `-u`.
    pub user: Option<&'a str>,
    /// `-t`.
    pub tty: bool,
    /// The hostname.
    pub hostname: &'a str,
}

/// Fills `s.args`, `env`, `cwd`, `user`, `stop_signal` from the image
/// config (`config` is the image's whole config JSON).
pub fn process(s: &mut RunSpec, config: &Value, f: &ProcessFlags<'_>) -> Result<()> {
    let c = &config["config"];
    let entry = match f.entrypoint {
        Some("") => Vec::new(),
        Some(e) => vec![e.to_string()],
        None => strings(c.get("Entrypoint")),
    };
    let cmd = if !f.command.is_empty() {
        f.command.to_vec()
    } else if f.entrypoint.is_some() {
        Vec::new()
    } else {
        strings(c.get("Cmd"))
    };
    let mut args = entry;
    args.extend(cmd);
    if args.is_empty() {
        bail!("no command specified (the image has no CMD or ENTRYPOINT)");
    }
    s.args = args;
    let mut env = strings(c.get("Env"));
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, spec::DEFAULT_PATH.into());
    }
    set_env(&mut env, &format!("HOSTNAME={}", f.hostname));
    if f.tty {
        set_env(&mut env, "TERM=xterm");
    }
    for e in &f.env {
        set_env(&mut env, e);
    }
    s.env = env;
    s.cwd = f
        .workdir
        .map(str::to_string)
        .or_else(|| {
            c.get("WorkingDir")
                .and_then(Value::as_str)
                .filter(|w| !w.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "/".into());
    if !s.cwd.starts_with('/') {
        bail!("-w {}: the working directory must be absolute", s.cwd);
    }
    s.user = f
        .user
        .map(str::to_string)
        .or_else(|| c.get("User").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    if s.stop_signal.is_empty() {
        s.stop_signal = c
            .get("StopSignal")
            .and_then(Value::as_str)
            .unwrap_or("SIGTERM")
            .to_string();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags<'a>(cmd: &'a [String]) -> ProcessFlags<'a> {
        ProcessFlags {
            entrypoint: None,
            command: cmd,
            env: vec!["A=2".into()],
            workdir: None,
            user: None,
            tty: false,
            hostname: "h",
        }
    }

    #[test]
    fn image_config_and_flags_combine() {
        let cfg = json!({"config": {"Entrypoint": ["/ep"], "Cmd": ["a"], "Env": ["A=1", "B=1"],
                                    "WorkingDir": "/app", "User": "app", "StopSignal": "SIGINT"}});
        let mut s = RunSpec::default();
        process(&mut s, &cfg, &flags(&[])).unwrap();
        assert_eq!(s.args, ["/ep", "a"]);
        assert!(s.env.contains(&"A=2".to_string()) && s.env.contains(&"B=1".to_string()));
        assert!(s.env.iter().any(|e| e.starts_with("PATH=")));
        assert_eq!((s.cwd.as_str(), s.user.as_str()), ("/app", "app"));
        assert_eq!(s.stop_signal, "SIGINT");
        let cmd = vec!["b".to_string()];
        let mut s = RunSpec::default();
        process(&mut s, &cfg, &flags(&cmd)).unwrap();
        assert_eq!(s.args, ["/ep", "b"]);
        let mut f = flags(&[]);
        f.entrypoint = Some("/other");
        let mut s = RunSpec::default();
        process(&mut s, &cfg, &f).unwrap();
        assert_eq!(s.args, ["/other"], "--entrypoint drops the image's CMD");
        let mut s = RunSpec::default();
        assert!(process(&mut s, &json!({"config": {}}), &flags(&[])).is_err());
    }

    #[test]
    fn sizes_and_mounts() {
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("x").is_err());
        let root = std::env::temp_dir().join(format!("pier-vol-{}", std::process::id()));
        let v = volume("/tmp:/data:ro", &root).unwrap();
        assert_eq!(v["destination"], "/data");
        assert!(v["options"].as_array().unwrap().contains(&json!("ro")));
        let v = volume("myvol:/data", &root).unwrap();
        assert!(v["source"]
            .as_str()
            .unwrap()
            .ends_with("volumes/myvol/_data"));
        assert!(volume("/tmp:rel", &root).is_err());
        assert!(volume("/nonexistent-pier:/x", &root).is_err());
        let t = tmpfs("/run:size=1m").unwrap();
        assert_eq!(t["type"], "tmpfs");
        let m = mount_flag("type=tmpfs,target=/scratch,tmpfs-size=1m", &root).unwrap();
        assert_eq!(m["destination"], "/scratch");
        std::fs::remove_dir_all(&root).unwrap();
    }
}

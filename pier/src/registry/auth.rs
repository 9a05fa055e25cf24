//! Registry authentication: the `WWW-Authenticate` challenge flow of the
//! distribution spec (Basic, or Bearer with a token from the realm named in
//! the challenge) and credentials stored like Docker's `config.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// A user name and password (or identity token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password; never printed.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ****)", self.username)
    }
}

impl Credentials {
    /// The `Authorization: Basic` value.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`.
    Basic,
    /// `Bearer realm=...,service=...,scope=...`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter, if given.
        service: Option<String>,
        /// `scope` parameter, if given.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value (one challenge; parameters as
/// `key="quoted value"` or `key=token`, comma separated).
pub fn parse_challenge(h: &str) -> Result<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Ok(Challenge::Basic),
        "bearer" => {
            let realm = params
                .get("realm")
                .cloned()
                .context("Bearer challenge without realm")?;
            Ok(Challenge::Bearer {
                realm,
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            })
        }
        other => bail!("unsupported authentication scheme {other:?}"),
    }
}

fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        // RFC 9110 allows spaces on both sides of the `=`.
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let value = if chars.peek() == Some(&'"') {
            // A quoted string is taken as written, spaces included.
            chars.next();
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
            value
        } else {
            let token: String = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
            token.trim().to_string()
        };
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    out
}

/// The token endpoint's answer.
#[derive(Deserialize)]
pub struct TokenResponse {
    /// Docker's field.
    #[serde(default)]
    pub token: Option<String>,
    /// OAuth2's field.
    #[serde(default)]
    pub access_token: Option<String>,
    /// Lifetime in seconds (60 if absent, as the spec says).
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// The credentials file: `{"auths": {"HOST": {"auth": base64("user:pass")}}}`
/// as Docker's `config.json`, written with mode 0600.
#[derive(Default, Serialize, Deserialize)]
pub struct AuthFile {
    /// Per-registry entries.
    #[serde(default)]
    pub auths: BTreeMap<String, AuthEntry>,
    /// Anything else in the file is kept as is.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// One registry's entry.
#[derive(Default, Serialize, Deserialize)]
pub struct AuthEntry {
    /// base64 of `user:password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// Kept from files written by other tools.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl AuthFile {
    /// The default path: `$PIER_AUTH_FILE`, else `$HOME/.pier/config.json`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("PIER_AUTH_FILE") {
            return PathBuf::from(p);
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"));
        home.join(".pier/config.json")
    }

    /// Reads `path`; a missing file is empty.
    pub fn load(path: &Path) -> Result<AuthFile> {
        match std::fs::read(path) {
            Ok(b) => {
                serde_json::from_slice(&b).with_context(|| format!("parse {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthFile::default()),
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }

    /// Writes `path` atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("create {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(self)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))
    }

    /// The credentials stored for `registry`.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>> {
        let keys = [
            registry.to_string(),
            format!("https://{registry}"),
            format!("http://{registry}"),
        ];
        let mut found = keys.iter().filter_map(|k| self.auths.get(k));
        if registry == "docker.io" && found.clone().next().is_none() {
            return self.get("https://index.docker.io/v1/");
        }
        let Some(auth) = found.next().and_then(|e| e.auth.as_deref()) else {
            return Ok(None);
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .with_context(|| format!("credentials for {registry}: bad base64"))?;
        let raw = String::from_utf8(raw).with_context(|| format!("credentials for {registry}"))?;
        let (u, p) = raw
            .split_once(':')
            .with_context(|| format!("credentials for {registry}: no ':'"))?;
        Ok(Some(Credentials {
            username: u.into(),
            password: p.into(),
        }))
    }

    /// Stores credentials for `registry`.
    pub fn set(&mut self, registry: &str, c: &Credentials) {
        let raw = format!("{}:{}", c.username, c.password);
        let e = self.auths.entry(registry.to_string()).or_default();
        e.auth = Some(base64::engine::general_purpose::STANDARD.encode(raw));
    }

    /// Forgets `registry`; true if it was there.
    pub fn remove(&mut self, registry: &str) -> bool {
        self.auths.remove(registry).is_some()
    }
}

/// Looks up credentials for `registry` in `path`, then in Docker's
/// `~/.docker/config.json` (plain `auth` entries only).
pub fn lookup(path: &Path, registry: &str) -> Result<Option<Credentials>> {
    if let Some(c) = AuthFile::load(path)?.get(registry)? {
        return Ok(Some(c));
    }
    let docker = std::env::var_os("DOCKER_CONFIG")
        .map(|d| PathBuf::from(d).join("config.json"))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")));
    match docker {
        Some(p) if p != path && p.exists() => AuthFile::load(&p)?.get(registry),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:1/token",service="reg istry",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: Some("reg istry".into()),
                scope: Some("repository:a/b:pull,push".into())
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#).unwrap(),
            Challenge::Basic
        );
        assert!(parse_challenge("Bearer service=x").is_err());
        assert!(parse_challenge("Negotiate").is_err());
    }

    #[test]
    fn quoted_values_are_verbatim_and_may_follow_spaces() {
        // Caught by fuzz/fuzz_targets/www_authenticate.rs: spaces after `=`
        // made the quotes part of the value, and quoted values lost their
        // leading and trailing spaces.
        assert_eq!(
            parse_challenge(r#"Bearer realm = "http://r/token" , scope= " a b ",service=s"#)
                .unwrap(),
            Challenge::Bearer {
                realm: "http://r/token".into(),
                service: Some("s".into()),
                scope: Some(" a b ".into())
            }
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm="x\"y\\",service="""#).unwrap(),
            Challenge::Bearer {
                realm: r#"x"y\"#.into(),
                service: Some(String::new()),
                scope: None
            }
        );
    }

    #[test]
    fn auth_file_round_trip_keeps_other_fields() {
        let dir = std::env::temp_dir().join(format!("pier-auth-test-{}", std::process::id()));
        let p = dir.join("config.json");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            &p,
            r#"{"auths":{"x":{"auth":"dTpw","email":"e"}},"credsStore":"none"}"#,
        )
        .unwrap();
        let mut f = AuthFile::load(&p).unwrap();
        assert_eq!(f.get("x").unwrap().unwrap().password, "p");
        f.set(
            "127.0.0.1:5000",
            &Credentials {
                username: "a".into(),
                password: "b:c".into(),
            },
        );
        f.save(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("credsStore") && text.contains("email"),
            "{text}"
        );
        let f = AuthFile::load(&p).unwrap();
        assert_eq!(f.get("127.0.0.1:5000").unwrap().unwrap().password, "b:c");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

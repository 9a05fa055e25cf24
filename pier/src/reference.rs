//! Image references parsed as Docker parses them (the grammar of Docker's
//! `reference` package, and its Docker Hub normalization: `busybox` →
//! `docker.io/library/busybox:latest`), plus an `http://` prefix that marks
//! a plain-HTTP registry.
//!
//! Written here rather than taken from `oci-spec`'s `distribution::Reference`:
//! that one matches a Unicode-aware regular expression whose compilation
//! costs about 100 ms in every process, more than a whole small pull.

use std::fmt;

use anyhow::{bail, Context, Result};

use crate::digest::Digest;

/// A parsed, normalized image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    /// Tag, if any (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// Digest, if any.
    pub digest: Option<Digest>,
    /// True when written as `http://host/...`: talk plain HTTP to this registry.
    pub plain_http: bool,
}

impl ImageRef {
    /// Parses a reference like Docker does; an `http://` prefix marks a
    /// plain-HTTP registry (`https://` is accepted and ignored).
    pub fn parse(s: &str) -> Result<ImageRef> {
        let (rest, plain_http) = if let Some(r) = s.strip_prefix("http://") {
            (r, true)
        } else if let Some(r) = s.strip_prefix("https://") {
            (r, false)
        } else {
            (s, false)
        };
        parse_docker(rest, plain_http).with_context(|| format!("invalid image reference {s:?}"))
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry for: the digest if any, else the tag.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> ImageRef {
        ImageRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The host to connect to: Docker Hub's API lives at
    /// `registry-1.docker.io`, not `docker.io`.
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }
}

/// Docker's `ParseNormalizedNamed` for `name[:tag][@digest]`.
fn parse_docker(s: &str, plain_http: bool) -> Result<ImageRef> {
    if s.is_empty() {
        bail!("empty reference");
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(Digest::parse(d)?)),
        None => (s, None),
    };
    // A ':' after the last '/' starts the tag (a ':' before it is a port).
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(t) = tag {
        let ok = t.len() <= 128
            && t.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            bail!("invalid tag {t:?}");
        }
    }
    if name.len() > 255 {
        bail!("repository name longer than 255 characters");
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            check_domain(first)?;
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let registry = if registry == "index.docker.io" {
        "docker.io".to_string()
    } else {
        registry
    };
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        bail!("repository name must be lowercase");
    }
    for c in path.split('/') {
        check_path_component(c)?;
    }
    let repository = if registry == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_string()),
    };
    Ok(ImageRef {
        registry,
        repository,
        tag,
        digest,
        plain_http,
    })
}

/// `host[:port]`: dot-separated components of `[A-Za-z0-9]` with inner
/// `-`, or a bracketed IPv6 address.
fn check_domain(d: &str) -> Result<()> {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').context("unclosed '[' in registry")?;
        if ip.is_empty() || !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            bail!("invalid IPv6 registry address {d:?}");
        }
        (None, after.strip_prefix(':'))
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(h) = host {
        for c in h.split('.') {
            let b = c.as_bytes();
            let ok = !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-');
            if !ok {
                bail!("invalid registry host {d:?}");
            }
        }
    }
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            bail!("invalid registry port in {d:?}");
        }
    }
    Ok(())
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn check_path_component(c: &str) -> Result<()> {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        bail!("invalid repository path component {c:?}");
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            bail!("invalid separator {sep:?} in repository path component {c:?}");
        }
    }
    Ok(())
}

impl fmt::Display for ImageRef {
    /// The canonical name stored in the index: `registry/repo:tag`,
    /// `registry/repo@digest` or `registry/repo:tag@digest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = ImageRef::parse("user/app:1.0").unwrap();
        assert_eq!(r.to_string(), "docker.io/user/app:1.0");
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/a/b@{d}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag, None);
        assert_eq!(r.reference(), d);
        assert_eq!(
            ImageRef::parse("index.docker.io/a/b").unwrap().to_string(),
            "docker.io/a/b:latest"
        );
        assert_eq!(
            ImageRef::parse("a-b.c-d/e--f__g:v1.0_x-y")
                .unwrap()
                .registry,
            "a-b.c-d"
        );
        let r = ImageRef::parse("[::1]:5000/x:1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("[::1]:5000", "x")
        );
        let r = ImageRef::parse("Host/x").unwrap();
        assert_eq!(r.registry, "Host");
        let r = ImageRef::parse("localhost/x").unwrap();
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.to_string(), "localhost/x:latest");
    }

    #[test]
    fn http_prefix_means_plain_http() {
        let r = ImageRef::parse("http://127.0.0.1:5000/busybox:1").unwrap();
        assert!(r.plain_http);
        assert_eq!(r.to_string(), "127.0.0.1:5000/busybox:1");
        assert!(
            !ImageRef::parse("127.0.0.1:5000/busybox")
                .unwrap()
                .plain_http
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "upper/Case",
            "a b",
            "x@sha256:123",
            "x@md5:0123",
            "-x",
            "x::y",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}

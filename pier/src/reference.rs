//! Image references parsed as Docker parses them.
//!
//! The grammar and Docker Hub normalization (`busybox` →
//! `docker.io/library/busybox:latest`) come from `oci-spec`'s
//! `distribution::Reference`, a port of Docker's own `reference` package; this
//! module adds the `http://` prefix that marks a plain-HTTP registry and the
//! checks that the digest part is one the store accepts.

use std::fmt;

use anyhow::{Context, Result};
use oci_spec::distribution::Reference;

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
        let r = Reference::try_from(rest)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("invalid image reference {s:?}"))?;
        // Docker refuses upper case in repository names; oci-spec's grammar
        // lets it through after the domain split.
        if r.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            anyhow::bail!("invalid image reference {s:?}: repository name must be lowercase");
        }
        let digest = match r.digest() {
            Some(d) => Some(Digest::parse(d).with_context(|| format!("image reference {s:?}"))?),
            None => None,
        };
        Ok(ImageRef {
            registry: r.registry().to_string(),
            repository: r.repository().to_string(),
            tag: r.tag().map(str::to_string),
            digest,
            plain_http,
        })
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
            "UPPER/case",
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

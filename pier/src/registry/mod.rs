//! A client for one repository of an OCI distribution (Docker registry v2)
//! registry.
//!
//! HTTP is `ureq` (synchronous, small, rustls for TLS): pier moves a few
//! blobs at a time on plain threads and has no use for an async runtime.
//! Authentication follows the challenge flow: a request that gets 401 reads
//! `WWW-Authenticate`, gets Basic credentials or a Bearer token for the
//! needed scope, and is sent again; a token is refreshed when it expires or
//! is refused.

pub mod auth;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ureq::http::{self, Response};
use ureq::{Body, SendBody};

use crate::digest::Digest;
use crate::image::MANIFEST_ACCEPT;
use crate::reference::ImageRef;
use crate::store::MAX_JSON_BLOB;
use auth::{parse_challenge, Challenge, Credentials, TokenResponse};

/// How to reach a registry.
#[derive(Clone, Debug)]
pub struct Options {
    /// Registries (host or host:port) spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// Connect timeout, time to the response headers, and the longest
    /// silence while reading a body.
    pub timeout: Duration,
    /// Credentials for this registry, if any.
    pub credentials: Option<Credentials>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            insecure: Vec::new(),
            timeout: Duration::from_secs(30),
            credentials: None,
        }
    }
}

/// A request body that can be sent again after an authentication retry.
pub enum ReqBody<'a> {
    /// No body.
    Empty,
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`.
    File {
        /// The file.
        path: &'a Path,
        /// Start offset.
        offset: u64,
        /// Length.
        len: u64,
    },
}

struct AuthState {
    header: Option<String>,
    expires: Option<Instant>,
    challenge: Option<Challenge>,
}

/// A client for one repository.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// The registry host as written in references.
    pub registry: String,
    /// The repository.
    pub repository: String,
    scopes: Vec<String>,
    credentials: Option<Credentials>,
    auth: Mutex<AuthState>,
}

impl Client {
    /// A client for `r`'s repository asking for `actions` (`pull` or
    /// `pull,push`) and, for cross-repository mounts, pull access to
    /// `extra_pull` repositories.
    pub fn new(
        r: &ImageRef,
        opts: &Options,
        actions: &str,
        extra_pull: &[String],
    ) -> Result<Client> {
        let plain = r.plain_http || opts.insecure.iter().any(|h| h == &r.registry);
        let scheme = if plain { "http" } else { "https" };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(opts.timeout))
            .timeout_recv_response(Some(opts.timeout))
            .timeout_per_read(Some(opts.timeout))
            .timeout_per_write(Some(opts.timeout))
            .max_redirects(5)
            .user_agent(concat!("pier/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let mut scopes = vec![format!("repository:{}:{actions}", r.repository)];
        scopes.extend(extra_pull.iter().map(|x| format!("repository:{x}:pull")));
        Ok(Client {
            agent,
            base: format!("{scheme}://{}", r.api_host()),
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            scopes,
            credentials: opts.credentials.clone(),
            auth: Mutex::new(AuthState {
                header: None,
                expires: None,
                challenge: None,
            }),
        })
    }

    /// `BASE/v2/REPO/PATH`.
    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    /// Resolves a `Location` header (absolute or relative to the registry).
    fn absolute(&self, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            format!(
                "{}{}{loc}",
                self.base,
                if loc.starts_with('/') { "" } else { "/" }
            )
        }
    }

    /// Sends a request, authenticating and retrying on 401 and retrying
    /// transient failures (connection errors, 5xx) of idempotent methods.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &ReqBody,
    ) -> Result<Response<Body>> {
        let idempotent = matches!(method, "GET" | "HEAD");
        let mut auth_tries = 0;
        let mut transient_tries = 0;
        loop {
            // Credentials go only to the registry itself, never to another
            // host an upload Location points at.
            let same_host = url.starts_with(&format!("{}/", self.base));
            let auth = if same_host {
                self.current_auth()?
            } else {
                None
            };
            let r = self.send_once(method, url, headers, body, auth.as_deref());
            let resp = match r {
                Err(e) if idempotent && transient_tries < 2 => {
                    transient_tries += 1;
                    std::thread::sleep(Duration::from_millis(200 * transient_tries));
                    let _ = e;
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("{method} {url}")),
                Ok(r) => r,
            };
            let status = resp.status().as_u16();
            if status == 401 && auth_tries < 2 {
                auth_tries += 1;
                let ch = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .map(parse_challenge)
                    .transpose()?;
                let Some(ch) = ch else { return Ok(resp) };
                if !self.authenticate(ch, auth.is_some())? {
                    return Ok(resp);
                }
                continue;
            }
            if status >= 500 && idempotent && transient_tries < 2 {
                transient_tries += 1;
                std::thread::sleep(Duration::from_millis(200 * transient_tries));
                continue;
            }
            return Ok(resp);
        }
    }

    fn send_once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &ReqBody,
        auth: Option<&str>,
    ) -> Result<Response<Body>> {
        let mut b = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        let resp = match body {
            ReqBody::Empty => {
                if matches!(method, "GET" | "HEAD") {
                    self.agent.run(b.body(())?)?
                } else {
                    self.agent
                        .run(b.header("Content-Length", "0").body(SendBody::none())?)?
                }
            }
            ReqBody::Bytes(d) => self
                .agent
                .run(b.header("Content-Length", d.len().to_string()).body(*d)?)?,
            ReqBody::File { path, offset, len } => {
                let mut f = File::open(path).with_context(|| format!("open {}", path.display()))?;
                f.seek(SeekFrom::Start(*offset))?;
                let r = f.take(*len);
                self.agent.run(
                    b.header("Content-Length", len.to_string())
                        .body(SendBody::from_owned_reader(r))?,
                )?
            }
        };
        Ok(resp)
    }

    /// The Authorization header to send now (refreshing an expired token).
    fn current_auth(&self) -> Result<Option<String>> {
        let st = self.auth.lock().unwrap();
        if let (Some(exp), Some(ch)) = (st.expires, st.challenge.clone()) {
            if Instant::now() >= exp {
                drop(st);
                self.authenticate(ch, false)?;
                return Ok(self.auth.lock().unwrap().header.clone());
            }
        }
        Ok(st.header.clone())
    }

    /// Answers a challenge. Returns false when nothing more can be tried
    /// (the caller then reports the 401).
    fn authenticate(&self, ch: Challenge, had_auth: bool) -> Result<bool> {
        match &ch {
            Challenge::Basic => {
                let Some(c) = &self.credentials else {
                    return Ok(false);
                };
                let mut st = self.auth.lock().unwrap();
                if had_auth && st.header.as_deref() == Some(&c.basic_header()) {
                    return Ok(false); // these credentials were refused
                }
                st.header = Some(c.basic_header());
                st.challenge = Some(ch);
                Ok(true)
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let (token, ttl) = self.fetch_token(realm, service.as_deref(), scope.as_deref())?;
                let mut st = self.auth.lock().unwrap();
                let header = format!("Bearer {token}");
                if had_auth && st.header.as_deref() == Some(&header) {
                    return Ok(false);
                }
                st.header = Some(header);
                // Refresh a little before the token runs out.
                st.expires = Some(Instant::now() + Duration::from_secs(ttl.max(10) - 5));
                st.challenge = Some(ch);
                Ok(true)
            }
        }
    }

    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<(String, u64)> {
        let mut url = realm.to_string();
        let mut sep = if realm.contains('?') { '&' } else { '?' };
        let mut add = |k: &str, v: &str| {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.push_str(&encode_query(v));
            sep = '&';
        };
        if let Some(s) = service {
            add("service", s);
        }
        let mut scopes = self.scopes.clone();
        if let Some(s) = scope {
            if !scopes.iter().any(|x| x == s) {
                scopes.push(s.to_string());
            }
        }
        for s in &scopes {
            add("scope", s);
        }
        let mut b = http::Request::builder().method("GET").uri(&url);
        if let Some(c) = &self.credentials {
            b = b.header("Authorization", c.basic_header());
        }
        let mut resp = self
            .agent
            .run(b.body(())?)
            .with_context(|| format!("get a token from {realm}"))?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            bail!(
                "{}: the token server {realm} refused {} ({status})",
                self.registry,
                if self.credentials.is_some() {
                    "the credentials"
                } else {
                    "anonymous access; log in with `pier login`"
                }
            );
        }
        if status != 200 {
            bail!("{}: token server {realm} answered {status}", self.registry);
        }
        let raw = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .with_context(|| format!("read the token from {realm}"))?;
        let t: TokenResponse = serde_json::from_slice(&raw)
            .with_context(|| format!("parse the token from {realm}"))?;
        let token = t.token.or(t.access_token).filter(|t| !t.is_empty());
        let token = token.with_context(|| format!("token server {realm} sent no token"))?;
        Ok((token, t.expires_in.unwrap_or(60)))
    }

    /// Checks that the registry answers and the credentials are accepted
    /// (`GET /v2/`, authenticated for this repository's scope).
    pub fn ping(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let resp = self.send("GET", &url, &[], &ReqBody::Empty)?;
        check(resp, &format!("{}: login", self.registry)).map(|_| ())
    }

    /// Fetches a manifest or index by tag or digest: its bytes, media type
    /// and digest (checked against the reference when it is a digest).
    pub fn get_manifest(&self, reference: &str) -> Result<(Vec<u8>, Option<String>, Digest)> {
        let what = format!("{}/{}:{reference}", self.registry, self.repository);
        let resp = self.send(
            "GET",
            &self.url(&format!("manifests/{reference}")),
            &[("Accept", MANIFEST_ACCEPT)],
            &ReqBody::Empty,
        )?;
        let mut resp = check(resp, &format!("manifest {what}"))?;
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_JSON_BLOB)
            .read_to_vec()
            .with_context(|| format!("read manifest {what}"))?;
        let digest = Digest::of(&bytes);
        if reference.starts_with("sha256:") && digest.as_str() != reference {
            bail!("manifest {what}: content has digest {digest}, not the one asked for");
        }
        Ok((bytes, ct, digest))
    }

    /// Starts downloading a blob; the body is streamed by the caller.
    pub fn get_blob(&self, d: &Digest) -> Result<Response<Body>> {
        let resp = self.send(
            "GET",
            &self.url(&format!("blobs/{d}")),
            &[],
            &ReqBody::Empty,
        )?;
        check(resp, &format!("blob {d}"))
    }

    /// True if the repository has the blob.
    pub fn has_blob(&self, d: &Digest) -> Result<bool> {
        let resp = self.send(
            "HEAD",
            &self.url(&format!("blobs/{d}")),
            &[],
            &ReqBody::Empty,
        )?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => check(resp, &format!("blob {d}")).map(|_| false),
        }
    }

    /// Tries to mount `d` from repository `from` on the same registry.
    /// Returns `Ok(None)` when mounted, or the upload URL the registry
    /// started instead.
    pub fn mount_blob(&self, d: &Digest, from: &str) -> Result<Option<String>> {
        let url = self.url(&format!(
            "blobs/uploads/?mount={d}&from={}",
            encode_query(from)
        ));
        let resp = self.send("POST", &url, &[], &ReqBody::Empty)?;
        let status = resp.status().as_u16();
        let resp = check(resp, &format!("mount blob {d} from {from}"))?;
        if status == 201 {
            return Ok(None);
        }
        Ok(Some(self.location(&resp)?))
    }

    /// Starts an upload session; returns its URL.
    pub fn start_upload(&self) -> Result<String> {
        let resp = self.send("POST", &self.url("blobs/uploads/"), &[], &ReqBody::Empty)?;
        let resp = check(resp, "start blob upload")?;
        self.location(&resp)
    }

    fn location(&self, resp: &Response<Body>) -> Result<String> {
        let loc = resp.headers().get("location").and_then(|v| v.to_str().ok());
        Ok(self.absolute(loc.context("registry sent no upload Location")?))
    }

    /// Uploads blob `d` (the file at `path`, `size` bytes) to the session at
    /// `url`: in one PUT, or in PATCH chunks of `chunk` bytes then a PUT.
    pub fn upload_blob(
        &self,
        url: &str,
        d: &Digest,
        path: &Path,
        size: u64,
        chunk: Option<u64>,
    ) -> Result<()> {
        let mut url = url.to_string();
        let what = format!("upload blob {d}");
        if let Some(chunk) = chunk.filter(|c| *c > 0 && *c < size) {
            let mut offset = 0;
            while offset < size {
                let len = chunk.min(size - offset);
                let range = format!("{offset}-{}", offset + len - 1);
                let resp = self.send(
                    "PATCH",
                    &url,
                    &[
                        ("Content-Type", "application/octet-stream"),
                        ("Content-Range", &range),
                    ],
                    &ReqBody::File { path, offset, len },
                )?;
                let resp = check(resp, &what)?;
                url = self.location(&resp)?;
                offset += len;
            }
            let put = with_digest(&url, d);
            check(self.send("PUT", &put, &[], &ReqBody::Empty)?, &what)?;
        } else {
            let put = with_digest(&url, d);
            let body = ReqBody::File {
                path,
                offset: 0,
                len: size,
            };
            check(
                self.send(
                    "PUT",
                    &put,
                    &[("Content-Type", "application/octet-stream")],
                    &body,
                )?,
                &what,
            )?;
        }
        Ok(())
    }

    /// Uploads a small blob from memory (config) in one request.
    pub fn upload_bytes(&self, url: &str, d: &Digest, data: &[u8]) -> Result<()> {
        let put = with_digest(url, d);
        let resp = self.send(
            "PUT",
            &put,
            &[("Content-Type", "application/octet-stream")],
            &ReqBody::Bytes(data),
        )?;
        check(resp, &format!("upload blob {d}")).map(|_| ())
    }

    /// Puts a manifest under `reference` (a tag or its digest).
    pub fn put_manifest(&self, reference: &str, bytes: &[u8], media_type: &str) -> Result<()> {
        let resp = self.send(
            "PUT",
            &self.url(&format!("manifests/{reference}")),
            &[("Content-Type", media_type)],
            &ReqBody::Bytes(bytes),
        )?;
        check(
            resp,
            &format!(
                "put manifest {}/{}:{reference}",
                self.registry, self.repository
            ),
        )
        .map(|_| ())
    }
}

fn with_digest(url: &str, d: &Digest) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={}", encode_query(d.as_str()))
}

/// Percent-encodes a query value.
fn encode_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Turns a non-2xx response into an error naming `what`, the status and
/// the registry's error codes.
pub fn check(mut resp: Response<Body>, what: &str) -> Result<Response<Body>> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_string()
        .unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("errors").and_then(|e| e.as_array()).cloned())
        .map(|errs| {
            errs.iter()
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                    format!("{code}: {msg}")
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    let hint = match status.as_u16() {
        401 => " (authentication required: use `pier login`)",
        403 => " (access denied)",
        404 => " (not found)",
        _ => "",
    };
    Err(anyhow!(
        "{what}: registry answered {status}{hint}{}",
        if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        }
    ))
}

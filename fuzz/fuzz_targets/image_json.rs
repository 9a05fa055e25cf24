//! pier's reading of image JSON from registries and archives
//! (`pier::image`): manifests (OCI and Docker schema2), indexes (manifest
//! lists) and image configs.
//!
//! The input is JSON. If it holds a line `---`, the part before is a
//! manifest and the part after its config; otherwise the whole input is
//! tried as each. Checks:
//! - [`parse_manifest`] never panics, whatever the `Content-Type`; it
//!   answers an index only for an index media type (or, without one, a
//!   `manifests` list) and a manifest only for a manifest media type (or
//!   none); schema1 is refused; the parsed `mediaType` is the one written;
//!   what it accepts survives being written back and parsed again;
//! - descriptor digests that [`desc_digest`] accepts are `sha256:` and 64
//!   lowercase hex digits and read the same back; sizes are kept;
//!   [`Image::size`] (what `pier images` shows) never overflows;
//! - [`layers_of`] pairs a manifest with its config only when they have as
//!   many layers as diff-ids, and keeps each layer's digest, size, media
//!   type and diff-id;
//! - [`select_platform`] answers only a descriptor of the platform asked
//!   for, and fails only when no descriptor has it; platforms read back the
//!   same ([`PlatformSpec::parse`] and `Display`);
//! - an image config that parses survives being written back and parsed
//!   again (`pier build` writes configs it read).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use pier::digest::Digest;
use pier::image::{
    desc_digest, layers_of, parse_manifest, select_platform, Fetched, Image, PlatformSpec,
    DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
use serde_json::Value;

const CONTENT_TYPES: [Option<&str>; 8] = [
    None,
    Some(OCI_MANIFEST),
    Some(DOCKER_MANIFEST),
    Some(OCI_INDEX),
    Some(DOCKER_LIST),
    Some("application/json; charset=utf-8"),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
    Some("text/plain"),
];

const SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

const PLATFORMS: [&str; 5] = [
    "linux/amd64",
    "linux/arm64",
    "linux/arm64/v8",
    "linux/arm/v7",
    "windows/amd64",
];

fn check_digest(d: &Descriptor) -> Option<Digest> {
    let dg = desc_digest(d).ok()?;
    let s = dg.as_str();
    assert_eq!(s, d.digest().to_string(), "digest changed");
    let hex = s.strip_prefix("sha256:").expect("not sha256");
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{s:?} accepted"
    );
    assert_eq!(Digest::parse(s).unwrap(), dg);
    Some(dg)
}

fn check_manifest(m: &ImageManifest, field: Option<&str>, config: Option<&ImageConfiguration>) {
    if let Some(f) = field {
        assert_eq!(
            m.media_type().as_ref().map(|t| t.to_string()).as_deref(),
            Some(f),
            "mediaType changed"
        );
    }
    let again = serde_json::to_vec(m).unwrap();
    match parse_manifest(&again, None) {
        Ok(Fetched::Manifest(m2)) => assert_eq!(&*m2, m, "manifest round trip"),
        Ok(Fetched::Index(_)) => panic!("manifest written back reads as an index"),
        Err(e) => panic!("manifest written back is refused: {e:#}"),
    }
    let config_digest = check_digest(m.config());
    for l in m.layers() {
        check_digest(l);
    }
    let img = Image {
        manifest_digest: Digest::of(&again),
        manifest: m.clone(),
        config_digest: config_digest.unwrap_or_else(|| Digest::of(b"")),
        config_bytes: Vec::new(),
        config: config.cloned().unwrap_or_default(),
    };
    let sum: Option<u64> = m
        .layers()
        .iter()
        .try_fold(m.config().size(), |a, l| a.checked_add(l.size()));
    let size = img.size();
    assert_eq!(size, sum.unwrap_or(u64::MAX), "image size");
    if let Some(cfg) = config {
        let ids = cfg.rootfs().diff_ids();
        match layers_of(m, cfg) {
            Ok(ls) => {
                assert_eq!(ls.len(), m.layers().len());
                assert_eq!(ls.len(), ids.len());
                for ((l, d), id) in ls.iter().zip(m.layers()).zip(ids) {
                    assert_eq!(l.digest.as_str(), d.digest().to_string());
                    assert_eq!(l.size, d.size());
                    assert_eq!(l.media_type, d.media_type().to_string());
                    assert_eq!(l.diff_id.as_str(), id);
                    assert!(check_digest(d).is_some());
                }
            }
            Err(_) => {
                let bad_digest = m.layers().iter().any(|d| desc_digest(d).is_err())
                    || ids.iter().any(|id| Digest::parse(id).is_err());
                assert!(
                    ids.len() != m.layers().len() || bad_digest,
                    "layers_of refused a consistent manifest and config"
                );
            }
        }
    }
}

fn check_index(idx: &ImageIndex, field: Option<&str>) {
    if let Some(f) = field {
        assert_eq!(
            idx.media_type().as_ref().map(|t| t.to_string()).as_deref(),
            Some(f),
            "mediaType changed"
        );
    }
    let again = serde_json::to_vec(idx).unwrap();
    match parse_manifest(&again, None) {
        Ok(Fetched::Index(i2)) => assert_eq!(&*i2, idx, "index round trip"),
        Ok(Fetched::Manifest(_)) => panic!("index written back reads as a manifest"),
        Err(e) => panic!("index written back is refused: {e:#}"),
    }
    for d in idx.manifests() {
        check_digest(d);
        if let Some(p) = d.platform() {
            let s = format!("{}/{}", p.os(), p.architecture());
            if let Ok(ps) = PlatformSpec::parse(&s) {
                assert_eq!(ps.to_string(), s, "platform read back");
            }
        }
    }
    for p in PLATFORMS {
        let want = PlatformSpec::parse(p).unwrap();
        let has = |d: &Descriptor| {
            d.platform().as_ref().is_some_and(|dp| {
                dp.os().to_string() == want.os
                    && dp.architecture().to_string() == want.arch
                    && want
                        .variant
                        .as_deref()
                        .is_none_or(|v| dp.variant().as_deref() == Some(v))
            })
        };
        match select_platform(idx, &want) {
            Ok(d) => assert!(has(d), "{p}: picked {d:?}"),
            Err(_) => assert!(
                !idx.manifests().iter().any(has),
                "{p}: refused though the index has it"
            ),
        }
    }
}

fn check(bytes: &[u8], config: Option<&ImageConfiguration>) {
    let v: Option<Value> = serde_json::from_slice(bytes).ok();
    let field = v
        .as_ref()
        .and_then(|v| v.get("mediaType"))
        .and_then(Value::as_str);
    let is_index_type = |t: &str| t == OCI_INDEX || t == DOCKER_LIST;
    let is_manifest_type = |t: &str| t == OCI_MANIFEST || t == DOCKER_MANIFEST;
    for ct in CONTENT_TYPES {
        let r = parse_manifest(bytes, ct);
        let schema1 = |t: &str| SCHEMA1.contains(&t.split(';').next().unwrap_or("").trim());
        if field.map_or(ct.is_some_and(schema1), schema1) {
            assert!(r.is_err(), "schema1 accepted");
        }
        match r {
            Ok(Fetched::Manifest(m)) => {
                assert!(
                    !field.is_some_and(is_index_type),
                    "index type read as a manifest"
                );
                check_manifest(&m, field, config);
            }
            Ok(Fetched::Index(i)) => {
                assert!(
                    !field.is_some_and(is_manifest_type),
                    "manifest type read as an index"
                );
                if field.is_none_or(|f| !is_index_type(f)) {
                    let ct_index = ct
                        .map(|c| c.split(';').next().unwrap_or("").trim())
                        .is_some_and(is_index_type);
                    let listed = v.as_ref().is_some_and(|v| v.get("manifests").is_some());
                    assert!(ct_index || listed, "read as an index without a reason");
                }
                check_index(&i, field);
            }
            Err(_) => {}
        }
    }
}

fn check_config(bytes: &[u8]) -> Option<ImageConfiguration> {
    let cfg: ImageConfiguration = serde_json::from_slice(bytes).ok()?;
    let again = serde_json::to_vec(&cfg).unwrap();
    let back: ImageConfiguration = serde_json::from_slice(&again)
        .unwrap_or_else(|e| panic!("config written back is refused: {e}"));
    // oci-spec keeps `ExposedPorts` and `Volumes` (JSON objects used as
    // sets) in a HashMap: their order changes, compare them as sets.
    // (pier never writes an oci-spec config back: `pier build` edits the
    // JSON itself.)
    assert_eq!(
        serde_json::to_value(&back).unwrap(),
        serde_json::to_value(&cfg).unwrap(),
        "config round trip"
    );
    Some(cfg)
}

fuzz_target!(|data: &[u8]| {
    let split = data
        .windows(5)
        .position(|w| w == b"\n---\n")
        .map(|i| (&data[..i], &data[i + 5..]));
    match split {
        Some((manifest, config)) => {
            let cfg = check_config(config);
            check(manifest, cfg.as_ref());
        }
        None => {
            let cfg = check_config(data);
            check(data, cfg.as_ref());
        }
    }
});

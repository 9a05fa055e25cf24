//! `pier::registry::auth::parse_challenge`: the `WWW-Authenticate` header
//! of a registry's 401 answer (whatever server pier is pointed at writes
//! it; the realm is where pier then sends credentials).
//!
//! The input is used twice:
//! - as the header value: parsing never panics, and a Bearer challenge,
//!   written back with every parameter quoted (`"` and `\` escaped), parses
//!   to the same challenge;
//! - its lines as the realm, service and scope (a missing line: no such
//!   parameter): headers that quote them (escaped), in several layouts
//!   (order, case of scheme and keys, spaces around `=` and `,`, other
//!   parameters around them, a bare token where the value allows one),
//!   parse to exactly these values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pier::registry::auth::{parse_challenge, Challenge};

fn quoted(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A token (RFC 9110 `tchar`s) can be written without quotes.
fn is_token(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn canonical(realm: &str, service: Option<&str>, scope: Option<&str>) -> String {
    let mut h = format!("Bearer realm={}", quoted(realm));
    if let Some(s) = service {
        h += &format!(",service={}", quoted(s));
    }
    if let Some(s) = scope {
        h += &format!(",scope={}", quoted(s));
    }
    h
}

fn layouts(realm: &str, service: Option<&str>, scope: Option<&str>) -> Vec<String> {
    let mut out = vec![canonical(realm, service, scope)];
    // Reversed order, odd case, spaces around `=` and `,`.
    let mut h = String::from("bEaReR  ");
    if let Some(s) = scope {
        h += &format!("SCOPE = {} , ", quoted(s));
    }
    if let Some(s) = service {
        h += &format!("Service={},", quoted(s));
    }
    h += &format!("Realm ={}", quoted(realm));
    out.push(h);
    // Other parameters around, tokens unquoted where possible.
    let tok = |v: &str| {
        if is_token(v) {
            v.to_string()
        } else {
            quoted(v)
        }
    };
    let mut h = format!("Bearer error=\"insufficient_scope\",realm={},", tok(realm));
    if let Some(s) = service {
        h += &format!("service={},", tok(s));
    }
    h += "x=y,";
    if let Some(s) = scope {
        h += &format!("scope={}", tok(s));
    }
    out.push(h);
    out
}

fuzz_target!(|s: &str| {
    if let Ok(Challenge::Bearer {
        realm,
        service,
        scope,
    }) = parse_challenge(s)
    {
        let again = canonical(&realm, service.as_deref(), scope.as_deref());
        assert_eq!(
            parse_challenge(&again).unwrap(),
            Challenge::Bearer {
                realm: realm.clone(),
                service: service.clone(),
                scope: scope.clone()
            },
            "{s:?} written back as {again:?}"
        );
    }

    let mut lines = s.split('\n');
    let realm = lines.next().unwrap_or_default();
    let (service, scope) = (lines.next(), lines.next());
    let want = Challenge::Bearer {
        realm: realm.to_string(),
        service: service.map(str::to_string),
        scope: scope.map(str::to_string),
    };
    for h in layouts(realm, service, scope) {
        match parse_challenge(&h) {
            Ok(c) => assert_eq!(c, want, "header {h:?}"),
            Err(e) => panic!("header {h:?} refused: {e:#}"),
        }
    }
});

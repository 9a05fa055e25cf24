//! `pier build`'s Dockerfile reading: `pier::build::dockerfile` (the
//! `parse-dockerfile` crate's syntax tree turned into instructions) and
//! `pier::build::words` (quotes, escapes, `$VAR`/`${VAR:-word}` expansion,
//! `ENV`/`LABEL`/`ARG` pairs). The Dockerfile is the user's, but `ONBUILD`
//! triggers come from base images, and a parser panic or hang stops the
//! build.
//!
//! The input is a Dockerfile. Checks:
//! - [`Dockerfile::parse`] and [`Dockerfile::parse_trigger`] (the input as
//!   one trigger) never panic;
//! - a parsed file is consistent: the escape character is `\` or `` ` ``,
//!   instruction lines are within the file and in order, only `ARG`s come
//!   before the first `FROM` (the builder relies on it), stage names start
//!   with a letter (never empty, never a stage number), an `ONBUILD`
//!   trigger written again after `ONBUILD` is stored the same (the text is
//!   what goes into the image), a trigger that parses is never `FROM`,
//!   `ONBUILD` or `MAINTAINER`;
//! - every word of every instruction goes through `split_words`, `expand`,
//!   `pairs` and `args` with a few variables set (one empty, one holding
//!   quotes and `$`) without panicking; words split again the same;
//!   a word without quotes, escapes or `$` expands to itself; variable
//!   values are inserted as they are, never expanded again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pier::build::dockerfile::{Cmd, Dockerfile, Kind, Src};
use pier::build::words::{args, expand, pairs, split_words, Vars};

fn vars() -> Vars {
    Vars(vec![
        ("A".into(), "one".into()),
        ("EMPTY".into(), String::new()),
        ("Q".into(), "'\"$A ${A} `x\\".into()),
        ("BASE".into(), "scratch".into()),
    ])
}

/// The texts an instruction carries: raw `KEY=VALUE` text (`ENV`,
/// `LABEL`), `ARG` text, words pier expands, and shell commands (left to
/// the shell; only split).
enum Text<'a> {
    Pairs(&'a str, &'static str),
    Args(&'a str),
    Word(&'a str),
    Shell(&'a str),
}

fn cmd_text(c: &Cmd) -> Option<Text<'_>> {
    match c {
        Cmd::Shell(s) => Some(Text::Shell(s)),
        Cmd::Exec(_) => None,
    }
}

fn src_text(s: &Src) -> Text<'_> {
    match s {
        Src::Path(p) => Text::Word(p),
        Src::HereDoc { body, .. } => Text::Word(body),
    }
}

fn texts(k: &Kind) -> Vec<Text<'_>> {
    let mut out = Vec::new();
    match k {
        Kind::From {
            image,
            name,
            platform,
        } => {
            out.push(Text::Word(image));
            out.extend(name.as_deref().map(Text::Word));
            out.extend(platform.as_deref().map(Text::Word));
        }
        Kind::Arg(raw) => out.push(Text::Args(raw)),
        Kind::Env(raw) => out.push(Text::Pairs(raw, "ENV")),
        Kind::Label(raw) => out.push(Text::Pairs(raw, "LABEL")),
        Kind::Run { cmd, network } => {
            out.extend(cmd_text(cmd));
            out.extend(network.as_deref().map(Text::Word));
        }
        Kind::Copy {
            srcs,
            dest,
            from,
            chown,
            chmod,
        } => {
            out.extend(srcs.iter().map(src_text));
            out.push(Text::Word(dest));
            out.extend(
                [from, chown, chmod]
                    .into_iter()
                    .flatten()
                    .map(|s| Text::Word(s)),
            );
        }
        Kind::Add {
            srcs,
            dest,
            chown,
            chmod,
        } => {
            out.extend(srcs.iter().map(src_text));
            out.push(Text::Word(dest));
            out.extend([chown, chmod].into_iter().flatten().map(|s| Text::Word(s)));
        }
        Kind::Workdir(w) | Kind::User(w) | Kind::Stopsignal(w) | Kind::Maintainer(w) => {
            out.push(Text::Word(w))
        }
        Kind::Expose(v) | Kind::Volume(v) | Kind::Shell(v) => {
            out.extend(v.iter().map(|s| Text::Word(s)))
        }
        Kind::Cmd(c) | Kind::Entrypoint(c) => out.extend(cmd_text(c)),
        Kind::Healthcheck(h) => {
            out.extend(h.test.as_ref().and_then(cmd_text));
            out.extend(h.options.iter().map(|(_, v)| Text::Word(v)));
        }
        Kind::Onbuild(_) => {}
    }
    out
}

fn check_word(w: &str, vars: &Vars, esc: char) {
    let r = expand(w, vars, esc);
    let plain = !w.contains(['$', '\'', '"', esc]);
    if plain {
        assert_eq!(r.as_deref().ok(), Some(w), "{w:?} changed by expansion");
    }
    if !w.contains('$') {
        // Without `$` no variable can matter.
        let r0 = expand(w, &Vars::default(), esc);
        assert_eq!(
            r.is_ok(),
            r0.is_ok(),
            "{w:?}: variables changed the outcome"
        );
        if let (Ok(a), Ok(b)) = (&r, &r0) {
            assert_eq!(a, b, "{w:?}: variables changed the result");
        }
    }
}

fn check_text(t: &Text<'_>, vars: &Vars, esc: char) {
    let raw = match t {
        Text::Pairs(raw, what) => {
            if let Ok(ps) = pairs(raw, vars, esc, what) {
                assert!(!ps.is_empty(), "{what} {raw:?}: no pairs");
            }
            raw
        }
        Text::Args(raw) => {
            let _ = args(raw, vars, esc);
            raw
        }
        Text::Word(w) => {
            check_word(w, vars, esc);
            w
        }
        Text::Shell(s) => s,
    };
    let words = split_words(raw, esc);
    for w in &words {
        assert!(!w.is_empty(), "{raw:?}: empty word");
        check_word(w, vars, esc);
    }
    if !raw.contains(['"', '\'', esc]) {
        // Without quotes or escapes, splitting is splitting at whitespace.
        let simple: Vec<&str> = raw.split_whitespace().collect();
        assert_eq!(words, simple, "{raw:?} split");
    }
}

/// Whether the last line of `t` ends in a line continuation as
/// parse-dockerfile reads one (the escape, then nothing, or a space or tab
/// and blanks; `\r\n` is a newline too).
fn ends_continued(t: &str) -> bool {
    let last = t.rsplit('\n').next().unwrap_or_default();
    let l = last.strip_suffix('\r').unwrap_or(last);
    let trimmed = l.trim_end_matches([' ', '\t', '\r', '\x0b', '\x0c']);
    let tail = &l[trimmed.len()..];
    trimmed.ends_with('\\') && (tail.is_empty() || tail.starts_with([' ', '\t']))
}

fn check_vars_verbatim(vars: &Vars, esc: char) {
    // A value holding quotes, `$` and escapes comes out as it is.
    let q = vars.get("Q").unwrap();
    assert_eq!(expand("$Q", vars, esc).unwrap(), q);
    assert_eq!(expand("${Q}", vars, esc).unwrap(), q);
    assert_eq!(expand("\"${Q}\"", vars, esc).unwrap(), q);
    assert_eq!(expand("${NOPE:-$Q}", vars, esc).unwrap(), q);
}

fuzz_target!(|text: &str| {
    let vars = vars();
    if let Ok(i) = Dockerfile::parse_trigger(text) {
        assert!(
            !matches!(
                i.kind,
                Kind::From { .. } | Kind::Onbuild(_) | Kind::Maintainer(_)
            ),
            "{:?} accepted as a trigger",
            i.kind
        );
        for t in texts(&i.kind) {
            check_text(&t, &vars, '\\');
        }
    }
    let Ok(df) = Dockerfile::parse("Dockerfile", text) else {
        return;
    };
    let esc = df.escape;
    assert!(esc == '\\' || esc == '`', "escape {esc:?}");
    check_vars_verbatim(&vars, esc);
    let lines = text.split('\n').count();
    let mut last = 0;
    let mut seen_from = false;
    for i in &df.instrs {
        assert!(
            (1..=lines).contains(&i.line),
            "line {} of a {lines}-line file",
            i.line
        );
        assert!(i.line >= last, "instructions out of order");
        last = i.line;
        match &i.kind {
            Kind::From { name, .. } => {
                seen_from = true;
                // A stage name is never empty nor a stage number.
                if let Some(n) = name {
                    assert!(
                        n.starts_with(|c: char| c.is_ascii_lowercase()),
                        "stage name {n:?}"
                    );
                }
            }
            Kind::Arg(_) => {}
            k => assert!(seen_from, "{k:?} before the first FROM"),
        }
        if let Kind::Onbuild(trigger) = &i.kind {
            // The builder checks it with parse_trigger (no panic), and the
            // text stored in the image is what the next ONBUILD of a file
            // would store again: a fixed point.
            let _ = Dockerfile::parse_trigger(trigger);
            // (A trigger whose last line ends in a continuation came from
            // a continuation at the end of the file, `\\\` say: written
            // again, that escape continues the line and is dropped, as
            // BuildKit does.)
            // (FROM, ONBUILD and MAINTAINER triggers never reach an image:
            // the builder refuses them.)
            let keyword = trigger.split_whitespace().next().unwrap_or_default();
            let refused = ["FROM", "ONBUILD", "MAINTAINER"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(keyword));
            if esc == '\\' && !refused && !ends_continued(trigger) {
                let file = format!("FROM scratch\nONBUILD {trigger}\n");
                match Dockerfile::parse("Dockerfile", &file) {
                    // (Up to trailing blanks: a continuation at the end of
                    // the file keeps the blanks before its `\`, once.)
                    Ok(df2) => match df2.instrs.get(1).map(|i| &i.kind) {
                        Some(Kind::Onbuild(t2)) => assert_eq!(
                            t2.trim_end(),
                            trigger.trim_end(),
                            "trigger {trigger:?} stored again"
                        ),
                        other => panic!("trigger {trigger:?} stored again as {other:?}"),
                    },
                    Err(e) => panic!("trigger {trigger:?} does not parse again: {e:#}"),
                }
            }
        }
        for t in texts(&i.kind) {
            check_text(&t, &vars, esc);
        }
    }
});

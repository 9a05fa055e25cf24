//! Reading a Dockerfile: the `parse-dockerfile` crate (BuildKit's grammar:
//! parser directives, line continuations, comments, exec and shell forms,
//! heredocs) gives the syntax tree; this module turns it into owned
//! [`Instr`]uctions that remember their line, and formats errors as
//! `Dockerfile:7: unknown instruction "RUNN"`.
//!
//! Words are kept as written: variables are expanded by the builder, which
//! knows the `ARG`/`ENV` values at each step (see [`super::words`]).

use anyhow::{anyhow, Result};
use parse_dockerfile::{
    Command, Flag, HealthcheckArguments, Instruction, JsonOrStringArray, Source, UnescapedString,
};

/// A command in exec form (JSON array) or shell form (one string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// `["prog", "arg"]`: run as is.
    Exec(Vec<String>),
    /// `prog arg`: run through the stage's `SHELL`.
    Shell(String),
}

/// A `COPY`/`ADD` source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Src {
    /// A path (or glob) in the context or the `--from` stage/image.
    Path(String),
    /// A here-document: the file's content (`expand`: variables expanded).
    HereDoc {
        /// The body.
        body: String,
        /// False if the delimiter was quoted.
        expand: bool,
    },
}

/// `HEALTHCHECK` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// `None` for `HEALTHCHECK NONE`.
    pub test: Option<Cmd>,
    /// `--interval`, `--timeout`, `--start-period`, `--start-interval`,
    /// `--retries` as written.
    pub options: Vec<(String, String)>,
}

/// One instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `FROM [--platform=P] IMAGE [AS NAME]`.
    From {
        /// The base (`scratch`, an image reference or a stage name).
        image: String,
        /// The stage name.
        name: Option<String>,
        /// `--platform`.
        platform: Option<String>,
    },
    /// `ARG NAME[=DEFAULT] ...` (raw text: words are split later).
    Arg(String),
    /// `RUN`.
    Run {
        /// The command (shell form has heredocs appended as written).
        cmd: Cmd,
        /// `--network=none|host|default`.
        network: Option<String>,
    },
    /// `COPY`.
    Copy {
        /// Sources.
        srcs: Vec<Src>,
        /// Destination.
        dest: String,
        /// `--from=stage|image`.
        from: Option<String>,
        /// `--chown=user[:group]`.
        chown: Option<String>,
        /// `--chmod=octal`.
        chmod: Option<String>,
    },
    /// `ADD` (local files; local tars are extracted).
    Add {
        /// Sources.
        srcs: Vec<Src>,
        /// Destination.
        dest: String,
        /// `--chown`.
        chown: Option<String>,
        /// `--chmod`.
        chmod: Option<String>,
    },
    /// `WORKDIR`.
    Workdir(String),
    /// `ENV` (raw text).
    Env(String),
    /// `LABEL` (raw text).
    Label(String),
    /// `CMD`.
    Cmd(Cmd),
    /// `ENTRYPOINT`.
    Entrypoint(Cmd),
    /// `EXPOSE port[/proto] ...`.
    Expose(Vec<String>),
    /// `USER`.
    User(String),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `STOPSIGNAL`.
    Stopsignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Health),
    /// `ONBUILD INSTRUCTION` (the trigger's text, stored in the image).
    Onbuild(String),
    /// `SHELL ["exe", "arg"]`.
    Shell(Vec<String>),
    /// `MAINTAINER` (deprecated; becomes the `author` field).
    Maintainer(String),
}

/// An instruction and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instr {
    /// 1-based line of the instruction keyword.
    pub line: usize,
    /// The instruction.
    pub kind: Kind,
    /// Its text as written (continuations joined), for history and
    /// messages.
    pub text: String,
}

/// A parsed Dockerfile.
#[derive(Clone, Debug)]
pub struct Dockerfile {
    /// The file name used in messages (`Dockerfile`).
    pub name: String,
    /// The escape character (`# escape=` directive, default `\`).
    pub escape: char,
    /// Every instruction in order (global `ARG`s first, then stages, each
    /// starting with its `FROM`).
    pub instrs: Vec<Instr>,
}

impl Dockerfile {
    /// Parses `text`; `name` is used in error messages.
    pub fn parse(name: &str, text: &str) -> Result<Dockerfile> {
        // parse-dockerfile reads an escape at the very end of the file as a
        // literal character (`COPY a \` copied `a` to a file named `\`), but
        // before a newline as a line continuation, as BuildKit does in both
        // cases: end the file with a newline so both read alike.
        let with_newline;
        let text = if text.ends_with('\n') {
            text
        } else {
            with_newline = format!("{text}\n");
            &with_newline
        };
        let df = parse_dockerfile::parse(text).map_err(|e| {
            let msg = format!("{e:#}");
            // Docker writes the unknown word in double quotes.
            let msg = match msg.strip_prefix("unknown instruction '") {
                Some(rest) => format!("unknown instruction \"{}\"", rest.trim_end_matches('\'')),
                None => msg,
            };
            if e.line() == 0 {
                anyhow!("{name}: {msg}")
            } else {
                anyhow!("{name}:{}: {msg}", e.line())
            }
        })?;
        let escape = df
            .parser_directives
            .escape
            .as_ref()
            .map(|d| d.value.value)
            .unwrap_or('\\');
        let mut instrs = Vec::with_capacity(df.instructions.len());
        for i in &df.instructions {
            instrs.push(convert(name, text, escape, i)?);
        }
        Ok(Dockerfile {
            name: name.to_string(),
            escape,
            instrs,
        })
    }

    /// Parses one `ONBUILD` trigger (an instruction's text).
    pub fn parse_trigger(text: &str) -> Result<Instr> {
        let full = format!("FROM scratch\n{text}\n");
        let df = Dockerfile::parse("ONBUILD", &full)?;
        let mut i = df
            .instrs
            .into_iter()
            .nth(1)
            .ok_or_else(|| anyhow!("empty ONBUILD trigger"))?;
        if matches!(
            i.kind,
            Kind::From { .. } | Kind::Onbuild(_) | Kind::Maintainer(_)
        ) {
            anyhow::bail!("{} is not allowed as an ONBUILD trigger", keyword(&i.text));
        }
        i.line = 0;
        Ok(i)
    }
}

fn keyword(text: &str) -> String {
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_uppercase()
}

fn line_of(text: &str, pos: usize) -> usize {
    text.as_bytes()[..pos.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The span of an instruction (from its keyword to the end of its last
/// argument).
fn span_of(i: &Instruction<'_>) -> (usize, usize) {
    let (k, e) = match i {
        Instruction::Add(x) => (x.add.span.start, x.dest.span.end),
        Instruction::Arg(x) => (x.arg.span.start, x.arguments.span.end),
        Instruction::Cmd(x) => (x.cmd.span.start, cmd_end(&x.arguments)),
        Instruction::Copy(x) => (x.copy.span.start, x.dest.span.end),
        Instruction::Entrypoint(x) => (x.entrypoint.span.start, cmd_end(&x.arguments)),
        Instruction::Env(x) => (x.env.span.start, x.arguments.span.end),
        Instruction::Expose(x) => (
            x.expose.span.start,
            x.arguments.last().map_or(x.expose.span.end, |a| a.span.end),
        ),
        Instruction::From(x) => (
            x.from.span.start,
            x.as_.as_ref().map_or(x.image.span.end, |(_, n)| n.span.end),
        ),
        Instruction::Healthcheck(x) => (
            x.healthcheck.span.start,
            match &x.arguments {
                HealthcheckArguments::Cmd { arguments, .. } => cmd_end(arguments),
                HealthcheckArguments::None { none, .. } => none.span.end,
                _ => x.healthcheck.span.end,
            },
        ),
        Instruction::Label(x) => (x.label.span.start, x.arguments.span.end),
        Instruction::Maintainer(x) => (x.maintainer.span.start, x.name.span.end),
        Instruction::Onbuild(x) => (x.onbuild.span.start, span_of(&x.instruction).1),
        Instruction::Run(x) => (x.run.span.start, cmd_end(&x.arguments)),
        Instruction::Shell(x) => (
            x.shell.span.start,
            x.arguments
                .last()
                .map_or(x.shell.span.end, |a| a.span.end + 1),
        ),
        Instruction::Stopsignal(x) => (x.stopsignal.span.start, x.arguments.span.end),
        Instruction::User(x) => (x.user.span.start, x.arguments.span.end),
        Instruction::Volume(x) => (
            x.volume.span.start,
            match &x.arguments {
                JsonOrStringArray::Json(j) => j.span.end,
                JsonOrStringArray::String(v) => v.last().map_or(x.volume.span.end, |a| a.span.end),
            },
        ),
        Instruction::Workdir(x) => (x.workdir.span.start, x.arguments.span.end),
        _ => (0, 0),
    };
    (k, e)
}

/// The here-documents of an instruction as written (bodies and end
/// markers, from the line after the instruction): they are not part of its
/// span, and an `ONBUILD` trigger without them would not parse again.
fn here_docs_text<'t>(text: &'t str, i: &Instruction<'_>) -> Option<&'t str> {
    let spans: Vec<std::ops::Range<usize>> = match i {
        Instruction::Run(x) => x.here_docs.iter().map(|h| h.span.clone()).collect(),
        Instruction::Copy(x) => here_doc_spans(&x.src),
        Instruction::Add(x) => here_doc_spans(&x.src),
        _ => Vec::new(),
    };
    let start = spans.iter().map(|s| s.start).min()?;
    // The last body ends where its end marker starts: through that line.
    let last = spans.iter().map(|s| s.end).max()?;
    text.get(start..line_end(text, last))
}

/// Where the line holding `pos` ends (its `\n`, or the end of the text).
fn line_end(text: &str, pos: usize) -> usize {
    text.get(pos..)
        .and_then(|t| t.find('\n'))
        .map_or(text.len(), |n| pos + n)
}

/// An instruction's text: from its keyword through the end of the line of
/// its last argument. (Only through the argument, an escape ending it, as in
/// `COPY a \` followed by a form feed, looked like a line continuation.)
fn instr_text(text: &str, (start, end): (usize, usize)) -> &str {
    text.get(start..line_end(text, end.max(start)))
        .unwrap_or_default()
}

fn here_doc_spans(src: &[Source<'_>]) -> Vec<std::ops::Range<usize>> {
    src.iter()
        .filter_map(|s| match s {
            Source::HereDoc(h) => Some(h.span.clone()),
            _ => None,
        })
        .collect()
}

fn cmd_end(c: &Command<'_>) -> usize {
    match c {
        Command::Exec(a) => a.span.end,
        Command::Shell(s) => s.span.end,
        _ => 0,
    }
}

/// Blanks as the Dockerfile grammar has them (not Unicode's).
const BLANKS: [char; 5] = [' ', '\t', '\r', '\x0b', '\x0c'];

/// The line (without its `\n`) before its line continuation, if it ends in
/// one as parse-dockerfile (and BuildKit) reads it: the escape, then either
/// the newline (`\r\n` too) or a space or tab and any blanks before it.
fn continued_line(line: &str, escape: char) -> Option<&str> {
    let l = line.strip_suffix('\r').unwrap_or(line);
    let trimmed = l.trim_end_matches(BLANKS);
    let body = trimmed.strip_suffix(escape)?;
    let tail = &l[trimmed.len()..];
    (tail.is_empty() || tail.starts_with([' ', '\t'])).then_some(body)
}

/// The instruction's text with line continuations (and comment or blank
/// lines inside them) removed, as the parser joins them.
fn join_continuations(raw: &str, escape: char) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut first = true;
    let mut continued = false;
    for line in raw.split('\n') {
        let t = line.trim_start_matches(BLANKS);
        if !first && continued && (t.starts_with('#') || t.is_empty()) {
            continue;
        }
        if let Some(b) = continued_line(line, escape) {
            out.push_str(b);
            continued = true;
        } else {
            // Trailing blanks go, unless an escape would then end the line
            // (and read as a continuation when the text is parsed again).
            let body = line.trim_end_matches(['\r', ' ', '\t']);
            out.push_str(if body.ends_with(escape) { line } else { body });
            continued = false;
            if !first || !out.is_empty() {
                out.push('\n');
            }
        }
        first = false;
    }
    out.trim_end_matches('\n').to_string()
}

/// BuildKit's rule for stage names (`[a-z][a-z0-9-_.]*`, lower-cased):
/// never empty, never a number (`COPY --from=0` means the first stage), and
/// nothing an image reference could be confused with.
fn valid_stage_name(n: &str) -> bool {
    let mut b = n.bytes();
    b.next().is_some_and(|c| c.is_ascii_lowercase())
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(&c))
}

fn s(u: &UnescapedString<'_>) -> String {
    u.value.to_string()
}

fn flag_value(
    file: &str,
    text: &str,
    flags: &[Flag<'_>],
    allowed: &[&str],
    what: &str,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for f in flags {
        let name = f.name.value.to_string();
        if !allowed.contains(&name.as_str()) {
            anyhow::bail!(
                "{file}:{}: unknown flag --{name} for {what}",
                line_of(text, f.flag_span().start)
            );
        }
        let v = f.value.as_ref().map(s).unwrap_or_default();
        out.push((name, v));
    }
    Ok(out)
}

fn take(flags: &[(String, String)], name: &str) -> Option<String> {
    flags
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

fn to_cmd(c: &Command<'_>, escape: char) -> Cmd {
    match c {
        Command::Exec(a) => Cmd::Exec(a.value.iter().map(s).collect()),
        Command::Shell(sh) => Cmd::Shell(join_continuations(sh.value, escape)),
        _ => Cmd::Shell(String::new()),
    }
}

/// A here-document's body: the parser keeps the newline that ends the
/// `<<EOF` line in front of it.
fn heredoc_body(v: &str) -> String {
    v.strip_prefix('\n').unwrap_or(v).to_string()
}

fn srcs(v: &[Source<'_>]) -> Vec<Src> {
    v.iter()
        .filter_map(|x| match x {
            Source::Path(p) => Some(Src::Path(s(p))),
            Source::HereDoc(h) => Some(Src::HereDoc {
                body: heredoc_body(&h.value),
                expand: h.expand,
            }),
            _ => None,
        })
        .collect()
}

fn convert(file: &str, text: &str, escape: char, i: &Instruction<'_>) -> Result<Instr> {
    let (start, end) = span_of(i);
    let line = line_of(text, start);
    let raw = instr_text(text, (start, end));
    let joined = join_continuations(raw, escape);
    let kind = match i {
        Instruction::From(x) => {
            let f = flag_value(file, text, &x.options, &["platform"], "FROM")?;
            let name = x.as_.as_ref().map(|(_, n)| s(n).to_lowercase());
            if let Some(n) = &name {
                if !valid_stage_name(n) {
                    anyhow::bail!(
                        "{file}:{line}: invalid name for build stage {n:?}: a letter, then \
                         letters, digits, '-', '_' or '.'"
                    );
                }
            }
            Kind::From {
                image: s(&x.image),
                name,
                platform: take(&f, "platform"),
            }
        }
        Instruction::Arg(x) => Kind::Arg(join_continuations(&x.arguments.value, escape)),
        Instruction::Run(x) => {
            let f = flag_value(file, text, &x.options, &["network"], "RUN")?;
            let mut cmd = to_cmd(&x.arguments, escape);
            if let Cmd::Shell(sh) = &mut cmd {
                // `RUN <<EOF` runs the body as the script; `RUN <<EOF prog`
                // feeds it to `prog` (the parser gives the text after the
                // marker as the command).
                if let Some(h) = x.here_docs.first() {
                    let body = heredoc_body(&h.value);
                    let rest = sh.trim().to_string();
                    *sh = if rest.is_empty() {
                        body
                    } else {
                        let q = if h.expand { "" } else { "'" };
                        format!("{rest} <<{q}PIER_EOF{q}\n{body}PIER_EOF\n")
                    };
                }
            }
            Kind::Run {
                cmd,
                network: take(&f, "network"),
            }
        }
        Instruction::Copy(x) => {
            let f = flag_value(
                file,
                text,
                &x.options,
                &["from", "chown", "chmod", "link", "parents", "exclude"],
                "COPY",
            )?;
            if take(&f, "parents").is_some() || take(&f, "exclude").is_some() {
                anyhow::bail!("{file}:{line}: COPY --parents and --exclude are not supported");
            }
            Kind::Copy {
                srcs: srcs(&x.src),
                dest: s(&x.dest),
                from: take(&f, "from"),
                chown: take(&f, "chown"),
                chmod: take(&f, "chmod"),
            }
        }
        Instruction::Add(x) => {
            let f = flag_value(
                file,
                text,
                &x.options,
                &["chown", "chmod", "link", "keep-git-dir", "checksum"],
                "ADD",
            )?;
            Kind::Add {
                srcs: srcs(&x.src),
                dest: s(&x.dest),
                chown: take(&f, "chown"),
                chmod: take(&f, "chmod"),
            }
        }
        Instruction::Workdir(x) => Kind::Workdir(s(&x.arguments)),
        Instruction::Env(x) => Kind::Env(join_continuations(&x.arguments.value, escape)),
        Instruction::Label(x) => Kind::Label(join_continuations(&x.arguments.value, escape)),
        Instruction::Cmd(x) => Kind::Cmd(to_cmd(&x.arguments, escape)),
        Instruction::Entrypoint(x) => Kind::Entrypoint(to_cmd(&x.arguments, escape)),
        Instruction::Expose(x) => Kind::Expose(x.arguments.iter().map(s).collect()),
        Instruction::User(x) => Kind::User(s(&x.arguments)),
        Instruction::Volume(x) => Kind::Volume(match &x.arguments {
            JsonOrStringArray::Json(j) => j.value.iter().map(s).collect(),
            JsonOrStringArray::String(v) => v.iter().map(s).collect(),
        }),
        Instruction::Stopsignal(x) => Kind::Stopsignal(s(&x.arguments)),
        Instruction::Healthcheck(x) => {
            let options = flag_value(
                file,
                text,
                &x.options,
                &[
                    "interval",
                    "timeout",
                    "start-period",
                    "start-interval",
                    "retries",
                ],
                "HEALTHCHECK",
            )?;
            let test = match &x.arguments {
                HealthcheckArguments::Cmd { arguments, .. } => Some(to_cmd(arguments, escape)),
                _ => None,
            };
            Kind::Healthcheck(Health { test, options })
        }
        Instruction::Onbuild(x) => {
            let inner = instr_text(text, span_of(&x.instruction));
            let mut trigger = join_continuations(inner, escape);
            if let Some(docs) = here_docs_text(text, &x.instruction) {
                trigger.push('\n');
                trigger.push_str(docs);
            }
            Kind::Onbuild(trigger)
        }
        Instruction::Shell(x) => Kind::Shell(x.arguments.iter().map(s).collect()),
        Instruction::Maintainer(x) => Kind::Maintainer(s(&x.name)),
        _ => anyhow::bail!("{file}:{line}: unsupported instruction {}", keyword(raw)),
    };
    Ok(Instr {
        line,
        kind,
        text: joined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_instruction_with_lines() {
        let text = r#"# syntax=docker/dockerfile:1
ARG BASE=scratch
FROM ${BASE} AS build
RUN echo a \
  # a comment inside
  && echo b
RUN ["/bin/sh", "-c", "true"]
COPY --from=build --chown=1:2 --chmod=0644 a b* /dst/
ADD x.tar /
WORKDIR /app
ENV A=1 B="two words"
LABEL k=v
CMD ["run"]
ENTRYPOINT exec thing
EXPOSE 80/tcp 53/udp
USER nobody
VOLUME ["/data"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s CMD true
ONBUILD RUN echo hi
SHELL ["/bin/bash", "-c"]
"#;
        let df = Dockerfile::parse("Dockerfile", text).unwrap();
        let lines: Vec<usize> = df.instrs.iter().map(|i| i.line).collect();
        assert_eq!(
            lines,
            vec![2, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]
        );
        assert_eq!(
            df.instrs[2].kind,
            Kind::Run {
                cmd: Cmd::Shell("echo a   && echo b".into()),
                network: None
            }
        );
        assert_eq!(
            df.instrs[4].kind,
            Kind::Copy {
                srcs: vec![Src::Path("a".into()), Src::Path("b*".into())],
                dest: "/dst/".into(),
                from: Some("build".into()),
                chown: Some("1:2".into()),
                chmod: Some("0644".into()),
            }
        );
        assert_eq!(df.instrs[16].kind, Kind::Onbuild("RUN echo hi".into()));
        assert_eq!(
            df.instrs[17].kind,
            Kind::Shell(vec!["/bin/bash".into(), "-c".into()])
        );
        assert!(matches!(
            &df.instrs[15].kind,
            Kind::Healthcheck(Health { test: Some(Cmd::Shell(t)), options }) if t == "true" && options[0].1 == "5s"
        ));
    }

    #[test]
    fn unknown_instruction_names_the_line() {
        let text = "FROM scratch\n\n# c\nRUNN echo\n";
        let err = Dockerfile::parse("Dockerfile", text)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "Dockerfile:4: unknown instruction \"RUNN\"");
        let err = Dockerfile::parse("Dockerfile", "RUN x\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("Dockerfile:1: "), "{err}");
        let err = Dockerfile::parse("Dockerfile", "FROM a\nCOPY --bogus=1 a b\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "Dockerfile:2: unknown flag --bogus for COPY");
    }

    #[test]
    fn escape_directive_and_heredocs() {
        // (parse-dockerfile reads a RUN heredoc only as `RUN <<EOF`, at the
        // start of the command.)
        let text = "# escape=`\nFROM scratch\nRUN echo a `\n  b\nRUN <<EOF\necho one\necho two\nEOF\nCOPY <<EOT /f\nhi\nEOT\n";
        let df = Dockerfile::parse("Dockerfile", text).unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(
            df.instrs[1].kind,
            Kind::Run {
                cmd: Cmd::Shell("echo a   b".into()),
                network: None
            }
        );
        assert_eq!(
            df.instrs[2].kind,
            Kind::Run {
                cmd: Cmd::Shell("echo one\necho two\n".into()),
                network: None
            }
        );
        match &df.instrs[3].kind {
            Kind::Copy { srcs, dest, .. } => {
                assert_eq!(dest, "/f");
                assert_eq!(
                    srcs,
                    &vec![Src::HereDoc {
                        body: "hi\n".into(),
                        expand: true
                    }]
                );
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn an_escape_at_the_end_of_the_file_continues_the_line() {
        // Caught by fuzz/fuzz_targets/dockerfile.rs (corpus/dockerfile/
        // regression-eof-escape): without a final newline the escape was
        // an argument (a COPY destination named `\`) while the stored text
        // and ONBUILD trigger had it as a continuation.
        for text in ["FROM a\nCOPY a \\", "FROM a\nONBUILD COPY a \\"] {
            let err = Dockerfile::parse("Dockerfile", text)
                .unwrap_err()
                .to_string();
            assert!(err.contains("at least two arguments"), "{text:?}: {err}");
        }
        let a = Dockerfile::parse("Dockerfile", "FROM a\nRUN echo \\").unwrap();
        let b = Dockerfile::parse("Dockerfile", "FROM a\nRUN echo \\\n").unwrap();
        assert_eq!(a.instrs, b.instrs);
        let c = Dockerfile::parse("Dockerfile", "FROM a\nCOPY a b").unwrap();
        assert!(matches!(&c.instrs[1].kind, Kind::Copy { dest, .. } if dest == "b"));
    }

    #[test]
    fn onbuild_triggers_keep_their_here_documents() {
        // Caught by fuzz/fuzz_targets/dockerfile.rs (corpus/dockerfile/
        // regression-onbuild-heredoc): the trigger stored in the image lost
        // the here-document, so it did not parse again.
        let text = "FROM a\nONBUILD COPY <<EOT /etc/motd\nhello \\\n$USER\nEOT\n\
                    ONBUILD RUN <<-EOF\n\techo hi\n\tEOF\nRUN true\n";
        let df = Dockerfile::parse("Dockerfile", text).unwrap();
        assert_eq!(
            df.instrs[1].kind,
            Kind::Onbuild("COPY <<EOT /etc/motd\nhello \\\n$USER\nEOT".into())
        );
        assert_eq!(
            df.instrs[2].kind,
            Kind::Onbuild("RUN <<-EOF\n\techo hi\n\tEOF".into())
        );
        let Kind::Onbuild(t) = &df.instrs[1].kind else {
            unreachable!()
        };
        match Dockerfile::parse_trigger(t).unwrap().kind {
            Kind::Copy { srcs, dest, .. } => {
                assert_eq!(dest, "/etc/motd");
                assert_eq!(
                    srcs,
                    vec![Src::HereDoc {
                        body: "hello \\\n$USER\n".into(),
                        expand: true
                    }]
                );
            }
            k => panic!("{k:?}"),
        }
        let Kind::Onbuild(t) = &df.instrs[2].kind else {
            unreachable!()
        };
        assert_eq!(
            Dockerfile::parse_trigger(t).unwrap().kind,
            Kind::Run {
                cmd: Cmd::Shell("echo hi\n".into()),
                network: None
            }
        );
    }

    #[test]
    fn an_escape_that_ends_an_argument_is_not_a_continuation() {
        // Caught by fuzz/fuzz_targets/dockerfile.rs (corpus/dockerfile/
        // regression-escape-form-feed): after a form feed an escape is the
        // argument `\` for the parser, but the stored text stopped at it and
        // took it for a continuation (the ONBUILD trigger lost it).
        let df = Dockerfile::parse("Dockerfile", "FROM a\nONBUILD COPY a \\\x0c\n").unwrap();
        let Kind::Onbuild(t) = &df.instrs[1].kind else {
            panic!("{:?}", df.instrs[1].kind)
        };
        assert_eq!(t, "COPY a \\\x0c");
        assert!(matches!(
            Dockerfile::parse_trigger(t).unwrap().kind,
            Kind::Copy { dest, .. } if dest == "\\"
        ));
        // A continuation is still one, and the text ends at its line.
        let df = Dockerfile::parse("Dockerfile", "FROM a\nCOPY a \\ \n  b  \nRUN x\n").unwrap();
        assert_eq!(df.instrs[1].text, "COPY a   b");
    }

    #[test]
    fn continuations_are_those_the_parser_sees() {
        // Caught by fuzz/fuzz_targets/dockerfile.rs (corpus/dockerfile/
        // regression-escape-carriage-returns): `\` then `\r\r\n` is no
        // continuation for the parser (the `\` is an argument), but the
        // stored text took it for one.
        let df = Dockerfile::parse("Dockerfile", "FROM a\nONBUILD COPY a \\\r\r\n").unwrap();
        let Kind::Onbuild(t) = &df.instrs[1].kind else {
            panic!("{:?}", df.instrs[1].kind)
        };
        assert!(matches!(
            Dockerfile::parse_trigger(t).unwrap().kind,
            Kind::Copy { dest, .. } if dest == "\\"
        ));
        for (line, cont) in [
            ("a \\", Some("a ")),
            ("a \\\r", Some("a ")),
            ("a \\ \t\x0c\r", Some("a ")),
            ("a \\\r\r", None),
            ("a \\\x0c", None),
            ("a b", None),
        ] {
            assert_eq!(continued_line(line, '\\'), cont, "{line:?}");
        }
        assert_eq!(continued_line("a `", '`'), Some("a "));
        // Blank and comment lines inside a continuation go; other text stays.
        assert_eq!(
            join_continuations("RUN a \\\n \x0c\n  # c\n b\n", '\\'),
            "RUN a  b"
        );
        assert_eq!(
            join_continuations("RUN a \\\n\u{a0}# not blank\n", '\\'),
            "RUN a \u{a0}# not blank"
        );
    }

    #[test]
    fn stage_names_follow_buildkit() {
        // Caught by fuzz/fuzz_targets/dockerfile.rs (corpus/dockerfile/
        // regression-empty-stage-name): parse-dockerfile reads `AS ` at the
        // end of a line as an empty stage name, which `FROM ${UNSET}` or
        // `COPY --from=` then found.
        for bad in [
            "FROM a AS \n",
            "FROM a AS 0\n",
            "FROM a AS x:1\n",
            "FROM a AS -x\n",
        ] {
            let err = Dockerfile::parse("Dockerfile", bad)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("invalid name for build stage"),
                "{bad:?}: {err}"
            );
        }
        let df = Dockerfile::parse("Dockerfile", "FROM a AS Build-1_x.y\n").unwrap();
        assert!(matches!(
            &df.instrs[0].kind,
            Kind::From { name: Some(n), .. } if n == "build-1_x.y"
        ));
    }

    #[test]
    fn onbuild_trigger_parses() {
        let i = Dockerfile::parse_trigger("COPY a /b").unwrap();
        assert!(matches!(i.kind, Kind::Copy { .. }));
        assert!(Dockerfile::parse_trigger("FROM x").is_err());
    }
}

//! Command-line parsing, by hand: a parser framework would cost more code
//! pages than the rest of the shim touches while it idles, and every idle
//! shim keeps its startup pages resident.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::logfile::LogFormat;

/// `berth-shim --help`.
pub const HELP: &str = "\
berth-shim: one small process per container that holds its stdio, logs and exit status.

USAGE
  berth-shim --runtime PATH --bundle DIR --id ID --state-dir DIR [OPTIONS]
  berth-shim ctl --state-dir DIR COMMAND [ARGS]

The first form creates the container with `RUNTIME create` and daemonizes. The
caller gets control back once the container is created (and started, with
--start) and the control socket is ready: exit status 0, or 1 with the
runtime's own error message on stderr (and nothing left behind). The shim
calls setsid, becomes a child subreaper, keeps the container's stdio, writes
its log, reaps it, records its exit in STATE_DIR/exit.json, runs the exit
command, deletes it if asked, and leaves. Any runc-compatible runtime works
(berth, runc, crun); only its command line is used.

OPTIONS
  --runtime PATH          the OCI runtime binary (required)
  --runtime-arg ARG       global argument put before every runtime subcommand,
                          e.g. --runtime-arg=--root --runtime-arg=/run/x (repeatable)
  --bundle DIR            bundle directory (required)
  --id ID                 container ID (required)
  --state-dir DIR         the shim's directory (required; created; must be empty)
  --log-path FILE         container log file (none by default)
  --log-format cri|json   cri (default): `2026-11-29T11:35:19.123456789Z stdout F text`,
                          F full line, P partial; json: Docker json-file lines
                          {\"log\",\"stream\",\"time\"} (\"log_base64\" for non-UTF-8)
  --log-max-size SIZE     rotate the log before it exceeds SIZE bytes (K, M, G
                          suffixes; at least 4K): FILE -> FILE.1 -> ... -> FILE.N
  --log-max-files N       rotated files to keep (default 1)
  --terminal              the container has a terminal (process.terminal): the
                          shim receives the pty master over a console socket
  --stdin                 keep the container's stdin open for attached clients
                          (otherwise /dev/null; always open with --terminal)
  --start                 start the container at once (`RUNTIME start`)
  --exit-command PATH     run PATH after the container exited (env:
                          BERTH_SHIM_ID, BERTH_SHIM_STATE_DIR, BERTH_SHIM_EXIT_CODE)
  --exit-command-arg ARG  argument of the exit command (repeatable)
  --delete                `RUNTIME delete ID` after the container exited
  --client-buffer SIZE    output queued per attached client (default 1M)
  --client-timeout MS     how long a full client may hold the container's
                          output back before it is dropped (default 2000)
  -h, --help              this text
  -V, --version           the version

STATE DIRECTORY (mode 0700; shim.sock 0600: it can exec in the container)
  shim.sock   control socket         shim.json  how the shim was started
  shim.pid    the shim's pid         pid        the container's pid
  shim.log    the shim's own errors  exit.json  {pid, exit_code (128+N if killed
                                                 by signal N), signal, oom_killed,
                                                 exited_at}, written atomically

CONTROL PROTOCOL (STATE_DIR/shim.sock, Unix stream, several clients at once)
  The client writes one JSON object per line; the shim answers each with one
  line {\"ok\":true,...} or {\"ok\":false,\"error\":\"...\"}.
    {\"op\":\"state\"}                       id, pid, status (created|running|stopped),
                                           runtime_status, exit, shim_pid
    {\"op\":\"start\"}                       RUNTIME start
    {\"op\":\"kill\",\"signal\":\"TERM\",\"all\":false}   RUNTIME kill
    {\"op\":\"wait\"}                        answers once the container exited: {\"exit\":{...}}
    {\"op\":\"resize\",\"rows\":R,\"cols\":C}     terminal size of the container
    {\"op\":\"reopen-log\"}                  reopen the log file (after moving it away)
    {\"op\":\"attach\",\"stdin\":true}         then frames: the container's output from now on
    {\"op\":\"exec\",\"args\":[..],\"env\":[..],\"cwd\":\"/\",\"tty\":false,\"stdin\":false}
    {\"op\":\"exec\",\"process\":{OCI process},\"stdin\":false}
                                           RUNTIME exec --detach; answers {\"pid\":N},
                                           then frames of that process's stdio
  Frames: [type u8][length u32 big-endian][payload].
    shim -> client: 1 stdout, 2 stderr, 3 exit (exit JSON, last frame),
                    4 dropped ({\"stdout_bytes\",\"stderr_bytes\"} sent before; last frame)
    client -> shim: 16 stdin, 17 close stdin, 18 resize (rows u16, cols u16)
  A stream ends with an exit or dropped frame; end-of-file without one means
  the shim died. Output is never dropped silently: the log file holds it all
  (the container waits while the log is written); an attached client that
  stays --client-buffer behind for --client-timeout gets a dropped frame and
  is disconnected; until then the container's output is held back for it.

CTL COMMANDS (a client of the protocol)
  state | start | wait | reopen-log | kill [SIGNAL] [--all] | resize ROWS COLS
  attach [--stdin]          output to stdout/stderr, input from stdin
  exec [--tty] [--stdin] [--cwd DIR] [--env K=V]... ARGS...
  `ctl state` also works when the shim is gone: it reports shim \"dead\" or
  \"exited\", the exit file if any, and the runtime's own state.

WHEN THE SHIM DIES
  SIGTERM, SIGINT, SIGQUIT and SIGHUP are passed on to the container's init;
  the shim stays to record how it ends. If the shim is killed (SIGKILL, OOM),
  the container keeps running, but: its exit status is lost (it is reaped by
  the next subreaper or init, no exit.json is written, no exit command or
  delete runs); its stdout/stderr pipes lose their reader, so its next write
  fails with EPIPE/SIGPIPE (with a terminal it gets SIGHUP); output still in
  the pipe or in the shim's buffers is not logged; attached clients and exec
  callers see end-of-file without an exit frame. `RUNTIME state` stays
  truthful, and `berth-shim ctl state` reports the shim dead.
";

/// How the shim was asked to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// `--runtime`.
    pub runtime: PathBuf,
    /// `--runtime-arg`s.
    pub runtime_args: Vec<String>,
    /// `--bundle`.
    pub bundle: PathBuf,
    /// `--id`.
    pub id: String,
    /// `--state-dir`.
    pub state_dir: PathBuf,
    /// `--log-path`.
    pub log_path: Option<PathBuf>,
    /// `--log-format`.
    pub log_format: LogFormat,
    /// `--log-max-size`.
    pub log_max_size: Option<u64>,
    /// `--log-max-files`.
    pub log_max_files: u32,
    /// `--terminal`.
    pub terminal: bool,
    /// `--stdin`.
    pub stdin: bool,
    /// `--start`.
    pub start: bool,
    /// `--exit-command`.
    pub exit_command: Option<PathBuf>,
    /// `--exit-command-arg`s.
    pub exit_command_args: Vec<String>,
    /// `--delete`.
    pub delete: bool,
    /// `--client-buffer`.
    pub client_buffer: usize,
    /// `--client-timeout`.
    pub client_timeout: Duration,
}

/// A `ctl` invocation.
#[derive(Clone, Debug, PartialEq)]
pub struct CtlOptions {
    /// `--state-dir`.
    pub state_dir: PathBuf,
    /// The command and its arguments.
    pub command: Vec<String>,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Invocation {
    /// Run a shim.
    Shim(Box<Options>),
    /// Talk to a shim.
    Ctl(CtlOptions),
    /// Print the help.
    Help,
    /// Print the version.
    Version,
}

/// Parses the arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Invocation> {
    if args.first().map(String::as_str) == Some("ctl") {
        return parse_ctl(&args[1..]).map(Invocation::Ctl);
    }
    let mut o = Options {
        runtime: PathBuf::new(),
        runtime_args: Vec::new(),
        bundle: PathBuf::new(),
        id: String::new(),
        state_dir: PathBuf::new(),
        log_path: None,
        log_format: LogFormat::Cri,
        log_max_size: None,
        log_max_files: 1,
        terminal: false,
        stdin: false,
        start: false,
        exit_command: None,
        exit_command_args: Vec::new(),
        delete: false,
        client_buffer: 1 << 20,
        client_timeout: Duration::from_millis(2000),
    };
    let mut it = Args::new(args);
    while let Some((flag, inline)) = it.next_flag()? {
        let mut value = || it.value(&flag, inline.clone());
        match flag.as_str() {
            "-h" | "--help" => return Ok(Invocation::Help),
            "-V" | "--version" => return Ok(Invocation::Version),
            "--runtime" => o.runtime = PathBuf::from(value()?),
            "--runtime-arg" => o.runtime_args.push(value()?),
            "--bundle" => o.bundle = PathBuf::from(value()?),
            "--id" => o.id = value()?,
            "--state-dir" => o.state_dir = PathBuf::from(value()?),
            "--log-path" => o.log_path = Some(PathBuf::from(value()?)),
            "--log-format" => o.log_format = LogFormat::parse(&value()?)?,
            "--log-max-size" => o.log_max_size = Some(parse_size(&value()?)?),
            "--log-max-files" => {
                let v = value()?;
                o.log_max_files = v.parse().ok().filter(|&n| n >= 1).with_context(|| {
                    format!("--log-max-files: {v:?} is not a number of at least 1")
                })?;
            }
            "--terminal" => o.terminal = true,
            "--stdin" => o.stdin = true,
            "--start" => o.start = true,
            "--exit-command" => o.exit_command = Some(PathBuf::from(value()?)),
            "--exit-command-arg" => o.exit_command_args.push(value()?),
            "--delete" => o.delete = true,
            "--client-buffer" => o.client_buffer = parse_size(&value()?)? as usize,
            "--client-timeout" => {
                let v = value()?;
                let ms: u64 = v
                    .parse()
                    .with_context(|| format!("--client-timeout: {v:?}"))?;
                o.client_timeout = Duration::from_millis(ms);
            }
            _ => bail!("unknown option {flag} (see berth-shim --help)"),
        }
        if inline.is_some()
            && matches!(
                flag.as_str(),
                "--terminal" | "--stdin" | "--start" | "--delete"
            )
        {
            bail!("{flag} takes no value");
        }
    }
    for (name, missing) in [
        ("--runtime", o.runtime.as_os_str().is_empty()),
        ("--bundle", o.bundle.as_os_str().is_empty()),
        ("--id", o.id.is_empty()),
        ("--state-dir", o.state_dir.as_os_str().is_empty()),
    ] {
        if missing {
            bail!("{name} is required (see berth-shim --help)");
        }
    }
    if o.log_max_size.is_some() && o.log_path.is_none() {
        bail!("--log-max-size needs --log-path");
    }
    Ok(Invocation::Shim(Box::new(o)))
}

fn parse_ctl(args: &[String]) -> Result<CtlOptions> {
    let mut state_dir = None;
    let mut rest = args;
    while let Some(a) = rest.first() {
        if a == "--state-dir" {
            state_dir = Some(PathBuf::from(
                rest.get(1).context("--state-dir needs a value")?,
            ));
            rest = &rest[2..];
        } else if let Some(v) = a.strip_prefix("--state-dir=") {
            state_dir = Some(PathBuf::from(v));
            rest = &rest[1..];
        } else {
            break;
        }
    }
    let state_dir = state_dir.context("ctl: --state-dir is required")?;
    if rest.is_empty() {
        bail!("ctl: a command is required (see berth-shim --help)");
    }
    Ok(CtlOptions {
        state_dir,
        command: rest.to_vec(),
    })
}

/// A byte count with an optional K, M or G suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .with_context(|| format!("{s:?} is not a size (bytes, or a number with K, M or G)"))
}

struct Args<'a> {
    args: &'a [String],
    i: usize,
}

impl<'a> Args<'a> {
    fn new(args: &'a [String]) -> Args<'a> {
        Args { args, i: 0 }
    }

    /// The next `--flag` and its `=value` if written inline.
    fn next_flag(&mut self) -> Result<Option<(String, Option<String>)>> {
        let Some(a) = self.args.get(self.i) else {
            return Ok(None);
        };
        self.i += 1;
        if !a.starts_with('-') {
            bail!("unexpected argument {a:?} (see berth-shim --help)");
        }
        Ok(Some(match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        }))
    }

    fn value(&mut self, flag: &str, inline: Option<String>) -> Result<String> {
        if let Some(v) = inline {
            return Ok(v);
        }
        let v = self
            .args
            .get(self.i)
            .with_context(|| format!("{flag} needs a value"))?;
        self.i += 1;
        Ok(v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn full_command_line() {
        let a = args(&[
            "--runtime",
            "/usr/sbin/runc",
            "--runtime-arg=--root",
            "--runtime-arg",
            "/r",
            "--bundle",
            "/b",
            "--id",
            "c1",
            "--state-dir",
            "/s",
            "--log-path",
            "/l",
            "--log-format=json",
            "--log-max-size",
            "64K",
            "--log-max-files",
            "3",
            "--terminal",
            "--start",
            "--exit-command",
            "/bin/true",
            "--exit-command-arg",
            "x",
            "--delete",
        ]);
        let Invocation::Shim(o) = parse(&a).unwrap() else {
            panic!()
        };
        assert_eq!(o.runtime_args, ["--root", "/r"]);
        assert_eq!(o.log_format, LogFormat::Json);
        assert_eq!(o.log_max_size, Some(65536));
        assert_eq!(o.log_max_files, 3);
        assert!(o.terminal && o.start && o.delete && !o.stdin);
        assert_eq!(o.exit_command_args, ["x"]);
    }

    #[test]
    fn errors_are_clear() {
        let e = parse(&args(&["--runtime", "r", "--bundle", "b", "--id", "i"])).unwrap_err();
        assert!(e.to_string().contains("--state-dir is required"), "{e}");
        let e = parse(&args(&["--bogus"])).unwrap_err();
        assert!(e.to_string().contains("unknown option --bogus"), "{e}");
        assert!(parse(&args(&["--log-max-size", "12Q"])).is_err());
        assert_eq!(parse(&args(&["--help"])).unwrap(), Invocation::Help);
        let Invocation::Ctl(c) = parse(&args(&["ctl", "--state-dir", "/s", "kill", "9"])).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.command, ["kill", "9"]);
    }
}

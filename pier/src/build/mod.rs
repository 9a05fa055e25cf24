//! `pier build`: a Dockerfile becomes an image in the store.
//!
//! Stages are built in order (only those the target needs). Each stage
//! starts from `scratch`, an image (from the store, pulled if missing) or
//! an earlier stage, and keeps a [`State`]: its layers, its image config
//! (with history) and its cache key. `RUN`, `COPY`, `ADD` and `WORKDIR`
//! mount the layers as an overlay with a fresh upper directory
//! ([`step::StepMount`]), change it (a container through the runtime's
//! CLI, or file copies), and the upper directory becomes the next layer
//! ([`commit`]); the other instructions only change the config. Every step
//! has a cache key ([`cache`]); a hit reuses the step's layer without
//! running it.
//!
//! The image is written (config, manifest, names) only after the last step
//! succeeded; a failed or interrupted build leaves no name, no container
//! and no mount (blobs of finished steps stay for the cache, and `pier
//! prune` removes them once unreferenced).

pub mod cache;
pub mod commit;
pub mod context;
pub mod copy;
pub mod dockerfile;
pub mod leftovers;
pub mod step;
pub mod words;

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};

use self::context::{dest_path, BuildContext};
use self::copy::Attrs;
use self::dockerfile::{Cmd, Dockerfile, Instr, Kind, Src};
use self::step::{missing_mountpoints, StepMount};
use self::words::{expand, Vars};
use crate::digest::Digest;
use crate::image::{
    Image, Layer, PlatformSpec, OCI_CONFIG, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_MANIFEST,
};
use crate::inroot::Root;
use crate::reference::ImageRef;
use crate::run::runtime::Runtime;
use crate::run::spec::{self, NetNs, SpecOpts};
use crate::run::{seccomp, user};
use crate::store::{NameEntry, Store};

/// Where base images come from when they are not in the store.
pub type Puller<'a> = dyn Fn(&Store, &str, &PlatformSpec) -> Result<Image> + 'a;

/// What to build and how.
pub struct BuildOptions<'a> {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile (default `CONTEXT/Dockerfile`).
    pub dockerfile: Option<PathBuf>,
    /// Names to give the image.
    pub tags: Vec<String>,
    /// `--build-arg K=V`.
    pub build_args: Vec<(String, String)>,
    /// `--target STAGE`.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--platform`.
    pub platform: Option<PlatformSpec>,
    /// `--label K=V`.
    pub labels: Vec<(String, String)>,
    /// `--network host` (else build containers have no network).
    pub network_host: bool,
    /// The runtime for `RUN`.
    pub runtime: Runtime,
    /// Absolute cgroup parent of build containers.
    pub cgroup_parent: String,
    /// Only print the image ID.
    pub quiet: bool,
    /// Pulls a missing base image.
    pub puller: &'a Puller<'a>,
}

/// The result.
#[derive(Debug, Clone)]
pub struct Built {
    /// Manifest digest.
    pub manifest: Digest,
    /// Image ID (config digest).
    pub id: Digest,
    /// Canonical names given.
    pub names: Vec<String>,
}

/// A stage's state after some steps.
#[derive(Clone, Debug)]
struct State {
    layers: Vec<Layer>,
    config: Value,
    key: Digest,
    /// Declared ARGs with a value, in this stage.
    args: Vars,
}

impl State {
    fn scratch(platform: &PlatformSpec) -> State {
        let mut config = json!({
            "architecture": platform.arch, "os": platform.os,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        });
        if let Some(v) = &platform.variant {
            config["variant"] = json!(v);
        }
        State {
            layers: Vec::new(),
            config,
            key: Digest::of(b"scratch"),
            args: Vars::default(),
        }
    }

    fn c(&mut self) -> &mut Map<String, Value> {
        if !self.config["config"].is_object() {
            self.config["config"] = json!({});
        }
        self.config["config"].as_object_mut().expect("object")
    }

    fn get(&self, k: &str) -> Option<&Value> {
        self.config["config"].get(k).filter(|v| !v.is_null())
    }

    fn env(&self) -> Vec<String> {
        self.get("Env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// ARGs then ENVs, for expansion.
    fn vars(&self) -> Vars {
        let mut v = self.args.clone();
        for e in self.env() {
            if let Some((k, val)) = e.split_once('=') {
                v.set(k, val);
            }
        }
        v
    }

    fn workdir(&self) -> String {
        self.get("WorkingDir")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("/")
            .to_string()
    }

    fn shell(&self) -> Vec<String> {
        self.get("Shell")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn set_env(&mut self, k: &str, v: &str) {
        let mut env = self.env();
        let prefix = format!("{k}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{k}={v}"));
        self.c().insert("Env".into(), json!(env));
    }

    fn history(&mut self, created: &str, created_by: &str, empty: bool) {
        let mut h = json!({"created": created, "created_by": created_by, "comment": "pier build"});
        if empty {
            h["empty_layer"] = json!(true);
        }
        if !self.config["history"].is_array() {
            self.config["history"] = json!([]);
        }
        self.config["history"]
            .as_array_mut()
            .expect("array")
            .push(h);
        self.config["created"] = json!(created);
    }
}

/// Layer media types in an OCI manifest: Docker's names for the same
/// bytes become OCI's.
fn oci_layer_type(t: &str) -> String {
    match t {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => OCI_LAYER_GZIP.into(),
        "application/vnd.docker.image.rootfs.diff.tar" => OCI_LAYER_TAR.into(),
        other => other.into(),
    }
}

fn now() -> String {
    crate::archive::now_rfc3339()
}

fn cmd_json(c: &Cmd, shell: &[String]) -> Vec<String> {
    match c {
        Cmd::Exec(v) => v.clone(),
        Cmd::Shell(s) => {
            let mut v = shell.to_vec();
            v.push(s.clone());
            v
        }
    }
}

/// The seccomp profile of build containers (read once per build).
fn build_seccomp(caps: &[String]) -> Option<Value> {
    static P: OnceLock<Option<Value>> = OnceLock::new();
    P.get_or_init(|| {
        let p = Path::new(seccomp::DEFAULT_PROFILE);
        if !p.exists() {
            eprintln!(
                "pier: warning: {} is missing: build steps run without seccomp",
                p.display()
            );
            return None;
        }
        match seccomp::load(p, caps) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("pier: warning: {e:#}: build steps run without seccomp");
                None
            }
        }
    })
    .clone()
}

/// Parses `--chmod` (octal).
fn parse_chmod(s: &str) -> Result<u32> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| anyhow!("--chmod={s}: expected an octal mode"))
}

/// The builder.
struct Builder<'a> {
    store: &'a Store,
    opts: &'a BuildOptions<'a>,
    df: Dockerfile,
    ctx: BuildContext,
    out: Box<dyn Write>,
    step_no: usize,
    steps: usize,
    used_args: HashSet<String>,
    /// Build args given on the command line.
    cli_args: BTreeMap<String, String>,
    /// Global ARGs (before the first FROM) with their values.
    global: Vars,
    platform: PlatformSpec,
}

/// Builds the image.
pub fn build(store: &Store, opts: &BuildOptions<'_>) -> Result<Built> {
    let df_path = opts
        .dockerfile
        .clone()
        .unwrap_or_else(|| opts.context.join("Dockerfile"));
    let text =
        std::fs::read_to_string(&df_path).with_context(|| format!("read {}", df_path.display()))?;
    let name = df_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    let df = Dockerfile::parse(&name, &text)?;
    let ctx = BuildContext::open(&opts.context)?;
    let out: Box<dyn Write> = if opts.quiet {
        Box::new(std::io::sink())
    } else {
        Box::new(std::io::stdout())
    };
    let platform = opts.platform.clone().unwrap_or_else(PlatformSpec::host);
    let mut b = Builder {
        store,
        opts,
        df,
        ctx,
        out,
        step_no: 0,
        steps: 0,
        used_args: HashSet::new(),
        cli_args: opts.build_args.iter().cloned().collect(),
        global: Vars::default(),
        platform,
    };
    b.run()
}

impl Builder<'_> {
    fn err(&self, i: &Instr, e: anyhow::Error) -> anyhow::Error {
        if i.line == 0 {
            e.context(format!("ONBUILD {}", i.text))
        } else {
            anyhow!("{}:{}: {e:#}", self.df.name, i.line)
        }
    }

    fn say(&mut self, s: &str) {
        let _ = writeln!(self.out, "{s}");
        let _ = self.out.flush();
    }

    fn run(&mut self) -> Result<Built> {
        // Split the instructions into the global ARGs and the stages.
        let instrs = self.df.instrs.clone();
        let first_from = instrs
            .iter()
            .position(|i| matches!(i.kind, Kind::From { .. }))
            .ok_or_else(|| anyhow!("{}: no FROM instruction", self.df.name))?;
        // Build platform arguments BuildKit predefines.
        let host = PlatformSpec::host();
        let tp = &self.platform;
        for (k, v) in [
            ("BUILDPLATFORM", format!("{}/{}", host.os, host.arch)),
            ("BUILDOS", host.os.clone()),
            ("BUILDARCH", host.arch.clone()),
            ("TARGETPLATFORM", format!("{}/{}", tp.os, tp.arch)),
            ("TARGETOS", tp.os.clone()),
            ("TARGETARCH", tp.arch.clone()),
        ] {
            self.global.set(k, &v);
        }
        for i in &instrs[..first_from] {
            let Kind::Arg(raw) = &i.kind else {
                unreachable!("the parser allows only ARG before FROM")
            };
            let g = self.global.clone();
            for (k, def) in words::args(raw, &g, self.df.escape).map_err(|e| self.err(i, e))? {
                let v = self.cli_args.get(&k).cloned().or(def);
                if self.cli_args.contains_key(&k) {
                    self.used_args.insert(k.clone());
                }
                if let Some(v) = v {
                    self.global.set(&k, &v);
                }
            }
        }
        let mut stages: Vec<Vec<Instr>> = Vec::new();
        for i in &instrs[first_from..] {
            if matches!(i.kind, Kind::From { .. }) {
                stages.push(Vec::new());
            }
            stages.last_mut().expect("a stage").push(i.clone());
        }
        let names: Vec<Option<String>> = stages
            .iter()
            .map(|s| match &s[0].kind {
                Kind::From { name, .. } => name.clone(),
                _ => None,
            })
            .collect();
        let target = match &self.opts.target {
            Some(t) => names
                .iter()
                .position(|n| n.as_deref() == Some(&t.to_lowercase()))
                .ok_or_else(|| anyhow!("target stage {t:?} could not be found"))?,
            None => stages.len() - 1,
        };
        let needed = self.needed(&stages, &names, target);
        self.steps = needed.iter().map(|&k| stages[k].len()).sum();
        let mut states: Vec<Option<State>> = vec![None; stages.len()];
        for k in 0..=target {
            if !needed.contains(&k) {
                continue;
            }
            crate::interrupt::check()?;
            let st = self.stage(&stages[k], &names, &states)?;
            states[k] = Some(st);
        }
        let final_state = states[target].take().expect("target built");
        let unused: Vec<&String> = self
            .cli_args
            .keys()
            .filter(|k| !self.used_args.contains(*k))
            .collect();
        if !unused.is_empty() {
            eprintln!("[Warning] One or more build-args {unused:?} were not consumed");
        }
        crate::interrupt::check()?;
        self.write_image(final_state)
    }

    /// Indexes of the stages the target depends on.
    fn needed(
        &self,
        stages: &[Vec<Instr>],
        names: &[Option<String>],
        target: usize,
    ) -> HashSet<usize> {
        let find = |r: &str, before: usize| -> Option<usize> {
            let r = r.to_lowercase();
            if let Some(p) = names[..before]
                .iter()
                .position(|n| n.as_deref() == Some(&r))
            {
                return Some(p);
            }
            r.parse::<usize>().ok().filter(|n| *n < before)
        };
        let mut need = HashSet::new();
        let mut todo = vec![target];
        while let Some(k) = todo.pop() {
            if !need.insert(k) {
                continue;
            }
            for i in &stages[k] {
                let r = match &i.kind {
                    Kind::From { image, .. } => expand(image, &self.global, self.df.escape).ok(),
                    Kind::Copy { from: Some(f), .. } => Some(f.clone()),
                    _ => None,
                };
                if let Some(d) = r.and_then(|r| find(&r, k)) {
                    todo.push(d);
                }
            }
        }
        need
    }

    fn stage(
        &mut self,
        instrs: &[Instr],
        names: &[Option<String>],
        states: &[Option<State>],
    ) -> Result<State> {
        let from = &instrs[0];
        let Kind::From {
            image, platform, ..
        } = &from.kind
        else {
            unreachable!()
        };
        self.step_no += 1;
        let image = expand(image, &self.global, self.df.escape).map_err(|e| self.err(from, e))?;
        let (n, total) = (self.step_no, self.steps);
        self.say(&format!("Step {n}/{total} : {}", from.text));
        let platform = match platform {
            Some(p) => {
                let p = expand(p, &self.global, self.df.escape).map_err(|e| self.err(from, e))?;
                PlatformSpec::parse(&p).map_err(|e| self.err(from, e))?
            }
            None => self.platform.clone(),
        };
        let by_name = names
            .iter()
            .enumerate()
            .position(|(k, n)| n.as_deref() == Some(&image.to_lowercase()) && states[k].is_some());
        let mut st = if image.eq_ignore_ascii_case("scratch") {
            State::scratch(&platform)
        } else if let Some(k) = by_name {
            let mut s = states[k].clone().expect("built");
            s.args = Vars::default();
            s
        } else {
            let img = match crate::image::resolve(self.store, &image) {
                Ok((_, img)) => img,
                Err(_) => (self.opts.puller)(self.store, &image, &platform)
                    .map_err(|e| self.err(from, e))?,
            };
            let config: Value = serde_json::from_slice(&img.config_bytes)
                .with_context(|| format!("parse the config of {image}"))?;
            State {
                layers: img.layers()?,
                config,
                key: img.config_digest.clone(),
                args: Vars::default(),
            }
        };
        self.say(&format!(" ---> {}", st.key.short()));
        // ONBUILD triggers of the base run first, and are not inherited.
        let triggers: Vec<String> = st
            .get("OnBuild")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        st.c().remove("OnBuild");
        for t in triggers {
            let i = Dockerfile::parse_trigger(&t)?;
            self.say(&format!("# Executing ONBUILD trigger: {t}"));
            self.instr(&mut st, &i, names, states)?;
        }
        for i in &instrs[1..] {
            crate::interrupt::check()?;
            self.step_no += 1;
            let (n, total) = (self.step_no, self.steps);
            self.say(&format!("Step {n}/{total} : {}", i.text));
            self.instr(&mut st, i, names, states)?;
            self.say(&format!(" ---> {}", st.key.short()));
        }
        Ok(st)
    }

    /// Applies a config-only change with its history entry and cache key
    /// (the entry keeps the time stable across cached rebuilds).
    fn meta(&mut self, st: &mut State, step: &str, created_by: &str) -> Result<()> {
        st.key = cache::next_key(&st.key, step);
        let created = match cache::get(self.store, &st.key) {
            Some(e) if !self.opts.no_cache => e.created,
            _ => {
                let e = cache::Entry {
                    created: now(),
                    layer: None,
                };
                cache::put(self.store, &st.key, &e)?;
                e.created
            }
        };
        st.history(&created, created_by, true);
        Ok(())
    }

    /// Runs a layer step through the cache: on a hit, its recorded result
    /// is reused; on a miss, `f` makes the layer.
    fn layer_step(
        &mut self,
        st: &mut State,
        step: &str,
        created_by: &str,
        f: &mut dyn FnMut(&mut Self, &State) -> Result<Option<commit::NewLayer>>,
    ) -> Result<()> {
        let key = cache::next_key(&st.key, step);
        let hit = if self.opts.no_cache {
            None
        } else {
            cache::get(self.store, &key)
        };
        let entry = match hit {
            Some(e) => {
                self.say(" ---> Using cache");
                e
            }
            None => {
                let layer = f(self, st)?;
                crate::failpoint::hit("build-before-cache");
                let e = cache::Entry {
                    created: now(),
                    layer: layer.map(|l| cache::CachedLayer {
                        diff_id: l.diff_id,
                        blob: l.blob,
                        size: l.size,
                    }),
                };
                cache::put(self.store, &key, &e)?;
                e
            }
        };
        st.key = key;
        match &entry.layer {
            Some(l) => {
                st.layers.push(Layer {
                    digest: l.blob.clone(),
                    size: l.size,
                    media_type: OCI_LAYER_GZIP.into(),
                    diff_id: l.diff_id.clone(),
                });
                st.history(&entry.created, created_by, false);
            }
            None => st.history(&entry.created, created_by, true),
        }
        Ok(())
    }

    fn instr(
        &mut self,
        st: &mut State,
        i: &Instr,
        names: &[Option<String>],
        states: &[Option<State>],
    ) -> Result<()> {
        self.instr_inner(st, i, names, states).map_err(|e| {
            if e.to_string() == "interrupted" {
                e
            } else {
                self.err(i, e)
            }
        })
    }

    fn instr_inner(
        &mut self,
        st: &mut State,
        i: &Instr,
        names: &[Option<String>],
        states: &[Option<State>],
    ) -> Result<()> {
        let esc = self.df.escape;
        let vars = st.vars();
        let x = |w: &str| expand(w, &vars, esc);
        match &i.kind {
            Kind::From { .. } => bail!("FROM inside a stage"),
            Kind::Arg(raw) => {
                let mut step = String::from("ARG");
                for (k, def) in words::args(raw, &vars, esc)? {
                    let v = if let Some(v) = self.cli_args.get(&k) {
                        self.used_args.insert(k.clone());
                        Some(v.clone())
                    } else if def.is_some() {
                        def
                    } else {
                        // `ARG NAME` brings a global ARG into the stage.
                        self.global.get(&k).map(str::to_string)
                    };
                    step.push_str(&format!(" {k}={}", v.as_deref().unwrap_or("")));
                    if let Some(v) = v {
                        st.args.set(&k, &v);
                    }
                }
                self.meta(st, &step, &format!("ARG {raw}"))
            }
            Kind::Env(raw) => {
                let pairs = words::pairs(raw, &vars, esc, "ENV")?;
                let mut step = String::from("ENV");
                for (k, v) in &pairs {
                    st.set_env(k, v);
                    step.push_str(&format!(" {k}={v}"));
                }
                self.meta(st, &step, &step.clone())
            }
            Kind::Label(raw) => {
                let pairs = words::pairs(raw, &vars, esc, "LABEL")?;
                let mut step = String::from("LABEL");
                let c = st.c();
                if !c.get("Labels").is_some_and(Value::is_object) {
                    c.insert("Labels".into(), json!({}));
                }
                for (k, v) in &pairs {
                    c["Labels"][k] = json!(v);
                    step.push_str(&format!(" {k}={v}"));
                }
                self.meta(st, &step, &step.clone())
            }
            Kind::Workdir(w) => {
                let w = x(w)?;
                let path = dest_path(&st.workdir(), &w);
                let p = path.to_string_lossy().into_owned();
                st.c().insert("WorkingDir".into(), json!(p));
                let step = format!("WORKDIR {p}");
                self.layer_step(st, &step, &step.clone(), &mut |b, st| {
                    let m = StepMount::new(b.store, &st.layers)?;
                    let root = Root::open(m.rootfs())?;
                    root.mkdir_all(&path, 0, 0)?;
                    drop(root);
                    m.commit(&[])
                })
            }
            Kind::User(u) => {
                let u = x(u)?;
                st.c().insert("User".into(), json!(u));
                let step = format!("USER {u}");
                self.meta(st, &step, &step.clone())
            }
            Kind::Cmd(c) | Kind::Entrypoint(c) => {
                let is_cmd = matches!(i.kind, Kind::Cmd(_));
                let v = cmd_json(c, &st.shell());
                let key = if is_cmd { "Cmd" } else { "Entrypoint" };
                st.c().insert(key.into(), json!(v));
                if !is_cmd {
                    // Docker: a new ENTRYPOINT resets an inherited CMD.
                    st.c().remove("Cmd");
                }
                let step = format!("{} {}", key.to_uppercase(), json!(v));
                self.meta(st, &step, &step.clone())
            }
            Kind::Shell(v) => {
                st.c().insert("Shell".into(), json!(v));
                let step = format!("SHELL {}", json!(v));
                self.meta(st, &step, &step.clone())
            }
            Kind::Expose(ports) => {
                let c = st.c();
                if !c.get("ExposedPorts").is_some_and(Value::is_object) {
                    c.insert("ExposedPorts".into(), json!({}));
                }
                let mut step = String::from("EXPOSE");
                for p in ports {
                    let p = expand(p, &vars, esc)?;
                    let p = if p.contains('/') {
                        p.to_lowercase()
                    } else {
                        format!("{p}/tcp")
                    };
                    let (num, proto) = p.split_once('/').expect("has /");
                    if num.split('-').any(|n| n.parse::<u16>().is_err())
                        || !matches!(proto, "tcp" | "udp" | "sctp")
                    {
                        bail!("invalid port {p:?}");
                    }
                    st.c()["ExposedPorts"][&p] = json!({});
                    step.push(' ');
                    step.push_str(&p);
                }
                self.meta(st, &step, &step.clone())
            }
            Kind::Volume(v) => {
                let c = st.c();
                if !c.get("Volumes").is_some_and(Value::is_object) {
                    c.insert("Volumes".into(), json!({}));
                }
                let mut step = String::from("VOLUME");
                for p in v {
                    let p = expand(p, &vars, esc)?;
                    if p.is_empty() {
                        bail!("VOLUME with an empty path");
                    }
                    st.c()["Volumes"][&p] = json!({});
                    step.push(' ');
                    step.push_str(&p);
                }
                self.meta(st, &step, &step.clone())
            }
            Kind::Stopsignal(s) => {
                let s = x(s)?;
                crate::run::signals::parse(&s)?;
                st.c().insert("StopSignal".into(), json!(s));
                let step = format!("STOPSIGNAL {s}");
                self.meta(st, &step, &step.clone())
            }
            Kind::Healthcheck(h) => {
                let mut hc = Map::new();
                match &h.test {
                    None => {
                        hc.insert("Test".into(), json!(["NONE"]));
                    }
                    Some(Cmd::Exec(v)) => {
                        let mut t = vec!["CMD".to_string()];
                        t.extend(v.iter().cloned());
                        hc.insert("Test".into(), json!(t));
                    }
                    Some(Cmd::Shell(s)) => {
                        hc.insert("Test".into(), json!(["CMD-SHELL", s]));
                    }
                }
                for (k, v) in &h.options {
                    let field = match k.as_str() {
                        "interval" => "Interval",
                        "timeout" => "Timeout",
                        "start-period" => "StartPeriod",
                        "start-interval" => "StartInterval",
                        _ => "Retries",
                    };
                    let val = if field == "Retries" {
                        json!(v.parse::<u64>().with_context(|| format!("--retries={v}"))?)
                    } else {
                        let d = humantime::parse_duration(v)
                            .with_context(|| format!("--{k}={v}: not a duration"))?;
                        json!(d.as_nanos() as u64)
                    };
                    hc.insert(field.into(), val);
                }
                let step = format!("HEALTHCHECK {}", Value::Object(hc.clone()));
                st.c().insert("Healthcheck".into(), Value::Object(hc));
                self.meta(st, &step, &step.clone())
            }
            Kind::Onbuild(t) => {
                Dockerfile::parse_trigger(t)?;
                let c = st.c();
                if !c.get("OnBuild").is_some_and(Value::is_array) {
                    c.insert("OnBuild".into(), json!([]));
                }
                c["OnBuild"].as_array_mut().expect("array").push(json!(t));
                let step = format!("ONBUILD {t}");
                self.meta(st, &step, &step.clone())
            }
            Kind::Maintainer(m) => {
                st.config["author"] = json!(m);
                let step = format!("MAINTAINER {m}");
                self.meta(st, &step, &step.clone())
            }
            Kind::Run { cmd, network } => self.run_step(st, i, cmd, network.as_deref()),
            Kind::Copy {
                srcs,
                dest,
                from,
                chown,
                chmod,
            } => {
                let from = from.as_ref().map(|f| x(f)).transpose()?;
                self.copy_step(st, "COPY", srcs, dest, from, chown, chmod, names, states)
            }
            Kind::Add {
                srcs,
                dest,
                chown,
                chmod,
            } => self.copy_step(st, "ADD", srcs, dest, None, chown, chmod, names, states),
        }
    }

    fn run_step(
        &mut self,
        st: &mut State,
        _i: &Instr,
        cmd: &Cmd,
        network: Option<&str>,
    ) -> Result<()> {
        let shell = st.shell();
        let args = cmd_json(cmd, &shell);
        let host_net = match network {
            None | Some("default") => self.opts.network_host,
            Some("none") => false,
            Some("host") => {
                if !self.opts.network_host {
                    bail!("RUN --network=host needs `pier build --network host`");
                }
                true
            }
            Some(n) => bail!("RUN --network={n}: expected none, host or default"),
        };
        // The environment: the image's, then the stage's ARGs (which the
        // image's ENV overrides), PATH if missing.
        let mut env = st.env();
        for (k, v) in &st.args.0 {
            if !env
                .iter()
                .any(|e| e.split_once('=').map(|x| x.0) == Some(k))
            {
                env.push(format!("{k}={v}"));
            }
        }
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(spec::DEFAULT_PATH.into());
        }
        let mut step = format!("RUN {}", json!(args));
        let mut argv: Vec<&(String, String)> = st.args.0.iter().collect();
        argv.sort();
        for (k, v) in argv {
            step.push_str(&format!(" |{k}={v}"));
        }
        if host_net {
            step.push_str(" network=host");
        }
        let created_by = match cmd {
            Cmd::Shell(s) => format!("RUN {} {s}", shell.join(" ")),
            Cmd::Exec(v) => format!("RUN {}", json!(v)),
        };
        let user_spec = st
            .get("User")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let cwd = st.workdir();
        self.layer_step(st, &step, &created_by, &mut |b, st| {
            let mut m = StepMount::new(b.store, &st.layers)?;
            let root = Root::open(m.rootfs())?;
            let user = user::resolve(&root, &user_spec)?;
            let missing = missing_mountpoints(
                &root,
                &["/proc", "/dev", "/sys", "/etc/hosts", "/etc/resolv.conf"],
            );
            drop(root);
            let hosts = m.dir().join("hosts");
            let resolv = m.dir().join("resolv.conf");
            let host_hosts = if host_net {
                std::fs::read_to_string("/etc/hosts").unwrap_or_default()
            } else {
                String::new()
            };
            std::fs::write(
                &hosts,
                format!(
                    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{host_hosts}"
                ),
            )
            .context("write hosts")?;
            std::fs::write(
                &resolv,
                std::fs::read("/etc/resolv.conf").unwrap_or_default(),
            )
            .context("write resolv.conf")?;
            let id = format!(
                "pier-build-{}",
                &Digest::of(m.dir().as_os_str().as_encoded_bytes()).hex()[..16]
            );
            let caps = spec::capabilities(&[], &[])?;
            let opts = SpecOpts {
                args: args.clone(),
                env: env.clone(),
                cwd: cwd.clone(),
                user,
                terminal: false,
                hostname: "pier-build".into(),
                seccomp: build_seccomp(&caps),
                caps,
                no_new_privileges: false,
                read_only: false,
                netns: if host_net { NetNs::Host } else { NetNs::New },
                mounts: vec![
                    spec::bind(&hosts.to_string_lossy(), "/etc/hosts", false),
                    spec::bind(&resolv.to_string_lossy(), "/etc/resolv.conf", false),
                ],
                memory: None,
                cpus: None,
                pids: None,
                cgroups_path: format!("{}/{id}", b.opts.cgroup_parent.trim_end_matches('/')),
                annotations: vec![],
            };
            let config = spec::generate(&opts);
            b.say(&format!(" ---> Running in {}", &id[11..23]));
            let rt = b.opts.runtime.clone();
            let code = m.run(&rt, &id, &config, &mut b.out)?;
            if code != 0 {
                bail!(
                    "RUN {} returned a non-zero code: {code}",
                    match cmd {
                        Cmd::Shell(s) => s.clone(),
                        Cmd::Exec(v) => json!(v).to_string(),
                    }
                );
            }
            m.commit(&missing)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_step(
        &mut self,
        st: &mut State,
        what: &str,
        srcs: &[Src],
        dest: &str,
        from: Option<String>,
        chown: &Option<String>,
        chmod: &Option<String>,
        names: &[Option<String>],
        states: &[Option<State>],
    ) -> Result<()> {
        let esc = self.df.escape;
        let vars = st.vars();
        let dest_raw = expand(dest, &vars, esc)?;
        let dest_path_ = dest_path(&st.workdir(), &dest_raw);
        let chown = chown.as_ref().map(|c| expand(c, &vars, esc)).transpose()?;
        let chmod = chmod
            .as_ref()
            .map(|c| expand(c, &vars, esc).and_then(|c| parse_chmod(&c)))
            .transpose()?;
        let mut paths = Vec::new();
        let mut heredocs = Vec::new();
        for s in srcs {
            match s {
                Src::Path(p) => {
                    let p = expand(p, &vars, esc)?;
                    if what == "ADD" && (p.contains("://") || p.starts_with("git@")) {
                        bail!("ADD from a URL or git repository is not supported (builds have no network): {p}");
                    }
                    paths.push(p);
                }
                Src::HereDoc { body, expand: e } => heredocs.push(if *e {
                    expand(body, &vars, esc).unwrap_or_else(|_| body.clone())
                } else {
                    body.clone()
                }),
            }
        }
        let dest_is_dir = dest_raw.ends_with('/') || paths.len() + heredocs.len() > 1;
        // Where the sources come from, and what identifies them in the key.
        enum From {
            Context,
            Stage(usize),
            Image(String),
        }
        let src_kind = match &from {
            None => From::Context,
            Some(f) => {
                let fl = f.to_lowercase();
                let k = names
                    .iter()
                    .position(|n| n.as_deref() == Some(&fl))
                    .or_else(|| fl.parse::<usize>().ok());
                match k {
                    Some(k) if states.get(k).is_some_and(Option::is_some) => From::Stage(k),
                    Some(_) if names.iter().any(|n| n.as_deref() == Some(&fl)) => {
                        bail!("COPY --from={f}: that stage comes later or is this one")
                    }
                    _ => From::Image(f.clone()),
                }
            }
        };
        let mut from_image: Option<Image> = None;
        let (sources, ident) = match &src_kind {
            From::Context => {
                let mut rels = Vec::new();
                for p in &paths {
                    rels.extend(self.ctx.sources(p)?);
                }
                let h = self.ctx.hash(&rels)?;
                (rels, format!("context:{h}"))
            }
            From::Stage(k) => (
                paths.clone(),
                format!("stage:{}", states[*k].as_ref().expect("built").key),
            ),
            From::Image(r) => {
                let img = match crate::image::resolve(self.store, r) {
                    Ok((_, img)) => img,
                    Err(_) => (self.opts.puller)(self.store, r, &self.platform)?,
                };
                let id = img.config_digest.to_string();
                from_image = Some(img);
                (paths.clone(), format!("image:{id}"))
            }
        };
        let mut hd = crate::digest::Hasher::new();
        for h in &heredocs {
            hd.update(h.as_bytes());
            hd.update(b"\0");
        }
        let step = format!(
            "{what} {} {} -> {} chown={:?} chmod={:?} heredocs={}",
            ident,
            json!(sources),
            dest_path_.display(),
            chown,
            chmod,
            hd.finish()
        );
        let created_by = format!(
            "{what} {}{} {}",
            from.as_ref()
                .map(|f| format!("--from={f} "))
                .unwrap_or_default(),
            paths.join(" "),
            dest_raw
        );
        let is_add = what == "ADD";
        self.layer_step(st, &step, &created_by, &mut |b, st| {
            let m = StepMount::new(b.store, &st.layers)?;
            let root = Root::open(m.rootfs())?;
            let owner = match &chown {
                Some(c) => {
                    let u = user::resolve(&root, c)?;
                    Some((u.uid, u.gid))
                }
                None => None,
            };
            // Sources from a stage or an image: a view of it, mounted like
            // a step (so it is cleaned up like one, also after a crash).
            let mut src_mount: Option<StepMount> = None;
            let src_root = match &src_kind {
                From::Context => None,
                From::Stage(k) => {
                    let sm = StepMount::new(b.store, &states[*k].as_ref().expect("built").layers)?;
                    let r = Root::open(sm.rootfs())?;
                    src_mount = Some(sm);
                    Some(r)
                }
                From::Image(_) => {
                    let img = from_image.as_ref().expect("resolved");
                    let sm = StepMount::new(b.store, &img.layers()?)?;
                    let r = Root::open(sm.rootfs())?;
                    src_mount = Some(sm);
                    Some(r)
                }
            };
            let result = (|| -> Result<()> {
                let attrs = Attrs {
                    owner: Some(owner.unwrap_or((0, 0))),
                    chmod,
                };
                for body in &heredocs {
                    let (dir, name) = if dest_is_dir {
                        bail!("a here-document needs a file destination");
                    } else {
                        (
                            dest_path_.parent().unwrap_or(Path::new("/")).to_path_buf(),
                            dest_path_
                                .file_name()
                                .context("destination")?
                                .to_os_string(),
                        )
                    };
                    let (u, g) = owner.unwrap_or((0, 0));
                    let d = root.mkdir_all(&dir, u, g)?;
                    copy::write_file(d.as_raw_fd(), &name, body.as_bytes(), &attrs)?;
                }
                for rel in &sources {
                    crate::interrupt::check()?;
                    let (sroot, ignore) = match &src_root {
                        None => (b.ctx.root(), Some(&b.ctx.ignore)),
                        Some(r) => (r, None),
                    };
                    let fd = sroot
                        .open_at(Path::new(rel), nix::fcntl::OFlag::O_PATH)
                        .with_context(|| format!("{rel}: not found"))?;
                    let name = Path::new(rel)
                        .file_name()
                        .map(OsStr::to_os_string)
                        .unwrap_or_default();
                    let a = match (&src_kind, owner) {
                        // --from keeps the source's owners unless --chown.
                        (From::Stage(_) | From::Image(_), None) => Attrs { owner: None, chmod },
                        _ => attrs,
                    };
                    if is_add && src_root.is_none() {
                        if let Some(()) = add_archive(b.store, &root, &fd, &dest_path_, owner)? {
                            continue;
                        }
                    }
                    let r = rel.trim_start_matches('/');
                    copy::copy_source(&root, &fd, &name, r, ignore, &dest_path_, dest_is_dir, &a)
                        .with_context(|| format!("{what} {rel}"))?;
                }
                Ok(())
            })();
            drop(src_root);
            drop(src_mount);
            result?;
            drop(root);
            m.commit(&[])
        })
    }

    fn write_image(&mut self, mut st: State) -> Result<Built> {
        for (k, v) in &self.opts.labels {
            let c = st.c();
            if !c.get("Labels").is_some_and(Value::is_object) {
                c.insert("Labels".into(), json!({}));
            }
            c["Labels"][k] = json!(v);
        }
        st.config["rootfs"] = json!({
            "type": "layers",
            "diff_ids": st.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
        });
        if st.config.get("created").is_none() {
            st.config["created"] = json!(now());
        }
        let config = serde_json::to_vec(&st.config)?;
        let id = self.store.put_blob(&config)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": id, "size": config.len()},
            "layers": st.layers.iter().map(|l| json!({
                "mediaType": oci_layer_type(&l.media_type),
                "digest": l.digest,
                "size": l.size,
            })).collect::<Vec<_>>(),
        });
        let manifest = self.store.put_blob(&serde_json::to_vec(&manifest)?)?;
        let mut names = Vec::new();
        for t in &self.opts.tags {
            let r = ImageRef::parse(t)?;
            names.push(r.to_string());
        }
        crate::failpoint::hit("build-before-name");
        if !names.is_empty() {
            let entry = NameEntry {
                manifest: manifest.clone(),
                index: None,
                source: None,
            };
            self.store.update_names(|n| {
                for name in &names {
                    n.images.insert(name.clone(), entry.clone());
                }
                Ok(())
            })?;
        }
        self.say(&format!("Successfully built {}", &id.hex()[..12]));
        for n in &names {
            self.say(&format!("Successfully tagged {n}"));
        }
        Ok(Built {
            manifest,
            id,
            names,
        })
    }
}

/// `ADD` of a local archive: if `src` is a tar (plain, gzip or zstd), its
/// contents are extracted into `dest`; returns None for other files.
fn add_archive(
    store: &Store,
    root: &Root,
    src: &std::os::fd::OwnedFd,
    dest: &Path,
    owner: Option<(u32, u32)>,
) -> Result<Option<()>> {
    use std::io::Read;
    let st = nix::sys::stat::fstat(src.as_raw_fd())?;
    if context::kind(&st) != libc::S_IFREG {
        return Ok(None);
    }
    let p = format!("/proc/self/fd/{}", src.as_raw_fd());
    let mut f = std::fs::File::open(&p).context("open source")?;
    let mut head = vec![0u8; 4096];
    let n = f.read(&mut head)?;
    head.truncate(n);
    let plain: Vec<u8> = match crate::unpack::sniff(&head) {
        crate::unpack::Compression::Gzip => {
            let mut v = vec![0u8; 512];
            let mut d = flate2::read::GzDecoder::new(&head[..]);
            let k = read_up_to(&mut d, &mut v);
            v.truncate(k);
            v
        }
        crate::unpack::Compression::Zstd => {
            let mut v = vec![0u8; 512];
            let k = match zstd::stream::read::Decoder::new(&head[..]) {
                Ok(mut d) => read_up_to(&mut d, &mut v),
                Err(_) => 0,
            };
            v.truncate(k);
            v
        }
        crate::unpack::Compression::None => head.clone(),
    };
    if plain.len() < 263 || &plain[257..262] != b"ustar" {
        return Ok(None);
    }
    let tmp = store.tmp_path("add");
    std::fs::create_dir_all(&tmp)?;
    let r = (|| -> Result<()> {
        let f = std::fs::File::open(&p).context("open archive")?;
        crate::unpack::unpack_stream(f, &tmp).context("extract archive")?;
        let t = nix::fcntl::open(
            &tmp,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )?;
        // SAFETY: a new fd.
        let t: std::os::fd::OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(t) };
        let (u, g) = owner.unwrap_or((0, 0));
        let d = root.mkdir_all(dest, u, g)?;
        copy::copy_children(
            root,
            t.as_raw_fd(),
            "",
            None,
            d.as_raw_fd(),
            dest,
            &Attrs { owner, chmod: None },
        )
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    r.map(Some)
}

fn read_up_to(r: &mut dyn std::io::Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

//! `pier build`: instructions, the layer cache, multi-stage builds,
//! errors that name the Dockerfile line, interrupted builds, and images
//! that other tools (skopeo, umoci, runc) read.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_integration::pier_env::PierEnv;
use berth_integration::registry::{Auth, Registry};
use berth_integration::TempDir;
use serde_json::Value;

fn config(p: &PierEnv, image: &str) -> Value {
    let v: Value = serde_json::from_str(&p.ok(&["inspect", image])).unwrap();
    v["Config"]["config"].clone()
}

/// `pier run --rm --network none IMAGE sh -c SCRIPT` → stdout.
fn sh_in(p: &PierEnv, image: &str, script: &str) -> String {
    p.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        script,
    ])
}

#[test]
fn instructions_cache_and_rebuild_from_a_changed_file() {
    let p = PierEnv::new();
    p.busybox_image("base:1");
    let df = r#"# syntax=docker/dockerfile:1
ARG BASE=base:1
FROM ${BASE}
ARG GREETING=hello
ENV APP=/app \
    MODE="two words"
WORKDIR $APP
COPY a.txt ./
COPY b.txt ./
RUN echo "$GREETING $MODE" > run.txt && rm /bin/vi && mkdir -p /etc/conf && echo x > /etc/conf/f
RUN ["/bin/sh", "-c", "echo exec form > exec.txt"]
LABEL org.test.label="yes" other=1
EXPOSE 8080 53/udp
USER 1000:1000
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD true
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/run.txt"]
"#;
    let ctx = p.context(
        "ctx",
        &[("Dockerfile", df), ("a.txt", "A\n"), ("b.txt", "B\n")],
    );
    let out = p.ok(&[
        "build",
        "-t",
        "app:1",
        "--build-arg",
        "GREETING=hi",
        ctx.to_str().unwrap(),
    ]);
    assert!(out.contains("Step 1/17 : FROM ${BASE}"), "{out}");
    assert_eq!(out.matches("Running in").count(), 2, "{out}");
    assert!(
        out.contains("Successfully tagged docker.io/library/app:1"),
        "{out}"
    );
    let c = config(&p, "app:1");
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["Labels"]["org.test.label"], "yes");
    assert!(c["ExposedPorts"]["8080/tcp"].is_object());
    assert!(c["ExposedPorts"]["53/udp"].is_object());
    assert!(c["Volumes"]["/data"].is_object());
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(c["Healthcheck"]["Retries"], 2);
    assert_eq!(c["OnBuild"][0], "RUN echo triggered");
    assert_eq!(c["Entrypoint"][1], "-c");
    assert!(c["Env"]
        .as_array()
        .unwrap()
        .contains(&Value::from("MODE=two words")));
    // The container sees the files; the deletion is a whiteout.
    let got = p.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "0",
        "app:1",
        "cat /app/run.txt /app/a.txt /app/exec.txt /etc/conf/f; ls /bin/vi 2>&1 || echo gone",
    ]);
    assert_eq!(
        got,
        "hi two words\nA\nexec form\nx\nls: /bin/vi: No such file or directory\ngone\n"
    );
    let id1 = p.ok(&[
        "build",
        "-q",
        "-t",
        "app:1",
        "--build-arg",
        "GREETING=hi",
        ctx.to_str().unwrap(),
    ]);

    // Nothing changed: no step runs, same image.
    let out = p.ok(&[
        "build",
        "-t",
        "app:1",
        "--build-arg",
        "GREETING=hi",
        ctx.to_str().unwrap(),
    ]);
    assert!(!out.contains("Running in"), "{out}");
    assert_eq!(out.matches("Using cache").count(), 5, "{out}");
    let id2 = p.ok(&[
        "build",
        "-q",
        "-t",
        "app:1",
        "--build-arg",
        "GREETING=hi",
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(id1, id2);

    // b.txt changes: COPY a.txt stays cached, COPY b.txt and the RUNs redo.
    std::fs::write(ctx.join("b.txt"), "B2\n").unwrap();
    let out = p.ok(&[
        "build",
        "-t",
        "app:1",
        "--build-arg",
        "GREETING=hi",
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(out.matches("Using cache").count(), 2, "{out}");
    assert_eq!(out.matches("Running in").count(), 2, "{out}");
    assert_eq!(sh_in(&p, "app:1", "cat /app/b.txt"), "B2\n");
    // Another build argument value reruns the RUN steps.
    let out = p.ok(&["build", "-t", "app:2", ctx.to_str().unwrap()]);
    assert_eq!(out.matches("Running in").count(), 2, "{out}");
    // --no-cache runs everything.
    let out = p.ok(&["build", "--no-cache", "-t", "app:2", ctx.to_str().unwrap()]);
    assert!(!out.contains("Using cache"), "{out}");
    // ONBUILD triggers run in a child build.
    let child = p.context("child", &[("Dockerfile", "FROM app:2\nRUN true\n")]);
    let out = p.ok(&["build", "-t", "child:1", child.to_str().unwrap()]);
    assert!(
        out.contains("Executing ONBUILD trigger: RUN echo triggered"),
        "{out}"
    );
    assert!(out.contains("triggered\n"), "{out}");
    assert!(config(&p, "child:1").get("OnBuild").is_none());
    p.assert_clean();
}

#[test]
fn multi_stage_copy_from_target_and_scratch() {
    let p = PierEnv::new();
    p.busybox_image("base:1");
    let df = "FROM base:1 AS build\nRUN mkdir /out && echo built > /out/bin && chmod 755 /out/bin && chown 7:8 /out/bin\n\
              FROM base:1 AS unused\nRUN exit 1\n\
              FROM scratch AS final\nCOPY --from=build /out/bin /artifact\nCOPY --from=base:1 /bin/busybox /bin/busybox\n\
              CMD [\"/bin/busybox\", \"cat\", \"/artifact\"]\n\
              FROM build AS other\nRUN echo other > /other\n";
    let ctx = p.context("ctx", &[("Dockerfile", df)]);
    let out = p.ok(&[
        "build",
        "-t",
        "final:1",
        "--target",
        "final",
        ctx.to_str().unwrap(),
    ]);
    assert!(!out.contains("exit 1"), "an unneeded stage ran: {out}");
    assert_eq!(
        p.ok(&["run", "--rm", "--network", "none", "final:1"]),
        "built\n"
    );
    let ls = p.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "final:1",
        "/bin/busybox",
        "ls",
        "-ln",
        "/artifact",
    ]);
    assert!(
        ls.contains(" 7 ") && ls.contains(" 8 "),
        "--from keeps owners: {ls}"
    );
    let v: Value = serde_json::from_str(&p.ok(&["inspect", "final:1"])).unwrap();
    assert_eq!(v["Manifest"]["layers"].as_array().unwrap().len(), 2);
    // Without --target the last stage builds (from the `build` stage).
    let out = p.ok(&["build", "-t", "other:1", ctx.to_str().unwrap()]);
    assert!(!out.contains("exit 1"), "{out}");
    assert_eq!(
        sh_in(&p, "other:1", "cat /other /out/bin"),
        "other\nbuilt\n"
    );
    let (_, err) = p.fails(&["build", "--target", "nope", ctx.to_str().unwrap()]);
    assert!(
        err.contains("target stage \"nope\" could not be found"),
        "{err}"
    );
    p.assert_clean();
}

#[test]
fn copy_globs_dockerignore_chown_chmod_and_add_archives() {
    let p = PierEnv::new();
    p.busybox_image("base:1");
    let ctx = p.context(
        "ctx",
        &[
            ("src/one.txt", "1"),
            ("src/two.txt", "2"),
            ("src/skip.log", "log"),
            ("src/sub/deep.txt", "deep"),
            ("secret.key", "nope"),
            (".dockerignore", "*.key\nsrc/*.log\n"),
            (
                "Dockerfile",
                "FROM base:1\nCOPY src/*.txt /globbed/\nCOPY src /tree\nCOPY --chown=user:user --chmod=0600 src/one.txt /owned\n\
                 COPY . /all\nADD files.tar.gz /extracted/\nADD plain.txt /added.txt\n",
            ),
            ("plain.txt", "plain"),
        ],
    );
    let tdir = TempDir::new("tarsrc");
    std::fs::create_dir_all(tdir.path().join("d")).unwrap();
    std::fs::write(tdir.path().join("d/inside.txt"), "from tar").unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(tdir.path())
        .arg("-czf")
        .arg(ctx.join("files.tar.gz"))
        .arg("d")
        .status()
        .unwrap();
    assert!(st.success());
    p.ok(&["build", "-t", "files:1", ctx.to_str().unwrap()]);
    let out = sh_in(
        &p,
        "files:1",
        "ls /globbed; ls /tree /tree/sub; ls -ln /owned; ls /all; cat /extracted/d/inside.txt; echo; cat /added.txt",
    );
    let want_globbed = "one.txt\ntwo.txt\n";
    assert!(out.starts_with(want_globbed), "{out}");
    assert!(out.contains("deep.txt"), "{out}");
    assert!(!out.contains("skip.log"), "ignored file copied: {out}");
    assert!(!out.contains("secret.key"), "ignored file copied: {out}");
    assert!(out.contains("-rw-------    1 1000     1000"), "{out}");
    assert!(out.contains("from tar\nplain"), "{out}");
    // A source that is ignored or missing fails with its name.
    let bad = p.context(
        "bad",
        &[("Dockerfile", "FROM base:1\nCOPY missing.txt /\n")],
    );
    let (_, err) = p.fails(&["build", bad.to_str().unwrap()]);
    assert!(
        err.contains("Dockerfile:2:") && err.contains("missing.txt"),
        "{err}"
    );
    p.assert_clean();
}

#[test]
fn errors_name_the_line_and_leave_nothing() {
    let p = PierEnv::new();
    p.busybox_image("base:1");
    let ctx = p.context(
        "ctx",
        &[("Dockerfile", "FROM base:1\n# comment\nRUN echo fine\n\nRUN echo to-stdout; echo to-stderr >&2; exit 3\n")],
    );
    let (out, err) = p.fails(&["build", "-t", "broken:1", ctx.to_str().unwrap()]);
    assert!(
        out.contains("to-stdout") && out.contains("to-stderr"),
        "{out}"
    );
    assert!(
        err.contains("Dockerfile:5: RUN echo to-stdout; echo to-stderr >&2; exit 3 returned a non-zero code: 3"),
        "{err}"
    );
    assert!(!p.ok(&["images"]).contains("broken"));
    let bad = p.context(
        "bad",
        &[("Dockerfile", "FROM base:1\n\n\n\n\n\nRUNN echo\n")],
    );
    let (_, err) = p.fails(&["build", bad.to_str().unwrap()]);
    assert_eq!(
        err.trim(),
        "pier: Dockerfile:7: unknown instruction \"RUNN\""
    );
    let bad = p.context(
        "bad2",
        &[("Dockerfile", "FROM base:1\nCOPY --chmod=9z a b\n")],
    );
    std::fs::write(bad.join("a"), "").unwrap();
    let (_, err) = p.fails(&["build", bad.to_str().unwrap()]);
    assert!(
        err.contains("Dockerfile:2:") && err.contains("octal"),
        "{err}"
    );
    assert!(std::fs::read_dir(p.store().join("tmp"))
        .unwrap()
        .next()
        .is_none());
    p.assert_clean();
}

#[test]
fn an_interrupted_build_leaves_no_container_mount_or_image() {
    let p = PierEnv::new();
    p.busybox_image("base:1");
    let ctx = p.context(
        "ctx",
        &[("Dockerfile", "FROM base:1\nRUN echo started; sleep 60\n")],
    );
    let log = p.dir.path().join("build.log");
    let mut child = p
        .cmd(&["build", "-t", "never:1", ctx.to_str().unwrap()])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("\nstarted\n")
    {
        assert!(Instant::now() < deadline, "the step did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: SIGINT to the build we started, as Ctrl-C would.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t = Instant::now();
    let st = child.wait().unwrap();
    assert!(!st.success());
    let err = std::fs::read_to_string(log.with_extension("err")).unwrap();
    assert!(err.contains("interrupted"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the step was not stopped ({:?}): {}",
        t.elapsed(),
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(!p.ok(&["images"]).contains("never"));
    assert!(std::fs::read_dir(p.store().join("tmp"))
        .unwrap()
        .next()
        .is_none());
    assert!(std::fs::read_dir(p.store().join("mounts"))
        .unwrap()
        .next()
        .is_none());
    p.assert_clean();
}

#[test]
fn built_images_push_and_unpack_with_skopeo_and_umoci() {
    let p = PierEnv::new();
    p.busybox_image("base:1");
    let ctx = p.context(
        "ctx",
        &[
            ("f.txt", "content\n"),
            (
                "Dockerfile",
                "FROM base:1\nCOPY f.txt /f.txt\nRUN rm /bin/vi && echo made > /made\n",
            ),
        ],
    );
    p.ok(&["build", "-t", "pushme:1", ctx.to_str().unwrap()]);
    let reg = Registry::start(Auth::None);
    let dest = format!("{}/test/pushme:1", reg.host);
    let mut c = p.cmd(&["--insecure-registry", &reg.host, "push", "pushme:1", &dest]);
    c.stdin(Stdio::null());
    let out = berth_integration::capture(c);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layout = TempDir::new("layout");
    let oci = layout.path().join("oci");
    let out = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{dest}"))
        .arg(format!("oci:{}:1", oci.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = layout.path().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:1", oci.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("f.txt")).unwrap(),
        "content\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("made")).unwrap(),
        "made\n"
    );
    assert!(
        !rootfs.join("bin/vi").exists(),
        "the whiteout was not applied"
    );
    assert!(rootfs.join("bin/sh").exists());
    p.assert_clean();
}

#[test]
fn run_steps_work_with_runc() {
    let p = PierEnv::new();
    p.busybox_image("base:1");
    let ctx = p.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM base:1\nRUN echo by-runc > /who && ls /sys/class/net\n",
        )],
    );
    let out = p.ok(&[
        "--runtime",
        "/usr/sbin/runc",
        "build",
        "-t",
        "r:1",
        ctx.to_str().unwrap(),
    ]);
    assert!(
        out.contains("lo\n") && !out.contains("eth0"),
        "build steps have no network: {out}"
    );
    assert_eq!(sh_in(&p, "r:1", "cat /who"), "by-runc\n");
    p.assert_clean();
}

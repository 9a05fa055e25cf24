//! Podman 4.3 (with conmon) with berth as its OCI runtime:
//! `podman --runtime berth run/exec/stop/rm/pause/unpause/logs/top`, `run -it`,
//! `--memory`, `--pids-limit`, `--cap-drop`, `--read-only`. berth is declared
//! as in docs/engines/podman.md (`[engine.runtimes]` and
//! `runtime_supports_json`, so Podman passes it `--log-format=json`). The same
//! matrix runs with runc and crun.
//!
//! Each test has its own root, runroot, tmpdir and containers.conf under a
//! temporary directory; Podman has no daemon, and conmon exits with its
//! container.

use std::process::Command;

use berth_integration::engines::{
    assert_runtime_holds, busybox_archive, cli_matrix, doc, doc_block, run_timeout, stderr,
    CliEngine, EngineDir,
};
use berth_integration::pids_with_cmdline;
use berth_integration::shim::Runtime;

struct Podman {
    dir: EngineDir,
    runtime: String,
    rt: Runtime,
    tag: String,
}

impl Podman {
    /// A Podman setup whose containers.conf is the one of the docs (berth's
    /// path replaced by this workspace's) plus this host's settings; `rt` is
    /// given as `--runtime` (berth by its name in `[engine.runtimes]`, the
    /// others by path).
    fn new(rt: Runtime, tag: &str) -> Podman {
        let dir = EngineDir::new("podman");
        let berth = dir.runtime_path(Runtime::Berth);
        let documented = doc_block(&doc("podman.md"), "toml containers.conf")
            .replace("/usr/local/bin/berth", &berth.display().to_string());
        // This host: no systemd, no CAP_SYS_RESOURCE (rlimits under the hard
        // limit), no bridge; everything in the test's directory.
        let host = format!(
            "[containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             netns = \"none\"\n\
             log_driver = \"k8s-file\"\n\n\
             [network]\n\
             network_config_dir = \"{net}\"\n\n\
             [engine]\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             lock_type = \"file\"\n\
             static_dir = \"{static}\"\n\
             volume_path = \"{vol}\"\n",
            static = dir.join("root/libpod").display(),
            vol = dir.join("root/volumes").display(),
            net = dir.join("networks").display(),
        );
        let conf = merge_engine_tables(&host, &documented);
        std::fs::write(dir.join("containers.conf"), conf).unwrap();
        std::fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                dir.join("root").display(),
                dir.join("runroot").display()
            ),
        )
        .unwrap();
        let runtime = match rt {
            Runtime::Berth => "berth".to_string(),
            other => dir.runtime_path(other).display().to_string(),
        };
        let p = Podman {
            dir,
            runtime,
            rt,
            tag: tag.to_string(),
        };
        let archive = busybox_archive(p.dir.path());
        let out = run_timeout(p.command(&["load", "-i", archive.to_str().unwrap()]), 120);
        assert!(out.status.success(), "podman load: {}", stderr(&out));
        p
    }
}

/// Puts the documented `[engine]` keys (and `[engine.runtimes]`) after the
/// host's `[engine]` keys, the host's last table: TOML allows each table
/// once.
fn merge_engine_tables(host: &str, documented: &str) -> String {
    let mut engine_keys = String::new();
    let mut rest = String::new();
    let mut section = String::new();
    for line in documented.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.to_string();
            if section != "[engine]" {
                rest.push_str(line);
                rest.push('\n');
            }
            continue;
        }
        if section == "[engine]" {
            engine_keys.push_str(line);
            engine_keys.push('\n');
        } else {
            rest.push_str(line);
            rest.push('\n');
        }
    }
    format!("{host}{engine_keys}\n{rest}")
}

impl CliEngine for Podman {
    fn tag(&self) -> String {
        format!("podman/{}", self.tag)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env("XDG_RUNTIME_DIR", self.dir.join("xdg"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .arg("--runtime")
            .arg(&self.runtime)
            .args(args);
        c
    }

    fn run_options(&self) -> Vec<String> {
        vec![
            "--network=none".into(),
            "--cgroup-parent".into(),
            self.dir.cgroup_parent(),
        ]
    }

    fn log(&self) -> String {
        String::new()
    }

    fn check_runtime(&self, id: &str) {
        // conmon holds the container and runs the runtime (no --root: the
        // runtime's default state directory); runtimes named in
        // runtime_supports_json get --log-format=json.
        let path = self.dir.runtime_path(self.rt);
        let conmon = pids_with_cmdline(id)
            .into_iter()
            .map(|p| std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .find(|c| c.starts_with("/usr/bin/conmon "))
            .expect("the container's conmon");
        assert!(
            conmon.contains(&format!(" -r {} ", path.display())),
            "conmon runs another runtime: {conmon}"
        );
        if self.rt == Runtime::Berth {
            assert!(
                conmon.contains("--runtime-arg --log-format=json"),
                "berth does not get --log-format=json: {conmon}"
            );
        }
        assert_runtime_holds(&path, None, id);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = run_timeout(self.command(&["rm", "-af", "-t", "0"]), 60);
        let _ = run_timeout(self.command(&["system", "reset", "-f"]), 60);
    }
}

#[test]
fn podman_with_berth() {
    cli_matrix(&Podman::new(Runtime::Berth, "berth"));
}

#[test]
fn podman_with_runc() {
    cli_matrix(&Podman::new(Runtime::Runc, "runc"));
}

#[test]
fn podman_with_crun() {
    cli_matrix(&Podman::new(Runtime::Crun, "crun"));
}

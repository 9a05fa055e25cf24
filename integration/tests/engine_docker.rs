//! Docker 20.10 (dockerd from `docker.io`, which runs its own containerd and
//! containerd's runc shim) with berth as an OCI runtime: `docker run
//! --runtime berth` with the case matrix of the Podman test. berth is declared
//! in daemon.json as in docs/engines/docker.md; runc and crun, the reference
//! runs, through `dockerd --add-runtime`.
//!
//! Each test starts its own dockerd (data root, exec root, pid file, socket
//! and daemon.json under a temporary directory, no bridge, no iptables, its
//! containers' cgroups under the test's parent) and stops it by pid.

use std::process::Command;

use berth_integration::engines::{
    assert_runtime_holds, busybox_archive, cli_matrix, doc, doc_block, run_timeout, stderr,
    wait_for, CliEngine, EngineDir,
};
use berth_integration::shim::Runtime;

/// Debian's client: `/usr/local/bin/docker` on this host is a newer one that
/// shadows it on PATH.
const DOCKER: &str = "/usr/bin/docker";

struct Docker {
    dir: EngineDir,
    runtime: String,
    rt: Runtime,
    tag: String,
}

impl Docker {
    fn start(rt: Runtime, tag: &str) -> Docker {
        let mut dir = EngineDir::new("docker");
        let berth = dir.runtime_path(Runtime::Berth);
        let daemon_json = doc_block(&doc("docker.md"), "json daemon.json")
            .replace("/usr/local/bin/berth", &berth.display().to_string());
        std::fs::write(dir.join("daemon.json"), daemon_json).unwrap();
        let mut cmd = Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--ip-forward=false",
                "--userland-proxy=false",
                "--cgroup-parent",
            ])
            .arg(dir.cgroup_parent());
        let runtime = match rt {
            Runtime::Berth => "berth".to_string(),
            other => {
                let name = format!("test-{tag}");
                cmd.arg("--add-runtime")
                    .arg(format!("{name}={}", dir.runtime_path(other).display()));
                name
            }
        };
        dir.spawn_daemon(cmd, "dockerd.log");
        let d = Docker {
            dir,
            runtime,
            rt,
            tag: tag.to_string(),
        };
        wait_for(60, "dockerd", || {
            run_timeout(d.command(&["version"]), 30).status.success()
        });
        let archive = busybox_archive(d.dir.path());
        let out = run_timeout(d.command(&["load", "-i", archive.to_str().unwrap()]), 120);
        assert!(out.status.success(), "docker load: {}", stderr(&out));
        d
    }
}

impl CliEngine for Docker {
    fn tag(&self) -> String {
        format!("docker/{}", self.tag)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_CONFIG", self.dir.join("client"))
            .arg("-H")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()))
            .args(args);
        c
    }

    fn run_options(&self) -> Vec<String> {
        vec![
            "--network=none".into(),
            "--runtime".into(),
            self.runtime.clone(),
        ]
    }

    fn log(&self) -> String {
        self.dir.log("dockerd.log")
    }

    fn check_runtime(&self, id: &str) {
        // dockerd 20.10 gives every runtime the root EXEC_ROOT/runtime-runc
        // (named after the default runtime), and its containerd the
        // namespace "moby".
        let root = self.dir.join("exec/runtime-runc/moby");
        assert_runtime_holds(&self.dir.runtime_path(self.rt), Some(&root), id);
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let ids = run_timeout(self.command(&["ps", "-aq"]), 60);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = run_timeout(self.command(&["rm", "-f", id]), 60);
        }
        self.dir.stop_daemons();
    }
}

#[test]
fn docker_with_berth() {
    cli_matrix(&Docker::start(Runtime::Berth, "berth"));
}

#[test]
fn docker_with_runc() {
    cli_matrix(&Docker::start(Runtime::Runc, "runc"));
}

#[test]
fn docker_with_crun() {
    cli_matrix(&Docker::start(Runtime::Crun, "crun"));
}

"""A distribution registry (Debian's `docker-registry`) on a free loopback
port, with its config and storage in a directory of the bench; stopped by
pid. The same set-up as the pier integration tests (integration/src/registry.rs).
"""

import json
import os
import socket
import subprocess
import time
import urllib.request

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


def free_port():
    """A free TCP port on 127.0.0.1 (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_yaml(storage, host):
    """The registry's config: filesystem storage in `storage`, listening on
    `host` (127.0.0.1:PORT) only, quiet logs."""
    return (
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
        f"http:\n  addr: {host}\n"
    )


def blobs_of(manifest):
    """The digests of an image manifest's config and layers (a dict), in
    that order."""
    return [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]


class Registry:
    """A running docker-registry on 127.0.0.1; `host` is 127.0.0.1:PORT."""

    def __init__(self, dir, binary="docker-registry", timeout=20):
        os.makedirs(dir, exist_ok=True)
        self.dir = dir
        self.host = f"127.0.0.1:{free_port()}"
        cfg = os.path.join(dir, "config.yml")
        with open(cfg, "w") as f:
            f.write(config_yaml(os.path.join(dir, "data"), self.host))
        self._log = os.path.join(dir, "registry.log")
        with open(self._log, "w") as log:
            self.proc = subprocess.Popen(
                [binary, "serve", cfg], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", int(self.host.split(":")[1])), 1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"docker-registry did not start: {self.log()}")
                time.sleep(0.05)

    def log(self):
        """What the registry wrote."""
        try:
            with open(self._log) as f:
                return f.read().strip()
        except OSError:
            return ""

    def manifest(self, repo, tag):
        """The image manifest of repo:tag as a dict (OCI or Docker v2.2)."""
        req = urllib.request.Request(
            f"http://{self.host}/v2/{repo}/manifests/{tag}",
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def blob_url(self, repo, digest):
        """The URL of a blob of `repo`."""
        return f"http://{self.host}/v2/{repo}/blobs/{digest}"

    def stop(self):
        """Stops the registry (SIGTERM, then SIGKILL after 5 s) and reaps it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

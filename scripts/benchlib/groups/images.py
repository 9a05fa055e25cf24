"""images: pier beside skopeo, umoci, buildah and the curl / tar floor.

A `docker-registry` on a free 127.0.0.1 port serves two images made here
(`imagegen`: deterministic hex-text files, which gzip halves), built with
`umoci raw add-layer` and pushed with `skopeo copy`:
- small: 1 layer, the bench's busybox root plus SMALL bytes of files;
- big: 3 layers of BIG/3 bytes each (about 2,200 files per 70 MiB).
--quick makes both smaller (the report says so).

Operations (op names of results.json):
- pull-small, pull-big: `pier pull --no-unpack` into a fresh store
  (download, verify, fsync; unpacking is measured apart) vs `skopeo copy
  docker://... oci:DIR` into a fresh directory vs the floor: one
  `curl --parallel` of the config and layer blobs (no manifest, no
  verification, no fsync).
- unpack-big: `pier mount` of the big image from a store that has its blobs
  but not its layers (unpack of the 3 layers, overlay mount, syncfs), then
  an unmeasured `pier umount` and removal of the unpacked layers; vs
  `umoci unpack` of the OCI layout (it also writes an mtree manifest) vs the
  floor `gzip -dc BLOB | tar -x` of the same blobs, one after the other.
  Each result is checked: every file of the image, with its size.
- build-nocache, build-cached: `pier build` of a small Dockerfile (COPY of
  64 files, RUN of a shell line) from the small image, with `--no-cache`
  and then with every step cached, vs `buildah bud --isolation chroot
  --layers` from Debian (each primed by one unmeasured build that pulls the
  base; pier's image is checked for the files of COPY and RUN). Skipped
  (and said so) while `pier build --help` fails.
Each also yields cpu-OP (user + system time of the command and what it
reaped); pull-big and unpack-big yield peak-rss-OP.
"""

import os
import random
import shutil
import subprocess

from .. import cgroups, hostns, imagegen
from ..measure import CommandFailed
from ..registry import Registry, blobs_of
from ..runtimes import version

NAME = "images"
TITLE = "pier vs skopeo, umoci, buildah and the curl/tar floor"
PACKAGES = ["skopeo", "umoci", "buildah", "docker-registry", "curl", "gzip", "tar"]
COLUMNS = ["pier", "skopeo", "umoci", "buildah", "curl", "tar"]
RATIOS = [("pier", ("skopeo", "umoci", "buildah"), "peer"), ("pier", ("curl", "tar"), "floor")]

# Bytes of file content (full, --quick).
SMALL = (16 << 20, 2 << 20)
BIG = (200 << 20, 12 << 20)
BIG_LAYERS = 3
CONTEXT_FILES, CONTEXT_FILE_SIZE = 64, 16 << 10
REPO_SMALL, REPO_BIG, TAG = "bench/small", "bench/big", "1"
TOOLS = ("skopeo", "umoci", "buildah", "docker-registry", "curl", "gzip", "tar", "bash")

# The goals: pull within 1.5 x the curl floor, unpack within 1.2 x tar.
GOAL_PULL = 1.5
GOAL_UNPACK = 1.2

DOCKERFILE = """FROM {base}
COPY files/ /opt/files/
RUN cat /opt/files/* | md5sum > /opt/files.md5 && \\
    mkdir -p /var/lib/bench && echo built > /var/lib/bench/done
"""


def skip_reason(ctx):
    """Why the group cannot run: no pier crate or no pier binary."""
    if not os.path.isdir(os.path.join(ctx.workspace, "pier")):
        return "pier is not built yet (no pier/ crate in this checkout)"
    if not os.access(ctx.pier, os.X_OK):
        return f"{ctx.pier} is missing (cargo build --release -p pier)"
    return None


def run(ctx):
    """Makes and serves the images, then measures pull, unpack and build,
    alternating the tools, into collectors of `ctx`."""
    tools = {t: shutil.which(t) for t in TOOLS}
    missing = [t for t, p in tools.items() if not p]
    if missing:
        ctx.note("images", f"skipped: {', '.join(missing)} not installed")
        return
    ctx.extra_versions.append(version(ctx.pier))
    if is_debug_build(ctx.pier):
        ctx.note("images", f"pier: {ctx.pier} is a debug build (--quick keeps CI short): "
                 "its times say nothing about pier's speed")
    for t in ("skopeo", "umoci", "buildah", "curl", "tar"):
        ctx.extra_versions.append(short_version(version(tools[t])))
    work = os.path.join(ctx.tmpdir, "images")
    q = 1 if ctx.quick else 0
    try:
        reg = Registry(os.path.join(work, "registry"), tools["docker-registry"])
    except RuntimeError as e:
        raise CommandFailed([tools["docker-registry"], "serve"], 1 << 8, str(e)) from e
    g = _Group(ctx, tools, work, reg)
    try:
        g.make_images(SMALL[q], BIG[q])
        col = ctx.collector(rss_ops=["pull-big", "unpack-big"])
        g.pull(col)
        g.unpack(col)
        g.build(col)
    finally:
        g.cleanup()
        reg.stop()


def short_version(line):
    """A version line without its parenthesized details
    ('buildah version 1.28.2 (image-spec ...)' -> 'buildah version 1.28.2');
    kept whole when the part before '(' has no version number."""
    head = line.split(" (", 1)[0]
    return head if any(c.isdigit() for c in head) else line


def tree_stats(root):
    """(regular files, bytes in them) below `root`, symlinks not followed."""
    files = size = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            st = os.lstat(os.path.join(dirpath, n))
            if (st.st_mode & 0o170000) == 0o100000:
                files += 1
                size += st.st_size
    return files, size


def _rm(path):
    shutil.rmtree(path, ignore_errors=True)


class _Group:
    """State of one run of the group: paths, the registry, the images."""

    def __init__(self, ctx, tools, work, reg):
        self.ctx = ctx
        self.t = tools
        self.work = work
        self.reg = reg
        self.layout = os.path.join(work, "layout")
        self.big_files = None  # (files, bytes) of the big image's tree
        self.big_blobs = []  # paths of the big image's layer blobs
        self.blob_urls = {}  # repo -> [blob URL]
        self.buildah_root = os.path.join(work, "buildah")

    def q(self, argv):
        """Runs a set-up step; raises CommandFailed with its stderr."""
        self.ctx.runner.quiet(argv)

    def ref(self, repo):
        return f"{self.reg.host}/{repo}:{TAG}"

    def make_images(self, small, big):
        """Builds both images in an OCI layout and pushes them."""
        ctx, umoci = self.ctx, self.t["umoci"]
        os.makedirs(self.work, exist_ok=True)
        self.q([umoci, "init", "--layout", self.layout])
        big_files = big_bytes = 0
        for repo, tag, layers, size, rootfs in [
            (REPO_SMALL, "small", 1, small, ctx.rootfs),
            (REPO_BIG, "big", BIG_LAYERS, big // BIG_LAYERS, None),
        ]:
            image = f"{self.layout}:{tag}"
            self.q([umoci, "new", "--image", image])
            for k in range(layers):
                tar = os.path.join(self.work, f"{tag}-{k}.tar")
                n, b = imagegen.write_layer(tar, f"{tag}-{k}", size, rootfs)
                if tag == "big":
                    big_files, big_bytes = big_files + n, big_bytes + b
                self.q([umoci, "raw", "add-layer", "--image", image, tar])
                os.unlink(tar)
            self.q([
                self.t["skopeo"], "copy", "--quiet", "--dest-tls-verify=false",
                f"oci:{image}", f"docker://{self.ref(repo)}",
            ])
        self.big_files = (big_files, big_bytes)
        sizes = {}
        for repo in (REPO_SMALL, REPO_BIG):
            try:
                m = self.reg.manifest(repo, TAG)
            except OSError as e:  # urllib's errors included
                raise CommandFailed(["GET", f"{repo}:{TAG}"], 1 << 8, str(e)) from e
            self.blob_urls[repo] = [self.reg.blob_url(repo, d) for d in blobs_of(m)]
            sizes[repo] = (len(m["layers"]), sum(layer["size"] for layer in m["layers"]))
            if repo == REPO_BIG:
                self.big_blobs = [self._blob_file(layer["digest"]) for layer in m["layers"]]
        mib = 1 << 20
        quick = " (--quick: smaller images)" if ctx.quick else ""
        ctx.note(
            "images",
            f"small: {sizes[REPO_SMALL][0]} layer, busybox + {small / mib:.0f} MiB of files, "
            f"{sizes[REPO_SMALL][1] / mib:.1f} MiB gzipped; big: {sizes[REPO_BIG][0]} layers, "
            f"{big_files} files, {big_bytes / mib:.0f} MiB, {sizes[REPO_BIG][1] / mib:.1f} MiB "
            f"gzipped{quick}",
        )

    def _blob_file(self, digest):
        path = os.path.join(self.layout, "blobs", *digest.split(":", 1))
        if not os.path.exists(path):
            raise CommandFailed(["skopeo", "copy"], 1 << 8, f"{path}: the pushed blob is not "
                                "the one umoci made (recompressed?)")
        return path

    # -- pull ----------------------------------------------------------------

    def pull(self, col):
        """pull-small and pull-big: pier, skopeo, curl (fresh target each run)."""
        ctx = self.ctx
        base = os.path.join(self.work, "pull")
        for op, repo in (("pull-small", REPO_SMALL), ("pull-big", REPO_BIG)):
            dest = os.path.join(base, op)
            urls = self.blob_urls[repo]
            curl = [
                self.t["curl"], "-sSf", "--no-progress-meter", "--parallel",
                "--parallel-max", "16", "--create-dirs",
            ]
            for i, u in enumerate(urls):
                curl += ["-o", os.path.join(dest, str(i)), u]
            actions = [
                ("pier", self._fresh(dest, [
                    ctx.pier, "--root", dest, "--insecure-registry", self.reg.host,
                    "pull", "--no-unpack", self.ref(repo),
                ])),
                ("skopeo", self._fresh(dest, [
                    self.t["skopeo"], "copy", "--quiet", "--src-tls-verify=false",
                    f"docker://{self.ref(repo)}", f"oci:{dest}:{TAG}",
                ])),
                ("curl", self._fresh(dest, curl)),
            ]
            ctx.alternate(col, op, actions)

    def _fresh(self, dest, argv):
        """Measures argv writing into `dest`, which is removed before and after."""

        def action():
            _rm(dest)
            try:
                return self.ctx.runner.one(argv)
            finally:
                _rm(dest)

        return action

    # -- unpack --------------------------------------------------------------

    def unpack(self, col):
        """unpack-big: pier mount (layers removed after each run), umoci
        unpack, gzip -dc | tar -x; each tree checked."""
        ctx = self.ctx
        base = os.path.join(self.work, "unpack")
        store = os.path.join(base, "pier-store")
        # The store with the blobs (pulled once, not measured).
        self.q([ctx.pier, "--root", store, "--insecure-registry", self.reg.host,
                "pull", "--no-unpack", self.ref(REPO_BIG)])
        dest = os.path.join(base, "out")
        tar_sh = (
            'set -eo pipefail; d=$1; shift; mkdir -p "$d"; '
            'for b; do gzip -dc "$b" | tar -x -C "$d"; done'
        )
        actions = [
            ("pier", self._pier_mount(store, dest)),
            ("umoci", self._checked(dest, os.path.join(dest, "rootfs"), [
                self.t["umoci"], "unpack", "--image", f"{self.layout}:big", dest,
            ])),
            ("tar", self._checked(dest, dest, [
                self.t["bash"], "-c", tar_sh, "bash", dest, *self.big_blobs,
            ])),
        ]
        ctx.alternate(col, "unpack-big", actions, heavy=True)

    def _check_tree(self, tool, root):
        got = tree_stats(os.path.join(root, "data"))
        if got != self.big_files:
            raise CommandFailed(
                [tool], 1 << 8, f"unpacked {got[0]} files / {got[1]} bytes under data/, "
                f"expected {self.big_files[0]} / {self.big_files[1]}",
            )

    def _checked(self, dest, root, argv):
        """Measures argv unpacking into `dest`; checks the tree at `root`."""

        def action():
            _rm(dest)
            try:
                s = self.ctx.runner.one(argv)
                self._check_tree(os.path.basename(argv[0]), root)
                return s
            finally:
                _rm(dest)

        return action

    def _pier_mount(self, store, dest):
        """Measures `pier mount`, checks the tree through the mount, then
        unmounts and removes the unpacked layers (the next run unpacks
        them again)."""
        pier = self.ctx.pier
        layers = os.path.join(store, "layers")

        def action():
            _rm(dest)
            try:
                s = self.ctx.runner.one([pier, "--root", store, "mount", self.ref(REPO_BIG), dest])
                self._check_tree("pier", os.path.join(dest, "rootfs"))
                return s
            finally:
                self.ctx.runner.quiet([pier, "--root", store, "umount", dest], check=False)
                hostns.unmount_under(dest)
                _rm(dest)
                _rm(layers)

        return action

    # -- build ---------------------------------------------------------------

    def build(self, col):
        """build-nocache and build-cached: pier build vs buildah bud."""
        ctx = self.ctx
        probe = subprocess.run(
            [ctx.pier, "build", "--help"], capture_output=True, stdin=subprocess.DEVNULL
        )
        if probe.returncode != 0:
            ctx.note(
                "build",
                "build-nocache, build-cached: skipped, `pier build` does not exist yet "
                "(`pier build --help` fails)",
            )
            return
        base = os.path.join(self.work, "build")
        context = os.path.join(base, "context")
        os.makedirs(os.path.join(context, "files"), exist_ok=True)
        with open(os.path.join(context, "Dockerfile"), "w") as f:
            f.write(DOCKERFILE.format(base=self.ref(REPO_SMALL)))
        for i in range(CONTEXT_FILES):
            with open(os.path.join(context, "files", f"f{i:02d}"), "wb") as f:
                f.write(imagegen.content(random.Random(f"context-{i}"), CONTEXT_FILE_SIZE))
        pier = [
            ctx.pier, "--root", os.path.join(base, "pier-store"),
            "--runroot", os.path.join(base, "pier-run"),
            "--insecure-registry", self.reg.host,
            "--runtime", ctx.berth,
            "--cgroup-parent", f"{cgroups.parent()}/pier-build",
            "build", "-q", "-t", "bench/built:1",
        ]
        buildah = [
            self.t["buildah"], "--root", self.buildah_root,
            "--runroot", os.path.join(base, "buildah-run"), "--storage-driver", "overlay",
            "bud", "--isolation", "chroot", "--layers", "--pull=false", "--tls-verify=false",
            "-q", "-t", "bench/built:1",
        ]
        # Once each, not measured: pulls the base image into each store.
        self.q(pier + ["--no-cache", context])
        self._check_built(pier[:3], os.path.join(base, "check"))
        self.q(buildah + ["--no-cache", context])
        for op, extra in (("build-nocache", ["--no-cache"]), ("build-cached", [])):
            actions = [
                ("pier", _one(ctx, pier + extra + [context])),
                ("buildah", _one(ctx, buildah + extra + [context])),
            ]
            ctx.alternate(col, op, actions)

    def _check_built(self, pier, mnt):
        """Mounts the image `pier build` made (`pier` holds its --root) and
        checks that the COPY and the RUN left their files."""
        self.q(pier + ["mount", "bench/built:1", mnt])
        try:
            for f in ("opt/files/f00", "opt/files.md5", "var/lib/bench/done"):
                if not os.path.isfile(os.path.join(mnt, "rootfs", f)):
                    raise CommandFailed(pier + ["build"], 1 << 8, f"the built image has no /{f}")
        finally:
            self.ctx.runner.quiet(pier + ["umount", mnt], check=False)
            hostns.unmount_under(mnt)
            _rm(mnt)

    def cleanup(self):
        """Removes buildah's containers and images (its overlay mounts), then
        every mount left under the group's directory."""
        if os.path.isdir(self.buildah_root):
            runroot = os.path.join(self.work, "build", "buildah-run")
            b = [self.t["buildah"], "--root", self.buildah_root, "--runroot", runroot,
                 "--storage-driver", "overlay"]
            self.ctx.runner.quiet(b + ["rm", "--all"], check=False)
            self.ctx.runner.quiet(b + ["rmi", "--all", "--force"], check=False)
        left = hostns.unmount_under(self.work)
        if left:
            self.ctx.failures += left


def _one(ctx, argv):
    return lambda: ctx.runner.one(argv)


def is_debug_build(path):
    """True for a binary in a cargo `debug` directory."""
    return os.path.basename(os.path.dirname(path)) == "debug"


def goals(summaries, ctx=None):
    """Lines saying which of pier's goals the medians meet (none for a
    debug build of pier)."""
    if ctx is not None and is_debug_build(ctx.pier):
        return ["Goals not judged: pier is a debug build."]
    by = {(s["op"], s["tool"]): s["median"] for s in summaries}
    lines = []
    for op, floor, limit in (
        ("pull-small", "curl", GOAL_PULL),
        ("pull-big", "curl", GOAL_PULL),
        ("unpack-big", "tar", GOAL_UNPACK),
    ):
        p, f = by.get((op, "pier")), by.get((op, floor))
        if p is None or not f:
            continue
        verdict = "met" if p / f <= limit else "missed"
        lines.append(f"- {op}: pier/{floor} {p / f:.2f} (goal <= {limit}): {verdict}")
    if not lines:
        return []
    return ["Goals: pull within 1.5 x the curl floor, unpack within 1.2 x the tar floor "
            "(medians).", ""] + lines

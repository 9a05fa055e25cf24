"""Deterministic layer contents for the images group.

A layer is a tree of files whose bytes are hexadecimal text drawn from a
seeded generator: 4 bits of entropy per byte, so gzip has real work to do
and halves the size (about what it does to binaries and libraries), while
the same seed always gives the same tar, hence the same digests run after
run. Sizes follow real images: a few large files hold most of the bytes,
many small files (where unpacking spends its per-file system calls) the
rest.
"""

import io
import os
import random
import tarfile

HEX = b"0123456789abcdef"
# Maps every byte to a hex digit by its low nibble.
_TO_HEX = bytes(HEX[b & 0x0F] for b in range(256))
MTIME = 1_700_000_000  # fixed, so tars are reproducible
FILES_PER_DIR = 32
LARGE_SHARE = 0.6  # of a layer's bytes, in files of 1-8 MiB
SMALL_MIN, SMALL_MAX = 512, 64 << 10
LARGE_MIN, LARGE_MAX = 1 << 20, 8 << 20


def content(rng, size):
    """`size` bytes of hex text from `rng` (a random.Random)."""
    return rng.randbytes(size).translate(_TO_HEX)


def plan(seed, total):
    """The files of a layer of about `total` bytes: a list of (relative
    path, size), deterministic in `seed`. LARGE_SHARE of the bytes go to
    large files, the rest to small ones (log-uniform sizes)."""
    rng = random.Random(f"plan-{seed}")
    sizes = []
    large_left = int(total * LARGE_SHARE)
    while large_left >= LARGE_MIN:
        s = min(rng.randint(LARGE_MIN, LARGE_MAX), large_left)
        sizes.append(s)
        large_left -= s
    small_left = total - sum(sizes)
    while small_left > 0:
        s = min(int(SMALL_MIN * (SMALL_MAX / SMALL_MIN) ** rng.random()), small_left)
        sizes.append(s)
        small_left -= s
    rng.shuffle(sizes)
    return [
        (f"data/{seed}/d{i // FILES_PER_DIR:03d}/f{i % FILES_PER_DIR:02d}", s)
        for i, s in enumerate(sizes)
    ]


def _info(name, kind, size=0, mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = size
    ti.mode = mode
    ti.mtime = MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def write_layer(path, seed, total, rootfs=None):
    """Writes an uncompressed layer tar at `path`: the files of
    `plan(seed, total)` with their parent directories, after the tree
    `rootfs` if given (e.g. a busybox root, so that the image runs).
    Returns (number of files, bytes of file content)."""
    files = plan(seed, total)
    rng = random.Random(f"content-{seed}")
    n, nbytes = 0, 0
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        if rootfs:
            for name in sorted(os.listdir(rootfs)):
                tar.add(os.path.join(rootfs, name), arcname=name, filter=_normalize)
        dirs = set()
        for rel, size in files:
            parts = rel.split("/")
            for k in range(1, len(parts)):
                d = "/".join(parts[:k])
                if d not in dirs:
                    dirs.add(d)
                    tar.addfile(_info(d, tarfile.DIRTYPE, mode=0o755))
            tar.addfile(_info(rel, tarfile.REGTYPE, size), io.BytesIO(content(rng, size)))
            n += 1
            nbytes += size
    return n, nbytes


def _normalize(ti):
    """Owner root, fixed mtime: the same tar on every machine."""
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mtime = MTIME
    return ti

"""images: pier pull, unpack and build beside skopeo, umoci, buildah and the
curl / tar floor, from a registry on loopback. Its operations come with the
pier crate (`pier/`); until then the group says so and measures nothing."""

import os

NAME = "images"
TITLE = "pier vs skopeo, umoci, buildah and the curl/tar floor"
PACKAGES = ["skopeo", "umoci", "buildah", "docker-registry", "curl"]
COLUMNS = ["pier", "skopeo", "umoci", "buildah", "curl", "tar"]
RATIOS = [("pier", "skopeo"), ("pier", "curl")]


def skip_reason(ctx):
    """Always a reason for now: pier does not exist yet."""
    if not os.path.isdir(os.path.join(ctx.workspace, "pier")):
        return "pier is not built yet (no pier/ crate in this checkout)"
    return "pier exists, but scripts/bench has no image operations yet"

"""shim: berth-shim beside conmon (idle RSS/PSS, time to a running container,
log throughput). Its operations come with the shim crate (`shim/`); until
then the group says so and measures nothing."""

import os

NAME = "shim"
TITLE = "berth-shim vs conmon"
PACKAGES = ["conmon"]
COLUMNS = ["berth-shim", "conmon", "floor"]
RATIOS = [("berth-shim", "conmon")]


def skip_reason(ctx):
    """Always a reason for now: the shim does not exist yet."""
    if not os.path.isdir(os.path.join(ctx.workspace, "shim")):
        return "berth-shim is not built yet (no shim/ crate in this checkout)"
    return "berth-shim exists, but scripts/bench has no shim operations yet"

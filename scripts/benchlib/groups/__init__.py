"""Operation groups of scripts/bench: runtime, seccomp, shim, images.

Each module has NAME, a one-line TITLE, PACKAGES (Debian packages it compares
against), `skip_reason(ctx)` (None when it can run, else why not) and
`run(ctx)` returning a list of `stats.Result`.
"""

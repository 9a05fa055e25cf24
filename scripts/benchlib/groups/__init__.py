"""Operation groups of scripts/bench: runtime, seccomp, shim, images.

Each module has NAME, a one-line TITLE, PACKAGES (Debian packages it compares
against), `skip_reason(ctx)` (None when it can run, else why not) and
`run(ctx)`, which files what it measures in collectors from `ctx.collector()`
(so that what was measured survives a later failure of the group).
"""

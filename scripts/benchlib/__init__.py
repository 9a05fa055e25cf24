"""scripts/bench: berth side by side with runc, crun and the physical floor.

The entry point is `scripts/bench`; `cli.main` parses the command line and
runs the operation groups (`groups/`), each of which measures with
`measure`, and `report` prints the table and writes results.json.
"""

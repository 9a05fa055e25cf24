"""Measured values of one operation and tool, and their summary."""

import statistics
from dataclasses import dataclass, field

# Conversions from what `measure.Sample` holds to the units of results.json.
NS_PER_MS = 1_000_000
KIB_PER_MIB = 1024


@dataclass
class Value:
    """One measured value in its own unit, filed as is (no cpu- or
    peak-rss- rows): e.g. an RSS read from /proc, a throughput."""

    unit: str
    value: float


@dataclass
class Result:
    """All measured values of `op` for `tool`, in `unit` (ms, MiB, ns)."""

    op: str
    tool: str
    unit: str
    values: list = field(default_factory=list)

    def summary(self):
        """The results.json object: op, tool, median, min, max, unit, runs."""
        return {
            "op": self.op,
            "tool": self.tool,
            "median": round(statistics.median(self.values), 4),
            "min": round(min(self.values), 4),
            "max": round(max(self.values), 4),
            "unit": self.unit,
            "runs": len(self.values),
        }


class Collector:
    """Gathers the wall, CPU and peak-RSS values of the operations of a group.

    `add(op, tool, sample)` files a `measure.Sample` under `op` (wall, ms),
    `cpu-OP` (user + system, ms) and, for the ops named in `rss_ops`,
    `peak-rss-OP` (MiB).
    """

    def __init__(self, rss_ops=()):
        self.rss_ops = set(rss_ops)
        self._results = {}

    def _result(self, op, tool, unit):
        key = (op, tool)
        if key not in self._results:
            self._results[key] = Result(op, tool, unit)
        return self._results[key]

    def add(self, op, tool, sample):
        """Files one measured run: a `measure.Sample`, or a `Value`."""
        if isinstance(sample, Value):
            self.add_value(op, tool, sample.unit, sample.value)
            return
        self._result(op, tool, "ms").values.append(sample.wall_ns / NS_PER_MS)
        self._result(f"cpu-{op}", tool, "ms").values.append(sample.cpu_ns / NS_PER_MS)
        if op in self.rss_ops:
            self._result(f"peak-rss-{op}", tool, "MiB").values.append(
                sample.maxrss_kib / KIB_PER_MIB
            )

    def discard(self, op, tool):
        """Drops every value of `op` (and cpu-OP, peak-rss-OP) for `tool`."""
        for o in (op, f"cpu-{op}", f"peak-rss-{op}"):
            self._results.pop((o, tool), None)

    def add_value(self, op, tool, unit, value):
        """Files one value measured by other means (e.g. a program's own clock)."""
        self._result(op, tool, unit).values.append(value)

    def results(self):
        """The results, in the order they were first filed."""
        return list(self._results.values())

"""The markdown table, target/bench/results.json and the machine description."""

import json
import os
import platform


def fmt(value):
    """A measured value with about three significant digits."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(summary):
    """'median (min–max)' of one results.json object, or '—' when absent."""
    if summary is None:
        return "—"
    return f"{fmt(summary['median'])} ({fmt(summary['min'])}–{fmt(summary['max'])})"


def ratio(num, den):
    """Ratio of two medians as '0.83', or '—' when either is absent."""
    if num is None or den is None or den["median"] == 0:
        return "—"
    return f"{num['median'] / den['median']:.2f}"


def ratio_spec(r):
    """(numerator, [denominators], header) of a ratio column given as
    (num, den) or (num, den, label); `den` may be a list of tools, of which
    the first one measured for an op is used (e.g. each op's own peer)."""
    num, den = r[0], r[1]
    dens = [den] if isinstance(den, str) else list(den)
    label = r[2] if len(r) > 2 else den if isinstance(den, str) else "/".join(dens)
    return num, dens, f"{num}/{label}"


def table(summaries, columns, ratios, notes=None):
    """A markdown table: one row per op, one column per tool in `columns`
    and one per ratio in `ratios` (see `ratio_spec`); cells are
    'median (min–max)', ratios compare medians. `notes` maps an op to a
    short text appended to its name."""
    notes = notes or {}
    by_key = {(s["op"], s["tool"]): s for s in summaries}
    ops = list(dict.fromkeys(s["op"] for s in summaries))
    units = {s["op"]: s["unit"] for s in summaries}
    specs = [ratio_spec(r) for r in ratios]
    head = ["operation"] + list(columns) + [h for _, _, h in specs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for op in ops:
        name = f"{op} ({units[op]})"
        if op in notes:
            name += f" {notes[op]}"
        row = [name] + [cell(by_key.get((op, t))) for t in columns]
        for num, dens, _ in specs:
            den = next((by_key[(op, d)] for d in dens if (op, d) in by_key), None)
            row.append(ratio(by_key.get((op, num)), den))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_json(path, summaries):
    """Writes the list of results.json objects."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(summaries, f, indent=2)
        f.write("\n")


def machine():
    """One line naming the machine: CPU, cores, memory, kernel, distribution."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    distro = ""
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    distro = ", " + line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, kernel {platform.release()}{distro}"


def loadavg():
    """The 1-minute load average (other work on the machine skews wall times)."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"

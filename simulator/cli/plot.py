"""`moesim plot DIR`: draw a result directory's figures into DIR/plots/, from its files alone.

Reads only summary.json, iterations.csv and timeline.json (what `moesim run` wrote), so a result
directory copied off a cluster can be plotted anywhere. docs/outputs.md shows every figure.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Any

from simulator.safeio import InputError, check_regular_file, read_json, read_text
from simulator.errors import ScenarioError

HELP = "draw the figures of a result directory (from summary.json, iterations.csv, timeline.json)"

RESULT_FILES = ("summary.json", "iterations.csv", "timeline.json")
FORMAT_CHOICES = ("png", "svg")
RANGE = re.compile(r"^\s*(\d*)\s*(:\s*(\d*)\s*)?$")


def add_arguments(parser) -> None:
    parser.add_argument("dir", help="result directory written by `moesim run`")
    parser.add_argument("--timeline", action="store_true",
                        help="also draw a Gantt chart of the chosen iterations and layers")
    parser.add_argument("--iterations", metavar="A:B",
                        help="iterations drawn over time, half-open like Python slices (A:B, A:, :B, "
                             ": or one index): the Gantt chart's (default 0:1) and the link "
                             "utilisation's (default all)")
    parser.add_argument("--layers", default=":", metavar="A:B",
                        help="layers of the Gantt chart, same syntax (default all)")
    parser.add_argument("--format", default=",".join(FORMAT_CHOICES),
                        help="comma-separated image formats out of png,svg (default both)")


def parse_range(text: str, option: str) -> tuple[int | None, int | None]:
    """'A:B' -> (A, B) half-open, 'A:' / ':B' / ':' leave an end open, 'A' -> (A, A + 1)."""
    match = RANGE.match(text)
    if not match or (not match.group(2) and not match.group(1)):
        raise ScenarioError(f"expected A:B, A:, :B, : or N with integers >= 0, got {text!r}", option)
    low = int(match.group(1)) if match.group(1) else None
    if not match.group(2):
        return low, low + 1
    high = int(match.group(3)) if match.group(3) else None
    if low is not None and high is not None and high <= low:
        raise ScenarioError(f"empty range {text!r}: B must be > A", option)
    return low, high


def parse_formats(text: str, option: str = "--format") -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMAT_CHOICES]
    if unknown or not formats:
        raise ScenarioError(f"unknown format(s) {unknown or [text]}; allowed: {', '.join(FORMAT_CHOICES)}",
                            option)
    return formats


def result_file(directory: Path, name: str) -> Path:
    """`directory / name`, or ScenarioError naming the missing file."""
    if not directory.is_dir():
        raise ScenarioError("no such result directory", str(directory))
    path = directory / name
    if path.exists() or path.is_symlink():
        return check_regular_file(path, error=ScenarioError)  # a FIFO or device: say so
    if not path.is_file():
        raise ScenarioError(f"missing; a result directory of `moesim run` holds "
                            f"{', '.join(RESULT_FILES)}", str(path))
    return path


def read_summary(directory: Path) -> dict[str, Any]:
    path = result_file(directory, "summary.json")
    summary = read_json(path, error=ScenarioError)  # regular file, depth-limited (safeio)
    missing = [k for k in ("latency_s", "breakdown_s") if not isinstance(summary, dict) or k not in summary]
    if missing:
        raise ScenarioError(f"not a moesim summary: no {', '.join(missing)}", str(path))
    check_summary(summary, str(path))
    return summary


def check_summary(summary: dict[str, Any], where: str) -> None:
    """The fields the figures read have the right shapes (a hand-edited summary.json is common)."""
    for key in ("latency_s", "breakdown_s"):
        section = summary[key]
        if not isinstance(section, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in section.values()):
            raise ScenarioError(f"{key} must map names to finite numbers", where)
    if not {"mean", "p50", "p99"} <= set(summary["latency_s"]):
        raise ScenarioError("latency_s needs mean, p50 and p99", where)


def read_rows(directory: Path) -> list[dict[str, str]]:
    path = result_file(directory, "iterations.csv")
    text = read_text(path, error=ScenarioError)
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise ScenarioError(f"not a CSV table ({error})", str(path)) from None
    if not rows or "layer" not in rows[0] or "latency_s" not in rows[0]:
        raise ScenarioError("not a moesim iterations table (needs layer and latency_s columns)",
                            str(path))
    for number, row in enumerate(rows, start=2):
        for key, value in row.items():
            if key is None or value is None:
                raise ScenarioError("a row has a different number of values than the header",
                                    f"{path}:{number}")
            if key in ("iteration", "layer") and not (value.lstrip("-").isdigit() or value == "all"):
                raise ScenarioError(f"{key} must be an integer or 'all', got {value!r}",
                                    f"{path}:{number}")
            if key not in ("iteration", "layer"):
                try:
                    number_value = float(value)
                except ValueError:
                    continue  # a text column (a strategy name): the figures do not read it
                if not math.isfinite(number_value):
                    raise ScenarioError(f"{key} must be finite, got {value!r}", f"{path}:{number}")
    return rows


def read_trace(directory: Path):
    from simulator.output.timeline import read_timeline

    packed = directory / "timeline.json.gz"
    path = packed if packed.is_file() and not (directory / "timeline.json").is_file() else \
        result_file(directory, "timeline.json")
    try:
        return read_timeline(path)
    except InputError as error:
        raise ScenarioError(error.message, error.field) from None
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        raise ScenarioError(f"not a moesim timeline ({error})", str(path)) from None


def run(args) -> int:
    directory = Path(args.dir)
    formats = parse_formats(args.format)
    chosen = parse_range(args.iterations, "--iterations") if args.iterations is not None else None
    iterations = chosen or (0, 1)
    layers = parse_range(args.layers, "--layers")
    summary, rows, timeline = read_summary(directory), read_rows(directory), read_trace(directory)

    from simulator.output import plots

    count = int(summary.get("iterations", len(timeline.iterations)))
    if chosen is not None and not (chosen[0] or 0) < count:
        raise ScenarioError(f"no iteration in {args.iterations}: the run has {count} (0:{count})",
                            "--iterations")
    if args.timeline and not plots.gantt_selection(timeline, iterations, layers).any():
        raise ScenarioError(
            f"no timeline slices in iterations {args.iterations or '0:1'} and layers {args.layers} (the run "
            f"has {summary.get('iterations', '?')} iterations)", "--iterations/--layers")
    out = directory / "plots"
    out.mkdir(exist_ok=True)
    written = plots.plot_phase_breakdown(summary, rows, out / "breakdown", formats)
    written += plots.plot_expert_load(timeline, summary, out / "expert_load", formats)
    written += plots.plot_link_utilization(timeline, out / "link_utilization", formats,
                                           iterations=chosen or (None, None))
    written += plots.plot_skewness(rows, out / "skewness", formats)
    if args.timeline:
        written += plots.plot_gantt(timeline, out / "gantt", iterations, layers, formats)
    for path in written:
        print(path)
    return 0

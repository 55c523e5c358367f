"""`moesim compare DIR DIR ...`: result directories side by side, as a table and a stacked plot.

Reads each directory's summary.json only. Prints latency (mean, p50, p99), speedup against the
first directory and the per-phase breakdown; writes compare.csv and compare_breakdown.png/svg
into --out (default: FIRST_DIR/plots, next to `moesim plot`'s figures of the baseline).
"""

from __future__ import annotations

from simulator.output.files import write_csv
from pathlib import Path
from typing import Any

from simulator.cli.outputs import check_out_dir, make_out_dir
from simulator.cli.plot import parse_formats, read_summary
from simulator.errors import ScenarioError

HELP = "compare result directories: latency, speedup vs the first, breakdown per phase; plot"


def add_arguments(parser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR",
                        help="result directories; the first is the baseline")
    parser.add_argument("--out",
                        help="where compare.csv and compare_breakdown.* go (default FIRST_DIR/plots)")
    parser.add_argument("--names", help="comma-separated labels, one per DIR (default: directory names)")
    parser.add_argument("--format", default="png,svg", help="image formats out of png,svg (default both)")


def labels_for(dirs: list[Path], names: str | None) -> list[str]:
    """One label per directory: --names, else the directory name (the path where names clash)."""
    if names is not None:
        labels = [n.strip() for n in names.split(",")]
        if len(labels) != len(dirs) or not all(labels):
            raise ScenarioError(f"expected {len(dirs)} non-empty comma-separated names (one per DIR), "
                                f"got {names!r}", "--names")
        return labels
    labels = [d.name or str(d) for d in dirs]
    if len(set(labels)) < len(labels):
        labels = [str(d) for d in dirs]
    return labels


def comparison_rows(labels: list[str], summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run: latency in ms, speedup vs the first (mean latency ratio), phases in ms."""
    from simulator.output.records import PIPELINE_PHASES

    base = summaries[0]["latency_s"]["mean"]
    phases = [p for p in PIPELINE_PHASES if any(s["breakdown_s"].get(p, 0.0) > 0 for s in summaries)]
    rows = []
    for label, summary in zip(labels, summaries):
        latency = summary["latency_s"]
        row = {"name": label, "mean_ms": latency["mean"] * 1e3, "p50_ms": latency["p50"] * 1e3,
               "p99_ms": latency["p99"] * 1e3,
               "speedup": base / latency["mean"] if latency["mean"] > 0 else float("nan")}
        row.update({f"{p}_ms": summary["breakdown_s"].get(p, 0.0) * 1e3 for p in phases})
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Fixed-width text table; numbers with 3 decimals (speedup as 1.234x)."""
    columns = list(rows[0])
    cells = [[str(r["name"])] + [f"{r[c]:.3f}x" if c == "speedup" else f"{r[c]:.3f}" for c in columns[1:]]
             for r in rows]
    widths = [max(len(c), *(len(row[k]) for row in cells)) for k, c in enumerate(columns)]
    header = "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(columns, widths)))
    lines = [header]
    for row in cells:
        lines.append("  ".join(v.ljust(w) if k == 0 else v.rjust(w)
                               for k, (v, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def run(args) -> int:
    dirs = [Path(d) for d in args.dirs]
    if args.out:
        check_out_dir(args.out)  # before reading: a bad --out fails first
    formats = parse_formats(args.format)
    labels = labels_for(dirs, args.names)
    summaries = [read_summary(d) for d in dirs]
    rows = comparison_rows(labels, summaries)
    print(format_table(rows))
    out = Path(args.out) if args.out else dirs[0] / "plots"
    make_out_dir(out)
    write_csv(out / "compare.csv", rows)

    from simulator.output.plots import plot_breakdown_bars

    written = plot_breakdown_bars(labels, [s["breakdown_s"] for s in summaries], out / "compare_breakdown",
                                  "Breakdown per phase (bar: ms per iteration; line: mean latency)",
                                  latencies_s=[s["latency_s"]["mean"] for s in summaries],
                                  formats=formats)
    print(f"wrote {out / 'compare.csv'}, " + ", ".join(str(p) for p in written))
    return 0

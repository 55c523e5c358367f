"""`moesim validate-hw [--out docs/validation.md]`: the simulator next to published hardware
measurements (nccl-tests, nvbandwidth, GEMM benchmarks), with relative errors and sources.

Exit status 0 when every row is within its stated tolerance, 1 otherwise (the table is still
written). `--fit` prints the catalogue figures refitted from the measurements (maintainers).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from simulator.cli.outputs import check_out_file, write_text_atomic
from simulator.hardware import validation

HELP = "compare simulated collectives and kernels with published measurements (docs/validation.md)"


def add_arguments(parser) -> None:
    parser.add_argument("--out", help="write the Markdown table here (default: print it)")
    parser.add_argument("--fit", action="store_true",
                        help="print the link figures and launch latencies refitted from the measurements")


def run(args) -> int:
    if args.fit:
        fitted = validation.catalogue_fit()
        names = fitted.pop("fitted")
        links = {kind: {k: round(v, 4) for k, v in figures.items() if k in names.get(kind, ())}
                 for kind, figures in fitted["links"].items() if names.get(kind)}
        launch = {k: round(v, 3) for k, v in fitted["launch_us"].items() if k in names.get("launch", ())}
        print(yaml.safe_dump({"links": links, "launch_us": launch}, sort_keys=False), end="")
        return 0
    if args.out:
        check_out_file(args.out)
    rows = validation.validate()
    text = validation.render_markdown(rows)
    if args.out:
        write_text_atomic(args.out, text)
        for entry in validation.summary(rows):
            worst = ", ".join(f"{k} {entry[k]:+.1%}" for k in ("small", "medium", "large", "transfer", "gemm")
                              if k in entry)
            print(f"{'ok ' if entry['ok'] else 'OUT'} {entry['table']:<32} {entry['system']:<14} {worst}")
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    outside = [r for r in rows if not r.ok]
    for r in outside:
        print(f"moesim: {r.table} {r.size}: {r.metric} {r.model:.4g} vs measured {r.measured:.4g} "
              f"({r.error:+.1%}, tolerance {r.tolerance:.0%})", file=sys.stderr)
    return 1 if outside else 0

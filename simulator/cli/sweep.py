"""`moesim sweep SWEEP.yaml --out DIR`: run a grid of scenario variants in parallel, resumably."""

from __future__ import annotations

import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from simulator.cli.outputs import check_out_dir
from simulator.cli.progress import add_progress_arguments, progress_from_args
from simulator.errors import ScenarioError
from simulator.studies.sweep import check_variants, connect, load_sweep, run_sweep

HELP = "run a grid of scenario variants in parallel processes or on a Dask cluster, resumably"


def add_arguments(parser) -> None:
    parser.add_argument("sweep", help="sweep YAML file (base scenario + grid/zip/seeds)")
    parser.add_argument("--out", required=True,
                        help="output directory: runs/<id>/ per variant and results.csv")
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on a Dask distributed scheduler, e.g. tcp://host:8786")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of the base scenario for every variant (repeatable)")
    parser.add_argument("--timeline", action="store_true",
                        help="also write each run's timeline.json "
                             "(large: ~0.2 MB per iteration of the default scenario)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the variants and check each one's system without simulating")
    add_progress_arguments(parser, "no progress and no summary line")


def run(args) -> int:
    if args.workers < 1:
        raise ScenarioError(f"must be >= 1, got {args.workers}", "--workers")
    check_out_dir(args.out)  # before expanding: a bad --out fails first
    sweep = load_sweep(args.sweep, args.overrides)
    if args.dry_run:
        for line in check_variants(sweep):
            print(line)
        print(f"{args.sweep}: ok ({len(sweep.variants)} variants)")
        return 0
    out = Path(args.out)  # checked above; run_sweep creates it
    client = connect(args.scheduler) if args.scheduler else None
    progress = progress_from_args(args)
    try:
        report = run_sweep(sweep, out, args.workers, client, args.timeline, progress)
    except KeyboardInterrupt:
        print(f"moesim: interrupted; finished runs are kept in {out}/runs; run the same command to resume",
              file=sys.stderr)
        return 130
    except Exception as error:
        # a local worker process died, or Dask gave up on a task whose workers kept dying
        if not isinstance(error, BrokenProcessPool) and type(error).__name__ != "KilledWorker":
            raise
        print(f"moesim: a worker process died ({type(error).__name__}); finished runs are kept in "
              f"{out}/runs; run the same command to resume", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
    if not args.quiet:
        print(f"{report.total} variants: {report.ran} run, {report.reused} already done, "
              f"in {report.wall_s:.1f} s; results in {out}/results.csv")
    return 0

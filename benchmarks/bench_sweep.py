"""Speed-up of `moesim sweep` with worker processes: the same sweep with 1 worker and with N.

The sweep: the bundled default scenario (Mixtral-8x7B prefill, 4x A100 NVLink) over 64 seeds,
2 iterations each, so it takes minutes, not hours. Each case writes into its own temporary
directory (nothing is reused between cases), and the results of every case must agree.

Run: `.venv/bin/python benchmarks/bench_sweep.py [--runs 64] [--iterations 2] [--workers 1 2]`.
`--default-blas-threads` leaves numpy's BLAS thread pools at their default in the workers, to show
what oversubscription costs. The machine may be shared: compare cases within one run.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import simulator.studies.sweep
from simulator.studies.sweep import expand_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def results_without_wall_time(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in csv.DictReader(path.open())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=64, help="variants (seeds) in the sweep")
    parser.add_argument("--iterations", type=int, default=2, help="workload.iterations of each run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time")
    parser.add_argument("--default-blas-threads", action="store_true",
                        help="do not pin OPENBLAS/OMP/MKL threads to 1 in the workers")
    args = parser.parse_args()
    if args.default_blas_threads:
        simulator.studies.sweep.SINGLE_THREADED = {}
    spec = {"base": "scenarios/default.yaml", "repeat": args.runs}
    sweep = expand_sweep(spec, "bench", ROOT, [f"workload.iterations={args.iterations}"])
    print(f"{len(sweep.variants)} runs of scenarios/default.yaml, {args.iterations} iterations each, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other processes compete)")
    print(f"{'workers':>7} {'wall s':>8} {'runs/s':>7} {'sim s (sum)':>11} {'speed-up':>8}")
    baseline, reference = None, None
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            report = run_sweep(sweep, tmp, workers=workers)
            wall_s = time.perf_counter() - started
            results = Path(tmp) / "results.csv"
            simulated_s = sum(float(row["wall_s"]) for row in csv.DictReader(results.open()))
            rows = results_without_wall_time(results)
        assert report.ran == len(sweep.variants)
        reference = reference or rows
        assert rows == reference, "results differ between worker counts"
        baseline = baseline or wall_s
        print(f"{workers:>7} {wall_s:8.1f} {report.ran / wall_s:7.2f} {simulated_s:11.1f} "
              f"{baseline / wall_s:7.2f}x   (load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()

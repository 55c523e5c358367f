"""Speed of whole runs, each as a ratio to SimPy's null model measured in the same run.

Run: `.venv/bin/python benchmarks/bench_run.py [--rows default,deepseek-decode] [--code DIR]`.

The null model is 1 M bare SimPy timeouts (one process, `yield env.timeout(1)`): the least any
SimPy model pays for 1 M events on this machine now. Every row reports its wall time divided by
the null model's time (`x null`), so rows stay comparable on a shared, noisy machine; the null
model runs before and after the rows and both are printed (their spread says how noisy the run
was). Each row runs in its own process (peak RSS is that row's alone), split into building the
system (trace, placement, costs) and the event loop. `--code DIR` runs the rows with another
checkout's `simulator` (e.g. the code before a change, for before/after tables in
docs/benchmarks.md). Speed is never asserted in tests; this script is where it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import simpy

ROOT = Path(__file__).resolve().parents[1]
DEEPSEEK = "scenarios/deepseek-v3-4x8xh100-ib.yaml"

# The rows of issue 12's table: name -> (scenario, overrides, what a user needs)
ROWS = {
    "default": ("scenarios/default.yaml", ["workload.iterations=200"],
                "default (Mixtral, 4xA100) x 200 iterations"),
    "mixtral-8xh100": ("scenarios/mixtral-8xh100-nvswitch.yaml", ["workload.iterations=100"],
                       "Mixtral-8x7B, 8xH100 NVSwitch x 100 prefill iterations"),
    "deepseek-decode": (DEEPSEEK, ["workload.iterations=1"], "DeepSeek-V3 decode EP32 IB, 1 iteration"),
    "deepseek-prefill": (DEEPSEEK, ["workload.iterations=1", "workload.phase=prefill", "workload.batch=32",
                                    "workload.seq_len=16384"],
                         "DeepSeek-V3 prefill EP32, 524,288 tokens, 1 iteration"),
    "deepseek-ep256": (DEEPSEEK, ["workload.iterations=1", "topology.nodes=32", "parallelism.ep=256",
                                  "workload.batch=256"],
                       "DeepSeek-V3 decode EP256, 1 token/GPU, 1 iteration"),
}
QUICK = ["default", "deepseek-decode"]
# events must not grow with tokens: the default scenario at 8x the tokens
TOKENS = {"tokens-512": ("scenarios/default.yaml", ["workload.iterations=5", "workload.seq_len=512"], ""),
          "tokens-4096": ("scenarios/default.yaml", ["workload.iterations=5", "workload.seq_len=4096"], "")}


def null_model_s(events: int = 1_000_000) -> tuple[float, float]:
    """(wall, CPU) seconds SimPy takes for `events` bare timeouts here, now."""
    env = simpy.Environment()

    def ticker():
        for _ in range(events):
            yield env.timeout(1.0)

    env.process(ticker())
    start, cpu = time.perf_counter(), time.process_time()
    env.run()
    return time.perf_counter() - start, time.process_time() - cpu


def run_row(name: str) -> dict:
    """One row, in this process: build, event loop, summary; peak RSS of this process."""
    from simulator.engine.cluster import Cluster, CountingEnvironment
    from simulator.model.pipeline import MoEPipeline
    from simulator.model.training_step import TrainingPipeline
    from simulator.scenario.schema import load_scenario
    from simulator.scenario.system import build_system

    path, overrides, _ = {**ROWS, **TOKENS}[name]
    scenario = load_scenario(Path(path), overrides)
    start, cpu_start = time.perf_counter(), time.process_time()
    system = build_system(scenario, "scenario")
    built = time.perf_counter()
    env = CountingEnvironment()
    cluster = Cluster(env, system.graph, alpha_s=scenario.network.alpha_us * 1e-6)
    pipeline_class = TrainingPipeline if scenario.workload.mode == "training" else MoEPipeline
    pipeline = pipeline_class(cluster, system)
    pipeline.start()
    env.run()
    end, cpu_end = time.perf_counter(), time.process_time()
    layers = system.model.layers * scenario.workload.iterations
    solver = getattr(cluster.net, "_kernels", None)
    return {"cpu_s": cpu_end - cpu_start, "build_s": built - start, "events_s": end - built, "wall_s": end - start,
            "events": env.events_processed, "events_per_layer": env.events_processed / layers,
            "flows": cluster.net.flow_count, "solves": cluster.net.solves,
            "solver": solver.name if solver is not None else "numpy (before)",
            "compile_s": solver.compile_s if solver is not None else 0.0,
            "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "end_s": env.now}


def run_child(name: str, code: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code))
    done = subprocess.run([sys.executable, __file__, "--child", name], cwd=code, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"row {name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(QUICK),
                        help=f"comma-separated rows, or 'all' ({', '.join(ROWS)})")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose simulator runs the rows")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_row(args.child)))
        return
    names = list(ROWS) if args.rows == "all" else args.rows.split(",")
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    before = null_model_s()
    results = {name: run_child(name, args.code.resolve()) for name in names}
    after = null_model_s()
    null_s = (before[0] + after[0]) / 2
    null_cpu_s = (before[1] + after[1]) / 2
    print(f"code: {args.code.resolve()}")
    print(f"null model (1 M bare SimPy timeouts): wall {before[0]:.2f} s before the rows, {after[0]:.2f} s "
          f"after; CPU {before[1]:.2f} / {after[1]:.2f} s. Ratios use the means ({null_s:.2f} s wall, "
          f"{null_cpu_s:.2f} s CPU): 'x null' is wall / wall, 'CPU x' CPU / CPU (steadier on a shared machine)")
    header = (f"{'row':<54} {'wall s':>7} {'x null':>7} {'CPU x':>6} {'build s':>7} {'events s':>8} "
              f"{'events':>10} {'ev/layer':>8} {'RSS MB':>7}")
    print(header)
    print("-" * len(header))
    for name in names:
        r = results[name]
        print(f"{ROWS[name][2]:<54} {r['wall_s']:7.2f} {r['wall_s'] / null_s:7.2f} "
              f"{r['cpu_s'] / null_cpu_s:6.2f} {r['build_s']:7.2f} "
              f"{r['events_s']:8.2f} {r['events']:10,d} {r['events_per_layer']:8.1f} {r['peak_rss_MB']:7.0f}")
    small = run_child("tokens-512", args.code.resolve())
    large = run_child("tokens-4096", args.code.resolve())
    print(f"events per layer, default x 5 iterations at 512 vs 4096 tokens: {small['events_per_layer']:.1f} "
          f"vs {large['events_per_layer']:.1f} (events grow with GPUs and flows, never tokens)")
    solvers = {results[n]["solver"] for n in names}
    compile_s = max(results[n]["compile_s"] for n in names)
    print(f"solver: {', '.join(sorted(solvers))}"
          + (f" (numba import + compile or cache load: up to {compile_s:.2f} s per process, in events s)"
             if "numba" in solvers else ""))


if __name__ == "__main__":
    main()

"""`network.model: fast` against the exact network on the bundled scenarios: error and speed.

Run: `.venv/bin/python benchmarks/bench_fast_model.py [--iterations 2]`.

Each bundled scenario (scenarios/*.yaml, not the sweep) runs twice, exact and fast, with the same
seed and `workload.iterations` capped at `--iterations` (the error is per iteration; more
iterations only repeat it). Printed per scenario: mean iteration latency of each model and the
fast one's relative error, the all-to-all (dispatch + combine) time's error, the rate solves
each took and the event loop's CPU seconds. The table in docs/benchmarks.md is this output.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run(path: Path, overrides: list[str], model: str) -> dict:
    from simulator.engine.cluster import Cluster, CountingEnvironment
    from simulator.model.pipeline import MoEPipeline
    from simulator.model.training_step import TrainingPipeline
    from simulator.scenario.run import collect_records
    from simulator.scenario.schema import load_scenario
    from simulator.scenario.system import build_system

    scenario = load_scenario(path, overrides + [f"network.model={model}"])
    system = build_system(scenario, "scenario")
    env = CountingEnvironment()
    cluster = Cluster(env, system.graph, alpha_s=scenario.network.alpha_us * 1e-6, network_model=model)
    pipeline_class = TrainingPipeline if scenario.workload.mode == "training" else MoEPipeline
    pipeline = pipeline_class(cluster, system)
    pipeline.start()
    start = time.process_time()
    env.run()
    cpu_s = time.process_time() - start
    summary = collect_records(system, cluster, pipeline, {"events": env.events_processed, "wall_s": cpu_s}).summary
    a2a = sum(s.end_s - s.start_s for s in cluster.spans if s.phase in ("dispatch", "combine"))
    return {"latency_s": summary["latency_s"]["mean"], "a2a_s": a2a, "solves": cluster.net.solves,
            "cpu_s": cpu_s}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2, help="cap on each scenario's iterations")
    args = parser.parse_args(argv)
    paths = sorted(p for p in (ROOT / "scenarios").glob("*.yaml") if not p.name.startswith("sweep"))
    header = (f"{'scenario':<28} {'exact ms':>9} {'fast ms':>9} {'latency err':>11} {'a2a err':>8} "
              f"{'solves':>15} {'loop CPU s':>13}")
    print(header)
    print("-" * len(header))
    errors = []
    for path in paths:
        import yaml

        iterations = yaml.safe_load(path.read_text()).get("workload", {}).get("iterations", 20)
        overrides = [f"workload.iterations={min(iterations, args.iterations)}"]
        exact, fast = run(path, overrides, "exact"), run(path, overrides, "fast")
        err = fast["latency_s"] / exact["latency_s"] - 1
        a2a_err = fast["a2a_s"] / exact["a2a_s"] - 1 if exact["a2a_s"] else 0.0
        errors.append(abs(err))
        print(f"{path.stem:<28} {exact['latency_s'] * 1e3:9.3f} {fast['latency_s'] * 1e3:9.3f} {err:+11.3%} "
              f"{a2a_err:+8.2%} {exact['solves']:>7,d}>{fast['solves']:<7,d} "
              f"{exact['cpu_s']:6.2f}>{fast['cpu_s']:<6.2f}")
    print(f"largest |latency error|: {max(errors):.3%}; mean {np.mean(errors):.3%}")


if __name__ == "__main__":
    main()

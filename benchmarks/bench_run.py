"""Speed of `moesim run`: wall time and events/s of whole scenarios, next to raw SimPy events/s.

Run: `.venv/bin/python benchmarks/bench_run.py [--iterations 1000] [--deepseek-iterations 10]`.
Prints one row per case; compare the ratios within one run (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench_network import raw_simpy_events_per_s  # same folder: run as a script

from simulator.scenario.run import simulate
from simulator.scenario.schema import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def bench_scenario(path: Path, overrides: list[str]) -> dict:
    scenario = load_scenario(path, overrides)
    start = time.perf_counter()
    result = simulate(scenario)
    wall_s = time.perf_counter() - start
    summary = result.summary
    layers = result.system.model.layers * summary["iterations"]
    return {"wall_s": wall_s, "events": summary["events"], "events_per_s": summary["events"] / wall_s,
            "events_per_layer": summary["events"] / layers, "flows": result.cluster.net.flow_count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=1000, help="iterations of the default scenario")
    parser.add_argument("--deepseek-iterations", type=int, default=10)
    args = parser.parse_args()
    cases = [
        ("default (Mixtral, 4xA100 NVLink)", ROOT / "scenarios/default.yaml",
         [f"workload.iterations={args.iterations}"]),
        ("DeepSeek-V3 decode, 32xH100 IB", ROOT / "scenarios/deepseek-v3-4x8xh100-ib.yaml",
         [f"workload.iterations={args.deepseek_iterations}"]),
    ]
    print(f"raw SimPy: {raw_simpy_events_per_s():,.0f} events/s")
    print(f"{'case':<36} {'iters':>6} {'wall s':>8} {'events':>10} {'events/s':>10} {'ev/layer':>9} {'flows':>9}")
    for name, path, overrides in cases:
        row = bench_scenario(path, overrides)
        iterations = overrides[0].split("=")[1]
        print(f"{name:<36} {iterations:>6} {row['wall_s']:8.2f} {row['events']:10,d} "
              f"{row['events_per_s']:10,.0f} {row['events_per_layer']:9.1f} {row['flows']:9,d}")
    # events per layer must not grow with tokens: same scenario, 8x the tokens
    small = bench_scenario(cases[0][1], ["workload.iterations=5", "workload.seq_len=512"])
    large = bench_scenario(cases[0][1], ["workload.iterations=5", "workload.seq_len=4096"])
    print(f"events per layer at 512 vs 4096 tokens: {small['events_per_layer']:.1f} vs "
          f"{large['events_per_layer']:.1f}")


if __name__ == "__main__":
    main()

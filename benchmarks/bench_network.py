"""Speed of the flow network: all-to-alls of 8, 64 and 256 GPUs, next to raw SimPy events/s.

Run: `.venv/bin/python benchmarks/bench_network.py [--quick] [--exact]`.

Each case is one all-to-all (every GPU sends to every other, all flows at once) on an idle
network: `equal` gives every pair 1 MiB, `random` draws each pair's bytes uniformly in
[0, 2] MiB (seeded), so every flow ends at its own time and each end costs a rate solve. The
256-GPU random case runs with ``finish_rtol=1e-2`` (flows within 1% of their bytes of done finish
together) unless `--exact` (exact takes many minutes: one solve per flow end over ~65k flows);
the 64-GPU random case runs both ways, and `err` is the all-to-all time's relative difference
from the exact run. Routing (the PathTable's first look-up of every GPU pair) is timed apart
from the simulation. `--quick` skips 256 GPUs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import simpy

import topologies
from simulator.engine.collectives import all_to_all
from simulator.engine.network import FlowNetwork
from topologies.paths import PathTable, gpu_nodes

MiB = 2**20


def raw_simpy_events_per_s(events: int = 200_000) -> float:
    """Events/s of a bare SimPy loop of timeouts: the ceiling any SimPy model can reach here."""
    env = simpy.Environment()

    def ticker():
        for _ in range(events):
            yield env.timeout(1.0)

    env.process(ticker())
    start = time.perf_counter()
    env.run()
    return events / (time.perf_counter() - start)


def topology(gpus: int):
    if gpus <= 8:
        return topologies.nvswitch(gpus=gpus)
    return topologies.multi_node(nodes=gpus // 8, gpus_per_node=8)


def routed(gpus: int) -> tuple[PathTable, list[str], float]:
    graph = topology(gpus)
    paths = PathTable(graph)
    group = gpu_nodes(graph)
    start = time.perf_counter()
    for src in group:
        for dst in group:
            paths.path(src, dst)
    return paths, group, time.perf_counter() - start


def bench(paths: PathTable, group: list[str], sizes, finish_rtol: float) -> dict:
    env = simpy.Environment()
    net = FlowNetwork(env, paths, alpha_s=2e-6, finish_rtol=finish_rtol)
    start = time.perf_counter()
    process = env.process(all_to_all(net, group, sizes))
    env.run()
    wall_s = time.perf_counter() - start
    record = process.value
    return {"flows": record.flows, "solves": net.solves, "rounds": net.solve_rounds,
            "sim_us": record.time_s * 1e6, "wall_s": wall_s, "flows_per_s": record.flows / wall_s}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 256-GPU cases")
    parser.add_argument("--exact", action="store_true", help="256-GPU random case without finish_rtol (long)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"raw SimPy: {raw_simpy_events_per_s():,.0f} events/s (loop of timeouts)")
    header = (f"{'case':<26} {'GPUs':>5} {'flows':>7} {'solves':>7} {'rounds':>7} {'sim us':>9} "
              f"{'err':>7} {'wall s':>8} {'flows/s':>10} {'routing s':>9}")
    print(header)
    print("-" * len(header))
    for gpus in (8, 64) if args.quick else (8, 64, 256):
        paths, group, routing_s = routed(gpus)
        n = len(group)
        random = rng.uniform(0, 2, (n, n)) * MiB
        cases = [("equal 1 MiB", MiB, 1e-10), ("random 0-2 MiB", random, 1e-10)]
        if gpus == 64:
            cases.append(("random, finish_rtol 1e-2", random, 1e-2))
        if gpus == 256 and not args.exact:
            cases[1] = ("random, finish_rtol 1e-2", random, 1e-2)
        exact_us = None
        for name, sizes, finish_rtol in cases:
            row = bench(paths, group, sizes, finish_rtol)
            if name.startswith("random") and finish_rtol < 1e-6:
                exact_us = row["sim_us"]
            err = f"{row['sim_us'] / exact_us - 1:+.2%}" if "finish_rtol" in name and exact_us else ""
            print(f"{name:<26} {gpus:>5} {row['flows']:>7} {row['solves']:>7} {row['rounds']:>7} "
                  f"{row['sim_us']:>9.1f} {err:>7} {row['wall_s']:>8.3f} {row['flows_per_s']:>10,.0f} "
                  f"{routing_s:>9.2f}")
            routing_s = 0.0


if __name__ == "__main__":
    main()

"""The MoE-GPS direction table of docs/results.md: prediction strategy x interconnect x skewness.

Run: `.venv/bin/python benchmarks/moegps_directions.py` (a few minutes); prints a markdown table
of mean iteration latency (ms). The system is the one `tests/simulator/planning/test_strategy.py` uses:
a 4-layer Mixtral-shaped model, 2 x 2048 prefill tokens on 4 A100s, predictors fitted on 4
earlier trace iterations, placement re-planned every 3 iterations by greedy duplication with the
papers' token-count objective and each copy starting with its own layer (`objective: tokens`,
`prefetch: 0`; the simulator's defaults are the time objective and copies started when planned).
"""

from __future__ import annotations

from simulator.scenario.run import simulate
from simulator.scenario.schema import validate_scenario

MODEL = {"base": "mixtral-8x7b", "name": "small-moe", "layers": 4}
TOPOLOGIES = {
    "NVLink": {"builder": "nvlink_mesh", "gpus": 4, "device": "a100-sxm4-80gb"},
    "PCIe": {"builder": "pcie_tree", "gpus": 4, "device": "a100-pcie-80gb", "gpus_per_switch": 2,
             "sockets": 1},
}
PREDICTORS = {
    "none (static)": {"kind": "none"},
    "Distribution-Only (distribution.mle)": {"kind": "distribution.mle"},
    "Token-to-Expert (token.conditional)": {"kind": "token.conditional"},
    "Token-to-Expert (token.ffn, 64)": {"kind": "token.ffn", "size": 64},
}


def latency_ms(topology: dict, skewness: float, predictor: dict) -> float:
    predictor = {"history": 4, **predictor}  # the baseline simulates the same trace iterations
    if predictor["kind"] != "none":
        predictor = {"replan_every": 3, **predictor}
    scenario = validate_scenario({
        "model": MODEL, "topology": topology,
        "workload": {"batch": 2, "seq_len": 2048, "iterations": 6,
                     "trace": {"synthetic": {"skewness": skewness}}},
        "predictor": predictor,
        "balancer": ({"kind": "greedy_duplication", "objective": "tokens", "prefetch": 0}
                     if predictor["kind"] != "none" else {"kind": "static"}),
    })
    return simulate(scenario).summary["latency_s"]["mean"] * 1e3


def main() -> None:
    print("| interconnect, skewness | " + " | ".join(PREDICTORS) + " |")
    print("|---|" + "---:|" * len(PREDICTORS))
    for name, topology in TOPOLOGIES.items():
        for skewness in (1.4, 2.5, 3.5):
            row = [latency_ms(topology, skewness, p) for p in PREDICTORS.values()]
            best = min(row)
            cells = [f"**{v:.2f}**" if v == best else f"{v:.2f}" for v in row]
            print(f"| {name}, {skewness} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

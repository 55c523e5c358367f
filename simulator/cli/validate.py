"""`moesim validate SCENARIO.yaml`: check a scenario and everything it refers to, without running it."""

from __future__ import annotations

from simulator.scenario.schema import load_scenario
from simulator.scenario.system import build_system

HELP = "check a scenario (schema, model, topology, trace, placement, memory) without simulating"


def add_arguments(parser) -> None:
    parser.add_argument("scenario", help="scenario YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario value before checking (repeatable)")


def run(args) -> int:
    scenario = load_scenario(args.scenario, args.overrides)
    system = build_system(scenario, source=args.scenario)
    peak = max(m.total for m in system.memory) / 1e9
    print(f"{args.scenario}: ok ({system.model.name}, {system.gpus} GPUs, {system.tokens} tokens per "
          f"iteration, {system.scenario.workload.iterations} iterations, peak memory {peak:.1f} GB per GPU)")
    return 0

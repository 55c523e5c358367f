"""`moesim validate SCENARIO.yaml`: check a scenario and everything it refers to, without running it.

The trace is checked, not read: a file's array shapes from its headers, synthetic arguments
without generating; so validating the largest scenario takes about as long as the smallest.
"""

from __future__ import annotations

from pathlib import Path

from simulator.scenario.schema import load_scenario, read_yaml_mapping
from simulator.scenario.system import check_system

HELP = "check a scenario (schema, model, topology, trace shape, placement, memory) without simulating"


def add_arguments(parser) -> None:
    parser.add_argument("scenario", help="scenario YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario value before checking (repeatable)")


def run(args) -> int:
    if _is_sweep(args.scenario):
        return _validate_sweep(args)
    scenario = load_scenario(args.scenario, args.overrides)
    check = check_system(scenario, source=args.scenario)
    peak = max(m.total for m in check.memory) / 1e9
    iterations, layers, tokens, top_k = check.trace_shape
    print(f"{args.scenario}: ok ({check.model.name}, {check.gpus} GPUs, {check.tokens} tokens per "
          f"iteration, {scenario.workload.iterations} iterations, peak memory {peak:.1f} GB per GPU; "
          f"trace {iterations} x {layers} x {tokens} x {top_k} checked, not built)")
    return 0


def _is_sweep(path: str) -> bool:
    """A sweep file names a base scenario (or an inline one) and keys to vary."""
    from simulator.studies.sweep import SWEEP_KEYS

    raw = read_yaml_mapping(Path(path))
    return ("base" in raw or ("scenario" in raw and isinstance(raw["scenario"], dict))) and set(
        raw) <= set(SWEEP_KEYS)


def _validate_sweep(args) -> int:
    """Every variant of a sweep, each through the same checks as one scenario."""
    from simulator.studies.sweep import check_variants, load_sweep

    sweep = load_sweep(args.scenario, args.overrides)
    for line in check_variants(sweep):
        print(line)
    print(f"{args.scenario}: ok ({len(sweep.variants)} variants)")
    return 0

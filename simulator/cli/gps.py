"""`moesim gps SCENARIO.yaml --out DIR`: which prediction strategy and balancer are fastest here."""

from __future__ import annotations

from pathlib import Path

from simulator.cli.outputs import check_replaceable, result_dir
from simulator.cli.progress import add_progress_arguments, progress_from_args
from simulator.errors import ScenarioError
from simulator.studies.gps import (
    ASSUMPTIONS, BALANCERS, REDUNDANT_SLOTS, REPLAN_EVERY, TOKEN_SIZES, candidates, describe,
    expert_regime, explain, iterations_needed, recommend, run_gps, write_csv,
)
from simulator.scenario.schema import load_scenario

HELP = "sweep prediction strategies x balancers for one system and recommend the fastest (MoE-GPS)"
OBJECTIVES = ("time", "tokens")


def add_arguments(parser) -> None:
    parser.add_argument("scenario", help="scenario YAML file (its predictor/balancer are replaced)")
    parser.add_argument("--out", required=True, help="output directory for gps.csv and plots")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario value (repeatable)")
    parser.add_argument("--balancers", default=",".join(BALANCERS),
                        help=f"comma-separated balancers to try (default {','.join(BALANCERS)})")
    parser.add_argument("--sizes", default=",".join(map(str, TOKEN_SIZES)),
                        help="hidden sizes of the token.ffn predictor to sweep")
    parser.add_argument("--history", type=int, default=10,
                        help="trace iterations the predictors fit on before the simulated ones")
    parser.add_argument("--replan-every", default=",".join(map(str, REPLAN_EVERY)),
                        help="comma-separated re-plan intervals in iterations, e.g. 1,10,100 (default "
                             f"{','.join(map(str, REPLAN_EVERY))}); every candidate simulates at "
                             "least two of the longest")
    parser.add_argument("--redundant-slots", default=",".join(_slot_text(v) for v in REDUNDANT_SLOTS),
                        help="comma-separated resident replica slots per GPU per layer; 'none' plans "
                             "each re-placement from scratch (default none,2)")
    parser.add_argument("--objectives", default="time",
                        help="comma-separated balancer objectives to try: time, tokens (default time)")
    parser.add_argument("--assume", default="none",
                        help="none, or moe-gps: MoE-GPS's modelling (free replica copies, token "
                             "objective, a re-plan every batch)")
    parser.add_argument("--arima", action="store_true", help="also try distribution.arima (statsmodels)")
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run the candidates on a Dask cluster (e.g. tcp://host:8786), as sweeps do")
    add_progress_arguments(parser, "no progress")


def _slot_text(value) -> str:
    return "none" if value is None else str(value)


def _slot_list(text: str) -> tuple:
    values = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        if item == "none":
            values.append(None)
            continue
        try:
            number = int(item)
        except ValueError:
            number = -1
        if number < 0:
            raise ScenarioError(f"expected 'none' or integers >= 0, got {text!r}", "--redundant-slots")
        values.append(number)
    if not values:
        raise ScenarioError(f"expected 'none' or integers >= 0, got {text!r}", "--redundant-slots")
    return tuple(values)


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v)
    except ValueError:
        raise ScenarioError(f"expected comma-separated integers, got {text!r}", option) from None
    if not values or min(values) < 1:
        raise ScenarioError(f"expected positive integers, got {text!r}", option)
    return values


def run(args) -> int:
    scenario = load_scenario(args.scenario, args.overrides)
    if args.workers < 1:
        raise ScenarioError(f"must be >= 1, got {args.workers}", "--workers")
    from simulator.planning.placement import BALANCERS as REGISTERED

    chosen_balancers = tuple(b for b in args.balancers.split(",") if b)
    unknown = [b for b in chosen_balancers if b not in REGISTERED]
    if unknown or not chosen_balancers:
        raise ScenarioError(f"unknown balancer(s) {unknown}; known: {REGISTERED.known()}",
                            "--balancers")
    if args.assume not in ASSUMPTIONS:
        raise ScenarioError(f"must be one of {', '.join(ASSUMPTIONS)}, got {args.assume!r}", "--assume")
    objectives = tuple(o for o in args.objectives.split(",") if o)
    if not objectives or any(o not in OBJECTIVES for o in objectives):
        raise ScenarioError(f"expected a comma-separated list of {', '.join(OBJECTIVES)}, got "
                            f"{args.objectives!r}", "--objectives")
    extra = {"history": args.history}
    chosen = candidates(extra, chosen_balancers, _int_list(args.sizes, "--sizes"), args.arima,
                        _int_list(args.replan_every, "--replan-every"),
                        _slot_list(args.redundant_slots), objectives, args.assume)
    _check_first(scenario, args.scenario, chosen)
    client = None
    if args.scheduler:
        from simulator.studies.sweep import connect

        client = connect(args.scheduler)
    check_replaceable(Path(args.out))  # before simulating: a bad --out fails in a second
    progress = progress_from_args(args)
    print(f"{len(chosen)} candidates x {iterations_needed(scenario, chosen)} iterations")
    try:
        rows, timings = run_gps(scenario, args.scenario, chosen, args.workers, progress, client)
    finally:
        if client is not None:
            client.close()
    out = Path(args.out)
    with result_dir(out) as temp:  # gps.csv and its figures replace the old ones together
        from simulator.output.plots import plot_gps_accuracy, plot_gps_breakdown  # matplotlib: only here

        write_csv(temp / "gps.csv", rows)
        plot_gps_accuracy(rows, temp / "gps_accuracy_latency")
        plot_gps_breakdown(rows, temp / "gps_breakdown")
    best, other = recommend(rows)
    pairs, memory_bound = expert_regime(scenario)
    print(f"why: {explain(rows, pairs, memory_bound)}")
    print(f"recommended: {describe(best)}: {best['latency_s'] * 1e3:.3f} ms per iteration "
          f"({best['speedup_vs_none']:.3f}x vs no prediction)")
    if other is not None:
        margin = other["latency_s"] / best["latency_s"] - 1
        print(f"runner-up:   {describe(other)}: {other['latency_s'] * 1e3:.3f} ms "
              f"(recommended is {100 * margin:.1f}% faster)")
    print(f"{len(rows)} simulations in {timings['wall_s']:.1f} s (predictor fitting "
          f"{timings['fit_s']:.1f} s, simulation {timings['simulate_s']:.1f} s, summed over workers); "
          f"results in {out}/gps.csv")
    return 0


def _check_first(scenario, source: str, chosen) -> None:
    """Build (not simulate) the most demanding candidate's system, so bad settings such as redundant
    slots that do not fit in memory fail in seconds, before the sweep runs."""
    from simulator.scenario.system import build_system
    from simulator.studies.gps import Candidate

    slots = [c.redundant_slots for c in chosen if c.redundant_slots is not None]
    probe = next((c for c in chosen if c.strategy == "oracle"), None)
    if probe is None:
        return
    probe = Candidate(probe.strategy, {**probe.predictor, "replan_every": 1}, probe.balancer,
                      redundant_slots=max(slots) if slots else None, objective=probe.objective,
                      assume=probe.assume)
    variant = scenario.model_copy(update={
        "predictor": scenario.predictor.model_validate(probe.predictor),
        "balancer": scenario.balancer.model_validate(probe.balancer_section()),
        "workload": scenario.workload.model_copy(update={"iterations": 1}),
    })
    build_system(variant, source)

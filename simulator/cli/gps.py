"""`moesim gps SCENARIO.yaml --out DIR`: which prediction strategy and balancer are fastest here."""

from __future__ import annotations

from pathlib import Path

from simulator.errors import ScenarioError
from simulator.studies.gps import BALANCERS, TOKEN_SIZES, candidates, describe, recommend, run_gps, write_csv
from simulator.scenario.schema import load_scenario

HELP = "sweep prediction strategies x balancers for one system and recommend the fastest (MoE-GPS)"


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
    parser.add_argument("--replan-every", type=int, default=1,
                        help="iterations between re-placements for Distribution-Only predictors")
    parser.add_argument("--arima", action="store_true", help="also try distribution.arima (statsmodels)")
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


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
    extra = {"history": args.history, "replan_every": args.replan_every}
    chosen = candidates(extra, chosen_balancers, _int_list(args.sizes, "--sizes"), args.arima)
    progress = None
    if not args.quiet:
        from tqdm import tqdm as progress
    rows, timings = run_gps(scenario, args.scenario, chosen, args.workers, progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "gps.csv", rows)
    from simulator.output.plots import plot_gps_accuracy, plot_gps_breakdown  # matplotlib: only here

    plot_gps_accuracy(rows, out / "gps_accuracy_latency")
    plot_gps_breakdown(rows, out / "gps_breakdown")
    best, other = recommend(rows)
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

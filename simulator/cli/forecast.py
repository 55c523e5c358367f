"""`moesim forecast TRACE.npz --horizon N --out DIR`: expert load over training steps.

Reads a training-load trace (`workloads.moe_lm`, see docs/training-load.md), finds where
the load goes from transient to stable, forecasts every expert's share over the next
`--horizon` steps from origins in the stable state with each method, and writes
DIR/forecast.csv, DIR/summary.json and two PNG figures.
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from predictors.training_load import (
    METHODS,
    MIN_SHARE,
    RANGE_THRESHOLD,
    SMOOTH,
    STATE_WINDOW,
    VARIANCE_THRESHOLD,
    detect_states,
    forecast_errors,
    forecast_origins,
    summarise,
)
from simulator.cli.outputs import check_replaceable, result_dir
from simulator.errors import ScenarioError
from workloads.moe_lm import TrainingLoadTrace

HELP = ("Find the transient -> stable boundary of a training-load trace and forecast each "
        "expert's load share over the next N steps (sliding window, ARIMA, LSTM).")

CSV_COLUMNS = ("method", "horizon", "origin", "layer", "expert", "predicted", "true", "error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", metavar="TRACE.npz",
                        help="training-load trace (python -m workloads.moe_lm)")
    parser.add_argument("--horizon", type=int, action="append",
                        help="steps to forecast; repeat for several (default 1000 and 2000)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated subset of {','.join(METHODS)} (default all)")
    parser.add_argument("--window", type=int, default=200,
                        help="steps averaged by the sliding-window forecaster, and stable steps "
                             "of history an origin needs (default 200)")
    parser.add_argument("--origins", type=int, default=5,
                        help="forecast origins spread over the stable state (default 5)")
    parser.add_argument("--arima-window", type=int, default=500,
                        help="steps ARIMA is fitted on (default 500)")
    parser.add_argument("--lstm-epochs", type=int, default=20, help="LSTM epochs (default 20)")
    parser.add_argument("--lstm-hidden", type=int, default=16, help="LSTM width (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="LSTM seed (default 0)")
    parser.add_argument("--smooth", type=int, default=SMOOTH,
                        help=f"steps averaged before the state detection, 1 = raw shares "
                             f"(default {SMOOTH})")
    parser.add_argument("--state-window", type=int, default=STATE_WINDOW,
                        help=f"window of the state detection (default {STATE_WINDOW})")
    parser.add_argument("--variance-threshold", type=float, default=VARIANCE_THRESHOLD,
                        help=f"stable: windowed variance <= this (default {VARIANCE_THRESHOLD:g})")
    parser.add_argument("--range-threshold", type=float, default=RANGE_THRESHOLD,
                        help=f"stable: windowed max - min <= this (default {RANGE_THRESHOLD:g})")
    parser.add_argument("--min-share", type=float, default=MIN_SHARE,
                        help=f"floor of the error's denominator (default {MIN_SHARE:g})")


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise ScenarioError(f"must be a comma-separated subset of {','.join(METHODS)}; got "
                            f"{text!r}", "--methods")
    methods = tuple(dict.fromkeys(methods))
    _check_backends(methods)
    return methods


# optional libraries some methods need, looked up without importing them (torch takes seconds)
BACKENDS = {"lstm": ("torch", "lstm"), "arima": ("statsmodels", "forecast")}


def _check_backends(methods: tuple[str, ...]) -> None:
    """Fail in a millisecond, naming the option the user can change, when a method's library is
    missing (instead of after the other methods ran, naming a predictor the user never set)."""
    import importlib.util

    for method in methods:
        module, extra = BACKENDS.get(method, (None, None))
        if module is not None and importlib.util.find_spec(module) is None:
            others = ",".join(m for m in methods if m not in BACKENDS or
                              importlib.util.find_spec(BACKENDS[m][0]) is not None) or "window"
            raise ScenarioError(f"{method} needs {module} (pip install -e \".[{extra}]\"); without "
                                f"it use --methods {others}", "--methods")


def _positive(value: int, name: str) -> int:
    if value < 1:
        raise ScenarioError(f"must be >= 1, got {value}", name)
    return value


def run(args: argparse.Namespace) -> int:
    methods = _methods(args.methods)
    horizons = sorted(set(args.horizon or [1000, 2000]))
    for horizon in horizons:
        _positive(horizon, "--horizon")
    for name in ("window", "origins", "arima_window", "lstm_epochs", "lstm_hidden", "smooth"):
        _positive(getattr(args, name), f"--{name.replace('_', '-')}")
    if not args.min_share > 0:
        raise ScenarioError(f"must be > 0, got {args.min_share}", "--min-share")
    check_replaceable(Path(args.out))  # before the forecasts: a bad --out fails in a second
    trace = TrainingLoadTrace.load(args.trace, field=None)
    if args.smooth + args.state_window > trace.steps + 1:
        raise ScenarioError(f"--smooth + --state-window must be <= the trace's {trace.steps} "
                            f"steps + 1, got {args.smooth} + {args.state_window}", "--state-window")
    states = detect_states(trace.shares, args.state_window, args.variance_threshold,
                           args.range_threshold, args.smooth)
    if states.boundary is None:
        never = [int(layer) for layer in np.flatnonzero(states.boundary_per_layer >= trace.steps)]
        raise ScenarioError(
            f"layer(s) {never} never become stable under variance <= {args.variance_threshold:g} "
            f"and range <= {args.range_threshold:g} over {args.state_window} steps; raise the "
            "thresholds or record more steps", "--variance-threshold")
    origins = forecast_origins(trace.steps, states.boundary, horizons, args.window, args.origins)
    lstm = {"epochs": args.lstm_epochs, "hidden": args.lstm_hidden, "seed": args.seed}
    rows = forecast_errors(trace.shares, horizons, origins, methods, args.min_share, args.window,
                           args.arima_window, lstm)
    summary = summarise(rows)

    out = Path(args.out)
    with result_dir(out) as temp:  # forecast.csv, summary.json, figures: replaced together
        figures = [out / p.name for p in _write(args, trace, states, rows, origins, horizons,
                                                 methods, summary, temp)]

    meta = trace.meta
    print(f"{args.trace}: {trace.steps} steps x {trace.layers} MoE layers x {trace.experts} "
          f"experts (top-{meta.get('model', {}).get('top_k', '?')}, aux loss "
          f"{meta.get('aux_loss', '?')})")
    print(f"stable from step {states.boundary} (per layer: "
          f"{', '.join(str(b) for b in states.boundary_per_layer)}); {states.smooth}-step "
          f"average, window {states.window}, variance <= {states.variance_threshold:g}, range <= "
          f"{states.range_threshold:g}")
    print(f"mean error |predicted - true| / true of the mean share over the horizon, "
          f"{len(origins)} origins ({', '.join(str(o) for o in origins)}) x {trace.layers} layers "
          f"x {trace.experts} experts:")
    print(f"{'method':8s} " + " ".join(f"{'H=' + str(h):>8s}" for h in horizons))
    for method in methods:
        print(f"{method:8s} " + " ".join(f"{summary[(method, h)]:8.4f}" for h in horizons))
    print(f"wrote {out / 'forecast.csv'}, {out / 'summary.json'}, "
          + ", ".join(str(p) for p in figures))
    return 0


def _write(args, trace, states, rows, origins, horizons, methods, summary,
           out: Path) -> list[Path]:
    """forecast.csv, summary.json and the figures, into `out` (a temporary directory)."""
    with open(out / "forecast.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            record = asdict(row)
            writer.writerow([f"{record[c]:.9g}" if isinstance(record[c], float) else record[c]
                             for c in CSV_COLUMNS])
    (out / "summary.json").write_text(json.dumps({
        "trace": str(args.trace), "meta": {k: v for k, v in trace.meta.items() if k != "path"},
        "steps": trace.steps, "layers": trace.layers, "experts": trace.experts,
        "state": {"window": states.window, "smooth": states.smooth,
                  "variance_threshold": states.variance_threshold,
                  "range_threshold": states.range_threshold, "boundary": states.boundary,
                  "boundary_per_layer": states.boundary_per_layer.tolist()},
        "origins": origins.tolist(), "horizons": horizons, "methods": list(methods),
        "window": args.window, "min_share": args.min_share,
        "error": [{"method": m, "horizon": h, "error": summary[(m, h)]}
                  for m in methods for h in horizons],
    }, indent=2) + "\n")
    return _plot(trace, states, rows, origins, horizons, methods, out)


def _plot(trace, states, rows, origins, horizons, methods, out: Path) -> list[Path]:
    """load_shares.png: shares per expert over steps, boundary marked; forecast_vs_truth.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, steps = trace.layers, trace.steps
    smooth = min(states.smooth, steps)  # the level the state detection looked at
    kernel = np.ones(smooth) / smooth
    x = np.arange(steps - smooth + 1) + (smooth - 1) / 2
    fig, axes = plt.subplots(layers, 1, figsize=(8, 1.9 * layers + 0.6), sharex=True,
                             squeeze=False)
    for layer, ax in enumerate(axes[:, 0]):
        for expert in range(trace.experts):
            series = np.convolve(trace.shares[:, layer, expert], kernel, mode="valid")
            ax.plot(x, series, lw=0.8, label=f"expert {expert}")
        ax.axvline(states.boundary_per_layer[layer], color="k", ls="--", lw=1)
        ax.axvspan(0, states.boundary_per_layer[layer], color="0.9", zorder=0)
        ax.set_ylabel(f"layer {layer}\nshare")
    axes[0, 0].set_title(f"expert load shares ({smooth}-step moving average); shaded: transient")
    axes[-1, 0].set_xlabel("training step")
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    paths = [out / "load_shares.png"]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    plt.close(fig)

    values = [v for r in rows for v in (r.true, r.predicted)]
    pad = 0.05 * (max(values) - min(values) or 1.0)
    low, high = max(0.0, min(values) - pad), max(values) + pad
    fig, axes = plt.subplots(1, len(horizons), figsize=(4.4 * len(horizons), 4.2), squeeze=False)
    for ax, horizon in zip(axes[0], horizons):
        for method in methods:
            chosen = [r for r in rows if r.method == method and r.horizon == horizon]
            ax.scatter([r.true for r in chosen], [r.predicted for r in chosen], s=10, alpha=0.6,
                       label=method)
        ax.plot([low, high], [low, high], color="k", lw=0.8)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        ax.set_xlabel(f"true mean share over the next {horizon} steps")
        ax.set_ylabel("forecast mean share")
        ax.set_title(f"H = {horizon}: every expert, layer and origin ({len(origins)})", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "forecast_vs_truth.png")
    fig.savefig(paths[1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths

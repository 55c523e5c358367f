"""Figures made from result records (never from engine state), with matplotlib's Agg backend.

`moesim gps` draws its sweep figures here; `moesim plot` and `moesim compare` draw a result
directory's figures from the files alone (docs/outputs.md shows each figure and how to read it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

PHASE_COLORS = {
    "attention": "#4e79a7", "predictor": "#b07aa1", "gate": "#9c755f", "dispatch": "#f28e2b",
    "expert": "#59a14f", "combine": "#e15759", "collective": "#76b7b2", "replication": "#edc948",
    "optimizer": "#ff9da7",
}
OTHER_COLOR = "#bab0ac"  # a phase this module does not know yet


def _phase_order(present) -> list[str]:
    """Phases in `present`, known ones in PHASE_COLORS order, then any others by name."""
    present = set(present)
    return [p for p in PHASE_COLORS if p in present] + sorted(present - set(PHASE_COLORS))


def _color(phase: str) -> str:
    return PHASE_COLORS.get(phase, OTHER_COLOR)


FORMATS = ("png", "svg")


def _save(fig, path: Path | None, formats: tuple[str, ...] = FORMATS):
    """The figure in each of `formats` (PNG and SVG by default) side by side; returns the paths.
    With `path` None the figure itself is returned, open (the Python API's ``result.plot``)."""
    if path is None:
        return fig
    written = []
    for suffix in formats:
        target = Path(path).with_suffix(f".{suffix}")
        fig.savefig(target, dpi=130, bbox_inches="tight")
        written.append(target)
    plt.close(fig)
    return written


def plot_gps_accuracy(rows: list[dict[str, Any]], path: Path) -> list[Path]:
    """The accuracy-overhead-latency curve: latency vs Token-to-Expert accuracy, one line per
    balancer setting (balancer, re-plan interval, redundant slots) through the token predictors,
    points joined in accuracy order and labelled with their overhead (µs per iteration), with no
    prediction and the best Distribution-Only strategy as reference lines."""
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    none = next(r for r in rows if r["strategy"] == "none")
    ax.axhline(none["latency_s"] * 1e3, color="gray", ls="--", label="no prediction")
    distribution = [r for r in rows if r["strategy"] == "distribution"]
    if distribution:
        best = min(distribution, key=lambda r: r["latency_s"])
        ax.axhline(best["latency_s"] * 1e3, color="#4e79a7", ls=":",
                   label=f"best distribution ({best['predictor']}, {best['balancer']})")
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r["strategy"] == "token" and r["accuracy"] != "":
            key = (r["balancer"], r.get("replan_every", ""), r.get("redundant_slots", ""))
            groups.setdefault(key, []).append(r)
    for (balancer, window, slots), members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        members.sort(key=lambda r: (r["accuracy"], r["predictor_overhead_s"]))
        xs = [r["accuracy"] for r in members]
        ys = [r["latency_s"] * 1e3 for r in members]
        label = balancer + (f", every {window}" if window != "" else "") + (
            f", {slots} slots" if slots != "" else "")
        ax.plot(xs, ys, marker="o", label=label)
        for r, x, y in zip(members, xs, ys):
            name = str(r["predictor_size"]) if r["predictor_size"] != "" else r["predictor"].split(".")[-1]
            ax.annotate(f"{name} ({r['predictor_overhead_s'] * 1e6:.0f} µs)", (x, y),
                        textcoords="offset points", xytext=(3, 4), fontsize=6)
    ax.set_xlabel("Token-to-Expert top-k accuracy (held-out iterations)")
    ax.set_ylabel("iteration latency (ms)")
    ax.set_title("Accuracy, overhead and latency (labels: predictor, overhead per iteration)")
    ax.legend(fontsize=6)
    return _save(fig, path)


def plot_breakdown_bars(labels: list[str], breakdowns: list[dict[str, float]], path: Path,
                        title: str, latencies_s: list[float] | None = None,
                        formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Stacked bars of the per-phase time (ms per iteration), one bar per label.

    `latencies_s` (optional) marks each bar's mean iteration latency: phases overlap, so a stack
    can be taller than the latency it explains.
    """
    fig, ax = plt.subplots(figsize=(max(6.4, 0.55 * len(labels) + 2), 4.4))
    bottoms = [0.0] * len(labels)
    for phase in _phase_order(p for b in breakdowns for p in b):
        values = [b.get(phase, 0.0) * 1e3 for b in breakdowns]
        if any(values):
            ax.bar(range(len(labels)), values, bottom=bottoms, color=_color(phase), label=phase)
            bottoms = [b + v for b, v in zip(bottoms, values)]
    if latencies_s is not None:
        x = np.arange(len(labels))
        ax.hlines([v * 1e3 for v in latencies_s], x - 0.45, x + 0.45, color="black", lw=2, zorder=3,
                  label="mean iteration latency")
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("ms per iteration (phase active on any GPU)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path, formats)


def plot_gps_breakdown(rows: list[dict[str, Any]], path: Path) -> list[Path]:
    """Breakdown of the best configuration of each predictor (over balancers and sizes)."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row["predictor"]
        if key not in best or row["latency_s"] < best[key]["latency_s"]:
            best[key] = row
    chosen = sorted(best.values(), key=lambda r: r["latency_s"])
    labels = [f"{r['predictor']}{'/' + str(r['predictor_size']) if r['predictor_size'] != '' else ''}"
              f"\n{r['balancer']}" for r in chosen]
    breakdowns = [{"predictor": r["predictor_overhead_s"], "expert": r["expert_s"],
                   "dispatch": r["dispatch_s"], "combine": r["combine_s"],
                   "replication": r["replication_s"]} for r in chosen]
    return plot_breakdown_bars(labels, breakdowns, path, "Best configuration per predictor")


# ------------------------------------------------------------------ figures of one result directory
# Inputs are what `moesim plot` reads back: summary.json (dict), iterations.csv (rows of strings)
# and timeline.json (`simulator.output.timeline.Timeline`).

GANTT_GPU_ROWS = 16  # above this many GPUs the Gantt shows stream occupancy instead of GPU rows


def _time_unit(span_s: float) -> tuple[float, str]:
    """Scale and label so an axis of `span_s` seconds reads in whole-ish numbers."""
    return (1e6, "µs") if span_s < 2e-3 else (1e3, "ms")


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9,
            color="gray", wrap=True)


def _iteration_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r.get("layer") == "all"]


def plot_phase_breakdown(summary: dict[str, Any], rows: list[dict[str, str]], path: Path,
                         formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Per phase, the mean ms per iteration it was active on any GPU (whiskers: min-max over
    iterations), beside the iteration latency (whiskers: p50-p99)."""
    per_iteration = _iteration_rows(rows)
    phases = [p for p in _phase_order(summary["breakdown_s"]) if summary["breakdown_s"][p] > 0]
    means = [summary["breakdown_s"][p] * 1e3 for p in phases]
    lows, highs = [], []
    for phase, mean in zip(phases, means):
        values = [float(r[f"{phase}_s"]) * 1e3 for r in per_iteration if r.get(f"{phase}_s", "")]
        lows.append(mean - min(values, default=mean))
        highs.append(max(values, default=mean) - mean)
    latency = summary["latency_s"]
    fig, ax = plt.subplots(figsize=(max(5.5, 0.8 * len(phases) + 2.5), 4.2))
    x = np.arange(len(phases))
    ax.bar(x, means, color=[_color(p) for p in phases], yerr=[lows, highs], capsize=3,
           error_kw={"elinewidth": 0.8})
    mean_ms = latency["mean"] * 1e3
    ax.bar([len(phases)], [mean_ms], color="#333333",
           yerr=[[max(mean_ms - latency["p50"] * 1e3, 0)], [max(latency["p99"] * 1e3 - mean_ms, 0)]],
           capsize=3, error_kw={"elinewidth": 0.8})
    for xi, value in zip(list(x) + [len(phases)], means + [mean_ms]):
        ax.annotate(f"{value:.3g}", (xi, value), textcoords="offset points", xytext=(0, 3),
                    ha="center", fontsize=7)
    ax.set_xticks(list(x) + [len(phases)], phases + ["iteration\nlatency"], fontsize=8)
    ax.set_ylabel("ms per iteration")
    scenario = summary.get("scenario", {})
    ax.set_title(f"{scenario.get('name', '')}: time per phase ({summary.get('gpus', '?')} GPUs, "
                 f"{summary.get('iterations', '?')} iterations)", fontsize=9)
    overlap_ms = summary.get("overlap_s", sum(summary["breakdown_s"].values()) - latency["mean"]) * 1e3
    overlap = (f"phases overlap {overlap_ms:.3g} ms per iteration" if abs(overlap_ms) > 1e-6 * mean_ms
               else "phases do not overlap: they sum to the latency")
    ax.set_ylim(0, max(means + [mean_ms, latency["p99"] * 1e3]) * 1.3)
    ax.text(0.01, 0.98, f"{overlap}\nphase bars: mean, min-max over iterations\n"
            "latency bar: mean, p50-p99", ha="left", va="top", transform=ax.transAxes, fontsize=7,
            color="#555555")
    return _save(fig, path, formats)


def plot_expert_load(timeline, summary: dict[str, Any], path: Path,
                     formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Per GPU: token-expert pairs per iteration before (static round-robin) and after balancing,
    from the timeline's ``expert load`` counters; and expert-phase compute time per iteration,
    from the GPU slices (what the load costs, replicas' weight reads included)."""
    iterations = max(int(summary.get("iterations", 1)), 1)
    gpus = timeline.gpus
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(min(max(6.4, 0.2 * gpus + 2), 12), 6.2),
                                      sharex=True)
    x = np.arange(gpus)
    if timeline.expert_load:
        before = np.array([timeline.expert_load[r][1].sum() if r in timeline.expert_load else 0.0
                           for r in range(gpus)]) / iterations
        after = np.array([timeline.expert_load[r][2].sum() if r in timeline.expert_load else 0.0
                          for r in range(gpus)]) / iterations
        width = 0.4
        skew = summary.get("skewness", {})
        top.bar(x - width / 2, before, width, color="#bab0ac",
                label=f"before: static round-robin (skewness {skew.get('before', float('nan')):.2f})")
        top.bar(x + width / 2, after, width, color=PHASE_COLORS["expert"],
                label=f"after: {summary.get('scenario', {}).get('balancer', {}).get('kind', 'simulated')}"
                      f" placement (skewness {skew.get('after', float('nan')):.2f})")
        top.axhline(after.mean(), color="black", lw=0.8, ls="--", label="mean")
        top.set_ylabel("token-expert pairs\nper iteration")
        top.set_ylim(0, max(before.max(), after.max(), 1e-9) * 1.5)
        top.legend(fontsize=7, loc="upper left", ncol=2 if gpus > 8 else 1)
    else:
        _note(top, "no expert-load counters in timeline.json (written by an older moesim)")
    compute = (timeline.slices["stream"] == "compute") & (timeline.slices["phase"] == "expert")
    busy = np.bincount(timeline.slices["gpu"][compute].astype(np.int64),
                       weights=(timeline.slices["end_s"] - timeline.slices["start_s"])[compute],
                       minlength=gpus)[:gpus] / iterations
    bottom.bar(x, busy * 1e3, color=PHASE_COLORS["expert"])
    bottom.axhline(busy.mean() * 1e3, color="black", lw=0.8, ls="--")
    bottom.set_ylabel("expert compute\nms per iteration")
    bottom.set_xlabel("GPU")
    step = max(1, gpus // 32)
    bottom.set_xticks(x[::step], [str(r) for r in x[::step]], fontsize=7)
    top.set_title("Expert load per GPU (skewness = max / mean, averaged over layers)", fontsize=9)
    return _save(fig, path, formats)


def _bin_average(times: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Exact mean of a step function (values[k] from times[k] on) over each bin of `edges`."""
    integral = np.concatenate(([0.0], np.cumsum(values[:-1] * np.diff(times))))

    def at(x):
        k = np.clip(np.searchsorted(times, x, side="right") - 1, 0, len(times) - 1)
        inside = x >= times[0]
        return np.where(inside, integral[k] + values[k] * (x - times[k]), 0.0)

    cumulative = at(edges)
    return np.diff(cumulative) / np.diff(edges)


def _bin_peak(times: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Highest value of a step function within each bin of `edges`."""
    first = np.clip(np.searchsorted(times, edges[:-1], side="right") - 1, 0, len(times) - 1)
    last = np.clip(np.searchsorted(times, edges[1:], side="left") - 1, first, len(times) - 1)
    bounds = np.ravel(np.column_stack((first, last + 1)))
    padded = np.append(values, -np.inf)
    return np.maximum.reduceat(padded, bounds)[::2]


def plot_link_utilization(timeline, path: Path, formats: tuple[str, ...] = FORMATS,
                          bins: int = 400, iterations: tuple[int | None, int | None] = (None, None)
                          ) -> list[Path]:
    """Per link kind, utilisation over the chosen iterations (default the whole run): bytes
    carried / capacity of all links of that kind, exact mean and peak over `bins` equal time
    bins, and each iteration's mean."""
    kinds = list(timeline.links)
    fig, axes = plt.subplots(max(len(kinds), 1), 1, figsize=(9, 1.9 * max(len(kinds), 1) + 0.8),
                             sharex=True, squeeze=False)
    if not kinds:
        _note(axes[0, 0], "no link counters in timeline.json (no flows, or an older moesim)")
        return _save(fig, path, formats)
    window = timeline.iterations[_in_range(np.arange(len(timeline.iterations)), iterations)]
    if len(window):
        start_s, end_s = float(window[0, 0]), float(window[-1, 1])
    else:  # no run track (older timeline): the whole span of the counters
        start_s, end_s = 0.0, max(float(t[-1]) for t, _ in timeline.links.values())
    scale, unit = _time_unit(end_s - start_s)
    edges = (np.linspace(start_s, end_s, bins + 1) if end_s > start_s
             else np.array([start_s, start_s + 1e-9]))
    links = timeline.other.get("links", {})
    for ax, kind in zip(axes[:, 0], kinds):
        times, values = timeline.links[kind]
        average = _bin_average(times, values, edges)
        peak = _bin_peak(times, values, edges)
        ax.stairs(peak, edges * scale, color="#a0cbe8", lw=0.6, baseline=None,
                  label=f"peak per bin of {(edges[1] - edges[0]) * scale:.3g} {unit}")
        ax.stairs(average, edges * scale, color="#4e79a7", lw=0.8, fill=True, alpha=0.8,
                  label="mean per bin")
        for k, (start, stop) in enumerate(window):
            mean = _bin_average(times, values, np.array([start, stop]))[0] if stop > start else 0.0
            ax.hlines(mean, start * scale, stop * scale, color="#e15759", lw=1.5,
                      label="iteration mean" if k == 0 else None)
        ax.axhline(1.0, color="gray", lw=0.6, ls=":")
        info = links.get(kind, {})
        suffix = (f" ({info['count']} directed links, {info['capacity_Bps'] / 1e9:.0f} GB/s in all)"
                  if info else "")
        ax.set_title(f"{kind}{suffix}", fontsize=8, loc="left")
        ax.set_ylabel("utilisation")
        ax.set_ylim(0, max(1.05, float(peak.max()) * 1.05 if peak.size else 1.05))
        ax.legend(fontsize=6, loc="upper right")
    axes[-1, 0].set_xlabel(f"simulated time ({unit})")
    fig.suptitle("Link utilisation over time (flows at uniform rate between first and last byte)",
                 fontsize=9)
    return _save(fig, path, formats)


def plot_skewness(rows: list[dict[str, str]], path: Path,
                  formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Per MoE layer: expert skewness of the trace and GPU skewness before/after balancing (mean
    over iterations, band: min-max)."""
    layer_rows = [r for r in rows if str(r.get("layer", "")).isdigit() and r.get("skewness_after", "") != ""]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    if not layer_rows:
        _note(ax, "no MoE layers in iterations.csv")
        return _save(fig, path, formats)
    layers = sorted({int(r["layer"]) for r in layer_rows})
    series = {"skewness_expert": ("experts (trace)", "#9c755f", "-"),
              "skewness_after": ("GPUs, simulated placement", PHASE_COLORS["expert"], "-"),
              "skewness_before": ("GPUs, static round-robin", "#555555", "--")}
    for column, (label, color, style) in series.items():
        if column not in layer_rows[0]:
            continue
        values = [[float(r[column]) for r in layer_rows if int(r["layer"]) == layer] for layer in layers]
        mean = np.array([np.mean(v) for v in values])
        ax.plot(layers, mean, marker="o" if style == "-" else None, ms=3, color=color, ls=style,
                label=label)
        ax.fill_between(layers, [min(v) for v in values], [max(v) for v in values], color=color,
                        alpha=0.2, lw=0)
    ax.axhline(1.0, color="gray", lw=0.6, ls=":")
    ax.set_xlabel("layer")
    ax.set_ylabel("max load / mean load")
    ax.set_title("Skewness per layer (line: mean over iterations, band: min-max)", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path, formats)


def _in_range(values: np.ndarray, bounds: tuple[int | None, int | None]) -> np.ndarray:
    low, high = bounds
    keep = np.ones(len(values), dtype=bool)
    if low is not None:
        keep &= values >= low
    if high is not None:
        keep &= values < high
    return keep


def gantt_selection(timeline, iterations: tuple[int | None, int | None],
                    layers: tuple[int | None, int | None]) -> np.ndarray:
    """Mask of the GPU slices in the chosen half-open iteration and layer ranges."""
    s = timeline.slices
    return _in_range(s["iteration"], iterations) & _in_range(s["layer"], layers)


def plot_gantt(timeline, path: Path, iterations: tuple[int | None, int | None] = (0, 1),
               layers: tuple[int | None, int | None] = (None, None),
               formats: tuple[str, ...] = FORMATS, max_gpu_rows: int = GANTT_GPU_ROWS) -> list[Path]:
    """Gantt chart of the chosen iterations and layers, coloured by phase.

    Up to `max_gpu_rows` GPUs: one row per GPU stream (compute, comm, and copy when copies
    happen; concurrent copies drawn translucent on one row). Above: one panel per stream with the
    number of GPUs busy in each phase over time (stacked), which stays readable at 64+ GPUs and
    shows stragglers as a thin tail.
    """
    chosen = gantt_selection(timeline, iterations, layers)
    if not chosen.any():
        raise ValueError("no timeline slices in the chosen iterations and layers")
    s = {k: v[chosen] for k, v in timeline.slices.items()}
    t0, t1 = float(s["start_s"].min()), float(s["end_s"].max())
    scale, unit = _time_unit(t1 - t0)
    streams = [st for st in ("compute", "comm", "copy") if (s["stream"] == st).any()]
    phases = _phase_order(s["phase"])
    if timeline.gpus <= max_gpu_rows:
        fig, ax = _gantt_rows(s, timeline.gpus, streams, phases, scale)
        axes = [ax]
    else:
        fig, axes = _gantt_occupancy(s, timeline.gpus, streams, phases, scale)
    _layer_marks(axes, timeline, iterations, layers, t0, t1, scale)
    axes[-1].set_xlabel(f"simulated time ({unit})")
    axes[-1].set_xlim(t0 * scale, t1 * scale)
    handles = [matplotlib.patches.Patch(color=_color(p), label=p) for p in phases]
    axes[0].legend(handles=handles, fontsize=7, ncol=len(handles), loc="lower left",
                   bbox_to_anchor=(0, 1.06), frameon=False)
    return _save(fig, path, formats)


def _gantt_rows(s: dict[str, np.ndarray], gpus: int, streams: list[str], phases: list[str],
                scale: float):
    rows = [(g, st) for g in range(gpus) for st in streams]
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.24 * len(rows)))
    row_of = {row: k for k, row in enumerate(rows)}
    position = np.array([row_of[(int(g), st)] for g, st in zip(s["gpu"], s["stream"])])
    for phase in phases:
        for stream in streams:
            pick = (s["phase"] == phase) & (s["stream"] == stream)
            if not pick.any():
                continue
            starts, widths = s["start_s"][pick] * scale, (s["end_s"] - s["start_s"])[pick] * scale
            for row in np.unique(position[pick]):
                here = position[pick] == row
                ax.broken_barh(list(zip(starts[here], widths[here])), (row - 0.4, 0.8),
                               facecolors=_color(phase), alpha=0.6 if stream == "copy" else 1.0,
                               edgecolor="white", linewidth=0.3)
    ax.set_yticks(range(len(rows)), [f"gpu{g} {st}" for g, st in rows], fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    for g in range(1, gpus):
        ax.axhline(g * len(streams) - 0.5, color="#cccccc", lw=0.5)
    return fig, ax


def _gantt_occupancy(s: dict[str, np.ndarray], gpus: int, streams: list[str], phases: list[str],
                     scale: float):
    fig, axes = plt.subplots(len(streams), 1, figsize=(11, 1.0 + 1.8 * len(streams)), sharex=True,
                             squeeze=False)
    axes = list(axes[:, 0])
    for ax, stream in zip(axes, streams):
        on = s["stream"] == stream
        grid = np.unique(np.concatenate((s["start_s"][on], s["end_s"][on])))
        lower = np.zeros(len(grid))
        for phase in phases:
            pick = on & (s["phase"] == phase)
            if not pick.any():
                continue
            busy = (np.searchsorted(np.sort(s["start_s"][pick]), grid, side="right")
                    - np.searchsorted(np.sort(s["end_s"][pick]), grid, side="right"))
            ax.fill_between(grid * scale, lower, lower + busy, step="post", color=_color(phase),
                            lw=0)
            lower = lower + busy
        ax.set_ylabel(f"{stream}\n{'copies in flight' if stream == 'copy' else 'GPUs busy'}",
                      fontsize=8)
        ax.set_ylim(0, max(gpus if stream != "copy" else 1, float(lower.max())) * 1.05)
    axes[0].set_title(f"{gpus} GPUs: GPUs busy per phase (stacked); one row per GPU above "
                      f"{GANTT_GPU_ROWS} GPUs would be unreadable", fontsize=8, loc="right")
    return fig, axes


def _layer_marks(axes, timeline, iterations, layers, t0: float, t1: float, scale: float) -> None:
    """Faint vertical lines and labels at the layer starts inside the window (run track)."""
    bounds = timeline.layers.get("bounds")
    if bounds is None or not len(bounds):
        return
    pick = (_in_range(timeline.layers["iteration"], iterations)
            & _in_range(timeline.layers["layer"], layers))
    starts = bounds[pick, 0]
    labels = [f"i{i} {str(name).replace('layer ', 'L')}" for i, name in
              zip(timeline.layers["iteration"][pick], timeline.layers["name"][pick])]
    inside = (starts >= t0) & (starts <= t1)
    for ax in axes:
        for x in starts[inside]:
            ax.axvline(x * scale, color="#999999", lw=0.5, ls=":", zorder=0)
    step = max(1, int(np.ceil(inside.sum() / 16)))  # at most ~16 labels across the axis
    for x, label in list(zip(starts[inside], np.array(labels, dtype=object)[inside]))[::step]:
        axes[0].annotate(label, (x * scale, 1.0), xycoords=("data", "axes fraction"),
                         xytext=(2, 1), textcoords="offset points", fontsize=6, color="#666666")

"""Figures made from result records (never from engine state), with matplotlib's Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PHASE_COLORS = {
    "attention": "#4e79a7", "predictor": "#b07aa1", "gate": "#9c755f", "dispatch": "#f28e2b",
    "expert": "#59a14f", "combine": "#e15759", "collective": "#76b7b2", "replication": "#edc948",
}


def _save(fig, path: Path) -> list[Path]:
    """PNG and SVG side by side; returns both paths."""
    written = []
    for suffix in (".png", ".svg"):
        target = path.with_suffix(suffix)
        fig.savefig(target, dpi=130, bbox_inches="tight")
        written.append(target)
    plt.close(fig)
    return written


def plot_gps_accuracy(rows: list[dict[str, Any]], path: Path) -> list[Path]:
    """Latency vs Token-to-Expert accuracy, one line per balancer over predictor sizes (U-shape),
    with no prediction and the best Distribution-Only strategy as reference lines."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    none = next(r for r in rows if r["strategy"] == "none")
    ax.axhline(none["latency_s"] * 1e3, color="gray", ls="--", label="no prediction")
    distribution = [r for r in rows if r["strategy"] == "distribution"]
    if distribution:
        best = min(distribution, key=lambda r: r["latency_s"])
        ax.axhline(best["latency_s"] * 1e3, color="#4e79a7", ls=":",
                   label=f"best distribution ({best['predictor']}, {best['balancer']})")
    for balancer in sorted({r["balancer"] for r in rows if r["strategy"] == "token"}):
        sized = sorted((r for r in rows if r["strategy"] == "token" and r["balancer"] == balancer
                        and r["predictor_size"] != ""), key=lambda r: r["predictor_size"])
        if not sized:
            continue
        xs = [r["accuracy"] for r in sized]
        ys = [r["latency_s"] * 1e3 for r in sized]
        ax.plot(xs, ys, marker="o", label=f"token.ffn + {balancer}")
        for r, x, y in zip(sized, xs, ys):
            ax.annotate(str(r["predictor_size"]), (x, y), textcoords="offset points", xytext=(3, 4),
                        fontsize=7)
    ax.set_xlabel("Token-to-Expert top-k accuracy (held-out iterations)")
    ax.set_ylabel("iteration latency (ms)")
    ax.set_title("Latency vs predictor accuracy (labels: predictor hidden size)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_breakdown_bars(labels: list[str], breakdowns: list[dict[str, float]], path: Path,
                        title: str) -> list[Path]:
    """Stacked bars of the per-phase time (ms per iteration), one bar per label."""
    fig, ax = plt.subplots(figsize=(max(6.4, 0.55 * len(labels) + 2), 4.4))
    bottoms = [0.0] * len(labels)
    for phase, color in PHASE_COLORS.items():
        values = [b.get(phase, 0.0) * 1e3 for b in breakdowns]
        if any(values):
            ax.bar(range(len(labels)), values, bottom=bottoms, color=color, label=phase)
            bottoms = [b + v for b, v in zip(bottoms, values)]
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("ms per iteration (phase active on any GPU)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


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

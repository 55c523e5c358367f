"""Results from records: summary, per-iteration rows and the Chrome trace, all from spans and marks.

Nothing here reads engine internals (STYLE.md item 4): it takes the flat records a run emitted
(`Span`s, `Mark`s, the network's flow records) and computes every reported quantity from them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from simulator.engine.cluster import COMM, COMPUTE, COPY, Span
from simulator.output.records import PIPELINE_PHASES as PHASES
from simulator.output.files import write_atomic, write_csv, write_json
from simulator.output.records import Mark, RunRecords

STREAMS = (COMPUTE, COMM, COPY)  # timeline thread ids, in this order


def spans_table(spans: list[Span]) -> dict[str, np.ndarray]:
    """Column arrays of the spans (phase as an index into PHASES)."""
    phase_id = {p: i for i, p in enumerate(PHASES)}
    return {
        "gpu": np.array([s.gpu for s in spans], dtype=np.int64),
        "stream": np.array([STREAMS.index(s.stream) for s in spans], dtype=np.int64),
        "phase": np.array([phase_id[s.phase] for s in spans], dtype=np.int64),
        "iteration": np.array([s.iteration for s in spans], dtype=np.int64),
        "layer": np.array([s.layer for s in spans], dtype=np.int64),
        "start": np.array([s.start_s for s in spans], dtype=float),
        "end": np.array([s.end_s for s in spans], dtype=float),
    }


def union_lengths(group: np.ndarray, start: np.ndarray, end: np.ndarray, groups: int) -> np.ndarray:
    """Length of the union of intervals per group (time during which any member was busy).

    Segmented running maximum: within each group, intervals sorted by start; each adds the part
    of it past the furthest end seen so far in its group. Times are shifted per group so one
    global `maximum.accumulate` serves all groups.
    """
    if len(group) == 0:
        return np.zeros(groups)
    order = np.lexsort((start, group))
    g, s, e = group[order], start[order], end[order]
    first = np.ones(len(g), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    segment = np.cumsum(first) - 1
    base = s[first][segment]  # each group's earliest start
    width = max(float((e - base).max()) * 2, 1e-12)
    shift = segment * width
    reach = np.maximum.accumulate(e - base + shift) - shift + base
    previous = np.where(first, s, np.concatenate(([0.0], reach[:-1])))
    added = np.clip(e - np.maximum(s, previous), 0.0, None)
    return np.bincount(g, weights=added, minlength=groups)


def layer_end_times(marks: list[Mark], iterations: int, layers: int) -> np.ndarray:
    """[iterations, layers + 1]: column 0 = iteration start, column l+1 = end of layer l (max over GPUs)."""
    ends = np.zeros((iterations, layers + 1))
    for mark in marks:
        cell = (mark.iteration, mark.layer + 1)
        ends[cell] = max(ends[cell], mark.time_s)
    return ends


def summarize(records: RunRecords) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return (summary dict, per-iteration/per-layer rows), computed from the run's records only."""
    iterations = records.iterations
    stages = records.stages
    layers = len(stages)
    ends = layer_end_times(records.marks, iterations, layers)
    iteration_end = ends[:, -1]
    iteration_latency = np.diff(np.concatenate(([0.0], iteration_end)))
    layer_latency = np.diff(np.concatenate((np.concatenate(([0.0], iteration_end[:-1]))[:, None],
                                            ends[:, 1:]), axis=1), axis=1)

    table = spans_table(records.spans)
    # phases on the GPU streams; weight copies run on the copy engines, and what they cost is the
    # time experts waited for them (the `replication` spans on the compute stream)
    on_gpu = table["stream"] != STREAMS.index(COPY)
    cell = ((table["iteration"] * layers + table["layer"]) * len(PHASES) + table["phase"])[on_gpu]
    phase_time = union_lengths(cell, table["start"][on_gpu], table["end"][on_gpu],
                               iterations * layers * len(PHASES))
    phase_time = phase_time.reshape(iterations, layers, len(PHASES))
    per_iteration_phase = phase_time.sum(axis=1)

    makespan = float(iteration_end[-1]) if iterations else 0.0
    skew = skewness(records)
    breakdown = {p: float(per_iteration_phase[:, i].mean()) for i, p in enumerate(PHASES)}
    strategy = records.strategy
    summary = {
        "scenario": records.scenario,
        "seed": records.seed,
        "iterations": iterations,
        "gpus": records.gpus,
        "tokens_per_iteration": records.tokens,
        "latency_s": {
            "mean": float(iteration_latency.mean()),
            "p50": float(np.percentile(iteration_latency, 50)),
            "p99": float(np.percentile(iteration_latency, 99)),
            "total": makespan,
        },
        "throughput_tokens_per_s": records.tokens * iterations / makespan if makespan else 0.0,
        "breakdown_s": breakdown,
        "overlap_s": float(sum(breakdown.values()) - iteration_latency.mean()),
        "skewness": {k: float(v.mean()) for k, v in skew.items()},
        "predictor": {"name": strategy.name, "family": strategy.family,
                      "error": strategy.error, "accuracy": strategy.accuracy,
                      "overhead_s": breakdown["predictor"], "fit_s": strategy.fit_s},
        "replicas": replica_summary(records, table),
        "gpu_utilization": gpu_utilization(table, records.gpus, makespan),
        "link_utilization": link_utilization(records, makespan),
        "memory_GB": {f"gpu{r}": round(m / 1e9, 3) for r, m in enumerate(records.memory_bytes)},
        "conservation": conservation(records),
        "events": records.counters["events"],
        "wall_s": records.counters["wall_s"],
    }
    if "balancer" in strategy.notes:  # e.g. the ILP's MIP gap and the placement it kept
        summary["balancer"] = strategy.notes["balancer"]
    rows = iteration_rows(iteration_latency, layer_latency, phase_time, skew, records)
    return summary, rows


def skewness(records: RunRecords) -> dict[str, np.ndarray]:
    """Per [iteration, moe layer]: expert-level max/mean load, and GPU-level before/after placement.

    `before` is the GPU imbalance of the static round-robin baseline; `after` that of the placement
    actually simulated (with its replica splits), both from the true routed pairs.
    """
    pairs = records.routing.expert_pairs
    expert_load = pairs.sum(axis=2)  # [I, L, E]
    gpus = records.gpus
    experts = expert_load.shape[-1]
    round_robin = np.zeros((experts, gpus))
    round_robin[np.arange(experts), np.arange(experts) % gpus] = 1.0
    before = expert_load @ round_robin
    after = pairs.sum(axis=3)
    return {"expert": _max_over_mean(expert_load), "before": _max_over_mean(before),
            "after": _max_over_mean(after)}


def _max_over_mean(load: np.ndarray) -> np.ndarray:
    mean = load.mean(axis=-1)
    return np.divide(load.max(axis=-1), mean, out=np.ones_like(mean, dtype=float), where=mean > 0)


def gpu_utilization(table: dict[str, np.ndarray], gpus: int, makespan: float) -> dict[str, float]:
    """Fraction of the run each GPU's compute stream was busy."""
    compute = (table["stream"] == STREAMS.index(COMPUTE)) & (table["phase"] != PHASES.index("replication"))
    busy = np.bincount(table["gpu"][compute], weights=(table["end"] - table["start"])[compute],
                       minlength=gpus)
    return {f"gpu{r}": float(busy[r] / makespan) if makespan else 0.0 for r in range(gpus)}


def link_utilization(records: RunRecords, makespan: float) -> dict[str, float]:
    """Per link kind: bytes carried / (capacity x run time), averaged over the links of that kind."""
    links = records.links
    per_kind: dict[str, list[float]] = defaultdict(list)
    for link, kind in enumerate(links.kind):
        capacity = links.capacity_Bps[link] * makespan
        per_kind[kind].append(float(links.carried_bytes[link] / capacity) if capacity else 0.0)
    return {kind: float(np.mean(values)) for kind, values in sorted(per_kind.items())}


def conservation(records: RunRecords) -> dict[str, int]:
    """Pair and byte counts that must balance: routed = computed, dispatched = combined
    (planned counts; tests check them against the network's own flow records)."""
    routing = records.routing
    token_bytes = routing.token_bytes
    remote = _off_diagonal(routing.dispatch_pairs)
    block = {
        "pairs_routed": routing.routed_pairs,
        "pairs_computed": int(routing.expert_pairs.sum()),
        "bytes_dispatched": remote * token_bytes,
        "bytes_combined": remote * token_bytes,
        "pairs_presorted": routing.presorted_pairs,
    }
    if routing.combine_pairs is not None:  # token residency expert: the combine is its own matrix
        kv = routing.kv_bytes.copy()
        kv[..., np.arange(kv.shape[-1]), np.arange(kv.shape[-1])] = 0.0
        block["bytes_combined"] = _off_diagonal(routing.combine_pairs) * token_bytes
        block["bytes_kv_exchanged"] = int(round(float(kv.sum())))
    return block


def _off_diagonal(pairs: np.ndarray) -> int:
    return int(pairs.sum() - np.trace(pairs, axis1=2, axis2=3).sum())


def replica_summary(records: RunRecords, table=None) -> dict[str, float]:
    """Mean replicas added per iteration (beyond one per expert), weight copies made, and how long
    copies were in flight per iteration (any copy engine busy; `breakdown_s.replication` is the
    part of it experts waited for)."""
    strategy = records.strategy
    count = strategy.copies
    summary = {"extra_per_iteration": float(np.mean(strategy.extra_replicas)),
               "copies": count,
               "copies_per_iteration": count / max(len(strategy.extra_replicas), 1),
               "copied_bytes": strategy.copied_bytes}
    if table is not None:
        on_copy = table["stream"] == STREAMS.index(COPY)
        active = union_lengths(np.zeros(int(on_copy.sum()), dtype=np.int64), table["start"][on_copy],
                               table["end"][on_copy], 1)
        summary["copy_active_s"] = float(active[0]) / max(records.iterations, 1)
    return summary


def iteration_rows(iteration_latency, layer_latency, phase_time, skew, records: RunRecords
                   ) -> list[dict[str, Any]]:
    """One row per iteration (`layer` = all), then one per stage: forward layers by index, and in
    training `bwdN` (backward of layer N) and `optimizer`."""
    moe_index = {str(layer): i for i, layer in enumerate(records.moe_layers)}
    rows = []
    for it in range(len(iteration_latency)):
        row = {"iteration": it, "layer": "all", "latency_s": float(iteration_latency[it])}
        row.update({f"{p}_s": float(phase_time[it, :, i].sum()) for i, p in enumerate(PHASES)})
        row.update({f"skewness_{k}": float(v[it].mean()) for k, v in skew.items()})
        rows.append(row)
        for layer, label in enumerate(records.stages):
            row = {"iteration": it, "layer": label, "latency_s": float(layer_latency[it, layer])}
            row.update({f"{p}_s": float(phase_time[it, layer, i]) for i, p in enumerate(PHASES)})
            moe = moe_index.get(label)
            row.update({f"skewness_{k}": float(v[it, moe]) if moe is not None else ""
                        for k, v in skew.items()})
            rows.append(row)
    return rows


def write_results(out_dir: Path, summary: dict[str, Any], rows: list[dict[str, Any]],
                  trace: dict[str, Any] | None, timeline: str = "timeline.json") -> None:
    """summary.json, iterations.csv and (unless `trace` is None) the timeline as `timeline`
    (timeline.json, or timeline.json.gz compressed)."""
    from simulator.output.timeline import write_timeline

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in {"timeline.json", "timeline.json.gz"} - {timeline if trace is not None else ""}:
        (out_dir / stale).unlink(missing_ok=True)  # a rerun's files never mix with an older one's
    if trace is not None:
        write_timeline(out_dir / timeline, trace)
    write_csv(out_dir / "iterations.csv", rows)
    # summary last: its presence marks a complete result directory
    write_json(out_dir / "summary.json", summary)

"""timeline.json: a run's records as Chrome trace-event JSON (Perfetto, chrome://tracing), and back.

Built only from records (STYLE.md item 4): the GPU spans, the network's flow records and the
routing plan's per-GPU loads. Layout (pids, tids):

- ``run`` process (pid = gpus): thread ``iterations`` with one slice per iteration and thread
  ``layers`` with one slice per layer (per stage in training: ``bwd3``, ``optimizer``), so a user
  can jump to "iteration 3, layer 17";
- one process per GPU (pid = rank): threads ``compute`` (tid 0), ``comm`` (tid 1) and one
  ``copy`` lane per concurrent copy (tid 2, 3, ...: copy engines run copies side by side, and a
  trace-event track must not hold overlapping slices); every slice has iteration, layer, phase,
  stream, FLOPs and bytes as args; a counter ``expert load`` (token-expert pairs the GPU computes
  in each layer, ``after`` the simulated placement and ``before`` with static round-robin);
- ``network`` process (pid = gpus + 1): one counter per link kind (``nvlink3``, ``ib-ndr``, ...),
  the utilisation of all links of that kind: bytes/s carried / summed capacity.

Link utilisation over time is an approximation: each flow is taken to carry its bytes at a
uniform rate between its first byte (``first_byte_s``) and its last (``end_s``). The real
max-min rate of a flow changes whenever other flows start or end, so an instant's value can be
off (even above 1 for a moment), but the integral over any span that covers whole flows is exact:
the counter's time-average over the run equals summary.json's ``link_utilization`` for a kind whose
links all have the same capacity.

Times are microseconds (``ts = start_s * 1e6``), the trace-event format's unit. The file
(`write_timeline`) rounds them to the nanosecond (3 decimals): a slice's end is rounded, not its
duration, so slices that touch still touch; ``.json.gz`` is written gzip-compressed (Perfetto
opens it as is), deterministically (no timestamp in the gzip header).
"""

from __future__ import annotations

import gzip
import heapq
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from simulator.safeio import loads_json, read_bytes, read_json

from simulator.engine.cluster import COMM, COMPUTE, COPY, Span

STREAM_TIDS = {COMPUTE: 0, COMM: 1, COPY: 2}  # copy lane k has tid 2 + k
RUN_PROCESS = "run"
NETWORK_PROCESS = "network"
EXPERT_LOAD_COUNTER = "expert load"
UTILIZATION_SERIES = "utilization"
UTILIZATION_MODEL = "uniform rate per flow between its first and last byte"


def copy_lanes(start_s: np.ndarray, end_s: np.ndarray) -> np.ndarray:
    """Lane per interval so that intervals in one lane never overlap, using the fewest lanes.

    Greedy interval partitioning (optimal: the lane count equals the peak overlap): intervals in
    start order take the lowest free lane whose last interval has ended (touching is not overlap).
    """
    lanes = np.zeros(len(start_s), dtype=np.int64)
    busy: list[tuple[float, int]] = []  # (end, lane) of lanes in use
    free: list[int] = []
    count = 0
    for k in np.lexsort((end_s, start_s)):
        while busy and busy[0][0] <= start_s[k]:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane, count = count, count + 1
        lanes[k] = lane
        heapq.heappush(busy, (float(end_s[k]), lane))
    return lanes


def layer_bounds(spans: Sequence[Span]) -> np.ndarray:
    """[iterations, layers, 2] start and end (s) of each layer of each iteration, run-wide.

    A layer ends when its last span on any GPU ends (as the marks behind summary.json's latency);
    it starts when the previous layer (or iteration) ended, so slices tile the run: iteration i's
    duration is exactly the iteration latency of summary.json / iterations.csv.
    """
    if not spans:
        return np.zeros((0, 0, 2))
    iteration = np.array([s.iteration for s in spans], dtype=np.int64)
    layer = np.array([s.layer for s in spans], dtype=np.int64)
    layers = int(layer.max()) + 1
    cells = (int(iteration.max()) + 1) * layers
    ends = np.zeros(cells)
    np.maximum.at(ends, iteration * layers + layer, np.array([s.end_s for s in spans]))
    ends = np.maximum.accumulate(ends)
    starts = np.concatenate(([0.0], ends[:-1]))
    return np.stack((starts, ends), axis=-1).reshape(-1, layers, 2)


def bounds_from_marks(marks: Iterable[Any], iterations: int, stages: int) -> np.ndarray:
    """[iterations, stages, 2] from the pipeline's marks (rank, iteration, layer, time_s): a stage
    ends at its latest mark, exactly as summary.json and iterations.csv time it (in training a
    backward stage's gradient all-reduce runs on in the background, past its mark)."""
    ends = np.zeros(iterations * stages)
    for mark in marks:
        if mark.layer >= 0:
            cell = mark.iteration * stages + mark.layer
            ends[cell] = max(ends[cell], mark.time_s)
    ends = np.maximum.accumulate(ends)
    starts = np.concatenate(([0.0], ends[:-1]))
    return np.stack((starts, ends), axis=-1).reshape(iterations, stages, 2)


def stage_layer(label: str) -> int | None:
    """Model layer a stage label works on: ``"3"`` -> 3, ``"bwd3"`` -> 3, ``"optimizer"`` -> None."""
    digits = label[3:] if label.startswith("bwd") else label
    return int(digits) if digits.isdigit() else None


def _stage_name(label: str) -> str:
    return f"layer {label}" if label.isdigit() else label


def _metadata(pid: int, tid: int, kind: str, value: Any) -> dict[str, Any]:
    key = "sort_index" if kind.endswith("sort_index") else "name"
    return {"ph": "M", "pid": pid, "tid": tid, "ts": 0, "name": kind, "args": {key: value}}


def _slice(pid: int, tid: int, name: str, start_s: float, end_s: float, cat: str,
           args: dict[str, Any]) -> dict[str, Any]:
    return {"ph": "X", "pid": pid, "tid": tid, "name": name, "cat": cat, "ts": start_s * 1e6,
            "dur": (end_s - start_s) * 1e6, "args": args}


def span_events(spans: Sequence[Span], gpus: int) -> list[dict[str, Any]]:
    """Metadata and slices of the GPU processes (copies spread over lanes, see module doc)."""
    lane = np.zeros(len(spans), dtype=np.int64)
    lanes_of = np.ones(gpus, dtype=np.int64)  # every GPU shows at least one copy track
    copies_of: dict[int, list[int]] = {}
    for k, s in enumerate(spans):
        if s.stream == COPY:
            copies_of.setdefault(s.gpu, []).append(k)
    for rank, copies in copies_of.items():
        if rank < gpus:
            lane[copies] = copy_lanes(np.array([spans[k].start_s for k in copies]),
                                      np.array([spans[k].end_s for k in copies]))
            lanes_of[rank] = int(lane[copies].max()) + 1
    events = []
    for rank in range(gpus):
        events.append(_metadata(rank, 0, "process_name", f"gpu{rank}"))
        events.append(_metadata(rank, 0, "process_sort_index", rank))
        names = [COMPUTE, COMM] + [COPY if k == 0 else f"{COPY} {k}" for k in range(lanes_of[rank])]
        for tid, name in enumerate(names):
            events.append(_metadata(rank, tid, "thread_name", name))
            events.append(_metadata(rank, tid, "thread_sort_index", tid))
    order = sorted(range(len(spans)), key=lambda k: (spans[k].gpu, STREAM_TIDS[spans[k].stream],
                                                     lane[k], spans[k].start_s))
    for k in order:
        s = spans[k]
        events.append(_slice(s.gpu, STREAM_TIDS[s.stream] + int(lane[k]), s.name, s.start_s, s.end_s,
                             s.phase, {"iteration": s.iteration, "layer": s.layer, "phase": s.phase,
                                       "stream": s.stream, "flops": s.flops, "bytes": s.bytes}))
    return events


def run_events(bounds: np.ndarray, pid: int, stages: Sequence[str]) -> list[dict[str, Any]]:
    """The ``run`` process: one slice per iteration (tid 0) and per layer or stage (tid 1)."""
    events = [_metadata(pid, 0, "process_name", RUN_PROCESS),
              _metadata(pid, 0, "process_sort_index", -2),
              _metadata(pid, 0, "thread_name", "iterations"),
              _metadata(pid, 1, "thread_name", "layers")]
    for it in range(bounds.shape[0]):
        events.append(_slice(pid, 0, f"iteration {it}", bounds[it, 0, 0], bounds[it, -1, 1],
                             "iteration", {"iteration": it}))
        for layer, label in enumerate(stages):
            events.append(_slice(pid, 1, _stage_name(label), bounds[it, layer, 0], bounds[it, layer, 1],
                                 "layer", {"iteration": it, "layer": layer, "stage": label}))
    return events


def link_utilization_series(flows: Iterable[Any], link_kind: Sequence[str],
                            capacity_Bps: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per link kind: (times_s, utilisation from that time on), a step function starting at 0.

    `flows` are `network.FlowRecord`s (bytes, first_byte_s, end_s, links). Each flow adds
    bytes / (end_s - first_byte_s) on each of its links between those times (module doc).
    """
    kinds = sorted(set(link_kind))
    kind_id = np.array([kinds.index(k) for k in link_kind], dtype=np.int64)
    capacity = np.bincount(kind_id, weights=np.asarray(capacity_Bps, dtype=float),
                           minlength=len(kinds))
    pair_flow, pair_link, rate, first, last = [], [], [], [], []
    for flow in flows:
        duration = flow.end_s - flow.first_byte_s
        if not flow.links or flow.bytes <= 0 or not duration > 0:
            continue  # local copies and zero-byte messages carry nothing
        index = len(rate)
        rate.append(flow.bytes / duration)
        first.append(flow.first_byte_s)
        last.append(flow.end_s)
        pair_flow.extend([index] * len(flow.links))
        pair_link.extend(flow.links)
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if not rate:
        return {k: (np.zeros(1), np.zeros(1)) for k in kinds}
    pair_kind = kind_id[np.array(pair_link, dtype=np.int64)]
    pair_flow_a = np.array(pair_flow, dtype=np.int64)
    rate_a, first_a, last_a = np.array(rate), np.array(first), np.array(last)
    for k, kind in enumerate(kinds):
        on = pair_flow_a[pair_kind == k]
        if on.size == 0 or capacity[k] <= 0:
            series[kind] = (np.zeros(1), np.zeros(1))
            continue
        times = np.concatenate((first_a[on], last_a[on]))
        delta = np.concatenate((rate_a[on], -rate_a[on])) / capacity[k]
        active = np.concatenate((np.ones(on.size), -np.ones(on.size)))
        order = np.argsort(times, kind="stable")
        times, delta, active = times[order], delta[order], active[order]
        level, in_flight = np.cumsum(delta), np.cumsum(active)
        last_of_time = np.append(times[1:] != times[:-1], True)
        t, value = times[last_of_time], level[last_of_time]
        value = np.where(in_flight[last_of_time] > 0, np.maximum(value, 0.0), 0.0)
        t, value = np.concatenate(([0.0], t)), np.concatenate(([0.0], value))
        keep = np.append(True, value[1:] != value[:-1])  # drop repeats of the same level
        series[kind] = (t[keep], value[keep])
    return series


def network_events(series: dict[str, tuple[np.ndarray, np.ndarray]], pid: int) -> list[dict[str, Any]]:
    """The ``network`` process: one counter track per link kind."""
    events = [_metadata(pid, 0, "process_name", NETWORK_PROCESS),
              _metadata(pid, 0, "process_sort_index", -1)]
    for kind, (times, values) in series.items():
        events.extend({"ph": "C", "pid": pid, "tid": 0, "name": kind, "cat": "link",
                       "ts": float(t) * 1e6, "args": {UTILIZATION_SERIES: float(v)}}
                      for t, v in zip(times, values))
    return events


def expert_load_events(bounds: np.ndarray, stages: Sequence[str], moe_layers: Sequence[int],
                       before: np.ndarray, after: np.ndarray) -> list[dict[str, Any]]:
    """Per GPU, a counter set at each stage's start: pairs its experts compute there (a backward
    stage computes its layer's pairs again; 0 in dense layers and the optimizer).

    `before`, `after`: [iterations, len(moe_layers), gpus] token-expert pairs.
    """
    iterations = bounds.shape[0]
    index = {layer: i for i, layer in enumerate(moe_layers)}
    events = []
    for rank in range(before.shape[-1]):
        for it in range(iterations):
            for layer, label in enumerate(stages):
                moe = index.get(stage_layer(label))
                values = (0.0, 0.0) if moe is None else (float(before[it, moe, rank]),
                                                          float(after[it, moe, rank]))
                events.append({"ph": "C", "pid": rank, "tid": 0, "name": EXPERT_LOAD_COUNTER,
                               "cat": "load", "ts": float(bounds[it, layer, 0]) * 1e6,
                               "args": {"before": values[0], "after": values[1]}})
    return events


def chrome_trace(spans: Sequence[Span], gpus: int, flows: Iterable[Any] | None = None,
                 paths: Any = None, expert_load: tuple[Sequence[int], np.ndarray, np.ndarray] | None
                 = None, stages: Sequence[str] | None = None, marks: Iterable[Any] | None = None
                 ) -> dict[str, Any]:
    """The trace-event JSON object of a run (module doc for the layout).

    `flows` (flow records) with `paths` (`LinkRecords` or a `PathTable`: link kinds and capacities) add the
    network counters; `expert_load` = (MoE layer indices, before, after) adds the load counters.
    `stages` labels the spans' `layer` indices (the pipeline's ``stages()``: ``"0"``, ...,
    ``"bwd0"``, ``"optimizer"`` in training; default the indices), and the pipeline's `marks`
    time them as summary.json does (default: each stage ends with its last span).
    """
    bounds = layer_bounds(spans)
    if stages is None:
        stages = [str(layer) for layer in range(bounds.shape[1])]
    if marks is not None:
        bounds = bounds_from_marks(marks, bounds.shape[0], len(stages))
    events = run_events(bounds, gpus, stages) + span_events(spans, gpus)
    other: dict[str, Any] = {"generator": "moesim", "gpus": gpus}
    if expert_load is not None and bounds.size:
        events += expert_load_events(bounds, stages, *expert_load)
    if flows is not None and paths is not None:
        link_kind = getattr(paths, "kind", None) or paths.link_kind  # LinkRecords or a PathTable
        capacity = np.asarray(paths.capacity_Bps, dtype=float)
        series = link_utilization_series(flows, link_kind, capacity)
        events += network_events(series, gpus + 1)
        other["links"] = {kind: {"count": int(sum(1 for k in link_kind if k == kind)),
                                 "capacity_Bps": float(sum(c for k, c in zip(link_kind, capacity)
                                                           if k == kind))} for kind in series}
        other["link_utilization_model"] = UTILIZATION_MODEL
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


def run_timeline(records: Any) -> dict[str, Any]:
    """Everything a simulated run records (`RunRecords`), as trace-event JSON (what `moesim run`
    writes): spans, stage bounds from the marks, network counters from the flows, expert load."""
    return chrome_trace(records.spans, records.gpus, records.flows, records.links,
                        records.expert_load(), list(records.stages), records.marks)


# ------------------------------------------------------------------ writing


def rounded_to_ns(trace: dict[str, Any]) -> dict[str, Any]:
    """A copy of a trace-event object with every ``ts`` and slice end rounded to the nanosecond
    (``dur`` = rounded end - rounded start): what the file holds."""
    events = []
    for event in trace["traceEvents"]:
        event = dict(event)
        start = event.get("ts")
        if isinstance(start, float):
            event["ts"] = round(start, 3)
            if "dur" in event:
                event["dur"] = round(round(start + event["dur"], 3) - event["ts"], 3)
        events.append(event)
    return {**trace, "traceEvents": events}


def timeline_bytes(trace: dict[str, Any], gzipped: bool = False) -> bytes:
    """The file's bytes: compact JSON, times to the nanosecond; gzip without a timestamp (same
    run, same bytes)."""
    text = json.dumps(rounded_to_ns(trace), separators=(",", ":")).encode()
    return gzip.compress(text, compresslevel=6, mtime=0) if gzipped else text


def write_timeline(path: Path, trace: dict[str, Any]) -> Path:
    """Write `trace` to `path` (gzip-compressed when it ends in .gz) via a temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(timeline_bytes(trace, gzipped=path.suffix == ".gz"))
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------ reading


@dataclass
class Timeline:
    """timeline.json read back into columns (what `moesim plot` draws from).

    `slices`: GPU slices as arrays gpu, stream, phase, name, iteration, layer, start_s, end_s,
    flops, bytes. `iterations` / `layers`: run-track bounds [n, 2] in seconds (layers also carry
    iteration, layer and name columns). `links`: kind -> (times_s, utilisation). `expert_load`:
    rank -> arrays (times_s, before, after).
    """

    gpus: int
    slices: dict[str, np.ndarray]
    iterations: np.ndarray
    layers: dict[str, np.ndarray]
    links: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    expert_load: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict)


def read_timeline(path: Path) -> Timeline:
    """Parse a timeline.json (or .json.gz) written by `chrome_trace` (older ones without run/network
    tracks too).

    Raises ValueError (with the reason) for a file that is not such a trace.
    """
    if str(path).endswith(".gz"):  # written by `moesim run --timeline-gz`
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(read_bytes(path, limit_bytes=10**9))) as packed:
                text = packed.read(4 * 10**9 + 1)  # bounded: a gzip bomb stops at the limit
        except (OSError, EOFError) as error:
            raise ValueError(f"not a gzip file ({error})") from None
        if len(text) > 4 * 10**9:
            raise ValueError("decompresses to more than 4 GB")
        data = loads_json(text.decode("utf-8", errors="replace"), str(path))
    else:
        data = read_json(path, limit_bytes=4 * 10**9)  # regular file, depth-limited (safeio)
    return parse_timeline(data)


def parse_timeline(data: Any) -> Timeline:
    """`read_timeline` for trace-event JSON already in memory (a run's ``timeline()``)."""
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise ValueError("not a trace-event JSON object with a traceEvents list")
    events = data["traceEvents"]
    process, thread = {}, {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            process[e["pid"]] = e["args"]["name"]
        elif e.get("ph") == "M" and e.get("name") == "thread_name":
            thread[e["pid"], e["tid"]] = e["args"]["name"]
    rank_of = {pid: int(name[3:]) for pid, name in process.items()
               if name.startswith("gpu") and name[3:].isdigit()}
    run_pid = next((pid for pid, name in process.items() if name == RUN_PROCESS), None)
    net_pid = next((pid for pid, name in process.items() if name == NETWORK_PROCESS), None)
    columns: dict[str, list] = {k: [] for k in ("gpu", "stream", "phase", "name", "iteration", "layer",
                                                "start_s", "end_s", "flops", "bytes")}
    iterations, layers = [], []
    links: dict[str, list[tuple[float, float]]] = {}
    load: dict[int, list[tuple[float, float, float]]] = {}
    for e in events:
        ph, pid = e.get("ph"), e.get("pid")
        if ph == "X" and pid in rank_of:
            args = e.get("args", {})
            stream = args.get("stream") or thread.get((pid, e.get("tid")), "").split(" ")[0]
            start = e["ts"] * 1e-6
            columns["gpu"].append(rank_of[pid])
            columns["stream"].append(stream)
            columns["phase"].append(args.get("phase", e.get("cat", "")))
            columns["name"].append(e["name"])
            columns["iteration"].append(args.get("iteration", 0))
            columns["layer"].append(args.get("layer", 0))
            columns["start_s"].append(start)
            columns["end_s"].append(start + e["dur"] * 1e-6)
            columns["flops"].append(args.get("flops", 0.0))
            columns["bytes"].append(args.get("bytes", 0.0))
        elif ph == "X" and pid == run_pid:
            bound = (e["ts"] * 1e-6, (e["ts"] + e["dur"]) * 1e-6)
            if e.get("tid") == 0:
                iterations.append((e["args"]["iteration"], *bound))
            else:
                layers.append((e["args"]["iteration"], e["args"]["layer"], *bound, e["name"]))
        elif ph == "C" and pid == net_pid:
            links.setdefault(e["name"], []).append((e["ts"] * 1e-6, e["args"][UTILIZATION_SERIES]))
        elif ph == "C" and pid in rank_of and e.get("name") == EXPERT_LOAD_COUNTER:
            load.setdefault(rank_of[pid], []).append(
                (e["ts"] * 1e-6, e["args"]["before"], e["args"]["after"]))
    dtypes = {"gpu": np.int64, "iteration": np.int64, "layer": np.int64, "start_s": float,
              "end_s": float, "flops": float, "bytes": float}
    slices = {k: np.array(v, dtype=dtypes.get(k, object)) for k, v in columns.items()}
    gpus = int(data.get("otherData", {}).get("gpus", len(rank_of)))
    iteration_array = np.array(sorted(iterations), dtype=float).reshape(-1, 3)
    layers.sort(key=lambda row: row[:2])
    layer_array = np.array([row[:4] for row in layers], dtype=float).reshape(-1, 4)
    return Timeline(
        gpus=gpus,
        slices=slices,
        iterations=iteration_array[:, 1:],
        layers={"iteration": layer_array[:, 0].astype(np.int64),
                "layer": layer_array[:, 1].astype(np.int64), "bounds": layer_array[:, 2:],
                "name": np.array([row[4] for row in layers], dtype=object)},
        links={k: (np.array([t for t, _ in v]), np.array([u for _, u in v]))
               for k, v in sorted(links.items())},
        expert_load={r: tuple(np.array(c) for c in zip(*v)) for r, v in sorted(load.items())},
        other=data.get("otherData", {}),
    )

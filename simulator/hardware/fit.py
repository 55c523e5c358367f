"""Fit the link catalogue to a user's own measurements: nccl-tests logs and kernel timings.

`moesim calibrate` reads the tables nccl-tests prints (``all_reduce_perf``, ``all_gather_perf``,
``reduce_scatter_perf``, ``alltoall_perf``, ``sendrecv_perf``), simulates the same collective on
the user's topology and fits the mechanisms, not the rows:

- per link kind, the protocol **efficiency**: the large-message bus bandwidth is proportional to
  the bottleneck link's bandwidth, so the bottleneck kind's efficiency is scaled by measured /
  simulated busbw (NVSwitch-4+ ports under NVLS fit their `nvls_efficiency` instead, once a
  non-NVLS log has fixed the port's efficiency);
- per link kind, the **per-message latency**, and per algorithm the **launch** latency: the
  small-message time is linear in them (launch + steps x per-step latency), so they come from one
  least-squares solve over every small-message row of every log (the launch is only separated
  from the per-step latency when the logs hold different step counts, e.g. 2 and 8 ranks; otherwise
  it keeps its catalogue value).

Kernel timings (a CSV in the compute calibration format, `simulator.model.kernel_table`) are checked and
written back as a calibration table; per GPU, the roofline's saturated GEMM efficiency and
half-work are fitted to the GEMM rows and reported.

The result is a YAML the topology takes (`topology: {builder: ..., calibration: FILE}`, or
`moesim collective ... --calibration FILE`); see docs/calibration.md.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import simpy

import topologies
from simulator.engine import collectives
from simulator.model.kernel_table import CalibrationTable
from simulator.model.compute import ComputeModel, kernel_params
from simulator.safeio import read_text
from simulator.errors import ScenarioError
from simulator.engine.network import FlowNetwork
from topologies.devices import gpu_spec
from topologies.links import link_catalogue
from topologies.paths import PathTable, gpu_nodes

# nccl-tests binary name -> (moesim collective, bus-bandwidth factor as a function of n)
NCCL_TESTS_OPS = {
    "all_reduce": ("all_reduce", lambda n: 2 * (n - 1) / n),
    "all_gather": ("all_gather", lambda n: (n - 1) / n),
    "reduce_scatter": ("reduce_scatter", lambda n: (n - 1) / n),
    "alltoall": ("all_to_all", lambda n: (n - 1) / n),
    "sendrecv": ("sendrecv", lambda n: 1.0),
}
SMALL_MAX_BYTES = 64 * 1024  # rows up to this size fit the latencies
LARGE_FRACTION = 1 / 8  # rows within this fraction of the largest size fit the efficiencies ...
LARGE_MIN_BYTES = 64 * 2**20  # ... if they are at least this large (bandwidth-bound)

_OP_IN_TEXT = re.compile(r"\b(all_reduce|all_gather|reduce_scatter|alltoall|sendrecv)_perf")
_RANK_LINE = re.compile(r"^#?\s*Rank\s+(\d+)\b.*?\bon\s+(\S+)\s+device\s+\d+\s+\[[^\]]*\]\s+(.*?)\s*$")
_MPI_PREFIX = re.compile(r"^\[\d+(?:,\d+)?\]\s*")


@dataclass(frozen=True)
class NcclRow:
    """One size of an nccl-tests table (out-of-place figures; in-place time when printed)."""

    size: int
    count: int
    time_us: float
    algbw_GBps: float
    busbw_GBps: float
    line: int
    in_place_time_us: float | None = None


@dataclass(frozen=True)
class NcclLog:
    path: str
    op: str  # nccl-tests name: all_reduce, all_gather, reduce_scatter, alltoall, sendrecv
    ranks: int
    hosts: int
    devices: tuple[str, ...]
    rows: tuple[NcclRow, ...]


def parse_nccl_tests(path: str | Path, op: str | None = None) -> NcclLog:
    """Read one nccl-tests output log; errors name the file and line.

    Accepts both table layouts nccl-tests has printed (with and without the ``root`` column), MPI
    line prefixes (``[0] ``) and logs with several processes' headers. The operation comes from
    `op`, the log (``# Collective test starting: all_reduce_perf`` or the command line) or the
    file name. A log must end with nccl-tests' ``# Avg bus bandwidth`` line: a log cut short (a job
    killed mid-run) is refused rather than fitted on partial data.
    """
    path = Path(path)
    lines = read_text(path, error=ScenarioError).splitlines()  # regular UTF-8 file within the size limit
    if op is None:
        match = next((m for line in lines if (m := _OP_IN_TEXT.search(line))), None) or re.search(
            r"(all_reduce|all_gather|reduce_scatter|alltoall|sendrecv)", path.name)
        if match is None:
            raise ScenarioError(f"cannot tell which collective this log measured; name the file after the "
                                f"nccl-tests binary (all_reduce_perf.log); known: {', '.join(NCCL_TESTS_OPS)}",
                                str(path))
        op = match.group(1)
    if op not in NCCL_TESTS_OPS:
        raise ScenarioError(f"unknown nccl-tests op {op!r}; known: {', '.join(NCCL_TESTS_OPS)}", str(path))
    ranks: dict[int, tuple[str, str]] = {}
    columns: list[str] | None = None
    rows: list[NcclRow] = []
    footer = False
    last = 0
    for number, raw in enumerate(lines, start=1):
        text = _MPI_PREFIX.sub("", raw).rstrip()
        if not text.strip():
            continue
        last = number
        rank = _RANK_LINE.match(text)
        if rank:
            ranks[int(rank.group(1))] = (rank.group(2), rank.group(3))
            continue
        if "Avg bus bandwidth" in text:
            footer = True
            continue
        if text.startswith("#"):
            if re.match(r"^#\s*size\s+count\s+type", text):
                columns = text.lstrip("#").split()
            continue
        tokens = text.split()
        if tokens[:3] == ["size", "count", "type"]:  # a header pasted without its '#'
            columns = tokens
            continue
        if not tokens or not tokens[0].isdigit():
            continue  # NCCL INFO lines and other chatter between rows
        if columns is None:
            raise ScenarioError("a result row before nccl-tests' header line '#  size  count  type ...'",
                                f"{path}:{number}")
        rows.append(_parse_row(tokens, columns, f"{path}:{number}", number))
    if not rows:
        raise ScenarioError("no result rows: not an nccl-tests *_perf output, or it stopped before the first size",
                            f"{path}:{last or 1}")
    if not footer:
        raise ScenarioError(f"log ends at line {last} without nccl-tests' closing '# Avg bus bandwidth' line: "
                            f"truncated (the job stopped before the end)?", f"{path}:{last}")
    hosts = len({host for host, _ in ranks.values()}) or 1
    devices = tuple(device for _, (_, device) in sorted(ranks.items()))
    return NcclLog(str(path), op, len(ranks), hosts, devices, tuple(rows))


def _parse_row(tokens: list[str], columns: list[str], where: str, line: int) -> NcclRow:
    """A row laid out as `columns` (size count type redop [root] time algbw busbw wrong time ...)."""
    if len(tokens) < len(columns):
        raise ScenarioError(f"row has {len(tokens)} fields, the header has {len(columns)} "
                            f"({' '.join(columns)}): truncated line?", where)
    names = []
    seen: dict[str, int] = {}
    for name in columns:
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    values = dict(zip(names, tokens))

    def number(name: str, kind=float) -> float:
        text = values.get(name)
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise ScenarioError(f"column {name.split('#')[0]!r} must be a number, got {text!r}", where) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ScenarioError(f"column {name!r} must be finite, got {text!r}", where)
        return value

    size = number("size", int)
    time_us = number("time")
    if size < 0 or time_us <= 0:
        raise ScenarioError(f"size must be >= 0 and time > 0, got size {size}, time {time_us}", where)
    in_place = None
    if "time#2" in values:
        try:
            in_place = float(values["time#2"])
        except ValueError:
            in_place = None
    return NcclRow(size, number("count", int), time_us, number("algbw"), number("busbw"), line, in_place)


def format_nccl_tests(op: str, rows: list[tuple[int, float]], ranks: int, hosts: int = 1,
                      device: str = "GPU", dtype_bytes: int = 4) -> str:
    """An nccl-tests log (current layout) for `rows` of (size in bytes, time in us): what the
    parser reads; used to replay published tables and in tests."""
    _, factor = NCCL_TESTS_OPS[op]
    per_host = max(ranks // hosts, 1)
    lines = [f"# Collective test starting: {op}_perf",
             (f"# nThread 1 nGpus 1 minBytes {rows[0][0]} maxBytes {rows[-1][0]} step: 2(factor) warmup iters: 5 "
             f"iters: 20 agg iters: 1 validation: 1 graph: 0"), "#", "# Using devices"]
    for rank in range(ranks):
        lines.append(f"#  Rank {rank:2d} Group  0 Pid {1000 + rank:6d} on {'node' + str(rank // per_host):>10} "
                     f"device {rank % per_host:2d} [0x{rank:02x}] {device}")
    redop = "sum" if op in ("all_reduce", "reduce_scatter") else "none"
    lines += ["#", "#" + " " * 62 + "out-of-place                       in-place",
              ("#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw"
              "   busbw #wrong"),
              ("#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)"
              "  (GB/s)")]
    total = 0.0
    for size, time_us in rows:
        algbw = size / (time_us * 1e-6) / 1e9
        busbw = algbw * factor(ranks)
        total += busbw
        cells = f"{time_us:8.2f} {algbw:7.2f} {busbw:7.2f} {0:6d}"
        lines.append(f"  {size:10d}  {size // dtype_bytes:12d}  {'float':>8}  {redop:>6}  {-1:6d}  {cells} {cells}")
    lines += ["# Out of bounds values : 0 OK", f"# Avg bus bandwidth    : {total / len(rows):g}", "#", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- simulating a row


def simulate_row(paths: PathTable, op: str, group: list[str], size: int, algorithm: str = "auto",
                 alpha_s: float = 0.0) -> dict[str, Any]:
    """nccl-tests' figures for `op` (nccl-tests name) of `size` bytes on an idle network:
    time_us, busbw_GBps and the algorithm used (auto: NCCL's choice for this size)."""
    name, factor = NCCL_TESTS_OPS[op]
    n = len(group)
    argument = size / n if name == "all_to_all" else size
    runs: list[dict[str, Any]] = [{}]
    if name in collectives.ALGORITHMS:
        options = collectives.candidates(name, paths, group)
        if algorithm != "auto":
            options = [(a, o) for a, o in options if a == algorithm] or [(algorithm, {})]
        runs = [{"algorithm": a, **o} for a, o in options]
    best = None
    for kwargs in runs:  # auto: every candidate, the fastest wins (collectives.choose_algorithm)
        env = simpy.Environment()
        net = FlowNetwork(env, paths, alpha_s=alpha_s)
        process = env.process(collectives.COLLECTIVES[name](net, group, argument, **kwargs))
        env.run(process)
        if best is None or process.value.time_s < best[0].time_s:
            best = (process.value, net)
    record, net = best
    time_s = record.time_s
    busbw = size / time_s * factor(n) / 1e9 if time_s > 0 else float("inf")
    return {"time_us": time_s * 1e6, "busbw_GBps": busbw, "algorithm": record.algorithm, "net": net}


# ---------------------------------------------------------------- fitting links


@dataclass
class Measurement:
    """A log's rows against one topology (uncalibrated: its catalogue links are what is fitted):
    which GPUs ran it, with which algorithm, and which of its rows fit latencies."""

    log: NcclLog
    graph: nx.DiGraph
    group: list[str]
    algorithm: str = "auto"
    small_max_bytes: int | None = None  # None: fit_links' default
    small_min_bytes: int = 1


@dataclass
class LinkFit:
    """What `fit_links` returns: the override mapping, and per row the fitted model's figures."""

    overrides: dict[str, Any]
    report: list[dict[str, Any]] = field(default_factory=list)
    fitted: dict[str, set[str]] = field(default_factory=dict)  # link kind or "launch" -> fitted fields


def _defaults(graphs: list[nx.DiGraph]) -> dict[str, Any]:
    """Starting point: the catalogue's figures for every catalogue kind on the graphs."""
    catalogue = link_catalogue()
    kinds = sorted({d["kind"] for graph in graphs for _, _, d in graph.edges(data=True)
                    if not d.get("explicit") and d["kind"] in catalogue})
    links = {}
    for kind in kinds:
        spec = catalogue[kind]
        links[kind] = {"efficiency": spec.efficiency, "message_latency_us": spec.message_latency_s * 1e6}
        if spec.nvls_efficiency > 0:
            links[kind]["nvls_efficiency"] = spec.nvls_efficiency
    launch = {name: float(entry["value"]) for name, entry in collectives.tuning()["launch_us"].items()}
    return {"links": links, "launch_us": launch}


def _paths(graph: nx.DiGraph, params: dict[str, Any]) -> PathTable:
    return PathTable(topologies.calibrate(graph, params))


class _Tables:
    """One PathTable per measured graph for the current parameters (graphs are shared by logs)."""

    def __init__(self, params: dict[str, Any]):
        self.params = params
        self._tables: dict[int, PathTable] = {}

    def __call__(self, graph: nx.DiGraph) -> PathTable:
        if id(graph) not in self._tables:
            self._tables[id(graph)] = _paths(graph, self.params)
        return self._tables[id(graph)]


def _bottleneck_kind(net: FlowNetwork, duration_s: float) -> str:
    """The kind of the busiest link (delivered bytes / capacity) over a collective."""
    paths = net.paths
    use = net.bytes_on_link / (paths.capacity_Bps * max(duration_s, 1e-30))
    return paths.link_kind[int(np.argmax(use))]


def fit_links(measurements: list[Measurement], small_max_bytes: int = SMALL_MAX_BYTES,
              iterations: int = 3) -> LinkFit:
    """Fit efficiencies, NVLS efficiencies, per-message and launch latencies to the logs.

    Each log is replayed on its own topology (whose explicit links are never changed) and `group`
    with its `algorithm` (auto: NCCL's choice per size, as the model predicts it); kinds and
    algorithms shared by several topologies get one figure fitted to all of them.
    """
    params = _defaults([m.graph for m in measurements])
    fitted: dict[str, set[str]] = {}
    for _ in range(iterations):
        _fit_bandwidth(measurements, params, fitted)
        _fit_latency(measurements, params, small_max_bytes, fitted)
    report = []
    tables = _Tables(params)
    for m in measurements:
        for row in m.log.rows:
            if not row.size:
                continue
            sim = simulate_row(tables(m.graph), m.log.op, m.group, row.size, m.algorithm)
            report.append({"log": m.log.path, "line": row.line, "op": m.log.op, "size": row.size,
                           "measured_us": row.time_us, "model_us": sim["time_us"],
                           "measured_busbw_GBps": row.busbw_GBps, "model_busbw_GBps": sim["busbw_GBps"],
                           "algorithm": sim["algorithm"]})
    return LinkFit(params, report, fitted)


def _fit_bandwidth(measurements: list[Measurement], params: dict[str, Any],
                   fitted: dict[str, set[str]]) -> None:
    """Scale the bottleneck kind's efficiency by measured / simulated large-message busbw."""
    ratios: dict[tuple[str, str], list[float]] = {}
    fitted_eff: set[str] = set()
    for nvls_pass in (False, True):
        tables = _Tables(params)
        for m in measurements:
            largest = max(row.size for row in m.log.rows)
            for row in m.log.rows:
                if row.size < max(largest * LARGE_FRACTION, LARGE_MIN_BYTES) or row.busbw_GBps <= 0:
                    continue
                sim = simulate_row(tables(m.graph), m.log.op, m.group, row.size, m.algorithm)
                is_nvls = sim["algorithm"] == "nvls"
                if is_nvls != nvls_pass:
                    continue
                kind = _bottleneck_kind(sim["net"], sim["time_us"] * 1e-6)
                target = ("nvls_efficiency" if is_nvls and kind in fitted_eff else "efficiency", kind)
                ratios.setdefault(target, []).append(row.busbw_GBps / sim["busbw_GBps"])
        for (name, kind), values in ratios.items():
            if (name == "nvls_efficiency") != nvls_pass or kind not in params["links"]:
                continue
            entry = params["links"][kind]
            entry[name] = float(min(1.0, entry.get(name, 1.0) * math.exp(np.mean(np.log(values)))))
            fitted.setdefault(kind, set()).add(name)
            if name == "efficiency":
                fitted_eff.add(kind)
        ratios = {}


def _fit_latency(measurements: list[Measurement], params: dict[str, Any],
                 small_max_bytes: int, fitted: dict[str, set[str]]) -> None:
    """One linear least-squares solve: measured small-message time = model time + slope . delta.

    Unknowns are the per-message latency of every link kind and the launch latency of every
    algorithm the small rows use; slopes come from the model itself (1 us perturbations), so the
    step counts of every algorithm and topology are the model's own.
    """
    rows = [(m, row) for m in measurements for row in m.log.rows
            if max(1, m.small_min_bytes) <= row.size <= (m.small_max_bytes or small_max_bytes)]
    if not rows:
        return
    tables = _Tables(params)
    base = [simulate_row(tables(m.graph), m.log.op, m.group, row.size, m.algorithm) for m, row in rows]
    unknowns: list[tuple[str, str]] = [("launch", a) for a in sorted({b["algorithm"] for b in base})]
    unknowns += [("link", kind) for kind in params["links"]]
    slopes = np.zeros((len(rows), len(unknowns)))
    for j, (what, name) in enumerate(unknowns):
        bumped = _Tables(_bump(params, what, name, 1.0))
        for i, ((m, row), b) in enumerate(zip(rows, base)):
            sim = simulate_row(bumped(m.graph), m.log.op, m.group, row.size, b["algorithm"])
            slopes[i, j] = sim["time_us"] - b["time_us"]
    used = np.abs(slopes).max(axis=0) > 1e-6
    residual = np.array([row.time_us - b["time_us"] for (_, row), b in zip(rows, base)])
    columns = [j for j in range(len(unknowns)) if used[j]]
    if np.linalg.matrix_rank(slopes[:, columns]) < len(columns):  # keep the launch latencies
        columns = [j for j in columns if unknowns[j][0] == "link"]
    if not columns:
        return
    while np.linalg.matrix_rank(slopes[:, columns]) < len(columns):
        # several kinds move together (one log crossing them all): fit the one that moves most
        weakest = min(columns, key=lambda j: np.abs(slopes[:, j]).sum())
        columns.remove(weakest)
    delta, *_ = np.linalg.lstsq(slopes[:, columns], residual, rcond=None)
    for j, step in zip(columns, delta):
        what, name = unknowns[j]
        current = _value(params, what, name)
        _set(params, what, name, max(0.0, current + float(step)))
        fitted.setdefault("launch" if what == "launch" else name, set()).add(
            name if what == "launch" else "message_latency_us")


def _value(params: dict[str, Any], what: str, name: str) -> float:
    if what == "launch":
        return params["launch_us"][name]
    return params["links"][name]["message_latency_us"]


def _set(params: dict[str, Any], what: str, name: str, value: float) -> None:
    if what == "launch":
        params["launch_us"][name] = value
    else:
        params["links"][name]["message_latency_us"] = value


def _bump(params: dict[str, Any], what: str, name: str, by_us: float) -> dict[str, Any]:
    copy = {"links": {k: dict(v) for k, v in params["links"].items()}, "launch_us": dict(params["launch_us"])}
    _set(copy, what, name, _value(copy, what, name) + by_us)
    return copy


# ---------------------------------------------------------------- kernels


def fit_kernels(table: CalibrationTable) -> dict[str, dict[str, float]]:
    """Per GPU with GEMM rows: the roofline's saturated efficiency and half-work fitted to them
    (least squares on log time, launch and HBM figures kept from the catalogue)."""
    from scipy.optimize import least_squares  # only here: scipy is slow to import

    out: dict[str, dict[str, float]] = {}
    for gpu in sorted(table.gpus):
        points = [p for p in table.points if p.gpu == gpu and p.op == "gemm"]
        if len(points) < 2:
            continue
        base = kernel_params(gpu)

        def residuals(x, points=points, base=base, gpu=gpu):
            eff, half = float(x[0]), float(x[1])
            params = dataclasses.replace(base, eff_max={k: eff for k in base.eff_max}, half_work_flops=half * 1e9)
            model = ComputeModel(gpu_spec(gpu), params=params)
            return [math.log(model.gemm(p.m, p.n, p.k, p.dtype_bytes).time_s / p.time_s) for p in points]

        start = [base.eff_max[2], base.half_work_flops / 1e9]
        fit = least_squares(residuals, start, bounds=([0.05, 0.0], [1.0, 1e3]))
        rms = float(np.sqrt(np.mean(np.square(fit.fun))))
        out[gpu] = {"eff_max": round(float(fit.x[0]), 4), "half_work_gflop": round(float(fit.x[1]), 3),
                    "gemm_rows": len(points), "rms_log_error": round(rms, 4)}
    return out


# ---------------------------------------------------------------- the workflow


def group_for(graph: nx.DiGraph, log: NcclLog) -> list[str]:
    """The GPUs that ran `log`: its first `ranks` GPUs in rank order, spread over servers as the
    log's hosts were (ranks / hosts per server)."""
    gpus = gpu_nodes(graph)
    ranks = log.ranks or len(gpus)
    if ranks > len(gpus):
        raise ScenarioError(f"the log ran on {ranks} ranks, the topology has {len(gpus)} GPUs", log.path)
    if log.hosts <= 1:
        return gpus[:ranks]
    servers = collectives.servers_of(PathTable(graph), gpus)
    per = ranks // log.hosts
    if per * log.hosts != ranks or log.hosts > len(servers) or per > min(len(s) for s in servers):
        raise ScenarioError(f"the log ran {ranks} ranks on {log.hosts} hosts; the topology has "
                            f"{len(servers)} servers of {[len(s) for s in servers]} GPUs", log.path)
    return [name for server in servers[:log.hosts] for name in server[:per]]


def calibrate(graph: nx.DiGraph, logs: list[NcclLog], kernels: CalibrationTable | None = None,
              algorithm: str = "auto", small_max_bytes: int = SMALL_MAX_BYTES) -> tuple[dict[str, Any], LinkFit]:
    """The calibration mapping (for YAML) fitted to `logs` and `kernels` on `graph`."""
    measurements = [Measurement(log, graph, group_for(graph, log), algorithm) for log in logs]
    fit = fit_links(measurements, small_max_bytes) if logs else LinkFit(_defaults([graph]))
    sources = ", ".join(f"{Path(log.path).name} ({log.op}, {log.ranks} ranks, {len(log.rows)} sizes)"
                        for log in logs)
    links = {}
    for kind, figures in fit.overrides["links"].items():
        names = fit.fitted.get(kind, set())
        if not names:
            continue  # the logs do not constrain this kind: it keeps the catalogue's figures
        entry = {key: round(float(value), 4) for key, value in figures.items() if key in names}
        entry["source"] = f"moesim calibrate ({', '.join(sorted(names))}): {sources}"
        links[kind] = entry
    out: dict[str, Any] = {"links": links}
    launches = fit.fitted.get("launch", set())
    if launches:
        out["launch_us"] = {k: round(v, 3) for k, v in fit.overrides["launch_us"].items() if k in launches}
    if kernels is not None:
        out["kernels"] = fit_kernels(kernels)
    return out, fit

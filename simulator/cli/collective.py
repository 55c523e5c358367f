"""`moesim collective OP --topology T`: simulate one collective over a range of sizes, printed
as nccl-tests prints its measurements, so simulated and measured tables can be compared line by
line.

Sizes and bandwidths follow nccl-tests (`doc/PERFORMANCE.md` there): the size column is the
largest buffer of one rank (allreduce: the buffer; reducescatter: the input; allgather: the
output; alltoall: the whole send buffer, size/n to each peer including itself; sendrecv: the
message), the data type is bfloat16 (2 bytes), algbw = size / time and busbw = algbw x
2(n-1)/n (allreduce), (n-1)/n (reducescatter, allgather, alltoall) or 1 (sendrecv). Like
nccl-tests, reducescatter, allgather and alltoall round the element count down to a multiple of
the rank count; sizes too small to give every rank one element are skipped.

`--algo` picks NCCL's algorithm (default auto: what NCCL would pick, per size; see
`simulator.engine.collectives.choose_algorithm`); `--calibration FILE` applies fitted link figures
(`moesim calibrate`'s output) to the topology. On a calibrated topology (the reference systems
dgx-a100, dgx-h100, ... or a calibration file) the table gains an `algo` column.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from dataclasses import dataclass

import simpy

import topologies
from simulator.engine import collectives
from simulator.errors import ScenarioError
from simulator.engine.network import FlowNetwork
from topologies.errors import TopologyError
from topologies.paths import PathTable, gpu_nodes
from topologies.registry import BUILDERS, builder_kwargs

HELP = "simulate a collective over a range of sizes and print nccl-tests' columns"

ELEMENT_BYTES = 2  # bfloat16
TYPE_NAME = "bfloat16"


@dataclass(frozen=True)
class OpSpec:
    """How nccl-tests sizes, names and scores one operation."""

    algorithm: str  # name in simulator.engine.collectives.COLLECTIVES
    redop: str
    split: bool  # element count rounded down to a multiple of the ranks
    count_per_rank: bool  # the count column is per rank (per peer for alltoall), not the total

    def bus_factor(self, n: int) -> float:
        if self.algorithm == "all_reduce":
            return 2 * (n - 1) / n
        if self.algorithm == "sendrecv":
            return 1.0
        return (n - 1) / n


OPS = {
    "allreduce": OpSpec("all_reduce", "sum", split=False, count_per_rank=False),
    "reducescatter": OpSpec("reduce_scatter", "sum", split=True, count_per_rank=True),
    "allgather": OpSpec("all_gather", "none", split=True, count_per_rank=True),
    "alltoall": OpSpec("all_to_all", "none", split=True, count_per_rank=True),
    "sendrecv": OpSpec("sendrecv", "none", split=False, count_per_rank=False),
}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNIT = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str, option: str) -> int:
    """`1K`, `128M`, `8G` (powers of 1024, as nccl-tests' -b/-e) or a plain byte count."""
    match = _SIZE.match(str(text))
    if not match:
        raise ScenarioError(f"must be a size such as 1024, 1K, 128M or 8G, got {text!r}", option)
    nbytes = int(float(match.group(1)) * _UNIT[match.group(2).lower()])
    if nbytes < 1:
        raise ScenarioError(f"must be >= 1 byte, got {text!r}", option)
    return nbytes


def _number(text: str | None, option: str, kind=float, minimum: float | None = None,
            strict: bool = False):
    if text is None:
        return None
    try:
        value = kind(text)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise ScenarioError(f"must be {what}, got {text!r}", option) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ScenarioError(f"must be finite, got {text!r}", option)
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ScenarioError(f"must be {'>' if strict else '>='} {minimum}, got {text}", option)
    return value


MAX_ROWS = 1000  # sizes per table: nccl-tests' default sweep has 24
MAX_FLOW_HOPS_ENV = "MOESIM_MAX_FLOW_HOPS"
DEFAULT_MAX_FLOW_HOPS = 20_000_000  # flows x links they cross, per simulated collective


def sizes(min_bytes: int, max_bytes: int, factor: float) -> list[int]:
    """min, min*factor, ... up to max inclusive (nccl-tests' -b, -e, -f); at most MAX_ROWS."""
    out, size = [], min_bytes
    while size <= max_bytes:
        if len(out) == MAX_ROWS:
            raise ScenarioError(
                f"{factor!r} gives more than {MAX_ROWS} sizes from {min_bytes} to {max_bytes} bytes; "
                "use a larger --factor or a narrower --min-bytes/--max-bytes", "--factor")
        out.append(size)
        size = max(size + 1, int(size * factor))
    return out


def check_flow_budget(op: str, graph, group: list[str]) -> None:
    """Refuse a collective whose flows x hops would take hours: a 3,000-GPU all-to-all is 9 M
    flows, a 400-GPU chain's flows cross up to 399 links each. Hops are bounded by the longest
    shortest path from the first rank (BFS, linear in the graph)."""
    import networkx as nx

    n = len(group)
    flows = {"all_reduce": 2 * n * (n - 1), "sendrecv": n}.get(OPS[op].algorithm, n * (n - 1))
    reach = nx.single_source_shortest_path_length(graph, group[0])
    hops = max(1, max(reach.get(g, 1) for g in group))
    text = os.environ.get(MAX_FLOW_HOPS_ENV, "").strip()
    limit = int(text) if text.isdigit() else DEFAULT_MAX_FLOW_HOPS
    if flows * hops > limit:
        raise ScenarioError(
            f"{op} on {n:,} GPUs is {flows:,} flows over paths of up to {hops} links "
            f"({flows * hops:,} flow-links); the limit is {limit:,} (set {MAX_FLOW_HOPS_ENV} to "
            "raise it)", "--topology")


def add_arguments(parser) -> None:
    parser.add_argument("op", help=f"one of {', '.join(OPS)}")
    parser.add_argument("--topology", help="builder name (nvswitch, multi_node, ...) or a topology YAML file")
    parser.add_argument("--gpus", help="GPUs in the group (builders: the topology's size; files: the first N ranks)")
    parser.add_argument("--nodes", help="servers, for multi-node builders")
    parser.add_argument("--device", help="GPU catalogue name, for builders")
    parser.add_argument("--min-bytes", default="1K", help="smallest size (default 1K; K/M/G = 1024^1..3)")
    parser.add_argument("--max-bytes", default="8G", help="largest size (default 8G)")
    parser.add_argument("--factor", default="2", help="size multiplier between rows (default 2)")
    parser.add_argument("--alpha-us", default="0", help="per-message software overhead in us (default 0)")
    parser.add_argument("--algo", default="auto",
                        help="NCCL algorithm: auto (NCCL's choice per size, default), ring, tree, nvls "
                             "(allreduce), direct, pxn (alltoall)")
    parser.add_argument("--calibration", help="calibration YAML from `moesim calibrate` (fitted link figures)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of the table")


def _topology(args):
    """The graph and the group of GPUs the options describe."""
    if not args.topology:
        raise ScenarioError("is required: a builder name or a topology YAML file", "--topology")
    gpus = _number(args.gpus, "--gpus", int, 1)
    nodes = _number(args.nodes, "--nodes", int, 1)
    overrides = {"gpus": gpus, "nodes": nodes, "device": args.device}
    if args.topology in BUILDERS:
        accepted = builder_kwargs(args.topology)
        if gpus is not None and "gpus" not in accepted and "gpus_per_node" in accepted:
            # multi-node builders: --gpus is the total, split evenly over the servers
            servers = nodes or inspect.signature(BUILDERS[args.topology]).parameters["nodes"].default
            if gpus % servers:
                raise ScenarioError(f"must be a multiple of the {servers} nodes, got {gpus}", "--gpus")
            overrides["gpus_per_node"] = gpus // servers
    graph = topologies.resolve(args.topology, **{k: v for k, v in overrides.items() if v is not None})
    if getattr(args, "calibration", None):
        try:
            graph = topologies.calibrate(graph, topologies.load_calibration(args.calibration, "--calibration"))
        except TopologyError as error:
            raise ScenarioError(str(error)) from None
    group = gpu_nodes(graph)
    if gpus is not None and args.topology not in BUILDERS:
        if gpus > len(group):
            raise ScenarioError(f"the topology has {len(group)} GPUs, got {gpus}", "--gpus")
        group = group[:gpus]
    if len(group) < 2:
        raise ScenarioError(f"a collective needs at least 2 GPUs, the topology has {len(group)}", "--gpus")
    return graph, group


def check_algorithm(op: str, algorithm: str, paths: PathTable, group: list[str]) -> str:
    """`--algo` for this op and topology: allowed names, and nvls/tree only where they exist."""
    name = OPS[op].algorithm
    known = collectives.ALGORITHMS.get(name)
    if known is None:
        if algorithm != "auto":
            raise ScenarioError(f"{op} has one algorithm; use auto, got {algorithm!r}", "--algo")
        return algorithm
    if algorithm != "auto" and algorithm not in known:
        raise ScenarioError(f"unknown algorithm {algorithm!r} for {op}; known: auto, {', '.join(known)}", "--algo")
    if algorithm != "auto" and algorithm not in {a for a, _ in collectives.candidates(name, paths, group)}:
        if algorithm == "nvls":
            raise ScenarioError("nvls needs every GPU on one NVSwitch-4 or later (H100, H200, B200) in one "
                                "server", "--algo")
        if algorithm in ("tree", "pxn") and len(collectives.servers_of(paths, group)) > 1:
            raise ScenarioError(f"{algorithm} needs the same number of GPUs on every server", "--algo")
    return algorithm


def simulate(op: str, paths: PathTable, group: list[str], size: int, alpha_s: float,
             algorithm: str = "auto") -> dict | None:
    """One row: the collective of nccl-tests size `size` on an idle network, with `algorithm`
    ("auto": NCCL's choice for this size)."""
    spec = OPS[op]
    n = len(group)
    elements = size // ELEMENT_BYTES
    if spec.split:
        per_rank = elements // n
        if per_rank == 0:
            return None
        elements = per_rank * n
    if elements == 0:
        return None
    nbytes = elements * ELEMENT_BYTES
    # what the collective function takes: alltoall the bytes to one peer, the others the buffer
    argument = nbytes // n if spec.algorithm == "all_to_all" else nbytes
    options: dict = {}
    if spec.algorithm in collectives.ALGORITHMS:
        if algorithm == "auto":
            algorithm, options = collectives.choose_algorithm(spec.algorithm, paths, group, argument, alpha_s)
        else:  # NCCL_ALGO forced: NCCL's options for it (rings: one channel per NIC across servers)
            options = next((o for a, o in collectives.candidates(spec.algorithm, paths, group) if a == algorithm), {})
        options = {**options, "algorithm": algorithm}
    env = simpy.Environment()
    net = FlowNetwork(env, paths, alpha_s=alpha_s)
    process = env.process(collectives.COLLECTIVES[spec.algorithm](net, group, argument, **options))
    env.run(process)
    time_s = process.value.time_s
    algbw = nbytes / time_s / 1e9 if time_s > 0 else float("inf")
    return {
        "op": op,
        "bytes": nbytes,
        "count": elements // n if spec.count_per_rank else elements,
        "type": TYPE_NAME,
        "redop": spec.redop,
        "gpus": n,
        "time_us": time_s * 1e6,
        "algbw_GBps": algbw,
        "busbw_GBps": algbw * spec.bus_factor(n),
        "network_bytes": process.value.bytes,
        "flows": process.value.flows,
        "algorithm": process.value.algorithm,
    }


def run(args) -> int:
    if args.op not in OPS:
        raise ScenarioError(f"unknown op {args.op!r}; known: {', '.join(OPS)}", "op")
    min_bytes = parse_size(args.min_bytes, "--min-bytes")
    max_bytes = parse_size(args.max_bytes, "--max-bytes")
    if min_bytes > max_bytes:
        raise ScenarioError(f"must be <= --max-bytes ({max_bytes} bytes), got {min_bytes} bytes",
                            "--min-bytes")
    factor = _number(args.factor, "--factor", float, 1, strict=True)
    alpha_us = _number(args.alpha_us, "--alpha-us", float, 0)
    table = sizes(min_bytes, max_bytes, factor)
    graph, group = _topology(args)
    check_flow_budget(args.op, graph, group)
    paths = PathTable(graph)
    algorithm = check_algorithm(args.op, getattr(args, "algo", "auto") or "auto", paths, group)
    rows = [row for size in table
            if (row := simulate(args.op, paths, group, size, alpha_us * 1e-6, algorithm)) is not None]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    show_algo = topologies.is_calibrated(graph) or algorithm != "auto"
    print(f"# moesim collective {args.op}: {graph.graph.get('name', args.topology)}, "
          f"{len(group)} GPUs, alpha {alpha_us:g} us, simulated (max-min fair flows)")
    print("#")
    algo_head = ("  " + f"{'algo':>6}", "  " + f"{'':>6}") if show_algo else ("", "")
    print(f"# {'size':>10}  {'count':>12}  {'type':>8}  {'redop':>6}  {'time':>9}  {'algbw':>7}  {'busbw':>7}"
          f"{algo_head[0]}")
    print(f"# {'(B)':>10}  {'(elements)':>12}  {'':>8}  {'':>6}  {'(us)':>9}  {'(GB/s)':>7}  {'(GB/s)':>7}"
          f"{algo_head[1]}".rstrip())
    for row in rows:
        algo = f"  {row['algorithm']:>6}" if show_algo else ""
        print(f"  {row['bytes']:>10}  {row['count']:>12}  {row['type']:>8}  {row['redop']:>6}  "
              f"{row['time_us']:>9.2f}  {row['algbw_GBps']:>7.2f}  {row['busbw_GBps']:>7.2f}{algo}")
    if rows:
        average = sum(row["busbw_GBps"] for row in rows) / len(rows)
        print(f"# Avg bus bandwidth    : {average:g}")
    return 0

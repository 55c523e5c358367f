"""Collectives as SimPy processes made of `FlowNetwork` transfers and their step dependencies.

Each collective is a generator function used as ``env.process(all_to_all(net, group, nbytes))``
on a group of GPU node names; the process's value is a `CollectiveRecord`. Timing is never
written here: it emerges from the flows (max-min sharing, alpha, latency) and from the order in
which the algorithm lets them start. Reductions are taken as free (the network, not the ALU,
bounds a collective's bus bandwidth); the engine charges compute separately if it wants to.

Size conventions follow nccl-tests: `all_reduce` and `reduce_scatter` take the bytes of one
rank's input buffer, `all_gather` the bytes of one rank's output buffer, `all_to_all` the bytes
one rank sends to one peer (or an n x n matrix of them).

NCCL's algorithms (`algorithm=`): ring (one ring in group order, the default; `channels` rings
rotated inside each server so that they leave it through different NICs), tree (NCCL's double
binary tree across servers with a chain inside each, as a fluid pipeline), nvls (NVLink SHARP:
the NVSwitch reduces and multicasts; NVSwitch-4 and later) for all-reduce; direct and pxn
(rail-aligned: forward inside the server to the GPU on the destination's rail first) for
all-to-all; "auto" picks what NCCL's tuner would: the candidate the model predicts fastest on an
idle network (`choose_algorithm`).

On a calibrated topology (`topologies.calibrate`, the reference systems) two measured costs are
added: every message waits the largest `message_latency_s` of the links on its path (NCCL's
per-step software latency), and every collective starts after a launch latency per algorithm
(`data/collective_tuning.yaml`). On an uncalibrated graph both are zero and the closed forms in
docs/collectives.md hold exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import simpy
import yaml

from simulator.errors import ScenarioError
from simulator.registry import Registry
from simulator.engine.network import FlowNetwork
from topologies.links import link_catalogue
from topologies.paths import PathTable


@dataclass(frozen=True)
class CollectiveRecord:
    """One collective as it ran: times in simulated seconds, sizes in bytes.

    `bytes` is what crossed the network (sum of its flows); `sent_bytes` / `received_bytes` are
    per member of `group` (network bytes, forwarding included); `delivered_bytes` is the payload
    whose final destination is that member (equals `received_bytes` unless the algorithm
    forwards data, as the hierarchical all-to-all does).
    """

    op: str
    group: tuple[str, ...]
    start_s: float
    end_s: float
    bytes: float
    flows: int
    sent_bytes: tuple[float, ...]
    received_bytes: tuple[float, ...]
    delivered_bytes: tuple[float, ...]
    algorithm: str = ""

    @property
    def time_s(self) -> float:
        return self.end_s - self.start_s


def _record(op: str, group: Sequence[str], start_s: float, end_s: float, sent: np.ndarray,
            received: np.ndarray, flows: int, delivered: np.ndarray | None = None,
            algorithm: str = "") -> CollectiveRecord:
    delivered = received if delivered is None else delivered
    return CollectiveRecord(
        op=op, group=tuple(group), start_s=start_s, end_s=end_s, bytes=float(sent.sum()),
        flows=flows, sent_bytes=tuple(float(x) for x in sent),
        received_bytes=tuple(float(x) for x in received),
        delivered_bytes=tuple(float(x) for x in delivered), algorithm=algorithm,
    )


# ------------------------------------------------------------------ calibrated costs


@cache
def tuning() -> dict[str, Any]:
    """Per-algorithm constants (launch latencies) with their sources, from data/collective_tuning.yaml."""
    text = resources.files("simulator").joinpath("data/collective_tuning.yaml").read_text()
    return yaml.safe_load(text)


def _calibration(net: FlowNetwork) -> Mapping[str, Any] | None:
    graph = getattr(net.paths, "graph", None)
    return graph.graph.get("calibration") if graph is not None else None


def launch_s(net: FlowNetwork, algorithm: str) -> float:
    """Launch latency of one collective of `algorithm` (0 on an uncalibrated topology).

    The topology's calibration may override the defaults of data/collective_tuning.yaml
    (``launch_us: {ring: ...}``, or one number for every algorithm).
    """
    calibration = _calibration(net)
    if calibration is None:
        return 0.0
    override = calibration.get("launch_us")
    if isinstance(override, Mapping) and algorithm in override:
        return float(override[algorithm]) * 1e-6
    if override is not None and not isinstance(override, Mapping):
        return float(override) * 1e-6
    return float(tuning()["launch_us"][algorithm]["value"]) * 1e-6


# NCCL's link classes, from the one that sets a path's per-step latency down: a path through the
# network costs a network message, else one through PCIe (or between sockets) a PCIe message.
_CLASS_RANK = {"network": 3, "inter-socket": 2, "pcie": 2, "gpu-switch": 1, "gpu-link": 1}


def _message_latency_by_link(paths: PathTable) -> tuple[np.ndarray, np.ndarray]:
    """Each link's per-message latency (s) and class rank, once per PathTable (kept on it)."""
    cached = paths.__dict__.get("_message_latency_s")
    if cached is None:
        catalogue = link_catalogue()
        edges = [paths.graph.edges[e] for e in paths.links]
        latency = np.array([data.get("message_latency_s", 0.0) for data in edges], dtype=float)
        rank = np.array([_CLASS_RANK.get(catalogue[d["kind"]].family, 0) if d["kind"] in catalogue else 0
                         for d in edges], dtype=np.int64)
        cached = paths.__dict__["_message_latency_s"] = (latency, rank)
    return cached


def message_latency_s(paths: PathTable, src: str, dst: str) -> float:
    """Software latency of one message from `src` to `dst`: that of the path's highest link class
    (NCCL's per-step latency depends on whether a step crosses the network, PCIe or only NVLink)."""
    latency, rank = _message_latency_by_link(paths)
    if not latency.any():  # uncalibrated: nothing to look up
        return 0.0
    cache = paths.__dict__.setdefault("_message_latency_pair", {})
    value = cache.get((src, dst))
    if value is None:
        route = paths.path(src, dst)
        value = 0.0
        if len(route):
            top = rank[route] == rank[route].max()
            value = float(latency[route][top].max())
        cache[(src, dst)] = value
    return value


def _start(net: FlowNetwork, algorithm: str) -> Generator:
    """Wait out the launch latency (nothing at all on an uncalibrated topology)."""
    delay = launch_s(net, algorithm)
    if delay > 0:
        yield net.env.timeout(delay)


def _send_many(net: FlowNetwork, srcs: Sequence[str], dsts: Sequence[str], sizes: Any,
               tag: Any) -> simpy.Event:
    """`transfer_many`, each flow first waiting its message latency (one batch per distinct latency).

    Without per-message latencies (uncalibrated topology) this is exactly one `transfer_many`.
    """
    sizes = np.broadcast_to(np.asarray(sizes, dtype=float), (len(srcs),))
    if not len(srcs) or not _message_latency_by_link(net.paths)[0].any():
        return net.transfer_many(list(srcs), list(dsts), sizes, tag=tag)
    delays = np.array([message_latency_s(net.paths, a, b) for a, b in zip(srcs, dsts)])
    if not np.any(delays > 0):
        return net.transfer_many(list(srcs), list(dsts), sizes, tag=tag)
    env = net.env

    def batch(delay: float, mask: np.ndarray) -> Generator:
        yield env.timeout(delay)
        yield net.transfer_many([s for s, m in zip(srcs, mask) if m], [d for d, m in zip(dsts, mask) if m],
                                sizes[mask], tag=tag)

    return env.all_of([env.process(batch(float(delay), delays == delay)) for delay in np.unique(delays)])


def _send_one(net: FlowNetwork, src: str, dst: str, nbytes: float, tag: Any) -> Generator:
    """One transfer after its message latency; returns its FlowRecord."""
    delay = message_latency_s(net.paths, src, dst)
    if delay > 0:
        yield net.env.timeout(delay)
    return (yield net.transfer(src, dst, nbytes, tag=tag))


def _check_group(group: Sequence[str]) -> list[str]:
    group = list(group)
    if len(set(group)) != len(group):
        raise ScenarioError(f"a collective's group must not repeat a GPU, got {group}", "group")
    return group


def _check_size(nbytes: float, field: str = "nbytes") -> float:
    if not (np.isfinite(nbytes) and nbytes >= 0):
        raise ScenarioError(f"must be a finite number of bytes >= 0, got {nbytes}", field)
    return float(nbytes)


def _send_matrix(nbytes: Any, n: int) -> np.ndarray:
    """Bytes i sends to j as an n x n matrix with a zero diagonal (local data never moves)."""
    sizes = np.asarray(nbytes, dtype=float)
    if sizes.ndim == 0:
        matrix = np.full((n, n), _check_size(float(sizes)))
    elif sizes.shape == (n, n):
        if not (np.all(np.isfinite(sizes)) and sizes.min(initial=0.0) >= 0):
            raise ScenarioError("every entry must be a finite number of bytes >= 0", "nbytes")
        matrix = sizes.copy()
    else:
        raise ScenarioError(f"must be a scalar or a {n} x {n} matrix, got shape {sizes.shape}",
                            "nbytes")
    np.fill_diagonal(matrix, 0.0)
    return matrix


def point_to_point(net: FlowNetwork, src: str, dst: str, nbytes: float,
                   tag: Any = "point_to_point") -> Generator:
    """One message from `src` to `dst`."""
    start_s = net.env.now
    nbytes = _check_size(nbytes)
    if src != dst:
        yield from _start(net, "p2p")
    yield from _send_one(net, src, dst, nbytes, tag)
    moved = 0.0 if src == dst else nbytes
    return _record("point_to_point", [src, dst], start_s, net.env.now,
                   np.array([moved, 0.0]), np.array([0.0, moved]), int(src != dst), algorithm="p2p")


def sendrecv(net: FlowNetwork, group: Sequence[str], nbytes: float,
             tag: Any = "sendrecv") -> Generator:
    """Every member sends `nbytes` to the next member in group order, all at once (nccl-tests'
    sendrecv: rank r sends to r+1 and receives from r-1, modulo n)."""
    group = _check_group(group)
    nbytes = _check_size(nbytes)
    n = len(group)
    start_s = net.env.now
    per = np.full(n, nbytes if n > 1 else 0.0)
    pairs = [(group[i], group[(i + 1) % n]) for i in range(n)] if n > 1 and nbytes > 0 else []
    if pairs:
        yield from _start(net, "p2p")
    yield _send_many(net, [a for a, _ in pairs], [b for _, b in pairs], nbytes, tag)
    return _record("sendrecv", group, start_s, net.env.now, per, per, len(pairs), algorithm="p2p")


def all_to_all(net: FlowNetwork, group: Sequence[str], nbytes: Any,
               tag: Any = "all_to_all", algorithm: str | None = None) -> Generator:
    """All-to-all; by default direct: every (i, j) flow starts at once.

    `nbytes` is the bytes each member sends to each other member, or an n x n matrix
    (`nbytes[i][j]` = bytes member i sends to member j; the diagonal stays local). Pairs with 0
    bytes send nothing. `algorithm`: "direct", "pxn" (rail-aligned, `hierarchical_all_to_all`)
    or "auto" (NCCL's choice, see `choose_algorithm`); None: the topology's
    ``algorithms: {all_to_all: ...}``, else direct.
    """
    algorithm = default_algorithm(net, "all_to_all", algorithm)
    if algorithm != "direct":
        algorithm, _ = _resolve(net, "all_to_all", group, nbytes, algorithm, {})
        if algorithm == "pxn":
            record = yield from hierarchical_all_to_all(net, group, nbytes, tag=tag)
            return _renamed(record, "all_to_all")
    group = _check_group(group)
    matrix = _send_matrix(nbytes, len(group))
    start_s = net.env.now
    src, dst = np.nonzero(matrix)
    if len(src):
        yield from _start(net, "direct")
    yield _send_many(net, [group[i] for i in src], [group[j] for j in dst], matrix[src, dst], tag)
    return _record("all_to_all", group, start_s, net.env.now, matrix.sum(axis=1),
                   matrix.sum(axis=0), len(src), algorithm="direct")


def _renamed(record: CollectiveRecord, op: str) -> CollectiveRecord:
    return CollectiveRecord(op, record.group, record.start_s, record.end_s, record.bytes, record.flows,
                            record.sent_bytes, record.received_bytes, record.delivered_bytes,
                            record.algorithm)


def hierarchical_all_to_all(
    net: FlowNetwork,
    group: Sequence[str],
    nbytes: Any,
    node_of: Mapping[str, int] | Callable[[str], int] | None = None,
    tag: Any = "hierarchical_all_to_all",
) -> Generator:
    """Two-stage all-to-all: aggregate inside each server, then one message per remote server.

    Members are numbered by local rank (their order within their server in `group`); every
    server must hold the same number of members. Stage 1 (intra-server): member (a, r) sends to
    (a, r') everything it has for local rank r' on any server. Stage 2 (inter-server, "rail"
    traffic between equal local ranks): as soon as (a, r') has received all of its stage-1
    data, it sends to (b, r') everything server a has for (b, r'). Each inter-server pair thus
    carries one large message instead of g x g small ones. Each destination receives exactly
    the bytes the direct `all_to_all` would deliver (`delivered_bytes`); the network carries
    more (`bytes`), as intra-server forwarding is added. This is NCCL's PXN ("pxn") path: data
    for a remote GPU first crosses NVLink to the local GPU on that GPU's rail.

    `node_of` maps a GPU name to its server (default: the graph's ``node_id`` attribute).
    """
    group = _check_group(group)
    n = len(group)
    matrix = _send_matrix(nbytes, n)
    env = net.env
    start_s = env.now
    if node_of is None:
        node_of = {name: net.paths.graph.nodes[name]["node_id"] for name in group}
    lookup = node_of.__getitem__ if isinstance(node_of, Mapping) else node_of
    node_ids = [lookup(name) for name in group]
    servers = sorted(set(node_ids))
    members = {s: [k for k in range(n) if node_ids[k] == s] for s in servers}
    sizes = {len(m) for m in members.values()}
    if len(sizes) > 1:
        raise ScenarioError(
            f"hierarchical all-to-all needs the same number of GPUs on every server, got "
            f"{ {s: len(m) for s, m in members.items()} }", "group")
    g = sizes.pop() if sizes else 0
    if matrix.any():
        yield from _start(net, "pxn")
    # index[a, r] = group position of local rank r on server a
    index = np.array([members[s] for s in servers], dtype=np.int64).reshape(len(servers), g)
    by_server = matrix[index.reshape(-1)][:, index.reshape(-1)].reshape(len(servers), g, len(servers), g)
    # stage 1: (a, r) -> (a, r') carries sum over servers b of M[(a,r), (b,r')]
    stage1 = by_server.sum(axis=2)  # [a, r, r']
    # stage 2: (a, r') -> (b, r') carries sum over r of M[(a,r), (b,r')], for b != a
    stage2 = by_server.sum(axis=1)  # [a, b, r']
    sent = np.zeros(n)
    received = np.zeros(n)
    # direct deliveries in stage 1 (final destination on the same server) + all of stage 2
    delivered = np.zeros(n)
    flows = 0
    inbound = []
    for a in range(len(servers)):
        for r2 in range(g):
            srcs = [r for r in range(g) if r != r2 and stage1[a, r, r2] > 0]
            dst = int(index[a, r2])
            sizes1 = np.array([stage1[a, r, r2] for r in srcs])
            sent[index[a, srcs]] += sizes1
            received[dst] += sizes1.sum()
            delivered[dst] += sum(by_server[a, r, a, r2] for r in srcs)
            flows += len(srcs)
            inbound.append(_send_many(net, [group[index[a, r]] for r in srcs],
                                      [group[dst]] * len(srcs), sizes1, tag))

    def forward(a: int, r2: int, received_event: simpy.Event) -> Generator:
        yield received_event
        dsts = [b for b in range(len(servers)) if b != a and stage2[a, b, r2] > 0]
        yield _send_many(net, [group[index[a, r2]]] * len(dsts), [group[index[b, r2]] for b in dsts],
                         [stage2[a, b, r2] for b in dsts], tag)

    for a in range(len(servers)):
        for r2 in range(g):
            for b in range(len(servers)):
                if b != a and stage2[a, b, r2] > 0:
                    sent[index[a, r2]] += stage2[a, b, r2]
                    received[index[b, r2]] += stage2[a, b, r2]
                    delivered[index[b, r2]] += stage2[a, b, r2]
                    flows += 1
    forwards = [env.process(forward(a, r2, inbound[a * g + r2]))
                for a in range(len(servers)) for r2 in range(g)]
    yield env.all_of(forwards)
    return _record("hierarchical_all_to_all", group, start_s, env.now, sent, received,
                   flows, delivered, algorithm="pxn")


# ------------------------------------------------------------------ rings


def servers_of(paths: PathTable, group: Sequence[str]) -> list[list[str]]:
    """The group split by server (the GPUs' ``node_id``), each in group order, servers in order of
    first appearance."""
    nodes = paths.graph.nodes
    out: dict[Any, list[str]] = {}
    for name in group:
        out.setdefault(nodes[name].get("node_id", 0), []).append(name)
    return list(out.values())


def ring_orders(paths: PathTable, group: Sequence[str], channels: int = 1) -> list[list[str]]:
    """One ring order per channel. Channel c visits every server's members rotated by c, so that
    the rings leave each server from different GPUs, hence through different NICs (NCCL builds
    its rings the same way). With one server every rotation is the same ring."""
    group = list(group)
    if channels < 1 or int(channels) != channels:
        raise ScenarioError(f"must be an integer >= 1, got {channels!r}", "channels")
    if channels == 1:
        return [group]
    servers = servers_of(paths, group)
    return [[name for members in servers for name in members[c % len(members):] + members[:c % len(members)]]
            for c in range(int(channels))]


def _rings(net: FlowNetwork, op: str, group: Sequence[str], orders: list[list[str]], chunk_bytes: float,
           steps: int, tag: Any) -> Generator:
    """`steps` ring steps of `chunk_bytes` from each member to the next, on every ring of `orders`
    at once (one channel each).

    Step s of a member starts when it has received its step s-1 chunk from its predecessor and
    finished sending its own step s-1 chunk: a data dependency per member, not a barrier. On a
    calibrated topology the ring is pipelined as NCCL's is (up to NCCL_STEPS = 8 chunks in flight
    per connection): a step waits for the predecessor's chunk only, so a slow hop (a network link)
    adds its latency once along the ring instead of pacing every member's every step.
    """
    env = net.env
    pipelined = _calibration(net) is not None
    group = _check_group(group)
    n = len(group)
    start_s = env.now
    if n < 2 or steps == 0:
        yield env.timeout(0)
        zero = np.zeros(n)
        return _record(op, group, start_s, env.now, zero, zero, 0, algorithm="ring")
    yield from _start(net, "ring")
    done = env.event()
    _RingRun(net, orders, chunk_bytes, steps, tag, pipelined, done).start()
    yield done
    per = np.full(n, chunk_bytes * steps * len(orders))
    return _record(op, group, start_s, env.now, per, per, n * steps * len(orders), algorithm="ring")


class _RingRun:
    """The members of `_rings` as one state machine driven by the network's flow completions.

    Same dependencies as a process per member (step s of member i starts when its step s-1
    chunk has arrived and, unpipelined, its own step s-1 send is done; a member is done when
    its last send is done and its last chunk is in), at the same instants, but the sends that
    become ready at one completion instant go to the network as one request
    (`FlowNetwork.transfer_each`), with no SimPy event per step. Sends that first wait their
    per-message latency are grouped by that latency (one timeout each).
    """

    def __init__(self, net: FlowNetwork, orders: list[list[str]], chunk_bytes: float, steps: int,
                 tag: Any, pipelined: bool, done: simpy.Event):
        self.net, self.chunk, self.steps, self.tag = net, chunk_bytes, steps, tag
        self.pipelined, self.done = pipelined, done
        n = len(orders[0])
        # member m = ring * n + i sends to next_of[m]
        self.name = [name for order in orders for name in order]
        self.next_of = [(m // n) * n + (m % n + 1) % n for m in range(len(self.name))]
        self.delay = [message_latency_s(net.paths, self.name[m], self.name[self.next_of[m]])
                      for m in range(len(self.name))]
        members = len(self.name)
        self.to_send = [0] * members   # next step to start
        self.received = [0] * members  # chunks arrived
        self.sent = [0] * members      # own sends completed
        self.last_done = [False] * members  # own step steps-1 send completed
        self.finished = [False] * members
        self.unfinished = members
        self.flow_of: dict[int, tuple[int, int]] = {}  # network flow id -> (member, step)

    def start(self) -> None:
        self._send(list(range(len(self.name))))

    def _ready(self, m: int) -> bool:
        s = self.to_send[m]
        if s >= self.steps:
            return False
        return s == 0 or (self.received[m] >= s and (self.pipelined or self.sent[m] >= s))

    def _send(self, members: list[int]) -> None:
        """Start the next step of each of `members` (ready now), after its message latency."""
        now_batch, later = [], {}
        for m in members:
            step = self.to_send[m]
            self.to_send[m] = step + 1
            delay = self.delay[m]
            (now_batch if delay <= 0 else later.setdefault(delay, [])).append((m, step))
        if now_batch:
            self._request(now_batch)
        for delay, batch in later.items():
            timeout = self.net.env.timeout(delay)
            timeout.callbacks.append(lambda _event, batch=batch: self._request(batch))

    def _request(self, batch: list[tuple[int, int]]) -> None:
        name, next_of = self.name, self.next_of
        ids = self.net.transfer_each([name[m] for m, _ in batch], [name[next_of[m]] for m, _ in batch],
                                     self.chunk, self.tag, self._on_done)
        for flow, sender in zip(ids.tolist(), batch):
            self.flow_of[flow] = sender

    def _on_done(self, ids: np.ndarray) -> None:
        touched = []
        for flow in ids.tolist():
            m, step = self.flow_of.pop(flow)
            nxt = self.next_of[m]
            self.sent[m] += 1
            self.received[nxt] += 1
            if step == self.steps - 1:
                self.last_done[m] = True
            touched += [m, nxt]
        touched = list(dict.fromkeys(touched))
        ready = [k for k in touched if self._ready(k)]
        while ready:  # (pipelined: a member may start several steps at one instant)
            self._send(ready)
            ready = [k for k in ready if self._ready(k)]
        for k in touched:
            if not self.finished[k] and self.last_done[k] and self.received[k] >= self.steps:
                self.finished[k] = True
                self.unfinished -= 1
        if not self.unfinished:
            self.done.succeed()

def _ring_op(net: FlowNetwork, op: str, group: Sequence[str], nbytes_total: float, steps_of: Callable[[int], int],
             tag: Any, algorithm: str | None, channels: int | None) -> Generator:
    n = len(group)
    nbytes_total = _check_size(nbytes_total)
    algorithm, options = _resolve(net, op, group, nbytes_total, default_algorithm(net, op, algorithm),
                                  {"channels": channels})
    channels = options.get("channels") or channels
    if channels is None:  # NCCL's channels on a calibrated topology, one ring otherwise
        servers = servers_of(net.paths, group)
        channels = _ring_channels(net.paths, servers) if _calibration(net) is not None and len(servers) > 1 else 1
    orders = ring_orders(net.paths, group, channels) if n > 1 else [list(group)]
    chunk = nbytes_total / max(n, 1) / len(orders)
    return (yield from _rings(net, op, group, orders, chunk, steps_of(n), tag))


def reduce_scatter(net: FlowNetwork, group: Sequence[str], nbytes_total: float,
                   tag: Any = "reduce_scatter", algorithm: str | None = None, channels: int | None = None) -> Generator:
    """Ring reduce-scatter of a buffer of `nbytes_total` per member: n-1 steps of nbytes/n
    (split over `channels` rings; None: one, or NCCL's on a calibrated topology). `algorithm`:
    "ring" or "auto"; None: the topology's ``algorithms:`` choice, else ring."""
    return (yield from _ring_op(net, "reduce_scatter", group, nbytes_total, lambda n: n - 1, tag,
                                algorithm, channels))


def all_gather(net: FlowNetwork, group: Sequence[str], nbytes_total: float,
               tag: Any = "all_gather", algorithm: str | None = None, channels: int | None = None) -> Generator:
    """Ring all-gather into a buffer of `nbytes_total` per member (each contributes nbytes/n):
    n-1 steps of nbytes/n (split over `channels` rings, as for `reduce_scatter`). `algorithm`:
    "ring" or "auto"; None: the topology's ``algorithms:`` choice, else ring."""
    return (yield from _ring_op(net, "all_gather", group, nbytes_total, lambda n: n - 1, tag,
                                algorithm, channels))


def all_reduce(net: FlowNetwork, group: Sequence[str], nbytes_total: float,
               tag: Any = "all_reduce", algorithm: str | None = None, channels: int | None = None) -> Generator:
    """All-reduce of a buffer of `nbytes_total` per member.

    "ring" (default): reduce-scatter then all-gather, 2(n-1) steps of nbytes/n, chained per
    member with no barrier between the two halves (split over `channels` rings, as for
    `reduce_scatter`); "tree" (`tree_all_reduce`), "nvls" (`nvls_all_reduce`) or "auto" (NCCL's
    choice). None: the topology's ``algorithms: {all_reduce: ...}``, else ring.
    """
    algorithm = default_algorithm(net, "all_reduce", algorithm)
    if algorithm != "ring":
        algorithm, options = _resolve(net, "all_reduce", group, nbytes_total, algorithm, {"channels": channels})
        if algorithm == "tree":
            return _renamed((yield from tree_all_reduce(net, group, nbytes_total, tag)), "all_reduce")
        if algorithm == "nvls":
            return _renamed((yield from nvls_all_reduce(net, group, nbytes_total, tag)), "all_reduce")
        channels = options.get("channels") or channels
    return (yield from _ring_op(net, "all_reduce", group, nbytes_total, lambda n: 2 * (n - 1), tag,
                                "ring", channels))


# ------------------------------------------------------------------ NVLS and tree (fluid pipelines)


def nvls_switch(paths: PathTable, group: Sequence[str]) -> tuple[str, float] | None:
    """The NVSwitch every member is attached to and its NVLS efficiency, or None when NVLS is not
    possible (members on different switches or servers, or a switch generation before NVSwitch-4)."""
    graph = paths.graph
    switch, efficiency = None, None
    for name in group:
        found = None
        for _, peer, data in graph.out_edges(name, data=True):
            if graph.nodes[peer].get("kind") != "switch":
                continue
            spec = link_catalogue().get(data["kind"])
            eff = data.get("nvls_efficiency", spec.nvls_efficiency if spec is not None else 0.0)
            if eff > 0:
                found = (peer, eff)
                break
        if found is None or (switch is not None and found[0] != switch):
            return None
        switch, efficiency = found[0], found[1] if efficiency is None else min(efficiency, found[1])
    if switch is None or len(group) < 2:
        return None
    return switch, efficiency


def _stream(net: FlowNetwork, srcs: list[str], dsts: list[str], sizes: Any, fill_s: float,
            tag: Any) -> Generator:
    """A pipelined algorithm as fluid streams: every edge streams its bytes at once, after the
    pipeline's fill latency `fill_s` (the first chunk's trip through the whole pipeline)."""
    own = [net.alpha_s + net.paths.path_latency_s(a, b) for a, b in zip(srcs, dsts)]
    wait = fill_s - max(own, default=0.0)
    if wait > 0:
        yield net.env.timeout(wait)
    yield net.transfer_many(srcs, dsts, sizes, tag=tag)


def _hop_s(net: FlowNetwork, src: str, dst: str) -> float:
    return net.alpha_s + net.paths.path_latency_s(src, dst) + message_latency_s(net.paths, src, dst)


def nvls_all_reduce(net: FlowNetwork, group: Sequence[str], nbytes_total: float,
                    tag: Any = "all_reduce") -> Generator:
    """NVLink SHARP all-reduce: the NVSwitch reduces (multimem load-reduce) and multicasts (store).

    Each GPU's port carries N (its data, read by the switch for the reduction) + N/n (its reduced
    slice, stored for multicast) up, and N/n + N down, both ways at once as a pipeline, each
    divided by the switch's NVLS efficiency: time ~ N (1 + 1/n) / (port bandwidth x efficiency),
    against 2 (n-1)/n N / port for a ring. Needs every member on one NVSwitch-4 or later.
    """
    group = _check_group(group)
    nbytes_total = _check_size(nbytes_total)
    n = len(group)
    env = net.env
    start_s = env.now
    found = nvls_switch(net.paths, group)
    if found is None:
        raise ScenarioError("nvls needs every GPU of the group on one NVSwitch-4 or later (H100, H200, B200) "
                            "in one server", "algorithm")
    switch, efficiency = found
    per = nbytes_total * (1 + 1 / n) / efficiency
    if nbytes_total == 0:
        yield env.timeout(0)
        zero = np.zeros(n)
        return _record("nvls_all_reduce", group, start_s, env.now, zero, zero, 0, algorithm="nvls")
    yield from _start(net, "nvls")
    fill = max(_hop_s(net, g, switch) for g in group) + max(_hop_s(net, switch, g) for g in group)
    yield from _stream(net, list(group) + [switch] * n, [switch] * n + list(group), per, fill, tag)
    sent = np.full(n, per)
    return _record("nvls_all_reduce", group, start_s, env.now, sent, sent, 2 * n, algorithm="nvls")


def tree_edges(paths: PathTable, group: Sequence[str], channels: int | None = None
               ) -> list[list[tuple[str, str]]]:
    """Per channel, the (child, parent) edges of NCCL's tree: a chain inside each server (rotated
    by the channel, so each channel's head, which talks to other servers, uses a different NIC) and
    a binary tree over the servers' heads, mirrored on odd channels (NCCL's double binary tree: a
    server that is a leaf of one tree is inside the other)."""
    servers = servers_of(paths, group)
    sizes = {len(members) for members in servers}
    if len(sizes) > 1:
        raise ScenarioError(f"tree needs the same number of GPUs on every server, got "
                            f"{[len(m) for m in servers]}", "group")
    g, m = sizes.pop(), len(servers)
    channels = g if channels is None else int(channels)
    out = []
    for c in range(channels):
        chains = [members[c % g:] + members[:c % g] for members in servers]
        heap = list(range(m)) if c % 2 == 0 else list(reversed(range(m)))
        edges = [(chain[k], chain[k - 1]) for chain in chains for k in range(1, g)]
        edges += [(chains[heap[p]][0], chains[heap[(p - 1) // 2]][0]) for p in range(1, m)]
        out.append(edges)
    return out


def tree_all_reduce(net: FlowNetwork, group: Sequence[str], nbytes_total: float,
                    tag: Any = "all_reduce", channels: int | None = None) -> Generator:
    """NCCL's tree all-reduce as a fluid pipeline: per channel (default one per GPU of a server),
    every tree edge streams its share up (reduce) and down (broadcast) at once, after the fill
    latency of the deepest leaf's trip to the root and back. Every stream is divided by NCCL's
    tree efficiency (data/collective_tuning.yaml): NCCL's tree does not reach its ideal bandwidth.
    """
    group = _check_group(group)
    nbytes_total = _check_size(nbytes_total)
    n = len(group)
    env = net.env
    start_s = env.now
    if n < 2 or nbytes_total == 0:
        yield env.timeout(0)
        zero = np.zeros(n)
        return _record("tree_all_reduce", group, start_s, env.now, zero, zero, 0, algorithm="tree")
    trees = tree_edges(net.paths, group, channels)
    share = nbytes_total / len(trees) / float(tuning()["tree_efficiency"]["value"])
    yield from _start(net, "tree")
    srcs, dsts, fill = [], [], 0.0
    for edges in trees:
        parent = dict(edges)
        for child, up in edges:
            srcs += [child, up]
            dsts += [up, child]
        # deepest trip: leaf -> root (up) and back (down)
        for leaf in set(parent) - set(parent.values()):
            node, up_s, down_s = leaf, 0.0, 0.0
            while node in parent:
                up_s += _hop_s(net, node, parent[node])
                down_s += _hop_s(net, parent[node], node)
                node = parent[node]
            fill = max(fill, up_s + down_s)
    yield from _stream(net, srcs, dsts, share, fill, tag)
    index = {name: k for k, name in enumerate(group)}
    sent, received = np.zeros(n), np.zeros(n)
    np.add.at(sent, [index[a] for a in srcs], share)
    np.add.at(received, [index[b] for b in dsts], share)
    return _record("tree_all_reduce", group, start_s, env.now, sent, received, len(srcs), algorithm="tree")


# ------------------------------------------------------------------ NCCL's algorithm choice


def _algorithms() -> dict[str, Registry]:
    """Per collective op, its algorithms (NCCL_ALGO names) and the function that runs each;
    "auto" is NCCL's choice among them (`choose_algorithm`)."""
    table = {
        "all_reduce": {"ring": all_reduce, "tree": tree_all_reduce, "nvls": nvls_all_reduce},
        "reduce_scatter": {"ring": reduce_scatter},
        "all_gather": {"ring": all_gather},
        "all_to_all": {"direct": all_to_all, "pxn": hierarchical_all_to_all},
    }
    registries = {}
    for op, algorithms in table.items():
        registry = registries[op] = Registry("algorithm", ScenarioError, scope=f" for {op}")
        registry.register("auto", choose_algorithm)
        for name, function in algorithms.items():
            registry.register(name, function)
    return registries



def check_algorithms(algorithms: Any, field: str) -> dict[str, str]:
    """A topology's ``algorithms: {op: name}`` checked once, when the scenario loads."""
    if not isinstance(algorithms, Mapping):
        raise ScenarioError(f"must be a mapping of collective -> algorithm name, got {algorithms!r}", field)
    for op, name in algorithms.items():
        if op not in ALGORITHM_REGISTRIES:
            raise ScenarioError(f"unknown collective {op!r}; allowed: {', '.join(ALGORITHM_REGISTRIES)}",
                                f"{field}.{op}")
        ALGORITHM_REGISTRIES[op].get(name, f"{field}.{op}")
    return dict(algorithms)


def candidates(op: str, paths: PathTable, group: Sequence[str]) -> list[tuple[str, dict]]:
    """The algorithms NCCL would consider for `op` on this group, with their options.

    Rings use one channel per GPU of a server when the group spans servers (so every NIC
    carries traffic), one ring otherwise. Tree and PXN need several servers with equal GPU
    counts; NVLS needs one NVSwitch-4 or later (`nvls_switch`).
    """
    servers = servers_of(paths, group)
    multi = len(servers) > 1
    even = len({len(members) for members in servers}) == 1
    ring = ("ring", {"channels": _ring_channels(paths, servers)} if multi else {"channels": 1})
    if op == "all_reduce":
        out = [ring]
        if multi and even:
            out.append(("tree", {}))
        if nvls_switch(paths, group) is not None:
            out.append(("nvls", {}))
        return out
    if op in ("reduce_scatter", "all_gather"):
        return [ring]
    if op == "all_to_all":
        return [("direct", {})] + ([("pxn", {})] if multi and even else [])
    raise ScenarioError(f"no algorithm choice for {op!r}; known: {', '.join(ALGORITHMS)}", "op")


def _ring_channels(paths: PathTable, servers: list[list[str]]) -> int:
    """Rings across servers: one per NIC of a server (NCCL's channels spread over the NICs; with a
    rotation per channel, ring c leaves each server from its GPU c), at most one per member."""
    graph = paths.graph
    node = graph.nodes[servers[0][0]].get("node_id", 0)
    nics = sum(1 for _, d in graph.nodes(data=True) if d.get("kind") == "nic" and d.get("node_id") == node)
    return max(1, min(max(len(m) for m in servers), nics or len(servers[0])))


def _run_alone(paths: PathTable, op: str, group: Sequence[str], nbytes: Any, algorithm: str, options: dict,
               alpha_s: float) -> float:
    env = simpy.Environment()
    net = FlowNetwork(env, paths, alpha_s=alpha_s)
    function = COLLECTIVES[op]
    process = env.process(function(net, group, nbytes, algorithm=algorithm, **options))
    env.run(process)
    return process.value.time_s


def choose_algorithm(op: str, paths: PathTable, group: Sequence[str], nbytes: Any,
                     alpha_s: float = 0.0) -> tuple[str, dict]:
    """NCCL's default: of the `candidates`, the one predicted fastest for this size.

    NCCL's tuner predicts each (algorithm, protocol)'s time from its own latency and bandwidth
    tables; here the prediction is this model's own, each candidate simulated alone on an idle
    network. Ties keep the earlier candidate (ring before tree before NVLS, direct before PXN).
    """
    options = candidates(op, paths, group)
    if len(options) == 1:
        return options[0]
    times = [_run_alone(paths, op, group, nbytes, name, dict(kwargs), alpha_s) for name, kwargs in options]
    return options[int(np.argmin(times))]


CLASSIC = {"all_reduce": "ring", "reduce_scatter": "ring", "all_gather": "ring", "all_to_all": "direct"}


def default_algorithm(net: FlowNetwork, op: str, algorithm: str | None) -> str:
    """`algorithm`, or when None the topology's choice (``topology: {..., algorithms: {op: name}}``,
    NCCL_ALGO for the scenario), or the classic default (ring, direct)."""
    if algorithm is not None:
        return algorithm
    graph = getattr(net.paths, "graph", None)
    chosen = (graph.graph.get("algorithms") or {}).get(op) if graph is not None else None
    if chosen is None:
        return CLASSIC[op]
    ALGORITHM_REGISTRIES[op].get(chosen, f"topology.algorithms.{op}")
    return chosen


def _resolve(net: FlowNetwork, op: str, group: Sequence[str], nbytes: Any, algorithm: str,
             options: dict) -> tuple[str, dict]:
    """Check `algorithm` for `op`; "auto" becomes NCCL's choice (with its options)."""
    if algorithm == "auto":
        return choose_algorithm(op, net.paths, list(group), nbytes, net.alpha_s)
    ALGORITHM_REGISTRIES[op].get(algorithm, "algorithm")
    return algorithm, options


# Registry (STYLE.md item 7): name -> generator function(net, group, nbytes, tag=...).
COLLECTIVES = Registry("collective", ScenarioError, sort_names=True)
for _function in (all_to_all, hierarchical_all_to_all, reduce_scatter, all_gather, all_reduce,
                  nvls_all_reduce, tree_all_reduce, sendrecv):
    COLLECTIVES.register(_function.__name__, _function)


def collective(name: str, field: str = "collective") -> Callable[..., Generator]:
    """Look a collective algorithm up by name; an unknown name lists the known ones."""
    return COLLECTIVES.factory(name, field)


# Built last: the algorithms' functions are defined above.
ALGORITHM_REGISTRIES = _algorithms()
ALGORITHMS = {op: registry.names()[1:] for op, registry in ALGORITHM_REGISTRIES.items()}

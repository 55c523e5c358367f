"""Collectives as SimPy processes made of `FlowNetwork` transfers and their step dependencies.

Each collective is a generator function used as ``env.process(all_to_all(net, group, nbytes))``
on a group of GPU node names; the process's value is a `CollectiveRecord`. Timing is never
written here: it emerges from the flows (max-min sharing, alpha, latency) and from the order in
which the algorithm lets them start. Reductions are taken as free (the network, not the ALU,
bounds a collective's bus bandwidth); the engine charges compute separately if it wants to.

Size conventions follow nccl-tests: `all_reduce` and `reduce_scatter` take the bytes of one
rank's input buffer, `all_gather` the bytes of one rank's output buffer, `all_to_all` the bytes
one rank sends to one peer (or an n x n matrix of them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator, Mapping, Sequence

import numpy as np
import simpy

from simulator.errors import ScenarioError
from simulator.network import FlowNetwork


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

    @property
    def time_s(self) -> float:
        return self.end_s - self.start_s


def _record(op: str, group: Sequence[str], start_s: float, end_s: float, sent: np.ndarray,
            received: np.ndarray, flows: int, delivered: np.ndarray | None = None) -> CollectiveRecord:
    delivered = received if delivered is None else delivered
    return CollectiveRecord(
        op=op, group=tuple(group), start_s=start_s, end_s=end_s, bytes=float(sent.sum()),
        flows=flows, sent_bytes=tuple(float(x) for x in sent),
        received_bytes=tuple(float(x) for x in received),
        delivered_bytes=tuple(float(x) for x in delivered),
    )


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
    yield net.transfer(src, dst, nbytes, tag=tag)
    moved = 0.0 if src == dst else nbytes
    return _record("point_to_point", [src, dst], start_s, net.env.now,
                   np.array([moved, 0.0]), np.array([0.0, moved]), int(src != dst))


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
    yield net.transfer_many([a for a, _ in pairs], [b for _, b in pairs], nbytes, tag=tag)
    return _record("sendrecv", group, start_s, net.env.now, per, per, len(pairs))


def all_to_all(net: FlowNetwork, group: Sequence[str], nbytes: Any,
               tag: Any = "all_to_all") -> Generator:
    """Direct pairwise all-to-all: every (i, j) flow starts at once.

    `nbytes` is the bytes each member sends to each other member, or an n x n matrix
    (`nbytes[i][j]` = bytes member i sends to member j; the diagonal stays local). Pairs with 0
    bytes send nothing.
    """
    group = _check_group(group)
    matrix = _send_matrix(nbytes, len(group))
    start_s = net.env.now
    src, dst = np.nonzero(matrix)
    yield net.transfer_many([group[i] for i in src], [group[j] for j in dst], matrix[src, dst],
                            tag=tag)
    return _record("all_to_all", group, start_s, net.env.now, matrix.sum(axis=1),
                   matrix.sum(axis=0), len(src))


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
    more (`bytes`), as intra-server forwarding is added.

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
            inbound.append(net.transfer_many([group[index[a, r]] for r in srcs],
                                             [group[dst]] * len(srcs), sizes1, tag=tag))

    def forward(a: int, r2: int, received_event: simpy.Event) -> Generator:
        yield received_event
        dsts = [b for b in range(len(servers)) if b != a and stage2[a, b, r2] > 0]
        yield net.transfer_many([group[index[a, r2]]] * len(dsts),
                                [group[index[b, r2]] for b in dsts],
                                [stage2[a, b, r2] for b in dsts], tag=tag)

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
                   flows, delivered)


def _ring(net: FlowNetwork, op: str, group: Sequence[str], chunk_bytes: float, steps: int,
          tag: Any) -> Generator:
    """`steps` ring steps of `chunk_bytes` from each member to the next (group order).

    Step s of member i starts when i has received its step s-1 chunk from its predecessor and
    finished sending its own step s-1 chunk: a data dependency per member, not a barrier.
    """
    env = net.env
    group = _check_group(group)
    n = len(group)
    start_s = env.now
    if n < 2 or steps == 0:
        yield env.timeout(0)
        zero = np.zeros(n)
        return _record(op, group, start_s, env.now, zero, zero, 0)
    # arrived[i][s]: member i has received its step-s chunk
    arrived = [[env.event() for _ in range(steps)] for _ in range(n)]

    def member(i: int) -> Generator:
        nxt = (i + 1) % n
        send = None
        for s in range(steps):
            if s:
                yield send & arrived[i][s - 1]
            send = net.transfer(group[i], group[nxt], chunk_bytes, tag=tag)
            send.callbacks.append(lambda _event, done=arrived[nxt][s]: done.succeed())
        yield send & arrived[i][steps - 1]

    yield env.all_of([env.process(member(i)) for i in range(n)])
    per = np.full(n, chunk_bytes * steps)
    return _record(op, group, start_s, env.now, per, per, n * steps)


def reduce_scatter(net: FlowNetwork, group: Sequence[str], nbytes_total: float,
                   tag: Any = "reduce_scatter") -> Generator:
    """Ring reduce-scatter of a buffer of `nbytes_total` per member: n-1 steps of nbytes/n."""
    n = len(group)
    chunk = _check_size(nbytes_total) / max(n, 1)
    return (yield from _ring(net, "reduce_scatter", group, chunk, n - 1, tag))


def all_gather(net: FlowNetwork, group: Sequence[str], nbytes_total: float,
               tag: Any = "all_gather") -> Generator:
    """Ring all-gather into a buffer of `nbytes_total` per member (each contributes nbytes/n):
    n-1 steps of nbytes/n."""
    n = len(group)
    chunk = _check_size(nbytes_total) / max(n, 1)
    return (yield from _ring(net, "all_gather", group, chunk, n - 1, tag))


def all_reduce(net: FlowNetwork, group: Sequence[str], nbytes_total: float,
               tag: Any = "all_reduce") -> Generator:
    """Ring all-reduce = reduce-scatter then all-gather: 2(n-1) steps of nbytes/n, chained per
    member with no barrier between the two halves."""
    n = len(group)
    chunk = _check_size(nbytes_total) / max(n, 1)
    return (yield from _ring(net, "all_reduce", group, chunk, 2 * (n - 1), tag))


# Registry (STYLE.md item 7): algorithm name -> generator function(net, group, nbytes, tag=...).
COLLECTIVES: dict[str, Callable[..., Generator]] = {
    "all_to_all": all_to_all,
    "hierarchical_all_to_all": hierarchical_all_to_all,
    "reduce_scatter": reduce_scatter,
    "all_gather": all_gather,
    "all_reduce": all_reduce,
    "sendrecv": sendrecv,
}


def collective(name: str, field: str = "collective") -> Callable[..., Generator]:
    """Look a collective algorithm up by name; an unknown name lists the known ones."""
    if name not in COLLECTIVES:
        raise ScenarioError(f"unknown collective {name!r}; known: {', '.join(sorted(COLLECTIVES))}",
                            field)
    return COLLECTIVES[name]

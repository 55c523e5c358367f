"""The simulated cluster: one clock, GPUs with a compute and a communication stream, a flow network.

Knows nothing of MoE (STYLE.md item 1): it runs kernels of a given cost on a GPU's compute stream,
runs collectives on the communication streams of a group, and records one immutable `Span` per
kernel or collective per GPU. What a kernel or collective *is* comes from the caller.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Generator

import networkx as nx
import simpy

from simulator.engine.network import FlowNetwork
from topologies.paths import PathTable, gpu_nodes

COMPUTE = "compute"
COMM = "comm"
COPY = "copy"


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it processes (reported as `events`).

    Every scheduled event takes the next id, so the events processed are the ids handed out
    less those still queued: no per-event bookkeeping in the loop.
    """

    @property
    def events_processed(self) -> int:
        # SimPy's ids are an itertools.count, which has no peek: its repr "count(N)" names the
        # next id (= events scheduled so far) without advancing it
        scheduled = int(repr(self._eid)[len("count("):-1])
        return scheduled - len(self._queue)


class Stream:
    """One GPU stream: runs one kernel or collective at a time, the others wait in FIFO order.

    Lighter than a `simpy.Resource` with the same order: taking an idle stream costs no event,
    and `release` hands the stream straight to the first waiter (one event to wake it).
    """

    __slots__ = ("busy", "waiting")

    def __init__(self) -> None:
        self.busy = False
        self.waiting: deque[simpy.Event] = deque()

    def acquire(self, env: simpy.Environment) -> simpy.Event | None:
        """Take the stream: None when it was idle (taken at once), else the event of one's turn."""
        if not self.busy:
            self.busy = True
            return None
        turn = env.event()
        self.waiting.append(turn)
        return turn

    def release(self) -> None:
        if self.waiting:
            self.waiting.popleft().succeed()  # stays busy: handed over
        else:
            self.busy = False


@dataclass(frozen=True)
class Span:
    """One kernel or one collective on one GPU stream, in simulated seconds."""

    gpu: int
    stream: str
    phase: str
    name: str
    iteration: int
    layer: int
    start_s: float
    end_s: float
    flops: float = 0.0
    bytes: float = 0.0


class Cluster:
    """GPUs of one topology sharing a clock and a max-min fair flow network."""

    def __init__(self, env: simpy.Environment, graph: nx.DiGraph, alpha_s: float = 0.0,
                 network_model: str = "exact"):
        self.env = env
        self.graph = graph
        self.paths = PathTable(graph)
        self.net = FlowNetwork(env, self.paths, alpha_s=alpha_s, model=network_model)
        self.gpus: list[str] = gpu_nodes(graph)
        self._streams = {
            (rank, stream): Stream() for rank in range(len(self.gpus)) for stream in (COMPUTE, COMM)
        }
        self._rendezvous: dict[Any, list] = {}
        self.spans: list[Span] = []

    def kernel(self, rank: int, cost: Any, phase: str, iteration: int, layer: int) -> Generator:
        """Run one kernel (anything with name, time_s, flops, bytes) on the GPU's compute stream.

        A kernel of zero time (no tokens) launches nothing and records nothing.
        """
        if cost.time_s <= 0:
            return
        env = self.env
        stream = self._streams[rank, COMPUTE]
        turn = stream.acquire(env)
        if turn is not None:
            yield turn
        start_s = env.now
        yield env.timeout(cost.time_s)
        self.spans.append(
            Span(rank, COMPUTE, phase, cost.name, iteration, layer, start_s, env.now,
                 cost.flops, cost.bytes)
        )
        stream.release()

    def collective(
        self,
        rank: int,
        key: Any,
        group: list[int],
        make: Callable[[list[str]], Generator],
        phase: str,
        name: str,
        iteration: int,
        layer: int,
        nbytes_of: Callable[[int], float] = lambda rank: 0.0,
    ) -> Generator:
        """Join collective `key` on the communication stream; it starts when every member has joined.

        `make(gpu_names)` returns the collective's SimPy generator (built from network flows).
        Every member's comm stream is held from its arrival to the collective's end, as an NCCL
        kernel would be; the recorded span covers the collective's active time. The last member
        to arrive runs the collective in its own process (no process per collective); the others
        wait for one shared event.
        """
        env = self.env
        stream = self._streams[rank, COMM]
        turn = stream.acquire(env)
        if turn is not None:
            yield turn
        entry = self._rendezvous.get(key)
        if entry is None:
            entry = self._rendezvous[key] = [0, None]
        entry[0] += 1
        if entry[0] == len(group):
            del self._rendezvous[key]
            start_s = env.now
            yield from make([self.gpus[r] for r in group])
            end_s = env.now
            self.spans.extend(
                Span(member, COMM, phase, name, iteration, layer, start_s, end_s, 0.0, nbytes_of(member))
                for member in group
            )
            if entry[1] is not None:
                entry[1].succeed()
        else:
            if entry[1] is None:
                entry[1] = env.event()
            yield entry[1]
        stream.release()

    def wait(self, rank: int, events: list, phase: str, name: str, iteration: int,
             layer: int) -> Generator:
        """Wait for `events` before the GPU's next kernel; the wait, if any, is recorded on its
        compute track (time the stream sat idle for them: what they cost the GPU)."""
        start_s = self.env.now
        yield self.env.all_of(events)
        if self.env.now > start_s:
            self.spans.append(Span(rank, COMPUTE, phase, name, iteration, layer, start_s, self.env.now))

    def copy(self, rank: int, src: str, dst: str, nbytes: float, phase: str, name: str,
             iteration: int, layer: int) -> Generator:
        """A point-to-point copy by the GPU's copy engine (e.g. expert weights to a new replica).

        Copy engines run beside the compute and NCCL streams, so copies take no stream slot;
        they still share every link with the other flows. Recorded on the `copy` track.
        """
        start_s = self.env.now
        yield self.net.transfer(src, dst, nbytes, tag=name)
        self.spans.append(
            Span(rank, COPY, phase, name, iteration, layer, start_s, self.env.now, 0.0, nbytes))

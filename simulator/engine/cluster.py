"""The simulated cluster: one clock, GPUs with a compute and a communication stream, a flow network.

Knows nothing of MoE (STYLE.md item 1): it runs kernels of a given cost on a GPU's compute stream,
runs collectives on the communication streams of a group, and records one immutable `Span` per
kernel or collective per GPU. What a kernel or collective *is* comes from the caller.
"""

from __future__ import annotations

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
    """A SimPy environment that counts the events it processes (reported as `events`)."""

    def __init__(self) -> None:
        super().__init__()
        self.events_processed = 0

    def step(self) -> None:
        self.events_processed += 1
        super().step()


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

    def __init__(self, env: simpy.Environment, graph: nx.DiGraph, alpha_s: float = 0.0):
        self.env = env
        self.graph = graph
        self.paths = PathTable(graph)
        self.net = FlowNetwork(env, self.paths, alpha_s=alpha_s)
        self.gpus: list[str] = gpu_nodes(graph)
        self._streams = {
            (rank, stream): simpy.Resource(env, capacity=1)
            for rank in range(len(self.gpus))
            for stream in (COMPUTE, COMM)
        }
        self._rendezvous: dict[Any, dict[str, Any]] = {}
        self.spans: list[Span] = []

    def device(self, rank: int) -> str:
        return self.graph.nodes[self.gpus[rank]]["device"]

    def kernel(self, rank: int, cost: Any, phase: str, iteration: int, layer: int) -> Generator:
        """Run one kernel (anything with name, time_s, flops, bytes) on the GPU's compute stream.

        A kernel of zero time (no tokens) launches nothing and records nothing.
        """
        if cost.time_s <= 0:
            return
        with self._streams[rank, COMPUTE].request() as slot:
            yield slot
            start_s = self.env.now
            yield self.env.timeout(cost.time_s)
            self.spans.append(
                Span(rank, COMPUTE, phase, cost.name, iteration, layer, start_s, self.env.now,
                     cost.flops, cost.bytes)
            )

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
        kernel would be; the recorded span covers the collective's active time.
        """
        with self._streams[rank, COMM].request() as slot:
            yield slot
            entry = self._rendezvous.setdefault(key, {"arrived": 0, "done": self.env.event()})
            entry["arrived"] += 1
            if entry["arrived"] == len(group):
                del self._rendezvous[key]
                self.env.process(self._run_collective(entry["done"], group, make, phase, name,
                                                      iteration, layer, nbytes_of))
            yield entry["done"]

    def _run_collective(self, done, group, make, phase, name, iteration, layer, nbytes_of):
        start_s = self.env.now
        yield self.env.process(make([self.gpus[r] for r in group]))
        for member in group:
            self.spans.append(
                Span(member, COMM, phase, name, iteration, layer, start_s, self.env.now,
                     0.0, nbytes_of(member))
            )
        done.succeed()

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

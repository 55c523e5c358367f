"""What a run leaves behind: flat, immutable records, bundled once (STYLE.md item 4).

`simulate()` returns one `RunRecords`; `summarize`, the timeline, the CSVs and the plots read only
this bundle, never the engine, the pipeline or the strategy objects. The run copies into it what
reports need beyond spans, flows and marks (routing counts, link capacities and carried bytes,
the strategy's outcome, counters), so a new report never touches the simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from simulator.engine.cluster import Span
from simulator.engine.network import FlowRecord

# The phases a span belongs to, in breakdown order (summary.json `breakdown_s`, iterations.csv).
PIPELINE_PHASES = ("attention", "predictor", "gate", "dispatch", "expert", "combine", "collective",
                   "replication", "optimizer")


@dataclass(frozen=True)
class Mark:
    """GPU `rank` finished `layer` of `iteration` at `time_s` (layer -1: the iteration began)."""

    rank: int
    iteration: int
    layer: int
    time_s: float


@dataclass(frozen=True)
class LinkRecords:
    """Per link id: its kind, capacity (bytes/s), the bytes it carried over the run and its
    (from, to) node names."""

    kind: tuple[str, ...]
    capacity_Bps: np.ndarray
    carried_bytes: np.ndarray
    ends: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RoutingRecords:
    """Token counts of the simulated iterations (numpy, decided before time ran).

    expert_pairs [I, L, G, E]: (token, k) pairs GPU g computed for expert e; dispatch_pairs
    [I, L, G, G]: pairs sent from owner to computing GPU; routed_pairs: pairs in the trace.
    """

    expert_pairs: np.ndarray
    dispatch_pairs: np.ndarray
    routed_pairs: int
    presorted_pairs: int
    token_bytes: int
    combine_pairs: np.ndarray | None = None  # token residency "expert": the combine's own matrix
    kv_bytes: np.ndarray | None = None  # [I, layers, G, G] K/V exchanged before attention


@dataclass(frozen=True)
class StrategyRecords:
    """What the predictor and the balancer decided and scored."""

    name: str
    family: str
    error: float | None
    accuracy: float | None
    fit_s: float
    notes: dict[str, Any]
    extra_replicas: tuple[int, ...]  # per iteration, beyond one per expert
    copies: int
    copied_bytes: float


@dataclass(frozen=True)
class RunRecords:
    """Everything one run emitted, with the resolved scenario it ran."""

    scenario: dict[str, Any]
    seed: int
    iterations: int
    gpus: int
    tokens: int
    stages: tuple[str, ...]  # labels of the `layer` index of spans and marks
    moe_layers: tuple[int, ...]  # model layer indices of the MoE layers
    spans: list[Span]
    flows: list[FlowRecord]
    marks: list[Mark]
    links: LinkRecords
    routing: RoutingRecords
    strategy: StrategyRecords
    memory_bytes: tuple[float, ...]  # per GPU
    counters: dict[str, Any] = field(default_factory=dict)  # events, wall_s
    # The resolved inputs (model, graph, trace, routing plan) for callers that inspect what ran;
    # reports never read it (the layer test keeps simulator.output off the scenario package).
    system: Any = field(default=None, repr=False, compare=False)

    @cached_property
    def _report(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        from simulator.output.summary import summarize

        return summarize(self)

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json's content."""
        return self._report[0]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """iterations.csv's rows."""
        return self._report[1]

    def timeline(self) -> dict[str, Any]:
        """timeline.json's content (Chrome trace events)."""
        from simulator.output.timeline import run_timeline

        return run_timeline(self)

    def expert_load(self) -> tuple[list[int], np.ndarray, np.ndarray]:
        """(MoE layer indices, before, after): pairs per [iteration, MoE layer, GPU].

        `after` from the routing actually simulated; `before` the same pairs placed by static
        round-robin (expert e on GPU e mod gpus), as summary.json's ``skewness.before``.
        """
        pairs = self.routing.expert_pairs  # [I, L, G, E]
        gpus, experts = pairs.shape[2], pairs.shape[3]
        round_robin = np.zeros((experts, gpus))
        round_robin[np.arange(experts), np.arange(experts) % gpus] = 1.0
        before = pairs.sum(axis=2) @ round_robin
        return list(self.moe_layers), before, pairs.sum(axis=3).astype(float)

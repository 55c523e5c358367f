"""How long a placement makes each GPU's expert phase take: the estimate time-aware balancers minimise.

Balancing token counts (MoE-GPS, EPLB, MoETuner) ignores two costs the simulator charges: every
replica re-reads its expert's full weights, so at ~100 tokens per expert a second replica costs
almost a whole expert's time instead of halving it; and a replica that is not yet on its GPU
must be copied there (hundreds of MB) before the layer can use it. This module prices both with
the same compute model the simulator runs (`simulator.model.compute`), so a balancer that
minimises it duplicates an expert only when the time it saves on the busiest GPU exceeds what the
new replica costs.

Per GPU g and MoE layer, a placement costs

    compute_s[g] = sum over replicas r on g of  expert_ffn(tokens_r).time_s     (FLOPs + weight reads)
    copy_s[g]    = sum over copies c into g of  latency + copy_bytes / bandwidth(src -> g)

where `tokens_r` is the expert's load split over its replicas by their shares, rounded the way
`simulator.planning.placement.assign_replicas` rounds the true tokens. The layer waits for its
busiest GPU, and copies are made once per re-plan `window` (iterations): in the first iteration
the layer takes max(compute_s + copy_s), in the others max(compute_s), so the estimate a balancer
minimises is the mean over the window,

    layer_s = (max_g(compute_s + copy_s) + (window - 1) * max_g(compute_s)) / window.

(Averaging copies into each GPU first and taking the max would let an idle GPU "absorb" a copy that
in fact delays the first iteration for everyone.) Copies are charged in full, as if none of it
hid behind other work, so a balancer that trusts this estimate plans no copy that could only pay
if hidden. With grouped GEMM the replicas of one GPU are one kernel (`grouped_expert_ffn`).

Balancers receive a `ReplicaCostModel` through `PlacementRequest.cost`; the ILP (MoETuner) can use
`gpu_times_s` for its objective too. Everything here is a pure function of its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from simulator.model.memory import ADAM_STATE_BYTES_PER_PARAM

OBJECTIVES = ("time", "tokens")


def replica_copy_bytes(model: Any, training: bool = False) -> float:
    """Bytes that move with a new replica: its weights, plus gradient-free Adam state (12 bytes per
    parameter: fp32 master, m, v) in training."""
    return float(model.expert_params * (model.dtype_bytes + ADAM_STATE_BYTES_PER_PARAM * training))


def split_counts(tokens: float, shares: Sequence[float]) -> np.ndarray:
    """Tokens each replica computes when `tokens` split by `shares` (consecutive runs, rounded half up,
    as `assign_replicas` cuts the true pairs)."""
    if len(shares) == 1:
        return np.array([float(tokens)])
    bounds = np.floor(np.cumsum(shares) * tokens + 0.5)
    bounds[-1] = np.floor(tokens + 0.5)
    return np.diff(np.concatenate(([0.0], bounds)))


@dataclass
class ReplicaCostModel:
    """Expert-phase time per GPU of a layer's replicas, from the run's compute and network models.

    compute: one `ComputeModel` per EP rank; model: the model spec; copy_bytes: bytes a new replica
    moves (weights, plus optimizer state in training); copy_s: [gpus, gpus] seconds one copy src ->
    dst takes alone on its path (latency + bytes / bottleneck bandwidth); window: iterations one
    copy's cost is spread over.
    """

    compute: Sequence[Any]
    model: Any
    copy_bytes: float
    copy_s: np.ndarray
    window: int = 1
    grouped_gemm: bool = False
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_system(cls, compute: Sequence[Any], model: Any, graph, gpu_names: Sequence[str],
                    copy_bytes: float, window: int = 1, grouped_gemm: bool = False
                    ) -> ReplicaCostModel:
        """Copy times from the topology's paths (bottleneck bandwidth and summed latency)."""
        from topologies.paths import PathTable

        paths = PathTable(graph)
        n = len(gpu_names)
        copy_s = np.zeros((n, n))
        for i, src in enumerate(gpu_names):
            for j, dst in enumerate(gpu_names):
                if i != j:
                    copy_s[i, j] = (paths.path_latency_s(src, dst)
                                    + copy_bytes / paths.path_bandwidth_Bps(src, dst))
        return cls(list(compute), model, float(copy_bytes), copy_s, int(window), grouped_gemm)

    def with_window(self, window: int) -> ReplicaCostModel:
        """The same model with copies spread over `window` iterations (shares the time cache)."""
        other = ReplicaCostModel(self.compute, self.model, self.copy_bytes, self.copy_s, int(window),
                                 self.grouped_gemm)
        other._cache = self._cache
        return other

    @property
    def gpus(self) -> int:
        return len(self.compute)

    def replica_s(self, rank: int, tokens: float) -> float:
        """One expert replica on GPU `rank` computing `tokens` (token, k) pairs (0: no kernel)."""
        if tokens <= 0:
            return 0.0
        key = (rank, float(tokens))
        value = self._cache.get(key)
        if value is None:
            value = self.compute[rank].expert_ffn(float(tokens), self.model).time_s
            self._cache[key] = value
        return value

    def copy_cost_s(self, src: int, dst: int) -> float:
        """A copy's cost per iteration: its time alone on the path, spread over the window."""
        return float(self.copy_s[src, dst]) / self.window

    def cheapest_source(self, holders: Sequence[int], dst: int) -> int:
        """The holder that copies to `dst` fastest (lowest rank on ties)."""
        return min(holders, key=lambda g: (self.copy_s[g, dst], g))

    def gpu_compute_s(self, load: np.ndarray, replicas: Sequence[Sequence[int]],
                      shares: Sequence[Sequence[float]] | None = None) -> np.ndarray:
        """[gpus] expert-kernel seconds of one layer: load[e] tokens of expert e split over
        replicas[e] by shares[e] (equal when omitted)."""
        gpus = self.gpus
        times = np.zeros(gpus)
        grouped: list[list[float]] = [[] for _ in range(gpus)]
        for expert, ranks in enumerate(replicas):
            share = shares[expert] if shares is not None else [1.0 / len(ranks)] * len(ranks)
            for rank, count in zip(ranks, split_counts(float(load[expert]), share)):
                if self.grouped_gemm:
                    grouped[rank].append(count)
                else:
                    times[rank] += self.replica_s(rank, count)
        if self.grouped_gemm:
            for rank, counts in enumerate(grouped):
                if counts:
                    times[rank] += self.compute[rank].grouped_expert_ffn(counts, self.model).time_s
        return times

    def gpu_copy_s(self, replicas: Sequence[Sequence[int]],
                   present: Sequence[Sequence[int]] | None) -> np.ndarray:
        """[gpus] seconds of the copies each GPU receives (each alone on its path, not amortised):
        a replica on a rank that does not hold the expert's weights (`present[e]`) is copied from
        the holder that copies fastest. present None: no copies."""
        times = np.zeros(self.gpus)
        if present is None:
            return times
        for expert, ranks in enumerate(replicas):
            holders = present[expert]
            for rank in ranks:
                if rank not in holders:
                    times[rank] += self.copy_s[self.cheapest_source(holders, rank), rank]
        return times

    def window_mean_s(self, compute_s: np.ndarray, copy_s: np.ndarray) -> float:
        """Mean over the window of the busiest GPU's time: copies paid in its first iteration."""
        steady = float(compute_s.max())
        return (float((compute_s + copy_s).max()) + (self.window - 1) * steady) / self.window

    def layer_time_s(self, load, replicas, shares=None, present=None) -> float:
        """The layer's estimate: what its expert phase waits for per iteration, copies included."""
        return self.window_mean_s(self.gpu_compute_s(load, replicas, shares),
                                  self.gpu_copy_s(replicas, present))

    def gpu_times_s(self, load, replicas, shares=None, present=None) -> np.ndarray:
        """[gpus] a per-GPU view for heuristics that balance a vector: compute plus a uniform share
        of what the copies add to the layer (so its max is `layer_time_s`)."""
        compute = self.gpu_compute_s(load, replicas, shares)
        extra = self.window_mean_s(compute, self.gpu_copy_s(replicas, present)) - float(compute.max())
        return compute + extra


def token_loads(load: np.ndarray, replicas: Sequence[Sequence[int]], gpus: int,
                shares: Sequence[Sequence[float]] | None = None) -> np.ndarray:
    """[gpus] tokens per GPU of one layer (the `tokens` objective: the papers' balance)."""
    out = np.zeros(gpus)
    for expert, ranks in enumerate(replicas):
        share = shares[expert] if shares is not None else [1.0 / len(ranks)] * len(ranks)
        for rank, s in zip(ranks, share):
            out[rank] += float(load[expert]) * s
    return out

"""The expert-parallel MoE forward pass as one SimPy process per GPU (DESIGN.md section 1).

Each GPU reads top to bottom like the pipeline it simulates: attention, reduce-scatter, gate,
dispatch all-to-all, expert FFNs on the tokens that actually arrived, combine all-to-all,
all-gather. Collectives synchronise the GPUs they span; everything else runs as soon as its
inputs are there, so stragglers, contention and overlap emerge from the events.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from simulator import collectives
from simulator.engine import Cluster
from simulator.system import System

PHASES = ("attention", "predictor", "gate", "dispatch", "expert", "combine", "collective",
          "replication")


@dataclass(frozen=True)
class Mark:
    """GPU `rank` finished `layer` of `iteration` at `time_s` (layer -1: the iteration began)."""

    rank: int
    iteration: int
    layer: int
    time_s: float


class MoEPipeline:
    """Runs `system`'s iterations back to back on `cluster`, one process per GPU."""

    def __init__(self, cluster: Cluster, system: System):
        self.cluster = cluster
        self.system = system
        self.model = system.model
        self.marks: list[Mark] = []
        self._moe_index = {layer: i for i, layer in enumerate(self.model.moe_layer_indices)}
        self._ep_group = list(range(system.gpus))
        self._token_bytes = self.model.hidden * self.model.dtype_bytes
        self._expert_cost = [lru_cache(maxsize=None)(self._make_expert_cost(r)) for r in range(system.gpus)]

    def start(self) -> list:
        env = self.cluster.env
        return [env.process(self.gpu(rank)) for rank in range(self.system.gpus)]

    def gpu(self, rank: int):
        """One GPU's whole run: every iteration, every layer."""
        for iteration in range(self.system.scenario.workload.iterations):
            self.marks.append(Mark(rank, iteration, -1, self.cluster.env.now))
            for layer in range(self.model.layers):
                yield from self.layer(rank, iteration, layer)
                self.marks.append(Mark(rank, iteration, layer, self.cluster.env.now))

    def layer(self, rank: int, iteration: int, layer: int):
        system, cluster = self.system, self.cluster
        ownership = system.ownership
        group = ownership.group_of(rank)
        members = ownership.members(group)
        group_tokens = int(ownership.group_tokens[group])
        owned = int(system.plan.owned_tokens[rank])
        compute = system.compute[rank]
        workload = system.scenario.workload

        attention = compute.attention(
            group_tokens, self.model, workload.phase, system.context_len,
            int(ownership.group_sequences[group]), tp=system.tp)
        yield from cluster.kernel(rank, attention, "attention", iteration, layer)
        group_bytes = group_tokens * self._token_bytes
        if len(members) > 1:
            yield from self._ring("reduce_scatter", rank, members, group_bytes, iteration, layer)

        if layer in self._moe_index:
            yield from self.moe_ffn(rank, iteration, layer, owned)
        else:
            yield from cluster.kernel(rank, compute.dense_ffn(owned, self.model, tp=1), "expert",
                                      iteration, layer)

        if len(members) > 1:
            yield from self._ring("all_gather", rank, members, group_bytes, iteration, layer)

    def moe_ffn(self, rank: int, iteration: int, layer: int, owned: int):
        """Gate, dispatch, experts (and shared experts beside the dispatch), combine."""
        cluster, compute = self.cluster, self.system.compute[rank]
        moe = self._moe_index[layer]
        plan = self.system.plan
        pairs = plan.dispatch_pairs[iteration, moe]
        yield from cluster.kernel(rank, compute.router(owned, self.model), "gate", iteration, layer)

        shared = None
        if self.model.shared_experts:
            cost = compute.shared_experts(owned, self.model)
            shared = cluster.env.process(cluster.kernel(rank, cost, "expert", iteration, layer))

        yield from self._all_to_all("dispatch", rank, pairs, iteration, layer)
        tokens = plan.expert_pairs[iteration, moe, rank]
        if self.system.scenario.compute.grouped_gemm:
            hosted = self.system.placement.hosted(moe, rank)
            cost = compute.grouped_expert_ffn(tokens[hosted], self.model)
            yield from cluster.kernel(rank, cost, "expert", iteration, layer)
        else:
            for expert in np.flatnonzero(tokens):
                cost = self._expert_cost[rank](int(tokens[expert]))
                yield from cluster.kernel(rank, cost, "expert", iteration, layer)
        if shared is not None:
            yield shared
        yield from self._all_to_all("combine", rank, pairs.T, iteration, layer)

    def _all_to_all(self, phase: str, rank: int, pairs: np.ndarray, iteration: int, layer: int):
        matrix = pairs * float(self._token_bytes)
        np.fill_diagonal(matrix, 0.0)
        net = self.cluster.net
        yield from self.cluster.collective(
            rank, (phase, iteration, layer), self._ep_group,
            lambda names: collectives.all_to_all(net, names, matrix),
            phase, f"{phase}_all_to_all", iteration, layer,
            nbytes_of=lambda r: float(matrix[r].sum()),
        )

    def _ring(self, op: str, rank: int, members: list[int], nbytes: float, iteration: int, layer: int):
        net = self.cluster.net
        run = getattr(collectives, op)
        yield from self.cluster.collective(
            rank, (op, iteration, layer, members[0]), members,
            lambda names: run(net, names, nbytes),
            "collective", op, iteration, layer,
            nbytes_of=lambda r: nbytes * (len(members) - 1) / len(members),
        )

    def _make_expert_cost(self, rank: int):
        compute, model = self.system.compute[rank], self.model
        return lambda tokens: compute.expert_ffn(tokens, model)

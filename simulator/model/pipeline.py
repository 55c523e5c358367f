"""The expert-parallel MoE forward pass as one SimPy process per GPU (DESIGN.md section 1).

Each GPU reads top to bottom like the pipeline it simulates: attention, reduce-scatter, gate,
dispatch all-to-all, expert FFNs on the tokens that actually arrived, combine all-to-all,
all-gather. Collectives synchronise the GPUs they span; everything else runs as soon as its
inputs are there, so stragglers, contention and overlap emerge from the events.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from simulator.engine import collectives
from simulator.engine.cluster import Cluster
from simulator.output.records import Mark
from simulator.planning.cost_model import replica_copy_bytes
from simulator.scenario.system import System

class MoEPipeline:
    """Runs `system`'s iterations back to back on `cluster`, one process per GPU."""

    def __init__(self, cluster: Cluster, system: System):
        self.cluster = cluster
        self.system = system
        self.model = system.model
        self.marks: list[Mark] = []
        self.on_iteration = None  # called with the iteration index when GPU 0 finishes one
        self._moe_index = self.model.moe_index
        self._ep_group = list(range(system.gpus))
        self._token_bytes = self.model.hidden * self.model.dtype_bytes
        self._expert_cost = [lru_cache(maxsize=None)(self._make_expert_cost(r)) for r in range(system.gpus)]
        # one event per replica weight copy, succeeded by the sender, awaited by the receiver
        env = cluster.env
        copies = [] if system.strategy.free_copies else system.strategy.copies  # assume moe-gps
        self._copy_done = {
            (it, copy.layer, copy.dst, copy.expert): env.event()
            for it, copies in enumerate(copies) for copy in copies
        }
        self._arrivals: dict[tuple[int, int, int], list] = {}
        for (it, moe, dst, _), done in self._copy_done.items():
            self._arrivals.setdefault((it, moe, dst), []).append(done)
        self._copies_at = self._copy_triggers()

    def _copy_triggers(self) -> dict[tuple[int, int], list]:
        """(source rank, layer position) -> copies it starts when it begins that layer.

        Positions count layers across iterations (iteration * layers + layer). A copy for MoE layer
        m of iteration i may start once its plan is known — at the start of iteration i when the
        plan used this iteration's information (oracle, token predictions), or, for a forecast
        from past loads only (`strategy.plan_lead` 1), as soon as layer m of iteration i - 1 has
        run — but at most `strategy.prefetch` layers ahead of its own (0: when its layer starts).
        """
        strategy, layers = self.system.strategy, self.model.layers
        moe_layers = self.model.moe_layer_indices
        at: dict[tuple[int, int], list] = {}
        for it, copies in enumerate(strategy.copies if not strategy.free_copies else []):
            for copy in copies:
                layer = moe_layers[copy.layer]
                own = it * layers + layer
                if strategy.plan_lead and it > 0:
                    known = (it - 1) * layers + layer + 1
                else:
                    known = it * layers
                start = known if strategy.prefetch is None else max(known, own - strategy.prefetch)
                at.setdefault((copy.src, min(start, own)), []).append((it, copy, layer))
        return at
    def start(self) -> list:
        env = self.cluster.env
        return [env.process(self.gpu(rank)) for rank in range(self.system.gpus)]

    def stages(self) -> list[str]:
        """Labels of the stages of one iteration (the `layer` of spans and marks indexes these)."""
        return [str(layer) for layer in range(self.model.layers)]

    def mark(self, rank: int, iteration: int, stage: int) -> None:
        self.marks.append(Mark(rank, iteration, stage, self.cluster.env.now))

    def gpu(self, rank: int):
        """One GPU's whole run: every iteration, every layer."""
        for iteration in range(self.system.scenario.workload.iterations):
            self.mark(rank, iteration, -1)
            yield from self.predict(rank, iteration)
            for layer in range(self.model.layers):
                yield from self.layer(rank, iteration, layer)
                self.mark(rank, iteration, layer)
            yield from self.step_tail(rank, iteration)
            if rank == 0 and self.on_iteration is not None:
                self.on_iteration(iteration)

    def step_tail(self, rank: int, iteration: int):
        """What follows the forward pass in one iteration: nothing in inference."""
        return
        yield

    @property
    def copy_bytes(self) -> float:
        """Bytes that move with a new expert replica: its weights (plus optimizer state in training)."""
        return replica_copy_bytes(self.model, self.system.scenario.workload.mode == "training")

    def predict(self, rank: int, iteration: int):
        """The predictor's inference for this iteration, if it runs now (once per window for
        Distribution-Only, every iteration on the GPU's own tokens for Token-to-Expert)."""
        cost = self.system.strategy.predictor_cost[iteration][rank]
        if cost is not None:
            kernel = self.system.compute[rank].roofline("predictor", cost.flops, cost.bytes)
            yield from self.cluster.kernel(rank, kernel, "predictor", iteration, 0)

    def send_replicas(self, rank: int, iteration: int, layer: int) -> None:
        """Start the weight copies this GPU sends when it begins `layer` of `iteration` (for this
        layer or, prefetched, for later ones): they run on the copy engines beside compute and
        NCCL, contend with every other flow, and the receiver's experts wait for them."""
        for it, copy, target in self._copies_at.get((rank, iteration * self.model.layers + layer), ()):
            done = self._copy_done[it, copy.layer, copy.dst, copy.expert]
            self.cluster.env.process(self._copy(copy, done, it, target))

    def _copy(self, copy, done, iteration: int, layer: int):
        cluster = self.cluster
        yield from cluster.copy(copy.src, cluster.gpus[copy.src], cluster.gpus[copy.dst],
                                self.copy_bytes, "replication",
                                f"replicate_e{copy.expert}_to_gpu{copy.dst}", iteration, layer)
        done.succeed()

    def layer(self, rank: int, iteration: int, layer: int):
        system, cluster = self.system, self.cluster
        self.send_replicas(rank, iteration, layer)
        ownership = system.ownership
        group = ownership.group_of(rank)
        members = ownership.members(group)
        group_tokens = int(ownership.group_tokens[group])
        owned = int(system.plan.owned_tokens[rank])
        compute = system.compute[rank]
        workload = system.scenario.workload
        sequences = int(ownership.group_sequences[group])
        if system.plan.resident_tokens is not None:  # token residency expert: attention where tokens live
            owned = group_tokens = int(system.plan.resident_tokens[iteration, layer, rank])
            sequences = group_tokens * float(ownership.group_sequences.sum()) / system.tokens
            kv = system.plan.kv_bytes[iteration, layer]
            if kv.any():
                yield from self._all_to_all_bytes("collective", "kv", rank, kv, iteration, layer)

        attention = compute.attention(
            group_tokens, self.model, workload.phase, system.context_len, sequences, tp=system.tp)
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
        arrivals = self._arrivals.get((iteration, moe, rank))
        if arrivals:  # a layer never computes on a replica that has not arrived
            yield from cluster.wait(rank, arrivals, "replication", "wait_for_replicas", iteration, layer)
        tokens = plan.expert_pairs[iteration, moe, rank]
        if self.system.scenario.compute.grouped_gemm:
            hosted = self.system.strategy.placements[iteration].hosted(moe, rank)
            cost = compute.grouped_expert_ffn(tokens[hosted], self.model)
            yield from cluster.kernel(rank, cost, "expert", iteration, layer)
        else:
            for expert in np.flatnonzero(tokens):
                cost = self._expert_cost[rank](int(tokens[expert]))
                yield from cluster.kernel(rank, cost, "expert", iteration, layer)
        if shared is not None:
            yield shared
        yield from self._all_to_all("combine", rank, plan.combine(iteration, moe), iteration, layer)

    def _all_to_all(self, phase: str, rank: int, pairs: np.ndarray, iteration: int, layer: int):
        yield from self._all_to_all_bytes(phase, phase, rank, pairs * float(self._token_bytes),
                                          iteration, layer)

    def _all_to_all_bytes(self, phase: str, name: str, rank: int, matrix: np.ndarray,
                          iteration: int, layer: int):
        """All-to-all of `matrix[i, j]` bytes GPU i -> GPU j over the EP group (diagonal local)."""
        matrix = np.array(matrix, dtype=float)
        np.fill_diagonal(matrix, 0.0)
        net = self.cluster.net
        yield from self.cluster.collective(
            rank, (name, iteration, layer), self._ep_group,
            lambda names: collectives.all_to_all(net, names, matrix),
            phase, f"{name}_all_to_all", iteration, layer,
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

"""Training mode: the forward pass of `simulator.model.pipeline`, then backward, gradient sync and optimizer.

Stages of one training step (the `layer` of every span and mark is the stage index):
forward layers 0..L-1, backward stages L..2L-1 (stage L + i is layer L-1-i), then the optimizer
(stage 2L). Backward is the forward's mirror: all-gather <-> reduce-scatter, combine <->
dispatch, about twice the FLOPs and bytes per kernel. Dense gradients are all-reduced over
the data-parallel group in one bucket per layer, started as soon as that layer's backward is
done, so the sync overlaps the next layer's backward on the communication stream; replicated
experts all-reduce their gradients among their replicas. The optimizer step (Adam, memory
bound) waits for every bucket.
"""

from __future__ import annotations

from dataclasses import replace

from simulator.engine import collectives
from simulator.model.pipeline import MoEPipeline

# Adam with fp32 master weights: read weight, grad, master, m, v; write weight, master, m, v.
OPTIMIZER_BYTES_PER_PARAM = 2 + 2 + 4 + 4 + 4 + 2 + 4 + 4 + 4
OPTIMIZER_FLOPS_PER_PARAM = 12


def backward_cost(cost, factor: float = 2.0):
    """A forward kernel's backward: dgrad + wgrad, about `factor` times its work and time."""
    return replace(cost, name=f"{cost.name}_bwd", flops=cost.flops * factor,
                   bytes=cost.bytes * factor, time_s=cost.time_s * factor)


class TrainingPipeline(MoEPipeline):
    """One training step per iteration: forward, backward, gradient sync, optimizer."""

    def stages(self) -> list[str]:
        layers = self.model.layers
        return ([str(layer) for layer in range(layers)]
                + [f"bwd{layers - 1 - i}" for i in range(layers)] + ["optimizer"])

    def step_tail(self, rank: int, iteration: int):
        layers = self.model.layers
        syncs = []
        for i in range(layers):
            layer, stage = layers - 1 - i, layers + i
            yield from self.layer_backward(rank, iteration, layer, stage)
            syncs.extend(self.gradient_sync(rank, iteration, layer, stage))
            self.mark(rank, iteration, stage)
        if syncs:
            yield self.cluster.env.all_of(syncs)
        yield from self.cluster.kernel(rank, self.optimizer_cost(rank, iteration), "optimizer",
                                       iteration, 2 * layers)
        self.mark(rank, iteration, 2 * layers)

    def layer_backward(self, rank: int, iteration: int, layer: int, stage: int):
        cluster, compute = self.cluster, self.system.compute[rank]
        ownership = self.system.ownership
        group = ownership.group_of(rank)
        members = ownership.members(group)
        group_bytes = int(ownership.group_tokens[group]) * self._token_bytes
        owned = int(self.system.plan.owned_tokens[rank])
        if len(members) > 1:  # backward of the all-gather
            yield from self._ring("reduce_scatter", rank, members, group_bytes, iteration, stage)
        if layer in self._moe_index:
            moe = self._moe_index[layer]
            pairs = self.system.plan.dispatch_pairs[iteration, moe]
            yield from self._all_to_all("combine", rank, pairs, iteration, stage)
            tokens = self.system.plan.expert_pairs[iteration, moe, rank]
            for expert in tokens.nonzero()[0]:
                cost = backward_cost(self._expert_cost[rank](int(tokens[expert])))
                yield from cluster.kernel(rank, cost, "expert", iteration, stage)
            if self.model.shared_experts:
                cost = backward_cost(compute.shared_experts(owned, self.model))
                yield from cluster.kernel(rank, cost, "expert", iteration, stage)
            yield from self._all_to_all("dispatch", rank, pairs.T, iteration, stage)
            yield from cluster.kernel(rank, backward_cost(compute.router(owned, self.model)), "gate",
                                      iteration, stage)
        else:
            cost = backward_cost(compute.dense_ffn(owned, self.model, tp=1))
            yield from cluster.kernel(rank, cost, "expert", iteration, stage)
        if len(members) > 1:  # backward of the reduce-scatter
            yield from self._ring("all_gather", rank, members, group_bytes, iteration, stage)
        workload = self.system.scenario.workload
        attention = compute.attention(
            int(ownership.group_tokens[group]), self.model, workload.phase, self.system.context_len,
            int(ownership.group_sequences[group]), tp=self.system.tp)
        yield from cluster.kernel(rank, backward_cost(attention), "attention", iteration, stage)

    def gradient_sync(self, rank: int, iteration: int, layer: int, stage: int) -> list:
        """Start this layer's gradient all-reduces (dense over data-parallel peers, each replicated
        expert over its replicas) in the background; return their completion events."""
        env = self.cluster.env
        started = []
        dp_peers = self.dp_peers(rank)
        dense = self.dense_params(layer) * self.model.dtype_bytes
        if len(dp_peers) > 1 and dense > 0:
            started.append(env.process(self._all_reduce(rank, ("dense", layer), dp_peers, dense,
                                                        iteration, stage)))
        if layer in self._moe_index:
            moe = self._moe_index[layer]
            placement = self.system.strategy.placements[iteration]
            for expert, gpus in enumerate(placement.replicas[moe]):
                if len(gpus) > 1 and rank in gpus:
                    started.append(env.process(self._all_reduce(
                        rank, ("expert", layer, expert), sorted(gpus), float(self.model.expert_bytes),
                        iteration, stage)))
        return started

    def _all_reduce(self, rank, key, group, nbytes, iteration, stage):
        net = self.cluster.net
        yield from self.cluster.collective(
            rank, ("all_reduce", iteration) + key, group,
            lambda names: collectives.all_reduce(net, names, nbytes),
            "collective", "grad_all_reduce", iteration, stage,
            nbytes_of=lambda r: 2 * nbytes * (len(group) - 1) / len(group))

    def dp_peers(self, rank: int) -> list[int]:
        """GPUs holding the same attention shard: same position in every attention group."""
        tp = self.system.tp
        return list(range(rank % tp, self.system.gpus, tp))

    def dense_params(self, layer: int) -> float:
        """Parameters of `layer` replicated over data-parallel peers (this GPU's shard)."""
        model = self.model
        params = model.attention_params / self.system.tp
        if layer in self._moe_index:
            params += model.hidden * model.experts  # router
            params += model.shared_experts * (3 if model.gated else 2) * model.hidden * model.shared_ffn
        else:
            params += model.dense_ffn_params
        return params

    def optimizer_cost(self, rank: int, iteration: int):
        """Adam over this GPU's parameters: its dense shard and every expert replica it holds."""
        model = self.model
        placement = self.system.strategy.placements[iteration]
        params = sum(self.dense_params(layer) for layer in range(model.layers))
        params += placement.replica_count(rank) * model.expert_params
        return self.system.compute[rank].roofline(
            "adam", OPTIMIZER_FLOPS_PER_PARAM * params, OPTIMIZER_BYTES_PER_PARAM * params)

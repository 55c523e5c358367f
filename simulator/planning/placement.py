"""Expert placement: which GPUs host a replica of each expert, per MoE layer, and each replica's share.

Balancers are looked up by name in the `BALANCERS` registry (STYLE.md item 7). Each returns a `Placement`;
the simulator then routes the *true* tokens to replicas by those shares, so a placement planned
from a wrong forecast shows up as imbalance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from simulator.errors import ScenarioError
from simulator.planning.balancers.params import EPLBParams, GreedyParams, ILPParams, StaticParams
from simulator.registry import Registry


@dataclass(frozen=True)
class Placement:
    """`replicas[layer][expert]`: GPU ranks hosting the expert; `shares`: fraction of its tokens each takes."""

    replicas: tuple[tuple[tuple[int, ...], ...], ...]
    shares: tuple[tuple[tuple[float, ...], ...], ...]
    # what the balancer reports about this plan (e.g. the ILP's MIP gap); not part of equality
    notes: dict[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def layers(self) -> int:
        return len(self.replicas)

    def hosted(self, layer: int, rank: int) -> list[int]:
        """Experts with a replica on GPU `rank` in `layer`, in expert order."""
        return [e for e, gpus in enumerate(self.replicas[layer]) if rank in gpus]

    def replica_count(self, rank: int) -> int:
        """Expert replicas GPU `rank` holds over all MoE layers (for memory accounting)."""
        return sum(gpus.count(rank) for layer in self.replicas for gpus in layer)


def uniform_placement(per_layer: list[list[list[int]]]) -> Placement:
    """A placement whose replicas split their expert's tokens evenly."""
    replicas = tuple(tuple(tuple(gpus) for gpus in layer) for layer in per_layer)
    shares = tuple(tuple(tuple([1.0 / len(g)] * len(g)) for g in layer) for layer in replicas)
    return Placement(replicas, shares)


@dataclass(frozen=True)
class PlacementRequest:
    """What a balancer decides from. Loads are *predicted* (or true, for the oracle), never peeked.

    loads: [layers, experts] expected tokens (pairs) per expert for the window being planned;
    transitions: [layers - 1, experts, experts] co-routing counts (expert at layer l -> expert at
    layer l + 1), for placements that keep consecutive layers' experts together (MoETuner);
    node_of: server index of each EP rank (EPLB packs replicas to nodes first);
    slots_per_gpu: the most expert replicas per layer a GPU may hold (memory);
    redundant: extra replicas per layer the balancer may add beyond one per expert;
    pair_cost: [gpus, gpus] relative cost of moving one token between GPU ranks (1 / bottleneck
    bandwidth of the topology's path), for placements that weigh NIC hops above NVLink ones;
    coactivation: [layers, experts, experts] tokens whose first choice is e and another choice f
    (token residency `expert` only: the combine then moves f's output to e's GPU);
    objective: "tokens" balances predicted token counts (the papers' objective), "time" the
    expert-phase time estimated by `cost` (`simulator.planning.cost_model`), copies included;
    present: per layer, per expert, the GPU ranks already holding its weights (a replica elsewhere
    needs a copy); None means the round-robin homes.
    """

    layers: int
    experts: int
    ep_ranks: list[int]
    node_of: list[int]
    config: dict[str, Any]
    loads: np.ndarray | None = None
    transitions: np.ndarray | None = None
    slots_per_gpu: int | None = None
    redundant: int = 0
    field: str = "balancer"
    pair_cost: np.ndarray | None = None
    coactivation: np.ndarray | None = None
    objective: str = "tokens"
    cost: Any = None  # a cost_model.ReplicaCostModel (required by objective "time")
    present: tuple | None = None


def static_placement(request: PlacementRequest) -> Placement:
    """Round-robin experts over the EP group (expert e on ep_ranks[e % n]), or an explicit map.

    `config["placement"]` maps expert -> GPU rank or list of ranks (one replica per rank), the same
    for every layer; every expert needs at least one replica on a GPU of the EP group.
    """
    layers, experts, ep_ranks = request.layers, request.experts, request.ep_ranks
    config, field = request.config, request.field
    explicit = config.get("placement")
    if explicit is None:
        layer = [[ep_ranks[e % len(ep_ranks)]] for e in range(experts)]
        return uniform_placement([layer] * layers)
    if not isinstance(explicit, dict):
        raise ScenarioError("must map expert id -> GPU rank or list of ranks", f"{field}.placement")
    layer = [_explicit_replicas(explicit, e, ep_ranks, f"{field}.placement") for e in range(experts)]
    unknown = sorted(set(map(str, explicit)) - {str(e) for e in range(experts)})
    if unknown:
        raise ScenarioError(
            f"unknown expert id(s) {', '.join(unknown)}; the model has experts 0..{experts - 1}",
            f"{field}.placement",
        )
    return uniform_placement([layer] * layers)


def _explicit_replicas(explicit: dict, expert: int, ep_ranks: list[int], field: str) -> list[int]:
    value = explicit.get(expert, explicit.get(str(expert)))
    if value is None:
        raise ScenarioError(f"expert {expert} has no replica; every expert needs at least one GPU", field)
    gpus = value if isinstance(value, list) else [value]
    if not gpus or not all(isinstance(g, int) and g in ep_ranks for g in gpus):
        raise ScenarioError(
            f"expert {expert}: {value!r} is not a GPU rank or list of ranks in 0..{max(ep_ranks)}",
            f"{field}[{expert}]",
        )
    return gpus


Balancer = Callable[[PlacementRequest], Placement]

# The balancer registry (`balancer.kind`): static here, the predictive ones imported on first use
# (they import this module for `Placement`; the ILP imports scipy).
BALANCERS = Registry("balancer", ScenarioError, param_noun="option")
BALANCERS.register("static", static_placement, StaticParams)
BALANCERS.register("greedy_duplication", "simulator.planning.balancers.greedy:greedy_duplication",
                   GreedyParams)
BALANCERS.register("eplb", "simulator.planning.balancers.eplb_policy:eplb", EPLBParams)
BALANCERS.register("ilp", "simulator.planning.balancers.ilp:ilp_placement", ILPParams)
BALANCERS.register("oracle", "simulator.planning.balancers:oracle", GreedyParams)


def make_placement(kind: str, request: PlacementRequest) -> Placement:
    return BALANCERS.factory(kind, "balancer.kind")(request)


def assign_replicas(experts: np.ndarray, layer_replicas, layer_shares) -> np.ndarray:
    """GPU rank computing each (token, k) pair: the pair's expert's replicas, split by share.

    The pairs of one expert are taken in token order and cut into consecutive runs whose lengths
    follow the shares (rounded half up), so every pair lands on exactly one replica.
    """
    flat = experts.ravel()
    single = np.array([gpus[0] for gpus in layer_replicas], dtype=np.int64)
    gpu = single[flat]
    for expert, gpus in enumerate(layer_replicas):
        if len(gpus) == 1:
            continue
        where = np.flatnonzero(flat == expert)
        bounds = np.floor(np.cumsum(layer_shares[expert]) * len(where) + 0.5).astype(np.int64)
        replica = np.searchsorted(bounds, np.arange(len(where)), side="right")
        gpu[where] = np.asarray(gpus, dtype=np.int64)[np.minimum(replica, len(gpus) - 1)]
    return gpu.reshape(experts.shape)

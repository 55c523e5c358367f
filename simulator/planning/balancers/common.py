"""Shared pieces of the balancers: option checking, input checking, layouts and metrics.

Balancers are pure functions of a `PlacementRequest`; everything here is too. Options arrive as the
scenario's `balancer:` mapping minus `kind`, so every error names `balancer.<key>` (STYLE.md item 8).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.errors import ScenarioError
from simulator.registry import Params, parse_params

if TYPE_CHECKING:  # at run time simulator.planning.placement imports this package
    from simulator.planning.placement import Placement, PlacementRequest


class BalancerWarning(UserWarning):
    """A balancer returned a usable but degraded placement (e.g. the ILP hit its time limit)."""


def check_options(request: PlacementRequest, name: str, params: type[Params]) -> dict[str, Any]:
    """The request's options checked against the balancer's parameter model (unknown keys and
    out-of-range values refused, naming ``balancer.<key>``): only the keys the user set."""
    return parse_params(params, request.config or {}, request.field, f"balancer {name!r}", "option",
                        ScenarioError).given()


def int_option(config: dict, key: str, default: int | None) -> int | None:
    """An option the parameter model already checked, or the default when absent."""
    value = config.get(key)
    return default if value is None else int(value)


def float_option(config: dict, key: str, default: float) -> float:
    value = config.get(key)
    return default if value is None else float(value)


def choice_option(config: dict, key: str, default: str) -> str:
    value = config.get(key)
    return default if value is None else value


def require_loads(request: PlacementRequest, name: str) -> np.ndarray:
    """Predicted tokens per [layer, expert]: finite, >= 0, of the request's shape."""
    if request.loads is None:
        raise ScenarioError(
            f"balancer {name!r} plans from predicted expert loads, but none were given: set "
            "predictor.kind to a distribution predictor, or use balancer kind 'oracle' (true loads)",
            f"{request.field}.kind",
        )
    loads = np.asarray(request.loads, dtype=np.float64)
    shape = (request.layers, request.experts)
    if loads.shape != shape:
        raise ScenarioError(f"loads must have shape {shape} [layers, experts], got {loads.shape}",
                            f"{request.field}.loads")
    if not np.all(np.isfinite(loads)) or np.any(loads < 0):
        raise ScenarioError("loads must be finite and >= 0", f"{request.field}.loads")
    return loads


def optional_transitions(request: PlacementRequest) -> np.ndarray | None:
    """Co-routing counts [layers - 1, experts, experts], or None when the request has none."""
    if request.transitions is None:
        return None
    trans = np.asarray(request.transitions, dtype=np.float64)
    shape = (max(request.layers - 1, 0), request.experts, request.experts)
    if trans.shape != shape:
        raise ScenarioError(f"transitions must have shape {shape} [layers - 1, experts, experts], "
                            f"got {trans.shape}", f"{request.field}.transitions")
    if not np.all(np.isfinite(trans)) or np.any(trans < 0):
        raise ScenarioError("transitions must be finite and >= 0", f"{request.field}.transitions")
    return trans


def ep_ranks(request: PlacementRequest) -> list[int]:
    ranks = [int(r) for r in request.ep_ranks]
    if not ranks or len(set(ranks)) != len(ranks) or min(ranks) < 0:
        raise ScenarioError(f"the expert-parallel group must be distinct ranks >= 0, got {ranks}",
                            "parallelism.ep")
    return ranks


def node_groups(request: PlacementRequest, ranks: list[int]) -> list[list[int]]:
    """EP ranks grouped by server, servers in id order, ranks ascending within each.

    `node_of` is read by GPU rank when it is long enough to cover every EP rank (the simulator
    passes one entry per GPU of the topology), otherwise position by position along `ep_ranks`.
    """
    node_of = list(request.node_of or [])
    if not node_of:
        return [sorted(ranks)]
    if len(node_of) > max(ranks):
        nodes = [node_of[r] for r in ranks]
    elif len(node_of) == len(ranks):
        nodes = node_of
    else:
        raise ScenarioError(f"node_of has {len(node_of)} entries; need one per EP rank or per GPU",
                            "topology")
    groups: dict[int, list[int]] = {}
    for rank, node in zip(ranks, nodes):
        groups.setdefault(int(node), []).append(rank)
    return [sorted(groups[node]) for node in sorted(groups)]


def replica_budget(config: dict, key: str, request: PlacementRequest, gpus: int) -> int:
    """Extra replicas per layer: the option, else `request.redundant` when > 0, else one per GPU."""
    default = request.redundant if request.redundant > 0 else gpus
    return int_option(config, key, default)


def slot_limit(request: PlacementRequest, config_slots: int | None, config_key: str,
               needed: int) -> tuple[int | None, str]:
    """Replica slots per GPU per layer (smaller of memory's and the option's) and the field to blame.

    Refuses a limit below `needed` (one replica per expert, round-robin) with one clear message.
    """
    limits = [s for s in (request.slots_per_gpu, config_slots) if s is not None]
    slots = min(limits) if limits else None
    field = f"{request.field}.{config_key}" if config_slots is not None and slots == config_slots \
        else request.field
    if slots is not None and slots < needed:
        raise ScenarioError(
            f"each GPU may hold only {slots} expert replica(s) per layer, but one replica of every "
            f"expert needs {needed}", field,
        )
    return slots, field


def equal_share_placement(layers: list[list[list[int]]]) -> Placement:
    """Replica ranks sorted ascending per expert, each replica taking an equal share."""
    from simulator.planning.placement import Placement  # here: simulator.planning.placement imports this package

    replicas = tuple(tuple(tuple(sorted(gpus)) for gpus in layer) for layer in layers)
    shares = tuple(tuple(tuple([1.0 / len(g)] * len(g)) for g in layer) for layer in replicas)
    return Placement(replicas, shares)


def _share_matrix(placement: Placement, layer: int, gpus: int) -> np.ndarray:
    """[experts, gpus]: fraction of each expert's tokens that each GPU computes."""
    matrix = np.zeros((len(placement.replicas[layer]), gpus))
    for expert, (ranks, shares) in enumerate(zip(placement.replicas[layer], placement.shares[layer])):
        for rank, share in zip(ranks, shares):
            matrix[expert, rank] += share
    return matrix


def _gpu_count(placement: Placement) -> int:
    return 1 + max(r for layer in placement.replicas for ranks in layer for r in ranks)


def gpu_loads(placement: Placement, loads: np.ndarray) -> np.ndarray:
    """Expected tokens per [layer, GPU rank] when each expert's `loads` split by the shares."""
    gpus = _gpu_count(placement)
    loads = np.asarray(loads, dtype=np.float64)
    return np.stack([loads[l] @ _share_matrix(placement, l, gpus) for l in range(placement.layers)])


def dispatch_traffic(placement: Placement, transitions: np.ndarray) -> float:
    """Expected token transfers between GPUs from each layer's expert to the next layer's expert.

    `transitions[l, e, f]` tokens go from expert e at layer l to expert f at layer l + 1; each side
    is served by one of its expert's replicas chosen with probability equal to its share,
    independently, so a pair crosses GPUs with probability 1 - sum_g p(e, g) p(f, g). This is the
    quantity MoETuner minimises (tokens whose consecutive experts live on different GPUs).
    """
    trans = np.asarray(transitions, dtype=np.float64)
    gpus = _gpu_count(placement)
    total = 0.0
    for layer in range(min(trans.shape[0], placement.layers - 1)):
        same = _share_matrix(placement, layer, gpus) @ _share_matrix(placement, layer + 1, gpus).T
        total += float(np.sum(trans[layer] * (1.0 - same)))
    return total


def time_objective(request: PlacementRequest, name: str):
    """The request's cost model when it asks for the time objective, else None (tokens).

    Refuses an unknown objective, and `time` without a cost model, naming `balancer.objective`.
    """
    from simulator.planning.cost_model import OBJECTIVES

    if request.objective not in OBJECTIVES:
        raise ScenarioError(f"must be one of {', '.join(OBJECTIVES)}, got {request.objective!r}",
                            f"{request.field}.objective")
    if request.objective == "tokens":
        return None
    if request.cost is None:
        raise ScenarioError(f"balancer {name!r} with objective 'time' needs the run's cost model "
                            "(request.cost); use objective 'tokens' to balance token counts",
                            f"{request.field}.objective")
    return request.cost


def present_hosts(request: PlacementRequest, layer: int, ranks: list[int]) -> list[list[int]]:
    """Ranks already holding each expert's weights in `layer`: `request.present`, else round-robin."""
    if request.present is not None:
        return [list(h) for h in request.present[layer]]
    return [[ranks[e % len(ranks)]] for e in range(request.experts)]

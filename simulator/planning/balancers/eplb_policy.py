"""DeepSeek's Expert Parallelism Load Balancer (github.com/deepseek-ai/EPLB), re-written in numpy.

Hierarchical policy (several servers): pack groups of experts onto servers so that each server gets
the same number of groups and loads are balanced; inside each server, spend its share of the
redundancy budget by repeatedly replicating the expert with the highest load per replica; then pack
the server's replicas onto its GPUs, each GPU getting the same number of replica slots (one more for
some when they do not divide) and the GPU loads balanced. Global policy (one server, one GPU per
server, server sizes that differ, or groups that do not divide over servers): the same with the
whole EP group as one server. Two differences from DeepSeek's code: replicas of one expert always
land on distinct GPUs (our `Placement` needs it), and replicas per GPU respect the memory slots.

With the time objective (the simulator's default) each layer keeps, of round-robin and EPLB's plans
at a few redundancy budgets (0, a quarter, half, all of it), the one with the lowest estimated
expert-phase time (`simulator.planning.cost_model`): EPLB re-packs every expert, so each replica
that lands where its weights are not yet present pays its copy, and each duplicate its weight
reads; a plan is kept only when that beats staying put.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simulator.planning.balancers.params import EPLBParams
from simulator.planning.balancers.common import (
    check_options, ep_ranks, equal_share_placement, int_option, node_groups, present_hosts,
    replica_budget, require_loads, slot_limit, time_objective,
)
from simulator.errors import ScenarioError

if TYPE_CHECKING:  # at run time simulator.planning.placement imports this package
    from simulator.planning.placement import Placement, PlacementRequest

def eplb(request: PlacementRequest, name: str = "eplb") -> Placement:
    """Replicate heavy experts to a redundancy budget, pack to servers, then to GPUs, balanced.

    Options: `redundant_experts` (extra replicas per layer; default `request.redundant`, or one per
    GPU when that is 0), `groups` (expert groups packed whole onto servers, as DeepSeek-V3's
    group-limited routing; must divide the experts; default one group per expert).
    """
    config = check_options(request, name, EPLBParams)
    ranks = ep_ranks(request)
    experts, field = request.experts, request.field
    redundant = replica_budget(config, "redundant_experts", request, len(ranks))
    groups = int_option(config, "groups", experts)
    if experts % groups:
        raise ScenarioError(f"must divide the {experts} experts, got {groups}", f"{field}.groups")
    slots, _ = slot_limit(request, None, "", -(-experts // len(ranks)))
    loads = require_loads(request, name)
    nodes = node_groups(request, ranks)
    hierarchical = (len(nodes) > 1 and groups % len(nodes) == 0
                    and len({len(n) for n in nodes}) == 1 and len(nodes[0]) > 1)
    if not hierarchical:
        nodes = [sorted(ranks)]
    cost = time_objective(request, name)
    group_count = groups if hierarchical else experts
    if cost is None:
        layers = [_layer(loads[l], nodes, group_count, redundant, slots)
                  for l in range(request.layers)]
        return equal_share_placement(layers)
    layers = [_cheapest_layer(loads[l], nodes, group_count, redundant, slots, cost,
                              present_hosts(request, l, ranks), ranks)
              for l in range(request.layers)]
    return equal_share_placement(layers)


def _cheapest_layer(load, nodes, groups, redundant, slots, cost, present, ranks) -> list[list[int]]:
    """Of round-robin and EPLB at a few budgets, the layer plan with the lowest estimated time."""
    candidates = [[[ranks[e % len(ranks)]] for e in range(len(load))]]
    for budget in sorted({0, redundant // 4, redundant // 2, redundant}):
        candidates.append(_layer(load, nodes, groups, budget, slots))
    estimates = [cost.layer_time_s(load, hosts, present=present) for hosts in candidates]
    return candidates[int(np.argmin(estimates))]


def _layer(load, nodes, groups, redundant, slots) -> list[list[int]]:
    experts = len(load)
    members = np.arange(experts).reshape(groups, experts // groups)
    group_node = balanced_packing(load[members].sum(axis=1), len(nodes))
    node_experts = [members[group_node == k].ravel() for k in range(len(nodes))]
    node_load = np.array([load[e].sum() for e in node_experts])
    extra = _split_budget(redundant, node_load)
    hosts: list[list[int]] = [[] for _ in range(experts)]
    for k, gpus in enumerate(nodes):
        room = len(gpus) * slots - len(node_experts[k]) if slots is not None else extra[k]
        counts = replicate_experts(load[node_experts[k]], min(extra[k], room), len(gpus))
        owner = np.repeat(node_experts[k], counts)
        per_replica = np.repeat(load[node_experts[k]] / counts, counts)
        gpu_of = balanced_packing(per_replica, len(gpus), owner)
        for expert, g in zip(owner, gpu_of):
            hosts[expert].append(gpus[g])
    return hosts


def _split_budget(redundant: int, node_load: np.ndarray) -> list[int]:
    """Redundant replicas per server: an equal split, the remainder to the most loaded servers."""
    nodes = len(node_load)
    extra = [redundant // nodes] * nodes
    for k in np.argsort(-node_load, kind="stable")[: redundant % nodes]:
        extra[k] += 1
    return extra


def replicate_experts(load: np.ndarray, extra: int, max_replicas: int) -> np.ndarray:
    """Replicas per expert: give each extra one to the expert with the highest load per replica.

    No expert gets more than `max_replicas` (the GPUs it can sit on); ties go to the lower id.
    """
    counts = np.ones(len(load), dtype=np.int64)
    for _ in range(extra):
        ratio = np.where(counts < max_replicas, load / counts, -np.inf)
        if not np.isfinite(ratio).any():
            break
        counts[int(np.argmax(ratio))] += 1
    return counts


def balanced_packing(weight: np.ndarray, packs: int, label: np.ndarray | None = None) -> np.ndarray:
    """Pack index of each item: equal item counts per pack (ceil), loads balanced (greedy LPT).

    Items go heaviest first to the lightest pack with room. With `label`, items sharing a label
    (replicas of one expert) go to distinct packs; when every pack with room already holds the label,
    a full pack without it hands one item (closest in weight) to a pack with room, which always
    exists because a full pack has more items than a pack with room.
    """
    weight = np.asarray(weight, dtype=np.float64)
    items = len(weight)
    label = np.arange(items) if label is None else np.asarray(label)
    capacity = -(-items // packs)
    pack_of = np.full(items, -1, dtype=np.int64)
    pack_load = np.zeros(packs)
    content: list[list[int]] = [[] for _ in range(packs)]
    labels: list[set] = [set() for _ in range(packs)]
    for item in np.lexsort((label, -weight)):
        open_ = [p for p in range(packs) if len(content[p]) < capacity and label[item] not in labels[p]]
        if not open_:
            open_ = [_make_room(item, weight, label, content, labels, capacity, pack_of, pack_load)]
        p = min(open_, key=lambda q: (pack_load[q], q))
        _put(int(item), p, weight, label, content, labels, pack_of, pack_load)
    return pack_of


def _put(item, pack, weight, label, content, labels, pack_of, pack_load) -> None:
    content[pack].append(item)
    labels[pack].add(label[item])
    pack_of[item] = pack
    pack_load[pack] += weight[item]


def _make_room(item, weight, label, content, labels, capacity, pack_of, pack_load) -> int:
    """Free a slot for `item` in a full pack without its label; return that pack."""
    full = next(p for p in range(len(content)) if label[item] not in labels[p])
    spare = next(q for q in range(len(content)) if len(content[q]) < capacity)
    movable = [i for i in content[full] if label[i] not in labels[spare]]
    moved = min(movable, key=lambda i: (abs(weight[i] - weight[item]), i))
    content[full].remove(moved)
    labels[full].discard(label[moved])
    pack_load[full] -= weight[moved]
    _put(moved, spare, weight, label, content, labels, pack_of, pack_load)
    return full

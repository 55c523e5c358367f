"""MoE-GPS Algorithm 1: dynamic expert duplication (Ma, Du, Chen, arXiv 2506.07366).

Per layer, start from round-robin; repeatedly take the GPU with the highest predicted load, take its
expert with the highest per-replica load, and add a replica on the least loaded GPU that has a free
slot and does not hold that expert yet; the expert's predicted tokens split evenly over its
replicas. A move is kept only if it improves the GPU loads (the max never rises); the loop stops
when no expert of the busiest GPU improves them or the replica budget is spent. Fed the true loads it
is the oracle balancer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simulator.planning.balancers.params import GreedyParams
from simulator.planning.balancers.common import (
    check_options, ep_ranks, equal_share_placement, int_option, replica_budget, require_loads,
    slot_limit,
)

if TYPE_CHECKING:  # at run time simulator.planning.placement imports this package
    from simulator.planning.placement import Placement, PlacementRequest

def greedy_duplication(request: PlacementRequest, name: str = "greedy_duplication") -> Placement:
    """Duplicate hot experts onto cold GPUs until the busiest GPU stops improving.

    Options: `replica_budget` (extra replicas per layer; default `request.redundant`, or one per GPU
    when that is 0), `max_replicas_per_gpu` (replica slots per GPU per layer; the smaller of this and
    `request.slots_per_gpu` applies; default unlimited).
    """
    config = check_options(request, name, GreedyParams)
    ranks = ep_ranks(request)
    budget = replica_budget(config, "replica_budget", request, len(ranks))
    slots, _ = slot_limit(request, int_option(config, "max_replicas_per_gpu", None),
                          "max_replicas_per_gpu", -(-request.experts // len(ranks)))
    loads = require_loads(request, name)
    layers = [duplicate_layer(loads[l], len(ranks), slots, budget) for l in range(request.layers)]
    return equal_share_placement([[[ranks[g] for g in hosts] for hosts in layer] for layer in layers])


def duplicate_layer(load: np.ndarray, gpus: int, slots: int | None, budget: int) -> list[list[int]]:
    """One layer's replicas as GPU indices 0..gpus-1 (positions in the EP group)."""
    experts = len(load)
    hosts = [[e % gpus] for e in range(experts)]
    held = np.bincount(np.arange(experts) % gpus, minlength=gpus)
    gpu_load = np.bincount(np.arange(experts) % gpus, weights=load, minlength=gpus).astype(np.float64)
    for _ in range(budget):
        move = _best_move(load, hosts, held, gpu_load, slots)
        if move is None:
            break
        expert, target, gpu_load = move
        hosts[expert].append(target)
        held[target] += 1
    return hosts


def _best_move(load, hosts, held, gpu_load, slots):
    """(expert, target GPU, new loads) of the first improving duplication from the busiest GPU."""
    busiest = int(np.argmax(gpu_load))
    on_busiest = [e for e, h in enumerate(hosts) if busiest in h]
    on_busiest.sort(key=lambda e: (-load[e] / len(hosts[e]), e))
    for expert in on_busiest:
        free = [g for g in range(len(gpu_load))
                if g not in hosts[expert] and (slots is None or held[g] < slots)]
        if not free:
            continue
        target = min(free, key=lambda g: (gpu_load[g], g))
        replicas = len(hosts[expert])
        new = gpu_load.copy()
        new[hosts[expert]] -= load[expert] / replicas - load[expert] / (replicas + 1)
        new[target] += load[expert] / (replicas + 1)
        if _improves(new, gpu_load):
            return expert, target, new
    return None


def _improves(new: np.ndarray, old: np.ndarray) -> bool:
    """True when the max does not rise and the loads sorted high to low get lexicographically smaller.

    Lexicographic rather than max-only, so that two GPUs tied at the max can be relieved one after
    the other (the first move leaves the max unchanged but lowers the count of GPUs at it).
    """
    if new.max() > old.max():
        return False
    a, b = np.sort(new)[::-1], np.sort(old)[::-1]
    tol = 1e-12 * max(float(b[0]), 1.0)
    differ = np.flatnonzero(np.abs(a - b) > tol)
    return bool(differ.size) and a[differ[0]] < b[differ[0]]

"""MoE-GPS Algorithm 1: dynamic expert duplication (Ma, Du, Chen, arXiv 2506.07366).

Per layer, start from round-robin; repeatedly take the GPU with the highest predicted load, take its
expert with the highest per-replica load, and add a replica on the least loaded GPU that has a free
slot and does not hold that expert yet; the expert's predicted tokens split evenly over its
replicas. A move is kept only if it improves the GPU loads (the max never rises); the loop stops
when no expert of the busiest GPU improves them or the replica budget is spent. Fed the true loads it
is the oracle balancer.

With the time objective (`request.objective == "time"`, the simulator's default) the loads being
balanced are the estimated expert-phase seconds of `simulator.planning.cost_model`: a replica
costs its own weight reads, and a replica not yet present costs its copy amortised over the
re-plan window, so a duplication is made only when it lowers the busiest GPU's estimate by more
than it costs. The search (busiest GPU, its heaviest replica, a free GPU) is the same; every free
GPU is tried as the target and the one leaving the lowest estimate wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simulator.planning.balancers.params import GreedyParams
from simulator.planning.cost_model import split_counts
from simulator.planning.balancers.common import (
    check_options, ep_ranks, equal_share_placement, int_option, present_hosts, replica_budget,
    require_loads, slot_limit, time_objective,
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
    cost = time_objective(request, name)
    if cost is not None:
        layers = [duplicate_layer_time(loads[l], ranks, slots, budget, cost,
                                       present_hosts(request, l, ranks))
                  for l in range(request.layers)]
        return equal_share_placement(layers)
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


def duplicate_layer_time(load: np.ndarray, ranks: list[int], slots: int | None, budget: int, cost,
                         present: list[list[int]]) -> list[list[int]]:
    """One layer's replicas (GPU ranks) minimising the estimated expert-phase time, copies included.

    Starts from round-robin; the estimate of the start is also the static placement's, so the
    result is never estimated slower than static. Moves are compared on `cost.gpu_times_s`'s
    vector (kernels, plus what the copies add to the window's mean), lexicographically as above.
    """
    experts, n = len(load), len(ranks)
    hosts = [[ranks[e % n]] for e in range(experts)]
    held = {r: 0 for r in ranks}
    for e in range(experts):
        held[ranks[e % n]] += 1
    compute = cost.gpu_compute_s(load, hosts)
    copies = cost.gpu_copy_s(hosts, present)
    for _ in range(budget):
        move = _best_time_move(load, hosts, held, compute, copies, slots, cost, present, ranks)
        if move is None:
            break
        expert, target, compute, copies = move
        hosts[expert].append(target)
        held[target] += 1
    return hosts


def _score(cost, compute: np.ndarray, copies: np.ndarray) -> np.ndarray:
    return compute + (cost.window_mean_s(compute, copies) - float(compute.max()))


def _best_time_move(load, hosts, held, compute, copies, slots, cost, present, ranks):
    """(expert, target, new compute, new copies) of the first improving duplication from the
    busiest GPU.

    For one expert the existing replicas' new times do not depend on the target, so the target is
    the free GPU whose time after taking the new replica (kernel, plus its copy if the weights are
    not there) is lowest; that move is kept if it improves the estimate.
    """
    score = _score(cost, compute, copies)
    if cost.grouped_gemm:
        return _best_grouped_move(load, hosts, held, score, slots, cost, present, ranks)
    busiest = int(np.argmax(score))
    on_busiest = [e for e, h in enumerate(hosts) if busiest in h]
    on_busiest.sort(key=lambda e: (-load[e] / len(hosts[e]), e))
    for expert in on_busiest:
        free = [g for g in ranks if g not in hosts[expert] and (slots is None or held[g] < slots)]
        if not free:
            continue
        old = hosts[expert]
        before = split_counts(float(load[expert]), [1.0 / len(old)] * len(old))
        after = split_counts(float(load[expert]), [1.0 / (len(old) + 1)] * (len(old) + 1))
        base = compute.copy()
        for rank, b, a in zip(old, before, after):
            base[rank] += cost.replica_s(rank, a) - cost.replica_s(rank, b)
        holders = present[expert]
        copy_in = {g: 0.0 if g in holders else float(cost.copy_s[cost.cheapest_source(holders, g), g])
                   for g in free}
        target = min(free, key=lambda g: (base[g] + cost.replica_s(g, after[-1])
                                          + copy_in[g] / cost.window, g))
        new_compute = base
        new_compute[target] += cost.replica_s(target, after[-1])
        new_copies = copies.copy()
        new_copies[target] += copy_in[target]
        if _improves(_score(cost, new_compute, new_copies), score):
            return expert, target, new_compute, new_copies
    return None


def _best_grouped_move(load, hosts, held, score, slots, cost, present, ranks):
    """The same search with whole-layer estimates (grouped GEMM is not additive per replica)."""
    busiest = int(np.argmax(score))
    on_busiest = [e for e, h in enumerate(hosts) if busiest in h]
    on_busiest.sort(key=lambda e: (-load[e] / len(hosts[e]), e))
    for expert in on_busiest:
        best = None
        for target in ranks:
            if target in hosts[expert] or (slots is not None and held[target] >= slots):
                continue
            trial = [list(h) for h in hosts]
            trial[expert].append(target)
            compute, copies = cost.gpu_compute_s(load, trial), cost.gpu_copy_s(trial, present)
            new = _score(cost, compute, copies)
            if _improves(new, score) and (best is None or _improves(new, best[1])):
                best = (target, new, compute, copies)
        if best is not None:
            return expert, best[0], best[2], best[3]
    return None

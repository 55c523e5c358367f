"""Resident expert replicas (vLLM's and SGLang's redundant experts): what each GPU holds between plans.

Each GPU has, in every MoE layer, slots for its round-robin experts plus `redundant_slots` more.
Weights copied into a slot stay there until the slot is needed for another expert (least recently
used first), so a replica a plan drops is not forgotten: when a later plan wants it back it costs
nothing. Two decisions use the slots:

- `resplit(loads)` — every iteration with a load forecast: choose, among the replicas already
  resident, which ones compute and split each expert's tokens over them (no copy, no cost);
- `replan(proposal, loads)` — every re-plan: a balancer's proposal is adopted per layer only when
  its estimated gain over the re-split of what is resident exceeds `min_gain` (hysteresis, so
  placements do not flap); the replicas it adds that are not resident are copied, and only those.

Estimates come from `simulator.planning.cost_model` (time objective) or token counts (tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.planning.balancers.common import equal_share_placement
from simulator.planning.balancers.greedy import _improves
from simulator.planning.cost_model import token_loads
from simulator.planning.placement import Placement


@dataclass(frozen=True)
class ResidentCopy:
    layer: int
    expert: int
    src: int
    dst: int


class ResidentReplicas:
    """The replicas each GPU holds per MoE layer, with their last use (for eviction)."""

    def __init__(self, layers: int, experts: int, ranks: list[int], slots: int, cost, objective: str,
                 min_gain: float):
        self.ranks, self.slots, self.cost = ranks, slots, cost
        self.objective, self.min_gain = objective, min_gain
        self.experts = experts
        n = len(ranks)
        self.home = [ranks[e % n] for e in range(experts)]
        # held[layer][rank]: {expert: last iteration it computed there}
        self.held = [{r: {e: -1 for e in range(experts) if self.home[e] == r} for r in ranks}
                     for _ in range(layers)]
        self.clock = 0

    def present(self, layer: int) -> list[list[int]]:
        """Ranks holding each expert's weights in `layer` (its home first while it is held there)."""
        found: list[list[int]] = [[] for _ in range(self.experts)]
        for rank, experts in self.held[layer].items():
            for e in experts:
                found[e].append(rank)
        for e, ranks in enumerate(found):
            ranks.sort(key=lambda r: (r != self.home[e], r))
        return found

    # --- estimates --------------------------------------------------------------------------

    def _gpu_cost(self, load, hosts, present=None) -> np.ndarray:
        """Per-GPU estimate (its max is the layer's): seconds, or tokens for the token objective."""
        if self.objective == "time":
            return self.cost.gpu_times_s(load, hosts, present=present)
        return token_loads(load, hosts, max(self.ranks) + 1)

    def _activate(self, load: np.ndarray, layer: int) -> list[list[int]]:
        """Greedy duplication restricted to resident replicas (all free): which ones compute."""
        allowed = self.present(layer)
        hosts = [[ranks[0]] for ranks in allowed]
        costs = self._gpu_cost(load, hosts)
        while True:
            busiest = int(np.argmax(costs))
            order = sorted((e for e, h in enumerate(hosts) if busiest in h),
                           key=lambda e: (-load[e] / len(hosts[e]), e))
            best = None
            for expert in order:
                for target in allowed[expert]:
                    if target in hosts[expert]:
                        continue
                    trial = [list(h) for h in hosts]
                    trial[expert].append(target)
                    new = self._gpu_cost(load, trial)
                    if _improves(new, costs) and (best is None or _improves(new, best[2])):
                        best = (expert, target, new)
                if best is not None:
                    break
            if best is None:
                return hosts
            hosts[best[0]].append(best[1])
            costs = best[2]

    # --- decisions --------------------------------------------------------------------------

    def resplit(self, loads: np.ndarray) -> Placement:
        """Every layer's placement over resident replicas only, balanced for `loads` (no copies)."""
        layers = [self._activate(loads[l], l) for l in range(len(self.held))]
        self._touch(layers)
        return equal_share_placement(layers)

    def replan(self, proposal: Placement, loads: np.ndarray) -> tuple[Placement, list[ResidentCopy]]:
        """Adopt `proposal` per layer where it gains more than `min_gain`; copy what is new."""
        layers, copies = [], []
        for l in range(len(self.held)):
            present = self.present(l)
            kept = self._activate(loads[l], l)
            proposed = [list(r) for r in proposal.replicas[l]]
            keep_s = float(self._gpu_cost(loads[l], kept).max())
            new_s = float(self._gpu_cost(loads[l], proposed, present).max())
            if keep_s - new_s > self.min_gain * keep_s and not self._same(kept, proposed):
                for expert, ranks in enumerate(proposed):
                    for rank in ranks:
                        if rank not in present[expert]:
                            src = (self.cost.cheapest_source(present[expert], rank)
                                   if self.cost is not None else present[expert][0])
                            copies.append(ResidentCopy(l, expert, src, rank))
                            self._admit(l, rank, expert, proposed)
                layers.append(proposed)
            else:
                layers.append(kept)
        self._touch(layers)
        return equal_share_placement(layers), copies

    @staticmethod
    def _same(a, b) -> bool:
        return [sorted(x) for x in a] == [sorted(x) for x in b]

    def _admit(self, layer: int, rank: int, expert: int, active: list[list[int]]) -> None:
        """Put `expert` in a slot of `rank`, evicting the least recently used inactive replica."""
        held = self.held[layer][rank]
        if len(held) >= self.slots:
            idle = [e for e in held if rank not in active[e]]
            victim = min(idle, key=lambda e: (held[e], e))
            del held[victim]
        held[expert] = self.clock

    def _touch(self, layers: list[list[list[int]]]) -> None:
        for l, hosts in enumerate(layers):
            for expert, ranks in enumerate(hosts):
                for rank in ranks:
                    self.held[l][rank][expert] = self.clock
        self.clock += 1

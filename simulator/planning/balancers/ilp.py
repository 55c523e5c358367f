"""MoETuner-style ILP placement (Go & Mahajan, arXiv 2502.06643), solved by scipy.optimize.milp.

One replica per expert. Binary x[l, e, g] = 1 when expert e of layer l lives on GPU g. The objective
trades the busiest GPU's predicted load against the tokens that must cross GPUs between consecutive
layers (a token whose layer-l and layer-(l+1) experts share a GPU stays there):

    minimise  w/L * sum_l z_l / m_l  +  (1-w)/P * sum_l C_l / T_l
    z_l >= sum_e load[l, e] x[l, e, g]                for every l, g   (z_l = busiest GPU of layer l)
    sum_g x[l, e, g] = 1,   sum_e x[l, e, g] <= cap   (one home per expert; memory per GPU)
    C_l = T_l - sum_{e, f, g} T[l, e, f] x[l, e, g] x[l+1, f, g]   (tokens crossing GPUs, l -> l+1)

m_l = sum_e load[l, e] / G (the perfectly balanced load) and T_l = sum T[l] normalise both terms to
ratios; P counts the layer pairs with traffic. `sequential` mode (default) places layer 0 for load
alone, then each next layer with the previous one fixed, which makes the traffic term linear in x
(no product variables): a small ILP per layer. `joint` mode solves all layers at once, linearising
each product of the `max_pairs` heaviest pairs per layer pair with y <= x[l, e, g], y <= x[l+1, f, g]
(maximised, so y equals the product at the optimum).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from simulator.planning.balancers.common import (
    BalancerWarning, check_options, choice_option, ep_ranks, equal_share_placement, float_option,
    int_option, optional_transitions, require_loads, slot_limit,
)

if TYPE_CHECKING:  # at run time simulator.planning.placement imports this package
    from simulator.planning.placement import Placement, PlacementRequest

OPTIONS = ("time_limit_s", "weight", "mode", "mip_gap", "max_pairs", "max_experts_per_gpu")


@dataclass(frozen=True)
class _Model:
    """Rows and columns of one MILP, built as COO triplets."""

    cost: np.ndarray
    rows: list
    cols: list
    vals: list
    lower: list
    upper: list
    integral: np.ndarray
    var_lower: np.ndarray
    var_upper: np.ndarray


@dataclass(frozen=True)
class _Outcome:
    x: np.ndarray | None
    limited: bool
    gap: float


def ilp_placement(request: PlacementRequest, name: str = "ilp") -> Placement:
    """Place one replica per expert by MILP: balanced GPU loads, few tokens crossing GPUs.

    Options: `weight` (0..1, default 0.5: share of the objective given to load balance),
    `time_limit_s` (per solve, default 10), `mip_gap` (relative gap at which HiGHS may stop, default
    0.001), `mode` (sequential | joint), `max_pairs` (joint: co-routing pairs modelled per layer
    pair, default 16 x experts), `max_experts_per_gpu` (default ceil(experts / GPUs), at most the
    memory's slots). Without `request.transitions` only the load term remains.
    """
    config = check_options(request, name, OPTIONS)
    field, experts = request.field, request.experts
    ranks = ep_ranks(request)
    weight = float_option(config, "weight", field, 0.5, 0.0, 1.0)
    time_limit_s = float_option(config, "time_limit_s", field, 10.0, 0.0, np.inf, low_open=True)
    gap = float_option(config, "mip_gap", field, 1e-3, 0.0, 1.0)
    mode = choice_option(config, "mode", field, "sequential", ("sequential", "joint"))
    max_pairs = int_option(config, "max_pairs", field, 16 * experts, 1)
    needed = -(-experts // len(ranks))
    cap_option = int_option(config, "max_experts_per_gpu", field, None, 1)
    slots, _ = slot_limit(request, cap_option, "max_experts_per_gpu", needed)
    cap = slots if cap_option is not None else needed
    loads = require_loads(request, name)
    trans = optional_transitions(request)
    if trans is None or weight == 1.0:
        trans = np.zeros((max(request.layers - 1, 0), experts, experts))
    options = {"time_limit": time_limit_s, "mip_rel_gap": gap}
    if mode == "joint":
        homes, outcomes = _joint(loads, trans, len(ranks), cap, weight, max_pairs, options)
    else:
        homes, outcomes = _sequential(loads, trans, len(ranks), cap, weight, options)
    _warn(outcomes, time_limit_s)
    return equal_share_placement([[[ranks[g]] for g in layer] for layer in homes])


def _sequential(loads, trans, gpus, cap, weight, options):
    """Each layer in turn, the previous layer fixed: the traffic term is linear in x."""
    homes, outcomes = [], []
    for layer, load in enumerate(loads):
        pull = np.zeros((gpus, len(load)))  # tokens of each next expert already on each GPU
        total = 0.0
        if layer > 0 and trans[layer - 1].sum() > 0:
            prev = np.zeros((len(load), gpus))
            prev[np.arange(len(load)), homes[-1]] = 1.0
            pull, total = prev.T @ trans[layer - 1], float(trans[layer - 1].sum())
        model = _Builder(len(load), gpus)
        x = model.layer(load, cap, weight / _balanced(load, gpus))
        if total > 0:
            model.cost[x] -= (1.0 - weight) * pull.T.ravel() / total
        else:
            model.pin_heaviest(x, load)
        outcome = _solve(model.build(), options)
        outcomes.append(outcome)
        homes.append(_homes(outcome.x, x, len(load), gpus) if outcome.x is not None
                     else [e % gpus for e in range(len(load))])
    return homes, outcomes


def _joint(loads, trans, gpus, cap, weight, max_pairs, options):
    """All layers in one MILP with y variables for the heaviest co-routing pairs."""
    layers, experts = loads.shape
    model = _Builder(experts, gpus)
    xs = [model.layer(loads[l], cap, weight / (layers * _balanced(loads[l], gpus)))
          for l in range(layers)]
    pairs = [l for l in range(layers - 1) if trans[l].sum() > 0]
    for l in pairs:
        flat = trans[l].ravel()
        keep = np.argsort(-flat, kind="stable")[:max_pairs]
        keep = keep[flat[keep] > 0]
        scale = (1.0 - weight) / (len(pairs) * trans[l].sum())
        by_first, by_second = {}, {}
        for pair in keep:
            e, f = divmod(int(pair), experts)
            for g in range(gpus):
                y = model.co_located(xs[l][e * gpus + g], xs[l + 1][f * gpus + g], -scale * flat[pair])
                by_first.setdefault((e, g), []).append(y)
                by_second.setdefault((f, g), []).append(y)
        # RLT cuts (capacity row times x): at most `cap` partners share a GPU with a hosted expert
        for (e, g), ys in by_first.items():
            model.at_most(ys, xs[l][e * gpus + g], cap)
        for (f, g), ys in by_second.items():
            model.at_most(ys, xs[l + 1][f * gpus + g], cap)
    model.pin_heaviest(xs[0], loads[0])
    outcome = _solve(model.build(), options)
    if outcome.x is None:
        return [[e % gpus for e in range(experts)] for _ in range(layers)], [outcome]
    return [_homes(outcome.x, xs[l], experts, gpus) for l in range(layers)], [outcome]


class _Builder:
    """Accumulates variables and constraint rows; `build` freezes them into a `_Model`."""

    def __init__(self, experts: int, gpus: int):
        self.experts, self.gpus = experts, gpus
        self.cost = np.zeros(0)
        self.integral, self.var_lower, self.var_upper = [], [], []
        self.rows, self.cols, self.vals, self.lower, self.upper = [], [], [], [], []

    def _variables(self, count: int, integral: bool, upper: float) -> np.ndarray:
        start = len(self.cost)
        self.cost = np.concatenate([self.cost, np.zeros(count)])
        self.integral += [1 if integral else 0] * count
        self.var_lower += [0.0] * count
        self.var_upper += [upper] * count
        return np.arange(start, start + count)

    def _row(self, cols, vals, lower: float, upper: float) -> None:
        row = len(self.lower)
        self.rows += [row] * len(cols)
        self.cols += list(cols)
        self.vals += list(vals)
        self.lower.append(lower)
        self.upper.append(upper)

    def layer(self, load: np.ndarray, cap: int, z_cost: float) -> np.ndarray:
        """x[e, g] (flattened e * gpus + g) and z of one layer, with its three constraint families."""
        e_count, g_count = self.experts, self.gpus
        x = self._variables(e_count * g_count, True, 1.0)
        z = self._variables(1, False, np.inf)[0]
        self.cost[z] = z_cost
        grid = x.reshape(e_count, g_count)
        for e in range(e_count):
            self._row(grid[e], np.ones(g_count), 1.0, 1.0)
        for g in range(g_count):
            self._row(grid[:, g], np.ones(e_count), -np.inf, float(cap))
            self._row(np.r_[grid[:, g], z], np.r_[load, -1.0], -np.inf, 0.0)
        return x

    def co_located(self, x_a: int, x_b: int, cost: float) -> int:
        """y <= x_a, y <= x_b with a negative cost, so y = x_a * x_b at the optimum."""
        y = self._variables(1, False, 1.0)[0]
        self.cost[y] = cost
        self._row([y, x_a], [1.0, -1.0], -np.inf, 0.0)
        self._row([y, x_b], [1.0, -1.0], -np.inf, 0.0)
        return int(y)

    def at_most(self, ys: list[int], x: int, cap: int) -> None:
        """sum(ys) <= cap * x: valid for products y = x * x', tightens the LP relaxation."""
        self._row([*ys, x], [*([1.0] * len(ys)), -float(cap)], -np.inf, 0.0)

    def pin_heaviest(self, x: np.ndarray, load: np.ndarray) -> None:
        """Break GPU symmetry: heaviest expert on GPU 0 (valid only when GPUs are interchangeable)."""
        self.var_lower[x[int(np.argmax(load)) * self.gpus]] = 1.0

    def build(self) -> _Model:
        return _Model(self.cost, self.rows, self.cols, self.vals, self.lower, self.upper,
                      np.array(self.integral), np.array(self.var_lower), np.array(self.var_upper))


def _solve(model: _Model, options: dict | None = None) -> _Outcome:
    matrix = coo_array((model.vals, (model.rows, model.cols)),
                       shape=(len(model.lower), len(model.cost))).tocsr()
    result = milp(model.cost, integrality=model.integral,
                  bounds=Bounds(model.var_lower, model.var_upper),
                  constraints=LinearConstraint(matrix, model.lower, model.upper), options=options)
    limited = result.status == 1
    gap = getattr(result, "mip_gap", None)
    return _Outcome(result.x, limited, float(gap) if gap is not None else float("nan"))


def _homes(solution: np.ndarray, x: np.ndarray, experts: int, gpus: int) -> list[int]:
    return [int(g) for g in np.argmax(solution[x].reshape(experts, gpus), axis=1)]


def _balanced(load: np.ndarray, gpus: int) -> float:
    """The busiest GPU's load under a perfect split, the load term's unit (1 when loads are 0)."""
    mean = float(load.sum()) / gpus
    return mean if mean > 0 else 1.0


def _warn(outcomes: list[_Outcome], time_limit_s: float) -> None:
    limited = [o for o in outcomes if o.limited and o.x is not None]
    failed = [i for i, o in enumerate(outcomes) if o.x is None]
    if limited:
        gap = max(o.gap for o in limited)
        where = f" in {len(limited)} of {len(outcomes)} solves" if len(outcomes) > 1 else ""
        warnings.warn(f"ILP stopped at its time limit of {time_limit_s:g} s{where}; using the best "
                      f"placement found (gap {gap:.1%})", BalancerWarning, stacklevel=3)
    if failed:
        what = f"layer(s) {', '.join(map(str, failed))}" if len(outcomes) > 1 else "every layer"
        warnings.warn(f"ILP found no feasible placement within its time limit of {time_limit_s:g} s "
                      f"for {what}; using round-robin there", BalancerWarning, stacklevel=3)

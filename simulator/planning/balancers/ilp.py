"""MoETuner's ILP placement (Go & Mahajan, arXiv 2502.06643), solved by scipy.optimize.milp (HiGHS).

One replica per expert. A placement is judged by one objective (`ilp_objective`), over layers l:

    J = w * mean_l dev_l  +  (1 - w) * sum_l sum_{e,f} T[l, e, f] * C[g_l(e), g_{l+1}(f)] / sum_l T_l

dev_l = sum_g |load_l(g) - mean_l| / (G * mean_l) is MoETuner's load term (mean relative deviation of
the GPUs' tokens from a perfect split); T[l, e, f] counts tokens whose experts are e at layer l and f
at layer l + 1 (the inter-layer dependency); C[a, b] is the cost of moving one token from GPU a to
GPU b, read from the topology (1 / bottleneck bandwidth of the path, scaled so the dearest pair
costs 1; C[a, a] = 0), so on several servers a token crossing a NIC costs ~9x one crossing NVLink.
With token residency `expert` the traffic term also counts the combine: K[l, e, f] tokens with
first choice e and another choice f move f's output to e's GPU (`request.coactivation`).

Two ways to minimise it, both layer by layer with the previous layer fixed:

- `two_step` (default, MoETuner's): ILP1 clusters each layer's experts into G equal-size clusters
  (balanced token load, and, weighted by 1 - w, keeping the tokens of the previous layer's cluster
  c together in cluster c: the dependency); ILP2 maps the clusters to GPUs with the topology's
  cost (total cost plus MoETuner's bottleneck, the dearest GPU pair's cost).
- `sequential`: one ILP per layer that places experts on GPUs directly (cluster and map fused).
  Every (clustering, mapping) pair of `two_step` is one of its feasible points with the same
  objective, so its optimum is never worse per layer (docs/balancers.md shows this).

The whole placement shares one wall-clock budget (`time_limit_s`): each solve gets the time left
divided by the solves left. A layer whose solve gets no time or finds nothing uses the load-only
(LPT) clusters. At the end the incumbent is compared by J with round-robin (static) and the
load-only placement, and the best is kept; `Placement.notes` says which, with the MIP gaps.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from simulator.planning.balancers.params import ILPParams
from simulator.planning.balancers.common import (
    BalancerWarning, check_options, choice_option, ep_ranks, float_option, int_option,
    optional_transitions, require_loads, slot_limit, time_objective,
)
from simulator.errors import ScenarioError

if TYPE_CHECKING:  # at run time simulator.planning.placement imports this package
    from simulator.planning.placement import Placement, PlacementRequest

MODES = ("two_step", "sequential")
MIN_SOLVE_S = 1e-3  # a solve offered less time than this is not attempted


@dataclass(frozen=True)
class Problem:
    """What the ILP decides from, in EP-group positions 0..G-1 (not GPU ranks)."""

    loads: np.ndarray  # [L, E] predicted tokens per expert
    trans: np.ndarray  # [L - 1, E, E] co-routing counts
    coact: np.ndarray  # [L, E, E] tokens with first choice e and another choice f (combine moves)
    cost: np.ndarray  # [G, G] relative cost of one token between positions (0 on the diagonal)
    cap: int  # most experts per GPU per layer
    floor: int  # fewest experts per GPU per layer (equal memory when G divides E)
    weight: float

    @property
    def gpus(self) -> int:
        return len(self.cost)


@dataclass
class _Clock:
    """One wall-clock budget shared by every solve of a placement."""

    limit_s: float
    solves: int
    started: float = field(default_factory=time.perf_counter)
    done: int = 0

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def share_s(self) -> float:
        """Time for the next solve: what is left, split over the solves left."""
        left = self.limit_s - self.elapsed_s()
        return left / max(self.solves - self.done, 1)


@dataclass(frozen=True)
class _Solve:
    step: str  # "ilp1" | "ilp2" | "layer"
    layer: int
    status: str  # optimal | time_limit | no_time | failed
    gap: float


def ilp_placement(request: PlacementRequest, name: str = "ilp") -> Placement:
    """Place one replica per expert by MILP: balanced GPU loads, cheap inter-layer token moves.

    Options: `weight` (0..1, default 0.5: share of the objective given to load balance),
    `time_limit_s` (> 0, default 10: wall-clock budget for the whole placement), `mip_gap` (relative
    gap at which HiGHS may stop, default 0.025 as MoETuner's Gurobi runs), `mode` (two_step |
    sequential), `max_experts_per_gpu` (default ceil(experts / GPUs), at most the memory's slots),
    `initial` (deployed | copied, default deployed: the first plan is the layout the weights are
    loaded in before serving, as MoETuner's offline placement; copied: the first iteration copies
    the weights from round-robin, like any re-plan), `polish` (default true: swap experts while the
    objective falls, within the time limit). Without `request.transitions` only the load term
    remains.
    """
    config = check_options(request, name, ILPParams)
    weight = float_option(config, "weight", 0.5)
    time_limit_s = float_option(config, "time_limit_s", 10.0)
    gap = float_option(config, "mip_gap", 0.025)
    mode = choice_option(config, "mode", "two_step")
    initial = choice_option(config, "initial", "deployed")
    problem = build_problem(request, config, weight)
    layers = problem.loads.shape[0]
    clock = _Clock(time_limit_s, solves=layers * (2 if mode == "two_step" else 1))
    solve = _sequential if mode == "sequential" else _two_step
    homes, solves = solve(problem, clock, gap)
    moves = 0
    if config.get("polish", True) is not False:
        homes, moves = polish(problem, homes, clock)
    candidates = {"ilp": homes, "load_only": _load_only(problem), "static": _round_robin(problem)}
    scores = {kind: objective(problem, h) for kind, h in candidates.items()}
    kept = min(candidates, key=lambda kind: (scores[kind], list(candidates).index(kind)))
    notes = _notes(mode, clock, solves, scores, kept, time_limit_s)
    notes["polish_moves"] = moves
    notes["load_unit"] = "seconds" if request.objective == "time" and request.cost is not None \
        else "tokens"
    notes["deployed_before_run"] = initial == "deployed"
    _warn(notes, solves, time_limit_s)
    ranks = ep_ranks(request)
    return _placement([[ranks[g] for g in layer] for layer in candidates[kept]], notes)


def build_problem(request: PlacementRequest, config: dict | None = None,
                  weight: float | None = None) -> Problem:
    """The request's loads, transitions, topology costs and per-GPU expert limits, checked."""
    config = dict(request.config or {}) if config is None else config
    if weight is None:
        weight = float_option(config, "weight", 0.5)
    ranks = ep_ranks(request)
    gpus, experts = len(ranks), request.experts
    needed = -(-experts // gpus)
    cap_option = int_option(config, "max_experts_per_gpu", None)
    slots, _ = slot_limit(request, cap_option, "max_experts_per_gpu", needed)
    cap = slots if cap_option is not None else needed
    loads = require_loads(request, "ilp")
    estimator = time_objective(request, "ilp")
    if estimator is not None:  # objective time: each expert weighs what its kernel takes
        loads = expert_seconds(estimator, loads, ranks)
    trans = optional_transitions(request)
    coact = _coactivation(request)
    if trans is None or weight == 1.0:
        trans = np.zeros((max(request.layers - 1, 0), experts, experts))
    if coact is None or weight == 1.0:
        coact = np.zeros((request.layers, experts, experts))
    return Problem(loads, trans, coact, pair_costs(request, ranks), cap, experts // gpus, weight)


def expert_seconds(estimator, loads: np.ndarray, ranks: list[int]) -> np.ndarray:
    """[L, E] seconds of each expert's FFN on its predicted tokens (weights read once, small
    batches memory-bound), from the run's cost model, averaged over the EP ranks' GPUs. One replica
    per expert, so an expert's time does not depend on where it goes (beyond the GPU model);
    with grouped GEMM the per-expert sum is an approximation of the grouped kernel."""
    out = np.zeros_like(loads)
    for index, tokens in np.ndenumerate(loads):
        out[index] = np.mean([estimator.replica_s(rank, float(tokens)) for rank in ranks])
    return out


def _coactivation(request: PlacementRequest) -> np.ndarray | None:
    """[layers, E, E] tokens whose first choice is e and another choice f at the same layer: with
    token residency `expert` the combine moves f's output to e's GPU (None: owner residency)."""
    if request.coactivation is None:
        return None
    coact = np.asarray(request.coactivation, dtype=np.float64)
    shape = (request.layers, request.experts, request.experts)
    if coact.shape != shape or not np.all(np.isfinite(coact)) or np.any(coact < 0):
        raise ScenarioError(f"coactivation must be finite, >= 0 and of shape {shape}, got "
                            f"{coact.shape}", f"{request.field}.coactivation")
    return coact


def pair_costs(request: PlacementRequest, ranks: list[int]) -> np.ndarray:
    """[G, G] cost of one token between EP positions: `request.pair_cost` (per GPU rank, from the
    topology) restricted to the EP group and scaled so the dearest pair costs 1; else 1 off the
    diagonal (every pair alike)."""
    gpus = len(ranks)
    if request.pair_cost is None:
        return 1.0 - np.eye(gpus)
    full = np.asarray(request.pair_cost, dtype=np.float64)
    if full.ndim != 2 or full.shape[0] != full.shape[1] or full.shape[0] <= max(ranks):
        raise ScenarioError(f"pair_cost must be [gpus, gpus] covering ranks up to {max(ranks)}, "
                            f"got shape {full.shape}", "topology")
    cost = full[np.ix_(ranks, ranks)].copy()
    np.fill_diagonal(cost, 0.0)
    if not np.all(np.isfinite(cost)) or np.any(cost < 0):
        raise ScenarioError("pair_cost must be finite and >= 0", "topology")
    top = cost.max()
    return cost / top if top > 0 else cost


def ilp_objective(request: PlacementRequest, placement: Placement) -> float:
    """J of `placement` (any replicas and shares) for the request's loads, transitions and costs."""
    problem = build_problem(request)
    ranks = ep_ranks(request)
    position = {rank: i for i, rank in enumerate(ranks)}
    shares = np.zeros((placement.layers, request.experts, len(ranks)))
    for layer, (replicas, weights) in enumerate(zip(placement.replicas, placement.shares)):
        for expert, (gpus, split) in enumerate(zip(replicas, weights)):
            for rank, share in zip(gpus, split):
                shares[layer, expert, position[rank]] += share
    return _objective_of_shares(problem, shares)


def objective(problem: Problem, homes: list[list[int]]) -> float:
    """J of one-replica homes ([layer][expert] -> EP position)."""
    layers, experts = problem.loads.shape
    shares = np.zeros((layers, experts, problem.gpus))
    for layer, home in enumerate(homes):
        shares[layer, np.arange(experts), home] = 1.0
    return _objective_of_shares(problem, shares)


def _objective_of_shares(problem: Problem, shares: np.ndarray) -> float:
    load = np.einsum("le,leg->lg", problem.loads, shares)
    total = load.sum(axis=1)
    mean = total / problem.gpus
    dev = np.where(total > 0, np.abs(load - mean[:, None]).sum(axis=1) / np.where(total > 0, total, 1),
                   0.0)
    value = problem.weight * float(dev.mean()) if len(dev) else 0.0
    moved = problem.trans.sum() + problem.coact.sum()
    if moved > 0 and problem.weight < 1.0:
        cost = sum(float(np.sum(problem.trans[l] * (shares[l] @ problem.cost @ shares[l + 1].T)))
                   for l in range(len(problem.trans)))
        cost += sum(float(np.sum(problem.coact[l] * (shares[l] @ problem.cost @ shares[l].T)))
                    for l in range(len(problem.coact)))
        value += (1.0 - problem.weight) * cost / float(moved)
    return value


def _moved(problem: Problem, layer: int) -> float:
    """Tokens layer `layer`'s placement decides the moves of: from the previous layer, and its
    own combine (the denominator of that layer's share of the traffic term)."""
    before = problem.trans[layer - 1].sum() if layer > 0 else 0.0
    return float(before + problem.coact[layer].sum())


def _pairs(problem: Problem, layer: int, scale: float) -> list[tuple[int, int, float]]:
    """The 4 E heaviest co-activated expert pairs of a layer, (e, f, gain x scale), e < f."""
    co = problem.coact[layer] + problem.coact[layer].T
    e, f = np.triu_indices(len(co), k=1)
    weight = co[e, f]
    order = np.argsort(-weight, kind="stable")[: 4 * len(co)]
    return [(int(e[i]), int(f[i]), float(weight[i]) * scale) for i in order if weight[i] > 0]


# --- polishing: what layer-by-layer solving cannot see -------------------------------------------

def polish(problem: Problem, homes: list[list[int]], clock: _Clock,
           max_passes: int = 50) -> tuple[list[list[int]], int]:
    """Swap two experts of a layer between GPUs (or move one to a GPU with a free slot) whenever
    J falls, until no move helps, `max_passes` sweeps or the global time limit.

    Layer-by-layer solving fixes layer l before seeing layer l + 1, so it can undo a good
    alignment the next layers would have kept; a move here is judged by the layers it touches
    (l - 1, l, l + 1), i.e. by J itself. Returns the homes and the number of moves made."""
    homes = [list(h) for h in homes]
    layers, experts = problem.loads.shape
    if problem.gpus < 2 or experts < 2:
        return homes, 0
    moves = 0
    for _ in range(max_passes):
        improved = False
        for layer in range(layers):
            home = homes[layer]
            best = _local(problem, homes, layer)
            for e in range(experts):
                for target in range(problem.gpus):
                    if clock.elapsed_s() >= clock.limit_s:
                        return homes, moves
                    source = home[e]
                    if target == source:
                        continue
                    filled = home.count(target)
                    partners = [f for f in range(experts) if home[f] == target] \
                        if filled >= problem.cap else [None]
                    for f in partners:
                        if home.count(source) <= problem.floor and f is None:
                            continue  # moving e alone would leave its GPU under the floor
                        home[e] = target
                        if f is not None:
                            home[f] = source
                        value = _local(problem, homes, layer)
                        if value < best - 1e-12:
                            best, improved, moves = value, True, moves + 1
                            break
                        home[e] = source
                        if f is not None:
                            home[f] = target
        if not improved:
            break
    return homes, moves


def _local(problem: Problem, homes: list[list[int]], layer: int) -> float:
    """The part of J that depends on `layer`'s homes (one replica per expert)."""
    load = np.bincount(homes[layer], weights=problem.loads[layer], minlength=problem.gpus)
    total = load.sum()
    value = 0.0
    if total > 0:
        value += problem.weight * float(np.abs(load - total / problem.gpus).sum() / total) \
            / problem.loads.shape[0]
    moved = problem.trans.sum() + problem.coact.sum()
    if moved > 0 and problem.weight < 1.0:
        cost = float(np.sum(problem.coact[layer] * problem.cost[np.ix_(homes[layer], homes[layer])]))
        if layer > 0:
            cost += float(np.sum(problem.trans[layer - 1]
                                 * problem.cost[np.ix_(homes[layer - 1], homes[layer])]))
        if layer < len(problem.trans):
            cost += float(np.sum(problem.trans[layer]
                                 * problem.cost[np.ix_(homes[layer], homes[layer + 1])]))
        value += (1.0 - problem.weight) * cost / float(moved)
    return value


# --- the two modes -------------------------------------------------------------------------------

def _two_step(problem: Problem, clock: _Clock, gap: float):
    """MoETuner: per layer, ILP1 (clusters, labelled by the previous layer's cluster they continue)
    then ILP2 (clusters onto GPUs given the previous layer's mapping and the topology's cost)."""
    layers, experts = problem.loads.shape
    homes, solves = [], []
    clusters_prev = mapping_prev = None
    for layer in range(layers):
        chain, moved = None, _moved(problem, layer)
        keep = (1.0 - problem.weight) / moved if moved > 0 else 0.0
        if layer > 0 and problem.trans[layer - 1].sum() > 0:
            chain = -keep * _chain_flow(problem.trans[layer - 1], clusters_prev, problem.gpus)
        clusters, record = _ilp1(problem, layer, chain, _pairs(problem, layer, keep), clock, gap)
        solves.append(record)
        if layer == 0 or chain is None:
            mapping = list(range(problem.gpus))
            clock.done += 1
            solves.append(_Solve("ilp2", layer, "optimal", 0.0))
        else:
            flow = _cluster_flow(problem.trans[layer - 1], clusters_prev, clusters, problem.gpus)
            mapping, record = _ilp2(problem, layer, flow, mapping_prev, clock, gap)
            solves.append(record)
        homes.append([mapping[c] for c in clusters])
        clusters_prev, mapping_prev = clusters, mapping
    return homes, solves


def _sequential(problem: Problem, clock: _Clock, gap: float):
    """One ILP per layer onto GPUs directly, the previous layer's homes fixed."""
    layers, experts = problem.loads.shape
    homes, solves = [], []
    gpus = problem.gpus
    mean_cost = float(problem.cost.sum() / (gpus * (gpus - 1))) if gpus > 1 else 0.0
    for layer in range(layers):
        pull, moved = None, _moved(problem, layer)
        keep = (1.0 - problem.weight) / moved if moved > 0 else 0.0
        if layer > 0 and problem.trans[layer - 1].sum() > 0:
            trans = problem.trans[layer - 1]
            prev = np.zeros((experts, gpus))
            prev[np.arange(experts), homes[-1]] = 1.0
            # [f, g]: cost of the previous layer's tokens reaching expert f if f sits on GPU g
            pull = keep * (trans.T @ prev @ problem.cost)
        # a co-activated pair on one GPU saves its combine (worth the mean cross-GPU cost)
        pairs = _pairs(problem, layer, keep * mean_cost)
        home, record = _ilp1(problem, layer, pull, pairs, clock, gap, step="layer")
        homes.append(home)
        solves.append(record)
    return homes, solves


# --- ILP1: clusters of one layer -----------------------------------------------------------------

def _chain_flow(trans: np.ndarray, clusters_prev: list[int], gpus: int) -> np.ndarray:
    """[E, G] tokens reaching expert f from the previous layer's cluster c (kept by ILP1 when f
    joins cluster c: cluster c of this layer continues cluster c of the previous one)."""
    member = np.zeros((len(clusters_prev), gpus))
    member[np.arange(len(clusters_prev)), clusters_prev] = 1.0
    return trans.T @ member


def _ilp1(problem: Problem, layer: int, linear: np.ndarray | None, pairs: list, clock: _Clock,
          gap: float, step: str = "ilp1") -> tuple[list[int], _Solve]:
    """Experts of `layer` into G clusters: w * sum_c |L_c - mean| / sum L + sum linear[e, c] y[e, c]
    - sum_pairs gain * [e and f in one cluster] (+ a constant keeping the objective >= 0, so that
    HiGHS's relative gap means something). Without `linear` the clusters are interchangeable: the
    heaviest expert is pinned to cluster 0."""
    load = problem.loads[layer]
    experts, gpus = len(load), problem.gpus
    if clock.share_s() <= MIN_SOLVE_S:
        return _lpt(load, gpus, problem.cap), _skip(clock, step, layer)
    total = float(load.sum())
    mean = total / gpus
    model = _Builder()
    y = model.variables(experts * gpus, integral=True, upper=1.0).reshape(experts, gpus)
    d = model.variables(gpus, integral=False, upper=np.inf)
    if total > 0:
        model.cost[d] = problem.weight / total
    constant = 0.0
    if linear is not None:
        model.cost[y.ravel()] += linear.ravel()
        constant -= float(np.minimum(linear, 0.0).min(axis=1).sum())
    else:
        model.var_lower[y[int(np.argmax(load)), 0]] = 1.0
    partners: dict[tuple[int, int], list[int]] = {}
    for e, f, gain in pairs:  # z <= y[e, c], z <= y[f, c]: z = 1 only with e and f together
        z = model.variables(gpus, integral=False, upper=1.0)
        model.cost[z] = -gain
        constant += gain
        for c in range(gpus):
            model.row([z[c], y[e, c]], [1.0, -1.0], -np.inf, 0.0)
            model.row([z[c], y[f, c]], [1.0, -1.0], -np.inf, 0.0)
            partners.setdefault((e, c), []).append(int(z[c]))
            partners.setdefault((f, c), []).append(int(z[c]))
    for (e, c), zs in partners.items():  # cut: at most cap - 1 partners share e's cluster
        if len(zs) > problem.cap - 1:
            model.row([*zs, y[e, c]], [*([1.0] * len(zs)), -float(problem.cap - 1)], -np.inf, 0.0)
    if constant > 0:
        one = model.variables(1, integral=False, upper=1.0)[0]
        model.var_lower[one] = 1.0
        model.cost[one] = constant
    for e in range(experts):
        model.row(y[e], np.ones(gpus), 1.0, 1.0)
    for c in range(gpus):
        model.row(y[:, c], np.ones(experts), float(problem.floor), float(problem.cap))
        model.row(np.r_[y[:, c], d[c]], np.r_[load, -1.0], -np.inf, mean)   # L_c - mean <= d_c
        model.row(np.r_[y[:, c], d[c]], np.r_[load, 1.0], mean, np.inf)     # mean - L_c <= d_c
    solution, record = _run(model, clock, gap, step, layer)
    if solution is None:
        return _lpt(load, gpus, problem.cap), record
    return [int(c) for c in np.argmax(solution[y.ravel()].reshape(experts, gpus), axis=1)], record


# --- ILP2: clusters onto GPUs --------------------------------------------------------------------

def _cluster_flow(trans, clusters_prev, clusters, gpus) -> np.ndarray:
    """[G, G] tokens from cluster c of the previous layer to cluster c' of this one."""
    a = np.zeros((len(clusters_prev), gpus))
    a[np.arange(len(clusters_prev)), clusters_prev] = 1.0
    b = np.zeros((len(clusters), gpus))
    b[np.arange(len(clusters)), clusters] = 1.0
    return a.T @ trans @ b


def _ilp2(problem: Problem, layer: int, flow: np.ndarray, mapping_prev: list[int], clock: _Clock,
          gap: float) -> tuple[list[int], _Solve]:
    """p[c', g] = 1 when cluster c' goes to GPU g (one each): minimise the total topology-weighted
    cost of the layer's inter-layer tokens plus the dearest GPU pair's (MoETuner's bottleneck)."""
    gpus = problem.gpus
    if clock.share_s() <= MIN_SOLVE_S:
        return list(mapping_prev), _skip(clock, "ilp2", layer)
    total = float(flow.sum())
    model = _Builder()
    p = model.variables(gpus * gpus, integral=True, upper=1.0).reshape(gpus, gpus)
    t = model.variables(1, integral=False, upper=np.inf)[0]
    model.cost[t] = 1.0
    source = np.zeros((gpus, gpus))  # source[a, c']: tokens leaving GPU a for cluster c'
    for c, a in enumerate(mapping_prev):
        source[a] += flow[c]
    for c in range(gpus):
        model.row(p[c], np.ones(gpus), 1.0, 1.0)
        model.row(p[:, c], np.ones(gpus), 1.0, 1.0)
    # total cost: source[a, c'] * cost[a, g] * p[c', g]
    model.cost[p.ravel()] += (source.T @ problem.cost).ravel() / total
    for a in range(gpus):
        for b in range(gpus):
            if a != b and problem.cost[a, b] > 0:
                coef = problem.cost[a, b] * source[a] / total  # over clusters c' placed on b
                model.row(np.r_[p[:, b], t], np.r_[coef, -1.0], -np.inf, 0.0)
    solution, record = _run(model, clock, gap, "ilp2", layer)
    if solution is None:
        return list(mapping_prev), record
    return [int(g) for g in np.argmax(solution[p.ravel()].reshape(gpus, gpus), axis=1)], record


# --- baselines -----------------------------------------------------------------------------------

def _lpt(load: np.ndarray, gpus: int, cap: int) -> list[int]:
    """Longest processing time first: heaviest expert onto the lightest GPU with a free slot."""
    home = [0] * len(load)
    held, filled = np.zeros(gpus), np.zeros(gpus, dtype=int)
    for e in np.argsort(-load, kind="stable"):
        room = np.flatnonzero(filled < cap)
        g = int(room[np.argmin(held[room])])
        home[int(e)] = g
        held[g] += load[e]
        filled[g] += 1
    return home


def _load_only(problem: Problem) -> list[list[int]]:
    return [_lpt(load, problem.gpus, problem.cap) for load in problem.loads]


def _round_robin(problem: Problem) -> list[list[int]]:
    experts = problem.loads.shape[1]
    return [[e % problem.gpus for e in range(experts)] for _ in range(problem.loads.shape[0])]


# --- solver plumbing -----------------------------------------------------------------------------

class _Builder:
    """Variables and constraint rows of one MILP, as COO triplets."""

    def __init__(self):
        self.cost = np.zeros(0)
        self.integral: list[int] = []
        self.var_lower: np.ndarray = np.zeros(0)
        self.var_upper: list[float] = []
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.vals: list[float] = []
        self.lower: list[float] = []
        self.upper: list[float] = []

    def variables(self, count: int, integral: bool, upper: float) -> np.ndarray:
        start = len(self.cost)
        self.cost = np.concatenate([self.cost, np.zeros(count)])
        self.var_lower = np.concatenate([self.var_lower, np.zeros(count)])
        self.integral += [1 if integral else 0] * count
        self.var_upper += [upper] * count
        return np.arange(start, start + count)

    def row(self, cols, vals, lower: float, upper: float) -> None:
        index = len(self.lower)
        self.rows += [index] * len(cols)
        self.cols += [int(c) for c in cols]
        self.vals += [float(v) for v in vals]
        self.lower.append(lower)
        self.upper.append(upper)


def _skip(clock: _Clock, step: str, layer: int) -> _Solve:
    """A solve the budget has no time left for (under MIN_SOLVE_S): not built, not run."""
    clock.done += 1
    return _Solve(step, layer, "no_time", float("nan"))


def _run(model: _Builder, clock: _Clock, gap: float, step: str, layer: int):
    """Solve within this solve's share of the budget; (solution or None, record)."""
    share_s = clock.share_s()
    clock.done += 1
    if share_s <= MIN_SOLVE_S:
        return None, _Solve(step, layer, "no_time", float("nan"))
    matrix = coo_array((model.vals, (model.rows, model.cols)),
                       shape=(len(model.lower), len(model.cost))).tocsr()
    result = milp(model.cost, integrality=np.array(model.integral),
                  bounds=Bounds(model.var_lower, np.array(model.var_upper)),
                  constraints=LinearConstraint(matrix, model.lower, model.upper),
                  options={"time_limit": share_s, "mip_rel_gap": gap})
    mip_gap = getattr(result, "mip_gap", None)
    mip_gap = float(mip_gap) if mip_gap is not None else float("nan")
    if result.x is None:
        return None, _Solve(step, layer, "failed", mip_gap)
    status = "time_limit" if result.status == 1 else "optimal"
    return result.x, _Solve(step, layer, status, mip_gap if status == "time_limit" else
                            (mip_gap if np.isfinite(mip_gap) else 0.0))


def _notes(mode, clock, solves, scores, kept, time_limit_s) -> dict:
    gaps = [s.gap for s in solves if np.isfinite(s.gap)]
    return {
        "balancer": "ilp", "mode": mode, "time_limit_s": time_limit_s,
        "elapsed_s": round(clock.elapsed_s(), 4), "solves": len(solves),
        "solves_at_time_limit": sum(s.status == "time_limit" for s in solves),
        "solves_without_solution": sum(s.status in ("failed", "no_time") for s in solves),
        "mip_gap_max": max(gaps) if gaps else None,
        "objective": {kind: round(value, 6) for kind, value in scores.items()},
        "kept": kept,
    }


def _warn(notes: dict, solves: list[_Solve], time_limit_s: float) -> None:
    limited = notes["solves_at_time_limit"]
    missing = [f"{s.step} layer {s.layer}" for s in solves if s.status in ("failed", "no_time")]
    if limited:
        warnings.warn(f"ILP: {limited} of {len(solves)} solves stopped at the global time limit of "
                      f"{time_limit_s:g} s (largest MIP gap {notes['mip_gap_max']:.1%})",
                      BalancerWarning, stacklevel=3)
    if missing:
        warnings.warn(f"ILP: no solution within the global time limit of {time_limit_s:g} s for "
                      f"{', '.join(missing)}; load-only clusters used there", BalancerWarning,
                      stacklevel=3)
    if notes["kept"] != "ilp":
        scores = notes["objective"]
        warnings.warn(f"ILP: its placement (objective {scores['ilp']:.6g}) is worse than "
                      f"{notes['kept']} ({scores[notes['kept']]:.6g}); keeping {notes['kept']}",
                      BalancerWarning, stacklevel=3)


def _placement(layers: list[list[int]], notes: dict) -> Placement:
    from simulator.planning.placement import Placement  # here: placement imports this package

    replicas = tuple(tuple((rank,) for rank in layer) for layer in layers)
    shares = tuple(tuple((1.0,) for _ in layer) for layer in layers)
    return Placement(replicas, shares, notes=notes)

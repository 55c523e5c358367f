"""What the predictor and the balancer decide for every simulated iteration, before time runs.

Decisions depend only on the trace (past iterations' true loads, this iteration's token ids),
never on simulated timing, so they are made here with numpy; their *costs* — predictor
inference kernels, replica weight copies, correction transfers — and their *benefit* — the
balance of the true tokens over the chosen replicas — are simulated as events by
`simulator.model.pipeline`. A predictor is fitted on `history` trace iterations that precede the
simulated ones and is scored only on the simulated (held-out) iterations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from pydantic import Field

from predictors.base import PredictorCost, distribution_error, top_k_accuracy
from predictors.registry import make_predictor, predictor_family, predictor_interface
from simulator.errors import ScenarioError
from simulator.registry import Params, parse_params
from simulator.planning.cost_model import OBJECTIVES
from simulator.planning.placement import Placement, PlacementRequest, make_placement
from simulator.planning.resident import ResidentReplicas
from workloads.trace import load_counts

# Keys of the scenario's `predictor:` section that the simulator reads (the rest go to the predictor).
PREDICTOR_RUN_KEYS = ("kind", "history", "replan_every", "presend")
# Keys of the `balancer:` section the strategy reads (the rest are the balancer algorithm's options).
BALANCER_RUN_KEYS = ("objective", "redundant_slots", "min_gain", "prefetch", "assume")
# `balancer.assume`: named sets of modelling assumptions (docs/balancers.md)
ASSUMPTIONS = ("none", "moe-gps")
DEFAULT_HISTORY = 10
DEFAULT_MIN_GAIN = 0.02


@dataclass(frozen=True)
class Copy:
    """Expert weights copied to a new replica before `layer` (MoE index) of an iteration runs."""

    layer: int
    expert: int
    src: int
    dst: int


@dataclass
class Strategy:
    """Per simulated iteration: the placement, what it costs to decide, what must move."""

    placements: list[Placement]
    copies: list[list[Copy]]  # per iteration
    predictor_cost: list[list[PredictorCost | None]]  # per iteration, per GPU (None: not run)
    predicted_experts: np.ndarray | None = None  # [iterations, layers, tokens, k] (token predictors)
    presend: bool = False
    name: str = "none"
    family: str = "none"
    error: float | None = None
    accuracy: float | None = None
    fit_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)
    prefetch: int | None = None  # MoE layers a copy may start ahead of its own (None: no limit)
    free_copies: bool = False  # assume moe-gps: copies are counted but take no time
    plan_lead: int = 0  # 1: a plan is known one iteration early (forecast from past loads only)
    resident_per_gpu: int = 0  # replicas per layer a GPU holds, used or not (resident mode)
    objective: str = "tokens"
    redundant_slots: int | None = None

    @property
    def copies_per_iteration(self) -> float:
        return sum(len(c) for c in self.copies) / max(len(self.copies), 1)


class BalancerRun(Params):
    """The keys of the scenario's `balancer:` section the strategy reads (the rest are the
    algorithm's options): objective, resident slots, hysteresis, prefetch depth, assumptions."""

    objective: Literal["time", "tokens"] | None = Field(None, description="default time (tokens under assume moe-gps)")
    redundant_slots: int | None = Field(None, ge=0, description="resident replica slots per GPU per layer")
    min_gain: float | None = Field(None, ge=0.0, le=1.0, description=f"default {DEFAULT_MIN_GAIN}")
    prefetch: int | None = Field(None, ge=0, description="MoE layers a copy may start ahead (default: no limit)")
    assume: Literal["none", "moe-gps"] | None = None


@dataclass(frozen=True)
class BalancerSettings:
    """What the strategy reads from the `balancer:` section besides the algorithm's options."""

    objective: str = "time"
    redundant_slots: int | None = None  # None: no resident replicas (every plan from scratch)
    min_gain: float = DEFAULT_MIN_GAIN
    prefetch: int | None = None
    assume: str = "none"

    @property
    def free_copies(self) -> bool:
        return self.assume == "moe-gps"


def balancer_run(config: dict[str, Any]) -> BalancerRun:
    """The strategy's keys of a balancer section, checked (`balancer.<key>` named on error)."""
    values = {key: config[key] for key in BALANCER_RUN_KEYS if key in config}
    return parse_params(BalancerRun, values, "balancer", "the balancer section", "key", ScenarioError)


def balancer_settings(config: dict[str, Any], replan_every: int = 1) -> BalancerSettings:
    """Objective, redundant slots, hysteresis, prefetch depth and assumptions (`balancer.<key>`).

    `assume: moe-gps` is MoE-GPS's modelling: replica copies take no time, balancers count tokens,
    the placement is re-planned every batch, no resident replicas; a setting that contradicts it
    is refused.
    """
    run = balancer_run(config)
    assume = run.assume or "none"
    objective = run.objective or ("tokens" if assume == "moe-gps" else "time")
    slots = run.redundant_slots
    min_gain = DEFAULT_MIN_GAIN if run.min_gain is None else run.min_gain
    if assume == "moe-gps":
        for value, wrong, field in ((objective, objective != "tokens", "balancer.objective"),
                                    (slots, slots is not None, "balancer.redundant_slots"),
                                    (replan_every, replan_every != 1, "predictor.replan_every")):
            if wrong:
                raise ScenarioError(f"assume moe-gps re-plans every batch with the token objective and "
                                    f"no resident replicas; got {value!r}", field)
    return BalancerSettings(objective, slots, min_gain, run.prefetch, assume)


def algorithm_options(config: dict[str, Any]) -> dict[str, Any]:
    """The balancer section without the strategy's keys (what the balancer function receives)."""
    return {k: v for k, v in config.items() if k not in BALANCER_RUN_KEYS}


class PredictorRun(Params):
    """The keys of the scenario's `predictor:` section the simulator reads (the rest are the
    predictor's hyper-parameters): trace iterations fitted on before the run, iterations between
    re-plans, and whether token predictors pre-send tokens to the predicted GPU."""

    history: int | None = Field(None, ge=0, description=f"default {DEFAULT_HISTORY} (0 without a predictor)")
    replan_every: int = Field(1, ge=1)
    presend: bool | None = None


def predictor_settings(spec: dict[str, Any]) -> tuple[int, int, bool | None]:
    """(history, replan_every, presend) from the scenario's predictor section, validated."""
    values = {key: spec[key] for key in PREDICTOR_RUN_KEYS[1:] if key in spec}
    run = parse_params(PredictorRun, values, "predictor", "the predictor section", "key", ScenarioError)
    history = run.history
    if history is None:
        history = DEFAULT_HISTORY if spec.get("kind", "none") != "none" else 0
    return history, run.replan_every, run.presend


def plan_strategy(*, model, trace, loads: np.ndarray, history: int, iterations: int, tokens: int,
                  owned_tokens: np.ndarray, predictor_spec: dict[str, Any], balancer_kind: str,
                  balancer_config: dict[str, Any], base_request: PlacementRequest, static: Placement,
                  cost=None) -> Strategy:
    """Run predictor and balancer over the simulated iterations (trace iterations history..).

    loads: [history + iterations, layers, experts] true pairs per expert (the first `tokens`
    tokens); `trace` (a `workloads.trace.TraceSource`) is read token by token only by a
    Token-to-Expert predictor. `cost`: the run's `ReplicaCostModel` (for the time objective); its
    copies are spread over the re-plan interval.
    """
    kind = predictor_spec.get("kind", "none")
    _, window, presend = predictor_settings(predictor_spec)
    settings = balancer_settings(balancer_config, window)
    gpus = len(owned_tokens)
    planner = _Planner(balancer_kind, settings, algorithm_options(balancer_config), base_request,
                       static, cost.with_window(window) if cost is not None else None, window)

    def decide(predicted_loads: np.ndarray | None, it: int) -> Placement:
        given = loads[history + it] if balancer_kind == "oracle" else predicted_loads
        return planner.decide(given, it)

    if kind == "none":
        placements = [decide(None, it) for it in range(iterations)]
        strategy = Strategy(placements, [], [[None] * gpus] * iterations, name="none", family="none")
    else:
        params = {k: v for k, v in predictor_spec.items() if k not in PREDICTOR_RUN_KEYS}
        predictor = make_predictor({"kind": kind, **params})
        family = predictor_family(kind)
        started = time.perf_counter()
        if predictor_interface(kind) == "distribution":
            strategy = _distribution_strategy(predictor, model, loads, history, iterations, window,
                                              gpus, decide)
            strategy.plan_lead = 1 if balancer_kind != "oracle" else 0
        else:
            trace = trace.materialise()
            experts = trace.experts[: history + iterations, :, :tokens, :]
            strategy = _token_strategy(predictor, model, trace, experts, history, iterations, window,
                                       owned_tokens, decide, presend if presend is not None else True)
        strategy.fit_s = time.perf_counter() - started
        strategy.name, strategy.family = kind, family
    strategy.copies = planner.copies if planner.resident is not None else \
        _copies(strategy.placements, static)
    strategy.prefetch = settings.prefetch
    strategy.free_copies = settings.free_copies
    strategy.objective = settings.objective if balancer_kind != "static" else "tokens"
    strategy.redundant_slots = settings.redundant_slots
    strategy.resident_per_gpu = planner.slots if planner.resident is not None else 0
    _note_balancer(strategy)
    return strategy


def _note_balancer(strategy: Strategy) -> None:
    """What the balancer said about its plans (the ILP: MIP gap, time, which placement it kept):
    the last plan's notes, the number of plans and the largest gap over all of them."""
    plans = [p.notes for i, p in enumerate(strategy.placements)
             if p.notes and (i == 0 or p is not strategy.placements[i - 1])]
    if not plans:
        return
    gaps = [n["mip_gap_max"] for n in plans if n.get("mip_gap_max") is not None]
    strategy.notes["balancer"] = {**plans[-1], "plans": len(plans),
                                  "mip_gap_max": max(gaps) if gaps else None,
                                  "kept_per_plan": [n.get("kept") for n in plans]}


class _Planner:
    """Placement per iteration: a fresh plan every `window` iterations, or resident replicas."""

    def __init__(self, kind, settings: BalancerSettings, options, base: PlacementRequest, static,
                 cost, window: int):
        self.kind, self.settings, self.options, self.static = kind, settings, options, static
        self.cost, self.window = cost, window
        self.base = replace(base, config=options, objective=settings.objective, cost=cost)
        self.previous: Placement | None = None
        self.copies: list[list[Copy]] = []
        self.resident: ResidentReplicas | None = None
        self.slots = 0
        if settings.redundant_slots is not None and kind != "static":
            needed = -(-base.experts // len(base.ep_ranks))
            self.slots = needed + settings.redundant_slots
            memory = base.slots_per_gpu
            if memory is not None and self.slots > memory:
                raise ScenarioError(
                    f"{settings.redundant_slots} redundant slot(s) per GPU do not fit in memory: "
                    f"each GPU has room for {max(memory - needed, 0)} replica(s) per layer beyond its "
                    f"{needed} round-robin expert(s)", "balancer.redundant_slots")
            self.resident = ResidentReplicas(base.layers, base.experts, list(base.ep_ranks),
                                             self.slots, cost, settings.objective,
                                             settings.min_gain)
            self.base = replace(self.base, slots_per_gpu=self.slots)

    def decide(self, loads: np.ndarray | None, it: int) -> Placement:
        if self.kind == "static":
            return self.static
        replan = it % self.window == 0
        if self.resident is None:
            if replan or self.previous is None:
                present = self.previous.replicas if self.previous is not None else None
                self.previous = make_placement(self.kind, replace(self.base, loads=loads,
                                                                  present=present))
            return self.previous
        if loads is None:  # fail the way a fresh plan would (the balancer names what is missing)
            make_placement(self.kind, replace(self.base, loads=None))
        loads = np.asarray(loads, dtype=np.float64)
        if replan:
            present = tuple(tuple(tuple(r) for r in self.resident.present(l))
                            for l in range(self.base.layers))
            proposal = make_placement(self.kind, replace(self.base, loads=loads, present=present))
            placement, moves = self.resident.replan(proposal, loads)
            self.copies.append([Copy(m.layer, m.expert, m.src, m.dst) for m in moves])
        else:
            placement = self.resident.resplit(loads)
            self.copies.append([])
        self.previous = placement
        return placement


def _distribution_strategy(predictor, model, loads, history, iterations, window, gpus, decide) -> Strategy:
    """Forecast once per window from past true loads; every GPU runs the (replicated) forecast."""
    predictor.fit(loads[:history])
    placements, costs, errors = [], [], []
    cost = predictor.inference_cost(model)
    for it in range(iterations):
        truth = loads[history + it]
        if hasattr(predictor, "observe_truth"):
            predictor.observe_truth(truth)
        forecast = predictor.predict() * truth.sum(axis=-1, keepdims=True)
        errors.append(distribution_error(forecast, truth))
        placement = decide(forecast, it)
        costs.append([cost] * gpus if it % window == 0 else [None] * gpus)
        placements.append(placement)
        predictor.update(truth)
    return Strategy(placements, [], costs, error=float(np.mean(errors)))


def _token_strategy(predictor, model, trace, experts, history, iterations, window, owned_tokens,
                    decide, presend) -> Strategy:
    """Predict every token's experts each iteration (each GPU pays for the tokens it owns), re-plan
    the placement once per window from the predicted loads, pre-send tokens every iteration."""
    if history == 0 and predictor.kind != "oracle.token":
        raise ScenarioError("a token predictor needs history >= 1 iterations to fit on",
                            "predictor.history")
    tokens = experts.shape[2]
    if history:
        predictor.fit(trace, np.arange(history))
    elif hasattr(predictor, "fit"):
        predictor.fit(trace, np.arange(1))
    predicted = np.stack([predictor.predict(trace, history + it)[:, :tokens] for it in range(iterations)])
    pred_loads = load_counts(predicted, model.experts)
    placements = [decide(pred_loads[it], it) for it in range(iterations)]
    costs = [[predictor.inference_cost(model, int(n)) for n in owned_tokens]] * iterations
    accuracy = top_k_accuracy(predicted, experts[history:])
    return Strategy(placements, [], costs, predicted_experts=predicted, presend=presend,
                    accuracy=accuracy)


def _copies(placements: list[Placement], static: Placement) -> list[list[Copy]]:
    """Weights to copy before each iteration: replicas the new placement has and the old lacks.

    The source is a GPU that held the expert in the previous placement (the least busy one as a
    source so far, so copies of one iteration spread over senders); dropping a replica is free.
    A first plan whose balancer says `deployed_before_run` (the ILP's default) costs no copies.
    """
    copies, previous = [], static
    if placements and (placements[0].notes or {}).get("deployed_before_run"):
        previous = placements[0]  # an offline plan (MoETuner): the weights were loaded in its layout
    for placement in placements:
        moves, sending = [], {}
        if placement is not previous:
            for layer, (old_layer, new_layer) in enumerate(zip(previous.replicas, placement.replicas)):
                for expert, (old, new) in enumerate(zip(old_layer, new_layer)):
                    for dst in new:
                        if dst in old:
                            continue
                        src = min(old, key=lambda g: (sending.get(g, 0), g))
                        sending[src] = sending.get(src, 0) + 1
                        moves.append(Copy(layer, expert, src, dst))
        copies.append(moves)
        previous = placement
    return copies

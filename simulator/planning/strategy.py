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
from typing import Any

import numpy as np
from pydantic import Field

from predictors.base import PredictorCost, distribution_error, top_k_accuracy
from predictors.registry import make_predictor, predictor_family, predictor_interface
from simulator.errors import ScenarioError
from simulator.registry import Params, parse_params
from simulator.planning.placement import Placement, PlacementRequest, make_placement
from workloads.trace import load_counts

# Keys of the scenario's `predictor:` section that the simulator reads (the rest go to the predictor).
PREDICTOR_RUN_KEYS = ("kind", "history", "replan_every", "presend")
DEFAULT_HISTORY = 10


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


def plan_strategy(*, model, trace, history: int, iterations: int, tokens: int, owned_tokens: np.ndarray,
                  predictor_spec: dict[str, Any], balancer_kind: str, balancer_config: dict[str, Any],
                  base_request: PlacementRequest, static: Placement) -> Strategy:
    """Run predictor and balancer over the simulated iterations (trace iterations history..)."""
    kind = predictor_spec.get("kind", "none")
    _, window, presend = predictor_settings(predictor_spec)
    experts = trace.experts[: history + iterations, :, :tokens, :]
    loads = load_counts(experts, model.experts)
    gpus = len(owned_tokens)

    def decide(predicted_loads: np.ndarray | None, it: int) -> Placement:
        if balancer_kind == "static":
            return static
        given = loads[history + it] if balancer_kind == "oracle" else predicted_loads
        return make_placement(balancer_kind, replace(base_request, loads=given, config=balancer_config))

    if kind == "none":
        placements = [decide(None, it) for it in range(iterations)]
        strategy = Strategy(placements, _copies(placements, static), [[None] * gpus] * iterations,
                            name="none", family="none")
        _note_balancer(strategy)
        return strategy

    params = {k: v for k, v in predictor_spec.items() if k not in PREDICTOR_RUN_KEYS}
    predictor = make_predictor({"kind": kind, **params})
    family = predictor_family(kind)
    started = time.perf_counter()
    if predictor_interface(kind) == "distribution":
        strategy = _distribution_strategy(predictor, model, loads, history, iterations, window, gpus,
                                          decide)
    else:
        strategy = _token_strategy(predictor, model, trace, experts, history, iterations, window,
                                   owned_tokens, decide, presend if presend is not None else True)
    strategy.fit_s = time.perf_counter() - started
    strategy.name, strategy.family = kind, family
    strategy.copies = _copies(strategy.placements, static)
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


def _distribution_strategy(predictor, model, loads, history, iterations, window, gpus, decide) -> Strategy:
    """Forecast once per window from past true loads; every GPU runs the (replicated) forecast."""
    predictor.fit(loads[:history])
    placements, costs, errors = [], [], []
    cost = predictor.inference_cost(model)
    placement = None
    for it in range(iterations):
        truth = loads[history + it]
        if hasattr(predictor, "observe_truth"):
            predictor.observe_truth(truth)
        forecast = predictor.predict() * truth.sum(axis=-1, keepdims=True)
        errors.append(distribution_error(forecast, truth))
        if it % window == 0:
            placement = decide(forecast, it)
            costs.append([cost] * gpus)
        else:
            costs.append([None] * gpus)
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
    placements = []
    for it in range(iterations):
        placements.append(decide(pred_loads[it], it) if it % window == 0 else placements[-1])
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

"""Resolve a validated scenario into the objects a run needs, checking them against each other.

Model, topology, trace, placement, compute models and memory are resolved here, once, so that a
trace whose shape disagrees with the model or a batch that cannot fit fails before any event runs.

The trace is read once, iteration by iteration and layer by layer (`TraceSource`), and reduced on
the way to what planning and the pipeline need: owner-by-expert pair counts per iteration and
layer (expert loads are their sums) and the history's first-choice transitions. Token-level
arrays are held whole only when a Token-to-Expert predictor reads them. `check_system` stops
before the trace: what `moesim validate` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import networkx as nx
import numpy as np

import topologies
from simulator.model.kernel_table import CalibrationTable
from simulator.model.compute import ComputeModel
from simulator.errors import USER_ERRORS, ScenarioError
from simulator.model.memory import MemoryUse, check_fits, gpu_memory_use
from simulator.planning.cost_model import ReplicaCostModel, replica_copy_bytes
from simulator.planning.placement import PlacementRequest, make_placement
from simulator.planning.strategy import Strategy, plan_strategy, predictor_settings
from simulator.model.routing import (Ownership, RoutingPlan, owner_bounds, owner_expert_counts,
                                     plan_expert_residency, plan_routing, plan_routing_tokens,
                                     token_ownership)
from simulator.scenario.budget import check_workload_budget
from simulator.scenario.schema import Scenario
from simulator.scenario.traces import check_trace, load_trace
from topologies.devices import gpu_spec
from workloads.models import model_spec
from workloads.trace import TraceSource


@dataclass(frozen=True)
class System:
    scenario: Scenario
    model: Any
    graph: nx.DiGraph
    trace: TraceSource  # streamed (synthetic) or in memory (files, token predictors)
    history: int  # leading trace iterations the predictor fitted on (not simulated)
    tokens: int  # tokens per iteration (batch x seq_len for prefill, batch for decode)
    context_len: int
    tp: int
    ownership: Ownership
    strategy: Strategy
    plan: RoutingPlan
    compute: list[ComputeModel]  # per GPU rank
    memory: list[MemoryUse]  # per GPU rank

    @property
    def gpus(self) -> int:
        return len(self.compute)


@dataclass(frozen=True)
class SystemCheck:
    """What `check_system` resolved: enough to say a scenario can run, without its trace."""

    scenario: Scenario
    model: Any
    gpus: int
    tokens: int
    trace_shape: tuple[int, int, int, int]  # iterations (history + simulated), layers, tokens, k
    memory: list[MemoryUse]  # per GPU rank, static placement


def build_system(scenario: Scenario, source: str = "scenario", on_progress=None) -> System:
    """Everything a run needs; bad input raises one ScenarioError prefixed with `source`.

    on_progress(stage, done, total) is called as the trace is read ("trace", per iteration) and
    while planning ("planning", per iteration)."""
    try:
        return _build(scenario, on_progress or (lambda stage, done, total: None))
    except USER_ERRORS as error:
        raise ScenarioError(f"{source}: {error}") from None


def check_system(scenario: Scenario, source: str = "scenario") -> SystemCheck:
    """Schema, model, topology, parallelism, trace shape and memory, without reading the trace
    (a file's arrays are checked from their headers; synthetic arguments without generating)."""
    try:
        return _check(scenario)
    except USER_ERRORS as error:
        raise ScenarioError(f"{source}: {error}") from None


def _check(scenario: Scenario) -> SystemCheck:
    base = _resolve(scenario)
    shape = check_trace(scenario, base["model"], base["tokens"], base["history"])
    return SystemCheck(scenario, base["model"], base["gpus"], base["tokens"], shape, base["memory"])


def _resolve(scenario: Scenario) -> dict[str, Any]:
    """The parts resolved before the trace: model, graph, ownership, static placement, memory."""
    workload = scenario.workload
    if workload.mode == "training" and workload.phase != "prefill":
        raise ScenarioError("training processes whole sequences; use phase: prefill", "workload.phase")
    model = model_spec(scenario.model, field="model")
    check_workload_budget(scenario, model, tokens_only=True)  # a 10^9 batch fails at once
    graph = _topology_graph(scenario)
    gpus = len(topologies.gpu_nodes(graph))
    ep, tp = _parallel_sizes(scenario, gpus)
    _check_residency(scenario, tp)
    tokens_per_sequence = workload.seq_len if workload.phase == "prefill" else 1
    tokens = workload.batch * tokens_per_sequence
    ownership = token_ownership(workload.batch, tokens_per_sequence, gpus, tp)
    node_of = [graph.nodes[name].get("node_id", 0) for name in topologies.gpu_nodes(graph)]
    devices = [graph.nodes[name]["device"] for name in topologies.gpu_nodes(graph)]
    predictor_spec = scenario.predictor.model_dump()
    balancer_config = scenario.balancer.params.given()
    # the algorithm's options plus the strategy's keys (objective, redundant_slots, ...)
    strategy_config = {**balancer_config, **scenario.balancer.run.given()}
    history, _, _ = predictor_settings(predictor_spec)
    base = PlacementRequest(model.moe_layers, model.experts, list(range(ep)), node_of, {},
                            redundant=ep)
    static = make_placement("static", replace(base, config=balancer_config if
                                              scenario.balancer.kind == "static" else {}))
    training = workload.mode == "training"
    everywhere = scenario.parallelism.token_residency == "expert"
    memory = _check_memory(model, static, ownership, tokens, workload.seq_len, devices, tp, training,
                           everywhere)
    # before the trace is read: held whole only from a file or for a Token-to-Expert predictor
    check_workload_budget(scenario, model, gpus, streamed=_streamed(scenario, predictor_spec))
    return dict(model=model, graph=graph, gpus=gpus, ep=ep, tp=tp, tokens=tokens,
                tokens_per_sequence=tokens_per_sequence, ownership=ownership, devices=devices,
                predictor_spec=predictor_spec, balancer_config=balancer_config,
                strategy_config=strategy_config, history=history,
                request=base, static=static, training=training, everywhere=everywhere,
                memory=memory)


def _build(scenario: Scenario, on_progress) -> System:
    workload = scenario.workload
    resolved = _resolve(scenario)
    model, graph, gpus, tokens = (resolved[k] for k in ("model", "graph", "gpus", "tokens"))
    ownership, devices, history = resolved["ownership"], resolved["devices"], resolved["history"]
    predictor_spec, static, tp = resolved["predictor_spec"], resolved["static"], resolved["tp"]
    trace = load_trace(scenario, model, tokens, history)
    if _reads_tokens(predictor_spec):
        trace = trace.materialise()  # a Token-to-Expert predictor fits on and predicts tokens
    everywhere = resolved["everywhere"]
    counts, transitions, coactivation = _reduce_trace(
        trace, ownership, gpus, history + workload.iterations, history, tokens, model.experts,
        lambda done, total: on_progress("trace", done, total), all_next=everywhere)
    base = replace(resolved["request"],
                   slots_per_gpu=_replica_slots(model, resolved["memory"], devices, resolved["ep"]),
                   transitions=transitions,
                   pair_cost=_pair_cost(graph) if scenario.balancer.kind == "ilp" else None,
                   coactivation=coactivation if everywhere else None)
    calibration = (
        CalibrationTable.from_csv(scenario.resolve_path(scenario.compute.calibration))
        if scenario.compute.calibration else None
    )
    compute = [ComputeModel(gpu_spec(device), calibration) for device in devices]
    cost = ReplicaCostModel.from_system(
        compute, model, graph, topologies.gpu_nodes(graph),
        replica_copy_bytes(model, resolved["training"]), grouped_gemm=scenario.compute.grouped_gemm)
    strategy = plan_strategy(
        model=model, trace=trace, loads=counts.sum(axis=2), history=history,
        iterations=workload.iterations, tokens=tokens,
        owned_tokens=np.bincount(ownership.owner, minlength=gpus), predictor_spec=predictor_spec,
        balancer_kind=scenario.balancer.kind, balancer_config=resolved["strategy_config"],
        base_request=base, static=static, cost=cost)
    simulated = lambda it: (c[:tokens] for c in trace.layer_choices(history + it))  # noqa: E731
    if everywhere:
        if strategy.presend:
            raise ScenarioError("expert residency and a token predictor's pre-sending both choose "
                                "where tokens wait for the dispatch; set predictor.presend: false",
                                "parallelism.token_residency")
        plan = plan_expert_residency(
            simulated, ownership, strategy.placements, gpus, model.experts,
            list(model.moe_layer_indices), model.layers, resolved["tokens_per_sequence"],
            workload.phase, float(model.kv_bytes_per_token_per_layer))
    elif strategy.presend:
        plan = plan_routing_tokens(simulated, ownership, strategy.placements, gpus, model.experts,
                                   strategy.predicted_experts)
    else:
        plan = plan_routing(counts[history:], ownership, strategy.placements, gpus, model.experts)
    on_progress("planning", workload.iterations, workload.iterations)
    memory = _check_memory(model, strategy.placements, ownership, tokens, workload.seq_len, devices, tp,
                           resolved["training"], everywhere,
                           strategy.resident_per_gpu * model.moe_layers)
    return System(scenario, model, graph, trace, history, tokens, workload.seq_len, tp, ownership,
                  strategy, plan, compute, memory)


def _topology_graph(scenario: Scenario) -> nx.DiGraph:
    """The topology: a file named by the scenario (relative to it, like `--topology FILE`) or the
    section itself."""
    if isinstance(scenario.topology, str):
        return topologies.load_topology_file(scenario.resolve_path(scenario.topology))
    return topologies.build(_topology_spec(scenario), field="topology")


def _topology_spec(scenario: Scenario) -> dict:
    """The topology section with a calibration file path resolved against the scenario's folder."""
    spec = dict(scenario.topology)
    if isinstance(spec.get("calibration"), str):
        spec["calibration"] = str(scenario.resolve_path(spec["calibration"]))
    return spec


def _replica_slots(model, memory: list[MemoryUse], devices: list[str], ep: int) -> int:
    """Expert replicas per layer one GPU can hold: its round-robin share plus what free memory
    allows when every MoE layer adds the same number of replicas."""
    base = -(-model.experts // ep)
    per_slot = model.expert_bytes * model.moe_layers
    free = min(gpu_spec(d).memory_bytes - m.total for d, m in zip(devices, memory))
    return int(min(model.experts, base + max(0, free // per_slot)))


def _streamed(scenario: Scenario, predictor_spec: dict) -> bool:
    """Whether the run holds one iteration of the trace at a time (a synthetic trace read by
    anything but a Token-to-Expert predictor)."""
    return scenario.workload.trace_source[0] == "synthetic" and not _reads_tokens(predictor_spec)


def _reads_tokens(predictor_spec: dict) -> bool:
    """Whether the predictor is Token-to-Expert (fits on and predicts each token's experts)."""
    kind = predictor_spec.get("kind", "none")
    if kind == "none":
        return False
    from predictors.registry import predictor_interface

    return predictor_interface(kind) != "distribution"


def _reduce_trace(trace: TraceSource, ownership: Ownership, gpus: int, iterations: int,
                  history: int, tokens: int, experts: int, on_iteration, all_next: bool = False):
    """One pass over the trace, iteration by iteration, of the first `tokens` tokens:

    - counts [iterations, layers, gpus, experts]: pairs per owner rank and expert;
    - transitions [layers - 1, E, E] over the history iterations (seen data): first choice at
      layer l -> first choice at l + 1, or (`all_next`, token residency expert, where the
      dispatch leaves from the first choice's GPU) -> each of the k choices at l + 1; None
      without history or with one MoE layer;
    - coactivation [layers, E, E] over the history, with `all_next` only: tokens whose first
      choice is e and another choice f (with token residency expert the combine moves f's output
      to e's GPU); None without history or with top-1.
    """
    bounds = owner_bounds(ownership, gpus)
    layers, top_k = trace.layers, trace.top_k
    counts = np.empty((iterations, layers, gpus, experts), dtype=np.int64)
    transitions = (np.zeros((layers - 1, experts, experts), dtype=np.int64)
                   if history and layers > 1 else None)
    coactivation = (np.zeros((layers, experts, experts), dtype=np.int64)
                    if history and top_k > 1 and all_next else None)

    def pair_counts(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        pairs = left.astype(np.int64) * experts + right  # int64: e * E overflows int16
        return np.bincount(pairs.ravel(), minlength=experts * experts).reshape(experts, experts)

    for it in range(iterations):
        previous = None
        for layer, choices in enumerate(trace.layer_choices(it)):
            choices = choices[:tokens]
            counts[it, layer] = owner_expert_counts(choices, bounds, experts)
            if it >= history:
                continue
            if transitions is not None:
                if previous is not None:
                    nexts = choices if all_next else choices[:, :1]
                    transitions[layer - 1] += pair_counts(previous[:, None], nexts)
                previous = choices[:, 0]
            if coactivation is not None:
                coactivation[layer] += pair_counts(choices[:, :1], choices[:, 1:])
        on_iteration(it + 1, iterations)
    return counts, transitions, coactivation


def _pair_cost(graph: nx.DiGraph) -> np.ndarray:
    """[gpus, gpus] seconds per byte between GPU ranks at the path's bottleneck bandwidth (0 on the
    diagonal): a NIC hop's cost dominates an NVLink one's, read from the topology itself."""
    paths = topologies.PathTable(graph)
    names = topologies.gpu_nodes(graph)
    return np.array([[0.0 if a == b else 1.0 / paths.path_bandwidth_Bps(a, b) for b in names]
                     for a in names])


def _check_residency(scenario: Scenario, tp: int) -> None:
    """`token_residency: expert` is MoETuner's inference model: data-parallel attention on the
    tokens a GPU holds; not combined with tensor-parallel attention or training."""
    if scenario.parallelism.token_residency != "expert":
        return
    field = "parallelism.token_residency"
    if tp != 1:
        raise ScenarioError(f"expert residency runs attention where each token lives: needs "
                            f"attention: dp (tp = 1), got tp = {tp}", field)
    if scenario.workload.mode != "inference":
        raise ScenarioError("expert residency is modelled for inference only; use owner for "
                            "training", field)


def _parallel_sizes(scenario: Scenario, gpus: int) -> tuple[int, int]:
    par = scenario.parallelism
    ep = par.ep or gpus
    if ep != gpus:
        raise ScenarioError(
            f"expert-parallel group must span every GPU of the topology ({gpus}), got {ep}",
            "parallelism.ep",
        )
    tp = par.tp or (ep if par.attention == "tp" else 1)
    if par.attention == "dp" and par.tp not in (None, 1):
        raise ScenarioError(f"data-parallel attention means tp = 1, got {par.tp}", "parallelism.tp")
    if gpus % tp:
        raise ScenarioError(f"must divide the GPU count {gpus}, got {tp}", "parallelism.tp")
    return ep, tp


def _check_memory(model, placements, ownership, tokens, context_len, devices, tp,
                  training=False, everywhere=False, resident: int = 0) -> list[MemoryUse]:
    """Checked before the trace is built (static placement), so an impossible batch fails fast,
    and again with the planned placements (the most replicas a GPU holds in any iteration, or
    `resident` replicas over all layers when it holds redundant slots, used or not).
    The largest expert intermediate is bounded by all tokens choosing one expert. `everywhere`
    (token residency expert): any GPU may hold any token, and the KV cache of every sequence."""
    placements = placements if isinstance(placements, list) else [placements]
    uses = []
    for rank, device in enumerate(devices):
        group = ownership.group_of(rank)
        sequences, held = int(ownership.group_sequences[group]), int(ownership.group_tokens[group])
        if everywhere:
            sequences, held = int(ownership.group_sequences.sum()), tokens
        use = gpu_memory_use(
            model, rank, max(resident, *(p.replica_count(rank) for p in placements)), tp, sequences, held,
            context_len, tokens, training=training,
        )
        check_fits(use, gpu_spec(device).memory_bytes, rank, device)
        uses.append(use)
    return uses

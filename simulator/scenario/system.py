"""Resolve a validated scenario into the objects a run needs, checking them against each other.

Model, topology, trace, placement, compute models and memory are resolved here, once, so that a
trace whose shape disagrees with the model or a batch that cannot fit fails before any event runs.
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
from simulator.model.routing import (
    Ownership, RoutingPlan, plan_expert_residency, plan_routing, token_ownership,
)
from simulator.scenario.budget import check_workload_budget
from simulator.scenario.schema import Scenario
from simulator.scenario.traces import load_trace
from topologies.devices import gpu_spec
from workloads.models import model_spec
from workloads.trace import RoutingTrace


@dataclass(frozen=True)
class System:
    scenario: Scenario
    model: Any
    graph: nx.DiGraph
    trace: RoutingTrace
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


def build_system(scenario: Scenario, source: str = "scenario") -> System:
    """Everything a run needs; bad input raises one ScenarioError prefixed with `source`."""
    try:
        return _build(scenario)
    except USER_ERRORS as error:
        raise ScenarioError(f"{source}: {error}") from None


def _build(scenario: Scenario) -> System:
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
    check_workload_budget(scenario, model, gpus)  # before the trace is materialised
    trace = load_trace(scenario, model, tokens, history)
    base = replace(base, slots_per_gpu=_replica_slots(model, memory, devices, ep),
                   transitions=_transitions(trace, history, tokens, model.experts, everywhere),
                   pair_cost=_pair_cost(graph) if scenario.balancer.kind == "ilp" else None,
                   coactivation=_coactivation(trace, history, tokens, model.experts) if everywhere
                   else None)
    calibration = (
        CalibrationTable.from_csv(scenario.resolve_path(scenario.compute.calibration))
        if scenario.compute.calibration else None
    )
    compute = [ComputeModel(gpu_spec(device), calibration) for device in devices]
    cost = ReplicaCostModel.from_system(
        compute, model, graph, topologies.gpu_nodes(graph), replica_copy_bytes(model, training),
        grouped_gemm=scenario.compute.grouped_gemm)
    strategy = plan_strategy(
        model=model, trace=trace, history=history, iterations=workload.iterations, tokens=tokens,
        owned_tokens=np.bincount(ownership.owner, minlength=gpus), predictor_spec=predictor_spec,
        balancer_kind=scenario.balancer.kind, balancer_config=strategy_config, base_request=base,
        static=static, cost=cost)
    experts = trace.experts[history: history + workload.iterations, :, :tokens, :]
    if scenario.parallelism.token_residency == "expert":
        if strategy.presend:
            raise ScenarioError("expert residency and a token predictor's pre-sending both choose "
                                "where tokens wait for the dispatch; set predictor.presend: false",
                                "parallelism.token_residency")
        plan = plan_expert_residency(
            lambda it: experts[it], ownership, strategy.placements, gpus, model.experts,
            list(model.moe_layer_indices), model.layers, tokens_per_sequence, workload.phase,
            float(model.kv_bytes_per_token_per_layer))
    else:
        plan = plan_routing(experts, ownership, strategy.placements, gpus, model.experts,
                            strategy.predicted_experts if strategy.presend else None)
    memory = _check_memory(model, strategy.placements, ownership, tokens, workload.seq_len, devices, tp,
                           training, everywhere, strategy.resident_per_gpu * model.moe_layers)
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


def _transitions(trace, history: int, tokens: int, experts: int,
                 all_next: bool = False) -> np.ndarray | None:
    """[layers - 1, E, E] co-routing counts over the history iterations (seen data): first choice
    at layer l -> first choice at l + 1, or (`all_next`, token residency expert, where the
    dispatch leaves from the first choice's GPU) -> each of the k choices at l + 1."""
    if history == 0 or trace.layers < 2:
        return None
    first = trace.experts[:history, :-1, :tokens, 0].astype(np.int64)  # E * E overflows int16 at E >= 182
    nexts = trace.experts[:history, 1:, :tokens, :] if all_next else \
        trace.experts[:history, 1:, :tokens, :1]
    pair = first[..., None] * experts + nexts  # [history, layers - 1, tokens, k]
    layers = pair.shape[1]
    offsets = (np.arange(layers) * experts * experts)[None, :, None, None]
    counts = np.bincount((pair + offsets).ravel(), minlength=layers * experts * experts)
    return counts.reshape(layers, experts, experts)


def _coactivation(trace, history: int, tokens: int, experts: int) -> np.ndarray | None:
    """[layers, E, E] tokens whose first choice is e and another choice f, over the history
    iterations: with token residency expert the combine moves f's output to e's GPU."""
    if history == 0 or trace.top_k < 2:
        return None
    chosen = trace.experts[:history, :, :tokens, :].astype(np.int64)  # E * E > int16 max
    pair = chosen[..., :1] * experts + chosen[..., 1:]  # [history, layers, tokens, k - 1]
    layers = pair.shape[1]
    offsets = (np.arange(layers) * experts * experts)[None, :, None, None]
    counts = np.bincount((pair + offsets).ravel(), minlength=layers * experts * experts)
    return counts.reshape(layers, experts, experts)


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

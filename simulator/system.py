"""Resolve a validated scenario into the objects a run needs, checking them against each other.

Model, topology, trace, placement, compute models and memory are resolved here, once, so that a
trace whose shape disagrees with the model or a batch that cannot fit fails before any event runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

import topologies
from simulator.calibration import CalibrationTable
from simulator.compute import ComputeModel
from simulator.errors import USER_ERRORS, ScenarioError
from simulator.memory import MemoryUse, check_fits, gpu_memory_use
from simulator.placement import Placement, PlacementRequest, make_placement
from simulator.routing import Ownership, RoutingPlan, plan_routing, token_ownership
from simulator.scenario import Scenario
from topologies.devices import gpu_spec
from workloads.models import model_spec
from workloads.synthetic import generate_trace
from workloads.trace import RoutingTrace


@dataclass(frozen=True)
class System:
    scenario: Scenario
    model: Any
    graph: nx.DiGraph
    trace: RoutingTrace
    tokens: int  # tokens per iteration (batch x seq_len for prefill, batch for decode)
    context_len: int
    tp: int
    ownership: Ownership
    placement: Placement
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
    if workload.mode == "training":
        raise ScenarioError("training mode is not simulated yet; allowed: inference", "workload.mode")
    if scenario.predictor.kind != "none":
        raise ScenarioError(f"unknown predictor {scenario.predictor.kind!r}; known: none", "predictor.kind")
    model = model_spec(scenario.model, field="model")
    graph = topologies.build(dict(scenario.topology), field="topology")
    gpus = len(topologies.gpu_nodes(graph))
    ep, tp = _parallel_sizes(scenario, gpus)
    tokens_per_sequence = workload.seq_len if workload.phase == "prefill" else 1
    tokens = workload.batch * tokens_per_sequence
    ownership = token_ownership(workload.batch, tokens_per_sequence, gpus, tp)
    node_of = [graph.nodes[name].get("node_id", 0) for name in topologies.gpu_nodes(graph)]
    placement = make_placement(scenario.balancer.kind, PlacementRequest(
        model.moe_layers, model.experts, list(range(ep)), node_of,
        scenario.balancer.model_dump(exclude={"kind"}),
    ))
    devices = [graph.nodes[name]["device"] for name in topologies.gpu_nodes(graph)]
    memory = _check_memory(model, placement, ownership, tokens, workload.seq_len, devices, tp)
    trace = _load_trace(scenario, model, tokens)
    experts = trace.experts[: workload.iterations, :, :tokens, :]
    plan = plan_routing(experts, ownership, placement, gpus, model.experts)
    calibration = (
        CalibrationTable.from_csv(scenario.resolve_path(scenario.compute.calibration))
        if scenario.compute.calibration else None
    )
    compute = [ComputeModel(gpu_spec(device), calibration) for device in devices]
    return System(scenario, model, graph, trace, tokens, workload.seq_len, tp, ownership, placement,
                  plan, compute, memory)


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


def _load_trace(scenario: Scenario, model, tokens: int) -> RoutingTrace:
    spec = dict(scenario.workload.trace)
    iterations = scenario.workload.iterations
    if set(spec) == {"synthetic"}:
        knobs = dict(spec["synthetic"] or {})
        try:
            return generate_trace(model, iterations=iterations, tokens=tokens,
                                  seed=knobs.pop("seed", scenario.seed), **knobs)
        except TypeError as error:
            raise ScenarioError(f"{error}", "workload.trace.synthetic") from None
    if set(spec) == {"file"}:
        trace = RoutingTrace.load(scenario.resolve_path(str(spec["file"])))
        trace.check_against(model, field="workload.trace.file")
        if trace.iterations < iterations or trace.tokens < tokens:
            raise ScenarioError(
                f"trace has {trace.iterations} iterations x {trace.tokens} tokens; the workload needs "
                f"{iterations} x {tokens}", "workload.trace.file")
        return trace
    raise ScenarioError(f"expected {{synthetic: {{...}}}} or {{file: path.npz}}, got keys {sorted(spec)}",
                        "workload.trace")


def _check_memory(model, placement, ownership, tokens, context_len, devices, tp) -> list[MemoryUse]:
    """Checked before the trace is built, so an impossible batch fails fast; the largest expert
    intermediate is bounded by every token choosing one expert (a token picks an expert once)."""
    uses = []
    for rank, device in enumerate(devices):
        group = ownership.group_of(rank)
        use = gpu_memory_use(
            model, rank, placement.replica_count(rank), tp,
            int(ownership.group_sequences[group]), int(ownership.group_tokens[group]), context_len,
            tokens,
        )
        check_fits(use, gpu_spec(device).memory_bytes, rank, device)
        uses.append(use)
    return uses

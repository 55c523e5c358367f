"""The expert-phase time estimate and the time objective: closed forms, and duplications that pay."""

import numpy as np
import pytest

from simulator.errors import ScenarioError
from simulator.model.compute import ComputeModel
from simulator.planning.balancers import eplb, greedy_duplication
from simulator.planning.cost_model import ReplicaCostModel, replica_copy_bytes, split_counts
from simulator.planning.placement import PlacementRequest, assign_replicas
from topologies import build as build_topology
from topologies.devices import gpu_spec
from topologies.paths import gpu_nodes
from workloads.models import model_spec

MIXTRAL = model_spec("mixtral-8x7b")


def cost_model(gpus=4, window=1, model=MIXTRAL):
    graph = build_topology({"builder": "nvlink_mesh", "gpus": gpus, "device": "a100-sxm4-80gb"})
    compute = [ComputeModel(gpu_spec("a100-sxm4-80gb")) for _ in range(gpus)]
    return ReplicaCostModel.from_system(compute, model, graph, gpu_nodes(graph),
                                        replica_copy_bytes(model), window=window)


def request(loads, cost, objective="time", gpus=4, **config):
    loads = np.atleast_2d(np.asarray(loads, dtype=float))
    return PlacementRequest(loads.shape[0], loads.shape[1], list(range(gpus)), [0] * gpus, config,
                            loads=loads, objective=objective, cost=cost)


def test_replica_time_is_the_compute_models_expert_kernel():
    cost = cost_model()
    expected = ComputeModel(gpu_spec("a100-sxm4-80gb")).expert_ffn(128, MIXTRAL).time_s
    assert cost.replica_s(0, 128) == expected
    assert cost.replica_s(0, 0) == 0.0


def test_copy_time_is_latency_plus_bytes_over_the_path_bandwidth_spread_over_the_window():
    cost = cost_model(window=4)
    graph = build_topology({"builder": "nvlink_mesh", "gpus": 4, "device": "a100-sxm4-80gb"})
    edge = graph.edges["gpu0", "gpu1"]
    alone = edge["latency_s"] + replica_copy_bytes(MIXTRAL) / edge["bandwidth_Bps"]
    assert cost.copy_s[0, 1] == pytest.approx(alone, rel=1e-12)
    assert cost.copy_cost_s(0, 1) == pytest.approx(alone / 4, rel=1e-12)


def test_layer_time_adds_every_hosted_replica_and_pays_copies_in_the_windows_first_iteration():
    cost = cost_model(window=4)
    load = np.array([300.0, 100.0, 0.0, 0.0, 50.0, 0.0, 0.0, 0.0])
    replicas = [[0, 1], [1], [2], [3], [0], [1], [2], [3]]
    present = [[0], [1], [2], [3], [0], [1], [2], [3]]
    compute = cost.gpu_compute_s(load, replicas)
    assert compute[0] == pytest.approx(cost.replica_s(0, 150) + cost.replica_s(0, 50))
    assert compute[1] == pytest.approx(cost.replica_s(1, 150) + cost.replica_s(1, 100))
    assert compute[2] == compute[3] == 0.0
    copies = cost.gpu_copy_s(replicas, present)
    assert copies.tolist() == [0.0, cost.copy_s[0, 1], 0.0, 0.0]
    first, steady = (compute + copies).max(), compute.max()
    assert cost.layer_time_s(load, replicas, present=present) == pytest.approx((first + 3 * steady) / 4)
    assert cost.gpu_times_s(load, replicas, present=present).max() == pytest.approx(
        cost.layer_time_s(load, replicas, present=present))


@pytest.mark.parametrize("tokens, shares", [(7, [0.5, 0.5]), (100, [1 / 3] * 3), (5, [0.2, 0.8]),
                                            (0, [0.5, 0.5])])
def test_split_counts_match_how_the_true_tokens_are_assigned(tokens, shares):
    experts = np.zeros((tokens, 1), dtype=np.int64)
    gpu = assign_replicas(experts, [list(range(len(shares)))], [shares])
    assert split_counts(tokens, shares).tolist() == np.bincount(gpu.ravel(),
                                                                minlength=len(shares)).tolist()


def test_time_objective_does_not_duplicate_a_memory_bound_expert():
    # ~128 pairs per expert (the default's 512 tokens x top-2 / 8): a second replica re-reads the
    # full weights and its copy is 352 MB; the token objective duplicates anyway
    loads = [380, 60, 120, 120, 130, 110, 150, 154]
    cost = cost_model()
    timed = greedy_duplication(request(loads, cost))
    assert all(len(r) == 1 for r in timed.replicas[0])
    counted = greedy_duplication(request(loads, cost, objective="tokens"))
    assert any(len(r) > 1 for r in counted.replicas[0])


def test_time_objective_duplicates_when_compute_bound_and_the_copy_is_amortised():
    loads = [40000, 2000, 3000, 3000, 2000, 2000, 3000, 2000]
    placement = greedy_duplication(request(loads, cost_model(window=100)))
    assert len(placement.replicas[0][0]) > 1
    cost = cost_model(window=100)
    before = cost.layer_time_s(np.array(loads, float), [[e % 4] for e in range(8)])
    present = [[e % 4] for e in range(8)]
    after = cost.layer_time_s(np.array(loads, float), placement.replicas[0], placement.shares[0],
                              present)
    assert after < before


def test_eplb_time_objective_keeps_round_robin_unless_its_plan_is_estimated_faster():
    loads = [380, 60, 120, 120, 130, 110, 150, 154]
    cost = cost_model()
    placement = eplb(request(loads, cost))
    assert [list(r) for r in placement.replicas[0]] == [[e % 4] for e in range(8)]
    heavy = eplb(request([40000, 2000, 3000, 3000, 2000, 2000, 3000, 2000], cost_model(window=100)))
    assert len(heavy.replicas[0][0]) > 1


def test_time_objective_without_a_cost_model_or_unknown_objective_names_the_field():
    with pytest.raises(ScenarioError, match="balancer.objective"):
        greedy_duplication(request([1, 2, 3, 4], None))
    with pytest.raises(ScenarioError, match="balancer.objective: must be one of time, tokens"):
        greedy_duplication(request([1, 2, 3, 4], cost_model(), objective="latency"))

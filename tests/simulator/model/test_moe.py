"""The expert-parallel layer: conservation, exact sums, collectives, effects that emerge."""

import json

import numpy as np
import pytest
import simpy

from simulator.engine import collectives
from simulator.engine.network import FlowNetwork
from simulator.scenario.run import simulate
from topologies.paths import PathTable


def test_every_routed_pair_is_computed_exactly_once(make_scenario):
    result = simulate(make_scenario())
    system = result.system
    experts = system.trace.materialise().experts[:3, :, : system.tokens]
    plan = system.plan
    for it in range(3):
        for layer in range(system.model.moe_layers):
            truth = np.bincount(experts[it, layer].ravel(), minlength=system.model.experts)
            assert np.array_equal(plan.expert_pairs[it, layer].sum(axis=0), truth)
            # the pairs a GPU receives are exactly the pairs it computes
            assert np.array_equal(plan.dispatch_pairs[it, layer].sum(axis=0),
                                  plan.expert_pairs[it, layer].sum(axis=1))
    conservation = result.summary["conservation"]
    assert conservation["pairs_routed"] == conservation["pairs_computed"] == experts.size


def test_network_flows_carry_each_dispatched_token_there_and_back(make_scenario):
    """Read from the network's own flow records: every all-to-all flow finished, and the bytes sent
    from GPU a to GPU b are the tokens a dispatched to b plus the results b combined back to a
    (so per GPU pair, bytes a->b == bytes b->a); summary.json's counts agree."""
    result = simulate(make_scenario())
    system = result.system
    gpus = system.gpus
    index = {f"gpu{r}": r for r in range(gpus)}
    carried = np.zeros((gpus, gpus))
    flows = [f for f in result.flows if f.tag == "all_to_all"]
    assert flows and all(np.isfinite(f.end_s) and f.end_s >= f.first_byte_s for f in flows)
    for flow in flows:
        carried[index[flow.src], index[flow.dst]] += flow.bytes
    token_bytes = system.model.hidden * system.model.dtype_bytes
    dispatched = system.plan.dispatch_pairs.sum(axis=(0, 1)).astype(float) * token_bytes
    np.fill_diagonal(dispatched, 0.0)
    assert np.array_equal(carried, dispatched + dispatched.T)
    assert np.array_equal(carried, carried.T)
    conservation = result.summary["conservation"]
    assert carried.sum() == conservation["bytes_dispatched"] + conservation["bytes_combined"] > 0


def test_single_gpu_single_expert_is_the_sum_of_its_kernels(make_scenario):
    model = {"base": "mixtral-8x7b", "name": "one-expert", "layers": 1, "experts": 1, "top_k": 1,
             "hidden": 1024, "ffn": 2048, "heads": 8, "kv_heads": 8, "head_dim": 128, "vocab": 1000}
    result = simulate(make_scenario(
        model=model, topology={"builder": "nvlink_mesh", "gpus": 1, "device": "a100-sxm4-80gb"},
        workload={"iterations": 2, "trace": {"synthetic": {"skewness": 1.0}}}))
    system = result.system
    compute = system.compute[0]
    kernels = [
        compute.attention(256, system.model, "prefill", 256, 1, tp=1),
        compute.router(256, system.model),
        compute.expert_ffn(256, system.model),
    ]
    per_iteration = 0.0
    for kernel in kernels:
        per_iteration += kernel.time_s
    assert result.summary["latency_s"]["mean"] == pytest.approx(per_iteration, rel=1e-12)
    assert result.summary["latency_s"]["total"] == pytest.approx(2 * per_iteration, rel=1e-12)
    assert result.summary["breakdown_s"]["dispatch"] == 0.0


def test_two_gpu_dispatch_equals_the_collective_alone(make_scenario):
    result = simulate(make_scenario(
        topology={"builder": "nvlink_mesh", "gpus": 2, "device": "a100-sxm4-80gb"},
        parallelism={"attention": "dp"}, workload={"batch": 2, "iterations": 1}))
    system = result.system
    spans = [s for s in result.spans if s.phase == "dispatch" and s.layer == 0 and s.gpu == 0]
    assert len(spans) == 1
    matrix = system.plan.dispatch_pairs[0, 0] * float(system.model.hidden * system.model.dtype_bytes)
    np.fill_diagonal(matrix, 0.0)
    env = simpy.Environment()
    net = FlowNetwork(env, PathTable(system.graph))
    env.process(collectives.all_to_all(net, ["gpu0", "gpu1"], matrix))
    env.run()
    assert spans[0].end_s - spans[0].start_s == pytest.approx(env.now, rel=1e-12)


def test_higher_skewness_slows_the_most_loaded_gpu(make_scenario):
    flat = simulate(make_scenario(workload={"trace": {"synthetic": {"skewness": 1.05}}}))
    skewed = simulate(make_scenario(workload={"trace": {"synthetic": {"skewness": 3.0}}}))
    assert skewed.summary["skewness"]["after"] > flat.summary["skewness"]["after"]
    assert skewed.summary["breakdown_s"]["expert"] > flat.summary["breakdown_s"]["expert"]
    assert skewed.summary["latency_s"]["mean"] > flat.summary["latency_s"]["mean"]


def test_pcie_spends_a_larger_share_in_all_to_all_than_nvlink(make_scenario):
    def comm_share(topology):
        summary = simulate(make_scenario(topology=topology)).summary
        b = summary["breakdown_s"]
        return (b["dispatch"] + b["combine"]) / summary["latency_s"]["mean"]

    nvlink = comm_share({"builder": "nvlink_mesh", "gpus": 4, "device": "a100-sxm4-80gb"})
    pcie = comm_share({"builder": "pcie_tree", "gpus": 4, "device": "a100-pcie-80gb",
                       "gpus_per_switch": 2, "sockets": 1})
    assert pcie > 1.5 * nvlink


def test_shared_experts_overlap_the_dispatch(make_scenario, tiny_model):
    model = {**tiny_model, "shared_experts": 1, "shared_ffn": 4096}
    result = simulate(make_scenario(model=model))
    spans = result.spans
    for rank in range(4):
        dispatch = [s for s in spans if s.gpu == rank and s.phase == "dispatch"]
        compute = [s for s in spans if s.gpu == rank and s.stream == "compute" and s.phase == "expert"]
        overlapped = any(c.start_s < d.end_s and d.start_s < c.end_s for c in compute for d in dispatch)
        assert overlapped, f"gpu{rank}: shared expert never overlaps the dispatch"


def test_same_scenario_and_seed_is_bit_identical(make_scenario, tmp_path):
    first = simulate(make_scenario()).summary
    second = simulate(make_scenario()).summary
    first.pop("wall_s"), second.pop("wall_s")
    assert json.dumps(first) == json.dumps(second)


def test_other_seed_gives_another_trace(make_scenario):
    a = simulate(make_scenario(seed=0)).system.trace.materialise().experts
    b = simulate(make_scenario(seed=1)).system.trace.materialise().experts
    assert not np.array_equal(a, b)

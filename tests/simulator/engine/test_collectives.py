"""Collectives built from flows: closed forms on idle networks, step dependencies, conservation."""

import numpy as np
import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import topologies
from simulator.engine import collectives
from simulator.engine.collectives import (
    CollectiveRecord,
    all_gather,
    all_reduce,
    all_to_all,
    hierarchical_all_to_all,
    point_to_point,
    reduce_scatter,
    sendrecv,
)
from simulator.errors import ScenarioError
from simulator.engine.network import FlowNetwork
from topologies.paths import PathTable, gpu_nodes

REL = 1e-9


def setup(graph, alpha_s=0.0, **kwargs):
    env = simpy.Environment()
    net = FlowNetwork(env, PathTable(graph), alpha_s=alpha_s, **kwargs)
    return env, net, gpu_nodes(graph)


def run(env, generator) -> CollectiveRecord:
    process = env.process(generator)
    env.run()
    return process.value


def edge(graph, a, b):
    data = graph.edges[a, b]
    return data["bandwidth_Bps"], data["latency_s"]


# ------------------------------------------------------------------ closed forms


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_ring_all_reduce_on_uniform_ring_matches_closed_form(n):
    graph = topologies.ring(gpus=n, bandwidth_GBps=40, latency_us=1.5)
    env, net, group = setup(graph, alpha_s=4e-6)
    nbytes = 3e8
    record = run(env, all_reduce(net, group, nbytes))
    expected = 2 * (n - 1) * (4e-6 + 1.5e-6) + 2 * (n - 1) / n * nbytes / 40e9
    assert record.time_s == pytest.approx(expected, rel=REL)
    assert record.flows == 2 * (n - 1) * n
    assert record.bytes == pytest.approx(2 * (n - 1) * nbytes, rel=1e-12)


@pytest.mark.parametrize("op", [reduce_scatter, all_gather])
@pytest.mark.parametrize("n", [2, 4, 7])
def test_ring_reduce_scatter_and_all_gather_match_closed_form(op, n):
    graph = topologies.ring(gpus=n, bandwidth_GBps=25, latency_us=0.5)
    env, net, group = setup(graph, alpha_s=1e-6)
    record = run(env, op(net, group, 1e8))
    assert record.time_s == pytest.approx((n - 1) * 1.5e-6 + (n - 1) / n * 1e8 / 25e9, rel=REL)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_all_to_all_on_full_mesh_is_one_pair_time(n):
    graph = topologies.nvlink_mesh(gpus=n, device="h100-sxm5-80gb")
    pair_Bps, lat_s = edge(graph, "gpu0", "gpu1")
    env, net, group = setup(graph, alpha_s=2e-6)
    record = run(env, all_to_all(net, group, 5e6))
    assert record.time_s == pytest.approx(2e-6 + lat_s + 5e6 / pair_Bps, rel=REL)
    assert net.solves == 1


@pytest.mark.parametrize("n", [2, 4, 8])
def test_all_to_all_on_one_nvswitch_is_port_limited(n):
    graph = topologies.nvswitch(gpus=n, device="h100-sxm5-80gb")
    port_Bps, lat_s = edge(graph, "gpu0", "nvsw0")
    env, net, group = setup(graph, alpha_s=2e-6)
    record = run(env, all_to_all(net, group, 5e6))
    assert record.time_s == pytest.approx(2e-6 + 2 * lat_s + (n - 1) * 5e6 / port_Bps, rel=REL)


def test_point_to_point_and_sendrecv_take_one_message_time():
    graph = topologies.ring(gpus=4, bandwidth_GBps=10, latency_us=1)
    env, net, group = setup(graph, alpha_s=1e-6)
    record = run(env, point_to_point(net, "gpu0", "gpu1", 1e7))
    assert record.time_s == pytest.approx(2e-6 + 1e7 / 10e9, rel=REL)
    env, net, group = setup(graph, alpha_s=1e-6)
    record = run(env, sendrecv(net, group, 1e7))
    assert record.time_s == pytest.approx(2e-6 + 1e7 / 10e9, rel=REL)
    assert record.flows == 4 and record.sent_bytes == (1e7,) * 4


def test_degenerate_groups_and_sizes_finish_at_once():
    graph = topologies.nvswitch(gpus=4)
    env, net, group = setup(graph, alpha_s=1e-6)
    assert run(env, all_reduce(net, group[:1], 1e6)).time_s == 0
    assert run(env, all_to_all(net, group, 0)).flows == 0
    assert run(env, point_to_point(net, "gpu1", "gpu1", 1e6)).flows == 0


def test_bad_sizes_and_groups_raise_scenario_error():
    graph = topologies.nvswitch(gpus=4)
    env, net, group = setup(graph)
    with pytest.raises(ScenarioError, match="nbytes"):
        next(all_to_all(net, group, np.ones((3, 3))))
    with pytest.raises(ScenarioError, match="nbytes"):
        next(all_to_all(net, group, -np.ones((4, 4))))
    with pytest.raises(ScenarioError, match="nbytes"):
        next(all_reduce(net, group, -1))
    with pytest.raises(ScenarioError, match="group"):
        next(all_reduce(net, ["gpu0", "gpu0"], 1))
    with pytest.raises(ScenarioError, match="known: all_gather"):
        collectives.collective("broadcast")
    assert collectives.collective("all_reduce") is all_reduce


# ------------------------------------------------------------------ dependencies


def test_ring_steps_wait_for_own_send_and_predecessor_chunk_only():
    """On a ring with one slow link, each step starts exactly when its two inputs are done."""
    graph = topologies.ring(gpus=4, bandwidth_GBps=50, latency_us=0.5)
    for a, b in [("gpu1", "gpu2"), ("gpu2", "gpu1")]:
        graph.edges[a, b]["bandwidth_Bps"] = 5e9
    env, net, group = setup(graph, alpha_s=1e-6)
    run(env, all_reduce(net, group, 4e7))
    records = net.records()
    steps = 6
    sends = {(g, s): r for g in range(4)
             for s, r in enumerate([r for r in records if r.src == group[g]])}
    assert len(sends) == 4 * steps
    for g in range(4):
        for s in range(1, steps):
            ready = max(sends[g, s - 1].end_s, sends[(g - 1) % 4, s - 1].end_s)
            assert sends[g, s].start_s == pytest.approx(ready, rel=1e-12)
    # not a global barrier: fast members run ahead of the slow link's step
    starts = [sends[g, 1].start_s for g in range(4)]
    assert max(starts) > min(starts)


def test_hierarchical_all_to_all_delivers_what_direct_delivers():
    graph = topologies.multi_node(nodes=3, gpus_per_node=4)
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 5, (12, 12)) * 1e6
    env, net, group = setup(graph, alpha_s=1e-6)
    direct = run(env, all_to_all(net, group, matrix))
    env, net, group = setup(graph, alpha_s=1e-6)
    hier = run(env, hierarchical_all_to_all(net, group, matrix))
    off_diagonal = matrix - np.diag(np.diag(matrix))
    np.testing.assert_allclose(direct.delivered_bytes, off_diagonal.sum(axis=0))
    np.testing.assert_allclose(hier.delivered_bytes, direct.delivered_bytes, rtol=1e-12)
    assert hier.bytes >= direct.bytes
    table = net.flow_table()
    assert table["bytes"].sum() == pytest.approx(hier.bytes, rel=1e-12)
    for k, name in enumerate(group):
        assert table["bytes"][table["src"] == name].sum() == pytest.approx(hier.sent_bytes[k])
        assert table["bytes"][table["dst"] == name].sum() == pytest.approx(hier.received_bytes[k])
    # stage 2 leaves a GPU only after all its stage-1 data arrived; inter-node flows pair equal
    # local ranks
    node = {name: graph.nodes[name]["node_id"] for name in group}
    for k, name in enumerate(group):
        inbound = (table["dst"] == name) & np.array([node[s] == node[name] for s in table["src"]])
        outbound = (table["src"] == name) & np.array([node[d] != node[name] for d in table["dst"]])
        if outbound.any() and inbound.any():
            assert table["start_s"][outbound].min() >= table["end_s"][inbound].max()
        for dst in table["dst"][outbound]:
            assert group.index(dst) % 4 == k % 4


def test_hierarchical_all_to_all_with_scalar_size_and_mapping():
    graph = topologies.multi_node(nodes=2, gpus_per_node=2)
    env, net, group = setup(graph)
    record = run(env, hierarchical_all_to_all(net, group, 1e6, node_of={"gpu0": 0, "gpu1": 0, "gpu2": 1, "gpu3": 1}))
    assert record.delivered_bytes == (3e6,) * 4
    assert record.flows == 2 * 2 + 2 * 2  # two intra-server pairs per server, one rail per GPU


def test_hierarchical_all_to_all_needs_equal_servers():
    graph = topologies.multi_node(nodes=2, gpus_per_node=4)
    env, net, group = setup(graph)
    with pytest.raises(ScenarioError, match="same number of GPUs"):
        run(env, hierarchical_all_to_all(net, group[:5], 1e6))


# ------------------------------------------------------------------ PCIe vs NVLink


def all_to_all_busbw(graph, per_peer_bytes):
    env, net, group = setup(graph)
    n = len(group)
    record = run(env, all_to_all(net, group, per_peer_bytes))
    return per_peer_bytes * n / record.time_s * (n - 1) / n


def test_pcie_tree_all_to_all_is_limited_by_switch_uplinks_below_nvlink():
    device, n, per_switch = "h100-sxm5-80gb", 8, 2
    pcie = topologies.pcie_tree(gpus=n, device=device, gpus_per_switch=per_switch)
    uplink_Bps, _ = edge(pcie, "pcisw0", "host0")
    pcie_busbw = all_to_all_busbw(pcie, 2**27)
    # each switch uplink carries its 2 GPUs' flows to the 6 GPUs elsewhere: 12 flows
    expected = n * uplink_Bps / (per_switch * (n - per_switch)) * (n - 1) / n
    assert pcie_busbw == pytest.approx(expected, rel=1e-3)
    for nvlink in (topologies.nvlink_mesh(gpus=n, device=device), topologies.nvswitch(gpus=n, device=device)):
        nvlink_busbw = all_to_all_busbw(nvlink, 2**27)
        link_ratio = 450e9 / uplink_Bps
        assert nvlink_busbw > pcie_busbw
        # below NVLink by about the per-GPU bandwidth ratio (x 12/7 for the uplink sharing)
        assert link_ratio < nvlink_busbw / pcie_busbw < 2 * link_ratio


# ------------------------------------------------------------------ invariants on every builder


def build(kind, size):
    if kind == "nvlink_mesh":
        return topologies.nvlink_mesh(gpus=size + 1, device="h100-sxm5-80gb")
    if kind == "nvswitch":
        return topologies.nvswitch(gpus=size + 1)
    if kind == "pcie_tree":
        return topologies.pcie_tree(gpus=2 * size + 2)
    if kind == "multi_node":
        return topologies.multi_node(nodes=1 + size % 3, gpus_per_node=2 + size // 3)
    return topologies.ring(gpus=size + 1)


OPS = ["all_to_all", "all_to_all_matrix", "hierarchical_all_to_all", "all_reduce",
       "reduce_scatter", "all_gather", "sendrecv"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["nvlink_mesh", "nvswitch", "pcie_tree", "multi_node", "ring"]),
    size=st.integers(1, 7),
    op=st.sampled_from(OPS),
    nbytes=st.floats(0, 1e8),
    alpha_us=st.sampled_from([0.0, 2.0]),
    seed=st.integers(0, 2**16),
)
def test_collectives_conserve_bytes_respect_capacity_and_lower_bounds(kind, size, op, nbytes, alpha_us, seed):
    graph = build(kind, size)
    loads = []
    env = simpy.Environment()
    paths = PathTable(graph)
    net = FlowNetwork(env, paths, alpha_s=alpha_us * 1e-6, on_solve=lambda t, r: loads.append(r))
    group = gpu_nodes(graph)
    n = len(group)
    if op == "all_to_all_matrix":
        argument = np.random.default_rng(seed).uniform(0, nbytes, (n, n))
        record = run(env, all_to_all(net, group, argument))
    else:
        record = run(env, collectives.collective(op)(net, group, nbytes))
    table = net.flow_table()
    # bytes: requested == delivered, and per GPU what the record says went out and came in
    assert net.bytes_delivered == pytest.approx(net.bytes_requested, rel=1e-12)
    assert table["bytes"].sum() == pytest.approx(record.bytes, rel=1e-9, abs=1e-6)
    assert sum(record.sent_bytes) == pytest.approx(sum(record.received_bytes), rel=1e-9, abs=1e-6)
    for k, name in enumerate(group):
        assert table["bytes"][table["src"] == name].sum() == pytest.approx(record.sent_bytes[k], rel=1e-9, abs=1e-6)
        assert table["bytes"][table["dst"] == name].sum() == pytest.approx(record.received_bytes[k], rel=1e-9, abs=1e-6)
    # no link above capacity at any solve
    if loads:
        assert np.all(np.array(loads) <= paths.capacity_Bps * (1 + 1e-9))
    # lower bounds: every flow alone on its path; every link carrying its bytes at full rate
    if len(table["bytes"]):
        alone = [net.alpha_s + paths.path_latency_s(s, d) + b / paths.path_bandwidth_Bps(s, d)
                 for s, d, b in zip(table["src"], table["dst"], table["bytes"]) if s != d]
        bound = max(alone + [float((net.bytes_on_link / paths.capacity_Bps).max())])
        assert record.time_s >= bound * (1 - 1e-9)
    if op in ("all_reduce", "reduce_scatter", "all_gather") and n > 1:
        steps = 2 * (n - 1) if op == "all_reduce" else n - 1
        hop = min(paths.path_latency_s(group[i], group[(i + 1) % n]) for i in range(n))
        assert record.time_s >= steps * (net.alpha_s + hop) * (1 - 1e-9)

"""NCCL's algorithm choices on the flow network: NVLS, multi-channel rings, tree, PXN, auto, and
the calibrated launch and per-message latencies."""

import numpy as np
import pytest
import simpy

import topologies
from simulator.engine import collectives
from simulator.engine.collectives import all_reduce, all_to_all, choose_algorithm, tuning
from simulator.errors import ScenarioError
from simulator.engine.network import FlowNetwork
from topologies.links import link_catalogue
from topologies.paths import PathTable, gpu_nodes

REL = 1e-9


def run(graph, make, alpha_s=0.0):
    env = simpy.Environment()
    net = FlowNetwork(env, PathTable(graph), alpha_s=alpha_s)
    done = env.process(make(net, gpu_nodes(graph)))
    env.run(done)
    return done.value, net


@pytest.mark.parametrize("n", [2, 4, 8])
def test_nvls_all_reduce_matches_its_closed_form(n):
    graph = topologies.nvswitch(gpus=n, device="h100-sxm5-80gb")
    eff = link_catalogue()["nvswitch4"].nvls_efficiency
    nbytes = 1e9
    record, net = run(graph, lambda net, g: all_reduce(net, g, nbytes, algorithm="nvls"), alpha_s=2e-6)
    per = nbytes * (1 + 1 / n) / eff
    # up to the switch and back: two hops of latency, then each port streams `per` both ways
    assert record.time_s == pytest.approx(2 * (2e-6 + 0.3e-6) + per / 450e9, rel=REL)
    assert record.algorithm == "nvls" and record.op == "all_reduce"
    assert record.sent_bytes == record.received_bytes == (pytest.approx(per),) * n
    assert net.bytes_delivered == pytest.approx(2 * n * per, rel=1e-12)


def test_nvls_beats_the_ring_on_nvswitch4_by_about_its_traffic_ratio():
    graph = topologies.nvswitch(gpus=8, device="h100-sxm5-80gb")
    ring, _ = run(graph, lambda net, g: all_reduce(net, g, 4e9))
    nvls, _ = run(graph, lambda net, g: all_reduce(net, g, 4e9, algorithm="nvls"))
    eff = link_catalogue()["nvswitch4"].nvls_efficiency
    assert ring.time_s / nvls.time_s == pytest.approx((2 * 7 / 8) / (9 / 8 / eff), rel=1e-3)


@pytest.mark.parametrize("graph", [topologies.nvswitch(gpus=8, device="a100-sxm4-80gb"),
                                   topologies.nvlink_mesh(gpus=4, device="h100-sxm5-80gb"),
                                   topologies.dgx_h100(nodes=2)])
def test_nvls_needs_one_nvswitch4_in_one_server(graph):
    assert collectives.nvls_switch(PathTable(graph), gpu_nodes(graph)) is None
    with pytest.raises(ScenarioError, match="algorithm: nvls needs"):
        run(graph, lambda net, g: all_reduce(net, g, 1e6, algorithm="nvls"))


def test_ring_channels_leave_each_server_through_every_nic():
    graph = topologies.multi_node(nodes=2, gpus_per_node=8, device="h100-sxm5-80gb")
    paths = PathTable(graph)
    nic_links = [paths.link_id[(f"gpu{g}", f"n{g // 8}_nic{g % 8}")] for g in range(16)]
    one, net1 = run(graph, lambda net, g: all_reduce(net, g, 1.6e9))
    eight, net8 = run(graph, lambda net, g: all_reduce(net, g, 1.6e9, channels=8))
    assert np.count_nonzero(net1.bytes_on_link[nic_links]) == 2  # one ring: one NIC per server
    used = net8.bytes_on_link[nic_links]
    assert np.all(used > 0) and used.max() == pytest.approx(used.min(), rel=1e-9)
    assert one.time_s / eight.time_s > 4
    assert eight.bytes == pytest.approx(one.bytes, rel=1e-12)  # same bytes, spread over the NICs
    orders = collectives.ring_orders(paths, gpu_nodes(graph), 8)
    assert [order[0] for order in orders] == [f"gpu{c}" for c in range(8)]
    assert all(sorted(order) == sorted(gpu_nodes(graph)) for order in orders)


def test_tree_streams_every_edge_up_and_down_and_conserves_bytes():
    graph = topologies.multi_node(nodes=4, gpus_per_node=4, device="h100-sxm5-80gb")
    nbytes = 8e8
    record, net = run(graph, lambda net, g: all_reduce(net, g, nbytes, algorithm="tree"))
    edges = collectives.tree_edges(PathTable(graph), gpu_nodes(graph))
    assert len(edges) == 4 and all(len(e) == 15 for e in edges)  # 4 channels, n - 1 edges each
    share = nbytes / 4 / tuning()["tree_efficiency"]["value"]
    assert record.flows == 4 * 15 * 2 and record.bytes == pytest.approx(4 * 15 * 2 * share, rel=1e-12)
    assert sum(record.sent_bytes) == pytest.approx(sum(record.received_bytes), rel=1e-12)
    assert net.bytes_delivered == pytest.approx(net.bytes_requested, rel=1e-12)
    # mirrored trees: a server's head is a leaf in one tree and inside the other
    heads = {edges[0][-1][1], edges[1][-1][1]}
    assert len(heads) == 2
    # the busiest link carries its bytes at full rate at best
    assert record.time_s >= float((net.bytes_on_link / net.paths.capacity_Bps).max()) * (1 - 1e-9)


def test_tree_needs_equal_servers():
    graph = topologies.multi_node(nodes=2, gpus_per_node=4)
    env = simpy.Environment()
    net = FlowNetwork(env, PathTable(graph))
    with pytest.raises(ScenarioError, match="same number of GPUs"):
        env.process(collectives.tree_all_reduce(net, gpu_nodes(graph)[:5], 1e6))
        env.run()


def test_pxn_all_to_all_delivers_what_direct_delivers():
    graph = topologies.dgx_h100(nodes=2)
    matrix = np.random.default_rng(1).integers(0, 4, (16, 16)) * 1e5
    direct, _ = run(graph, lambda net, g: all_to_all(net, g, matrix))
    pxn, _ = run(graph, lambda net, g: all_to_all(net, g, matrix, algorithm="pxn"))
    assert (direct.algorithm, pxn.algorithm, pxn.op) == ("direct", "pxn", "all_to_all")
    np.testing.assert_allclose(pxn.delivered_bytes, direct.delivered_bytes, rtol=1e-12)


def test_auto_picks_what_nccl_would():
    h100 = PathTable(topologies.dgx_h100())
    group = gpu_nodes(h100.graph)
    assert choose_algorithm("all_reduce", h100, group, 1024)[0] == "ring"
    assert choose_algorithm("all_reduce", h100, group, 2**30)[0] == "nvls"
    a100 = PathTable(topologies.dgx_a100())
    assert {choose_algorithm("all_reduce", a100, gpu_nodes(a100.graph), s)[0] for s in (1024, 2**30)} == {"ring"}
    two = PathTable(topologies.dgx_a100(nodes=2, nics_per_node=4))
    group = gpu_nodes(two.graph)
    assert choose_algorithm("all_reduce", two, group, 8)[0] == "tree"  # log depth wins small messages
    name, options = choose_algorithm("all_reduce", two, group, 2**30)
    assert (name, options) == ("ring", {"channels": 4})  # one ring per NIC
    assert choose_algorithm("all_to_all", two, group, 2**20)[0] == "direct"
    record, _ = run(two.graph, lambda net, g: all_reduce(net, g, 2**30, algorithm="auto"))
    assert record.algorithm == "ring"


def test_unknown_algorithm_lists_the_known_ones():
    graph = topologies.nvswitch(gpus=4)
    with pytest.raises(ScenarioError, match="algorithm: unknown algorithm 'butterfly' for all_reduce; known: auto, "
                                            "ring, tree, nvls"):
        run(graph, lambda net, g: all_reduce(net, g, 1e6, algorithm="butterfly"))
    with pytest.raises(ScenarioError, match="known: auto, direct, pxn"):
        run(graph, lambda net, g: all_to_all(net, g, 1e6, algorithm="ring"))


def test_calibrated_messages_wait_their_path_class_latency():
    graph = topologies.dgx_h100(nodes=2)
    paths = PathTable(graph)
    catalogue = link_catalogue()
    # NVSwitch path: NVLink class; across servers the network class sets it (not PCIe's)
    assert collectives.message_latency_s(paths, "gpu0", "gpu1") == catalogue["nvswitch4"].message_latency_s
    assert collectives.message_latency_s(paths, "gpu0", "gpu9") == catalogue["ib-ndr"].message_latency_s
    record, _ = run(graph, lambda net, g: all_to_all(net, ["gpu0", "gpu9"], 8.0))
    launch = tuning()["launch_us"]["direct"]["value"] * 1e-6
    expected = launch + catalogue["ib-ndr"].message_latency_s + paths.path_latency_s("gpu0", "gpu9") \
        + 8.0 / paths.path_bandwidth_Bps("gpu0", "gpu9")
    assert record.time_s == pytest.approx(expected, rel=REL)


def test_uncalibrated_collectives_add_no_launch_or_message_latency():
    graph = topologies.nvswitch(gpus=4)
    net = FlowNetwork(simpy.Environment(), PathTable(graph))
    assert collectives.launch_s(net, "ring") == 0
    assert collectives.message_latency_s(net.paths, "gpu0", "gpu1") == 0


@pytest.mark.parametrize("argv, text", [
    (["allreduce", "--topology", "dgx-a100", "--algo", "nvls"], "--algo: nvls needs"),
    (["allreduce", "--topology", "dgx-h100", "--algo", "bogus"], "--algo: unknown algorithm 'bogus'"),
    (["alltoall", "--topology", "dgx-h100", "--algo", "tree"], "--algo: unknown algorithm 'tree' for alltoall"),
    (["sendrecv", "--topology", "dgx-h100", "--algo", "ring"], "--algo: sendrecv has one algorithm"),
    (["allreduce", "--topology", "dgx-h100", "--calibration", "nope.yaml"], "no such calibration file"),
])
def test_cli_algo_and_calibration_errors_exit_2(moesim, argv, text):
    code, out, err = moesim("collective", *argv)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and text in err


def test_cli_prints_the_algorithm_on_calibrated_topologies(moesim):
    code, out, err = moesim("collective", "allreduce", "--topology", "dgx-h100", "--min-bytes", "1K",
                            "--max-bytes", "1G", "--factor", "1024")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines() if not line.startswith("#")]
    assert [r[-1] for r in rows] == ["ring", "ring", "nvls"]
    code, out, err = moesim("collective", "allreduce", "--topology", "dgx-h100", "--min-bytes", "1G",
                            "--max-bytes", "1G", "--algo", "ring", "--json")
    assert code == 0, err
    assert '"algorithm": "ring"' in out


def test_topology_algorithms_choose_the_default_as_nccl_algo_would():
    """`topology: {..., algorithms: {...}}` is how a scenario picks NCCL's algorithms: callers that
    pass none (the MoE pipeline) get the topology's choice."""
    graph = topologies.build({"builder": "dgx-h100", "nodes": 2, "algorithms": {"all_to_all": "pxn",
                                                                                "all_reduce": "tree"}})
    assert graph.graph["algorithms"] == {"all_to_all": "pxn", "all_reduce": "tree"}
    record, _ = run(graph, lambda net, g: all_to_all(net, g, 1e5))
    assert record.algorithm == "pxn"
    record, _ = run(graph, lambda net, g: all_reduce(net, g, 1e6))
    assert record.algorithm == "tree"
    record, _ = run(graph, lambda net, g: all_to_all(net, g, 1e5, algorithm="direct"))
    assert record.algorithm == "direct"  # an explicit choice wins


def test_calibrated_rings_use_nccls_channels_by_default():
    graph = topologies.dgx_a100(nodes=2, nics_per_node=4)
    record, _ = run(graph, lambda net, g: collectives.reduce_scatter(net, g, 1.6e7))
    assert record.flows == 4 * 16 * 15  # one ring per NIC
    plain = topologies.dgx_a100(nodes=2, nics_per_node=4, calibrated=False)
    record, _ = run(plain, lambda net, g: collectives.reduce_scatter(net, g, 1.6e7))
    assert record.flows == 16 * 15  # uncalibrated: the classic single ring


def test_bad_topology_algorithms_name_the_field():
    with pytest.raises(topologies.TopologyError, match="topology.algorithms.broadcast: unknown collective"):
        topologies.build({"builder": "nvswitch", "algorithms": {"broadcast": "ring"}})
    with pytest.raises(topologies.TopologyError, match="topology.algorithms: must be a mapping"):
        topologies.build({"builder": "nvswitch", "algorithms": "ring"})
    graph = topologies.build({"builder": "nvswitch", "algorithms": {"all_to_all": "ring"}})
    with pytest.raises(ScenarioError, match="topology.algorithms.all_to_all: unknown algorithm 'ring'"):
        run(graph, lambda net, g: all_to_all(net, g, 1e5))

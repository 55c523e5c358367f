"""Builders: shapes, contract attributes, the paths routing takes on them, and argument checks."""

import itertools

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topologies.builders import (
    check_number,
    mesh2d,
    multi_node,
    nvlink_mesh,
    nvswitch,
    pcie_tree,
    ring,
    torus2d,
    validate_graph,
)
from topologies.errors import TopologyError
from topologies.links import link_spec
from topologies.paths import PathTable, gpu_nodes

GB, US = 1e9, 1e-6


def bw(kind):
    return link_spec(kind).bandwidth_Bps


def lat(kind):
    return link_spec(kind).latency_s


def assert_contract(graph):
    validate_graph(graph)
    assert gpu_nodes(graph) == [f"gpu{i}" for i in range(len(gpu_nodes(graph)))]
    for a, b, data in graph.edges(data=True):
        assert set(data) == {"bandwidth_Bps", "latency_s", "kind", "explicit"}
        assert graph.has_edge(b, a) and graph.edges[b, a] == data  # both directions, same figures


def raises(field, text, builder, **kwargs):
    with pytest.raises(TopologyError) as info:
        builder(**kwargs)
    assert info.value.field == field
    assert text in str(info.value)
    return info.value


# ---------------------------------------------------------------- nvlink_mesh


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_nvlink_mesh_is_complete_graph(gpus):
    graph = nvlink_mesh(gpus=gpus)
    assert_contract(graph)
    assert graph.number_of_nodes() == gpus
    assert graph.number_of_edges() == gpus * (gpus - 1)


@pytest.mark.parametrize("device, gpus, pair_GBps", [("a100-sxm4-80gb", 4, 100.0), ("mi300x", 8, 64.0),
                                                     ("h100-sxm5-80gb", 4, 150.0)])
def test_nvlink_mesh_splits_gpu_budget_over_peers(device, gpus, pair_GBps):
    graph = nvlink_mesh(gpus=gpus, device=device)
    table = PathTable(graph)
    for a, b in itertools.permutations(gpu_nodes(graph), 2):
        assert len(table.path(a, b)) == 1
        assert table.path_bandwidth_Bps(a, b) == pytest.approx(pair_GBps * GB, rel=1e-9)
    kind = graph.edges["gpu0", "gpu1"]["kind"]
    assert table.path_latency_s("gpu0", "gpu1") == pytest.approx(lat(kind), rel=1e-9)
    assert not graph.edges["gpu0", "gpu1"]["explicit"]


def test_nvlink_mesh_without_nvlink_needs_a_link():
    raises("device", "has no NVLink", nvlink_mesh, device="h100-pcie-80gb")
    assert nvlink_mesh(gpus=2, device="h100-pcie-80gb", link="pcie5").edges["gpu0", "gpu1"]["kind"] == "pcie5"


# ---------------------------------------------------------------- nvswitch


@pytest.mark.parametrize("device, kind", [("a100-sxm4-80gb", "nvswitch3"), ("h100-sxm5-80gb", "nvswitch4"),
                                          ("h200-sxm-141gb", "nvswitch4"), ("b200-sxm-180gb", "nvswitch5")])
def test_nvswitch_star_with_full_nvlink_per_gpu(device, kind):
    graph = nvswitch(gpus=8, device=device)
    assert_contract(graph)
    assert graph.number_of_nodes() == 9 and graph.nodes["nvsw0"]["kind"] == "switch"
    assert graph.number_of_edges() == 16
    table = PathTable(graph)
    assert table.path_nodes("gpu0", "gpu7") == ["gpu0", "nvsw0", "gpu7"]
    assert {graph.edges[e]["kind"] for e in graph.edges} == {kind}
    nvlink = link_spec(kind.replace("nvswitch", "nvlink"))
    assert table.path_bandwidth_Bps("gpu0", "gpu7") == pytest.approx(nvlink.bandwidth_Bps, rel=1e-9)
    assert table.path_latency_s("gpu0", "gpu7") == pytest.approx(2 * lat(kind), rel=1e-9)


def test_nvswitch_rejects_devices_and_links_without_a_switch():
    raises("device", "no NVSwitch generation", nvswitch, device="mi300x")
    raises("device", "no NVSwitch generation", nvswitch, device="h100-pcie-80gb")
    raises("link", "expected one of: nvswitch3, nvswitch4, nvswitch5", nvswitch, link="nvlink4")
    raises("device", "unknown GPU 'h100'", nvswitch, device="h100")


# ---------------------------------------------------------------- pcie_tree


def test_pcie_tree_shape():
    graph = pcie_tree(gpus=8, gpus_per_switch=2, sockets=2)
    assert_contract(graph)
    kinds = nx.get_node_attributes(graph, "kind")
    assert sorted(n for n, k in kinds.items() if k == "switch") == [f"pcisw{i}" for i in range(4)]
    assert sorted(n for n, k in kinds.items() if k == "host") == ["host0", "host1"]
    # 8 GPU links + 4 uplinks + 1 inter-socket link, both directions
    assert graph.number_of_edges() == 2 * (8 + 4 + 1)
    assert [h for h in ("host0", "host1") if graph.has_edge("pcisw1", h)] == ["host0"]
    assert [h for h in ("host0", "host1") if graph.has_edge("pcisw2", h)] == ["host1"]


def test_pcie_tree_paths_cross_switch_root_and_socket_as_designed():
    graph = pcie_tree(gpus=8, device="h100-pcie-80gb")
    table = PathTable(graph)
    assert table.path_nodes("gpu0", "gpu1") == ["gpu0", "pcisw0", "gpu1"]
    assert table.path_nodes("gpu0", "gpu3") == ["gpu0", "pcisw0", "host0", "pcisw1", "gpu3"]
    assert table.path_nodes("gpu0", "gpu7") == ["gpu0", "pcisw0", "host0", "host1", "pcisw3", "gpu7"]
    assert [table.link_kind[i] for i in table.path("gpu0", "gpu7")] == ["pcie5"] * 2 + ["upi"] + ["pcie5"] * 2
    assert table.path_bandwidth_Bps("gpu0", "gpu7") == pytest.approx(min(bw("pcie5"), bw("upi")), rel=1e-9)
    assert table.path_latency_s("gpu0", "gpu1") == pytest.approx(2 * lat("pcie5"), rel=1e-9)
    assert table.path_latency_s("gpu0", "gpu7") == pytest.approx(4 * lat("pcie5") + lat("upi"), rel=1e-9)


def test_pcie_tree_generation_follows_device_unless_given():
    assert pcie_tree(gpus=2, device="a100-pcie-80gb").edges["gpu0", "pcisw0"]["kind"] == "pcie4"
    graph = pcie_tree(gpus=4, gpus_per_switch=4, sockets=1, pcie="pcie3")
    assert graph.edges["gpu0", "pcisw0"]["bandwidth_Bps"] == bw("pcie3")
    assert not any(d["kind"] == "upi" for _, _, d in graph.edges(data=True))


def test_pcie_tree_rejects_bad_arguments():
    raises("gpus", "must be a multiple of gpus_per_switch (2)", pcie_tree, gpus=3)
    raises("gpus_per_switch", "must be >= 1, got 0", pcie_tree, gpus_per_switch=0)
    raises("sockets", "must be an integer >= 1, got 'two'", pcie_tree, sockets="two")
    raises("pcie", "is a network link, expected one of: pcie3, pcie4, pcie5", pcie_tree, pcie="ib-ndr")
    raises("inter_socket", "unknown link kind 'qpi'", pcie_tree, inter_socket="qpi")


# ---------------------------------------------------------------- multi_node


def test_multi_node_counts_names_and_attributes():
    graph = multi_node(nodes=2, gpus_per_node=8)
    assert_contract(graph)
    # per node: 8 GPUs + nvsw + 8 NICs; plus 2 leaves and 1 spine
    assert graph.number_of_nodes() == 2 * 17 + 3
    # per node: 8 GPU-switch + 8 GPU-NIC + 8 NIC-leaf; plus 2 leaf-spine; both directions
    assert graph.number_of_edges() == 2 * (2 * 24 + 2)
    for rank, name in enumerate(gpu_nodes(graph)):
        assert graph.nodes[name]["node_id"] == rank // 8
    assert graph.nodes["n1_nvsw0"]["kind"] == "switch" and graph.nodes["n1_nic7"]["kind"] == "nic"
    assert graph.edges["gpu9", "n1_nic1"]["kind"] == "pcie5"
    assert graph.edges["n1_nic1", "leaf1"]["kind"] == "ib-ndr"


@pytest.mark.parametrize("intra, device", [("nvswitch", "h100-sxm5-80gb"), ("nvlink_mesh", "a100-sxm4-80gb"),
                                           ("pcie_tree", "h100-pcie-80gb")])
@pytest.mark.parametrize("nics_per_node", [None, 1, 2])
@pytest.mark.parametrize("leaves", [None, 1])
def test_multi_node_intra_node_paths_avoid_nics(intra, device, nics_per_node, leaves):
    graph = multi_node(nodes=2, gpus_per_node=8, device=device, intra=intra, nics_per_node=nics_per_node,
                       leaves=leaves)
    table = PathTable(graph)
    gpus = gpu_nodes(graph)
    for a, b in itertools.permutations(gpus[:8], 2):
        assert all(graph.nodes[n]["kind"] != "nic" for n in table.path_nodes(a, b)), (a, b)
        assert all(graph.nodes[n].get("node_id") == 0 for n in table.path_nodes(a, b))
    if intra != "pcie_tree":
        fabric = {"nvswitch": "nvswitch4", "nvlink_mesh": "nvlink3"}[intra]
        assert {table.link_kind[i] for a, b in itertools.permutations(gpus[:8], 2) for i in table.path(a, b)} == {
            fabric}


def test_multi_node_inter_node_path_through_own_nics_leaf_and_spine():
    graph = multi_node(nodes=2, gpus_per_node=8)
    table = PathTable(graph)
    assert table.path_nodes("gpu3", "gpu13") == ["gpu3", "n0_nic3", "leaf0", "spine0", "leaf1", "n1_nic5", "gpu13"]
    assert table.path_bandwidth_Bps("gpu3", "gpu13") == pytest.approx(bw("ib-ndr"), rel=1e-9)
    assert table.path_latency_s("gpu3", "gpu13") == pytest.approx(2 * lat("pcie5") + 4 * lat("ib-ndr"), rel=1e-9)


def test_multi_node_one_leaf_path_latency_is_nccl_net_hop():
    graph = multi_node(nodes=2, gpus_per_node=4, leaves=1)
    table = PathTable(graph)
    assert table.path_nodes("gpu0", "gpu4") == ["gpu0", "n0_nic0", "leaf0", "n1_nic0", "gpu4"]
    assert table.path_latency_s("gpu0", "gpu4") == pytest.approx(2.7 * US, rel=1e-9)
    assert not any(graph.nodes[n]["kind"] == "switch" and n.startswith("spine") for n in graph)


def test_multi_node_shared_nics_round_robin():
    graph = multi_node(nodes=2, gpus_per_node=8, nics_per_node=2)
    table = PathTable(graph)
    for j in range(8):
        assert graph.has_edge(f"gpu{j}", f"n0_nic{j % 2}") and not graph.has_edge(f"gpu{j}", f"n0_nic{1 - j % 2}")
        assert table.path_nodes(f"gpu{j}", "gpu8")[1] == f"n0_nic{j % 2}"


def test_multi_node_pcie_tree_nics_sit_on_pcie_switches():
    graph = multi_node(nodes=2, gpus_per_node=8, device="h100-pcie-80gb", intra="pcie_tree", nics_per_node=2)
    assert graph.has_edge("n0_pcisw0", "n0_nic0") and graph.has_edge("n0_pcisw2", "n0_nic1")
    table = PathTable(graph)
    assert table.path_nodes("gpu0", "gpu8") == ["gpu0", "n0_pcisw0", "n0_nic0", "leaf0", "spine0", "leaf1",
                                                "n1_nic0", "n1_pcisw0", "gpu8"]
    assert table.path_nodes("gpu5", "gpu8")[:4] == ["gpu5", "n0_pcisw2", "n0_nic1", "leaf0"]


@pytest.mark.parametrize("spines, oversubscription, uplink_GBps", [(1, 1.0, 400.0), (1, 4.0, 100.0),
                                                                    (2, 1.0, 200.0), (2, 2.0, 100.0)])
def test_multi_node_leaf_uplinks_follow_oversubscription(spines, oversubscription, uplink_GBps):
    graph = multi_node(nodes=4, gpus_per_node=4, leaves=2, spines=spines, oversubscription=oversubscription)
    # 2 nodes x 4 NICs x 50 GB/s under each leaf
    for leaf, spine in itertools.product(range(2), range(spines)):
        assert graph.edges[f"leaf{leaf}", f"spine{spine}"]["bandwidth_Bps"] == pytest.approx(uplink_GBps * GB)
    assert graph.has_edge("n0_nic0", "leaf0") and graph.has_edge("n1_nic0", "leaf0")
    assert graph.has_edge("n2_nic0", "leaf1")


def test_multi_node_single_node_is_valid():
    graph = multi_node(nodes=1, gpus_per_node=4)
    assert_contract(graph)
    assert len(gpu_nodes(graph)) == 4


@pytest.mark.parametrize(
    "kwargs, field, text",
    [
        ({"nodes": 0}, "nodes", "must be >= 1, got 0"),
        ({"gpus_per_node": 2.5}, "gpus_per_node", "must be an integer"),
        ({"intra": "torus"}, "intra", "allowed: nvswitch, nvlink_mesh, pcie_tree"),
        ({"nic": "nvlink4"}, "nic", "expected one of: ib-hdr, ib-ndr"),
        ({"nic": "ib-xdr"}, "nic", "unknown link kind 'ib-xdr'"),
        ({"nics_per_node": 9}, "nics_per_node", "must be <= gpus_per_node (8), got 9"),
        ({"nics_per_node": 0}, "nics_per_node", "must be >= 1"),
        ({"nodes": 3, "leaves": 2}, "leaves", "nodes (3) must be a multiple of leaves (2)"),
        ({"nodes": 4, "leaves": 2, "spines": 0}, "spines", "must be >= 1 when there are several leaves"),
        ({"oversubscription": 0}, "oversubscription", "must be > 0, got 0"),
        ({"oversubscription": float("nan")}, "oversubscription", "must be a finite number"),
        ({"device": "h100-pcie-80gb"}, "device", "no NVSwitch generation"),
        ({"intra": "pcie_tree", "device": "h100-pcie-80gb", "gpus_per_node": 3}, "gpus_per_node",
         "must be a multiple of gpus_per_switch"),
        ({"intra": "pcie_tree", "device": "h100-pcie-80gb", "nics_per_node": 8}, "nics_per_node",
         "must be <= PCIe switches per server (4), got 8"),
    ],
)
def test_multi_node_rejects_bad_arguments(kwargs, field, text):
    raises(field, text, multi_node, **kwargs)


# ---------------------------------------------------------------- ring, torus2d, mesh2d


@pytest.mark.parametrize("gpus, edges", [(1, 0), (2, 2), (3, 6), (8, 16)])
def test_ring_counts(gpus, edges):
    graph = ring(gpus=gpus)
    assert_contract(graph)
    assert graph.number_of_edges() == edges


def test_ring_splits_nvlink_over_two_neighbours_and_routes_the_short_way():
    graph = ring(gpus=8, link="nvlink4")
    table = PathTable(graph)
    assert graph.edges["gpu0", "gpu1"]["bandwidth_Bps"] == pytest.approx(bw("nvlink4") / 2, rel=1e-9)
    assert table.path_nodes("gpu0", "gpu6") == ["gpu0", "gpu7", "gpu6"]
    assert table.path_latency_s("gpu0", "gpu4") == pytest.approx(4 * lat("nvlink4"), rel=1e-9)


def test_ring_network_link_is_not_split_and_explicit_figures_are_marked():
    assert ring(gpus=4, link="ib-ndr").edges["gpu0", "gpu1"]["bandwidth_Bps"] == bw("ib-ndr")
    graph = ring(gpus=4, link="custom", bandwidth_GBps=100, latency_us=2)
    data = graph.edges["gpu3", "gpu0"]
    assert data == {"bandwidth_Bps": 100e9, "latency_s": pytest.approx(2e-6), "kind": "custom", "explicit": True}
    assert not ring(gpus=4, latency_us=0).edges["gpu0", "gpu1"]["explicit"]


def test_ring_rejects_bad_figures():
    raises("bandwidth_GBps", "must be > 0, got -5", ring, bandwidth_GBps=-5)
    raises("latency_us", "must be >= 0, got -1", ring, latency_us=-1)
    raises("link", "needs bandwidth_GBps and latency_us", ring, link="custom", bandwidth_GBps=10)
    raises("gpus", "must be an integer >= 1, got True", ring, gpus=True)


@pytest.mark.parametrize("rows, cols, degree", [(4, 4, 4), (2, 4, 3), (1, 4, 2), (2, 2, 2), (1, 1, 0), (3, 1, 2)])
def test_torus2d_counts_and_split(rows, cols, degree):
    graph = torus2d(rows=rows, cols=cols)
    assert_contract(graph)
    assert graph.number_of_nodes() == rows * cols
    assert all(graph.out_degree(n) == degree for n in graph)
    if degree:
        for _, _, data in graph.edges(data=True):
            assert data["bandwidth_Bps"] == pytest.approx(bw("nvlink4") / degree, rel=1e-9)


def test_torus2d_wraps_around():
    graph = torus2d(rows=4, cols=4)
    assert graph.has_edge("gpu0", "gpu3") and graph.has_edge("gpu0", "gpu12")
    assert PathTable(graph).path_nodes("gpu0", "gpu15") in (["gpu0", "gpu3", "gpu15"], ["gpu0", "gpu12", "gpu15"])


def test_mesh2d_counts_no_wrap_and_split_by_largest_degree():
    graph = mesh2d(rows=3, cols=3)
    assert_contract(graph)
    assert graph.number_of_edges() == 2 * (3 * 2 + 3 * 2)
    assert not graph.has_edge("gpu0", "gpu2")
    assert graph.edges["gpu0", "gpu1"]["bandwidth_Bps"] == pytest.approx(bw("nvlink4") / 4, rel=1e-9)
    assert len(PathTable(graph).path("gpu0", "gpu8")) == 4


def test_grid_builders_reject_bad_sizes():
    raises("rows", "must be >= 1, got 0", torus2d, rows=0)
    raises("cols", "must be an integer", mesh2d, cols="4")


def test_check_number_rejects_bool_and_inf():
    with pytest.raises(TopologyError, match="must be a finite number > 0, got True"):
        check_number(True, "x")
    with pytest.raises(TopologyError, match="got inf"):
        check_number(float("inf"), "x")


# ---------------------------------------------------------------- invariants


BUILD = {
    "nvlink_mesh": lambda n: nvlink_mesh(gpus=n),
    "nvswitch": lambda n: nvswitch(gpus=n),
    "pcie_tree": lambda n: pcie_tree(gpus=2 * n),
    "multi_node": lambda n: multi_node(nodes=1 + n % 3, gpus_per_node=1 + n % 4),
    "multi_node_pcie": lambda n: multi_node(nodes=2, gpus_per_node=2 * (1 + n % 3), device="h100-pcie-80gb",
                                            intra="pcie_tree", nics_per_node=1),
    "ring": lambda n: ring(gpus=n),
    "torus2d": lambda n: torus2d(rows=1 + n % 3, cols=1 + n // 3),
    "mesh2d": lambda n: mesh2d(rows=1 + n % 3, cols=1 + n // 3),
}


@settings(max_examples=60, deadline=None)
@given(builder=st.sampled_from(sorted(BUILD)), size=st.integers(min_value=1, max_value=8))
def test_every_gpu_pair_has_a_path_and_every_edge_the_contract(builder, size):
    graph = BUILD[builder](size)
    assert_contract(graph)
    table = PathTable(graph)
    gpus = gpu_nodes(graph)
    for a, b in itertools.permutations(gpus, 2):
        ids = table.path(a, b)
        assert len(ids) >= 1
        assert table.links[ids[0]][0] == a and table.links[ids[-1]][1] == b
        assert table.path_bandwidth_Bps(a, b) > 0
        # intra-node traffic never leaves its server
        if graph.nodes[a]["node_id"] == graph.nodes[b]["node_id"]:
            assert all(graph.nodes[n]["kind"] != "nic" for n in table.path_nodes(a, b))

"""Hand-written topologies: figures, explicit flags, round trip, files, and every bad input named."""

import copy

import pytest
import yaml

from topologies.builders import multi_node, nvlink_mesh, nvswitch, pcie_tree, torus2d
from topologies.errors import TopologyError
from topologies.links import link_spec
from topologies.paths import PathTable, gpu_nodes
from topologies.yaml_topology import from_yaml_dict, load_topology_file, to_yaml_dict

SPEC = {
    "name": "two-h100",
    "nodes": [
        {"name": "gpu0", "kind": "gpu", "device": "h100-sxm5-80gb"},
        {"name": "sw0", "kind": "switch"},
        {"name": "gpu1", "kind": "gpu", "device": "h100-sxm5-80gb", "node": 0},
    ],
    "links": [
        {"a": "gpu0", "b": "sw0", "kind": "nvlink4", "bandwidth_GBps": 450, "latency_us": 0.7},
        {"a": "gpu1", "b": "sw0", "kind": "nvswitch4"},
    ],
}


def spec_with(path, value=None, delete=False):
    """A copy of SPEC with one value (by a list of keys/indices) replaced or deleted."""
    spec = copy.deepcopy(SPEC)
    target = spec
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return spec


def test_design_example_builds_with_written_and_catalogue_figures():
    graph = from_yaml_dict(SPEC)
    assert graph.graph["name"] == "two-h100"
    assert graph.edges["gpu0", "sw0"] == {"bandwidth_Bps": 450e9, "latency_s": pytest.approx(0.7e-6),
                                          "kind": "nvlink4", "explicit": True}
    assert graph.edges["sw0", "gpu0"]["explicit"] is True
    spec = link_spec("nvswitch4")
    assert graph.edges["gpu1", "sw0"] == {"bandwidth_Bps": spec.bandwidth_Bps, "latency_s": spec.latency_s,
                                          "kind": "nvswitch4", "explicit": False}
    assert PathTable(graph).path_nodes("gpu0", "gpu1") == ["gpu0", "sw0", "gpu1"]


def test_gpu_ranks_follow_listing_order_and_node_sets_node_id():
    spec = {
        "nodes": [
            {"name": "b", "kind": "gpu", "device": "a100-sxm4-80gb", "node": 1},
            {"name": "sw", "kind": "switch"},
            {"name": "a", "kind": "gpu", "device": "a100-sxm4-80gb"},
        ],
        "links": [{"a": "a", "b": "sw", "kind": "nvswitch3"}, {"a": "b", "b": "sw", "kind": "nvswitch3"}],
    }
    graph = from_yaml_dict(spec)
    assert gpu_nodes(graph) == ["b", "a"]
    assert graph.nodes["b"]["node_id"] == 1 and graph.nodes["a"]["node_id"] == 0


def test_directed_links_may_differ_per_direction():
    spec = spec_with(["links"], [
        {"a": "gpu0", "b": "sw0", "kind": "custom", "bandwidth_GBps": 10, "latency_us": 1, "directed": True},
        {"a": "sw0", "b": "gpu0", "kind": "custom", "bandwidth_GBps": 20, "latency_us": 0, "directed": True},
        {"a": "gpu1", "b": "sw0", "kind": "nvswitch4"},
    ])
    graph = from_yaml_dict(spec)
    assert graph.edges["gpu0", "sw0"]["bandwidth_Bps"] == 10e9
    assert graph.edges["sw0", "gpu0"]["bandwidth_Bps"] == 20e9
    assert graph.edges["sw0", "gpu0"]["latency_s"] == 0.0


@pytest.mark.parametrize("graph", [nvswitch(gpus=4), nvlink_mesh(gpus=4), pcie_tree(gpus=4),
                                   multi_node(nodes=2, gpus_per_node=2), torus2d(rows=2, cols=3)],
                         ids=lambda g: g.graph["name"])
def test_round_trip_through_yaml_text_keeps_graph(graph):
    text = yaml.safe_dump(to_yaml_dict(graph), sort_keys=False)
    back = from_yaml_dict(yaml.safe_load(text))
    assert back.graph["name"] == graph.graph["name"]
    assert gpu_nodes(back) == gpu_nodes(graph)
    for n, data in graph.nodes(data=True):
        assert back.nodes[n]["kind"] == data["kind"]
        assert back.nodes[n].get("node_id", 0) == data.get("node_id", 0)
        if data["kind"] == "gpu":
            assert back.nodes[n] == data
    assert set(back.edges) == set(graph.edges)
    for edge, data in graph.edges.items():
        other = back.edges[edge]
        assert other["kind"] == data["kind"]
        assert other["bandwidth_Bps"] == pytest.approx(data["bandwidth_Bps"], rel=1e-9)
        assert other["latency_s"] == pytest.approx(data["latency_s"], rel=1e-9)
        # catalogue figures stay catalogue figures
        if other["bandwidth_Bps"] == link_spec(data["kind"]).bandwidth_Bps:
            assert other["explicit"] is False


def test_nvswitch_round_trip_writes_no_figures():
    assert all(set(link) == {"a", "b", "kind"} for link in to_yaml_dict(nvswitch(gpus=2))["links"])


BAD = [
    # (change, field, text)
    ((["link"], []), "topology.link", "unknown key 'link' (did you mean 'links'?); allowed: name, nodes, links"),
    ((["nodes", 0, "devcie"], "x"), "topology.nodes[0].devcie", "allowed: name, kind, device, node"),
    ((["links", 0, "bandwith_GBps"], 1), "topology.links[0].bandwith_GBps",
     "did you mean 'bandwidth_GBps'?); allowed: a, b, kind, bandwidth_GBps, latency_us, directed"),
    ((["nodes", 1, "kind"], "router"), "topology.nodes[1].kind",
     "unknown node kind 'router'; allowed: gpu, switch, host, nic"),
    ((["nodes", 0, "device"], "h100"), "topology.nodes[0].device", "unknown GPU 'h100'; known: a100-pcie-80gb"),
    ((["nodes", 1, "device"], "h100-sxm5-80gb"), "topology.nodes[1].device", "only GPU nodes take a device"),
    ((["nodes", 2, "name"], "gpu0"), "topology.nodes[2].name", "duplicate node name 'gpu0' (also nodes[0])"),
    ((["nodes", 2, "name"], ""), "topology.nodes[2].name", "must be a non-empty string"),
    ((["nodes", 2, "node"], -1), "topology.nodes[2].node", "must be >= 0, got -1"),
    ((["nodes", 0], "gpu0"), "topology.nodes[0]", "must be a mapping"),
    ((["links", 1, "kind"], "nvlink9"), "topology.links[1].kind",
     "unknown link kind 'nvlink9' and no bandwidth_GBps; known kinds: ib-hdr"),
    ((["links", 0, "kind"], "custom"), "topology.links[0].kind", None),  # bandwidth+latency given: fine
    ((["links", 1], {"a": "gpu1", "b": "sw0", "kind": "custom", "bandwidth_GBps": 5}), "topology.links[1].latency_us",
     "required for link kind 'custom', which is not in the catalogue"),
    ((["links", 0, "bandwidth_GBps"], -5), "topology.links[0].bandwidth_GBps", "must be > 0, got -5"),
    ((["links", 0, "bandwidth_GBps"], 0), "topology.links[0].bandwidth_GBps", "must be > 0, got 0"),
    ((["links", 0, "bandwidth_GBps"], "fast"), "topology.links[0].bandwidth_GBps", "must be a finite number > 0"),
    ((["links", 0, "latency_us"], -0.1), "topology.links[0].latency_us", "must be >= 0, got -0.1"),
    ((["links", 1, "b"], "sw1"), "topology.links[1].b", "unknown node 'sw1'; nodes: gpu0, sw0, gpu1"),
    ((["links", 1, "a"], None), "topology.links[1].a", "must be a non-empty string"),
    ((["links", 1, "a"], "sw0"), "topology.links[1].b", "a link needs two different nodes"),
    ((["links", 1], {"a": "sw0", "b": "gpu0", "kind": "nvlink4"}), "topology.links[1]",
     "duplicate link sw0 -> gpu0 (also links[0])"),
    ((["links", 1, "directed"], "yes"), "topology.links[1].directed", "must be true or false"),
    ((["links", 1, "kind"], None), "topology.links[1].kind", "must be a non-empty string"),
    ((["links"], {"a": "gpu0"}), "topology.links", "must be a list, got dict"),
    ((["links"], [SPEC["links"][0]]), "topology.links", "no path from gpu0 to gpu1: the topology is disconnected"),
    ((["links", 0, "directed"], True), "topology.links", "no path from gpu1 to gpu0"),
    ((["nodes"], [{"name": "sw0", "kind": "switch"}]), "topology.nodes", "no node of kind gpu"),
    ((["name"], 3), "topology.name", "must be a non-empty string"),
]


@pytest.mark.parametrize("change, field, text", BAD, ids=[f"{b[1]}:{(b[2] or 'ok')[:30]}" for b in BAD])
def test_bad_topology_names_field_and_allowed_values(change, field, text):
    spec = spec_with(*change)
    if text is None:
        from_yaml_dict(spec)
        return
    with pytest.raises(TopologyError) as info:
        from_yaml_dict(spec)
    assert info.value.field == field
    assert text in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_nodes_and_non_mapping_spec():
    with pytest.raises(TopologyError, match=r"^topology.nodes: missing"):
        from_yaml_dict({"links": []})
    with pytest.raises(TopologyError, match=r"^topology: must be a mapping"):
        from_yaml_dict(["gpu0"])


def test_field_prefix_is_the_callers_path():
    with pytest.raises(TopologyError) as info:
        from_yaml_dict(spec_with(["links", 0, "bandwidth_GBps"], -5), field="scenario.topology")
    assert str(info.value) == "scenario.topology.links[0].bandwidth_GBps: must be > 0, got -5"


# ---------------------------------------------------------------- files


def test_load_bare_and_wrapped_files(tmp_path):
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(SPEC))
    wrapped = tmp_path / "wrapped.yaml"
    wrapped.write_text(yaml.safe_dump({"topology": SPEC}))
    builder = tmp_path / "builder.yaml"
    builder.write_text("topology: {builder: nvswitch, gpus: 4}\n")
    assert set(load_topology_file(bare).edges) == set(load_topology_file(wrapped).edges)
    assert len(gpu_nodes(load_topology_file(builder))) == 4


def test_errors_in_a_file_name_the_file(tmp_path):
    path = tmp_path / "topo.yaml"
    path.write_text(yaml.safe_dump({"topology": spec_with(["links", 0, "bandwidth_GBps"], -5)}))
    with pytest.raises(TopologyError) as info:
        load_topology_file(path)
    assert str(info.value) == f"{path}:topology.links[0].bandwidth_GBps: must be > 0, got -5"
    path.write_text(yaml.safe_dump(spec_with(["nodes", 1, "kind"], "router")))
    with pytest.raises(TopologyError, match=rf"^{path}:nodes\[1\].kind: unknown node kind"):
        load_topology_file(path)
    path.write_text("topology: {builder: nvswitch, gpus: 0}\n")
    with pytest.raises(TopologyError, match=rf"^{path}:topology.gpus: must be >= 1, got 0"):
        load_topology_file(path)
    path.write_text("topology: {}\nextra: 1\n")
    with pytest.raises(TopologyError, match="unknown key 'extra'; allowed: topology"):
        load_topology_file(path)


def test_malformed_yaml_is_one_line_with_file_and_position(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("nodes:\n  - {name: gpu0, kind: gpu\nlinks: []\n")
    with pytest.raises(TopologyError) as info:
        load_topology_file(path)
    assert info.value.field == str(path)
    assert "malformed YAML at line" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_or_empty_file(tmp_path):
    with pytest.raises(TopologyError, match="no such file"):
        load_topology_file(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(TopologyError, match="must hold a mapping"):
        load_topology_file(empty)

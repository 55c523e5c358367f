"""The builder registry: scenario topology sections and CLI names map to checked graphs.

(Named test_topology_registry.py, not test_registry.py, so its basename cannot clash with another
package's registry tests under pytest's default import mode.)
"""

import re
from pathlib import Path

import networkx as nx
import pytest
import yaml

import topologies
from topologies.builders import nvswitch, validate_graph
from topologies.errors import TopologyError
from topologies.registry import BUILDERS, build, builder_kwargs, resolve

DOCS = Path(__file__).resolve().parents[2] / "docs" / "topologies.md"


def same_graph(a: nx.DiGraph, b: nx.DiGraph) -> bool:
    return (a.graph == b.graph and dict(a.nodes(data=True)) == dict(b.nodes(data=True))
            and {e: a.edges[e] for e in a.edges} == {e: b.edges[e] for e in b.edges})


def test_registry_lists_every_builder():
    assert sorted(BUILDERS) == ["dgx-a100", "dgx-h100", "hgx-h200", "mesh2d", "multi_node", "nvlink_mesh",
                                "nvswitch", "pcie-a100", "pcie-h100", "pcie_tree", "ring", "torus2d"]
    assert builder_kwargs("nvswitch") == ["gpus", "device", "link"]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_build_with_defaults_equals_calling_the_builder(name):
    assert same_graph(build({"builder": name}), BUILDERS[name]())


def test_build_passes_keyword_arguments():
    graph = build({"builder": "nvswitch", "gpus": 4, "device": "a100-sxm4-80gb"})
    assert same_graph(graph, nvswitch(gpus=4, device="a100-sxm4-80gb"))


def test_build_accepts_nodes_links_form():
    spec = {"nodes": [{"name": "gpu0", "kind": "gpu", "device": "mi300x"}], "links": []}
    assert topologies.gpu_nodes(build(spec)) == ["gpu0"]


@pytest.mark.parametrize(
    "spec, field, text",
    [
        ({"builder": "nvswich"}, "topology.builder", "unknown builder 'nvswich' (did you mean 'nvswitch'?); known: "),
        ({"builder": "nvswitch", "gpu": 8}, "topology.gpu",
         "unknown argument 'gpu' for builder 'nvswitch' (did you mean 'gpus'?); allowed: gpus, device, link"),
        ({"builder": "multi_node", "spine": 2}, "topology.spine", "allowed: nodes, gpus_per_node, device, intra"),
        ({"builder": "nvswitch", "gpus": 0}, "topology.gpus", "must be >= 1, got 0"),
        ({"builder": "pcie_tree", "gpus": 5}, "topology.gpus", "must be a multiple of gpus_per_switch (2)"),
        ({"builder": "multi_node", "nic": "ib"}, "topology.nic", "unknown link kind 'ib'"),
        ({"builder": "ring", "device": "tpu"}, "topology.device", "unknown GPU 'tpu'"),
        ({"gpus": 8}, "topology", "needs either builder: (one of nvlink_mesh, nvswitch"),
        ("nvswitch", "topology", "must be a mapping"),
    ],
)
def test_build_errors_name_the_yaml_path(spec, field, text):
    with pytest.raises(TopologyError) as info:
        build(spec)
    assert info.value.field == field
    assert text in str(info.value)
    assert str(info.value).startswith(f"{field}: ")


def test_resolve_builder_name_passes_only_accepted_overrides():
    graph = resolve("nvswitch", gpus=4, nodes=2, gpus_per_node=None)
    assert len(topologies.gpu_nodes(graph)) == 4
    graph = resolve("multi_node", nodes=3, gpus=8, gpus_per_node=2)
    assert len(topologies.gpu_nodes(graph)) == 6
    assert len(topologies.gpu_nodes(resolve("ring", gpus=None))) == 8


def test_resolve_file_and_unknown_name(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("topology: {builder: torus2d, rows: 2, cols: 2}\n")
    assert len(topologies.gpu_nodes(resolve(str(path), gpus=99))) == 4
    with pytest.raises(TopologyError, match="'nvswtch' is neither a builder \\(did you mean 'nvswitch'\\?\\)"):
        resolve("nvswtch")
    with pytest.raises(TopologyError, match="no such file"):
        resolve(str(tmp_path / "missing.yaml"))


# ---------------------------------------------------------------- the shared contract check


def tiny():
    graph = nx.DiGraph(name="tiny")
    graph.add_node("gpu0", kind="gpu", device="h100-sxm5-80gb", rank=0, node_id=0)
    graph.add_node("gpu1", kind="gpu", device="h100-sxm5-80gb", rank=1, node_id=0)
    for a, b in (("gpu0", "gpu1"), ("gpu1", "gpu0")):
        graph.add_edge(a, b, bandwidth_Bps=1e9, latency_s=0.0, kind="x", explicit=True)
    return graph


@pytest.mark.parametrize(
    "spoil, text",
    [
        (lambda g: g.graph.pop("name"), "graph has no string 'name'"),
        (lambda g: g.add_node("r", kind="router"), "node 'r' has kind 'router'"),
        (lambda g: g.nodes["gpu1"].update(device="v100"), "unknown device 'v100'"),
        (lambda g: g.nodes["gpu1"].update(rank=3), "GPU ranks must be 0..1 once each, got [0, 3]"),
        (lambda g: g.nodes["gpu1"].pop("node_id"), "needs an integer node_id"),
        (lambda g: g.edges["gpu0", "gpu1"].update(bandwidth_Bps=0.0), "bandwidth_Bps must be a finite number > 0"),
        (lambda g: g.edges["gpu0", "gpu1"].update(latency_s=-1.0), "latency_s must be a finite number >= 0"),
        (lambda g: g.edges["gpu0", "gpu1"].pop("kind"), "kind must be a link kind name"),
        (lambda g: g.edges["gpu0", "gpu1"].update(explicit=1), "explicit must be True or False"),
        (lambda g: g.remove_edge("gpu1", "gpu0"), "no path from gpu1 to gpu0"),
        (lambda g: g.remove_nodes_from(["gpu0", "gpu1"]), "the topology has no GPU"),
    ],
)
def test_validate_graph_catches_contract_violations(spoil, text):
    graph = tiny()
    validate_graph(graph)
    spoil(graph)
    with pytest.raises(TopologyError) as info:
        validate_graph(graph, field="topology")
    assert info.value.field == "topology" and text in str(info.value)


def test_validate_graph_rejects_undirected_graph():
    with pytest.raises(TopologyError, match="expected a networkx.DiGraph, got Graph"):
        validate_graph(nx.Graph(name="g"))


def test_package_reexports_public_api():
    for name in ("build", "resolve", "BUILDERS", "nvlink_mesh", "nvswitch", "pcie_tree", "multi_node", "ring",
                 "torus2d", "mesh2d", "gpu_nodes", "PathTable", "gpu_spec", "link_spec", "TopologyError",
                 "from_yaml_dict", "load_topology_file"):
        assert hasattr(topologies, name), name


# ---------------------------------------------------------------- docs that run


def doc_blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), flags=re.S)


def test_docs_yaml_examples_build():
    blocks = doc_blocks("yaml")
    assert len(blocks) >= 3
    for block in blocks:
        data = yaml.safe_load(block)
        validate_graph(build(data["topology"]))


def test_docs_python_examples_run():
    blocks = doc_blocks("python")
    assert blocks
    for block in blocks:
        exec(compile(block, str(DOCS), "exec"), {})

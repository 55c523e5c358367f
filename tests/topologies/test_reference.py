"""Reference systems (dgx-a100, dgx-h100, hgx-h200, pcie-a100, pcie-h100, clusters of each) and
calibration: measured efficiencies apply to catalogue links only, never to links the user wrote."""

import pytest
import simpy
import yaml

import topologies
from simulator.engine.collectives import all_reduce, point_to_point
from simulator.engine.network import FlowNetwork
from topologies import TopologyError
from topologies.links import link_catalogue
from topologies.paths import PathTable, gpu_nodes

REFERENCE = {
    "dgx-a100": ("a100-sxm4-80gb", "nvswitch3", "ib-hdr"),
    "dgx-h100": ("h100-sxm5-80gb", "nvswitch4", "ib-ndr"),
    "hgx-h200": ("h200-sxm-141gb", "nvswitch4", "ib-ndr"),
    "pcie-a100": ("a100-pcie-80gb", "pcie4", "ib-hdr"),
    "pcie-h100": ("h100-pcie-80gb", "pcie5", "ib-ndr"),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("nodes", [1, 2])
def test_reference_systems_have_eight_gpus_per_server_and_their_nics(name, nodes):
    device, attach, nic = REFERENCE[name]
    graph = topologies.build({"builder": name, "nodes": nodes})
    gpus = gpu_nodes(graph)
    assert len(gpus) == 8 * nodes
    assert {graph.nodes[g]["device"] for g in gpus} == {device}
    assert [graph.nodes[g]["node_id"] for g in gpus] == [k // 8 for k in range(8 * nodes)]
    assert graph.graph["name"] == (name if nodes == 1 else f"{name}-x{nodes}")
    kinds = {d["kind"] for _, _, d in graph.edges(data=True)}
    assert attach in kinds and nic in kinds
    nics = [n for n, d in graph.nodes(data=True) if d["kind"] == "nic"]
    assert len(nics) == nodes * (8 if attach.startswith("nvswitch") else 4)
    assert topologies.is_calibrated(graph)


def test_dgx_routes_gpu_pairs_over_nvswitch_and_host_copies_over_pcie():
    graph = topologies.dgx_h100(nodes=2)
    paths = PathTable(graph)
    assert paths.path_nodes("gpu0", "gpu5") == ["gpu0", "n0_nvsw0", "gpu5"]
    assert paths.path_nodes("n0_host0", "gpu1") == ["n0_host0", "gpu1"]
    assert paths.path_nodes("gpu0", "gpu8")[1] == "n0_nic0"
    assert paths.path_nodes("gpu3", "gpu11")[-2] == "n1_nic3"


def test_calibration_scales_catalogue_links_by_their_efficiency():
    raw = topologies.dgx_h100(calibrated=False)
    calibrated = topologies.dgx_h100()
    catalogue = link_catalogue()
    for a, b, data in calibrated.edges(data=True):
        spec = catalogue[data["kind"]]
        assert data["bandwidth_Bps"] == pytest.approx(raw.edges[a, b]["bandwidth_Bps"] * spec.efficiency, rel=1e-12)
        assert data["wire_bandwidth_Bps"] == raw.edges[a, b]["bandwidth_Bps"]
        assert data["message_latency_s"] == spec.message_latency_s
        assert data["latency_s"] == raw.edges[a, b]["latency_s"]  # routing is unchanged
    assert calibrated.edges["gpu0", "n0_nvsw0"]["nvls_efficiency"] == catalogue["nvswitch4"].nvls_efficiency


def test_calibrating_twice_is_calibrating_once():
    once = topologies.calibrate(topologies.nvswitch(gpus=4))
    twice = topologies.calibrate(once)
    for a, b, data in once.edges(data=True):
        assert twice.edges[a, b] == data


def test_every_catalogue_kind_names_the_source_of_its_measured_figures():
    for name, spec in link_catalogue().items():
        assert 0 < spec.efficiency <= 1, name
        assert spec.efficiency_source and spec.message_latency_source, name
        if spec.nvls_efficiency:
            assert spec.family == "gpu-switch" and spec.nvls_source, name


EXPLICIT_YAML = """
topology:
  nodes:
    - {name: gpu0, kind: gpu, device: h100-sxm5-80gb}
    - {name: gpu1, kind: gpu, device: h100-sxm5-80gb}
    - {name: gpu2, kind: gpu, device: h100-sxm5-80gb}
    - {name: gpu3, kind: gpu, device: h100-sxm5-80gb}
  links:
    - {a: gpu0, b: gpu1, kind: nvlink4, bandwidth_GBps: 100, latency_us: 1.5}
    - {a: gpu1, b: gpu2, kind: nvlink4, bandwidth_GBps: 100, latency_us: 1.5}
    - {a: gpu2, b: gpu3, kind: nvlink4, bandwidth_GBps: 100, latency_us: 1.5}
    - {a: gpu3, b: gpu0, kind: nvlink4, bandwidth_GBps: 100, latency_us: 1.5}
"""


def ring_time(graph, nbytes, alpha_s=2e-6):
    env = simpy.Environment()
    net = FlowNetwork(env, PathTable(graph), alpha_s=alpha_s)
    done = env.process(all_reduce(net, gpu_nodes(graph), nbytes))
    env.run(done)
    return done.value.time_s


@pytest.mark.parametrize("nbytes", [8.0, 3e8])
def test_hand_written_explicit_topology_still_matches_the_closed_form(nbytes):
    spec = yaml.safe_load(EXPLICIT_YAML)["topology"]
    expected = 2 * 3 * (2e-6 + 1.5e-6) + 2 * 3 / 4 * nbytes / 100e9
    assert ring_time(topologies.build(spec), nbytes) == pytest.approx(expected, rel=1e-9)
    # asked to calibrate, the links the user wrote keep their figures exactly and get no
    # per-message latency; only the collective's launch latency is added
    calibrated = topologies.build({**spec, "calibrated": True})
    for a, b, data in calibrated.edges(data=True):
        assert data["bandwidth_Bps"] == 100e9 and data["explicit"] and "message_latency_s" not in data
    from simulator.engine.collectives import tuning

    launch = tuning()["launch_us"]["ring"]["value"] * 1e-6
    assert ring_time(calibrated, nbytes) == pytest.approx(expected + launch, rel=1e-9)


def test_mixed_yaml_calibrates_only_the_catalogue_link():
    spec = {"nodes": [{"name": "gpu0", "kind": "gpu", "device": "h100-sxm5-80gb"},
                      {"name": "gpu1", "kind": "gpu", "device": "h100-sxm5-80gb"},
                      {"name": "sw", "kind": "switch"}],
            "links": [{"a": "gpu0", "b": "sw", "kind": "nvswitch4", "bandwidth_GBps": 300},
                      {"a": "gpu1", "b": "sw", "kind": "nvswitch4"}],
            "calibrated": True}
    graph = topologies.build(spec)
    eff = link_catalogue()["nvswitch4"].efficiency
    assert graph.edges["gpu0", "sw"]["bandwidth_Bps"] == 300e9
    assert graph.edges["gpu1", "sw"]["bandwidth_Bps"] == pytest.approx(450e9 * eff, rel=1e-12)


def test_calibration_overrides_replace_catalogue_figures():
    override = {"links": {"nvswitch4": {"efficiency": 0.5, "message_latency_us": 2.0, "source": "mine"}},
                "launch_us": {"ring": 7.0}}
    graph = topologies.build({"builder": "dgx-h100", "calibration": override})
    data = graph.edges["gpu0", "n0_nvsw0"]
    assert data["bandwidth_Bps"] == pytest.approx(225e9) and data["message_latency_s"] == pytest.approx(2e-6)
    assert graph.graph["calibration"]["launch_us"] == {"ring": 7.0}
    # a point-to-point message = launch + message latency + propagation + bytes / bandwidth
    env = simpy.Environment()
    net = FlowNetwork(env, PathTable(graph))
    done = env.process(point_to_point(net, "gpu0", "gpu1", 1e9))
    env.run(done)
    from simulator.engine.collectives import tuning

    launch = tuning()["launch_us"]["p2p"]["value"] * 1e-6
    assert done.value.time_s == pytest.approx(launch + 2e-6 + 0.6e-6 + 1e9 / 225e9, rel=1e-9)


def test_calibration_file_is_read_relative_to_where_it_is(tmp_path):
    path = tmp_path / "fit.yaml"
    path.write_text("links:\n  nvswitch3: {efficiency: 0.5}\n")
    graph = topologies.build({"builder": "nvswitch", "device": "a100-sxm4-80gb", "calibration": str(path)})
    assert graph.edges["gpu0", "nvsw0"]["bandwidth_Bps"] == pytest.approx(150e9)


@pytest.mark.parametrize("calibration, field, text", [
    ({"links": {"nvswitch9": {"efficiency": 0.5}}}, "topology.calibration.links.nvswitch9", "unknown link kind"),
    ({"links": {"nvswitch4": {"efficiency": 1.5}}}, "topology.calibration.links.nvswitch4.efficiency",
     "must be in (0, 1]"),
    ({"links": {"nvswitch4": {"efficency": 0.5}}}, "topology.calibration.links.nvswitch4.efficency", "unknown key"),
    ({"links": {"nvswitch4": {"message_latency_us": -1}}},
     "topology.calibration.links.nvswitch4.message_latency_us", "must be >= 0"),
    ({"launch_us": {"ring": "fast"}}, "topology.calibration.launch_us.ring", "must be a number"),
    ({"linkz": {}}, "topology.calibration.linkz", "unknown key"),
    ("missing.yaml", "topology.calibration", "no such calibration file"),
])
def test_bad_calibration_names_the_field(calibration, field, text):
    with pytest.raises(TopologyError) as error:
        topologies.build({"builder": "dgx-h100", "calibration": calibration})
    assert error.value.field == field and text in str(error.value)


def test_bad_reference_arguments_name_the_argument():
    with pytest.raises(TopologyError, match="topology.nodes"):
        topologies.build({"builder": "dgx-h100", "nodes": 0})
    with pytest.raises(TopologyError, match="topology.calibrated"):
        topologies.build({"builder": "dgx-h100", "calibrated": "yes"})
    with pytest.raises(TopologyError, match="topology.calibrated"):
        topologies.build({"builder": "nvswitch", "calibrated": "yes"})


def test_uncalibrated_reference_keeps_wire_figures():
    graph = topologies.build({"builder": "dgx-a100", "calibrated": False})
    assert not topologies.is_calibrated(graph)
    assert graph.edges["gpu0", "n0_nvsw0"]["bandwidth_Bps"] == 300e9
    assert all("message_latency_s" not in d for _, _, d in graph.edges(data=True))

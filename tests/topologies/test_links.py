"""The link catalogue: every figure sourced, and the arithmetic behind the headline figures."""

import pytest

from topologies.devices import gpu_catalogue
from topologies.errors import TopologyError
from topologies.links import FAMILIES, link_catalogue, link_kinds, link_spec

GB = 1e9


def test_every_link_kind_has_sourced_positive_figures():
    catalogue = link_catalogue()
    assert len(catalogue) >= 16
    for name, spec in catalogue.items():
        assert spec.name == name
        assert spec.bandwidth_Bps > 0 and spec.latency_s >= 0
        assert spec.family in FAMILIES
        assert len(spec.source) > 20 and len(spec.latency_source) > 20


@pytest.mark.parametrize(
    "kind, per_direction_GBps",
    [
        ("nvlink3", 12 * 25),  # A100: 12 links x 25 GB/s
        ("nvlink4", 18 * 25),  # H100: 18 links x 25 GB/s
        ("nvlink5", 18 * 50),  # B200: 18 links x 50 GB/s
        ("nvswitch3", 300),
        ("nvswitch4", 450),
        ("nvswitch5", 900),
        ("infinity-fabric", 7 * 64),  # MI300X: 7 peers x 64 GB/s
        ("ib-hdr", 200 / 8),
        ("ib-ndr", 400 / 8),
        ("roce-100g", 100 / 8),
        ("roce-200g", 200 / 8),
        ("roce-400g", 400 / 8),
        ("upi", 4 * 16 * 2),  # 4 UPI 2.0 links x 16 GT/s x 2 bytes
    ],
)
def test_bandwidth_matches_link_arithmetic(kind, per_direction_GBps):
    assert link_spec(kind).bandwidth_Bps == pytest.approx(per_direction_GBps * GB, rel=1e-12)


@pytest.mark.parametrize("kind, gt_per_s", [("pcie3", 8), ("pcie4", 16), ("pcie5", 32)])
def test_pcie_x16_is_wire_rate_after_128b130b(kind, gt_per_s):
    exact_Bps = gt_per_s * 1e9 * 16 * 128 / 130 / 8
    assert link_spec(kind).bandwidth_Bps == pytest.approx(exact_Bps, rel=1e-4)  # written to 3 decimals


def test_latencies_sum_to_nccls_per_hop_figures():
    lat = {name: spec.latency_s for name, spec in link_catalogue().items()}
    assert lat["nvlink4"] == pytest.approx(0.6e-6)
    assert 2 * lat["nvswitch4"] == pytest.approx(0.6e-6)
    assert 2 * lat["pcie5"] == pytest.approx(1.0e-6)
    assert 2 * lat["pcie5"] + 2 * lat["ib-ndr"] == pytest.approx(2.7e-6)


def test_gpu_fabric_figures_are_per_gpu_budgets():
    assert link_spec("nvlink4").per_gpu and link_spec("infinity-fabric").per_gpu
    assert not link_spec("nvswitch4").per_gpu and not link_spec("pcie5").per_gpu


def test_every_gpu_names_catalogue_link_kinds():
    for gpu in gpu_catalogue().values():
        assert link_spec(gpu.pcie).family == "pcie"
        if gpu.nvlink is not None:
            assert link_spec(gpu.nvlink).family == "gpu-link"


def test_link_kinds_lists_one_family():
    assert link_kinds("network") == ["ib-hdr", "ib-ndr", "roce-100g", "roce-200g", "roce-400g"]


def test_unknown_link_kind_lists_known_kinds():
    with pytest.raises(TopologyError) as info:
        link_spec("nvlink9", field="topology.links[0].kind")
    assert info.value.field == "topology.links[0].kind"
    assert "unknown link kind 'nvlink9'" in str(info.value)
    assert "nvlink4" in str(info.value) and "ib-ndr" in str(info.value)

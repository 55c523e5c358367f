"""Named reference systems users recognise (DGX A100, DGX H100, HGX H200, 8-GPU PCIe servers, and
clusters of each over an InfiniBand leaf/spine), and the calibration that makes a graph behave
like measured hardware.

Calibration (`calibrate`) applies the link catalogue's measured mechanisms to every link whose
figures came from the catalogue (``explicit == False``): the bandwidth becomes wire x
`efficiency` (NCCL's protocol overhead), and the edge gets the kind's `message_latency_s` (the
software cost of one message) and, on NVSwitch-4+ ports, its `nvls_efficiency`. Links whose
bandwidth the user wrote are left exactly as written, so hand-written topologies keep matching
the closed forms. The reference builders return calibrated graphs by default; any other builder
or YAML topology is calibrated with ``calibrated: true`` or ``calibration: FILE`` (registry).

A calibration override (what `moesim calibrate` writes) is a mapping::

    links:
      nvswitch4: {efficiency: 0.81, message_latency_us: 1.1, nvls_efficiency: 0.83, source: "..."}
    launch_us: {ring: 4.7, nvls: 30}      # optional, per collective algorithm (or one number)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from pathlib import Path
from typing import Any

import networkx as nx

from simulator.safeio import read_yaml

from topologies.builders import add_link, check_int, multi_node
from topologies.devices import gpu_spec
from topologies.errors import TopologyError
from topologies.links import link_catalogue, link_spec

LINK_FIELDS = ("efficiency", "message_latency_us", "nvls_efficiency", "source")
TOP_FIELDS = ("links", "launch_us", "source", "kernels")  # kernels: informational (compute side)


# ---------------------------------------------------------------- calibration


def load_calibration(value: Any, field: str = "calibration") -> dict[str, Any]:
    """A calibration override from a YAML file path or a mapping, checked; errors name the field
    (``fit.yaml:links.nvswitch4.efficiency: must be in (0, 1], got 1.4``)."""
    if isinstance(value, (str, Path)):
        path = Path(value)
        if not path.exists():
            raise TopologyError(f"no such calibration file: {path}", field)
        data = read_yaml(path, field, error=TopologyError)  # regular UTF-8 file, strict YAML (safeio)
        field = f"{path}:"
        value = {} if data is None else data
    if not isinstance(value, Mapping):
        raise TopologyError(f"must be a mapping with links: (and launch_us:), got {type(value).__name__}", field)
    prefix = field if field.endswith(":") else f"{field}."
    for key in value:
        if key not in TOP_FIELDS:
            raise TopologyError(f"unknown key {key!r}; allowed: {', '.join(TOP_FIELDS)}", f"{prefix}{key}")
    links = value.get("links") or {}
    if not isinstance(links, Mapping):
        raise TopologyError(f"must be a mapping of link kind -> figures, got {type(links).__name__}",
                            f"{prefix}links")
    checked: dict[str, Any] = {"links": {}}
    catalogue = link_catalogue()
    for kind, figures in links.items():
        where = f"{prefix}links.{kind}"
        if kind not in catalogue:
            raise TopologyError(f"unknown link kind {kind!r}; known: {', '.join(sorted(catalogue))}", where)
        if not isinstance(figures, Mapping):
            raise TopologyError(f"must be a mapping of {', '.join(LINK_FIELDS)}", where)
        entry = {}
        for key, number in figures.items():
            if key not in LINK_FIELDS:
                raise TopologyError(f"unknown key {key!r}; allowed: {', '.join(LINK_FIELDS)}", f"{where}.{key}")
            if key == "source":
                entry[key] = str(number)
                continue
            if isinstance(number, bool) or not isinstance(number, Real) or not math.isfinite(number):
                raise TopologyError(f"must be a number, got {number!r}", f"{where}.{key}")
            if key in ("efficiency", "nvls_efficiency") and not 0 < number <= 1:
                raise TopologyError(f"must be in (0, 1], got {number:g}", f"{where}.{key}")
            if key == "message_latency_us" and number < 0:
                raise TopologyError(f"must be >= 0, got {number:g}", f"{where}.{key}")
            entry[key] = float(number)
        checked["links"][kind] = entry
    if "launch_us" in value:
        launch = value["launch_us"]
        items = launch.items() if isinstance(launch, Mapping) else [("", launch)]
        for name, number in items:
            where = f"{prefix}launch_us" + (f".{name}" if name else "")
            if isinstance(number, bool) or not isinstance(number, Real) or not number >= 0 \
                    or not math.isfinite(number):
                raise TopologyError(f"must be a number >= 0 (microseconds), got {number!r}", where)
        checked["launch_us"] = dict(launch) if isinstance(launch, Mapping) else float(launch)
    if "source" in value:
        checked["source"] = str(value["source"])
    return checked


def calibrate(graph: nx.DiGraph, overrides: Mapping[str, Any] | None = None) -> nx.DiGraph:
    """A copy of `graph` with measured efficiencies and per-message latencies on catalogue links.

    For every edge with ``explicit == False`` and a catalogue kind: ``bandwidth_Bps`` = wire x
    efficiency (the wire figure is kept in ``wire_bandwidth_Bps``; calibrating twice is the same
    as once), ``message_latency_s`` and, where the kind has one, ``nvls_efficiency``. Figures come
    from the catalogue unless `overrides` (see `load_calibration`) gives them. Explicit edges are
    copied untouched. ``graph.graph["calibration"]`` records the overrides' launch latencies and
    sources for the collectives.
    """
    overrides = load_calibration(overrides) if overrides is not None else {"links": {}}
    catalogue = link_catalogue()
    out = graph.copy()
    for _, _, data in out.edges(data=True):
        spec = catalogue.get(data["kind"])
        if data.get("explicit") or spec is None:
            continue
        figures = overrides["links"].get(data["kind"], {})
        wire = data.setdefault("wire_bandwidth_Bps", data["bandwidth_Bps"])
        efficiency = figures.get("efficiency", spec.efficiency)
        data["efficiency"] = efficiency
        data["bandwidth_Bps"] = wire * efficiency
        data["message_latency_s"] = figures.get("message_latency_us", spec.message_latency_s * 1e6) * 1e-6
        nvls = figures.get("nvls_efficiency", spec.nvls_efficiency)
        if nvls > 0:
            data["nvls_efficiency"] = nvls
    previous = dict(graph.graph.get("calibration") or {})
    calibration = {"sources": {**previous.get("sources", {}),
                               **{kind: f.get("source", "override") for kind, f in overrides["links"].items()}}}
    if "launch_us" in overrides:
        calibration["launch_us"] = overrides["launch_us"]
    elif "launch_us" in previous:
        calibration["launch_us"] = previous["launch_us"]
    out.graph["calibration"] = calibration
    return out


def is_calibrated(graph: nx.DiGraph) -> bool:
    return graph.graph.get("calibration") is not None


# ---------------------------------------------------------------- reference systems


def _server_cluster(name: str, device: str, nic: str, nodes: int, nics_per_node: int | None, leaves, spines,
                    oversubscription: float, calibrated: bool, intra: str, sockets_host: bool) -> nx.DiGraph:
    check_int(nodes, "nodes")
    graph = multi_node(nodes=nodes, gpus_per_node=8, device=device, intra=intra, nic=nic,
                       nics_per_node=nics_per_node, leaves=leaves, spines=spines,
                       oversubscription=oversubscription)
    if sockets_host:
        _add_hosts(graph, nodes, device)
    graph.graph["name"] = name if nodes == 1 else f"{name}-x{nodes}"
    if not isinstance(calibrated, bool):
        raise TopologyError(f"must be true or false, got {calibrated!r}", "calibrated")
    return calibrate(graph) if calibrated else graph


def _add_hosts(graph: nx.DiGraph, nodes: int, device: str) -> None:
    """Two CPU sockets per server (`n{k}_host0/1`, joined by the inter-socket link), GPUs 0-3
    under socket 0 and 4-7 under socket 1 over the GPU's PCIe kind: the host<->device path of a
    DGX/HGX board (nvbandwidth's host-to-device copies). GPU-to-GPU routes keep NVSwitch: the
    route through a socket has as many hops but more latency."""
    pcie = link_spec(gpu_spec(device).pcie, "device")
    upi = link_spec("upi")
    for node in range(nodes):
        hosts = [f"n{node}_host{s}" for s in range(2)]
        for host in hosts:
            graph.add_node(host, kind="host", node_id=node)
        add_link(graph, hosts[0], hosts[1], "upi", upi.bandwidth_Bps, upi.latency_s)
        for local in range(8):
            add_link(graph, f"gpu{node * 8 + local}", hosts[local // 4], pcie.name, pcie.bandwidth_Bps,
                     pcie.latency_s)


def dgx_a100(nodes: int = 1, nics_per_node: int | None = None, leaves: int | None = None,
             spines: int | None = None, oversubscription: float = 1.0, calibrated: bool = True) -> nx.DiGraph:
    """DGX A100: 8x A100-SXM4-80GB on NVSwitch (NVLink3, 300 GB/s per GPU), 8 HDR 200G NICs (one per
    GPU), two sockets; `nodes` > 1 joins servers over an HDR leaf/spine (`multi_node`)."""
    return _server_cluster("dgx-a100", "a100-sxm4-80gb", "ib-hdr", nodes, nics_per_node, leaves, spines,
                           oversubscription, calibrated, "nvswitch", True)


def dgx_h100(nodes: int = 1, nics_per_node: int | None = None, leaves: int | None = None,
             spines: int | None = None, oversubscription: float = 1.0, calibrated: bool = True) -> nx.DiGraph:
    """DGX H100: 8x H100-SXM5-80GB on NVSwitch-4 (NVLink4, 450 GB/s per GPU, NVLS), 8 NDR 400G NICs,
    two sockets; `nodes` > 1 joins servers over an NDR leaf/spine."""
    return _server_cluster("dgx-h100", "h100-sxm5-80gb", "ib-ndr", nodes, nics_per_node, leaves, spines,
                           oversubscription, calibrated, "nvswitch", True)


def hgx_h200(nodes: int = 1, nics_per_node: int | None = None, leaves: int | None = None,
             spines: int | None = None, oversubscription: float = 1.0, calibrated: bool = True) -> nx.DiGraph:
    """HGX H200: 8x H200-SXM-141GB on NVSwitch-4 (as DGX H100, with H200's HBM3e), 8 NDR NICs."""
    return _server_cluster("hgx-h200", "h200-sxm-141gb", "ib-ndr", nodes, nics_per_node, leaves, spines,
                           oversubscription, calibrated, "nvswitch", True)


def pcie_a100(nodes: int = 1, nics_per_node: int | None = None, leaves: int | None = None,
              spines: int | None = None, oversubscription: float = 1.0, calibrated: bool = True) -> nx.DiGraph:
    """8x A100-PCIe-80GB, two per PCIe 4.0 switch, two switches per socket, two sockets joined by
    UPI (`pcie_tree`); one HDR NIC per PCIe switch."""
    return _server_cluster("pcie-a100", "a100-pcie-80gb", "ib-hdr", nodes, nics_per_node, leaves, spines,
                           oversubscription, calibrated, "pcie_tree", False)


def pcie_h100(nodes: int = 1, nics_per_node: int | None = None, leaves: int | None = None,
              spines: int | None = None, oversubscription: float = 1.0, calibrated: bool = True) -> nx.DiGraph:
    """8x H100-PCIe-80GB under PCIe 5.0 switches (as `pcie_a100`), one NDR NIC per PCIe switch."""
    return _server_cluster("pcie-h100", "h100-pcie-80gb", "ib-ndr", nodes, nics_per_node, leaves, spines,
                           oversubscription, calibrated, "pcie_tree", False)


REFERENCE_BUILDERS = {
    "dgx-a100": dgx_a100,
    "dgx-h100": dgx_h100,
    "hgx-h200": hgx_h200,
    "pcie-a100": pcie_a100,
    "pcie-h100": pcie_h100,
}

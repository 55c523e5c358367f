"""moesim topologies: device and link catalogues, topology builders, routing.

Public API: `build` / `resolve` a topology (builder name, nodes/links YAML, or file), the builder
functions themselves, `gpu_nodes` / `PathTable` for routing, and the catalogue accessors.
"""

from topologies.builders import (
    mesh2d,
    multi_node,
    nvlink_mesh,
    nvswitch,
    pcie_tree,
    ring,
    torus2d,
    validate_graph,
)
from topologies.devices import GpuSpec, gpu_catalogue, gpu_spec
from topologies.errors import TopologyError
from topologies.links import LinkSpec, link_catalogue, link_spec
from topologies.paths import PathTable, gpu_nodes
from topologies.reference import (
    calibrate,
    dgx_a100,
    dgx_h100,
    hgx_h200,
    is_calibrated,
    load_calibration,
    pcie_a100,
    pcie_h100,
)
from topologies.registry import BUILDERS, build, resolve
from topologies.yaml_topology import from_yaml_dict, load_topology_file, to_yaml_dict

__all__ = [
    "BUILDERS",
    "GpuSpec",
    "LinkSpec",
    "PathTable",
    "TopologyError",
    "build",
    "calibrate",
    "dgx_a100",
    "dgx_h100",
    "from_yaml_dict",
    "gpu_catalogue",
    "gpu_nodes",
    "gpu_spec",
    "hgx_h200",
    "is_calibrated",
    "link_catalogue",
    "link_spec",
    "load_calibration",
    "load_topology_file",
    "mesh2d",
    "multi_node",
    "nvlink_mesh",
    "nvswitch",
    "pcie_a100",
    "pcie_h100",
    "pcie_tree",
    "resolve",
    "ring",
    "to_yaml_dict",
    "torus2d",
    "validate_graph",
]

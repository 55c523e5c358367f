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
from topologies.registry import BUILDERS, build, resolve
from topologies.yaml_topology import from_yaml_dict, load_topology_file, to_yaml_dict

__all__ = [
    "BUILDERS",
    "GpuSpec",
    "LinkSpec",
    "PathTable",
    "TopologyError",
    "build",
    "from_yaml_dict",
    "gpu_catalogue",
    "gpu_nodes",
    "gpu_spec",
    "link_catalogue",
    "link_spec",
    "load_topology_file",
    "mesh2d",
    "multi_node",
    "nvlink_mesh",
    "nvswitch",
    "pcie_tree",
    "resolve",
    "ring",
    "to_yaml_dict",
    "torus2d",
    "validate_graph",
]

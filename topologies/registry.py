"""The one registry of topology builders: YAML names map to builder functions here, and only here.

`build` turns a scenario's ``topology:`` section into a checked graph; `resolve` does the same for
the CLI's ``--topology NAME_OR_FILE``.
"""

import difflib
import inspect
from pathlib import Path

import networkx as nx

from topologies.builders import (
    mesh2d,
    message_of,
    multi_node,
    nvlink_mesh,
    nvswitch,
    pcie_tree,
    ring,
    torus2d,
    validate_graph,
)
from topologies.errors import TopologyError
from topologies.yaml_topology import from_yaml_dict, load_topology_file, sub

BUILDERS = {
    "nvlink_mesh": nvlink_mesh,
    "nvswitch": nvswitch,
    "pcie_tree": pcie_tree,
    "multi_node": multi_node,
    "ring": ring,
    "torus2d": torus2d,
    "mesh2d": mesh2d,
}


def builder_kwargs(name: str) -> list[str]:
    """The keyword arguments a builder accepts, in signature order."""
    return list(inspect.signature(BUILDERS[name]).parameters)


def _builder(name, field: str):
    if name not in BUILDERS:
        close = difflib.get_close_matches(str(name), BUILDERS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TopologyError(f"unknown builder {name!r}{hint}; known: {', '.join(BUILDERS)}", field)
    return BUILDERS[name]


def build(spec: dict, field: str = "topology") -> nx.DiGraph:
    """Build and check a topology from ``{builder: NAME, **kwargs}`` or the nodes/links form.

    Errors name the YAML path: ``topology.gpus: must be >= 1, got 0``.
    """
    if not isinstance(spec, dict):
        raise TopologyError(f"must be a mapping ({{builder: NAME, ...}} or nodes/links), got {spec!r}", field)
    if "builder" not in spec:
        if "nodes" not in spec:
            raise TopologyError(
                f"needs either builder: (one of {', '.join(BUILDERS)}) or nodes: and links:", field
            )
        return from_yaml_dict(spec, field)
    name = spec["builder"]
    builder = _builder(name, sub(field, "builder"))
    kwargs = {key: value for key, value in spec.items() if key != "builder"}
    allowed = builder_kwargs(name)
    for key in kwargs:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TopologyError(
                f"unknown argument {key!r} for builder {name!r}{hint}; allowed: {', '.join(allowed)}",
                sub(field, str(key)),
            )
    try:
        graph = builder(**kwargs)
    except TopologyError as error:
        raise TopologyError(message_of(error), sub(field, error.field) if error.field else field) from None
    return validate_graph(graph, field)


def resolve(name_or_path: str, **overrides) -> nx.DiGraph:
    """A builder name (with `overrides` it accepts, None values skipped) or a YAML file path.

    For the CLI: ``resolve("nvswitch", gpus=8, nodes=None)`` -> nvswitch(gpus=8). Overrides do not
    apply to files; a file holds the whole topology.
    """
    if name_or_path in BUILDERS:
        allowed = builder_kwargs(name_or_path)
        spec = {key: value for key, value in overrides.items() if key in allowed and value is not None}
        return build({"builder": name_or_path, **spec})
    path = Path(str(name_or_path))
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_topology_file(path)
    close = difflib.get_close_matches(str(name_or_path), BUILDERS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise TopologyError(
        f"{name_or_path!r} is neither a builder{hint} ({', '.join(BUILDERS)}) nor a YAML file", "topology"
    )

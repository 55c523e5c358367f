"""The one registry of topology builders: YAML names map to builder functions here, and only here.

`build` turns a scenario's ``topology:`` section into a checked graph; `resolve` does the same for
the CLI's ``--topology NAME_OR_FILE``.
"""

import inspect
import os
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
from simulator.registry import Registry, did_you_mean, params_from_signature
from topologies.errors import TopologyError
from topologies.reference import REFERENCE_BUILDERS, calibrate, load_calibration
from topologies.yaml_topology import from_yaml_dict, load_topology_file, sub

# Builders check their own argument values (they are plain Python functions too); the registry's
# parameter model is their signature, so an unknown argument fails with the allowed ones listed.
BUILDERS = Registry("builder", TopologyError, param_noun="argument", kind_key="builder")
for _name, _builder_function in {
    "nvlink_mesh": nvlink_mesh,
    "nvswitch": nvswitch,
    "pcie_tree": pcie_tree,
    "multi_node": multi_node,
    "ring": ring,
    "torus2d": torus2d,
    "mesh2d": mesh2d,
    **REFERENCE_BUILDERS,  # dgx-a100, dgx-h100, hgx-h200, pcie-a100, pcie-h100 (calibrated)
}.items():
    BUILDERS.register(_name, _builder_function, params_from_signature(_builder_function, f"{_name}_args"))

# Keys any topology spec may carry, whatever its form: apply the measured link mechanisms
# (`calibrated: true`), optionally with fitted overrides (`calibration: FILE or mapping`), and the
# collectives' algorithms NCCL is told to use (`algorithms: {all_reduce: ring, all_to_all: pxn}`,
# NCCL_ALGO; names are checked by simulator.engine.collectives, which reads graph.graph["algorithms"]).
CALIBRATION_KEYS = ("calibrated", "calibration")
ALGORITHM_OPS = ("all_reduce", "reduce_scatter", "all_gather", "all_to_all")


MAX_GPUS_ENV = "MOESIM_MAX_GPUS"
DEFAULT_MAX_GPUS = 4096  # a full mesh of 4096 GPUs is 16.8 M links and as many cached paths


def planned_gpus(name: str, kwargs: dict) -> int | None:
    """GPUs the builder would create, from its arguments and defaults (None if not integers)."""
    params = inspect.signature(BUILDERS[name]).parameters
    values = {key: kwargs.get(key, p.default) for key, p in params.items()}
    ints = {k: v for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool)}
    if "gpus" in params:
        return ints.get("gpus")
    if "rows" in params and "cols" in params:
        return ints["rows"] * ints["cols"] if {"rows", "cols"} <= set(ints) else None
    if "nodes" in params:
        per_node = ints.get("gpus_per_node", 8)  # the reference servers hold 8 GPUs each
        return ints["nodes"] * per_node if "nodes" in ints else None
    return None


def max_gpus() -> int:
    text = os.environ.get(MAX_GPUS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_GPUS
    if not text.isdigit() or int(text) < 1:
        raise TopologyError(f"must be a whole number of GPUs >= 1, got {text!r}", MAX_GPUS_ENV)
    return int(text)


def check_gpu_count(gpus: int | None, field: str) -> None:
    """Refuse a topology larger than the limit before building it (a typo of 10^6 GPUs would
    build a graph of 10^12 links)."""
    limit = max_gpus()
    if gpus is not None and gpus > limit:
        raise TopologyError(f"{gpus:,} GPUs exceed the limit of {limit:,} (set {MAX_GPUS_ENV} to "
                            "raise it)", field)


def builder_kwargs(name: str) -> list[str]:
    """The keyword arguments a builder accepts, in signature order."""
    return list(BUILDERS.get(name, "builder").params.model_fields)


def build(spec: dict, field: str = "topology") -> nx.DiGraph:
    """Build and check a topology from ``{builder: NAME, **kwargs}`` or the nodes/links form.

    Errors name the YAML path: ``topology.gpus: must be >= 1, got 0``. ``calibrated: true`` and
    ``calibration: FILE`` (any form) apply `topologies.calibrate` to the built graph; the
    reference builders (dgx-h100, ...) are calibrated unless ``calibrated: false``.
    ``algorithms: {all_to_all: pxn, ...}`` records the collectives' algorithms on the graph.
    """
    if not isinstance(spec, dict):
        raise TopologyError(f"must be a mapping ({{builder: NAME, ...}} or nodes/links), got {spec!r}", field)
    if "algorithms" in spec:
        spec = dict(spec)
        algorithms = spec.pop("algorithms")
        where = sub(field, "algorithms")
        if not isinstance(algorithms, dict) or not all(isinstance(v, str) for v in algorithms.values()):
            raise TopologyError(f"must be a mapping of collective -> algorithm name, got {algorithms!r}", where)
        for op in algorithms:
            if op not in ALGORITHM_OPS:
                raise TopologyError(f"unknown collective {op!r}; allowed: {', '.join(ALGORITHM_OPS)}",
                                    sub(where, str(op)))
        graph = build(spec, field)
        graph.graph["algorithms"] = dict(algorithms)
        return graph
    takes_calibrated = "builder" in spec and spec["builder"] in BUILDERS and "calibrated" in builder_kwargs(
        spec["builder"])
    if "calibration" in spec or ("calibrated" in spec and not takes_calibrated):
        spec = dict(spec)
        overrides = spec.pop("calibration", None)
        wanted = spec.get("calibrated") if takes_calibrated else spec.pop("calibrated", None)
        if wanted is not None and not isinstance(wanted, bool):
            raise TopologyError(f"must be true or false, got {wanted!r}", sub(field, "calibrated"))
        graph = build(spec, field)
        if overrides is not None:
            checked = load_calibration(overrides, sub(field, "calibration"))
            return calibrate(graph, checked)
        return calibrate(graph) if wanted and not takes_calibrated else graph
    if "builder" not in spec:
        if "nodes" not in spec:
            raise TopologyError(
                f"needs either builder: (one of {BUILDERS.known()}) or nodes: and links:", field
            )
        return from_yaml_dict(spec, field)
    name = spec["builder"]
    builder = BUILDERS.factory(name, sub(field, "builder"))
    kwargs = BUILDERS.parse(name, {k: v for k, v in spec.items() if k != "builder"}, field).given()
    check_gpu_count(planned_gpus(name, kwargs), field)
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
    hint = did_you_mean(name_or_path, BUILDERS.names())
    raise TopologyError(
        f"{name_or_path!r} is neither a builder{hint} ({BUILDERS.known()}) nor a YAML file", "topology"
    )

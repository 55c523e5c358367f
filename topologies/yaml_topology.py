"""Topologies written by hand: the nodes/links form of DESIGN.md section 6, validated strictly.

Every error names the exact YAML path (``topology.links[3].bandwidth_GBps``) and what is allowed,
because this is the one place where users type topology figures themselves.
"""

import difflib
from pathlib import Path

import networkx as nx

from simulator.safeio import read_yaml

from topologies.builders import NODE_KINDS, add_link, check_int, check_number, validate_graph
from topologies.devices import gpu_catalogue
from topologies.errors import TopologyError
from topologies.links import link_catalogue

TOP_KEYS = ("name", "nodes", "links")
NODE_KEYS = ("name", "kind", "device", "node")
LINK_KEYS = ("a", "b", "kind", "bandwidth_GBps", "latency_us", "directed")


def sub(field: str, key: str) -> str:
    """Join a YAML path and a key: ``topology`` + ``links[3]`` -> ``topology.links[3]``."""
    if not field:
        return key
    return f"{field}{key}" if field.endswith(":") or key.startswith("[") else f"{field}.{key}"


def check_keys(entry: dict, allowed: tuple[str, ...], field: str) -> None:
    """Reject keys outside `allowed` (typos), suggesting the closest allowed key."""
    for key in entry:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TopologyError(f"unknown key {key!r}{hint}; allowed: {', '.join(allowed)}", sub(field, str(key)))


def _name(value, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise TopologyError(f"must be a non-empty string, got {value!r}", field)
    return value


def _list(spec: dict, key: str, field: str) -> list:
    value = spec.get(key, [])
    if not isinstance(value, list):
        raise TopologyError(f"must be a list, got {type(value).__name__}", sub(field, key))
    return value


def from_yaml_dict(spec: dict, field: str = "topology") -> nx.DiGraph:
    """Build the graph of ``{name?, nodes: [{name, kind, device?, node?}], links: [{a, b, kind, ...}]}``.

    A link whose kind is in the catalogue may omit bandwidth_GBps / latency_us (catalogue figures,
    explicit=False); a written bandwidth marks both directions explicit=True. A kind outside the
    catalogue needs both figures. GPU ranks follow the order GPU nodes are listed.
    """
    if not isinstance(spec, dict):
        raise TopologyError(f"must be a mapping with nodes and links, got {type(spec).__name__}", field)
    check_keys(spec, TOP_KEYS, field)
    name = _name(spec.get("name", "yaml-topology"), sub(field, "name"))
    if "nodes" not in spec:
        raise TopologyError("missing; a topology needs nodes (and links)", sub(field, "nodes"))
    graph = nx.DiGraph(name=name)
    first_seen: dict[str, int] = {}
    for i, node in enumerate(_list(spec, "nodes", field)):
        where = sub(field, f"nodes[{i}]")
        _add_node(graph, node, where, first_seen, i)
    if not any(data["kind"] == "gpu" for _, data in graph.nodes(data=True)):
        raise TopologyError("no node of kind gpu; a topology needs at least one GPU", sub(field, "nodes"))
    given_by: dict[tuple[str, str], int] = {}
    for i, link in enumerate(_list(spec, "links", field)):
        _add_yaml_link(graph, link, sub(field, f"links[{i}]"), given_by, i)
    return validate_graph(graph, sub(field, "links"))


def _add_node(graph: nx.DiGraph, node, where: str, first_seen: dict[str, int], index: int) -> None:
    if not isinstance(node, dict):
        raise TopologyError(f"must be a mapping like {{name: gpu0, kind: gpu, device: ...}}, got {node!r}", where)
    check_keys(node, NODE_KEYS, where)
    name = _name(node.get("name"), sub(where, "name"))
    if name in first_seen:
        raise TopologyError(f"duplicate node name {name!r} (also nodes[{first_seen[name]}])", sub(where, "name"))
    first_seen[name] = index
    kind = node.get("kind")
    if kind not in NODE_KINDS:
        raise TopologyError(f"unknown node kind {kind!r}; allowed: {', '.join(NODE_KINDS)}", sub(where, "kind"))
    node_id = check_int(node.get("node", 0), sub(where, "node"), minimum=0)
    if kind != "gpu":
        if "device" in node:
            raise TopologyError(f"only GPU nodes take a device; this node is a {kind}", sub(where, "device"))
        graph.add_node(name, kind=kind, node_id=node_id)
        return
    device = node.get("device")
    if device not in gpu_catalogue():
        known = ", ".join(sorted(gpu_catalogue()))
        raise TopologyError(f"unknown GPU {device!r}; known: {known}", sub(where, "device"))
    rank = sum(1 for _, data in graph.nodes(data=True) if data["kind"] == "gpu")
    graph.add_node(name, kind="gpu", device=device, rank=rank, node_id=node_id)


def _add_yaml_link(graph: nx.DiGraph, link, where: str, given_by: dict[tuple[str, str], int], index: int) -> None:
    if not isinstance(link, dict):
        raise TopologyError(f"must be a mapping like {{a: gpu0, b: sw0, kind: nvlink4}}, got {link!r}", where)
    check_keys(link, LINK_KEYS, where)
    ends = []
    for key in ("a", "b"):
        end = _name(link.get(key), sub(where, key))
        if end not in graph:
            raise TopologyError(f"unknown node {end!r}; nodes: {', '.join(graph.nodes)}", sub(where, key))
        ends.append(end)
    a, b = ends
    if a == b:
        raise TopologyError(f"a link needs two different nodes, got {a!r} twice", sub(where, "b"))
    kind = _name(link.get("kind"), sub(where, "kind"))
    catalogue = link_catalogue()
    explicit = "bandwidth_GBps" in link
    if explicit:
        bandwidth_Bps = check_number(link["bandwidth_GBps"], sub(where, "bandwidth_GBps")) * 1e9
    elif kind in catalogue:
        bandwidth_Bps = catalogue[kind].bandwidth_Bps
    else:
        raise TopologyError(
            f"unknown link kind {kind!r} and no bandwidth_GBps; known kinds: {', '.join(sorted(catalogue))} "
            f"(or write bandwidth_GBps and latency_us for a custom kind)",
            sub(where, "kind"),
        )
    if "latency_us" in link:
        latency_s = check_number(link["latency_us"], sub(where, "latency_us"), strict=False) * 1e-6
    elif kind in catalogue:
        latency_s = catalogue[kind].latency_s
    else:
        raise TopologyError(f"required for link kind {kind!r}, which is not in the catalogue", sub(where, "latency_us"))
    directed = link.get("directed", False)
    if not isinstance(directed, bool):
        raise TopologyError(f"must be true or false, got {directed!r}", sub(where, "directed"))
    for edge in [(a, b)] if directed else [(a, b), (b, a)]:
        if edge in given_by:
            raise TopologyError(f"duplicate link {edge[0]} -> {edge[1]} (also links[{given_by[edge]}])", where)
        given_by[edge] = index
    add_link(graph, a, b, kind, bandwidth_Bps, latency_s, explicit=explicit, directed=directed)


def to_yaml_dict(graph: nx.DiGraph) -> dict:
    """The nodes/links form of a graph, for users to save and edit a built topology.

    GPUs are listed in rank order (so ranks survive the round trip); a pair with the same figures
    both ways becomes one undirected link. Figures equal to the kind's catalogue entry are left out,
    so those links stay explicit=False when read back; other figures are written (and read back as
    explicit=True, e.g. nvlink_mesh's per-pair share of a GPU's NVLink budget).
    """
    catalogue = link_catalogue()
    gpus = sorted((n for n, d in graph.nodes(data=True) if d["kind"] == "gpu"), key=lambda n: graph.nodes[n]["rank"])
    others = sorted(n for n, d in graph.nodes(data=True) if d["kind"] != "gpu")
    nodes = []
    for name in gpus + others:
        data = graph.nodes[name]
        entry = {"name": name, "kind": data["kind"]}
        if data["kind"] == "gpu":
            entry["device"] = data["device"]
        if data.get("node_id", 0):
            entry["node"] = int(data["node_id"])
        nodes.append(entry)
    links = []
    for a, b in sorted(graph.edges()):
        data = graph.edges[a, b]
        back = graph.edges[b, a] if graph.has_edge(b, a) else None
        symmetric = back is not None and all(back[k] == data[k] for k in ("bandwidth_Bps", "latency_s", "kind"))
        if symmetric and a > b:
            continue  # written once, from the (smaller, larger) side
        entry = {"a": a, "b": b, "kind": data["kind"]}
        spec = catalogue.get(data["kind"])
        if spec is None or data["explicit"] or data["bandwidth_Bps"] != spec.bandwidth_Bps:
            entry["bandwidth_GBps"] = data["bandwidth_Bps"] / 1e9
        if spec is None or data["latency_s"] != spec.latency_s:
            entry["latency_us"] = data["latency_s"] * 1e6
        if not symmetric:
            entry["directed"] = True
        links.append(entry)
    return {"name": graph.graph["name"], "nodes": nodes, "links": links}


def load_topology_file(path) -> nx.DiGraph:
    """Read a topology YAML file: the nodes/links mapping itself, or ``{topology: {...}}`` (which
    may also be the builder form ``{topology: {builder: nvswitch, gpus: 8}}``).

    Errors name the file: ``topo.yaml:topology.links[3].bandwidth_GBps: must be > 0, got -5``.
    """
    path = Path(path)
    data = read_yaml(path, error=TopologyError)  # regular UTF-8 file, strict YAML (safeio)
    if isinstance(data, dict) and "topology" in data:
        check_keys(data, ("topology",), f"{path}:")
        # Imported here: registry imports this module, and the builder form lives in registry.
        from topologies.registry import build

        return build(data["topology"], field=f"{path}:topology")
    if isinstance(data, dict) and "builder" in data:
        from topologies.registry import build

        return build(data, field=f"{path}:")
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise TopologyError(f"must hold a mapping (nodes/links, or topology: ...), got {kind}", str(path))
    return from_yaml_dict(data, field=f"{path}:")

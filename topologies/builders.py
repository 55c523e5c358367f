"""Topology builders: plain functions with keyword arguments that return the graph of the contract.

Like ``networkx.complete_graph(n)``: each builder draws GPUs, switches, hosts and NICs as nodes and
links as directed edges carrying ``bandwidth_Bps`` (per direction), ``latency_s`` (per edge),
``kind`` (a link kind of data/links.yaml) and ``explicit`` (False here: every figure comes from the
catalogue). Routing (topologies.paths) takes the fewest hops, so the shapes below are drawn so that
the fewest-hop path is the physical one: intra-node traffic stays on NVLink, inter-node traffic
leaves through the GPU's own NIC.

Arguments are checked up front; a bad one raises TopologyError naming the argument.
"""

import math
from numbers import Real

import networkx as nx

from topologies.devices import gpu_catalogue, gpu_spec
from topologies.errors import TopologyError
from topologies.links import link_catalogue, link_kinds, link_spec

NODE_KINDS = ("gpu", "switch", "host", "nic")
INTRA_FABRICS = ("nvswitch", "nvlink_mesh", "pcie_tree")


# ---------------------------------------------------------------- argument checks


def check_int(value, field: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TopologyError(f"must be an integer >= {minimum}, got {value!r}", field)
    if value < minimum:
        raise TopologyError(f"must be >= {minimum}, got {value}", field)
    return value


def check_number(value, field: str, minimum: float = 0.0, strict: bool = True) -> float:
    """A finite real number > minimum (strict) or >= minimum."""
    relation = ">" if strict else ">="
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise TopologyError(f"must be a finite number {relation} {minimum:g}, got {value!r}", field)
    if value < minimum or (strict and value == minimum):
        raise TopologyError(f"must be {relation} {minimum:g}, got {value:g}", field)
    return float(value)


def _device(device) -> str:
    if not isinstance(device, str):
        raise TopologyError(f"must be a GPU name; known: {', '.join(sorted(gpu_catalogue()))}", "device")
    gpu_spec(device, "device")
    return device


def _link_of_family(kind, field: str, family: str):
    spec = link_spec(kind, field)
    if spec.family != family:
        allowed = ", ".join(link_kinds(family))
        raise TopologyError(f"{kind!r} is a {spec.family} link, expected one of: {allowed}", field)
    return spec


# ---------------------------------------------------------------- graph helpers


def add_link(graph: nx.DiGraph, a: str, b: str, kind: str, bandwidth_Bps: float, latency_s: float,
             explicit: bool = False, directed: bool = False) -> None:
    """Add the edge a->b (and b->a unless `directed`) with the contract's attributes."""
    attrs = dict(bandwidth_Bps=float(bandwidth_Bps), latency_s=float(latency_s), kind=kind, explicit=explicit)
    graph.add_edge(a, b, **attrs)
    if not directed:
        graph.add_edge(b, a, **attrs)


def _add_gpus(graph: nx.DiGraph, count: int, device: str) -> list[str]:
    """GPUs gpu0..gpu{count-1} of one server (node_id 0); multi_node renumbers them."""
    names = [f"gpu{i}" for i in range(count)]
    for rank, name in enumerate(names):
        graph.add_node(name, kind="gpu", device=device, rank=rank, node_id=0)
    return names


def _peer_graph(name: str, gpus: int, device: str, pairs: list[tuple[int, int]], link: str,
                bandwidth_GBps=None, latency_us=None) -> nx.DiGraph:
    """GPUs joined directly by `pairs`; a gpu-link kind's budget is split over the largest degree.

    Splitting by the largest degree keeps every GPU within its budget (mesh2d's edge GPUs have
    fewer peers and leave part of theirs unused, as fixed wiring would).
    """
    if bandwidth_GBps is not None:
        check_number(bandwidth_GBps, "bandwidth_GBps")
    if latency_us is not None:
        check_number(latency_us, "latency_us", strict=False)
    if not isinstance(link, str) or not link:
        raise TopologyError(f"must be a link kind name, got {link!r}", "link")
    spec = None
    if link in link_catalogue():
        spec = link_spec(link, "link")
    elif bandwidth_GBps is None or latency_us is None:
        known = ", ".join(sorted(link_catalogue()))
        raise TopologyError(
            f"unknown link kind {link!r} (a kind outside the catalogue needs bandwidth_GBps and latency_us); "
            f"known: {known}",
            "link",
        )
    graph = nx.DiGraph(name=name)
    names = _add_gpus(graph, gpus, device)
    pairs = sorted({(min(a, b), max(a, b)) for a, b in pairs if a != b})
    degree = [0] * gpus
    for a, b in pairs:
        degree[a] += 1
        degree[b] += 1
    if bandwidth_GBps is not None:
        bandwidth_Bps = float(bandwidth_GBps) * 1e9
    else:
        bandwidth_Bps = spec.bandwidth_Bps / max(degree) if spec.per_gpu and pairs else spec.bandwidth_Bps
    latency_s = float(latency_us) * 1e-6 if latency_us is not None else spec.latency_s
    for a, b in pairs:
        add_link(graph, names[a], names[b], link, bandwidth_Bps, latency_s, explicit=bandwidth_GBps is not None)
    return graph


# ---------------------------------------------------------------- builders


def nvlink_mesh(gpus: int = 4, device: str = "a100-sxm4-80gb", link: str | None = None) -> nx.DiGraph:
    """Every GPU joined to every other by direct links (HGX A100 4-GPU, MI300X platform).

    Each GPU's per-direction budget of `link` (default: the device's `nvlink` kind) is split evenly
    over its n-1 peers, so one pair gets total / (n - 1) per direction.
    """
    check_int(gpus, "gpus")
    _device(device)
    if link is None:
        link = gpu_spec(device).nvlink
        if link is None:
            raise TopologyError(f"device {device!r} has no NVLink; pass link= a link kind", "device")
    pairs = [(a, b) for a in range(gpus) for b in range(a + 1, gpus)]
    return _peer_graph(f"nvlink_mesh-{gpus}x{device}", gpus, device, pairs, link)


def nvswitch(gpus: int = 8, device: str = "h100-sxm5-80gb", link: str | None = None) -> nx.DiGraph:
    """GPUs on one NVSwitch node `nvsw0` (DGX A100/H100/B200): every GPU<->switch edge carries
    the GPU's whole NVLink per-direction total; `link` defaults to the device's NVSwitch generation."""
    check_int(gpus, "gpus")
    _device(device)
    if link is None:
        nvlink = gpu_spec(device).nvlink or ""
        if not nvlink.startswith("nvlink"):
            raise TopologyError(
                f"device {device!r} has no NVSwitch generation (nvlink: {nvlink or None}); "
                f"pass link= one of {', '.join(link_kinds('gpu-switch'))}",
                "device",
            )
        link = nvlink.replace("nvlink", "nvswitch")
    spec = _link_of_family(link, "link", "gpu-switch")
    graph = nx.DiGraph(name=f"nvswitch-{gpus}x{device}")
    graph.add_node("nvsw0", kind="switch")
    for name in _add_gpus(graph, gpus, device):
        add_link(graph, name, "nvsw0", link, spec.bandwidth_Bps, spec.latency_s)
    return graph


def pcie_tree(gpus: int = 8, device: str = "h100-pcie-80gb", gpus_per_switch: int = 2, sockets: int = 2,
              pcie: str | None = None, inter_socket: str = "upi") -> nx.DiGraph:
    """GPUs under PCIe switches `pcisw{i}`, switches under CPU root complexes `host{s}` by x16
    uplinks, hosts joined by the inter-socket link.

    Switches go to sockets in blocks (pcisw0, pcisw1 -> host0 ...), so peers under one switch talk
    GPU->switch->GPU, peers under one socket go through the root complex, and the rest also cross
    the inter-socket link. `pcie` defaults to the device's PCIe generation.
    """
    check_int(gpus, "gpus")
    _device(device)
    check_int(gpus_per_switch, "gpus_per_switch")
    check_int(sockets, "sockets")
    if gpus % gpus_per_switch:
        raise TopologyError(f"gpus ({gpus}) must be a multiple of gpus_per_switch ({gpus_per_switch})", "gpus")
    pcie = gpu_spec(device).pcie if pcie is None else pcie
    pcie_link = _link_of_family(pcie, "pcie", "pcie")
    socket_link = _link_of_family(inter_socket, "inter_socket", "inter-socket")
    graph = nx.DiGraph(name=f"pcie_tree-{gpus}x{device}")
    hosts = [f"host{s}" for s in range(sockets)]
    for host in hosts:
        graph.add_node(host, kind="host")
    for i, a in enumerate(hosts):
        for b in hosts[i + 1:]:
            add_link(graph, a, b, inter_socket, socket_link.bandwidth_Bps, socket_link.latency_s)
    switches = gpus // gpus_per_switch
    names = _add_gpus(graph, gpus, device)
    for s in range(switches):
        switch = f"pcisw{s}"
        graph.add_node(switch, kind="switch")
        add_link(graph, switch, hosts[s * sockets // switches], pcie, pcie_link.bandwidth_Bps, pcie_link.latency_s)
        for name in names[s * gpus_per_switch:(s + 1) * gpus_per_switch]:
            add_link(graph, name, switch, pcie, pcie_link.bandwidth_Bps, pcie_link.latency_s)
    return graph


def multi_node(nodes: int = 2, gpus_per_node: int = 8, device: str = "h100-sxm5-80gb", intra: str = "nvswitch",
               nic: str = "ib-ndr", nics_per_node: int | None = None, leaves: int | None = None,
               spines: int | None = None, oversubscription: float = 1.0) -> nx.DiGraph:
    """Servers (each built by `intra` with its defaults) joined by NICs and a leaf/spine fabric.

    - GPUs are `gpu{global rank}` with `node_id`; a server's other nodes are prefixed `n{node}_`.
    - NICs `n{node}_nic{i}` hang off the server's PCIe (edges of the device's PCIe kind):
      with intra nvswitch / nvlink_mesh, GPU j attaches directly to NIC j % nics_per_node (default
      one NIC per GPU; the GPU and its NIC share a PCIe switch, as on DGX boards); with intra
      pcie_tree, NIC i sits on PCIe switch i * switches // nics_per_node (default and maximum: one
      NIC per switch) and each GPU uses the nearest NIC.
    - Not rail-optimised: every NIC of server k goes to leaf k // (nodes / leaves) (default one leaf
      per server); each leaf goes to every spine (default 1 spine when there are several leaves).
      A leaf's uplink to each spine carries (NICs under the leaf x NIC bandwidth) /
      (oversubscription x spines). Routing takes one path per GPU pair (no ECMP), so with several
      spines the traffic between two leaves uses one of them.

    These choices keep the fewest-hop path physical: intra-node paths (at most 2 hops on NVLink,
    5 on the PCIe tree) are shorter than any detour through a NIC.
    """
    check_int(nodes, "nodes")
    check_int(gpus_per_node, "gpus_per_node")
    _device(device)
    if intra not in INTRA_FABRICS:
        raise TopologyError(f"unknown intra-node fabric {intra!r}; allowed: {', '.join(INTRA_FABRICS)}", "intra")
    nic_link = _link_of_family(nic, "nic", "network")
    leaves = nodes if leaves is None else check_int(leaves, "leaves")
    if nodes % leaves:
        raise TopologyError(f"nodes ({nodes}) must be a multiple of leaves ({leaves})", "leaves")
    spines = (1 if leaves > 1 else 0) if spines is None else check_int(spines, "spines", minimum=0)
    if leaves > 1 and spines == 0:
        raise TopologyError(f"must be >= 1 when there are several leaves ({leaves}), got 0", "spines")
    check_number(oversubscription, "oversubscription")
    intra_builder = {"nvswitch": nvswitch, "nvlink_mesh": nvlink_mesh, "pcie_tree": pcie_tree}[intra]
    try:
        server = intra_builder(gpus=gpus_per_node, device=device)
    except TopologyError as error:
        field = {"gpus": "gpus_per_node", "link": "intra"}.get(error.field, error.field)
        raise TopologyError(f"{message_of(error)} (building intra={intra!r})", field) from None
    # Where NICs attach: the GPUs themselves, or (pcie_tree) the PCIe switches.
    if intra == "pcie_tree":
        ports = sorted((n for n, d in server.nodes(data=True) if d["kind"] == "switch"), key=lambda n: int(n[5:]))
    else:
        ports = sorted((n for n, d in server.nodes(data=True) if d["kind"] == "gpu"), key=lambda n: int(n[3:]))
    nics_per_node = len(ports) if nics_per_node is None else check_int(nics_per_node, "nics_per_node")
    if nics_per_node > len(ports):
        what = "PCIe switches per server" if intra == "pcie_tree" else "gpus_per_node"
        raise TopologyError(f"must be <= {what} ({len(ports)}), got {nics_per_node}", "nics_per_node")
    if intra == "pcie_tree":
        attach = [(ports[i * len(ports) // nics_per_node], i) for i in range(nics_per_node)]
    else:
        attach = [(port, j % nics_per_node) for j, port in enumerate(ports)]
    pcie_link = link_spec(gpu_spec(device).pcie, "device")

    graph = nx.DiGraph()
    nodes_per_leaf = nodes // leaves
    for node in range(nodes):
        first = node * gpus_per_node
        mapping = {
            name: f"gpu{first + data['rank']}" if data["kind"] == "gpu" else f"n{node}_{name}"
            for name, data in server.nodes(data=True)
        }
        for name, data in server.nodes(data=True):
            attrs = dict(data, node_id=node)
            if data["kind"] == "gpu":
                attrs["rank"] = first + data["rank"]
            graph.add_node(mapping[name], **attrs)
        graph.add_edges_from((mapping[a], mapping[b], dict(data)) for a, b, data in server.edges(data=True))
        leaf = f"leaf{node // nodes_per_leaf}"
        for i in range(nics_per_node):
            graph.add_node(f"n{node}_nic{i}", kind="nic", node_id=node)
            add_link(graph, f"n{node}_nic{i}", leaf, nic, nic_link.bandwidth_Bps, nic_link.latency_s)
        for port, i in attach:
            add_link(graph, mapping[port], f"n{node}_nic{i}", pcie_link.name, pcie_link.bandwidth_Bps,
                     pcie_link.latency_s)
    for leaf in range(leaves):
        graph.add_node(f"leaf{leaf}", kind="switch")
    uplink_Bps = nodes_per_leaf * nics_per_node * nic_link.bandwidth_Bps / (oversubscription * max(spines, 1))
    for spine in range(spines):
        graph.add_node(f"spine{spine}", kind="switch")
        for leaf in range(leaves):
            add_link(graph, f"leaf{leaf}", f"spine{spine}", nic, uplink_Bps, nic_link.latency_s)
    graph.graph["name"] = f"multi_node-{nodes}x{gpus_per_node}x{device}-{intra}-{nic}"
    return graph


def ring(gpus: int = 8, device: str = "h100-sxm5-80gb", link: str = "nvlink4", bandwidth_GBps: float | None = None,
         latency_us: float | None = None) -> nx.DiGraph:
    """Bidirectional ring gpu0-gpu1-...-gpu{n-1}-gpu0.

    Figures come from the catalogue kind `link` (a gpu-link budget is split over the 2 neighbours)
    unless `bandwidth_GBps` / `latency_us` are given; given bandwidth is per edge per direction and
    marks the edges explicit. A kind outside the catalogue needs both.
    """
    check_int(gpus, "gpus")
    _device(device)
    pairs = [(i, (i + 1) % gpus) for i in range(gpus)]
    return _peer_graph(f"ring-{gpus}x{device}", gpus, device, pairs, link, bandwidth_GBps, latency_us)


def _grid_pairs(rows: int, cols: int, wrap: bool) -> list[tuple[int, int]]:
    pairs = []
    for r in range(rows):
        for c in range(cols):
            here = r * cols + c
            if c + 1 < cols or wrap:
                pairs.append((here, r * cols + (c + 1) % cols))
            if r + 1 < rows or wrap:
                pairs.append((here, ((r + 1) % rows) * cols + c))
    return pairs


def torus2d(rows: int = 2, cols: int = 4, device: str = "h100-sxm5-80gb", link: str = "nvlink4",
            bandwidth_GBps: float | None = None, latency_us: float | None = None) -> nx.DiGraph:
    """rows x cols grid with wrap-around (TPU-style); GPU rank = row * cols + col.

    Figures as for `ring`; a gpu-link budget is split over the distinct neighbours (4 when both
    sides are >= 3).
    """
    check_int(rows, "rows")
    check_int(cols, "cols")
    _device(device)
    pairs = _grid_pairs(rows, cols, wrap=True)
    return _peer_graph(f"torus2d-{rows}x{cols}x{device}", rows * cols, device, pairs, link,
                       bandwidth_GBps, latency_us)


def mesh2d(rows: int = 2, cols: int = 4, device: str = "h100-sxm5-80gb", link: str = "nvlink4",
           bandwidth_GBps: float | None = None, latency_us: float | None = None) -> nx.DiGraph:
    """rows x cols grid without wrap-around; GPU rank = row * cols + col. Figures as for `torus2d`."""
    check_int(rows, "rows")
    check_int(cols, "cols")
    _device(device)
    pairs = _grid_pairs(rows, cols, wrap=False)
    return _peer_graph(f"mesh2d-{rows}x{cols}x{device}", rows * cols, device, pairs, link,
                       bandwidth_GBps, latency_us)


# ---------------------------------------------------------------- the contract, checked


def message_of(error: TopologyError) -> str:
    """The message of a TopologyError without its `field: ` prefix (to re-raise under another field)."""
    text = str(error)
    prefix = f"{error.field}: " if error.field else ""
    return text[len(prefix):] if text.startswith(prefix) else text


def validate_graph(graph: nx.DiGraph, field: str = "topology") -> nx.DiGraph:
    """Check a graph against the topology contract; returns it unchanged, or raises TopologyError.

    Checks node kinds, GPU attributes (known device, ranks 0..n-1, integer node_id), every edge's
    bandwidth (> 0), latency (>= 0), kind and explicit flag, and that every GPU reaches every GPU.
    """
    if not isinstance(graph, nx.DiGraph):
        raise TopologyError(f"expected a networkx.DiGraph, got {type(graph).__name__}", field)
    if not isinstance(graph.graph.get("name"), str):
        raise TopologyError("graph has no string 'name'", field)
    for name, data in graph.nodes(data=True):
        if data.get("kind") not in NODE_KINDS:
            raise TopologyError(f"node {name!r} has kind {data.get('kind')!r}; allowed: {', '.join(NODE_KINDS)}", field)
        if data["kind"] == "gpu":
            if data.get("device") not in gpu_catalogue():
                raise TopologyError(f"GPU {name!r} has unknown device {data.get('device')!r}", field)
            for key in ("rank", "node_id"):
                value = data.get(key)
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise TopologyError(f"GPU {name!r} needs an integer {key} >= 0, got {value!r}", field)
    gpus = [n for n, data in graph.nodes(data=True) if data["kind"] == "gpu"]
    if not gpus:
        raise TopologyError("the topology has no GPU", field)
    ranks = sorted(graph.nodes[n]["rank"] for n in gpus)
    if ranks != list(range(len(gpus))):
        raise TopologyError(f"GPU ranks must be 0..{len(gpus) - 1} once each, got {ranks}", field)
    for a, b, data in graph.edges(data=True):
        where = f"link {a} -> {b}"
        bandwidth, latency = data.get("bandwidth_Bps"), data.get("latency_s")
        if isinstance(bandwidth, bool) or not isinstance(bandwidth, Real) or not bandwidth > 0 \
                or not math.isfinite(bandwidth):
            raise TopologyError(f"{where}: bandwidth_Bps must be a finite number > 0, got {bandwidth!r}", field)
        if isinstance(latency, bool) or not isinstance(latency, Real) or not latency >= 0 \
                or not math.isfinite(latency):
            raise TopologyError(f"{where}: latency_s must be a finite number >= 0, got {latency!r}", field)
        if not isinstance(data.get("kind"), str) or not data["kind"]:
            raise TopologyError(f"{where}: kind must be a link kind name, got {data.get('kind')!r}", field)
        if not isinstance(data.get("explicit"), bool):
            raise TopologyError(f"{where}: explicit must be True or False, got {data.get('explicit')!r}", field)
    # Every GPU reaches every GPU iff all reach the first and the first reaches all.
    first = min(gpus, key=lambda n: graph.nodes[n]["rank"])
    reached, reaching = nx.descendants(graph, first), nx.ancestors(graph, first)
    for other in sorted(gpus, key=lambda n: graph.nodes[n]["rank"]):
        if other != first and other not in reached:
            raise TopologyError(f"no path from {first} to {other}: the topology is disconnected", field)
        if other != first and other not in reaching:
            raise TopologyError(f"no path from {other} to {first}: the topology is disconnected", field)
    return graph

"""Routing on a topology graph: one path per GPU pair, cached, with links numbered for numpy.

The network solver works on integer link ids and arrays of capacities, so this module numbers
the directed edges once (sorted, hence deterministic) and hands out each path as an array of
link ids.
"""

from functools import cached_property

import networkx as nx
import numpy as np

from topologies.errors import TopologyError


def gpu_nodes(graph: nx.DiGraph) -> list[str]:
    """GPU node names ordered by their `rank` attribute (the NCCL rank order)."""
    gpus = [n for n, data in graph.nodes(data=True) if data.get("kind") == "gpu"]
    return sorted(gpus, key=lambda n: graph.nodes[n]["rank"])


class PathTable:
    """Paths between nodes of one topology: fewest hops, ties broken by total latency, then by name.

    Paths are computed on first use and cached; `links` fixes the numbering of directed edges.
    """

    def __init__(self, graph: nx.DiGraph):
        self.graph = graph
        self.links: list[tuple[str, str]] = sorted(graph.edges())
        self.link_id = {edge: i for i, edge in enumerate(self.links)}
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    @cached_property
    def capacity_Bps(self) -> np.ndarray:
        return np.array([self.graph.edges[e]["bandwidth_Bps"] for e in self.links], dtype=float)

    @cached_property
    def latency_s(self) -> np.ndarray:
        return np.array([self.graph.edges[e]["latency_s"] for e in self.links], dtype=float)

    @cached_property
    def link_kind(self) -> list[str]:
        return [self.graph.edges[e]["kind"] for e in self.links]

    def path_nodes(self, src: str, dst: str) -> list[str]:
        return [self.links[i][0] for i in self.path(src, dst)] + [dst]

    def path(self, src: str, dst: str) -> np.ndarray:
        """Link ids from `src` to `dst` (empty for src == dst)."""
        key = (src, dst)
        if key not in self._cache:
            self._cache[key] = self._route(src, dst)
        return self._cache[key]

    def path_latency_s(self, src: str, dst: str) -> float:
        return float(self.latency_s[self.path(src, dst)].sum())

    def path_bandwidth_Bps(self, src: str, dst: str) -> float:
        """Bottleneck bandwidth of the path (inf for src == dst)."""
        ids = self.path(src, dst)
        return float(self.capacity_Bps[ids].min()) if len(ids) else float("inf")

    def _route(self, src: str, dst: str) -> np.ndarray:
        """Route from `src` to every node in one Dijkstra, caching all of them (n runs for n^2 pairs)."""
        if src == dst:
            return np.zeros(0, dtype=np.int64)

        # Weight = 1 hop + a tiny latency term: fewest hops first, then lowest latency.
        def weight(u, v, data):
            return 1.0 + 1e-3 * data["latency_s"] / (1.0 + data["latency_s"])

        _, routes = nx.single_source_dijkstra(self.graph, src, weight=weight)
        for target, nodes in routes.items():
            if target != src:
                self._cache.setdefault((src, target), np.array(
                    [self.link_id[(u, v)] for u, v in zip(nodes, nodes[1:])], dtype=np.int64))
        if dst not in routes:
            raise TopologyError(f"no path from {src} to {dst}: the topology is disconnected", "topology")
        return self._cache[(src, dst)]

"""Link-kind catalogue: per-direction bandwidth and per-edge latency of each link kind, from data/links.yaml.

Builders and YAML topologies take their figures from here, so every number on an edge traces back
to one sourced line of the data file.
"""

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from topologies.errors import TopologyError

# How builders use a kind's bandwidth; see the header of data/links.yaml.
FAMILIES = ("gpu-link", "gpu-switch", "pcie", "inter-socket", "network")


@dataclass(frozen=True)
class LinkSpec:
    """One link kind in SI units: bytes/s per direction, seconds per edge."""

    name: str
    bandwidth_Bps: float
    latency_s: float
    source: str
    family: str = "network"
    latency_source: str = ""

    @property
    def per_gpu(self) -> bool:
        """True when the figure is a GPU's whole budget, split over its peers by builders."""
        return self.family == "gpu-link"


@cache
def link_catalogue() -> dict[str, LinkSpec]:
    """All known link kinds by name."""
    text = resources.files("topologies").joinpath("data/links.yaml").read_text()
    return {
        name: LinkSpec(
            name=name,
            bandwidth_Bps=float(row["bandwidth_GBps"]) * 1e9,
            latency_s=float(row["latency_us"]) * 1e-6,
            source=row["source"],
            family=row["family"],
            latency_source=row.get("latency_source", ""),
        )
        for name, row in yaml.safe_load(text).items()
    }


def link_spec(kind: str, field: str = "link") -> LinkSpec:
    """Look a link kind up by name; an unknown name lists the known ones."""
    catalogue = link_catalogue()
    if not isinstance(kind, str) or kind not in catalogue:
        known = ", ".join(sorted(catalogue))
        raise TopologyError(f"unknown link kind {kind!r}; known: {known}", field)
    return catalogue[kind]


def link_kinds(family: str) -> list[str]:
    """Names of the catalogue's link kinds of one family, sorted."""
    return sorted(name for name, spec in link_catalogue().items() if spec.family == family)

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
    """One link kind in SI units: bytes/s per direction, seconds per edge.

    `bandwidth_Bps` is the wire (vendor peak) figure. The measured mechanisms are kept apart so
    that builders stay exact: `efficiency` (what fraction of the wire rate large NCCL transfers
    reach: protocol overhead), `message_latency_s` (software cost of one message on this kind:
    NCCL's per-step latency beyond the propagation in `latency_s`) and, for NVSwitch kinds that
    reduce in the switch (NVLS), `nvls_efficiency`. They are applied only by calibration
    (`topologies.calibrate`) and only to links whose figures came from this catalogue.
    """

    name: str
    bandwidth_Bps: float
    latency_s: float
    source: str
    family: str = "network"
    latency_source: str = ""
    efficiency: float = 1.0
    efficiency_source: str = ""
    message_latency_s: float = 0.0
    message_latency_source: str = ""
    nvls_efficiency: float = 0.0
    nvls_source: str = ""

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
            efficiency=float(row.get("efficiency", 1.0)),
            efficiency_source=row.get("efficiency_source", ""),
            message_latency_s=float(row.get("message_latency_us", 0.0)) * 1e-6,
            message_latency_source=row.get("message_latency_source", ""),
            nvls_efficiency=float(row.get("nvls_efficiency", 0.0)),
            nvls_source=row.get("nvls_source", ""),
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

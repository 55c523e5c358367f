"""GPU catalogue: peak compute, HBM bandwidth and memory per device, read from data/gpus.yaml."""

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from topologies.errors import TopologyError


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model in SI units (FLOP/s, bytes/s, bytes)."""

    name: str
    peak_flops: float
    hbm_Bps: float
    memory_bytes: float
    nvlink: str | None
    pcie: str
    source: str


@cache
def gpu_catalogue() -> dict[str, GpuSpec]:
    """All known GPUs by catalogue name."""
    text = resources.files("topologies").joinpath("data/gpus.yaml").read_text()
    return {
        name: GpuSpec(
            name=name,
            peak_flops=float(row["peak_tflops"]) * 1e12,
            hbm_Bps=float(row["hbm_GBps"]) * 1e9,
            memory_bytes=float(row["memory_GB"]) * 1e9,
            nvlink=row.get("nvlink"),
            pcie=row["pcie"],
            source=row["source"],
        )
        for name, row in yaml.safe_load(text).items()
    }


def gpu_spec(name: str, field: str = "device") -> GpuSpec:
    """Look a GPU up by name; an unknown name lists the known ones."""
    catalogue = gpu_catalogue()
    if name not in catalogue:
        known = ", ".join(sorted(catalogue))
        raise TopologyError(f"unknown GPU {name!r}; known: {known}", field)
    return catalogue[name]

"""moesim workloads: model catalogue, routing traces (synthetic, recorded, converted), training-load traces."""

from workloads.errors import WorkloadError
from workloads.load_shares import trace_from_load_shares
from workloads.models import ModelSpec, model_catalogue, model_spec
from workloads.stats import format_stats, trace_stats
from workloads.synthetic import generate_trace
from workloads.trace import RoutingTrace


def __getattr__(name: str):
    """`TrainingLoadTrace` and `train_load_trace` on first use: importing `workloads.moe_lm` here
    would make `python -m workloads.moe_lm` warn that runpy found it already imported."""
    if name in ("TrainingLoadTrace", "train_load_trace"):
        from workloads import moe_lm

        return getattr(moe_lm, name)
    raise AttributeError(f"module 'workloads' has no attribute {name!r}")


__all__ = [
    "ModelSpec",
    "RoutingTrace",
    "TrainingLoadTrace",
    "WorkloadError",
    "format_stats",
    "generate_trace",
    "model_catalogue",
    "model_spec",
    "trace_from_load_shares",
    "trace_stats",
    "train_load_trace",
]

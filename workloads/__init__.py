"""moesim workloads: model catalogue, routing traces (synthetic, recorded, converted), training-load traces."""

from workloads.errors import WorkloadError
from workloads.load_shares import trace_from_load_shares
from workloads.models import ModelSpec, model_catalogue, model_spec
from workloads.stats import format_stats, trace_stats
from workloads.synthetic import generate_trace
from workloads.trace import RoutingTrace
from workloads.moe_lm import TrainingLoadTrace, train_load_trace

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

"""moesim workloads: model catalogue, routing traces, synthetic generator, trace statistics."""

from workloads.errors import WorkloadError
from workloads.models import ModelSpec, model_catalogue, model_spec
from workloads.stats import format_stats, trace_stats
from workloads.synthetic import generate_trace
from workloads.trace import RoutingTrace

__all__ = [
    "ModelSpec",
    "RoutingTrace",
    "WorkloadError",
    "format_stats",
    "generate_trace",
    "model_catalogue",
    "model_spec",
    "trace_stats",
]

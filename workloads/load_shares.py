"""A routing trace drawn from per-iteration expert load shares (e.g. a recorded training run).

Training-load traces (`workloads.moe_lm.TrainingLoadTrace`) hold, per step and layer, the
fraction of token-expert assignments each expert received. To simulate those steps, each
simulated iteration draws its tokens' top-k experts so that expert e is chosen by a token with
probability top_k x share (water-filled at 1), distinct per token (systematic sampling).
"""

from __future__ import annotations

import numpy as np

from workloads.convert import systematic_choices
from workloads.errors import WorkloadError
from workloads.trace import RoutingTrace


def inclusion_from_shares(shares: np.ndarray, top_k: int) -> np.ndarray:
    """Per-token inclusion probabilities min(1, c * share), c chosen so each row sums to top_k."""
    shares = np.asarray(shares, dtype=float)
    inclusion = shares * top_k
    for _ in range(shares.shape[-1]):  # water-filling: cap at 1, hand the excess to the others
        capped = inclusion >= 1.0
        excess = top_k - np.where(capped, 1.0, 0.0).sum(axis=-1, keepdims=True)
        free = np.where(capped, 0.0, shares).sum(axis=-1, keepdims=True)
        scaled = np.where(capped, 1.0, shares * excess / np.maximum(free, 1e-300))
        if np.allclose(scaled, inclusion):
            break
        inclusion = np.minimum(scaled, 1.0)
    return inclusion


def trace_from_load_shares(shares: np.ndarray, model, tokens: int, seed: int,
                           meta: dict | None = None, field: str = "workload.trace") -> RoutingTrace:
    """shares: [iterations, trace_layers, experts]; the model's MoE layers take the trace's layers
    in proportion (MoE layer l uses trace layer l * trace_layers // moe_layers)."""
    shares = np.asarray(shares, dtype=float)
    iterations, trace_layers, experts = shares.shape
    if experts != model.experts:
        raise WorkloadError(f"the load trace has {experts} experts but the model {model.name} has "
                            f"{model.experts}", field)
    if np.any(shares < 0) or not np.all(shares.sum(axis=-1) > 0):
        raise WorkloadError("load shares must be >= 0 with a positive sum per layer and step", field)
    shares = shares / shares.sum(axis=-1, keepdims=True)
    layer_map = np.arange(model.moe_layers) * trace_layers // model.moe_layers
    rng = np.random.default_rng(seed)
    chosen = np.empty((iterations, model.moe_layers, tokens, model.top_k), dtype=np.int16)
    for it in range(iterations):
        for layer, source in enumerate(layer_map):
            inclusion = np.broadcast_to(inclusion_from_shares(shares[it, source], model.top_k),
                                        (tokens, experts))
            chosen[it, layer] = systematic_choices(rng, inclusion, model.top_k)
    info = {"model": model.name, "source": "drawn from expert load shares", "num_experts": experts,
            "layer_map": layer_map.tolist(), **(meta or {})}
    return RoutingTrace(chosen, meta=info)

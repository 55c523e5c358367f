"""`RoutingTrace`: which experts every token chose, per iteration and MoE layer, and its .npz form.

A trace is plain numpy so token-level work (load counts, replica splits, predictor fitting)
stays vectorised. On disk (DESIGN.md section 6) it is one ``.npz``:

- ``experts``   int16/int32 [iterations, layers, tokens, top_k], layers = MoE layers in order,
  each token's choices best first;
- ``token_ids`` int32 [iterations, tokens] (optional);
- ``features``  float32 [iterations, tokens, d] (optional, what a predictor may read);
- ``weights``   float32 like ``experts`` (optional, the gate probabilities of the choices);
- ``meta``      a one-element string array holding a JSON object (model, dataset, source,
  num_experts, generator parameters).

A run reads routing through `TraceSource`: one iteration at a time, one MoE layer after another
(`layer_choices`). A `RoutingTrace` is a source held in memory; `workloads.synthetic.SyntheticTrace`
generates its iterations on demand, so the simulator's memory does not grow with tokens.
"""

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from workloads.errors import WorkloadError
from workloads.npz import load_npz, save_npz_atomic
from workloads.models import ModelSpec

_OPTIONAL = ("token_ids", "features", "weights")


class TraceSource(Protocol):
    """Routing a run reads iteration by iteration (shapes as `RoutingTrace`'s)."""

    iterations: int
    layers: int
    tokens: int
    top_k: int
    num_experts: int
    meta: dict

    def layer_choices(self, iteration: int) -> Iterator[np.ndarray]:
        """[tokens, top_k] expert ids of each MoE layer of one iteration, in layer order."""

    def materialise(self) -> "RoutingTrace":
        """The whole trace in memory (token-level predictors read it)."""


@dataclass(eq=False)  # arrays: == would be elementwise, so compare fields explicitly
class RoutingTrace:
    """Routing decisions of a model on a token stream; see the module docstring for shapes."""

    experts: np.ndarray
    token_ids: np.ndarray | None = None
    features: np.ndarray | None = None
    weights: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.experts, self.token_ids, self.features, self.weights, self.meta = _checked(
            self.experts, self.token_ids, self.features, self.weights, self.meta, where="trace"
        )

    # --- shape -------------------------------------------------------------------------
    @property
    def iterations(self) -> int:
        return self.experts.shape[0]

    @property
    def layers(self) -> int:
        """MoE layers (not all transformer blocks)."""
        return self.experts.shape[1]

    @property
    def tokens(self) -> int:
        return self.experts.shape[2]

    @property
    def top_k(self) -> int:
        return self.experts.shape[3]

    @property
    def num_experts(self) -> int:
        return int(self.meta["num_experts"])

    # --- loads ---------------------------------------------------------------------------
    def counts(self, iteration: int, layer: int) -> np.ndarray:
        """Tokens routed to each expert (all top-k choices counted) at one iteration and layer."""
        return np.bincount(self.experts[iteration, layer].ravel(), minlength=self.num_experts)

    def load_counts(self) -> np.ndarray:
        """[iterations, layers, experts] token counts (all top-k choices), in one bincount."""
        return load_counts(self.experts, self.num_experts)

    # --- the TraceSource interface ----------------------------------------------------------
    def layer_choices(self, iteration: int) -> Iterator[np.ndarray]:
        """[tokens, top_k] choices of each MoE layer of one iteration (views, no copy)."""
        for layer in range(self.layers):
            yield self.experts[iteration, layer]

    def materialise(self) -> "RoutingTrace":
        return self

    # --- checks and views ----------------------------------------------------------------
    def check_against(self, model: ModelSpec, field: str = "workload.trace") -> None:
        """Raise if this trace cannot drive `model` (MoE layers, experts, top-k must agree)."""
        _check_against(self, model, field)

    def slice_tokens(self, tokens: int, field: str = "workload.trace") -> "RoutingTrace":
        """The first `tokens` tokens of every iteration (a batch of B*S tokens)."""
        if tokens < 1 or tokens > self.tokens:
            raise WorkloadError(
                f"needs {tokens} tokens per iteration but the trace has {self.tokens}", field
            )
        return RoutingTrace(
            experts=self.experts[:, :, :tokens],
            token_ids=None if self.token_ids is None else self.token_ids[:, :tokens],
            features=None if self.features is None else self.features[:, :tokens],
            weights=None if self.weights is None else self.weights[:, :, :tokens],
            meta=dict(self.meta),
        )

    def take(self, iterations: int, wrap: bool = False,
             field: str = "workload.trace") -> "RoutingTrace":
        """The first `iterations` iterations; with `wrap`, a short trace repeats from the start."""
        if iterations < 1 or (iterations > self.iterations and not wrap):
            raise WorkloadError(
                f"needs {iterations} iterations but the trace has {self.iterations}", field
            )
        index = np.arange(iterations) % self.iterations

        def pick(array):
            return None if array is None else array[index]

        return RoutingTrace(self.experts[index], pick(self.token_ids), pick(self.features),
                            pick(self.weights), dict(self.meta))

    # --- disk ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the .npz atomically (temp file in the same folder, then os.replace)."""
        arrays = {"experts": self.experts}
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                arrays[name] = value
        return save_npz_atomic(path, arrays, self.meta)

    @classmethod
    def load(cls, path: str | os.PathLike,
             field: str | None = "workload.trace.file") -> "RoutingTrace":
        """Read a trace; any defect is one WorkloadError naming the file and the array."""
        path = Path(path)
        arrays, meta = load_npz(path, ".npz trace", field)  # headers checked before allocation
        if "experts" not in arrays:
            found = ", ".join(sorted(arrays)) or "nothing"
            raise WorkloadError(f"{path}: missing array 'experts' (found: {found})", field)
        meta.setdefault("path", str(path))
        try:
            experts, token_ids, features, weights, meta = _checked(
                arrays["experts"], arrays.get("token_ids"), arrays.get("features"),
                arrays.get("weights"), meta, where=str(path),
            )
        except WorkloadError as error:
            raise WorkloadError(str(error), field) from None
        trace = cls.__new__(cls)  # already checked: skip __post_init__
        trace.experts, trace.token_ids, trace.features, trace.weights, trace.meta = (
            experts, token_ids, features, weights, meta)
        return trace


def _check_against(trace, model: ModelSpec, field: str) -> None:
    for what, mine, theirs in (
        ("MoE layers", trace.layers, model.moe_layers),
        ("experts", trace.num_experts, model.experts),
        ("top_k", trace.top_k, model.top_k),
    ):
        if mine != theirs:
            source = trace.meta.get("path") or trace.meta.get("model") or "trace"
            raise WorkloadError(f"trace ({source}) has {what} = {mine} but model "
                                f"{model.name} has {theirs}", field)


def _id_dtype(num_experts: int) -> type:
    return np.int16 if num_experts <= np.iinfo(np.int16).max else np.int32


def _checked(experts, token_ids, features, weights, meta, where: str):
    """Validate shapes, dtypes and id ranges; return normalised arrays and meta."""
    def fail(name: str, message: str):
        raise WorkloadError(f"{where}[{name}]: {message}")

    experts = np.asarray(experts)
    if experts.ndim != 4:
        fail("experts", "must be 4-D [iterations, layers, tokens, top_k], "
                        f"got shape {experts.shape}")
    if not np.issubdtype(experts.dtype, np.integer):
        fail("experts", f"must be integers, got {experts.dtype}")
    if min(experts.shape) == 0:
        fail("experts", f"must not be empty, got shape {experts.shape}")
    low, high = int(experts.min()), int(experts.max())
    if low < 0:
        fail("experts", f"expert ids must be >= 0, found {low}")
    if not isinstance(meta, dict):
        fail("meta", f"must be a mapping, got {type(meta).__name__}")
    meta = dict(meta)
    num_experts = meta.setdefault("num_experts", high + 1)
    if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
        fail("meta", f"num_experts must be an integer >= 1, got {num_experts!r}")
    if high >= num_experts:
        fail("experts", f"expert ids must be < num_experts ({num_experts}), found {high}")
    if _has_repeats(experts):
        fail("experts", "a token lists the same expert twice among its top-k choices")
    experts = experts.astype(_id_dtype(num_experts), copy=False)

    iterations, _, tokens, _ = experts.shape
    if token_ids is not None:
        token_ids = np.asarray(token_ids)
        if (token_ids.shape != (iterations, tokens)
                or not np.issubdtype(token_ids.dtype, np.integer)):
            fail("token_ids", f"must be integers of shape {(iterations, tokens)}, "
                              f"got {token_ids.dtype} {token_ids.shape}")
    if features is not None:
        features = np.asarray(features)
        if (features.ndim != 3 or features.shape[:2] != (iterations, tokens)
                or not np.issubdtype(features.dtype, np.floating)):
            fail("features", f"must be floats of shape ({iterations}, {tokens}, d), "
                             f"got {features.dtype} {features.shape}")
        if not np.all(np.isfinite(features)):
            fail("features", "must be finite (found NaN or inf)")
    if weights is not None:
        weights = np.asarray(weights)
        if weights.shape != experts.shape or not np.issubdtype(weights.dtype, np.floating):
            fail("weights", f"must be floats of shape {experts.shape}, "
                            f"got {weights.dtype} {weights.shape}")
        if not np.all(np.isfinite(weights)) or weights.min() < 0:
            fail("weights", "router weights must be finite and >= 0 (found NaN, inf or < 0)")
    return experts, token_ids, features, weights, meta


def _has_repeats(experts: np.ndarray) -> bool:
    """Whether any token repeats an expert among its top-k (pairwise for small k: no sort)."""
    top_k = experts.shape[-1]
    if top_k > 16:
        ordered = np.sort(experts, axis=-1)
        return bool(np.any(ordered[..., 1:] == ordered[..., :-1]))
    return any(
        np.any(experts[..., a] == experts[..., b])
        for a in range(top_k) for b in range(a + 1, top_k)
    )


def load_counts(experts: np.ndarray, num_experts: int) -> np.ndarray:
    """[iterations, layers, experts] counts of an [iterations, layers, tokens, k] expert-id array
    (a trace's, or a predictor's guesses), in one bincount."""
    iterations, layers = experts.shape[:2]
    offsets = (np.arange(iterations * layers, dtype=np.int64) * num_experts).reshape(
        iterations, layers, 1, 1)
    flat = (experts.reshape(iterations, layers, -1, 1) + offsets).ravel()
    return np.bincount(flat, minlength=iterations * layers * num_experts).reshape(
        iterations, layers, num_experts)

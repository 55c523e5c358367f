"""The two predictor interfaces, their cost record and their accuracy metrics.

Predictors speak scikit-learn (STYLE.md item 6): the constructor only stores
hyper-parameters, `fit` learns from history, fitted state ends in ``_``, `predict` and
`score` never change the fitted state. Two families, after MoE-GPS (arXiv 2506.07366):

- `DistributionPredictor` forecasts each MoE layer's share of token-expert pairs per expert
  for the next iteration(s) from past load counts; it runs once per window, so its cost
  does not grow with tokens.
- `TokenPredictor` forecasts each token's top-k experts per layer; it runs per token, so its
  cost does, and bigger predictors are more accurate and more expensive.

Both report the FLOPs and bytes of one inference (`PredictorCost`) so the simulator can
charge it as a compute event; neither simulates time itself.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from predictors.errors import PredictorError

# Bytes of one stored value (fp32 counts, shares, parameters of the small forecasters).
VALUE_BYTES = 4


@dataclass(frozen=True)
class PredictorCost:
    """Work of one predictor inference: floating-point operations and bytes moved (HBM)."""

    flops: float = 0.0
    bytes: float = 0.0

    def __add__(self, other: PredictorCost) -> PredictorCost:
        return PredictorCost(self.flops + other.flops, self.bytes + other.bytes)


# --- metrics -------------------------------------------------------------------------------

def normalise(counts: np.ndarray) -> np.ndarray:
    """Rows of `counts` (last axis) scaled to sum to 1; an all-zero row becomes uniform.

    A layer that saw no tokens has no distribution; uniform is the no-information answer
    and keeps every prediction a valid probability vector.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    uniform = np.full_like(counts, 1.0 / counts.shape[-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / total
    return np.where(total > 0, shares, uniform)


def distribution_error(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Normalised L1 (total variation) distance, 0.5 * sum|p - q|, averaged over rows.

    `predicted` and `actual` are [..., experts] counts or probabilities (each row is
    normalised first), so the error lies in [0, 1]: 0 = exact, 1 = disjoint supports.
    """
    p, q = normalise(predicted), normalise(actual)
    if p.shape[-1] != q.shape[-1]:
        raise PredictorError(f"predicted has {p.shape[-1]} experts but actual has {q.shape[-1]}")
    return float(np.mean(0.5 * np.abs(p - q).sum(axis=-1)))


def top_k_accuracy(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Fraction of the true (token, k) choices that appear in the predicted top-k set.

    Both are [..., tokens, top_k] expert ids; order within the k choices does not matter.
    """
    predicted, actual = np.asarray(predicted), np.asarray(actual)
    if predicted.shape != actual.shape:
        raise PredictorError(f"predicted shape {predicted.shape} != actual shape {actual.shape}")
    hits = (actual[..., :, None] == predicted[..., None, :]).any(axis=-1)
    return float(hits.mean())


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """The k highest-scoring experts along the last axis, best first; ties go to the lower id.

    Stable sorting makes predictions deterministic when scores tie (e.g. unseen tokens).
    """
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


# --- shared behaviour ------------------------------------------------------------------------

class _Predictor:
    """Hyper-parameter bookkeeping shared by both families (scikit-learn's `get_params`)."""

    kind: ClassVar[str] = ""
    family: ClassVar[str] = ""

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """The hyper-parameters a spec may set: the constructor's keyword arguments."""
        signature = inspect.signature(cls.__init__)
        return tuple(name for name in signature.parameters if name != "self")

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_names()}

    def check_params(self, field: str = "predictor") -> None:
        """Raise PredictorError naming ``field.<param>`` if a hyper-parameter is out of range."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def _require_fitted(self, attribute: str) -> None:
        if not hasattr(self, attribute):
            raise PredictorError(f"{self.kind} is not fitted: call fit(...) first",
                                 "predictor.kind")


class DistributionPredictor(_Predictor):
    """Forecasts per-expert shares of the next iteration(s) from load-count history.

    Use online inside a simulation: ``fit(history)``, then per window ``predict()``,
    observe the iteration, ``update(loads)``. Subclasses implement `_start`, `_append`
    and `_forecast`; the base validates shapes and keeps the bookkeeping.
    """

    family: ClassVar[str] = "distribution"

    def fit(self, loads: np.ndarray) -> DistributionPredictor:
        """Learn from `loads` [iterations, layers, experts] token-expert pair counts.

        Zero iterations are allowed (the start of a run): the forecast is then uniform.
        """
        self.check_params()
        loads = _check_loads(loads, "loads")
        self.layers_, self.experts_ = loads.shape[1], loads.shape[2]
        self.iterations_seen_ = loads.shape[0]
        self._start(loads)
        return self

    def update(self, loads: np.ndarray) -> DistributionPredictor:
        """Append one observed iteration [layers, experts] (or several [n, layers, experts])."""
        self._require_fitted("layers_")
        loads = np.asarray(loads)
        if loads.ndim == 2:
            loads = loads[None]
        loads = _check_loads(loads, "loads", (self.layers_, self.experts_))
        for row in loads:
            self._append(row)
            self.iterations_seen_ += 1
        return self

    def observe_truth(self, loads_next: np.ndarray) -> None:
        """Hear the true loads of the coming iteration(s); only oracles use this, others ignore it.

        The simulator may call it on every predictor before `predict`, so the oracle needs
        no special path; a real predictor must not (and does not) look at the future.
        """

    def predict(self, horizon: int = 1) -> np.ndarray:
        """[layers, experts] predicted distribution of the next `horizon` iterations' loads.

        Rows sum to 1. With `horizon` > 1 it is the share of all pairs of the window (the
        mean of the per-iteration forecasts), which is what a placement for the window needs.
        """
        self._require_fitted("layers_")
        horizon = _check_horizon(horizon)
        return normalise(np.clip(self._forecast(horizon), 0.0, None))

    def score(self, loads_future: np.ndarray, horizon: int = 1) -> float:
        """Mean error rate on iterations that follow the fitted history (rolling origin).

        Every `horizon` iterations one prediction is made and compared with each of those
        iterations' true distribution (normalised L1, averaged over layers and iterations);
        then the block is fed to `update`, as in a simulation. Works on a copy, so the fitted
        state is unchanged.
        """
        self._require_fitted("layers_")
        horizon = _check_horizon(horizon)
        loads = _check_loads(loads_future, "loads_future", (self.layers_, self.experts_))
        if loads.shape[0] == 0:
            raise PredictorError("loads_future has no iterations to score", "loads_future")
        model = copy.deepcopy(self)
        errors = []
        for start in range(0, loads.shape[0], horizon):
            block = loads[start:start + horizon]
            model.observe_truth(block)
            predicted = model.predict(horizon)
            errors.extend(distribution_error(predicted, row) for row in block)
            model.update(block)
        return float(np.mean(errors))

    def inference_cost(self, model: Any, tokens: int | None = None) -> PredictorCost:
        """FLOPs and bytes of ONE prediction (one window) for `model`'s MoE layers and experts.

        `tokens` is accepted so both families can be called alike; a window's forecast does
        not depend on how many tokens the iteration has.
        """
        raise NotImplementedError

    # subclass hooks ------------------------------------------------------------------------
    def _start(self, loads: np.ndarray) -> None:
        raise NotImplementedError

    def _append(self, loads: np.ndarray) -> None:
        raise NotImplementedError

    def _forecast(self, horizon: int) -> np.ndarray:
        raise NotImplementedError


class TokenPredictor(_Predictor):
    """Forecasts each token's top-k experts at every MoE layer of one iteration.

    `fit` and `score` take iteration indices into one `RoutingTrace` so the same trace can be
    split into fit and held-out iterations (`predictors.evaluate`). What each predictor may
    read at inference (token ids, features, the previous layer's true expert) is in its
    docstring; it never reads the experts of the layer it predicts.
    """

    family: ClassVar[str] = "token"

    def fit(self, trace: Any, iterations: Any = None) -> TokenPredictor:
        """Learn from `trace` at `iterations` (default: all of them)."""
        self.check_params()
        iterations = _check_iterations(trace, iterations)
        self.layers_, self.top_k_ = trace.layers, trace.top_k
        self.experts_ = trace.num_experts
        self._fit(trace, iterations)
        return self

    def predict(self, trace: Any, iteration: int) -> np.ndarray:
        """[layers, tokens, top_k] predicted experts of `iteration` (distinct per token)."""
        self._require_fitted("layers_")
        self._check_trace(trace)
        (iteration,) = _check_iterations(trace, [iteration])
        return self._predict(trace, int(iteration))

    def predict_loads(self, trace: Any, iteration: int) -> np.ndarray:
        """[layers, experts] counts of the predicted choices: the distribution they imply."""
        predicted = self.predict(trace, iteration)
        offsets = (np.arange(self.layers_, dtype=np.int64) * self.experts_)[:, None, None]
        flat = (predicted.astype(np.int64) + offsets).ravel()
        return np.bincount(flat, minlength=self.layers_ * self.experts_).reshape(
            self.layers_, self.experts_)

    def score(self, trace: Any, iterations: Any = None) -> float:
        """Top-k hit accuracy averaged over `iterations`, layers, tokens and the k choices."""
        self._require_fitted("layers_")
        self._check_trace(trace)
        iterations = _check_iterations(trace, iterations)
        hits = [top_k_accuracy(self._predict(trace, int(i)), trace.experts[i]) for i in iterations]
        return float(np.mean(hits))

    def inference_cost(self, model: Any, tokens: int) -> PredictorCost:
        """FLOPs and bytes to predict `tokens` tokens at all of `model`'s MoE layers."""
        raise NotImplementedError

    # helpers ----------------------------------------------------------------------------------
    def _check_trace(self, trace: Any) -> None:
        mine = (self.layers_, self.experts_, self.top_k_)
        theirs = (trace.layers, trace.num_experts, trace.top_k)
        if mine != theirs:
            raise PredictorError(
                f"{self.kind} was fitted on (layers, experts, top_k) = {mine} but the trace has "
                f"{theirs}", "workload.trace")

    def _fit(self, trace: Any, iterations: np.ndarray) -> None:
        raise NotImplementedError

    def _predict(self, trace: Any, iteration: int) -> np.ndarray:
        raise NotImplementedError


# --- validation helpers --------------------------------------------------------------------

def _check_loads(loads: Any, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    loads = np.asarray(loads)
    if loads.ndim != 3:
        raise PredictorError(
            f"{name} must be a 3-D array [iterations, layers, experts], got shape {loads.shape}",
            name)
    if not (np.issubdtype(loads.dtype, np.integer) or np.issubdtype(loads.dtype, np.floating)):
        raise PredictorError(f"{name} must hold numbers, got {loads.dtype}", name)
    if loads.shape[1] < 1 or loads.shape[2] < 1:
        raise PredictorError(
            f"{name} needs at least one layer and one expert, got {loads.shape}", name)
    if shape is not None and loads.shape[1:] != shape:
        raise PredictorError(
            f"{name} has (layers, experts) = {loads.shape[1:]} but the predictor was fitted on "
            f"{shape}", name)
    loads = loads.astype(np.float64, copy=False)
    if loads.size and (not np.all(np.isfinite(loads)) or loads.min() < 0):
        raise PredictorError(f"{name} must be finite counts >= 0", name)
    return loads


def _check_horizon(horizon: Any) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise PredictorError(f"must be an integer >= 1, got {horizon!r}", "horizon")
    return int(horizon)


def _check_iterations(trace: Any, iterations: Any) -> np.ndarray:
    """Iteration indices as an int array; all of them when None; each in range."""
    if iterations is None:
        return np.arange(trace.iterations)
    array = np.asarray(iterations).reshape(-1)
    if array.size == 0:
        raise PredictorError("needs at least one iteration", "iterations")
    if not np.issubdtype(array.dtype, np.integer):
        raise PredictorError(f"iteration indices must be integers, got {array.dtype}", "iterations")
    if array.min() < 0 or array.max() >= trace.iterations:
        raise PredictorError(
            f"iteration indices must lie in [0, {trace.iterations - 1}], got "
            f"{int(array.min())}..{int(array.max())}", "iterations")
    return array.astype(np.int64)

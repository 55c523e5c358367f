"""Token-to-Expert predictors built from counts: per-token-id frequency and its layer-conditional.

Tokens with the same id tend to go to the same experts, and consecutive layers' choices are
correlated through the residual stream (MoE-GPS, arXiv 2506.07366; ExFlow and MoETuner use
the same inter-layer affinity). These two count tables exploit exactly that, with no FLOPs:

- `FrequencyPredictor` sees the token id only, so it can run before the forward pass;
- `ConditionalPredictor` also sees the previous MoE layer's true top-1 expert of the token,
  which is known once layer l-1's gate ran, i.e. before layer l's attention starts.

Counts are smoothed towards the layer's global frequency (a Dirichlet prior of weight
`smoothing`), so an id never seen in fitting gets the layer's most frequent experts.
Without token ids in the trace every token shares one id: frequency becomes the layer's
global top-k and conditional the layer-to-layer transition table.
"""

from __future__ import annotations

import numpy as np

from predictors.base import PredictorCost, TokenPredictor, top_k_indices
from predictors.distribution import model_shape
from predictors.params import check_float

# A lookup reads an 8-byte key, the k expert ids (4 bytes each) and the token id.
_KEY_BYTES, _ID_BYTES = 8, 4


class _CountTable:
    """Sparse table of expert counts per integer key (sorted keys, dense [keys, experts] rows)."""

    def __init__(self, keys: np.ndarray, experts: np.ndarray, num_experts: int):
        """`keys` [n], `experts` [n, top_k]: every top-k choice of sample i counts for keys[i]."""
        self.keys, inverse = np.unique(keys, return_inverse=True)
        top_k = experts.shape[1]
        flat = np.repeat(inverse.astype(np.int64), top_k) * num_experts + experts.reshape(-1)
        self.counts = np.bincount(flat, minlength=len(self.keys) * num_experts).reshape(
            len(self.keys), num_experts).astype(np.float64)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """[n, experts] counts for `keys` (zeros for keys never seen)."""
        if len(self.keys) == 0:
            return np.zeros((len(keys), self.counts.shape[1]))
        index = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = self.keys[index] == keys
        return np.where(found[:, None], self.counts[index], 0.0)


def _token_ids(trace, iterations) -> np.ndarray:
    """[len(iterations), tokens] int64 ids; zeros when the trace records none."""
    if trace.token_ids is None:
        return np.zeros((len(iterations), trace.tokens), dtype=np.int64)
    return trace.token_ids[iterations].astype(np.int64)


class FrequencyPredictor(TokenPredictor):
    """``token.frequency``: each token id's most frequent experts per layer in the fit data.

    Sees: the token id (available before the forward pass). Knob: `smoothing` (weight of the
    layer's global frequency added to an id's counts; breaks ties, answers unseen ids).
    Cost: a table lookup per token and layer, no FLOPs; bytes = tokens·L·(8 + 4k) + 4·tokens.
    """

    kind = "token.frequency"

    def __init__(self, smoothing: float = 2.0):
        self.smoothing = smoothing

    def check_params(self, field="predictor"):
        check_float(self.smoothing, "smoothing", field, 0.0, open_low=True)

    def _fit(self, trace, iterations):
        ids = _token_ids(trace, iterations)                       # [n, T]
        experts = trace.experts[iterations]                        # [n, L, T, k]
        layers = self.layers_
        keys = ids[:, None, :] * layers + np.arange(layers)[None, :, None]  # [n, L, T]
        self.table_ = _CountTable(keys.reshape(-1), experts.reshape(-1, self.top_k_), self.experts_)
        global_counts = np.stack([
            np.bincount(experts[:, layer].reshape(-1), minlength=self.experts_)
            for layer in range(layers)])
        self.global_ = global_counts / np.maximum(global_counts.sum(axis=1, keepdims=True), 1)

    def _probabilities(self, trace, iteration) -> np.ndarray:
        """[L, T, E] smoothed P(expert | layer, token id)."""
        ids = _token_ids(trace, [iteration])[0]
        layers = self.layers_
        keys = ids[None, :] * layers + np.arange(layers)[:, None]           # [L, T]
        counts = self.table_.lookup(keys.reshape(-1)).reshape(layers, len(ids), self.experts_)
        prior = self.smoothing * self.global_[:, None, :]
        return (counts + prior) / (counts.sum(axis=-1, keepdims=True) + self.smoothing)

    def _predict(self, trace, iteration):
        return top_k_indices(self._probabilities(trace, iteration), self.top_k_)

    def inference_cost(self, model, tokens):
        layers, _ = model_shape(model)
        top_k = int(model.top_k)
        return PredictorCost(0.0, tokens * layers * (_KEY_BYTES + _ID_BYTES * top_k)
                             + tokens * _ID_BYTES)


class ConditionalPredictor(FrequencyPredictor):
    """``token.conditional``: P(expert at layer l | token id, true top-1 expert at layer l-1).

    Sees: the token id and the previous MoE layer's true top-1 expert (known once that
    layer's gate ran, before layer l starts); layer 0 has no previous layer and falls back to
    `token.frequency`. Counts of (id, layer, previous expert) are smoothed towards a
    naive-Bayes prior P(e | id) · P(e | previous) / P(e), built from the id's frequency and
    the layer-to-layer transition table, so sparse pairs still use both signals.
    Cost: three lookups per token and layer, no FLOPs; bytes = tokens·L·(24 + 4k + 4) + 4·tokens.
    """

    kind = "token.conditional"

    def _fit(self, trace, iterations):
        super()._fit(trace, iterations)
        ids = _token_ids(trace, iterations)
        experts = trace.experts[iterations]
        layers, num_experts = self.layers_, self.experts_
        keys = self._keys(ids, experts)                            # [n, L-1, T]
        self.conditional_ = _CountTable(
            keys.reshape(-1), experts[:, 1:].reshape(-1, self.top_k_), num_experts)
        # Transition counts [L, E_previous, E] (row 0 unused), smoothed towards the layer's prior.
        previous = experts[:, :-1, :, 0].astype(np.int64)
        cell = (np.arange(1, layers)[None, :, None, None] * num_experts
                + previous[..., None]) * num_experts + experts[:, 1:]
        counts = np.bincount(cell.reshape(-1), minlength=layers * num_experts * num_experts)
        counts = counts.reshape(layers, num_experts, num_experts).astype(np.float64)
        prior = self.smoothing * self.global_[:, None, :]
        self.transition_ = (counts + prior) / (counts.sum(axis=-1, keepdims=True) + self.smoothing)

    def _keys(self, ids: np.ndarray, experts: np.ndarray) -> np.ndarray:
        """Key of (token id, layer l >= 1, true top-1 expert at layer l-1): [n, L-1, T]."""
        layers, num_experts = self.layers_, self.experts_
        previous = experts[:, :-1, :, 0].astype(np.int64)          # [n, L-1, T]
        layer = np.arange(1, layers)[None, :, None]
        return (ids[:, None, :] * layers + layer) * num_experts + previous

    def _predict(self, trace, iteration):
        scores = self._probabilities(trace, iteration)             # [L, T, E] P(e | id)
        if self.layers_ > 1:
            experts = trace.experts[iteration]
            previous = experts[:-1, :, 0].astype(np.int64)          # [L-1, T]
            transition = self.transition_[np.arange(1, self.layers_)[:, None], previous]
            prior = scores[1:] * transition / np.maximum(self.global_[1:, None, :], 1e-12)
            prior /= np.maximum(prior.sum(axis=-1, keepdims=True), 1e-300)
            keys = self._keys(_token_ids(trace, [iteration]), experts[None])[0]
            counts = self.conditional_.lookup(keys.reshape(-1)).reshape(prior.shape)
            scores[1:] = (counts + self.smoothing * prior) / (
                counts.sum(axis=-1, keepdims=True) + self.smoothing)
        return top_k_indices(scores, self.top_k_)

    def inference_cost(self, model, tokens):
        layers, _ = model_shape(model)
        top_k = int(model.top_k)
        per_lookup = 3 * _KEY_BYTES + _ID_BYTES * top_k + _ID_BYTES  # + previous expert id
        return PredictorCost(0.0, tokens * layers * per_lookup + tokens * _ID_BYTES)

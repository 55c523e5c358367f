"""``token.ffn``: a small MLP per MoE layer that classifies each token's experts (numpy only).

This is the Token-to-Expert predictor whose size MoE-GPS (arXiv 2506.07366) sweeps: more
hidden units fit the router better and cost more FLOPs per token, so end-to-end latency
is U-shaped in its size. It is trained here, for real, on the trace (softmax cross-entropy
against the top-k set, minibatch Adam, seeded), so accuracy per size is measured, not
assumed; no torch is needed.

Per layer l: ``logits_l = W2_l · relu(W1_l · x + P_l[prev_l] + b1_l) + b2_l`` where

- ``x`` is the token's input: the trace's `features` (standardised; the synthetic generator
  stores the hidden state entering the first MoE layer) or, without features, a learned
  embedding of the token id hashed into `buckets` rows;
- ``P_l[prev_l]`` (when `previous_layer`) adds a learned row for the token's true top-1
  expert at layer l-1, known once that layer's gate ran (layer 0 uses a "none" row).

Cost model (`inference_cost`): the deployed predictor reads the token's hidden state, of
width ``model.hidden``, at each MoE layer (the trace's features are a low-dimensional stand-in
for it), so FLOPs = 2·tokens·L·(hidden·h + h·E) and bytes = its weights once plus the
activations, in the model's dtype.
"""

from __future__ import annotations

import numpy as np

from predictors.base import PredictorCost, PredictorError, TokenPredictor, top_k_indices
from predictors.distribution import model_shape
from predictors.params import check_bool, check_choice, check_float, check_int, resolve_size

_DEFAULT_HIDDEN = 64
# Largest [layers, tokens, hidden] activation block held at once when predicting (floats).
_PREDICT_BLOCK = 1 << 23
_HASH = 2654435761  # Knuth's multiplicative hash spreads nearby ids over the buckets


def hashed_bucket(token_ids: np.ndarray, buckets: int) -> np.ndarray:
    """Embedding row of each token id: a multiplicative hash modulo `buckets`."""
    return ((token_ids.astype(np.int64) * _HASH) % (1 << 32)) % buckets


class TokenInputs:
    """What a learned token predictor reads: standardised features or hashed id buckets.

    Shared by `token.ffn` and `token.lstm`; `mode` is resolved at fit time from the trace.
    """

    def __init__(self, mode: str, trace, iterations, buckets: int, kind: str):
        if mode == "auto":
            mode = "features" if trace.features is not None else "token_ids"
        if mode == "features" and trace.features is None:
            raise PredictorError(f"{kind} with inputs=features needs a trace with features",
                                 "predictor.inputs")
        if mode == "token_ids" and trace.token_ids is None:
            raise PredictorError(f"{kind} needs token ids or features in the trace; it has neither",
                                 "predictor.inputs")
        self.mode, self.buckets = mode, buckets
        if mode == "features":
            sample = trace.features[iterations].reshape(-1, trace.features.shape[-1])
            self.mean = sample.mean(axis=0).astype(np.float32)
            self.std = np.maximum(sample.std(axis=0), 1e-6).astype(np.float32)
            self.width = sample.shape[1]

    def raw(self, trace, iteration: int) -> np.ndarray:
        """[tokens, d] standardised features, or [tokens] bucket indices, of one iteration."""
        if self.mode == "features":
            if trace.features is None:
                raise PredictorError("the predictor was fitted on features; this trace has none",
                                     "workload.trace")
            return (trace.features[iteration] - self.mean) / self.std
        if trace.token_ids is None:
            raise PredictorError("the predictor was fitted on token ids; this trace has none",
                                 "workload.trace")
        return hashed_bucket(trace.token_ids[iteration], self.buckets)


class _Adam:
    """Adam over a dict of float32 arrays (Kingma & Ba; default betas)."""

    def __init__(self, params: dict, lr: float):
        self.lr, self.step_count = lr, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: dict, grads: dict) -> None:
        self.step_count += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        scale = self.lr * np.sqrt(1 - b2**self.step_count) / (1 - b1**self.step_count)
        for key, grad in grads.items():
            m, v = self.m[key], self.v[key]
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * grad * grad
            params[key] -= (scale * m / (np.sqrt(v) + eps)).astype(np.float32)


class FFNPredictor(TokenPredictor):
    """``token.ffn``: one-hidden-layer ReLU MLP per MoE layer; see the module docstring.

    Knobs: `hidden` (alias `size`, units per layer's network), `epochs`, `batch`, `lr`,
    `embed` and `buckets` (id embedding when the trace has no features), `inputs`
    (auto | features | token_ids), `previous_layer` (read layer l-1's true expert),
    `max_samples` (tokens drawn for training), `seed`.
    """

    kind = "token.ffn"

    def __init__(self, hidden: int | None = None, size: int | None = None, epochs: int = 4,
                 batch: int = 256, lr: float = 1e-2, embed: int = 32, buckets: int = 8192,
                 inputs: str = "auto", previous_layer: bool = True, max_samples: int = 16384,
                 seed: int = 0):
        self.hidden = hidden
        self.size = size
        self.epochs = epochs
        self.batch = batch
        self.lr = lr
        self.embed = embed
        self.buckets = buckets
        self.inputs = inputs
        self.previous_layer = previous_layer
        self.max_samples = max_samples
        self.seed = seed

    @property
    def width(self) -> int:
        """Hidden units per layer's network (`size` if set, else `hidden`, else 64)."""
        return resolve_size(self.hidden, self.size, "predictor", _DEFAULT_HIDDEN)

    def check_params(self, field="predictor"):
        resolve_size(self.hidden, self.size, field, _DEFAULT_HIDDEN)
        check_int(self.epochs, "epochs", field, 1, 1000)
        check_int(self.batch, "batch", field, 1)
        check_float(self.lr, "lr", field, 0.0, 1.0, open_low=True)
        check_int(self.embed, "embed", field, 1, 4096)
        check_int(self.buckets, "buckets", field, 1, 1 << 24)
        check_choice(self.inputs, "inputs", field, ("auto", "features", "token_ids"))
        check_bool(self.previous_layer, "previous_layer", field)
        check_int(self.max_samples, "max_samples", field, 1)
        check_int(self.seed, "seed", field, 0)

    # --- fitting -------------------------------------------------------------------------
    def _fit(self, trace, iterations):
        rng = np.random.default_rng(self.seed)
        self.inputs_ = TokenInputs(self.inputs, trace, iterations, self.buckets, self.kind)
        self.width_ = self.width
        layers, experts, hidden = self.layers_, self.experts_, self.width_
        width = self.inputs_.width if self.inputs_.mode == "features" else self.embed
        params = {
            # Layer l's first matrix is w1[:, l*h:(l+1)*h]: one GEMM serves all layers.
            "w1": rng.normal(0, np.sqrt(2.0 / width), (width, layers * hidden)),
            "b1": np.zeros((layers, hidden)),
            "w2": rng.normal(0, np.sqrt(1.0 / hidden), (layers, hidden, experts)),
            "b2": np.zeros((layers, experts)),
        }
        if self.previous_layer:
            params["prev"] = np.zeros((layers, experts + 1, hidden))
        if self.inputs_.mode == "token_ids":
            params["embedding"] = rng.normal(0, 1.0, (self.buckets, self.embed))
        self.params_ = {k: v.astype(np.float32) for k, v in params.items()}

        # Training samples are tokens: (iteration, token) pairs, each with all layers' targets.
        pairs = np.stack(np.meshgrid(iterations, np.arange(trace.tokens), indexing="ij"), -1)
        pairs = pairs.reshape(-1, 2)
        if len(pairs) > self.max_samples:
            pairs = pairs[np.sort(rng.choice(len(pairs), self.max_samples, replace=False))]
        inputs = self._gather_inputs(trace, pairs)
        chosen = np.transpose(trace.experts[pairs[:, 0], :, pairs[:, 1]], (1, 0, 2))  # [L, n, k]
        previous = self._previous(chosen)                                             # [L, n]

        adam = _Adam(self.params_, self.lr)
        losses = []
        for _ in range(self.epochs):
            order = rng.permutation(len(pairs))
            total = 0.0
            for start in range(0, len(order), self.batch):
                rows = order[start:start + self.batch]
                loss, grads = self._loss_and_grads(inputs[rows], previous[:, rows],
                                                   chosen[:, rows])
                adam.step(self.params_, grads)
                total += loss * len(rows)
            losses.append(total / len(order))
        self.train_loss_ = np.array(losses)

    def _gather_inputs(self, trace, pairs: np.ndarray) -> np.ndarray:
        """[n, d] features or [n] buckets of (iteration, token) pairs."""
        if self.inputs_.mode == "features":
            return (trace.features[pairs[:, 0], pairs[:, 1]] - self.inputs_.mean) / self.inputs_.std
        return hashed_bucket(trace.token_ids[pairs[:, 0], pairs[:, 1]], self.buckets)

    def _previous(self, chosen: np.ndarray) -> np.ndarray:
        """[L, n] row of `prev` per layer: layer l-1's true top-1 expert; E ("none") at layer 0."""
        previous = np.full(chosen.shape[:2], self.experts_, dtype=np.int64)
        previous[1:] = chosen[:-1, :, 0]
        return previous

    def _forward(self, inputs: np.ndarray, previous: np.ndarray):
        p = self.params_
        x = p["embedding"][inputs] if self.inputs_.mode == "token_ids" else inputs
        n, layers, hidden = len(x), self.layers_, self.width_
        pre = (x @ p["w1"]).reshape(n, layers, hidden).transpose(1, 0, 2)
        pre = np.ascontiguousarray(pre) + p["b1"][:, None, :]               # [L, n, h]
        if self.previous_layer:
            pre += p["prev"][np.arange(self.layers_)[:, None], previous]
        act = np.maximum(pre, 0)
        logits = np.matmul(act, p["w2"]) + p["b2"][:, None, :]           # [L, n, E]
        return x, pre, act, logits

    def _loss_and_grads(self, inputs, previous, chosen):
        p = self.params_
        layers, n = previous.shape
        x, pre, act, logits = self._forward(inputs, previous)
        logits -= logits.max(axis=-1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=-1, keepdims=True)
        target = np.zeros_like(probs)
        np.put_along_axis(target, chosen.astype(np.int64), 1.0 / self.top_k_, axis=-1)
        loss = -float((target * np.log(np.maximum(probs, 1e-12))).sum()) / (layers * n)

        d_logits = (probs - target) / np.float32(layers * n)
        grads = {"w2": np.matmul(act.transpose(0, 2, 1), d_logits), "b2": d_logits.sum(axis=1)}
        d_pre = np.matmul(d_logits, p["w2"].transpose(0, 2, 1)) * (pre > 0)
        grads["b1"] = d_pre.sum(axis=1)
        d_pre_flat = d_pre.transpose(1, 0, 2).reshape(n, -1)                 # [n, L*h]
        grads["w1"] = x.T @ d_pre_flat
        if self.previous_layer:
            one_hot = (previous[:, :, None] == np.arange(self.experts_ + 1)).astype(np.float32)
            grads["prev"] = np.matmul(one_hot.transpose(0, 2, 1), d_pre)
        if self.inputs_.mode == "token_ids":
            d_x = d_pre_flat @ p["w1"].T
            grads["embedding"] = np.zeros_like(p["embedding"])
            np.add.at(grads["embedding"], inputs, d_x)
        return loss, grads

    # --- inference -----------------------------------------------------------------------
    def _predict(self, trace, iteration):
        inputs = self.inputs_.raw(trace, iteration)
        previous = self._previous(trace.experts[iteration])                     # [L, T]
        tokens = len(inputs)
        block = max(1, _PREDICT_BLOCK // (self.layers_ * self.width_))
        out = np.empty((self.layers_, tokens, self.top_k_), dtype=np.int64)
        for start in range(0, tokens, block):
            stop = min(tokens, start + block)
            logits = self._forward(inputs[start:stop], previous[:, start:stop])[3]
            out[:, start:stop] = top_k_indices(logits, self.top_k_)
        return out

    def inference_cost(self, model, tokens):
        layers, experts = model_shape(model)
        width, hidden, dtype = int(model.hidden), self.width, int(model.dtype_bytes)
        weights = layers * (width * hidden + hidden + hidden * experts + experts
                            + (experts + 1) * hidden * bool(self.previous_layer))
        activations = tokens * layers * (width + hidden + experts)
        flops = 2.0 * tokens * layers * (width * hidden + hidden * experts)
        return PredictorCost(flops, float((weights + activations) * dtype))

"""``token.lstm``: an LSTM over the token stream that predicts every token's experts (torch).

A sequence model sees the tokens before each one in the batch, which a per-token MLP does
not (Pre-gated MoE and ProMoE-style predictors use such context). Each iteration's tokens are
cut into chunks of `context` tokens (state reset per chunk, the same in fitting and
prediction); per position the LSTM state feeds one linear head per MoE layer, plus (when
`previous_layer`) a learned bias row for the token's true top-1 expert at layer l-1, known
once that layer's gate ran. Inputs are the trace's features or an embedding of the hashed
token id, as for `token.ffn`.

torch is optional and imported lazily (``pip install moesim[lstm]``); without it this predictor
raises PredictorError and everything else works. Cost model: the deployed LSTM reads the
token's hidden state (width ``model.hidden``): per token 8·(hidden·h + h²) FLOPs for the
gates plus 2·h·L·E for the heads; bytes = weights once + activations, in the model's dtype.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from predictors.base import PredictorCost, PredictorError, TokenPredictor
from predictors.distribution import model_shape
from predictors.ffn import TokenInputs
from predictors.params import check_bool, check_choice, check_float, check_int, resolve_size

_DEFAULT_HIDDEN = 64


def _torch(field: str = "predictor.kind", kind: str = "token.lstm"):
    """torch, imported on use (it is optional); a clear install hint naming `kind` if missing."""
    try:
        import torch
    except ImportError:
        raise PredictorError(f"{kind} needs torch, which is not installed: "
                             "pip install moesim[lstm] (or pip install torch)", field) from None
    return torch


def minibatch_adam(torch, net, samples: int, loss_of, epochs: int, batch: int, lr: float,
                   generator) -> np.ndarray:
    """Train `net` with Adam on shuffled minibatches of sample indices; `loss_of(rows)` gives the
    batch loss. Returns the mean loss of each epoch (seeded through `generator`)."""
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(samples, generator=generator)
        total = 0.0
        for start in range(0, samples, batch):
            rows = order[start:start + batch]
            loss = loss_of(rows)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(rows)
        losses.append(total / samples)
    return np.array(losses)


@contextmanager
def _threads(torch, count: int):
    """Use `count` intra-op threads inside the block, then restore the caller's setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class LSTMPredictor(TokenPredictor):
    """``token.lstm``: one-layer LSTM over chunks of the token stream; see module docstring.

    Knobs: `hidden` (alias `size`), `context` (tokens per chunk), `epochs`, `batch` (chunks
    per step), `lr`, `embed`, `buckets`, `inputs`, `previous_layer`, `seed`, `threads` (torch
    threads while fitting and predicting: 1 is fastest here, a step-by-step recurrence of small
    matrices is dominated by per-operation overhead, which more threads only add to).
    """

    kind = "token.lstm"

    def __init__(self, hidden: int | None = None, size: int | None = None, context: int = 32,
                 epochs: int = 4, batch: int = 8, lr: float = 1e-2, embed: int = 32,
                 buckets: int = 8192, inputs: str = "auto", previous_layer: bool = True,
                 seed: int = 0, threads: int = 1):
        self.hidden = hidden
        self.size = size
        self.context = context
        self.epochs = epochs
        self.batch = batch
        self.lr = lr
        self.embed = embed
        self.buckets = buckets
        self.inputs = inputs
        self.previous_layer = previous_layer
        self.seed = seed
        self.threads = threads

    @property
    def width(self) -> int:
        return resolve_size(self.hidden, self.size, "predictor", _DEFAULT_HIDDEN)

    def check_params(self, field="predictor"):
        resolve_size(self.hidden, self.size, field, _DEFAULT_HIDDEN)
        check_int(self.context, "context", field, 1)
        check_int(self.epochs, "epochs", field, 1, 1000)
        check_int(self.batch, "batch", field, 1)
        check_float(self.lr, "lr", field, 0.0, 1.0, open_low=True)
        check_int(self.embed, "embed", field, 1, 4096)
        check_int(self.buckets, "buckets", field, 1, 1 << 24)
        check_choice(self.inputs, "inputs", field, ("auto", "features", "token_ids"))
        check_bool(self.previous_layer, "previous_layer", field)
        check_int(self.seed, "seed", field, 0)
        check_int(self.threads, "threads", field, 1, 1024)
        _torch()

    # --- network -------------------------------------------------------------------------
    def _build(self, torch, input_width: int):
        nn = torch.nn
        layers, experts, hidden = self.layers_, self.experts_, self.width

        class Net(nn.Module):
            def __init__(net):
                super().__init__()
                net.embedding = (nn.Embedding(self.buckets, self.embed)
                                 if input_width is None else None)
                net.lstm = nn.LSTM(self.embed if input_width is None else input_width, hidden,
                                   batch_first=True)
                net.heads = nn.Linear(hidden, layers * experts)
                net.previous = nn.Parameter(torch.zeros(layers, experts + 1, experts))

            def forward(net, x, previous):
                """x [b, c, d] or [b, c] buckets; previous [b, c, L] -> logits [b, c, L, E]."""
                if net.embedding is not None:
                    x = net.embedding(x)
                state, _ = net.lstm(x)
                logits = net.heads(state).reshape(*state.shape[:2], layers, experts)
                if self.previous_layer:
                    logits = logits + net.previous[torch.arange(layers), previous]
                return logits

        return Net()

    def _chunks(self, trace, iteration: int):
        """Inputs, previous-layer rows and targets of one iteration, cut into chunks."""
        raw = self.inputs_.raw(trace, iteration)                              # [T, d] or [T]
        experts = trace.experts[iteration]                                    # [L, T, k]
        previous = np.full(experts.shape[:2], self.experts_, dtype=np.int64)
        previous[1:] = experts[:-1, :, 0]
        tokens, context = len(raw), self.context
        pad = (-tokens) % context
        if pad:  # repeat the last token; padded positions are dropped after prediction
            raw = np.concatenate([raw, np.repeat(raw[-1:], pad, axis=0)])
            previous = np.concatenate([previous, np.repeat(previous[:, -1:], pad, axis=1)], axis=1)
            experts = np.concatenate([experts, np.repeat(experts[:, -1:], pad, axis=1)], axis=1)
        chunks = len(raw) // context
        x = raw.reshape(chunks, context, *raw.shape[1:])
        prev = previous.T.reshape(chunks, context, self.layers_)
        target = np.transpose(experts, (1, 0, 2)).reshape(chunks, context, self.layers_, -1)
        return x, prev, target, tokens

    def _fit(self, trace, iterations):
        torch = _torch()
        with _threads(torch, self.threads):
            self._train(torch, trace, iterations)

    def _train(self, torch, trace, iterations):
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        self.inputs_ = TokenInputs(self.inputs, trace, iterations, self.buckets, self.kind)
        width = self.inputs_.width if self.inputs_.mode == "features" else None
        self.net_ = self._build(torch, width)
        parts = [self._chunks(trace, int(i)) for i in iterations]
        x = torch.as_tensor(np.concatenate([p[0] for p in parts]))
        prev = torch.as_tensor(np.concatenate([p[1] for p in parts]))
        target = torch.as_tensor(np.concatenate([p[2] for p in parts]).astype(np.int64))
        dense = torch.zeros(*target.shape[:3], self.experts_)
        dense.scatter_(-1, target, 1.0 / self.top_k_)

        def loss_of(rows):  # cross-entropy against the (uniform) top-k target set
            logits = self.net_(x[rows], prev[rows])
            return -(dense[rows] * torch.log_softmax(logits, dim=-1)).sum(-1).mean()

        self.train_loss_ = minibatch_adam(torch, self.net_, len(x), loss_of, self.epochs, self.batch,
                                          self.lr, generator)

    def _predict(self, trace, iteration):
        torch = _torch()
        x, prev, _, tokens = self._chunks(trace, iteration)
        with torch.no_grad(), _threads(torch, self.threads):
            logits = self.net_(torch.as_tensor(x), torch.as_tensor(prev))    # [c, n, L, E]
        scores = logits.reshape(-1, self.layers_, self.experts_)[:tokens].numpy()
        order = np.argsort(-scores, axis=-1, kind="stable")[..., :self.top_k_]
        return np.transpose(order, (1, 0, 2))                                # [L, T, k]

    def inference_cost(self, model, tokens):
        layers, experts = model_shape(model)
        width, hidden, dtype = int(model.hidden), self.width, int(model.dtype_bytes)
        gates = 4 * (width * hidden + hidden * hidden + hidden)
        heads = hidden * layers * experts + layers * experts
        weights = gates + heads + layers * (experts + 1) * experts * bool(self.previous_layer)
        activations = tokens * (width + 6 * hidden + layers * experts)
        flops = tokens * (2.0 * (gates - 4 * hidden) + 2.0 * hidden * layers * experts)
        return PredictorCost(flops, float((weights + activations) * dtype))

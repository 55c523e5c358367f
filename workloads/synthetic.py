"""Synthetic routing traces from a small random "router model", not independent dice.

Real routers are functions of the hidden state, so their choices are token-dependent,
correlated from layer to layer, skewed towards content-popular experts and slowly drifting.
The generator reproduces those mechanisms (numpy only, vectorised over tokens):

- token ids are drawn from a vocabulary with Zipf frequencies (exponent `zipf_a`); each id
  has an embedding ``e`` and each token a context vector ``c`` (both N(0, I), d <= 64);
- the hidden state entering the first MoE layer is ``h = sqrt(a) e + sqrt(1 - a) c``
  (``a`` = `token_affinity`), so a token id tends to the same experts;
- the residual stream changes a little from layer to layer, so seen from ``h`` each layer's
  gate directions are a random walk: expert ``pi(e)`` of layer l+1 has a direction with
  correlation ~`layer_correlation` to expert ``e`` of layer l (``pi`` a random permutation);
- logits are ``W_l h / temperature + b_l + s * g_{i,l}``: ``b_l`` balances the expected load
  over the token distribution (as an auxiliary loss or DeepSeek-V3's bias does),
  ``g_{i,l}`` is a popularity profile (normal quantiles given to experts by the ranks of an
  AR(1) latent that moves by `drift` per iteration, so hot experts change slowly) and ``s``
  sets the skewness;
- each token takes its top-k of ``logits + Gumbel noise``, i.e. samples k experts without
  replacement from the router's softmax: the context variation that ``h`` does not carry.

``s`` is calibrated so the mean over iterations and layers of max/mean expert load (all
top-k choices counted, MoE-GPS's skewness) hits the target: a root search (doubling, then
regula falsi) on a fixed sample of (iteration, layer) pairs with all tokens, reusing the same
random numbers at every step, so it is deterministic for a seed.

`synthetic_trace` returns the generator itself (`SyntheticTrace`): calibrated once, it produces
one iteration's choices layer by layer on demand, so a run never holds [iterations, layers,
tokens, top_k] (2.4 billion entries for DeepSeek-V3 prefill of 524,288 tokens). An (iteration,
layer) whose scores exceed `_STREAM_ELEMENTS` is scored in row chunks: the noise stream is drawn
in even-sized pieces (numpy's 16-bit draws use whole 32-bit words, so the stream is the same)
and each chunk's GEMM rows are the full GEMM's rows. `generate_trace` materialises the stream
into a `RoutingTrace`, bit-identical to the generator that held everything.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field as dataclass_field, replace
from functools import cache

import numpy as np

from simulator.safeio import check_bytes
from workloads.errors import WorkloadError
from workloads.models import ModelSpec
from workloads.trace import RoutingTrace

# Scores kept for calibration (pairs x tokens x experts; 64 MB of float32), re-used per step.
_CALIBRATION_BUDGET = 16_000_000
_BALANCE_TOKENS = 4096
_BALANCE_STEPS = 6
_RELATIVE_TOLERANCE = 0.002
_GUMBEL_LEVELS = 2**16
_GEMM_ELEMENTS = 4_000_000  # logits per GEMM call (16 MB of float32)
# Scores of one (iteration, layer) above this many elements are made in chunks of
# _GEMM_ELEMENTS (memory stays O(chunk), not O(tokens x experts)).
_STREAM_ELEMENTS = 16_000_000
# Stream ids (first element of a SeedSequence spawn key) so each use of randomness is separate.
_STRUCTURE, _ITERATION, _NOISE, _BALANCE = 0, 1, 2, 3


@dataclass(frozen=True)
class _Router:
    """The random router model: fixed per seed, shared by calibration and generation."""

    cdf: np.ndarray           # [vocab] Zipf cumulative frequencies by rank
    id_of_rank: np.ndarray    # [vocab] token id of each frequency rank
    embedding: np.ndarray     # [vocab, d] float32, indexed by rank
    projection: np.ndarray    # [d, layers, experts] float32: gate directions / temperature
    balance: np.ndarray       # [layers, experts] b_l
    profile: np.ndarray       # [iterations, layers, experts] g_{i,l}
    token_affinity: float
    seed: int

    def hidden(self, iteration: int, tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and the hidden state entering the first MoE layer, for one iteration."""
        rng = _rng(self.seed, _ITERATION, iteration)
        return self._hidden(rng, tokens)

    def _hidden(self, rng: np.random.Generator, tokens: int) -> tuple[np.ndarray, np.ndarray]:
        ranks = np.searchsorted(self.cdf, rng.random(tokens), side="right")
        ranks = np.minimum(ranks, len(self.cdf) - 1)
        d = self.embedding.shape[1]
        context = rng.standard_normal((tokens, d), dtype=np.float32)
        a = self.token_affinity
        hidden = np.sqrt(a) * self.embedding[ranks] + np.sqrt(1 - a) * context
        return self.id_of_rank[ranks], hidden.astype(np.float32, copy=False)

    def logits(self, hidden: np.ndarray, first: int, last: int) -> np.ndarray:
        """[tokens, last - first, experts] router logits of MoE layers first..last-1 without the
        skew term (W_l h / temperature + b_l), in one GEMM: few, wide BLAS calls are fast."""
        d, _, experts = self.projection.shape
        weights = self.projection[:, first:last].reshape(d, -1)
        out = (hidden @ weights).reshape(len(hidden), last - first, experts)
        out += self.balance[first:last]
        return out

    def gumbel(self, iteration: int, layer: int, tokens: int) -> np.ndarray:
        """[tokens, experts] Gumbel noise of one (iteration, layer), from its own stream so any
        subset of pairs can be recomputed identically (calibration sample, full trace).

        Drawn as 16-bit uniforms mapped through a table of Gumbel quantiles: 4x faster than
        exponential draws and a log; only the far tail (above ~11.8, p = 1/65536) is clipped.
        """
        rng = _rng(self.seed, _NOISE, iteration, layer)
        levels = rng.integers(0, _GUMBEL_LEVELS, (tokens, self.balance.shape[1]), dtype=np.uint16)
        return np.take(_gumbel_table(), levels)


@cache
def _gumbel_table() -> np.ndarray:
    """Gumbel quantiles at the midpoints of 2^16 equal-probability bins (read-only)."""
    p = (np.arange(_GUMBEL_LEVELS) + 0.5) / _GUMBEL_LEVELS
    table = (-np.log(-np.log(p))).astype(np.float32)
    table.flags.writeable = False
    return table


def synthetic_trace(
    model: ModelSpec,
    iterations: int,
    tokens: int,
    skewness: float = 1.4,
    seed: int = 0,
    *,
    vocab_size: int | None = None,
    zipf_a: float = 1.1,
    token_affinity: float = 0.6,
    layer_correlation: float = 0.9,
    temperature: float | None = None,
    drift: float = 0.05,
    feature_dim: int = 16,
    features: bool = True,
    weights: bool = False,
    dataset: str = "synthetic",
    field: str | None = "workload.trace.synthetic",
) -> "SyntheticTrace":
    """The calibrated generator of `generate_trace`'s trace, producing iterations on demand.

    Building it costs the router and the calibration (a fixed sample of scores), not the trace;
    `layer_choices(i)` then yields iteration i's [tokens, top_k] choices one MoE layer at a time.
    """
    knobs = check_synthetic(model, iterations, tokens, skewness, seed, vocab_size=vocab_size,
                            zipf_a=zipf_a, token_affinity=token_affinity,
                            layer_correlation=layer_correlation, temperature=temperature,
                            drift=drift, feature_dim=feature_dim, field=field)
    vocab_size, temperature = knobs["vocab_size"], knobs["temperature"]
    experts, top_k, layers = model.experts, model.top_k, model.moe_layers
    router = _build_router(model, iterations, seed, vocab_size, zipf_a, token_affinity,
                           layer_correlation, temperature, drift, feature_dim)
    sample = _calibration_sample(router, iterations, tokens, layers)
    floor = _sample_skewness(sample, 0.0, top_k)
    scale = _calibrate(sample, float(skewness), floor, top_k, experts, field)
    meta = {
        "model": model.name,
        "dataset": dataset,
        "source": "synthetic router model (workloads.synthetic.generate_trace)",
        "num_experts": experts,
        "moe_layer_indices": list(model.moe_layer_indices),
        "generator": {
            "skewness": float(skewness), "seed": seed, "vocab_size": vocab_size,
            "zipf_a": zipf_a, "token_affinity": token_affinity,
            "layer_correlation": layer_correlation, "temperature": temperature,
            "drift": drift, "feature_dim": feature_dim,
        },
        "skewness_target": float(skewness),
        "skewness_floor": floor,
        "bias_scale": scale,
        "features": "hidden state entering the first MoE layer" if features else None,
    }
    return SyntheticTrace(router, scale, sample, iterations, tokens, top_k, features, weights, meta,
                          field)


def generate_trace(model: ModelSpec, iterations: int, tokens: int, skewness: float = 1.4,
                   seed: int = 0, **knobs) -> RoutingTrace:
    """A trace for `model`'s MoE layers: `iterations` x `tokens` tokens, skewness ~ `skewness`.

    `skewness` must lie in [1, experts/top_k] (the maximum: every token picks the hottest
    expert). A target below what sampling noise alone gives (the floor, e.g. ~1.05 for 8
    experts and 4096 tokens) yields the floor; meta records target, achieved and floor.
    `features` stores the hidden state entering the first MoE layer (float32, `feature_dim`).
    Keywords as `synthetic_trace`; this is its stream held in memory.
    """
    return synthetic_trace(model, iterations, tokens, skewness, seed, **knobs).materialise()


def check_synthetic(model: ModelSpec, iterations: int, tokens: int, skewness: float = 1.4,
                    seed: int = 0, *, vocab_size: int | None = None, zipf_a: float = 1.1,
                    token_affinity: float = 0.6, layer_correlation: float = 0.9,
                    temperature: float | None = None, drift: float = 0.05,
                    feature_dim: int = 16, features: bool = True, weights: bool = False,
                    dataset: str = "synthetic",
                    field: str | None = "workload.trace.synthetic") -> dict:
    """Check the generator's arguments (what `moesim validate` needs) without building anything;
    returns the resolved defaults (vocab_size, temperature). Unknown keywords are a TypeError."""
    experts, top_k = model.experts, model.top_k
    vocab_size = model.vocab if vocab_size is None else vocab_size
    temperature = default_temperature(experts) if temperature is None else temperature
    _check(field, "iterations", iterations, integer=True, low=1)
    _check(field, "tokens", tokens, integer=True, low=1)
    _check(field, "seed", seed, integer=True, low=0)
    _check(field, "skewness", skewness, low=1.0, high=experts / top_k,
           why=f"between 1 and experts/top_k = {experts}/{top_k} for {model.name}")
    _check(field, "vocab_size", vocab_size, integer=True, low=1)
    _check(field, "zipf_a", zipf_a, low=0.0)
    _check(field, "token_affinity", token_affinity, low=0.0, high=1.0)
    _check(field, "layer_correlation", layer_correlation, low=0.0, high=1.0)
    _check(field, "temperature", temperature, low=0.0, open_low=True)
    _check(field, "drift", drift, low=0.0, high=1.0, open_high=True)
    _check(field, "feature_dim", feature_dim, integer=True, low=1, high=64)
    # what the stream holds at once, before any is allocated: one iteration's ids and features,
    # one layer's choices (and gate weights), the vocabulary tables
    needed = (float(tokens) * (4 + 4 * feature_dim)
              + float(tokens) * top_k * (2 + (4 if weights else 0))
              + float(vocab_size) * (8 + 4 + 4 * feature_dim))
    check_bytes(needed, f"a synthetic trace of {tokens:,} tokens per iteration x top-{top_k} "
                f"(vocabulary {vocab_size:,})", field, error=WorkloadError)
    return {"vocab_size": vocab_size, "temperature": temperature}


@dataclass(frozen=True, eq=False)
class SyntheticTrace:
    """A calibrated synthetic trace read one iteration at a time (a `workloads.trace.TraceSource`).

    Iteration i depends only on (seed, i): its token ids and hidden state come from their own
    random stream, each layer's noise from another, so iterations can be produced in any order
    and any number of times, always the same.
    """

    router: _Router
    scale: float
    sample: "_Sample"
    iterations: int
    tokens: int
    top_k: int
    keep_features: bool
    keep_weights: bool
    meta: dict = dataclass_field(default_factory=dict)
    field: str | None = "workload.trace.synthetic"  # named by errors (memory limit)

    @property
    def layers(self) -> int:
        return self.router.balance.shape[0]

    @property
    def num_experts(self) -> int:
        return self.router.balance.shape[1]

    def hidden(self, iteration: int) -> tuple[np.ndarray, np.ndarray]:
        """(token ids [tokens], hidden state [tokens, feature_dim]) of one iteration."""
        return self.router.hidden(iteration, self.tokens)

    def layer_choices(self, iteration: int) -> Iterator[np.ndarray]:
        """Iteration `iteration`'s [tokens, top_k] expert choices, one MoE layer after another."""
        _, hidden = self.hidden(iteration)
        for choice, _ in self._layers(iteration, hidden, gate=False):
            yield choice

    def materialise(self) -> RoutingTrace:
        """The whole trace in memory (what `generate_trace` returns; a token predictor needs it)."""
        iterations, tokens, layers, top_k = self.iterations, self.tokens, self.layers, self.top_k
        experts, feature_dim = self.num_experts, self.router.embedding.shape[1]
        vocab_size = len(self.router.cdf)
        # every array below, before any is allocated: ids + features per token, vocabulary tables
        needed = (float(iterations) * tokens * (4 + 4 * feature_dim)
                  + float(iterations) * layers * tokens * top_k * (2 + (4 if self.keep_weights else 0))
                  + float(vocab_size) * (8 + 4 + 4 * feature_dim))
        check_bytes(needed, f"a synthetic trace of {iterations:,} iterations x {layers} MoE layers x "
                    f"{tokens:,} tokens x top-{top_k} (vocabulary {vocab_size:,})", self.field,
                    error=WorkloadError)
        token_ids = np.empty((iterations, tokens), dtype=np.int32)
        hidden = np.empty((iterations, tokens, self.router.embedding.shape[1]), dtype=np.float32)
        choices = np.empty((iterations, layers, tokens, top_k), dtype=_choice_dtype(experts))
        gate_weights = np.empty(choices.shape, dtype=np.float32) if self.keep_weights else None
        skew_sum = 0.0
        for i in range(iterations):
            token_ids[i], hidden[i] = self.hidden(i)
            for j, (choice, gate) in enumerate(self._layers(i, hidden[i], self.keep_weights)):
                choices[i, j] = choice
                loads = np.bincount(choice.ravel(), minlength=experts)
                skew_sum += loads.max() / loads.mean()
                if gate is not None:
                    gate_weights[i, j] = gate
        meta = dict(self.meta)
        meta["skewness_achieved"] = float(skew_sum / (iterations * layers))
        meta = {key: meta[key] for key in _META_ORDER if key in meta}
        return RoutingTrace(experts=choices, token_ids=token_ids,
                            features=hidden if self.keep_features else None,
                            weights=gate_weights, meta=meta)

    def _layers(self, i: int, hidden: np.ndarray, gate: bool):
        """(choice [tokens, top_k], gate weights or None) per MoE layer of iteration i."""
        router, tokens, top_k = self.router, self.tokens, self.top_k
        layers, experts = self.layers, self.num_experts
        dtype = _choice_dtype(experts)
        if tokens * experts > _STREAM_ELEMENTS:
            for j in range(layers):
                skew_term = np.float32(self.scale) * router.profile[i, j]
                choice = np.empty((tokens, top_k), dtype=dtype)
                weights = np.empty((tokens, top_k), dtype=np.float32) if gate else None
                for start, logits, scores in _score_chunks(router, i, j, hidden):
                    part = _top_k(scores + skew_term, top_k)
                    choice[start: start + len(part)] = part
                    if gate:
                        weights[start: start + len(part)] = _softmax_at(logits + skew_term, part)
                yield choice, weights
            return
        group = max(1, min(layers, _GEMM_ELEMENTS // (tokens * experts)))  # layers per GEMM
        for first in range(0, layers, group):
            last = min(first + group, layers)
            logits = router.logits(hidden, first, last)
            for j in range(first, last):
                skew_term = np.float32(self.scale) * router.profile[i, j]
                scores = self.sample.scores.get((i, j))
                if scores is None:
                    scores = logits[:, j - first] + router.gumbel(i, j, tokens)
                choice = _top_k(scores + skew_term, top_k)
                weights = _softmax_at(logits[:, j - first] + skew_term, choice) if gate else None
                yield choice.astype(dtype, copy=False), weights


_META_ORDER = ("model", "dataset", "source", "num_experts", "moe_layer_indices", "generator",
               "skewness_target", "skewness_achieved", "skewness_floor", "bias_scale", "features")


def _choice_dtype(experts: int) -> type:
    return np.int16 if experts < 2**15 else np.int32


def _score_chunks(router: _Router, i: int, j: int, hidden: np.ndarray):
    """(first row, logits, noisy scores) of (iteration i, layer j) in chunks of rows: the same
    numbers as `router.logits` + `router.gumbel` over all rows, in O(chunk) memory. Chunks have
    an even row count, so each draw takes whole 32-bit words and the noise stream is unchanged."""
    experts = router.balance.shape[1]
    rows = max(2, _GEMM_ELEMENTS // experts // 2 * 2)
    rng = _rng(router.seed, _NOISE, i, j)
    table = _gumbel_table()
    for start in range(0, len(hidden), rows):
        logits = router.logits(hidden[start: start + rows], j, j + 1)[:, 0]
        levels = rng.integers(0, _GUMBEL_LEVELS, (len(logits), experts), dtype=np.uint16)
        yield start, logits, logits + np.take(table, levels)


def default_temperature(experts: int) -> float:
    """Router temperature giving real routers' inter-layer dependency (see docs/workloads.md).

    Chosen so Cramér's V / NMI of first choices 7 layers apart fall in the ranges measured on
    Mixtral-8x7B (T = 0.5 for 8 experts) and OLMoE-1B-7B (T = 0.3 for 64 experts), with a
    smooth rule between and beyond them: models with more experts route more sharply.
    """
    return 0.5 * (8 / experts) ** 0.25


# --- router construction ---------------------------------------------------------------------

def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _build_router(model, iterations, seed, vocab_size, zipf_a, token_affinity,
                  layer_correlation, temperature, drift, d) -> _Router:
    rng = _rng(seed, _STRUCTURE)
    layers, experts = model.moe_layers, model.experts

    frequency = np.arange(1, vocab_size + 1, dtype=np.float64) ** -zipf_a
    frequency /= frequency.sum()
    cdf = np.cumsum(frequency)
    id_of_rank = rng.permutation(vocab_size).astype(np.int32)
    embedding = rng.standard_normal((vocab_size, d), dtype=np.float32)
    # Standardise under the token frequencies so h has zero mean, unit variance per dimension.
    mean = frequency @ embedding
    std = np.sqrt(frequency @ (embedding - mean) ** 2)
    embedding = ((embedding - mean) / np.maximum(std, 1e-6)).astype(np.float32)

    # Residual stream: the state at layer l is a slowly changing function of the state at the
    # first MoE layer, so each expert's gate direction, seen from there, walks: layer l+1's
    # expert pi(e) keeps correlation ~`layer_correlation` with layer l's expert e.
    directions = _unit_columns(rng.standard_normal((d, experts)))
    projection = np.empty((d, layers, experts), dtype=np.float32)
    for layer in range(layers):
        if layer:
            fresh = _unit_columns(rng.standard_normal((d, experts)))
            directions = _unit_columns(layer_correlation * directions[:, rng.permutation(experts)]
                                       + np.sqrt(1 - layer_correlation**2) * fresh)
        projection[:, layer] = directions / temperature

    from scipy.special import ndtri  # scipy: only when a trace is generated

    quantiles = ndtri((np.arange(experts) + 0.5) / experts)
    latent = np.empty((iterations, layers, experts))
    latent[0] = rng.standard_normal((layers, experts))
    for i in range(1, iterations):
        latent[i] = (np.sqrt(1 - drift**2) * latent[i - 1]
                     + drift * rng.standard_normal((layers, experts)))
    profile = quantiles[latent.argsort(axis=-1).argsort(axis=-1)]

    router = _Router(cdf=cdf, id_of_rank=id_of_rank, embedding=embedding,
                     projection=projection, balance=np.zeros((layers, experts), np.float32),
                     profile=profile.astype(np.float32), token_affinity=token_affinity,
                     seed=seed)
    balance = _balancing_bias(router, seed)
    return replace(router, balance=balance)


def _unit_columns(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=0, keepdims=True)


def _balancing_bias(router: _Router, seed: int) -> np.ndarray:
    """Per-layer bias that equalises each expert's softmax mass over the token distribution.

    Without it the most frequent token ids (a few % of all tokens each) would make their
    favourite experts hot at any setting; trained routers are balanced by an auxiliary loss
    or a bias (DeepSeek-V3). Sinkhorn-style: b -= log(E * mean softmax) a few times.
    """
    _, hidden = router._hidden(_rng(seed, _BALANCE), _BALANCE_TOKENS)
    layers, experts = router.balance.shape
    balance = np.zeros((layers, experts), dtype=np.float32)
    group = max(1, min(layers, _GEMM_ELEMENTS // (len(hidden) * experts)))
    for first in range(0, layers, group):
        last = min(first + group, layers)
        logits = router.logits(hidden, first, last)  # [tokens, group, experts]; balance still 0
        logits -= logits.max(axis=2, keepdims=True)
        unnormalised = np.exp(logits)
        bias = np.zeros((last - first, experts), dtype=np.float32)
        for _ in range(_BALANCE_STEPS):
            weighted = unnormalised * np.exp(bias)
            mass = (weighted / weighted.sum(axis=2, keepdims=True)).mean(axis=0)
            bias -= np.log(np.maximum(mass * experts, 1e-12)).astype(np.float32)
            bias -= bias.mean(axis=1, keepdims=True)
        balance[first:last] = bias
    return balance


# --- calibration -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Sample:
    scores: dict          # (iteration, layer) -> noisy scores [tokens, experts] (no skew term)
    profile: dict         # (iteration, layer) -> g [experts]
    # (iteration, layer) -> hidden state [tokens, d]: pairs too large to keep, re-scored in chunks
    streamed: dict = dataclass_field(default_factory=dict)
    router: _Router | None = None


def _calibration_sample(router: _Router, iterations: int, tokens: int, layers: int) -> _Sample:
    """(iteration, layer) pairs for calibration: every layer (they differ) of one or a few
    iterations (they differ little: drift changes which experts are hot, not how hot), or
    evenly spaced layers of one iteration when the budget does not stretch to all. A pair whose
    scores exceed `_STREAM_ELEMENTS` is kept as its hidden state and re-scored in chunks."""
    experts = router.balance.shape[1]
    pairs = max(1, _CALIBRATION_BUDGET // (tokens * experts))
    n_layers = min(layers, pairs)
    n_iterations = min(iterations, max(1, pairs // layers), 4)
    chosen_layers = np.unique(np.linspace(0, layers - 1, n_layers).round().astype(int))
    chosen_iterations = np.unique(np.linspace(0, iterations - 1, n_iterations).round().astype(int))
    chosen_layers = set(map(int, chosen_layers))
    group = max(1, min(layers, _GEMM_ELEMENTS // (tokens * experts)))
    scores, profile, streamed = {}, {}, {}
    for i in map(int, chosen_iterations):
        _, hidden = router.hidden(i, tokens)
        for first in range(0, layers, group):
            wanted = [j for j in range(first, min(first + group, layers)) if j in chosen_layers]
            if not wanted:
                continue
            if tokens * experts > _STREAM_ELEMENTS:
                for j in wanted:
                    streamed[(i, j)] = hidden
                    profile[(i, j)] = router.profile[i, j]
                continue
            logits = router.logits(hidden, wanted[0], wanted[-1] + 1)
            for j in wanted:
                scores[(i, j)] = logits[:, j - wanted[0]] + router.gumbel(i, j, tokens)
                profile[(i, j)] = router.profile[i, j]
    return _Sample(scores=scores, profile=profile, streamed=streamed, router=router)


def _sample_skewness(sample: _Sample, scale: float, top_k: int) -> float:
    """Mean max/mean load over the sample's (iteration, layer) pairs at bias scale `scale`."""
    values = []
    for key in sorted({**sample.scores, **sample.streamed}):
        profile = sample.profile[key]
        skew_term = np.float32(scale) * profile
        if key in sample.scores:
            choice = _top_k(sample.scores[key] + skew_term, top_k)
            loads = np.bincount(choice.ravel(), minlength=len(profile))
        else:
            loads = np.zeros(len(profile), dtype=np.int64)
            for _, _, scores in _score_chunks(sample.router, *key, sample.streamed[key]):
                loads += np.bincount(_top_k(scores + skew_term, top_k).ravel(),
                                     minlength=len(profile))
        values.append(loads.max() / loads.mean())
    return float(np.mean(values))


def _calibrate(sample: _Sample, target: float, floor: float, top_k: int, experts: int,
               field) -> float:
    """Bias scale whose sample skewness hits `target`: bracket by doubling, then regula falsi
    (Illinois variant). The sample is fixed, so the result is deterministic for a seed."""
    if target <= floor * (1 + _RELATIVE_TOLERANCE):
        return 0.0
    low, f_low = 0.0, floor - target
    high = 1.0
    f_high = _sample_skewness(sample, high, top_k) - target
    while f_high < 0:
        low, f_low, high = high, f_high, 2 * high
        if high > 2**12:
            raise WorkloadError(
                f"skewness {target:g} is not reachable for {experts} experts, top-{top_k} "
                f"(reached {f_high + target:.3f}); use a smaller value", _name(field, "skewness"))
        f_high = _sample_skewness(sample, high, top_k) - target
    side = 0
    for _ in range(50):
        middle = high - f_high * (high - low) / (f_high - f_low)
        value = _sample_skewness(sample, middle, top_k) - target
        if abs(value) <= _RELATIVE_TOLERANCE * target or high - low <= 1e-6 * high:
            return middle
        if value < 0:
            low, f_low = middle, value
            if side < 0:
                f_high /= 2
            side = -1
        else:
            high, f_high = middle, value
            if side > 0:
                f_low /= 2
            side = 1
    return middle


# --- small numpy helpers -----------------------------------------------------------------------

def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """[tokens, k] indices of each row's k largest scores, best first.

    Repeated argmax when k is small against the row length, else one SIMD argsort (faster
    than argpartition + sort for the row lengths of MoE routers).
    """
    if k == 1:
        return scores.argmax(axis=1)[:, None]
    tokens, experts = scores.shape
    if k > 2 and experts < 16 * k:
        return np.argsort(-scores, axis=1)[:, :k]
    work = scores.copy()
    rows = np.arange(tokens)
    choice = np.empty((tokens, k), dtype=np.intp)
    for slot in range(k):
        choice[:, slot] = work.argmax(axis=1)
        work[rows, choice[:, slot]] = -np.inf
    return choice


def _softmax_at(logits: np.ndarray, choice: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return np.exp(np.take_along_axis(shifted, choice, axis=1) - log_norm).astype(np.float32)


def _name(field: str | None, key: str) -> str:
    return f"{field}.{key}" if field else f"--{key.replace('_', '-')}"


def _check(field, key, value, *, integer=False, low=None, high=None, open_low=False,
           open_high=False, why=None) -> None:
    """One generator argument: type and range, as a WorkloadError naming it."""
    name = _name(field, key)
    types = (int, np.integer) if integer else (int, float, np.number)
    if isinstance(value, bool) or not isinstance(value, types):
        kind = "an integer" if integer else "a number"
        raise WorkloadError(f"must be {kind}, got {value!r}", name)
    if not np.isfinite(value):
        raise WorkloadError(f"must be finite, got {value!r}", name)
    too_low = low is not None and (value <= low if open_low else value < low)
    too_high = high is not None and (value >= high if open_high else value > high)
    if too_low or too_high:
        lo = "" if low is None else f"{'>' if open_low else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if open_high else '<='} {high:g}"
        allowed = why or " and ".join(part for part in (lo, hi) if part)
        raise WorkloadError(f"must be {allowed}, got {value!r}", name)

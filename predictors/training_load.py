"""Training-time expert load: transient/stable state detection and long-horizon share forecasts.

"Prediction Is All MoE Needs" (arXiv 2404.16914) observed that each expert's share of the
tokens fluctuates early in training (*transient* state) and then holds its level (*stable*
state, "temporal locality"), and that in the stable state sliding-window, ARIMA and LSTM
forecasts predict the share over the next 1,000-2,000 steps to a few per cent. This module
does both on a ``shares`` array [steps, layers, experts] (a `workloads.moe_lm.TrainingLoadTrace`):

- `detect_states`: the shares are averaged over `smooth` steps (per-step shares of a small
  batch are noisy), then for every window start s and (layer, expert) the variance and the
  range (max - min) of that level over [s, s + window) are compared with two thresholds; a
  layer is stable from the first step after which every window of every expert stays at or
  below both.
- `forecast_errors`: at origins t in the stable state, each method is fitted on the history
  up to t and forecasts the mean share of every expert over (t, t + H]; the error is
  ``|predicted - true| / max(true, min_share)`` (true = mean share over those H steps).

The sliding window and ARIMA are the existing `distribution.window` and `distribution.arima`
predictors; the LSTM is `LoadLSTMPredictor` below (a Distribution-Only predictor too, torch
imported lazily).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from predictors.arima import ARIMAPredictor
from predictors.base import VALUE_BYTES, DistributionPredictor, PredictorCost, normalise
from predictors.distribution import WindowPredictor, model_shape
from predictors.errors import PredictorError
from predictors.lstm import _threads, minibatch_adam
from predictors.lstm import _torch as lstm_torch
from predictors.params import check_float, check_int

# Defaults of the state detection, chosen on the committed trace (docs/training-load.md): a
# step's share of 1,024 tokens from 32 documents has a noise of about 0.02 around 1/8; after
# 100-step smoothing the stable state's 500-step windows stay below a range of 0.04, while
# the transient's exceed 0.2.
SMOOTH = 100
STATE_WINDOW = 500
VARIANCE_THRESHOLD = 2e-4      # share^2: a standard deviation of about 0.014 within the window
RANGE_THRESHOLD = 0.05         # share: max - min of the smoothed level within the window

METHODS = ("window", "arima", "lstm")
MIN_SHARE = 1e-3               # floor of the error's denominator (an expert that got nothing)


# --- state detection ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StateDetection:
    """Transient/stable classification of every step and layer of a share series.

    `variance` and `range` are [windows, layers, experts], one row per window start s
    (windows = steps - smooth - window + 2). `stable` is [steps, layers]. `boundary_per_layer[l]`
    is the first stable step of layer l (``steps`` when it never settles); `boundary` is the
    step from which all layers are stable (their maximum), or None when one never settles.
    """

    window: int
    smooth: int
    variance_threshold: float
    range_threshold: float
    variance: np.ndarray
    range: np.ndarray
    stable: np.ndarray
    boundary_per_layer: np.ndarray
    boundary: int | None


def _check_shares(shares: Any, name: str = "shares") -> np.ndarray:
    shares = np.asarray(shares, dtype=np.float64)
    if shares.ndim != 3 or min(shares.shape) == 0:
        raise PredictorError(f"must be a non-empty 3-D array [steps, layers, experts], got shape "
                             f"{shares.shape}", name)
    if not np.all(np.isfinite(shares)) or shares.min() < 0:
        raise PredictorError("must be finite shares >= 0", name)
    return shares


def _window_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of values[s : s + window] along axis 0 for every start s (running sums, O(n))."""
    total = np.cumsum(values, axis=0)
    total = np.concatenate([np.zeros_like(total[:1]), total])
    return (total[window:] - total[:-window]) / window


def _window_extremes(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(max, min) of values[s : s + window] along axis 0 for every start s (O(n) filters)."""
    from scipy.ndimage import maximum_filter1d, minimum_filter1d

    count, half = len(values) - window + 1, window // 2  # a centred filter at s + half spans
    return (maximum_filter1d(values, window, axis=0)[half:half + count],  # [s, s + window)
            minimum_filter1d(values, window, axis=0)[half:half + count])


def detect_states(shares: Any, window: int = STATE_WINDOW,
                  variance_threshold: float = VARIANCE_THRESHOLD,
                  range_threshold: float = RANGE_THRESHOLD, smooth: int = SMOOTH) -> StateDetection:
    """Classify steps as transient or stable from windowed variance and range; see StateDetection.

    The shares are first averaged over `smooth` steps (the level at s is the mean of steps
    s .. s + smooth - 1): a per-step share of a small batch carries sampling noise, and the
    states are about the level drifting, not that noise (``smooth=1`` uses raw shares). The
    window starting at step s is *calm* when, for every expert of the layer, the variance
    (ddof = 0) of the levels s .. s + window - 1 is <= `variance_threshold` and their range
    (max - min) is <= `range_threshold`. Layer l is stable from the first step b such that
    every window starting at b or later is calm: for a series constant from step b on and
    off that constant at b - 1, the boundary is exactly b.
    """
    shares = _check_shares(shares)
    steps = shares.shape[0]
    check_int(smooth, "smooth", "state", 1, steps - 1)
    check_int(window, "window", "state", 2, steps - smooth + 1)
    check_float(variance_threshold, "variance_threshold", "state", 0.0)
    check_float(range_threshold, "range_threshold", "state", 0.0)
    level = _window_mean(shares, smooth) if smooth > 1 else shares
    centred = level - level.mean(axis=0)  # variance is shift-free; centring keeps it accurate
    variance = np.maximum(_window_mean(centred ** 2, window)
                          - _window_mean(centred, window) ** 2, 0.0)
    highest, lowest = _window_extremes(level, window)
    spread = highest - lowest
    calm = ((variance <= variance_threshold) & (spread <= range_threshold)).all(axis=-1)  # [n, L]
    # calm from a window start onwards: a reversed cumulative AND over the starts
    calm_onwards = np.flip(np.logical_and.accumulate(np.flip(calm, axis=0), axis=0), axis=0)
    trailing = calm_onwards.sum(axis=0)
    boundary_per_layer = np.where(trailing > 0, calm.shape[0] - trailing, steps).astype(np.int64)
    stable = np.arange(steps)[:, None] >= boundary_per_layer[None, :]
    boundary = int(boundary_per_layer.max())
    return StateDetection(window, smooth, float(variance_threshold), float(range_threshold),
                          variance, spread, stable, boundary_per_layer,
                          boundary if boundary < steps else None)


# --- the LSTM forecaster -------------------------------------------------------------------------

def _torch(field: str = "predictor.kind"):
    return lstm_torch(field, kind="distribution.lstm")


class LoadLSTMPredictor(DistributionPredictor):
    """``distribution.lstm``: an LSTM over every expert's share series, rolled out H steps.

    Each (layer, expert) series of the last `fit_window` steps is averaged over blocks of
    `block` steps (per-step shares are dominated by sampling noise), standardised by its own
    mean and standard deviation, and one LSTM with shared weights learns to predict the next
    block from the previous `lookback` blocks (MSE, Adam, seeded, `threads` torch threads).
    `predict(horizon)` rolls the forecast out ceil(horizon / block) blocks autoregressively
    and returns the mean over the first `horizon` steps. `update` extends the input history
    without retraining. Cost of one prediction: per series ``lookback + 1`` LSTM steps of
    8·(h + h²) + 2·h FLOPs, weights 4·(2h + h²) + h + 1 values.
    """

    kind = "distribution.lstm"

    def __init__(self, hidden: int = 16, lookback: int = 16, block: int = 20,
                 fit_window: int = 1000, epochs: int = 20, batch: int = 64, lr: float = 1e-2,
                 seed: int = 0, threads: int = 1):
        self.hidden = hidden
        self.lookback = lookback
        self.block = block
        self.fit_window = fit_window
        self.epochs = epochs
        self.batch = batch
        self.lr = lr
        self.seed = seed
        self.threads = threads

    def check_params(self, field="predictor"):
        check_int(self.hidden, "hidden", field, 1, 4096)
        check_int(self.lookback, "lookback", field, 1, 4096)
        check_int(self.block, "block", field, 1)
        check_int(self.fit_window, "fit_window", field, 2)
        check_int(self.epochs, "epochs", field, 1, 10000)
        check_int(self.batch, "batch", field, 1)
        check_float(self.lr, "lr", field, 0.0, 1.0, open_low=True)
        check_int(self.seed, "seed", field, 0)
        check_int(self.threads, "threads", field, 1, 1024)
        _torch()

    # --- state ----------------------------------------------------------------------------
    def _start(self, loads):
        recent = loads[-self.fit_window:]
        self.shares_ = normalise(recent).reshape(len(recent), -1)
        self._train()

    def _append(self, loads):
        row = normalise(loads).reshape(1, -1)
        self.shares_ = np.concatenate([self.shares_, row])[-self.fit_window:]

    def _blocks(self) -> np.ndarray:
        """[blocks, series] means of the most recent whole blocks of `block` steps."""
        usable = (len(self.shares_) // self.block) * self.block
        recent = self.shares_[len(self.shares_) - usable:]
        return recent.reshape(-1, self.block, recent.shape[1]).mean(axis=1)

    def _train(self):
        torch = _torch()
        blocks = self._blocks()
        self.net_ = None
        if len(blocks) < self.lookback + 2:
            return  # too little history: the forecast is the mean share seen
        self.centre_ = blocks.mean(axis=0)
        self.scale_ = np.maximum(blocks.std(axis=0), 1e-6)
        z = (blocks - self.centre_) / self.scale_                       # [n, series]
        windows = np.lib.stride_tricks.sliding_window_view(z, self.lookback + 1, axis=0)
        samples = np.ascontiguousarray(windows.reshape(-1, self.lookback + 1))  # [n·series, lb+1]
        with _threads(torch, self.threads):
            torch.manual_seed(self.seed)
            generator = torch.Generator().manual_seed(self.seed)
            self.net_ = _lstm_net(torch, self.hidden)
            x = torch.as_tensor(samples[:, :-1, None], dtype=torch.float32)
            y = torch.as_tensor(samples[:, -1], dtype=torch.float32)
            self.train_loss_ = minibatch_adam(
                torch, self.net_, len(x), lambda rows: torch.mean((self.net_(x[rows]) - y[rows]) ** 2),
                self.epochs, self.batch, self.lr, generator)

    def _forecast(self, horizon):
        if len(self.shares_) == 0:
            return np.ones((self.layers_, self.experts_))
        if self.net_ is None:
            return self.shares_.mean(axis=0).reshape(self.layers_, self.experts_)
        torch = _torch()
        blocks = self._blocks()
        history = ((blocks[-self.lookback:] - self.centre_) / self.scale_).T[:, :, None]
        count = -(-horizon // self.block)
        path = []
        with torch.no_grad(), _threads(torch, self.threads):
            x = torch.as_tensor(history, dtype=torch.float32)
            for _ in range(count):
                step = self.net_(x)                                     # [series]
                path.append(step.numpy().astype(np.float64))
                x = torch.cat([x[:, 1:], step[:, None, None]], dim=1)
        values = np.array(path) * self.scale_ + self.centre_            # [count, series]
        per_step = np.repeat(values, self.block, axis=0)[:horizon]
        return per_step.mean(axis=0).reshape(self.layers_, self.experts_)

    def inference_cost(self, model, tokens=None):
        layers, experts = model_shape(model)
        series, h = layers * experts, self.hidden
        flops = series * (self.lookback + 1) * (8.0 * (h + h * h) + 2.0 * h)
        values = 4 * (2 * h + h * h) + h + 1 + series * (self.lookback + 1)
        return PredictorCost(flops, float(values * VALUE_BYTES))


def _lstm_net(torch, hidden: int):
    """One-layer LSTM over a [batch, steps, 1] sequence and a linear head on its last state."""
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(1, hidden, batch_first=True)
            self.head = nn.Linear(hidden, 1)

        def forward(self, x):
            state, _ = self.lstm(x)
            return self.head(state[:, -1]).squeeze(-1)

    return Net()


# --- forecasting in the stable state -------------------------------------------------------------

def make_forecaster(method: str, window: int = 200, arima_window: int = 500,
                    lstm: dict | None = None) -> DistributionPredictor:
    """The forecaster for `method`: ``window`` (sliding-window mean of the last `window` steps),
    ``arima`` (AR(1) around the mean of the last `arima_window` steps, statsmodels), ``lstm``."""
    if method == "window":
        return WindowPredictor(window=window)
    if method == "arima":
        return ARIMAPredictor(order=(1, 0, 0), refit_every=1 << 30, fit_window=arima_window,
                              min_history=16)
    if method == "lstm":
        return LoadLSTMPredictor(**(lstm or {}))
    raise PredictorError(f"must be one of {', '.join(METHODS)}; got {method!r}", "methods")


@dataclass(frozen=True)
class ForecastRow:
    """One expert's forecast at one origin: mean share over (origin, origin + horizon]."""

    method: str
    horizon: int
    origin: int
    layer: int
    expert: int
    predicted: float
    true: float
    error: float


def forecast_origins(steps: int, boundary: int, horizons: list[int], history: int,
                     count: int) -> np.ndarray:
    """`count` origins evenly spread over the stable steps that leave room for every horizon.

    An origin t needs `history` stable steps up to it (t - history + 1 >= boundary) and the
    longest horizon after it (t + H <= steps - 1). Raises PredictorError naming `horizon` if
    the stable part is too short.
    """
    longest = max(horizons)
    first, last = boundary + history - 1, steps - 1 - longest
    if first > last and steps - 1 - first < 1:
        raise PredictorError(
            f"the trace's stable part is too short for any forecast: stable from step {boundary} of "
            f"{steps}, and a forecast needs {history} stable steps of history (--window); lower "
            "--window or record more steps", "horizon")
    if first > last:
        raise PredictorError(
            f"{longest} steps do not fit in the stable part: stable from step {boundary} of "
            f"{steps}, and a forecast needs {history} stable steps of history before it, so the "
            f"longest horizon allowed is {steps - 1 - first}", "horizon")
    return np.unique(np.linspace(first, last, count).round().astype(np.int64))


def forecast_errors(shares: Any, horizons: list[int], origins: Any, methods: tuple[str, ...] =
                    METHODS, min_share: float = MIN_SHARE, window: int = 200,
                    arima_window: int = 500, lstm: dict | None = None) -> list[ForecastRow]:
    """Forecast every expert's mean share over each horizon from each origin, with each method.

    At origin t the forecaster is fitted on ``shares[: t + 1]`` and asked for the mean
    share over steps t + 1 .. t + H, compared with the truth there:
    ``error = |predicted - true| / max(true, min_share)`` (the floor keeps an expert that
    received nothing from dividing by zero). One fit per (method, origin) serves all horizons.
    """
    shares = _check_shares(shares)
    steps, layers, experts = shares.shape
    check_float(min_share, "min_share", "forecast", 0.0, open_low=True)
    horizons = [int(h) for h in horizons]
    for h in horizons:
        check_int(h, "horizon", "forecast", 1)
    rows = []
    for method in methods:
        for origin in np.asarray(origins, dtype=np.int64):
            if origin < 0 or origin + max(horizons) >= steps:
                raise PredictorError(f"origin {origin} leaves fewer than {max(horizons)} steps "
                                     f"of a {steps}-step trace", "origin")
            model = make_forecaster(method, window, arima_window, lstm)
            model.fit(shares[: origin + 1])
            for h in horizons:
                predicted = model.predict(h)
                true = shares[origin + 1: origin + 1 + h].mean(axis=0)
                error = np.abs(predicted - true) / np.maximum(true, min_share)
                rows.extend(ForecastRow(method, h, int(origin), layer, expert,
                                        float(predicted[layer, expert]), float(true[layer, expert]),
                                        float(error[layer, expert]))
                            for layer in range(layers) for expert in range(experts))
    return rows


def summarise(rows: list[ForecastRow]) -> dict[tuple[str, int], float]:
    """Mean error per (method, horizon), over origins, layers and experts."""
    groups: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        groups.setdefault((row.method, row.horizon), []).append(row.error)
    return {key: float(np.mean(values)) for key, values in groups.items()}

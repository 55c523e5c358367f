"""``distribution.arima``: an ARIMA(p, d, q) forecast of every (layer, expert) load-share series.

"Prediction Is All MoE Needs" (arXiv 2404.16914) forecasts each expert's share of tokens
from its own past with ARIMA. Estimating the parameters is the expensive part, so it uses
statsmodels (optional: ``pip install moesim[forecast]``) once per `refit_every` updates, on
the last `fit_window` iterations, one series per (layer, expert), each standardised first (the
optimiser converges far faster on unit-variance data). Between re-fits the forecast is pure
numpy, vectorised over all series: the ARMA recursion on the d-times differenced series
(residuals from the conditional recursion, future shocks zero), then integrated back.

Orders are kept small (p, q <= 3, d <= 2). ``order: [0, 1, 1]`` is exponential smoothing;
the default ``[1, 0, 0]`` is a mean-reverting AR(1) around the window mean. With fewer than
`min_history` points the forecast is the mean share of what has been seen.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from predictors.base import VALUE_BYTES, DistributionPredictor, PredictorCost, normalise
from predictors.distribution import model_shape
from predictors.errors import PredictorError
from predictors.params import check_int

# Order-of-magnitude constants of one maximum-likelihood fit (Kalman filter per likelihood
# evaluation, numerical gradients, a quasi-Newton optimiser).
_OPTIMISER_ITERATIONS = 50
_KALMAN_FLOPS_PER_STATE2 = 8


def _statsmodels_arima(field: str = "predictor.kind"):
    """Import statsmodels' ARIMA lazily: it is an optional dependency."""
    try:
        from statsmodels.tsa.arima.model import ARIMA
    except ImportError:
        raise PredictorError(
            "distribution.arima needs statsmodels, which is not installed: "
            "pip install moesim[forecast]", field) from None
    return ARIMA


class ARIMAPredictor(DistributionPredictor):
    """``distribution.arima``: per-series ARIMA forecasts of load shares; see module docstring.

    Knobs: `order` [p, d, q], `refit_every` (updates between parameter re-fits), `fit_window`
    (iterations kept and fitted), `min_history` (below it: mean share).
    """

    kind = "distribution.arima"

    def __init__(self, order: Any = (1, 0, 0), refit_every: int = 50, fit_window: int = 128,
                 min_history: int = 16):
        self.order = order
        self.refit_every = refit_every
        self.fit_window = fit_window
        self.min_history = min_history

    def check_params(self, field="predictor"):
        order = self.order
        if (not isinstance(order, (list, tuple)) or len(order) != 3
                or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) for x in order)):
            raise PredictorError(f"must be three integers [p, d, q], got {order!r}",
                                 f"{field}.order")
        p, d, q = order
        if not (0 <= p <= 3 and 0 <= d <= 2 and 0 <= q <= 3):
            raise PredictorError(f"must have 0 <= p <= 3, 0 <= d <= 2, 0 <= q <= 3; got {order!r}",
                                 f"{field}.order")
        check_int(self.refit_every, "refit_every", field, 1)
        check_int(self.fit_window, "fit_window", field, 4)
        check_int(self.min_history, "min_history", field, p + d + q + 2)
        _statsmodels_arima()

    # --- state ---------------------------------------------------------------------------
    def _start(self, loads):
        recent = loads[-self.fit_window:]
        self.shares_ = normalise(recent).reshape(len(recent), -1)
        self._refit()

    def _append(self, loads):
        row = normalise(loads).reshape(1, -1)
        self.shares_ = np.concatenate([self.shares_, row])[-self.fit_window:]
        self.since_refit_ += 1
        if self.since_refit_ >= self.refit_every or (self.params_ is None
                                                     and len(self.shares_) >= self.min_history):
            self._refit()
        elif self.params_ is not None:
            self._step(self._differenced(self.shares_)[-1])

    def _differenced(self, series: np.ndarray) -> np.ndarray:
        return np.diff(series, n=self.order[1], axis=0) if self.order[1] else series

    def _refit(self):
        """Estimate (mean, AR, MA) per series with statsmodels, then replay the residuals."""
        self.since_refit_ = 0
        p, d, q = (int(x) for x in self.order)
        if len(self.shares_) < self.min_history:
            self.params_ = None
            return
        arima = _statsmodels_arima()
        series = self.shares_
        count = series.shape[1]
        mean, phi, theta = np.zeros(count), np.zeros((count, p)), np.zeros((count, q))
        for index in range(count):
            mean[index], phi[index], theta[index] = _fit_one(arima, series[:, index], p, d, q)
        self.params_ = (mean, phi, theta)
        self.ar_state_ = np.zeros((p, count))     # w_{t}, w_{t-1}, ... minus the mean
        self.ma_state_ = np.zeros((q, count))     # e_{t}, e_{t-1}, ...
        for value in self._differenced(series):
            self._step(value)

    def _one_step(self) -> np.ndarray:
        mean, phi, theta = self.params_
        forecast = mean.copy()
        if phi.shape[1]:
            forecast += np.einsum("sp,ps->s", phi, self.ar_state_)
        if theta.shape[1]:
            forecast += np.einsum("sq,qs->s", theta, self.ma_state_)
        return forecast

    def _step(self, value: np.ndarray) -> None:
        """Advance the ARMA recursion by one observed differenced value per series."""
        residual = value - self._one_step()
        mean = self.params_[0]
        if len(self.ar_state_):
            self.ar_state_ = np.concatenate([(value - mean)[None], self.ar_state_[:-1]])
        if len(self.ma_state_):
            self.ma_state_ = np.concatenate([residual[None], self.ma_state_[:-1]])

    def _forecast(self, horizon):
        if len(self.shares_) == 0:
            return np.ones((self.layers_, self.experts_))
        if self.params_ is None:
            return self.shares_.mean(axis=0).reshape(self.layers_, self.experts_)
        saved = (self.ar_state_, self.ma_state_)
        steps = []
        for _ in range(horizon):
            value = self._one_step()
            steps.append(value)
            mean = self.params_[0]
            if len(self.ar_state_):
                self.ar_state_ = np.concatenate([(value - mean)[None], self.ar_state_[:-1]])
            if len(self.ma_state_):
                self.ma_state_ = np.concatenate([np.zeros_like(value)[None], self.ma_state_[:-1]])
        self.ar_state_, self.ma_state_ = saved
        path = np.array(steps)                                      # [horizon, series]
        d = int(self.order[1])
        for level in reversed(range(d)):                            # integrate back d times
            last = np.diff(self.shares_, n=level, axis=0)[-1] if level else self.shares_[-1]
            path = last + np.cumsum(path, axis=0)
        return path.mean(axis=0).reshape(self.layers_, self.experts_)

    def inference_cost(self, model, tokens=None):
        """One forecast plus 1/`refit_every` of a re-fit (order of magnitude, see docstring)."""
        layers, experts = model_shape(model)
        series = layers * experts
        p, d, q = (int(x) for x in self.order)
        state = max(p, q + 1) + d
        parameters = p + q + 2
        fit_flops = (series * _OPTIMISER_ITERATIONS * (parameters + 1) * self.fit_window
                     * _KALMAN_FLOPS_PER_STATE2 * state * state)
        forecast_flops = series * (2 * (p + q + 1) + d + 2)
        fit_bytes = series * self.fit_window * VALUE_BYTES
        forecast_bytes = series * (p + q + d + 3) * VALUE_BYTES
        return PredictorCost(forecast_flops + fit_flops / self.refit_every,
                             forecast_bytes + fit_bytes / self.refit_every)


def _fit_one(arima, series: np.ndarray, p: int, d: int, q: int):
    """(mean, phi[p], theta[q]) of one share series, fitted on its standardised values."""
    differenced = np.diff(series, n=d) if d else series
    scale = series.std()
    if scale < 1e-9 or differenced.std() < 1e-12:
        return (differenced.mean() if not d else 0.0), np.zeros(p), np.zeros(q)
    centre = series.mean() if not d else 0.0
    z = (series - centre) / scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on short, noisy series
        try:
            params = arima(z, order=(p, d, q), trend="c" if not d else "n").fit(return_params=True)
        except (ValueError, np.linalg.LinAlgError):
            return (differenced.mean() if not d else 0.0), np.zeros(p), np.zeros(q)
    offset = 1 if not d else 0
    phi, theta = params[offset:offset + p], params[offset + p:offset + p + q]
    mean = centre + (params[0] * scale if not d else 0.0)
    return mean, np.asarray(phi, dtype=float), np.asarray(theta, dtype=float)

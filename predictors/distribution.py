"""Distribution-Only predictors: cheap forecasts of each expert's share of the next iteration.

MoE-GPS (arXiv 2506.07366) argues that a balancer duplicating hot experts needs only the
per-expert token distribution, not each token's expert, and that a multinomial MLE over
recent history is often good enough at a tiny cost. The time-series forecasters (window,
EWMA here; ARIMA in `predictors.arima`) follow "Prediction Is All MoE Needs"
(arXiv 2404.16914), which forecasts expert load shares from their recent past.

What they see: only past iterations' load counts [layers, experts], known after each
iteration's gate ran. Costs count one prediction per window in fp32 (`VALUE_BYTES`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from predictors.base import VALUE_BYTES, DistributionPredictor, PredictorCost, normalise
from predictors.params import check_float, check_int


def model_shape(model: Any) -> tuple[int, int]:
    """(MoE layers, routed experts) of a `workloads.models.ModelSpec`."""
    return int(model.moe_layers), int(model.experts)


class UniformPredictor(DistributionPredictor):
    """``none``: no prediction. Forecasts the uniform distribution and costs nothing.

    It is what a static placement implicitly assumes, so its error rate is the baseline
    every real predictor must beat.
    """

    kind = "none"
    family = "none"

    def __init__(self):
        pass

    def _start(self, loads):
        pass

    def _append(self, loads):
        pass

    def _forecast(self, horizon):
        return np.ones((self.layers_, self.experts_))

    def inference_cost(self, model, tokens=None):
        return PredictorCost(0.0, 0.0)


class MLEPredictor(DistributionPredictor):
    """``distribution.mle``: multinomial maximum likelihood = all history counts, normalised.

    Assumes a stationary distribution; the running per-(layer, expert) sum is the whole
    state, so `update` is one addition. Cost per prediction: add the last iteration's counts
    and normalise, 3·L·E FLOPs, 3·L·E values read or written.
    """

    kind = "distribution.mle"

    def __init__(self):
        pass

    def _start(self, loads):
        self.counts_ = loads.sum(axis=0)

    def _append(self, loads):
        self.counts_ = self.counts_ + loads

    def _forecast(self, horizon):
        return self.counts_

    def inference_cost(self, model, tokens=None):
        layers, experts = model_shape(model)
        return PredictorCost(3.0 * layers * experts, 3.0 * layers * experts * VALUE_BYTES)


class WindowPredictor(DistributionPredictor):
    """``distribution.window``: mean of the last `window` iterations' distributions.

    Each iteration is normalised before averaging, so every iteration weighs the same
    whatever its token count. Cost: (window + 2)·L·E FLOPs, (window + 1)·L·E values.
    """

    kind = "distribution.window"

    def __init__(self, window: int = 8):
        self.window = window

    def check_params(self, field="predictor"):
        check_int(self.window, "window", field, 1)

    def _start(self, loads):
        self.recent_ = normalise(loads[-self.window:]) if len(loads) else loads[:0]

    def _append(self, loads):
        self.recent_ = np.concatenate([self.recent_, normalise(loads)[None]])[-self.window:]

    def _forecast(self, horizon):
        if len(self.recent_) == 0:
            return np.ones((self.layers_, self.experts_))
        return self.recent_.mean(axis=0)

    def inference_cost(self, model, tokens=None):
        layers, experts = model_shape(model)
        return PredictorCost((self.window + 2.0) * layers * experts,
                             (self.window + 1.0) * layers * experts * VALUE_BYTES)


class EWMAPredictor(DistributionPredictor):
    """``distribution.ewma``: exponentially weighted mean of the per-iteration distributions.

    ``s_1 = p_1``, ``s_t = alpha·p_t + (1 - alpha)·s_{t-1}``; the forecast is ``s_t``. A
    large `alpha` follows drift fast, a small one averages noise away. Cost: 5·L·E FLOPs
    (normalise, blend), 3·L·E values.
    """

    kind = "distribution.ewma"

    def __init__(self, alpha: float = 0.3):
        self.alpha = alpha

    def check_params(self, field="predictor"):
        check_float(self.alpha, "alpha", field, 0.0, 1.0, open_low=True)

    def _start(self, loads):
        self.state_ = None
        for row in loads:
            self._append(row)

    def _append(self, loads):
        shares = normalise(loads)
        self.state_ = shares if self.state_ is None else (
            self.alpha * shares + (1.0 - self.alpha) * self.state_)

    def _forecast(self, horizon):
        if self.state_ is None:
            return np.ones((self.layers_, self.experts_))
        return self.state_

    def inference_cost(self, model, tokens=None):
        layers, experts = model_shape(model)
        return PredictorCost(5.0 * layers * experts, 3.0 * layers * experts * VALUE_BYTES)

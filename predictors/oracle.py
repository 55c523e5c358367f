"""Oracles: predictors told the truth, the upper bound of what prediction can buy.

`DistributionOracle` is told the coming loads through `observe_truth` (which every
distribution predictor has and the real ones ignore), so a simulation drives all of them
the same way: ``observe_truth(next) -> predict() -> update(next)``. `TokenOracle` reads the
trace's true experts for the iteration it is asked about. Both cost nothing: they measure
the benefit of perfect knowledge, not a deployable method.
"""

from __future__ import annotations

import numpy as np

from predictors.base import (
    DistributionPredictor,
    PredictorCost,
    PredictorError,
    TokenPredictor,
    _check_loads,
)


class DistributionOracle(DistributionPredictor):
    """``oracle.distribution``: predicts exactly the loads last passed to `observe_truth`."""

    kind = "oracle.distribution"
    family = "oracle"

    def __init__(self):
        pass

    def _start(self, loads):
        self.truth_ = None

    def observe_truth(self, loads_next):
        self._require_fitted("layers_")
        loads = np.asarray(loads_next)
        if loads.ndim == 2:
            loads = loads[None]
        self.truth_ = _check_loads(loads, "loads_next", (self.layers_, self.experts_))

    def _append(self, loads):
        self.truth_ = None  # consumed: the next window needs its own truth

    def _forecast(self, horizon):
        if self.truth_ is None or len(self.truth_) == 0:
            raise PredictorError(
                "oracle.distribution needs observe_truth(loads_next) before each predict",
                "predictor.kind")
        return self.truth_[:horizon].sum(axis=0)

    def inference_cost(self, model, tokens=None):
        return PredictorCost(0.0, 0.0)


class TokenOracle(TokenPredictor):
    """``oracle.token``: every token's true experts, read from the trace (accuracy 1)."""

    kind = "oracle.token"
    family = "oracle"

    def __init__(self):
        pass

    def _fit(self, trace, iterations):
        pass

    def _predict(self, trace, iteration):
        return np.array(trace.experts[iteration])

    def inference_cost(self, model, tokens):
        return PredictorCost(0.0, 0.0)

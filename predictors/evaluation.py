"""Held-out evaluation: fit on the first iterations of a trace, score on the rest.

A predictor scored on the iterations it was fitted on reports memorisation, not
prediction; MoE-GPS's accuracy–overhead trade-off is only meaningful out of sample. Time
order is kept (fit on the past, score on the future), as in deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from predictors.base import DistributionPredictor, TokenPredictor, distribution_error
from predictors.errors import PredictorError


@dataclass(frozen=True)
class Evaluation:
    """Held-out figures of one predictor on one trace.

    `error_rate`: normalised L1 distance between predicted and true per-layer distributions,
    mean over layers and score iterations (a token predictor's distribution is the histogram
    of its predicted choices). `accuracy`: top-k hit rate, token predictors only (else None).
    """

    kind: str
    family: str
    fit_iterations: tuple[int, ...]
    score_iterations: tuple[int, ...]
    error_rate: float
    accuracy: float | None


def split_iterations(iterations: int, train_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(fit, score) iteration indices: the first ``round(n·train_fraction)`` and the rest.

    Both parts are non-empty and disjoint, so at least two iterations are needed.
    """
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)) \
            or not 0.0 < train_fraction < 1.0:
        raise PredictorError(f"must be > 0 and < 1, got {train_fraction!r}", "train_fraction")
    if iterations < 2:
        raise PredictorError(
            f"held-out evaluation needs at least 2 iterations, the trace has {iterations}",
            "workload.iterations")
    fit = min(iterations - 1, max(1, round(iterations * train_fraction)))
    return np.arange(fit), np.arange(fit, iterations)


def evaluate(predictor: DistributionPredictor | TokenPredictor, trace, train_fraction: float = 0.5,
             horizon: int = 1) -> Evaluation:
    """Fit `predictor` on the first part of `trace`, score it on the held-out rest.

    The predictor is left fitted on the fit part. `horizon` is the window of a distribution
    predictor (one prediction per `horizon` iterations, see `DistributionPredictor.score`).
    """
    fit, score = split_iterations(trace.iterations, train_fraction)
    if isinstance(predictor, TokenPredictor):
        predictor.fit(trace, fit)
        accuracy = predictor.score(trace, score)
        loads = trace.load_counts()
        error = float(np.mean([distribution_error(predictor.predict_loads(trace, int(i)), loads[i])
                               for i in score]))
    else:
        loads = trace.load_counts()
        predictor.fit(loads[fit])
        error = predictor.score(loads[score], horizon=horizon)
        accuracy = None
    return Evaluation(predictor.kind, predictor.family, tuple(int(i) for i in fit),
                      tuple(int(i) for i in score), error, accuracy)

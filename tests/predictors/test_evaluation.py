"""Held-out evaluation: fit and score iterations are disjoint, fit strictly before score."""

import numpy as np
import pytest

from predictors import PredictorError, evaluate, make_predictor, split_iterations
from predictors.distribution import MLEPredictor
from predictors.oracle import DistributionOracle
from predictors.token import FrequencyPredictor


class _SpyTokens(FrequencyPredictor):
    """Records which iterations it was fitted and scored on."""

    def _fit(self, trace, iterations):
        self.seen_fit_ = list(iterations)
        super()._fit(trace, iterations)

    def score(self, trace, iterations=None):
        self.seen_score_ = list(iterations)
        return super().score(trace, iterations)


class _SpyLoads(MLEPredictor):
    def _start(self, loads):
        self.seen_fit_ = loads.copy()
        super()._start(loads)


def test_split_is_ordered_disjoint_and_covers_the_trace():
    fit, score = split_iterations(10, 0.7)
    np.testing.assert_array_equal(fit, np.arange(7))
    np.testing.assert_array_equal(score, np.arange(7, 10))


@pytest.mark.parametrize("iterations, fraction", [(2, 0.01), (2, 0.99), (3, 0.5)])
def test_split_keeps_both_parts_non_empty(iterations, fraction):
    fit, score = split_iterations(iterations, fraction)
    assert len(fit) >= 1 and len(score) >= 1 and fit.max() < score.min()


def test_split_refuses_one_iteration_and_bad_fractions():
    with pytest.raises(PredictorError, match="at least 2"):
        split_iterations(1)
    for fraction in (0.0, 1.0, -0.5, True):
        with pytest.raises(PredictorError, match="> 0 and < 1"):
            split_iterations(8, fraction)


def test_token_evaluation_fits_and_scores_on_disjoint_iterations(synthetic_trace):
    spy = _SpyTokens()
    result = evaluate(spy, synthetic_trace, train_fraction=0.25)
    assert spy.seen_fit_ == [0, 1] == list(result.fit_iterations)
    assert spy.seen_score_ == [2, 3, 4, 5, 6, 7] == list(result.score_iterations)
    assert result.family == "token" and 0.0 < result.accuracy < 1.0 and 0 < result.error_rate < 1


def test_distribution_evaluation_fits_on_the_first_iterations_only(synthetic_trace):
    spy = _SpyLoads()
    result = evaluate(spy, synthetic_trace)
    np.testing.assert_array_equal(spy.seen_fit_, synthetic_trace.load_counts()[:4])
    assert result.accuracy is None
    expected = MLEPredictor().fit(synthetic_trace.load_counts()[:4]).score(
        synthetic_trace.load_counts()[4:])
    assert result.error_rate == pytest.approx(expected, rel=1e-12)


def test_distribution_oracle_is_exact_per_iteration_and_best_per_window(synthetic_trace):
    assert evaluate(DistributionOracle(), synthetic_trace).error_rate == 0.0
    # Over a 2-iteration window it knows the window's total, not each iteration's share.
    window = evaluate(DistributionOracle(), synthetic_trace, horizon=2).error_rate
    assert 0.0 < window < evaluate(MLEPredictor(), synthetic_trace, horizon=2).error_rate


def test_history_based_predictors_beat_uniform_on_a_skewed_trace(synthetic_trace):
    uniform = evaluate(make_predictor({"kind": "none"}), synthetic_trace).error_rate
    for kind in ("distribution.mle", "distribution.window", "distribution.ewma"):
        assert evaluate(make_predictor({"kind": kind}), synthetic_trace).error_rate < uniform

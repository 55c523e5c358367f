"""Distribution-Only predictors: exact forecasts on small arrays, online use, rolling score."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from predictors import PredictorError, make_predictor
from predictors.distribution import EWMAPredictor, MLEPredictor, UniformPredictor, WindowPredictor
from predictors.oracle import DistributionOracle

# [iterations=3, layers=1, experts=2]; per-iteration shares .25/.75, .5/.5, 1/0.
LOADS = np.array([[[1, 3]], [[2, 2]], [[4, 0]]])


def test_mle_is_normalised_sum_of_all_counts():
    np.testing.assert_allclose(MLEPredictor().fit(LOADS).predict(), [[7 / 12, 5 / 12]], rtol=1e-12)


def test_window_is_mean_of_last_w_distributions():
    np.testing.assert_allclose(WindowPredictor(window=2).fit(LOADS).predict(), [[0.75, 0.25]],
                               rtol=1e-12)


def test_window_longer_than_history_averages_all_of_it():
    np.testing.assert_allclose(WindowPredictor(window=5).fit(LOADS).predict(),
                               [[1.75 / 3, 1.25 / 3]], rtol=1e-12)


def test_ewma_blends_each_new_distribution_with_alpha():
    # s1 = (.25, .75); s2 = .5 (.5, .5) + .5 s1 = (.375, .625); s3 = .5 (1, 0) + .5 s2.
    np.testing.assert_allclose(EWMAPredictor(alpha=0.5).fit(LOADS).predict(), [[0.6875, 0.3125]],
                               rtol=1e-12)


@pytest.mark.parametrize("predictor", [MLEPredictor(), WindowPredictor(window=2),
                                       EWMAPredictor(alpha=0.3)], ids=lambda p: p.kind)
def test_update_one_iteration_at_a_time_equals_fitting_all(predictor):
    online = type(predictor)(**predictor.get_params()).fit(LOADS[:1])
    for row in LOADS[1:]:
        online.update(row)
    np.testing.assert_allclose(online.predict(), predictor.fit(LOADS).predict(), rtol=1e-12)
    assert online.iterations_seen_ == 3


def test_empty_history_predicts_uniform_then_learns():
    predictor = MLEPredictor().fit(np.zeros((0, 2, 4)))
    np.testing.assert_allclose(predictor.predict(), np.full((2, 4), 0.25), rtol=1e-12)
    predictor.update(np.array([[4, 0, 0, 0], [0, 0, 0, 2]]))
    np.testing.assert_allclose(predictor.predict(), [[1, 0, 0, 0], [0, 0, 0, 1]], rtol=1e-12)


def test_score_is_rolling_one_step_error_on_future_iterations():
    predictor = MLEPredictor().fit(LOADS[:1])
    # predict (.25, .75) vs (.5, .5): 0.25; then sum (3, 5) -> (3/8, 5/8) vs (1, 0): 0.625.
    assert predictor.score(LOADS[1:]) == pytest.approx((0.25 + 0.625) / 2, rel=1e-12)


def test_score_with_horizon_predicts_once_per_window():
    predictor = MLEPredictor().fit(LOADS[:1])
    # one prediction (.25, .75) for both iterations: errors 0.25 and 0.75.
    assert predictor.score(LOADS[1:], horizon=2) == pytest.approx(0.5, rel=1e-12)


def test_score_leaves_the_fitted_state_unchanged():
    predictor = EWMAPredictor().fit(LOADS[:2])
    before = predictor.predict()
    predictor.score(LOADS[2:])
    np.testing.assert_array_equal(predictor.predict(), before)
    assert predictor.iterations_seen_ == 2


def test_none_predicts_uniform_at_no_cost(tiny_model):
    predictor = make_predictor({"kind": "none"}).fit(LOADS)
    np.testing.assert_allclose(predictor.predict(), [[0.5, 0.5]], rtol=1e-12)
    cost = predictor.inference_cost(tiny_model)
    assert (cost.flops, cost.bytes) == (0.0, 0.0)
    assert predictor.family == "none"


def test_oracle_predicts_the_truth_it_is_told():
    oracle = DistributionOracle().fit(LOADS[:1])
    oracle.observe_truth(LOADS[1, :, :])
    np.testing.assert_allclose(oracle.predict(), [[0.5, 0.5]], rtol=1e-12)
    oracle.update(LOADS[1])
    with pytest.raises(PredictorError, match="observe_truth"):
        oracle.predict()
    assert oracle.score(LOADS[1:], horizon=1) == 0.0


def test_real_predictors_ignore_the_truth():
    predictor = MLEPredictor().fit(LOADS[:1])
    predictor.observe_truth(LOADS[2])
    np.testing.assert_allclose(predictor.predict(), [[0.25, 0.75]], rtol=1e-12)


def test_cost_formulas_scale_with_layers_and_experts(tiny_model):
    cells = tiny_model.moe_layers * tiny_model.experts
    assert MLEPredictor().inference_cost(tiny_model).flops == 3 * cells
    assert WindowPredictor(window=8).inference_cost(tiny_model).flops == 10 * cells
    assert EWMAPredictor().inference_cost(tiny_model).bytes == 3 * cells * 4


def test_update_with_wrong_shape_names_the_argument():
    predictor = MLEPredictor().fit(LOADS)
    with pytest.raises(PredictorError, match="layers, experts") as error:
        predictor.update(np.ones((2, 2)))
    assert error.value.field == "loads"


@pytest.mark.parametrize("bad", [np.ones((3, 2)), -np.ones((2, 1, 2)), np.full((1, 1, 2), np.nan)])
def test_fit_rejects_malformed_loads(bad):
    with pytest.raises(PredictorError, match="loads"):
        MLEPredictor().fit(bad)


def test_predict_before_fit_and_bad_horizon_are_clear_errors():
    with pytest.raises(PredictorError, match="not fitted"):
        MLEPredictor().predict()
    with pytest.raises(PredictorError, match=">= 1") as error:
        MLEPredictor().fit(LOADS).predict(horizon=0)
    assert error.value.field == "horizon"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.int64, (4, 2, 3), elements=st.integers(0, 50)),
       st.sampled_from([MLEPredictor(), WindowPredictor(window=3), EWMAPredictor(alpha=0.7),
                        UniformPredictor()]))
def test_predictions_are_distributions(loads, predictor):
    predicted = predictor.fit(loads).predict(horizon=2)
    assert predicted.shape == (2, 3)
    assert np.all(predicted >= 0)
    np.testing.assert_allclose(predicted.sum(axis=1), 1.0, rtol=1e-12)

"""Error rate and top-k accuracy on hand-made arrays (exact values)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from predictors import PredictorCost, PredictorError, distribution_error, normalise, top_k_accuracy
from predictors.base import top_k_indices


def test_error_rate_is_half_l1_of_normalised_rows_averaged():
    predicted = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    actual_counts = np.array([[1, 0, 3], [7, 0, 0]])
    # row 0: q = [.25, 0, .75], 0.5 * (.25 + .5 + .75) = 0.75; row 1: exact, 0.
    assert distribution_error(predicted, actual_counts) == pytest.approx(0.375, rel=1e-12)


def test_error_rate_of_disjoint_supports_is_one():
    assert distribution_error([[1, 0]], [[0, 5]]) == pytest.approx(1.0, rel=1e-12)


def test_error_rate_rejects_mismatched_experts():
    with pytest.raises(PredictorError, match="experts"):
        distribution_error(np.ones((1, 3)), np.ones((1, 4)))


def test_normalise_turns_zero_rows_uniform():
    np.testing.assert_allclose(normalise([[0, 0, 0, 0], [1, 3, 0, 0]]),
                               [[0.25] * 4, [0.25, 0.75, 0, 0]], rtol=1e-12)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.int64, (3, 5), elements=st.integers(0, 100)),
       arrays(np.int64, (3, 5), elements=st.integers(0, 100)))
def test_error_rate_lies_in_unit_interval_and_is_symmetric(a, b):
    error = distribution_error(a, b)
    assert 0.0 <= error <= 1.0 + 1e-12
    assert error == pytest.approx(distribution_error(b, a), abs=1e-12)
    assert distribution_error(a, a) == pytest.approx(0.0, abs=1e-12)


def test_top_k_accuracy_counts_set_hits_ignoring_order():
    predicted = np.array([[0, 1], [2, 3]])
    actual = np.array([[1, 0], [2, 4]])
    assert top_k_accuracy(predicted, actual) == pytest.approx(0.75, rel=1e-12)


def test_top_k_accuracy_needs_equal_shapes():
    with pytest.raises(PredictorError, match="shape"):
        top_k_accuracy(np.zeros((2, 2)), np.zeros((2, 1)))


def test_top_k_indices_break_ties_towards_lower_expert_ids():
    np.testing.assert_array_equal(top_k_indices(np.array([[1.0, 3.0, 3.0, 1.0]]), 3), [[1, 2, 0]])


def test_costs_add_up():
    assert PredictorCost(1.0, 2.0) + PredictorCost(3.0, 4.0) == PredictorCost(4.0, 6.0)

"""Token-to-Expert count predictors (frequency, conditional) and the token oracle."""

import numpy as np
import pytest

from predictors import PredictorError, evaluate, make_predictor, top_k_accuracy
from predictors.base import top_k_indices
from predictors.oracle import TokenOracle
from predictors.token import ConditionalPredictor, FrequencyPredictor
from workloads.trace import RoutingTrace

# Two layers, four experts, top-1. Layer 1 copies a rule of layer 0 (0 -> 2, 1 -> 3);
# token 5 always takes expert 1 at layer 0, token 7 expert 2.
IDS = [[5, 5, 7, 7], [5, 7, 9, 5]]
EXPERTS = [
    [[[1], [1], [2], [2]], [[3], [3], [2], [2]]],
    [[[1], [2], [0], [1]], [[3], [2], [2], [3]]],
]


def _global_baseline(trace, fit, score):
    """Every token gets its layer's most frequent experts in the fit iterations."""
    counts = trace.load_counts()[fit].sum(axis=0)                    # [L, E]
    predicted = np.repeat(top_k_indices(counts, trace.top_k)[:, None, :], trace.tokens, axis=1)
    return float(np.mean([top_k_accuracy(predicted, trace.experts[i]) for i in score]))


def test_frequency_picks_each_ids_most_frequent_expert_and_global_for_unseen(make_trace):
    trace = make_trace(EXPERTS, IDS, num_experts=4)
    predicted = FrequencyPredictor().fit(trace, [0]).predict(trace, 1)
    # layer 0: id 5 -> 1, id 7 -> 2, unseen id 9 -> the layer's most frequent (1 and 2 tie: 1).
    np.testing.assert_array_equal(predicted[0, :, 0], [1, 2, 1, 1])


def test_conditional_follows_the_previous_layers_true_expert(make_trace):
    trace = make_trace([[[[0], [1], [0], [1]], [[2], [3], [2], [3]]],
                        [[[1], [1], [0], [1]], [[3], [3], [2], [3]]]],
                       [[0, 0, 0, 0], [0, 0, 0, 0]], num_experts=4)
    conditional = ConditionalPredictor().fit(trace, [0])
    np.testing.assert_array_equal(conditional.predict(trace, 1)[1, :, 0], [3, 3, 2, 3])
    frequency = FrequencyPredictor().fit(trace, [0])
    # layer 0 (experts 0 and 1 tie at 2 counts: predicts 0): 1 hit of 4; layer 1: all hits.
    assert conditional.score(trace, [1]) == pytest.approx((0.25 + 1.0) / 2, rel=1e-12)
    assert frequency.score(trace, [1]) < conditional.score(trace, [1])


def test_conditional_falls_back_to_frequency_at_layer_zero(synthetic_trace):
    fit = np.arange(4)
    conditional = ConditionalPredictor().fit(synthetic_trace, fit)
    frequency = FrequencyPredictor().fit(synthetic_trace, fit)
    np.testing.assert_array_equal(conditional.predict(synthetic_trace, 5)[0],
                                  frequency.predict(synthetic_trace, 5)[0])


def test_count_predictors_beat_random_and_global_frequency_clearly(synthetic_trace):
    fit, score = np.arange(4), np.arange(4, 8)
    random_choice = synthetic_trace.top_k / synthetic_trace.num_experts      # 0.25
    baseline = _global_baseline(synthetic_trace, fit, score)
    frequency = FrequencyPredictor().fit(synthetic_trace, fit).score(synthetic_trace, score)
    conditional = ConditionalPredictor().fit(synthetic_trace, fit).score(synthetic_trace, score)
    assert baseline < random_choice + 0.1
    assert frequency > baseline + 0.1
    assert conditional > frequency


def test_predictions_are_distinct_valid_experts_per_token(synthetic_trace):
    predicted = ConditionalPredictor().fit(synthetic_trace, [0, 1]).predict(synthetic_trace, 3)
    assert predicted.shape == synthetic_trace.experts[3].shape
    assert predicted.min() >= 0 and predicted.max() < synthetic_trace.num_experts
    assert np.all(predicted[..., 0] != predicted[..., 1])


@pytest.mark.parametrize("kind", ["token.frequency", "token.conditional"])
def test_predictions_never_read_the_predicted_layers_experts(synthetic_trace, kind):
    predictor = make_predictor({"kind": kind}).fit(synthetic_trace, [0, 1, 2])
    scrambled = RoutingTrace(experts=synthetic_trace.experts.copy(),
                             token_ids=synthetic_trace.token_ids, meta=dict(synthetic_trace.meta))
    scrambled.experts[5, -1] = np.roll(scrambled.experts[5, -1], 1, axis=0)   # last layer only
    np.testing.assert_array_equal(predictor.predict(scrambled, 5),
                                  predictor.predict(synthetic_trace, 5))


def test_trace_without_token_ids_degrades_to_global_and_transition(synthetic_trace):
    bare = RoutingTrace(experts=synthetic_trace.experts, meta=dict(synthetic_trace.meta))
    fit, score = np.arange(4), np.arange(4, 8)
    frequency = FrequencyPredictor().fit(bare, fit).score(bare, score)
    assert frequency == pytest.approx(_global_baseline(bare, fit, score), rel=1e-12)
    assert ConditionalPredictor().fit(bare, fit).score(bare, score) > frequency + 0.05


def test_token_oracle_is_always_right_and_free(synthetic_trace, tiny_model):
    result = evaluate(TokenOracle(), synthetic_trace)
    assert (result.accuracy, result.error_rate) == (1.0, 0.0)
    assert TokenOracle().inference_cost(tiny_model, 512).flops == 0.0


def test_lookup_cost_has_no_flops_and_bytes_linear_in_tokens(tiny_model):
    one = FrequencyPredictor().inference_cost(tiny_model, 100)
    two = FrequencyPredictor().inference_cost(tiny_model, 200)
    assert one.flops == 0.0 and two.bytes == pytest.approx(2 * one.bytes, rel=1e-12)
    assert ConditionalPredictor().inference_cost(tiny_model, 100).bytes > one.bytes


def test_predicting_a_trace_of_another_shape_is_refused(synthetic_trace, make_trace):
    predictor = FrequencyPredictor().fit(synthetic_trace, [0])
    with pytest.raises(PredictorError, match="fitted on"):
        predictor.predict(make_trace(EXPERTS, IDS, num_experts=4), 0)

"""token.ffn: a numpy MLP whose accuracy and cost both grow with its hidden size."""

import numpy as np
import pytest

from predictors import PredictorError, evaluate, make_predictor
from predictors.ffn import FFNPredictor
from workloads.trace import RoutingTrace


@pytest.fixture(scope="module")
def small_and_big(synthetic_trace):
    small = evaluate(FFNPredictor(hidden=8), synthetic_trace)
    big_predictor = FFNPredictor(hidden=256)
    big = evaluate(big_predictor, synthetic_trace)
    return small, big, big_predictor


def test_bigger_hidden_layer_is_more_accurate_on_held_out_iterations(small_and_big):
    small, big, _ = small_and_big
    assert big.accuracy > small.accuracy + 0.05
    assert big.error_rate < small.error_rate
    assert set(small.fit_iterations).isdisjoint(small.score_iterations)


def test_bigger_hidden_layer_costs_more_flops_and_bytes(tiny_model):
    small = FFNPredictor(hidden=8).inference_cost(tiny_model, 512)
    big = FFNPredictor(hidden=256).inference_cost(tiny_model, 512)
    assert big.flops > 20 * small.flops and big.bytes > small.bytes


def test_flops_are_two_per_multiply_add_of_each_layers_network(tiny_model):
    # 2 x tokens x layers x (model hidden x h + h x experts) = 2 * 100 * 4 * (256*16 + 16*8)
    cost = FFNPredictor(hidden=16).inference_cost(tiny_model, 100)
    assert cost.flops == pytest.approx(2 * 100 * 4 * (256 * 16 + 16 * 8), rel=1e-12)


def test_training_loss_falls(small_and_big):
    losses = small_and_big[2].train_loss_
    assert losses[-1] < losses[0]


def test_same_seed_same_predictions_other_seed_other_network(synthetic_trace):
    fit = [0, 1, 2, 3]
    first = FFNPredictor(hidden=16, epochs=2, seed=3).fit(synthetic_trace, fit)
    again = FFNPredictor(hidden=16, epochs=2, seed=3).fit(synthetic_trace, fit)
    other = FFNPredictor(hidden=16, epochs=2, seed=4).fit(synthetic_trace, fit)
    np.testing.assert_array_equal(first.predict(synthetic_trace, 6),
                                  again.predict(synthetic_trace, 6))
    np.testing.assert_array_equal(first.train_loss_, again.train_loss_)
    assert not np.array_equal(first.params_["w1"], other.params_["w1"])


def test_learns_from_token_ids_when_the_trace_has_no_features(synthetic_trace):
    bare = RoutingTrace(experts=synthetic_trace.experts, token_ids=synthetic_trace.token_ids,
                        meta=dict(synthetic_trace.meta))
    result = evaluate(FFNPredictor(hidden=32, epochs=3), bare)
    assert result.accuracy > 0.25 + 0.1  # random top-2 of 8 hits 0.25


def test_prediction_never_reads_the_predicted_layers_experts(synthetic_trace, small_and_big):
    predictor = small_and_big[2]
    scrambled = RoutingTrace(experts=synthetic_trace.experts.copy(),
                             token_ids=synthetic_trace.token_ids,
                             features=synthetic_trace.features, meta=dict(synthetic_trace.meta))
    scrambled.experts[6, -1] = np.roll(scrambled.experts[6, -1], 1, axis=0)
    np.testing.assert_array_equal(predictor.predict(scrambled, 6),
                                  predictor.predict(synthetic_trace, 6))


def test_size_is_the_sweepable_alias_of_hidden():
    assert make_predictor({"kind": "token.ffn", "size": 32}).width == 32
    assert make_predictor({"kind": "token.ffn"}).width == 64
    with pytest.raises(PredictorError, match="disagree") as error:
        make_predictor({"kind": "token.ffn", "size": 32, "hidden": 16})
    assert error.value.field == "predictor.size"


def test_features_requested_but_absent_is_a_clear_error(synthetic_trace):
    bare = RoutingTrace(experts=synthetic_trace.experts, meta=dict(synthetic_trace.meta))
    with pytest.raises(PredictorError, match="features") as error:
        FFNPredictor(inputs="features").fit(bare, [0])
    assert error.value.field == "predictor.inputs"

"""token.lstm: optional torch; a small fit learns, is deterministic, and costs grow with size."""

import sys

import numpy as np
import pytest

from predictors import PredictorError, evaluate, make_predictor
from predictors.lstm import LSTMPredictor


def test_missing_torch_is_a_clear_error_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(PredictorError, match="pip install torch") as error:
        make_predictor({"kind": "token.lstm"})
    assert error.value.field == "predictor.kind"


def test_cost_grows_with_hidden_size(tiny_model):
    small = LSTMPredictor(hidden=8).inference_cost(tiny_model, 512)
    big = LSTMPredictor(size=256).inference_cost(tiny_model, 512)
    assert big.flops > 20 * small.flops and big.bytes > small.bytes


def test_small_lstm_learns_beyond_random_and_is_deterministic(synthetic_trace):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    first = LSTMPredictor(hidden=16, epochs=2, seed=1)
    result = evaluate(first, synthetic_trace)
    assert result.accuracy > 0.25 + 0.1          # random top-2 of 8 hits 0.25
    again = LSTMPredictor(hidden=16, epochs=2, seed=1).fit(synthetic_trace, result.fit_iterations)
    np.testing.assert_array_equal(first.predict(synthetic_trace, 7),
                                  again.predict(synthetic_trace, 7))
    predicted = first.predict(synthetic_trace, 7)
    assert predicted.shape == synthetic_trace.experts[7].shape
    assert np.all(predicted[..., 0] != predicted[..., 1])
    assert torch.get_num_threads() == threads   # the `threads` knob is scoped to fit/predict

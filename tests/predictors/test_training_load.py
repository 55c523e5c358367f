"""Training-load state detection and long-horizon share forecasting (arXiv 2404.16914)."""

from pathlib import Path

import numpy as np
import pytest

from predictors.errors import PredictorError
from predictors.training_load import (
    METHODS,
    LoadLSTMPredictor,
    detect_states,
    forecast_errors,
    forecast_origins,
    make_forecaster,
    summarise,
)
from workloads.models import model_spec
from workloads.moe_lm import TrainingLoadTrace

COMMITTED = (Path(__file__).resolve().parents[2] / "workloads" / "data"
             / "train_load_wikipedia.npz")
LEVEL = np.array([[0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]])  # [layers, experts]


def synthetic(boundaries=(300, 450), steps=1000, noise=0.0, seed=0):
    """Shares that jump around (Dirichlet draws) before each layer's boundary, then hold LEVEL
    (plus optional Gaussian noise, renormalised)."""
    rng = np.random.default_rng(seed)
    shares = np.broadcast_to(LEVEL, (steps, 2, 4)).copy()
    if noise:
        shares = np.clip(shares + rng.normal(0, noise, shares.shape), 1e-4, None)
        shares /= shares.sum(axis=-1, keepdims=True)
    for layer, boundary in enumerate(boundaries):
        shares[:boundary, layer] = rng.dirichlet(np.ones(4), size=boundary)
    return shares


def test_boundary_is_exact_on_a_series_constant_after_it():
    states = detect_states(synthetic(), window=50, variance_threshold=1e-6,
                           range_threshold=1e-3, smooth=1)
    assert states.boundary_per_layer.tolist() == [300, 450]
    assert states.boundary == 450
    assert not states.stable[299, 0] and states.stable[300, 0] and states.stable[-1].all()
    assert states.stable[:, 1].sum() == 1000 - 450
    assert states.variance.shape == states.range.shape == (1000 - 50 + 1, 2, 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boundary_lies_within_one_window_of_the_truth_with_noise_and_smoothing(seed):
    window, smooth = 100, 20
    states = detect_states(synthetic(noise=0.01, seed=seed), window=window,
                           variance_threshold=2e-4, range_threshold=0.06, smooth=smooth)
    for found, true in zip(states.boundary_per_layer, (300, 450)):
        assert true - window - smooth <= found <= true


def test_windowed_statistics_are_variance_and_range_of_the_smoothed_level():
    shares = synthetic(noise=0.02)
    states = detect_states(shares, window=10, variance_threshold=1.0, range_threshold=1.0,
                           smooth=5)
    level = shares[7:7 + 10 + 4].copy()
    level = np.stack([level[i:i + 5].mean(axis=0) for i in range(10)])
    np.testing.assert_allclose(states.variance[7], level.var(axis=0), rtol=1e-9)
    np.testing.assert_allclose(states.range[7], level.max(axis=0) - level.min(axis=0), rtol=1e-9)
    assert states.boundary == 0  # thresholds no series can exceed: stable from the start


def test_a_layer_that_never_settles_has_no_overall_boundary():
    shares = synthetic(boundaries=(300, 1000))
    states = detect_states(shares, window=50, variance_threshold=1e-6, range_threshold=1e-3,
                           smooth=1)
    assert states.boundary_per_layer.tolist() == [300, 1000] and states.boundary is None


def test_a_late_level_shift_moves_the_boundary_after_it():
    shares = synthetic()
    shares[700:, 0] = LEVEL[0][::-1]
    states = detect_states(shares, window=50, variance_threshold=1e-6, range_threshold=1e-3,
                           smooth=1)
    assert states.boundary_per_layer[0] == 700


@pytest.mark.parametrize("kwargs, message", [
    ({"window": 1}, "state.window: must be between 2 and"),
    ({"window": 2000}, "state.window: must be between 2 and 1000"),
    ({"smooth": 0}, "state.smooth: must be between 1 and"),
    ({"variance_threshold": -1.0}, "state.variance_threshold: must be >= 0"),
    ({"range_threshold": float("nan")}, "state.range_threshold"),
])
def test_bad_detection_parameters_are_predictor_errors(kwargs, message):
    with pytest.raises(PredictorError, match=message):
        detect_states(synthetic(), **{"smooth": 1, **kwargs})


def test_shares_must_be_three_dimensional_and_finite():
    with pytest.raises(PredictorError, match="shares: must be a non-empty 3-D array"):
        detect_states(np.ones((10, 4)))
    with pytest.raises(PredictorError, match="finite shares >= 0"):
        detect_states(np.full((10, 1, 2), -0.5))


# --- forecasting -------------------------------------------------------------------------------

def test_window_forecaster_is_exact_on_a_constant_series():
    shares = np.broadcast_to(LEVEL, (600, 2, 4)).copy()
    rows = forecast_errors(shares, [100, 200], [300, 350], ("window",), window=50)
    assert len(rows) == 2 * 2 * 2 * 4
    assert max(abs(row.predicted - row.true) for row in rows) < 1e-12   # exact up to rounding
    assert all(error < 1e-12 for error in summarise(rows).values())


def test_error_is_relative_to_the_true_mean_share_with_a_floor():
    rng = np.random.default_rng(5)
    shares = rng.dirichlet(np.ones(4), size=(400, 2))
    shares[250:, 0] = [0.5, 0.5, 0.0, 0.0]          # experts 2-3 of layer 0 get nothing after
    rows = forecast_errors(shares, [50], [240], ("window",), min_share=0.01, window=20)
    history = shares[221:241].mean(axis=0)
    truth = shares[241:291].mean(axis=0)
    for row in rows:
        expected = abs(history[row.layer, row.expert] - truth[row.layer, row.expert]) / max(
            truth[row.layer, row.expert], 0.01)
        assert row.error == pytest.approx(expected, rel=1e-9)
        assert row.true == pytest.approx(truth[row.layer, row.expert], rel=1e-12)


def test_arima_forecasts_a_noisy_stable_series_with_a_small_finite_error():
    pytest.importorskip("statsmodels")
    shares = synthetic(boundaries=(0, 0), steps=700, noise=0.01)
    rows = forecast_errors(shares, [200], [450], ("arima",), arima_window=200)
    errors = np.array([row.error for row in rows])
    assert np.all(np.isfinite(errors)) and errors.mean() < 0.05


def test_lstm_forecasts_a_noisy_stable_series_with_a_small_finite_error():
    pytest.importorskip("torch")
    shares = synthetic(boundaries=(0, 0), steps=700, noise=0.01)
    lstm = {"hidden": 4, "lookback": 4, "block": 10, "epochs": 2, "fit_window": 400}
    rows = forecast_errors(shares, [100, 200], [450], ("lstm",), lstm=lstm)
    errors = np.array([row.error for row in rows])
    assert np.all(np.isfinite(errors)) and errors.mean() < 0.1
    again = forecast_errors(shares, [100, 200], [450], ("lstm",), lstm=lstm)
    assert [row.predicted for row in again] == [row.predicted for row in rows]  # seeded


def test_lstm_is_a_distribution_predictor_with_a_cost():
    pytest.importorskip("torch")
    shares = synthetic(boundaries=(0, 0), steps=300, noise=0.01)
    model = LoadLSTMPredictor(hidden=4, lookback=4, block=5, epochs=1).fit(shares)
    forecast = model.predict(50)
    assert forecast.shape == (2, 4) and np.allclose(forecast.sum(axis=1), 1.0)
    model.update(shares[-1])
    assert model.iterations_seen_ == 301 and len(model.train_loss_) == 1
    short = LoadLSTMPredictor(lookback=4, block=5).fit(shares[:20])   # too short to train
    np.testing.assert_allclose(short.predict(10), shares[:20].mean(axis=0), rtol=1e-9)
    cost = model.inference_cost(model_spec("mixtral-8x7b"))
    assert cost.flops == 32 * 8 * 5 * (8 * (4 + 16) + 8) and cost.bytes > 0
    with pytest.raises(PredictorError, match="predictor.block: must be >= 1"):
        LoadLSTMPredictor(block=0).fit(shares)


def test_unknown_method_is_named():
    with pytest.raises(PredictorError, match="methods: must be one of window, arima, lstm"):
        make_forecaster("prophet")


def test_origins_leave_room_for_the_longest_horizon_in_the_stable_part():
    origins = forecast_origins(6000, 800, [1000, 2000], 200, 5)
    assert origins.tolist() == [999, 1749, 2499, 3249, 3999]
    with pytest.raises(PredictorError, match="horizon: 2000 steps do not fit in the stable part"):
        forecast_origins(2900, 800, [1000, 2000], 200, 5)
    with pytest.raises(PredictorError, match="longest horizon allowed is 1800"):
        forecast_origins(3000, 1000, [2000], 200, 5)


def test_committed_trace_goes_from_transient_to_stable_and_is_forecast_by_all_methods():
    pytest.importorskip("torch")
    pytest.importorskip("statsmodels")
    trace = TrainingLoadTrace.load(COMMITTED)
    states = detect_states(trace.shares)
    assert states.boundary is not None and 0 < states.boundary < trace.steps // 4
    early = states.range[0].max()
    late = states.range[states.boundary:].max()
    assert early > 3 * late           # the transient swings far more than the stable state
    origins = forecast_origins(trace.steps, states.boundary, [1000, 2000], 200, 1)
    rows = forecast_errors(trace.shares, [1000, 2000], origins, METHODS, arima_window=200,
                           lstm={"epochs": 2, "hidden": 8})
    summary = summarise(rows)
    assert set(summary) == {(m, h) for m in METHODS for h in (1000, 2000)}
    assert all(np.isfinite(error) and 0 < error < 0.2 for error in summary.values())

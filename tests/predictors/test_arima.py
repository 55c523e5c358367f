"""distribution.arima: optional statsmodels, exact AR(1)/random-walk forecasts, lazy re-fits."""

import sys

import numpy as np
import pytest

from predictors import PredictorError, make_predictor
from predictors import arima as arima_module
from predictors.arima import ARIMAPredictor


def _ar1_loads(steps=60, phi=0.8, seed=0):
    """Two experts whose share of 1000 pairs follows an AR(1) around 0.6."""
    rng = np.random.default_rng(seed)
    share = np.empty(steps)
    share[0] = 0.6
    for t in range(1, steps):
        share[t] = 0.6 + phi * (share[t - 1] - 0.6) + 0.03 * rng.standard_normal()
    share = np.clip(share, 0.05, 0.95)
    counts = np.round(share * 1000)
    return np.stack([counts, 1000 - counts], axis=-1)[:, None, :]      # [steps, 1, 2]


def test_missing_statsmodels_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "statsmodels.tsa.arima.model", None)
    with pytest.raises(PredictorError, match=r"pip install moesim\[forecast\]") as error:
        make_predictor({"kind": "distribution.arima"})
    assert error.value.field == "predictor.kind"


@pytest.mark.parametrize("order", [[1, 0], [4, 0, 0], [1, 3, 0], [1.0, 0, 0], "(1,0,0)"])
def test_order_must_be_three_small_integers(order):
    with pytest.raises(PredictorError, match="order|p, d, q") as error:
        make_predictor({"kind": "distribution.arima", "order": order})
    assert error.value.field == "predictor.order"


def test_ar1_forecast_matches_statsmodels():
    statsmodels_arima = pytest.importorskip("statsmodels.tsa.arima.model")
    loads = _ar1_loads()
    predicted = ARIMAPredictor(order=[1, 0, 0], fit_window=128).fit(loads).predict()
    share = loads[:, 0, 0] / 1000
    reference = statsmodels_arima.ARIMA(share, order=(1, 0, 0), trend="c").fit().forecast(1)[0]
    assert predicted[0, 0] == pytest.approx(reference, abs=2e-4)
    assert predicted.sum() == pytest.approx(1.0, rel=1e-12)


def test_random_walk_forecasts_the_last_distribution():
    pytest.importorskip("statsmodels")
    loads = _ar1_loads(steps=30)
    predicted = ARIMAPredictor(order=[0, 1, 0], min_history=4).fit(loads).predict(horizon=3)
    np.testing.assert_allclose(predicted[0], loads[-1, 0] / 1000, rtol=1e-9)


def test_updates_between_refits_do_not_call_statsmodels(monkeypatch):
    pytest.importorskip("statsmodels")
    calls = []
    real = arima_module._fit_one
    monkeypatch.setattr(arima_module, "_fit_one", lambda *a: calls.append(1) or real(*a))
    loads = _ar1_loads(steps=40)
    predictor = ARIMAPredictor(refit_every=5).fit(loads[:30])
    assert len(calls) == 2                                   # one fit per series
    for row in loads[30:34]:
        predictor.update(row)
    assert len(calls) == 2
    predictor.update(loads[34])
    assert len(calls) == 4 and predictor.since_refit_ == 0


def test_online_updates_equal_a_fit_on_the_same_history():
    pytest.importorskip("statsmodels")
    loads = _ar1_loads(steps=40)
    online = ARIMAPredictor(refit_every=1000).fit(loads[:30])
    for row in loads[30:]:
        online.update(row)
    # Same parameters (fitted on the first 30), residuals replayed vs advanced one by one.
    batch = ARIMAPredictor(refit_every=1000).fit(loads[:30])
    batch.update(loads[30:])
    np.testing.assert_allclose(online.predict(), batch.predict(), rtol=1e-12)


def test_short_history_falls_back_to_the_mean_share():
    pytest.importorskip("statsmodels")
    loads = _ar1_loads(steps=5)
    predicted = ARIMAPredictor(min_history=16).fit(loads).predict()
    np.testing.assert_allclose(predicted[0], loads[:, 0].sum(axis=0) / 5000, rtol=1e-12)


def test_refitting_more_often_costs_more(tiny_model):
    often = ARIMAPredictor(refit_every=1).inference_cost(tiny_model)
    rarely = ARIMAPredictor(refit_every=100).inference_cost(tiny_model)
    assert often.flops > 50 * rarely.flops > 0

"""One registry of predictor kinds (STYLE.md item 7): YAML names map to classes here only.

``make_predictor({"kind": "token.ffn", "hidden": 128})`` builds and validates one; an unknown
kind lists the known ones, an unknown or out-of-range hyper-parameter names
``predictor.<param>`` and what is allowed, so `moesim validate` can report it in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from predictors.arima import ARIMAPredictor
from predictors.base import DistributionPredictor, TokenPredictor
from predictors.distribution import EWMAPredictor, MLEPredictor, UniformPredictor, WindowPredictor
from predictors.errors import PredictorError
from predictors.ffn import FFNPredictor
from predictors.lstm import LSTMPredictor
from predictors.oracle import DistributionOracle, TokenOracle
from predictors.token import ConditionalPredictor, FrequencyPredictor
from predictors.training_load import LoadLSTMPredictor

PREDICTORS: dict[str, type] = {
    cls.kind: cls
    for cls in (
        UniformPredictor,
        MLEPredictor,
        WindowPredictor,
        EWMAPredictor,
        ARIMAPredictor,
        LoadLSTMPredictor,
        DistributionOracle,
        FrequencyPredictor,
        ConditionalPredictor,
        FFNPredictor,
        LSTMPredictor,
        TokenOracle,
    )
}

FAMILIES = ("none", "distribution", "token", "oracle")


def _lookup(kind: Any, field: str) -> type:
    if not isinstance(kind, str) or kind not in PREDICTORS:
        known = ", ".join(sorted(PREDICTORS))
        raise PredictorError(f"unknown predictor {kind!r}; known: {known}", f"{field}.kind")
    return PREDICTORS[kind]


def predictor_family(kind: str, field: str = "predictor") -> str:
    """"none" | "distribution" | "token" | "oracle" (the strategy column of gps.csv)."""
    return _lookup(kind, field).family


def predictor_interface(kind: str, field: str = "predictor") -> str:
    """Which interface a kind speaks: "distribution" or "token" (oracles and none included)."""
    cls = _lookup(kind, field)
    return "token" if issubclass(cls, TokenPredictor) else "distribution"


def make_predictor(spec: Mapping[str, Any], field: str = "predictor"):
    """A validated, unfitted predictor from ``{kind: NAME, **hyper-parameters}``."""
    if not isinstance(spec, Mapping):
        raise PredictorError(f"must be a mapping with a kind, got {spec!r}", field)
    if "kind" not in spec:
        known = ", ".join(sorted(PREDICTORS))
        raise PredictorError(f"missing; known kinds: {known}", f"{field}.kind")
    cls = _lookup(spec["kind"], field)
    params = {key: value for key, value in spec.items() if key != "kind"}
    allowed = cls.param_names()
    for key in params:
        if key not in allowed:
            listed = ", ".join(allowed) if allowed else "none"
            raise PredictorError(
                f"unknown parameter for {cls.kind}; allowed: {listed}", f"{field}.{key}")
    predictor = cls(**params)
    predictor.check_params(field)
    return predictor


def predictor_size(predictor: DistributionPredictor | TokenPredictor) -> int | None:
    """The swept size of a learned predictor (hidden units), None for the others."""
    return getattr(predictor, "width", None)

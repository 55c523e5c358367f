"""One registry of predictor kinds (STYLE.md item 7): YAML names map to classes here only.

``make_predictor({"kind": "token.ffn", "hidden": 128})`` builds and validates one; an unknown
kind lists the known ones, an unknown or out-of-range hyper-parameter names
``predictor.<param>`` and what is allowed, so `moesim validate` can report it in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulator.registry import Registry, params_from_signature
from predictors.arima import ARIMAPredictor
from predictors.base import DistributionPredictor, TokenPredictor
from predictors.distribution import EWMAPredictor, MLEPredictor, UniformPredictor, WindowPredictor
from predictors.errors import PredictorError
from predictors.ffn import FFNPredictor
from predictors.lstm import LSTMPredictor
from predictors.oracle import DistributionOracle, TokenOracle
from predictors.token import ConditionalPredictor, FrequencyPredictor
from predictors.training_load import LoadLSTMPredictor

# Constructors store hyper-parameters (scikit-learn style) and `check_params` checks their values;
# the registry's parameter model is the constructor's signature, so unknown keys fail at load time.
PREDICTORS = Registry("predictor", PredictorError, sort_names=True)
for _cls in (
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
):
    PREDICTORS.register(_cls.kind, _cls, params_from_signature(_cls.__init__, f"{_cls.__name__}Params"))

FAMILIES = ("none", "distribution", "token", "oracle")


def predictor_family(kind: str, field: str = "predictor") -> str:
    """"none" | "distribution" | "token" | "oracle" (the strategy column of gps.csv)."""
    return PREDICTORS.factory(kind, f"{field}.kind").family


def predictor_interface(kind: str, field: str = "predictor") -> str:
    """Which interface a kind speaks: "distribution" or "token" (oracles and none included)."""
    cls = PREDICTORS.factory(kind, f"{field}.kind")
    return "token" if issubclass(cls, TokenPredictor) else "distribution"


def make_predictor(spec: Mapping[str, Any], field: str = "predictor"):
    """A validated, unfitted predictor from ``{kind: NAME, **hyper-parameters}``."""
    if not isinstance(spec, Mapping):
        raise PredictorError(f"must be a mapping with a kind, got {spec!r}", field)
    if "kind" not in spec:
        raise PredictorError(f"missing; known kinds: {PREDICTORS.known()}", f"{field}.kind")
    kind = spec["kind"]
    params = PREDICTORS.parse(kind, {key: value for key, value in spec.items() if key != "kind"}, field)
    predictor = PREDICTORS.factory(kind, f"{field}.kind")(**params.given())
    predictor.check_params(field)
    return predictor


def predictor_size(predictor: DistributionPredictor | TokenPredictor) -> int | None:
    """The swept size of a learned predictor (hidden units), None for the others."""
    return getattr(predictor, "width", None)

"""The predictor registry: names to classes, families, and errors that name the field."""

import importlib.util

import pytest

from predictors import (
    FAMILIES,
    PREDICTORS,
    PredictorError,
    make_predictor,
    predictor_family,
    predictor_interface,
    predictor_size,
)

OPTIONAL = {"distribution.arima": "statsmodels", "token.lstm": "torch", "distribution.lstm": "torch"}


def _installed(kind):
    module = OPTIONAL.get(kind)
    return module is None or importlib.util.find_spec(module) is not None


def test_registry_lists_every_kind_of_the_design():
    assert set(PREDICTORS) == {
        "none", "distribution.mle", "distribution.window", "distribution.ewma",
        "distribution.arima", "distribution.lstm", "oracle.distribution", "token.frequency",
        "token.conditional",
        "token.ffn", "token.lstm", "oracle.token"}


@pytest.mark.parametrize("kind", sorted(PREDICTORS))
def test_every_kind_builds_with_defaults_and_belongs_to_a_family(kind):
    if not _installed(kind):
        pytest.skip(f"{OPTIONAL[kind]} not installed")
    predictor = make_predictor({"kind": kind})
    assert predictor.kind == kind
    assert predictor_family(kind) in FAMILIES
    assert predictor_interface(kind) in ("distribution", "token")


def test_families_follow_the_kind_prefix():
    assert predictor_family("none") == "none"
    assert predictor_family("distribution.ewma") == "distribution"
    assert predictor_family("token.ffn") == "token"
    assert predictor_family("oracle.token") == "oracle"
    assert predictor_interface("oracle.token") == "token"
    assert predictor_interface("oracle.distribution") == "distribution"


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(PredictorError, match="known: .*distribution.mle.*token.ffn") as error:
        make_predictor({"kind": "token.transformer"})
    assert error.value.field == "predictor.kind"
    with pytest.raises(PredictorError, match="known"):
        predictor_family("psychic")


def test_unknown_parameter_names_the_field_and_lists_allowed_ones():
    with pytest.raises(PredictorError, match="allowed: window") as error:
        make_predictor({"kind": "distribution.window", "windw": 4}, field="scenario.predictor")
    assert error.value.field == "scenario.predictor.windw"
    with pytest.raises(PredictorError, match="allowed: none"):
        make_predictor({"kind": "distribution.mle", "alpha": 0.1})


@pytest.mark.parametrize("spec, field, message", [
    ({"kind": "distribution.window", "window": 0}, "predictor.window", ">= 1"),
    ({"kind": "distribution.window", "window": 2.5}, "predictor.window", "integer"),
    ({"kind": "distribution.ewma", "alpha": 1.5}, "predictor.alpha", "<= 1"),
    ({"kind": "distribution.ewma", "alpha": True}, "predictor.alpha", "number"),
    ({"kind": "token.ffn", "hidden": 0}, "predictor.hidden", "between 1"),
    ({"kind": "token.ffn", "inputs": "pixels"}, "predictor.inputs", "one of auto"),
    ({"kind": "token.frequency", "smoothing": 0}, "predictor.smoothing", "> 0"),
])
def test_out_of_range_values_name_the_parameter(spec, field, message):
    with pytest.raises(PredictorError, match=message) as error:
        make_predictor(spec)
    assert error.value.field == field


def test_spec_must_be_a_mapping_with_a_kind():
    with pytest.raises(PredictorError, match="mapping"):
        make_predictor("token.ffn")
    with pytest.raises(PredictorError, match="missing") as error:
        make_predictor({"hidden": 3})
    assert error.value.field == "predictor.kind"


def test_size_is_reported_for_learned_predictors_only():
    assert predictor_size(make_predictor({"kind": "token.ffn", "size": 128})) == 128
    assert predictor_size(make_predictor({"kind": "distribution.mle"})) is None


def test_constructor_only_stores_hyper_parameters():
    predictor = make_predictor({"kind": "token.ffn", "hidden": 16, "seed": 2})
    assert predictor.get_params()["hidden"] == 16
    assert not [name for name in vars(predictor) if name.endswith("_")]

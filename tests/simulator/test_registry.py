"""The one registry shape: lookup with "did you mean", parameter models with the project's wording."""

from typing import Literal

import pytest
from pydantic import Field

from predictors.registry import PREDICTORS
from simulator.engine.collectives import ALGORITHM_REGISTRIES, COLLECTIVES
from simulator.errors import ScenarioError
from simulator.planning.placement import BALANCERS
from simulator.registry import Params, Registry
from simulator.scenario.traces import TRACE_SOURCES
from topologies.registry import BUILDERS


class Knobs(Params):
    count: int | None = Field(None, ge=1)
    share: float = Field(0.5, ge=0.0, le=1.0)
    mode: Literal["fast", "exact"] = "fast"
    flag: bool = False


@pytest.fixture
def registry():
    registry = Registry("widget", ScenarioError, param_noun="option")
    registry.register("gadget", dict, Knobs)
    registry.register("lazy", "json:dumps")
    return registry


def test_unknown_name_suggests_the_close_one_and_lists_all(registry):
    with pytest.raises(ScenarioError, match=r"^w.kind: unknown widget 'gadgt' \(did you mean 'gadget'\?\); "
                                            r"known: gadget, lazy$"):
        registry.get("gadgt", "w.kind")


def test_lazy_factory_is_imported_on_use(registry):
    import json

    assert registry.factory("lazy", "w") is json.dumps


@pytest.mark.parametrize(("values", "message"), [
    ({"count": True}, "w.count: must be an integer >= 1, got True"),
    ({"count": 0}, "w.count: must be an integer >= 1, got 0"),
    ({"share": 2}, "w.share: must be a number >= 0 and <= 1, got 2"),
    ({"share": float("nan")}, "w.share: must be a number >= 0 and <= 1, got nan"),
    ({"mode": "slow"}, "w.mode: must be one of fast, exact, got 'slow'"),
    ({"flag": 1}, "w.flag: must be true or false, got 1"),
    ({"cont": 1}, "w.cont: unknown option 'cont' for widget 'gadget' (did you mean 'count'?); "
                  "allowed: count, share, mode, flag"),
])
def test_parameter_errors_name_the_path_and_what_is_allowed(registry, values, message):
    with pytest.raises(ScenarioError) as error:
        registry.parse("gadget", values, "w")
    assert str(error.value) == message


def test_parsed_parameters_are_typed_frozen_and_remember_what_was_set(registry):
    params = registry.parse("gadget", {"share": 1}, "w")
    assert params.share == 1.0 and isinstance(params.share, float) and params.given() == {"share": 1.0}
    with pytest.raises(Exception):
        params.share = 0.2


def test_every_pluggable_kind_uses_the_one_shape():
    for registry in (PREDICTORS, BALANCERS, BUILDERS, TRACE_SOURCES, COLLECTIVES, *ALGORITHM_REGISTRIES.values()):
        assert isinstance(registry, Registry) and len(registry) > 0
        for name in registry:
            assert issubclass(registry.get(name, "kind").params, Params)

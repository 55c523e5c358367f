"""One registry shape for every pluggable kind (STYLE.md items 7 and 13).

Predictors, balancers, topology builders, trace sources and collective algorithms each keep one
`Registry`: YAML name -> factory, plus the kind's parameter model (a pydantic `Params`). The
scenario validates every kind-specific section against its model once, at load time; code inside
receives the typed, frozen parameters and checks nothing again. Errors name the YAML path and list
what is allowed, with a "did you mean" for near misses.

This module depends only on pydantic and the standard library, so `topologies`, `workloads` and
`predictors` may use it without importing the simulator (the layer test allows it next to
`simulator.errors`).
"""

from __future__ import annotations

import difflib
import inspect
import importlib
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import annotated_types
import pydantic
from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Base of every kind's parameter model: unknown keys refused, frozen, strict (no bool as int,
    no "4" as a number), so a YAML typo fails at load time rather than inside a run."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    def given(self) -> dict[str, Any]:
        """The parameters the user set (defaults left out), for factories that take keywords."""
        return {name: getattr(self, name) for name in type(self).model_fields if name in self.model_fields_set}


class SignatureParams(Params):
    """Parameters mirrored from a function's signature: any value passes here, the function checks."""

    model_config = ConfigDict(strict=False, arbitrary_types_allowed=True)


class NoParams(Params):
    """A kind without parameters."""


def sub(field: str, key: Any) -> str:
    """YAML path of `key` under `field`: ``sub("topology", "gpus") -> "topology.gpus"``."""
    if isinstance(key, int):
        return f"{field}[{key}]"
    return f"{field}.{key}" if field else str(key)


def did_you_mean(name: Any, choices: Iterator[str] | list[str] | tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else ""."""
    close = difflib.get_close_matches(str(name), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class Entry:
    """One registered kind: its name, what builds it and the model its parameters follow."""

    name: str
    factory: Any
    params: type[Params]


class Registry:
    """name -> `Entry`, in registration order.

    `noun` names the kind in messages ("balancer"), `param_noun` its parameters ("option");
    `error` is the package's own ValueError subclass taking (message, field); `kind_key` is the
    YAML key that names the kind (``kind``, or ``builder`` for topologies); `scope` follows the name
    in messages (``unknown algorithm 'x' for all_reduce``).
    """

    def __init__(self, noun: str, error: Callable[..., Exception], param_noun: str = "parameter",
                 sort_names: bool = False, kind_key: str = "kind", scope: str = ""):
        self.noun = noun
        self.scope = scope
        self.kind_key = kind_key
        self.param_noun = param_noun
        self.error = error
        self.sort_names = sort_names
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, factory: Any, params: type[Params] = NoParams) -> Any:
        if name in self._entries:
            raise ValueError(f"{self.noun} {name!r} registered twice")
        self._entries[name] = Entry(name, factory, params)
        return factory

    def names(self) -> tuple[str, ...]:
        names = tuple(self._entries)
        return tuple(sorted(names)) if self.sort_names else names

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __getitem__(self, name: str) -> Any:
        return self.factory(name, "kind")

    def __len__(self) -> int:
        return len(self._entries)

    def known(self) -> str:
        return ", ".join(self.names())

    def get(self, name: Any, field: str) -> Entry:
        """The entry called `name`; an unknown name lists the known ones (`field` is its YAML path)."""
        if name not in self:
            hint = did_you_mean(name, self.names())
            raise self.error(f"unknown {self.noun} {name!r}{self.scope}{hint}; known: {self.known()}", field)
        return self._entries[name]

    def factory(self, name: Any, field: str) -> Any:
        """What builds `name`. A factory registered as ``"package.module:function"`` is imported on
        first use, so a registry can list heavy kinds (the ILP's scipy) without importing them."""
        factory = self.get(name, field).factory
        if isinstance(factory, str):
            module, _, attribute = factory.partition(":")
            factory = getattr(importlib.import_module(module), attribute)
        return factory

    def parse(self, name: Any, values: Mapping[str, Any], field: str) -> Params:
        """`values` checked against the kind's parameter model; errors name ``field.<key>``."""
        entry = self.get(name, sub(field, self.kind_key))
        return parse_params(entry.params, values, field, f"{self.noun} {name!r}", self.param_noun,
                            self.error)


def parse_params(model: type[Params], values: Mapping[str, Any], field: str, owner: str,
                 param_noun: str, error: Callable[..., Exception]) -> Params:
    """Validate `values` against `model`; the first problem becomes one `error(message, path)`."""
    if not isinstance(values, Mapping):
        raise error(f"must be a mapping of {param_noun}s, got {values!r}", field)
    allowed = list(model.model_fields)
    for key in values:
        if key not in model.model_fields:
            listed = ", ".join(allowed) if allowed else "none"
            hint = did_you_mean(key, allowed)
            raise error(f"unknown {param_noun} {key!r} for {owner}{hint}; allowed: {listed}",
                        sub(field, key))
    try:
        return model.model_validate(dict(values))
    except pydantic.ValidationError as failure:
        first = failure.errors()[0]
        loc = first["loc"]
        key = loc[0] if loc else None
        path = field
        for part in loc:
            if isinstance(part, int) or not str(part).startswith(("function-", "literal[")):
                path = sub(path, part)
        if first["type"] == "missing":
            raise error("missing (required)", path) from None
        if first["type"] in ("value_error", "assertion_error"):
            message = str(first.get("ctx", {}).get("error", first["msg"]))
            raise error(message, path) from None
        info = model.model_fields.get(key) if isinstance(key, str) else None
        wanted = describe_field(info) if info is not None and len(loc) == 1 else first["msg"].lower()
        value = values.get(key) if isinstance(key, str) and len(loc) == 1 else first.get("input")
        raise error(f"must be {wanted}, got {value!r}", path) from None


def describe_field(info: pydantic.fields.FieldInfo) -> str:
    """What a field accepts, in the project's wording: ``an integer >= 1``, ``a number > 0 and <= 1``,
    ``true or false``, ``one of a, b``."""
    annotation = _without_none(info.annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(str(choice) for choice in typing.get_args(annotation))
    if annotation is bool:
        return "true or false"
    bounds = []
    for item in info.metadata:
        for attribute, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            limit = getattr(item, attribute, None)
            if limit is not None and isinstance(item, annotated_types.BaseMetadata):
                if isinstance(limit, float) and not math.isfinite(limit):
                    continue
                bounds.append(f"{symbol} {limit:g}" if isinstance(limit, float) else f"{symbol} {limit}")
    text = {int: "an integer", float: "a number", str: "a string"}.get(annotation, "valid")
    if bounds:
        text += " " + " and ".join(bounds)
    return text


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def params_from_signature(function: Callable[..., Any], name: str, skip: tuple[str, ...] = ()) -> type[Params]:
    """A parameter model whose fields are `function`'s keyword arguments (values unchecked here).

    For kinds whose factory is a public Python function that checks its own values (topology
    builders, predictors' constructors, the synthetic trace generator): the model refuses unknown
    keys at load time and keeps the function the one place its ranges are written.
    """
    fields = {}
    for parameter in inspect.signature(function).parameters.values():
        if parameter.name in skip or parameter.name == "self" or parameter.kind in (
                parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        default = None if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (Any, default)
    return pydantic.create_model(name, __base__=SignatureParams, **fields)  # type: ignore[call-overload]

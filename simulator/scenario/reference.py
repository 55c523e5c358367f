"""The scenario reference (docs/scenario-reference.md), generated from the schema so it cannot drift.

Regenerate: `.venv/bin/python -m simulator.scenario.reference > docs/scenario-reference.md`
(a test fails when the file differs from what this prints).
"""

from __future__ import annotations

import json
import typing

from pydantic import BaseModel

from simulator.scenario.schema import Scenario

HEADER = """# Scenario reference

Every key a scenario YAML may hold, its type, default and meaning. Generated from the schema
in `simulator/scenario/schema.py` by `.venv/bin/python -m simulator.scenario.reference > docs/scenario-reference.md`;
do not edit by hand. Sections marked *open* also take kind-specific keys (a predictor's
hyper-parameters, a balancer's options, a topology builder's arguments): see
[predictors.md](predictors.md), [balancers.md](balancers.md), [topologies.md](topologies.md).
"""


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    if field.default_factory is not None:
        return json.dumps(field.default_factory())
    if isinstance(field.default, BaseModel):
        return "(section)"
    return json.dumps(field.default)


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if name == "base_dir":
            continue
        annotation = field.annotation
        path = f"{prefix}{name}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            open_note = " *open*" if annotation.model_config.get("extra") == "allow" else ""
            rows.append(f"| `{path}` | section{open_note} | | {annotation.__doc__ or ''} |".replace(
                "\n", " "))
            rows.extend(_rows(annotation, f"{path}."))
            continue
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{path}` | {_type_name(annotation)} | `{_default(field)}` | {description} |")
    return rows


def reference() -> str:
    lines = [HEADER, "| key | type | default | meaning |", "|---|---|---|---|"]
    lines += _rows(Scenario, "")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference(), end="")

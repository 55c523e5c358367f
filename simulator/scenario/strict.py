"""Checks pydantic's lax mode lets through, applied after a scenario validates.

Pydantic turns ``batch: true`` into 1 and ``alpha_us: false`` into 0.0 (bool is an int in Python);
nobody who writes `true` for a batch size means 1. Rather than marking every numeric field strict
(which would also refuse ``iterations: 1e3``), the raw data and the validated model are walked
together: a boolean that became a number is an error naming its YAML path.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from simulator.errors import ScenarioError


def reject_bool_numbers(raw: Any, validated: Any, source: str, path: str = "") -> None:
    """Raise ScenarioError where `raw` holds true/false and `validated` a number in its place."""
    if isinstance(raw, bool):
        if isinstance(validated, (int, float)) and not isinstance(validated, bool):
            raise ScenarioError(f"{source}: {path}: must be a number, got {str(raw).lower()}")
        return
    if isinstance(raw, dict):
        for key, value in raw.items():
            if isinstance(validated, BaseModel):
                if key not in type(validated).model_fields:
                    extra = validated.model_extra or {}
                    if key not in extra:
                        continue
                    child = extra[key]
                else:
                    child = getattr(validated, key)
            elif isinstance(validated, dict) and key in validated:
                child = validated[key]
            else:
                continue
            reject_bool_numbers(value, child, source, f"{path}.{key}" if path else str(key))
    elif isinstance(raw, list) and isinstance(validated, (list, tuple)):
        for index, (value, child) in enumerate(zip(raw, validated)):
            reject_bool_numbers(value, child, source, f"{path}[{index}]")

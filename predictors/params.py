"""Checks of hyper-parameter values: one PredictorError naming ``predictor.<param>``.

YAML gives ints, floats, bools and lists; these helpers accept exactly the types that make
sense (no bool where a number is meant) and say what is allowed.
"""

from typing import Any

import numpy as np

from predictors.errors import PredictorError


def check_int(value: Any, name: str, field: str, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise PredictorError(f"must be an integer, got {value!r}", f"{field}.{name}")
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"between {low} and {high}"
        raise PredictorError(f"must be {allowed}, got {value!r}", f"{field}.{name}")


def check_float(value: Any, name: str, field: str, low: float, high: float | None = None,
                open_low: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise PredictorError(f"must be a number, got {value!r}", f"{field}.{name}")
    too_low = value <= low if open_low else value < low
    if not np.isfinite(value) or too_low or (high is not None and value > high):
        low_text = f"> {low:g}" if open_low else f">= {low:g}"
        allowed = low_text if high is None else f"{low_text} and <= {high:g}"
        raise PredictorError(f"must be {allowed}, got {value!r}", f"{field}.{name}")


def check_bool(value: Any, name: str, field: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise PredictorError(f"must be true or false, got {value!r}", f"{field}.{name}")


def check_choice(value: Any, name: str, field: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise PredictorError(f"must be one of {', '.join(allowed)}; got {value!r}",
                             f"{field}.{name}")


def resolve_size(hidden: Any, size: Any, field: str, default: int, low: int = 1,
                 high: int = 65536) -> int:
    """`size` is the sweepable alias of `hidden` (either may be None); both set must agree."""
    if size is not None:
        check_int(size, "size", field, low, high)
    if hidden is not None:
        check_int(hidden, "hidden", field, low, high)
    if size is not None and hidden is not None and hidden != size:
        raise PredictorError(
            f"size ({size}) and hidden ({hidden}) disagree; set one of them", f"{field}.size")
    chosen = size if size is not None else hidden
    return int(default if chosen is None else chosen)

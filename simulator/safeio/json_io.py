"""A JSON reader with a nesting limit (the json module recurses: 10^5 brackets = RecursionError).

Used for moesim's own outputs read back (summary.json, timeline.json, a trace's meta): a file
edited by hand or truncated is one InputError naming it, never a traceback.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from simulator.safeio.errors import InputError, raising
from simulator.safeio.files import read_text

MAX_DEPTH = 64
_SCAN_LIMIT_BYTES = 16 * 10**6  # beyond this, the json module's own RecursionError is the guard


def max_depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text, ignoring brackets inside strings (numpy, O(n)).

    A quote is real unless an odd run of backslashes precedes it; a bracket after an odd number
    of real quotes is inside a string. Only quote and bracket positions are materialised.
    """
    data = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    quotes = np.flatnonzero(data == 34)
    run = np.zeros(quotes.size, dtype=np.int64)
    cursor = quotes - 1
    escaped = (cursor >= 0) & (data[np.maximum(cursor, 0)] == 92)  # 92 = backslash
    while escaped.any():
        run += escaped
        cursor -= 1
        escaped &= (cursor >= 0) & (data[np.maximum(cursor, 0)] == 92)
    real = quotes[run % 2 == 0]
    opening = np.flatnonzero((data == 91) | (data == 123))   # [ {
    closing = np.flatnonzero((data == 93) | (data == 125))   # ] }
    brackets = np.concatenate((opening, closing))
    step = np.concatenate((np.ones(opening.size, np.int64), -np.ones(closing.size, np.int64)))
    outside = np.searchsorted(real, brackets) % 2 == 0
    brackets, step = brackets[outside], step[outside]
    order = np.argsort(brackets, kind="stable")
    return int(np.cumsum(step[order]).max(initial=0))


@raising
def loads_json(text: str, source: str = "<string>", depth_limit: int = MAX_DEPTH) -> Any:
    if len(text) <= _SCAN_LIMIT_BYTES and max_depth(text) > depth_limit:
        raise InputError(f"JSON nested more than {depth_limit} levels deep", source)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"not valid JSON ({error.msg}, line {error.lineno}, column "
                         f"{error.colno})", source) from None
    except RecursionError:
        raise InputError(f"JSON nested more than {depth_limit} levels deep", source) from None


@raising
def read_json(path: str | os.PathLike, field: str | None = None,
              depth_limit: int = MAX_DEPTH, limit_bytes: int | None = None) -> Any:
    text = read_text(path, field, limit_bytes)
    return loads_json(text, f"{field}: {path}" if field else str(path), depth_limit)

"""A JSON reader with a nesting limit (the json module recurses: 10^5 brackets = RecursionError).

Used for moesim's own outputs read back (summary.json, timeline.json, a trace's meta): a file
edited by hand or truncated is one InputError naming it, never a traceback.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from safeio.errors import InputError, raising
from safeio.files import read_text

MAX_DEPTH = 64
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def max_depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text, ignoring brackets inside strings."""
    bare = _STRING.sub("", text)
    depth = deepest = 0
    for char in re.findall(r"[\[\]{}]", bare):
        depth += 1 if char in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


@raising
def loads_json(text: str, source: str = "<string>", depth_limit: int = MAX_DEPTH) -> Any:
    if max_depth(text) > depth_limit:
        raise InputError(f"JSON nested more than {depth_limit} levels deep", source)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"malformed JSON at line {error.lineno}, column {error.colno}: "
                         f"{error.msg}", source) from None
    except RecursionError:
        raise InputError(f"JSON nested more than {depth_limit} levels deep", source) from None


@raising
def read_json(path: str | os.PathLike, field: str | None = None,
              depth_limit: int = MAX_DEPTH, limit_bytes: int | None = None) -> Any:
    text = read_text(path, field, limit_bytes)
    return loads_json(text, f"{field}: {path}" if field else str(path), depth_limit)

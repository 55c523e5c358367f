"""A strict YAML loader for every YAML file a user writes (scenario, topology, calibration, sweep).

PyYAML's `safe_load` is safe against code execution but not against surprises or bombs:

- duplicate keys: the last one silently wins; here they are an error naming both lines;
- YAML 1.1 implicit types: ``010`` is octal 8, ``1:30`` is 90 (base 60), ``yes``/``no``/``on``/
  ``off`` are booleans, ``1e9`` is a string. Here the YAML 1.2 core schema applies (only
  ``true``/``false`` are booleans; ``1e9`` is a number); ``010`` and ``1:30`` are refused with the
  two readings spelled out, so the author says which one they meant;
- ``.inf`` and ``.nan`` are refused: no moesim quantity is infinite;
- alias bombs (a few lines whose aliases expand to 10^9 nodes) and deep nesting (which ends in a
  RecursionError) are refused with budgets: at most `MAX_ALIASES` aliases, `MAX_NODES` nodes
  after expanding them, `MAX_DEPTH` levels.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from simulator.safeio.errors import InputError, raising
from simulator.safeio.files import read_text

MAX_ALIASES = 100
MAX_NODES = 200_000
MAX_DEPTH = 64

_AMBIGUOUS = "tag:moesim,2026:ambiguous"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars, duplicate-key errors and alias/depth budgets."""

    yaml_implicit_resolvers: dict = {}

    def __init__(self, stream):
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    # --- budgets, counted while composing (before anything is constructed) -------------------
    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                event = self.peek_event()
                raise _error(event.start_mark, f"more than {MAX_ALIASES} aliases (*name); "
                             "write the values out or use fewer anchors")
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            event = self.peek_event()
            raise _error(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node):
        _check_expanded_size(node)
        return super().construct_document(node)

    # --- duplicate keys -----------------------------------------------------------------------
    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable key: SafeConstructor reports it
                if first is not None:
                    raise _error(key_node.start_mark, f"duplicate key {key!r} (first given on "
                                 f"line {first.line + 1}); give each key once")
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)

    # --- scalars ------------------------------------------------------------------------------
    def construct_strict_int(self, node):
        return int(self.construct_scalar(node).replace("_", ""), 0)

    def construct_strict_float(self, node):
        text = self.construct_scalar(node).replace("_", "").lower()
        if text.lstrip("+-") in (".inf", ".nan"):
            raise _error(node.start_mark, f"{node.value} is not a finite number; "
                         "no moesim setting is infinite or NaN")
        return float(text)

    def construct_ambiguous(self, node):
        text = node.value
        if ":" in text:
            raise _error(node.start_mark, f"{text} is ambiguous: YAML 1.1 reads it as a base-60 "
                         f"number, YAML 1.2 as the string '{text}'; write the number of units, "
                         "or quote it")
        digits = text.lstrip("+-")
        raise _error(node.start_mark, f"{text} is ambiguous: YAML 1.1 reads it as octal "
                     f"{int(digits.replace('_', ''), 8)}, YAML 1.2 as "
                     f"decimal {int(digits.replace('_', ''))}; write {int(digits.replace('_', ''))} "
                     f"(or 0o{digits.lstrip('0') or '0'}),"
                     " or quote it")


def _resolver(tag: str, pattern: str, first: str) -> None:
    StrictLoader.add_implicit_resolver(tag, re.compile(pattern, re.X), list(first))


_resolver("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_resolver("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL)$", "~nN")
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])
# exactly the plain scalars YAML 1.1 reads as octal or base 60 (so quoted output of yaml.dump
# stays a string): 010 (but not 08), 1:30, 1:30.5
_resolver(_AMBIGUOUS, r"^[-+]?0[0-7_]+$", "-+0")
_resolver(_AMBIGUOUS, r"^[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+$", "-+123456789")
_resolver(_AMBIGUOUS, r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*$", "-+0123456789")
_resolver("tag:yaml.org,2002:int",
          r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)$", "-+0123456789")
_resolver("tag:yaml.org,2002:float",
          r"""^(?:[-+]?(?:\.[0-9][0-9_]*|[0-9][0-9_]*\.[0-9_]*)(?:[eE][-+]?[0-9]+)?
               |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
               |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", "-+0123456789.")
_resolver("tag:yaml.org,2002:merge", r"^<<$", "<")
StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_strict_int)
StrictLoader.add_constructor("tag:yaml.org,2002:float", StrictLoader.construct_strict_float)
StrictLoader.add_constructor(_AMBIGUOUS, StrictLoader.construct_ambiguous)


class _YamlProblem(Exception):
    def __init__(self, mark, problem: str):
        super().__init__(problem)
        self.mark, self.problem = mark, problem


def _error(mark, problem: str) -> _YamlProblem:
    return _YamlProblem(mark, problem)


def _check_expanded_size(root: Node) -> None:
    """Nodes after expanding aliases, counted without expanding (memoised per shared node)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = ([c for pair in node.value for c in pair] if isinstance(node, MappingNode)
                    else node.value if isinstance(node, SequenceNode) else [])
        if done or not children:
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_NODES:
                raise _error(node.start_mark, f"expands to more than {MAX_NODES:,} values once its "
                             "aliases are substituted (an alias bomb?)")
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


@raising
def loads_yaml(text: str, source: str = "<string>") -> Any:
    """Parse one YAML document strictly; any problem is one InputError naming `source` and line."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (StrictLoader is a SafeLoader)
    except _YamlProblem as error:
        raise InputError(f"{_where(error.mark)}{error.problem}", source) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        where = f" at {_where(mark)}" if mark is not None else ": "
        raise InputError(f"malformed YAML{where}{problem}", source) from None
    except (ValueError, OverflowError) as error:  # e.g. an int constructor on '0x_'
        raise InputError(f"malformed YAML: {error}", source) from None
    except RecursionError:
        raise InputError(f"nested more than {MAX_DEPTH} levels deep", source) from None


@raising
def read_yaml(path: str | os.PathLike, field: str | None = None) -> Any:
    """A YAML file's contents: a regular UTF-8 file within the size limit, parsed strictly."""
    text = read_text(path, field)
    return loads_yaml(text, f"{field}: {path}" if field else str(path))


def _where(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""

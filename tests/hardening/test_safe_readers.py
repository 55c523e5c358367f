"""The shared readers (safeio): strict YAML, depth-limited JSON, regular files, budgets."""

import json
import math
import os
import re

import numpy as np
import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simulator.safeio import InputError, check_bytes, loads_json, loads_yaml, read_json, read_text, read_yaml
from simulator.safeio.json_io import max_depth


@pytest.mark.parametrize("text, message", [
    ("a: 1\na: 2\n", "line 2, column 1: duplicate key 'a' (first given on line 1)"),
    ("a: {x: 1, x: 2}\n", "duplicate key 'x'"),
    ("a: 010\n", "YAML 1.1 reads it as octal 8, YAML 1.2 as decimal 10"),
    ("a: 1:30\n", "base-60"),
    ("a: .inf\n", "not a finite number"),
    ("a: -.inf\n", "not a finite number"),
    ("a: .nan\n", "not a finite number"),
    ("a: " + "[" * 100 + "]" * 100 + "\n", "nested more than 64 levels"),
    ("a: [1, 2\n", "malformed YAML at line"),
    ("".join(f"k{i}: &a{i} [1]\n" for i in range(101)) + "x: [" + ", ".join(
        f"*a{i}" for i in range(101)) + "]\n", "more than 100 aliases"),
])
def test_strict_yaml_refuses_with_line(text, message):
    with pytest.raises(InputError, match="s.yaml: ") as error:
        loads_yaml(text, "s.yaml")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_alias_bomb_refused_before_expansion():
    levels = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    with pytest.raises(InputError, match="alias bomb"):
        loads_yaml("\n".join(levels) + "\n", "bomb.yaml")


@pytest.mark.parametrize("text, value", [
    ("a: yes", "yes"), ("a: no", "no"), ("a: on", "on"),   # YAML 1.2: strings, not booleans
    ("a: 1e9", 1e9), ("a: 0x10", 16), ("a: 0o17", 15), ("a: 1_000", 1000), ("a: true", True),
    ("a: 08", "08"), ("a: 0", 0), ("a: -3", -3), ("a: .5", 0.5), ("a: ~", None), ("a:", None),
    ("a: 2026-01-01", "2026-01-01"),
    ("b: &b {x: 1}\na: {<<: *b, y: 2}", {"x": 1, "y": 2}),  # merge keys are not duplicates
])
def test_strict_yaml_reads_yaml_1_2_core(text, value):
    assert loads_yaml(text)["a"] == value


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
_data = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=20)


# strings YAML 1.1 leaves unquoted but 1.2 reads as numbers (1e5, 0o17): the one intended change
_NUMERIC_LOOKING = re.compile(r"[-+]?[0-9.][0-9a-zA-Z_.:+-]*")


def _plain(data) -> bool:
    if isinstance(data, str):
        return not _NUMERIC_LOOKING.fullmatch(data)
    if isinstance(data, list):
        return all(map(_plain, data))
    if isinstance(data, dict):
        return all(_plain(k) and _plain(v) for k, v in data.items())
    return True


@settings(max_examples=150, deadline=None)
@given(_data)
def test_strict_yaml_reads_back_whatever_safe_dump_writes(data):
    """The strict loader changes nothing for YAML a program writes (finite numbers)."""
    assume(_plain(data))
    assert loads_yaml(yaml.safe_dump(data)) == data


@pytest.mark.parametrize("maker, message", [
    (lambda p: os.mkfifo(p), "FIFO"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_bytes("name: caf\xe9\n".encode("latin-1")), "not UTF-8 text (byte 0xe9 on line 1)"),
    (lambda p: p.write_text("name: x\n", encoding="utf-16"), "UTF-16"),
    (lambda p: None, "no such file"),
])
def test_readers_refuse_what_is_not_a_utf8_regular_file(tmp_path, maker, message):
    path = tmp_path / "input.yaml"
    maker(path)
    for reader in (read_text, read_yaml, read_json):
        with pytest.raises(InputError, match=re.escape(message)) as error:
            reader(path)
        assert str(path) in str(error.value)


def test_devices_and_oversized_files_are_refused(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="a device"):
        read_text("/dev/zero")
    big = tmp_path / "big.yaml"
    big.write_text("a: 1\n" * 1000)
    monkeypatch.setenv("MOESIM_MAX_FILE_MB", "0.001")
    with pytest.raises(InputError, match="the limit for this input is 0.0 MB .*MOESIM_MAX_FILE_MB"):
        read_yaml(big)


def test_reader_raises_the_callers_error_type_with_its_field(tmp_path):
    class MyError(ValueError):
        def __init__(self, message, field=None):
            super().__init__(f"{field}: {message}" if field else message)
            self.field = field

    with pytest.raises(MyError) as error:
        read_yaml(tmp_path / "missing.yaml", "topology.file", error=MyError)
    assert error.value.field == "topology.file" and "missing.yaml: no such file" in str(error.value)


@pytest.mark.parametrize("text, depth", [
    ("[]", 1), ('{"a": [1, {"b": []}]}', 4), ('["[[[[", "\\"[["]', 1), ('"\\\\"', 0),
    ('[["\\\\"], [[]]]', 3), ("", 0),
])
def test_json_depth_ignores_brackets_in_strings(text, depth):
    assert max_depth(text) == depth


def test_json_depth_limit_and_malformed_json_are_one_error():
    with pytest.raises(InputError, match="nested more than 64 levels"):
        loads_json("[" * 100_000 + "]" * 100_000, "summary.json")
    with pytest.raises(InputError, match=r"summary.json: not valid JSON \(Expecting"):
        loads_json("{not json", "summary.json")
    assert loads_json(json.dumps({"a": [1.5, None]})) == {"a": [1.5, None]}


def test_budget_names_the_need_the_limit_and_the_variable(monkeypatch):
    check_bytes(1e9, "one GB")
    with pytest.raises(InputError, match=r"x: a trace would need 2,000.0 GB; the limit is 16.0 GB, "
                                         "set MOESIM_MEMORY_LIMIT_GB to raise it"):
        check_bytes(2e12, "a trace", "x")
    monkeypatch.setenv("MOESIM_MEMORY_LIMIT_GB", "3000")
    check_bytes(2e12, "a trace")
    monkeypatch.setenv("MOESIM_MEMORY_LIMIT_GB", "inf")
    with pytest.raises(InputError, match="MOESIM_MEMORY_LIMIT_GB"):
        check_bytes(1, "x")
    assert math.isfinite(float(np.float32(1)))

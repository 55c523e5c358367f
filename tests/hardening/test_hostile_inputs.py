"""A generated corpus of hostile and mistaken inputs, across every command and file kind.

Each case is (command line, what must appear in the message). Every one must end with exit 2
and exactly one line on stderr naming the file or field -- no traceback, no hang (an alarm fails
a case that blocks), no memory blow-up (the budgets refuse before allocating). The tables are
products of file kinds x mutations, so a new reader or command joins by adding a row.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[2]

TINY = """\
name: tiny
model: {base: mixtral-8x7b, name: tiny-moe, layers: 2, hidden: 512, ffn: 1024, experts: 8,
        top_k: 2, heads: 8, kv_heads: 8, head_dim: 64, vocab: 1000}
topology: {builder: nvlink_mesh, gpus: 4, device: a100-sxm4-80gb}
workload: {batch: 1, seq_len: 64, iterations: 2, trace: {synthetic: {skewness: 1.4}}}
"""
TOPOLOGY = """\
topology:
  nodes:
    - {name: gpu0, kind: gpu, device: h100-sxm5-80gb}
    - {name: gpu1, kind: gpu, device: h100-sxm5-80gb}
    - {name: sw0, kind: switch}
  links:
    - {a: gpu0, b: sw0, kind: nvlink4, bandwidth_GBps: 450, latency_us: 0.7}
    - {a: gpu1, b: sw0, kind: nvlink4, bandwidth_GBps: 450, latency_us: 0.7}
"""


@pytest.fixture(autouse=True)
def no_hang():
    """A case that blocks (a FIFO opened for reading) fails instead of hanging the suite."""
    def fail(*_):
        raise TimeoutError("input handling blocked for 60 s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def run_cli(capsys, argv) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(capsys, argv, *needles):
    code, _, err = run_cli(capsys, argv)
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code} for {argv}: {err}"
    assert len(lines) == 1 and lines[0].startswith("moesim"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


# ------------------------------------------------------------------ file-level mutations

def _fifo(path: Path) -> None:
    os.mkfifo(path)


FILE_MUTATIONS = {
    # name: (make(path, good_text), expected text in the message)
    "fifo": (lambda p, good: _fifo(p), "FIFO"),
    "directory": (lambda p, good: p.mkdir(), "directory"),
    "missing": (lambda p, good: None, "no such"),
    "latin-1": (lambda p, good: p.write_bytes(good.replace("tiny", "caf\xe9").replace(
        "sw0", "sw\xe9").encode("latin-1") + "# caf\xe9\n".encode("latin-1")), "not UTF-8"),
    "utf-16": (lambda p, good: p.write_text(good, encoding="utf-16"), "UTF-16"),
    "empty": (lambda p, good: p.write_text(""), ""),
    "not-a-mapping": (lambda p, good: p.write_text("- 1\n- 2\n"), ""),
    "duplicate-key": (lambda p, good: p.write_text(good + good.splitlines()[0] + "\n"),
                      "duplicate key"),
    "deep-nesting": (lambda p, good: p.write_text("x: " + "[" * 5000 + "]" * 5000 + "\n"),
                     "nested more than"),
    "alias-bomb": (lambda p, good: p.write_text("\n".join(
        ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
            f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)])
        + "\n"), "alias bomb"),
    "malformed": (lambda p, good: p.write_text(good + "oops: [1, 2\n"), "malformed YAML"),
    "binary": (lambda p, good: p.write_bytes(bytes(range(256)) * 4), ""),
}


def yaml_commands(tmp: Path, path: Path):
    """Every command that reads a YAML file the user names, with `path` in that place."""
    scenario = tmp / "ok.yaml"
    scenario.write_text(TINY)
    return {
        "run": ["run", path, "--out", tmp / "out"],
        "validate": ["validate", path],
        "gps": ["gps", path, "--out", tmp / "gps"],
        "sweep-file": ["sweep", path, "--out", tmp / "sweep", "--dry-run"],
        "collective-topology": ["collective", "allreduce", "--topology", path],
        "collective-calibration": ["collective", "allreduce", "--topology", "nvswitch",
                                   "--calibration", path],
    }


@pytest.mark.parametrize("mutation", sorted(FILE_MUTATIONS))
@pytest.mark.parametrize("command", ["run", "validate", "gps", "sweep-file",
                                     "collective-topology", "collective-calibration"])
def test_every_yaml_reader_refuses_a_hostile_file(tmp_path, capsys, command, mutation):
    if (command, mutation) == ("collective-calibration", "empty"):
        pytest.skip("an empty calibration file is valid: no overrides")
    make, needle = FILE_MUTATIONS[mutation]
    path = tmp_path / "input.yaml"
    good = TOPOLOGY if command == "collective-topology" else TINY
    make(path, good)
    argv = yaml_commands(tmp_path, path)[command]
    assert_one_line_error(capsys, argv, needle)


def test_scenario_pointing_to_a_hostile_topology_file(tmp_path, capsys):
    for mutation in ("fifo", "latin-1", "duplicate-key", "alias-bomb"):
        make, needle = FILE_MUTATIONS[mutation]
        topo = tmp_path / f"topo-{mutation}.yaml"
        make(topo, TOPOLOGY)
        scenario = tmp_path / f"s-{mutation}.yaml"
        scenario.write_text(TINY.replace("topology: {builder: nvlink_mesh, gpus: 4, device: "
                                         "a100-sxm4-80gb}", f"topology: {topo.name}"))
        assert_one_line_error(capsys, ["validate", scenario], needle)


# ------------------------------------------------------------------ value mutations

HOSTILE_VALUES = {
    # YAML path -> [(value as written, expected text)]
    "workload.batch": [("1000000000", "would need"), ("true", "must be a number"),
                       ("010", "ambiguous"), ("1:30", "ambiguous"), ("yes", "valid integer"),
                       (".inf", "finite"), ("-1", "greater than or equal to 1"), ("[1]", "valid integer")],
    "workload.seq_len": [("1000000000", "GB")],  # the GPU-memory check or the budget
    "workload.iterations": [("1000000000", "would need"), ("1e12", "would need")],
    "topology.gpus": [("1000000", "exceed the limit"), ("true", "gpus")],
    "topology.builder": [("[x]", "unknown builder"), ("{a: 1}", "unknown builder")],
    "network.alpha_us": [(".inf", "finite"), ("inf", "finite"), ("nan", "finite"),
                         ("true", "must be a number")],
    "workload.trace.synthetic": [("[1]", "workload.trace.synthetic"),
                                 ("text", "workload.trace.synthetic"),
                                 ("{BOGUS: 1}", "workload.trace.synthetic.BOGUS")],
    "workload.trace": [("{file: }", "workload.trace.file"), ("{file: ''}", "workload.trace.file"),
                       ("{file: /dev/zero}", "device")],
    "seed": [("-1", "greater than or equal to 0"), ("1.5", "integer")],
}


@pytest.mark.parametrize("key, value, needle", [
    (key, value, needle) for key, cases in HOSTILE_VALUES.items() for value, needle in cases])
def test_hostile_scenario_values_fail_fast_with_their_path(tmp_path, capsys, key, value, needle):
    path = tmp_path / "s.yaml"
    path.write_text(TINY)
    err = assert_one_line_error(capsys, ["validate", path, "--set", f"{key}={value}"], needle)
    assert "s.yaml" in err or "--set" in err


# ------------------------------------------------------------------ traces (.npz)

def _npz_with_forged_header(path: Path, shape: tuple[int, ...]) -> None:
    np.savez(path, experts=np.zeros((1, 1, 2, 1), np.int16))
    with zipfile.ZipFile(path) as archive:
        data = archive.read("experts.npy")
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1, 2, 1), np.int16))
    header["shape"] = shape
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    forged = buffer.getvalue() + data[len(buffer.getvalue()):]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("experts.npy", forged)


NPZ_MUTATIONS = {
    "forged-12GiB": (lambda p: _npz_with_forged_header(p, (1, 1, 3 * 2**30, 2)), "header declares"),
    "forged-3PiB": (lambda p: _npz_with_forged_header(p, (2**25, 2**25, 2, 1)), "header declares"),
    "object-array": (lambda p: np.savez(p, experts=np.zeros((1, 1, 2, 1), np.int16),
                                        token_ids=np.array([{"a": 1}], dtype=object)),
                     "Python objects"),
    "not-an-array": (lambda p: zipfile.ZipFile(p, "w").writestr("experts.txt", "hello"),
                     "not a .npy array"),
    "nan-weights": (lambda p: np.savez(p, experts=np.zeros((1, 1, 2, 1), np.int16),
                                       weights=np.full((1, 1, 2, 1), np.nan, np.float32)),
                    "finite"),
    "deep-meta": (lambda p: np.savez(p, experts=np.zeros((1, 1, 2, 1), np.int16),
                                     meta=np.array(["[" * 10000 + "]" * 10000])), "[meta]"),
    "fifo": (lambda p: os.mkfifo(p), "FIFO"),
    "not-zip": (lambda p: p.write_bytes(b"\x00" * 100), "not a zip"),
}


@pytest.mark.parametrize("mutation", sorted(NPZ_MUTATIONS))
@pytest.mark.parametrize("command", ["stats", "scenario", "forecast"])
def test_every_npz_reader_checks_before_allocating(tmp_path, capsys, command, mutation):
    make, needle = NPZ_MUTATIONS[mutation]
    path = tmp_path / "t.npz"
    make(path)
    if command == "stats":
        argv = ["trace", "stats", path]
    elif command == "forecast":
        argv = ["forecast", path, "--horizon", "10", "--out", tmp_path / "f"]
    else:
        scenario = tmp_path / "s.yaml"
        scenario.write_text(TINY)
        argv = ["validate", scenario, "--set", f"workload.trace={{file: {path}}}"]
    if command == "forecast" and mutation == "nan-weights":
        needle = "shares"  # a routing trace, not a training-load one
    assert_one_line_error(capsys, argv, needle)


# ------------------------------------------------------------------ result directories

@pytest.fixture(scope="module")
def result_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("result")
    scenario = root / "tiny.yaml"
    scenario.write_text(TINY)
    assert main(["run", str(scenario), "--out", str(root / "run"), "--quiet"]) == 0
    return root / "run"


RESULT_MUTATIONS = {
    "summary-deep": ("summary.json", "[" * 100000 + "]" * 100000, "nested more than"),
    "summary-list": ("summary.json", "[]", "not a moesim summary"),
    "summary-strings": ("summary.json", None, "finite numbers"),
    "summary-truncated": ("summary.json", '{"latency_s": {"mean": 1', "not valid JSON"),
    "summary-latin1": ("summary.json", b'{"x": "caf\xe9"}', "not UTF-8"),
    "rows-garbage": ("iterations.csv", "a,b\n1,2\n", "iterations table"),
    "rows-ragged": ("iterations.csv", None, "number of values"),
    "timeline-events": ("timeline.json", '{"traceEvents": [1, 2, 3]}', "timeline"),
    "timeline-deep": ("timeline.json", '{"traceEvents": ' + "[" * 100000 + "]" * 100000 + "}",
                      "nested more than"),
    "timeline-fifo": ("timeline.json", "FIFO", "FIFO"),
}


@pytest.mark.parametrize("mutation", sorted(RESULT_MUTATIONS))
@pytest.mark.parametrize("command", ["plot", "compare"])
def test_plot_and_compare_on_a_corrupt_result_directory(tmp_path, capsys, result_dir, command,
                                                        mutation):
    name, content, needle = RESULT_MUTATIONS[mutation]
    if command == "compare" and name != "summary.json":
        pytest.skip("compare reads summary.json only")
    broken = tmp_path / "broken"
    shutil.copytree(result_dir, broken)
    target = broken / name
    target.unlink()
    if content == "FIFO":
        os.mkfifo(target)
    elif content is None and name == "summary.json":
        summary = json.loads((result_dir / name).read_text())
        summary["breakdown_s"] = {k: "fast" for k in summary["breakdown_s"]}
        target.write_text(json.dumps(summary))
    elif content is None:
        lines = (result_dir / name).read_text().splitlines()
        target.write_text("\n".join(lines[:2] + [lines[2] + ",extra,values"]) + "\n")
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    argv = ["plot", broken] if command == "plot" else ["compare", result_dir, broken,
                                                       "--out", tmp_path / "cmp"]
    assert_one_line_error(capsys, argv, needle)


# ------------------------------------------------------------------ --out, for every writer

def out_commands(tmp: Path, out: Path):
    scenario = tmp / "s.yaml"
    scenario.write_text(TINY)
    trace = ROOT / "workloads" / "data" / "train_load_wikipedia.npz"
    return {
        "run": (["run", scenario, "--out", out], "dir"),
        "gps": (["gps", scenario, "--out", out], "dir"),
        "forecast": (["forecast", trace, "--horizon", "10", "--out", out], "dir"),
        "sweep": (["sweep", scenario, "--out", out], "dir"),
        "trace-generate": (["trace", "generate", "--model", "mixtral-8x7b", "--out", out], "file"),
        "trace-convert": (["trace", "convert", scenario, "--out", out], "file"),
        "calibrate": (["calibrate", "--topology", "nvswitch", "--kernels", scenario, "--out", out],
                      "file"),
        "validate-hw": (["validate-hw", "--out", out], "file"),
        "compare": (["compare", tmp, "--out", out], "dir"),
    }


@pytest.mark.parametrize("command", ["run", "gps", "forecast", "sweep", "trace-generate",
                                     "trace-convert", "calibrate", "validate-hw", "compare"])
@pytest.mark.parametrize("case", ["wrong-kind", "parent-is-file", "foreign-dir"])
def test_every_out_is_checked_the_same_way_before_work(tmp_path, capsys, command, case):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    kind = out_commands(tmp_path, tmp_path / "x")[command][1]
    if case == "wrong-kind":
        out, needle = (a_file, "is not a directory") if kind == "dir" else (tmp_path, "is a directory")
    elif case == "parent-is-file":
        out, needle = a_file / "sub", "is a file"
    else:
        if kind == "file" or command in ("sweep", "compare"):
            pytest.skip("only replaced result directories are checked for foreign files")
        out = tmp_path / "home"
        out.mkdir()
        (out / "notes.doc").write_text("mine")
        needle = "which moesim did not write"
    argv, _ = out_commands(tmp_path, out)[command]
    if command == "compare" and case != "wrong-kind":
        argv = ["compare", tmp_path, "--out", out]
    err = assert_one_line_error(capsys, argv, "--out", needle)
    assert "Traceback" not in err


def test_run_replaces_a_result_directory_all_at_once(tmp_path, capsys, result_dir):
    out = tmp_path / "again"
    shutil.copytree(result_dir, out)
    (out / "plots").mkdir()
    (out / "plots" / "stale.png").write_bytes(b"old")
    (out.parent / f".{out.name}.tmp-999999-dead").mkdir()  # left by a killed run
    scenario = tmp_path / "s.yaml"
    scenario.write_text(TINY.replace("name: tiny", "name: second"))
    code, _, _ = run_cli(capsys, ["run", scenario, "--out", out, "--quiet"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["iterations.csv", "summary.json", "timeline.json"]
    assert json.loads((out / "summary.json").read_text())["scenario"]["name"] == "second"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".again")]


# ------------------------------------------------------------------ command-line values

@pytest.mark.parametrize("argv, needle", [
    (["collective", "allreduce", "--topology", "nvswitch", "--gpus", "8", "--factor", "1.0000001"],
     "--factor"),
    (["collective", "allreduce", "--topology", "nvswitch", "--gpus", "3000"], "flow-links"),
    (["collective", "alltoall", "--topology", "ring", "--gpus", "400"], "flow-links"),
    (["collective", "allreduce", "--topology", "nvswitch", "--gpus", "1000000"], "exceed the limit"),
    (["collective", "allreduce", "--topology", "nvswitch", "--factor", "nan"], "finite"),
    (["trace", "generate", "--model", "mixtral-8x7b", "--tokens", "1e9", "--out", "t.npz"],
     "would need"),
    (["trace", "generate", "--model", "mixtral-8x7b", "--vocab-size", "1e12", "--out", "t.npz"],
     "would need"),
    (["trace", "generate", "--model", "mixtral-8x7b", "--tokens", "1.5", "--out", "t.npz"],
     "whole number"),
    (["run"], "required"),
    (["run", "s.yaml", "--out", "o", "--seed", "x"], "invalid int"),
    (["nonsense"], "invalid choice"),
    (["kernel", "--gpu", "a100-sxm4-80gb", "--op", "gemm", "--calibration", "/dev/zero",
      "--m", "1", "--n", "1", "--k", "1"], "device"),
    (["calibrate", "/dev/zero", "--topology", "nvswitch", "--out", "fit.yaml"], "device"),
])
def test_command_line_values(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(capsys, argv, needle)


def test_sweep_of_a_billion_variants_fails_before_expanding(tmp_path, capsys):
    base = tmp_path / "s.yaml"
    base.write_text(TINY)
    for body in ("repeat: 1000000000\n", "grid: {seed: [" + ", ".join(map(str, range(200)))
                 + "], workload.batch: [" + ", ".join(map(str, range(1, 201))) + "]}\n"):
        sweep = tmp_path / "sweep.yaml"
        sweep.write_text(f"base: {base.name}\n{body}")
        assert_one_line_error(capsys, ["sweep", sweep, "--out", tmp_path / "o", "--dry-run"],
                              "variants; the limit is")

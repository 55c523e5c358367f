"""`moesim forecast`: states, forecast.csv, summary.json, figures, errors, and the docs' table."""

import csv
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import main
from workloads.trace import RoutingTrace
from workloads.moe_lm import TrainingLoadTrace

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "workloads" / "data" / "train_load_wikipedia.npz"
DOC = ROOT / "docs" / "training-load.md"
PNG = b"\x89PNG"


def step_trace(path, steps=1500, boundary=400):
    """Random shares before `boundary`, then one constant distribution per layer."""
    rng = np.random.default_rng(0)
    shares = np.empty((steps, 2, 4))
    shares[:] = [[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]]
    shares[:boundary] = rng.dirichlet(np.ones(4), size=(boundary, 2))
    return TrainingLoadTrace(shares.astype(np.float32), meta={"aux_loss": 0.0}).save(path)


def test_forecast_writes_csv_summary_and_figures_for_every_method_and_horizon(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("statsmodels")
    out = tmp_path / "out"
    code = main(["forecast", str(COMMITTED), "--horizon", "1000", "--horizon", "2000",
                 "--out", str(out), "--origins", "1", "--arima-window", "100",
                 "--lstm-epochs", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert re.search(r"stable from step \d+ \(per layer: ", printed)
    for method in ("window", "arima", "lstm"):
        assert re.search(rf"^{method} +\d\.\d{{4}} +\d\.\d{{4}}$", printed, re.MULTILINE)
    with open(out / "forecast.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["method", "horizon", "origin", "layer", "expert", "predicted",
                             "true", "error"]
    assert len(rows) == 3 * 2 * 1 * 4 * 8
    for row in rows:
        true, predicted = float(row["true"]), float(row["predicted"])
        assert float(row["error"]) == pytest.approx(abs(predicted - true) / true, abs=1e-8)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"]["boundary"] == max(summary["state"]["boundary_per_layer"])
    assert {(e["method"], e["horizon"]) for e in summary["error"]} == {
        (m, h) for m in ("window", "arima", "lstm") for h in (1000, 2000)}
    for name in ("load_shares.png", "forecast_vs_truth.png"):
        assert (out / name).read_bytes()[:4] == PNG


def test_window_forecast_of_a_constant_stable_part_has_zero_error(tmp_path, capsys):
    trace = step_trace(tmp_path / "t.npz")
    assert main(["forecast", str(trace), "--horizon", "300", "--out", str(tmp_path / "o"),
                 "--methods", "window", "--window", "50", "--smooth", "1", "--state-window", "50",
                 "--origins", "3"]) == 0
    printed = capsys.readouterr().out
    assert "stable from step 400 (per layer: 400, 400)" in printed
    assert re.search(r"^window +0\.0000$", printed, re.MULTILINE)


@pytest.mark.parametrize("argv, message", [
    (["absent.npz"], "absent.npz: no such file"),
    (["routing.npz"], "missing array 'shares' (found: experts, meta) (this is a routing trace"),
    (["step.npz", "--horizon", "5000"], "horizon: 5000 steps do not fit in the stable part"),
    (["step.npz", "--horizon", "0"], "--horizon: must be >= 1, got 0"),
    (["step.npz", "--min-share", "0"], "--min-share: must be > 0, got 0.0"),
    (["step.npz", "--methods", "window,prophet"], "--methods: must be a comma-separated subset"),
    (["step.npz", "--state-window", "9999"],
     "--state-window: --smooth + --state-window must be <= the trace's 1500 steps + 1"),
    (["noisy.npz", "--smooth", "1", "--state-window", "50"], "layer(s) [0, 1] never become stable under variance"),
])
def test_bad_input_exits_2_with_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    step_trace(tmp_path / "step.npz")
    step_trace(tmp_path / "noisy.npz", boundary=1500)
    RoutingTrace(np.zeros((2, 1, 4, 1), dtype=np.int16), meta={"num_experts": 2}).save(
        tmp_path / "routing.npz")
    if "--methods" not in argv:
        argv = [*argv, "--methods", "window"]
    assert main(["forecast", *argv, "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moesim: error: ") and message in err and err.count("\n") == 1


def _doc_command() -> list[str]:
    block = re.search(r"```console\n\$ (moesim forecast [^\n]+)\n", DOC.read_text())
    return shlex.split(block.group(1))[1:]


def _doc_table() -> dict[tuple[str, int], float]:
    """The error table of docs/training-load.md: | method | H=1000 | H=2000 | in per cent."""
    table = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| `?(window|arima|lstm)`?[^|]*\| ([\d.]+) % \| ([\d.]+) % \|", line)
        if match:
            table[(match.group(1), 1000)] = float(match.group(2))
            table[(match.group(1), 2000)] = float(match.group(3))
    return table


@pytest.mark.slow
def test_docs_command_reproduces_the_docs_error_table(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("statsmodels")
    monkeypatch.chdir(ROOT)
    argv = _doc_command()
    argv[argv.index("--out") + 1] = str(tmp_path / "forecast")
    assert main(argv) == 0
    capsys.readouterr()
    summary = json.loads((tmp_path / "forecast" / "summary.json").read_text())
    table = _doc_table()
    assert len(table) == 6
    for entry in summary["error"]:
        assert table[(entry["method"], entry["horizon"])] == pytest.approx(
            100 * entry["error"], abs=0.051)
    assert f"stable from step {summary['state']['boundary']}" in DOC.read_text()


def test_docs_python_example_prints_what_docs_show(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    pattern = r"```python\n(from predictors.training_load.*?)```\n\nprints\n\n```text\n(.*?)```"
    code, shown = re.search(pattern, DOC.read_text(), re.DOTALL).groups()
    exec(compile(code, str(DOC), "exec"), {})  # noqa: S102 - the docs example is the test
    assert capsys.readouterr().out == shown

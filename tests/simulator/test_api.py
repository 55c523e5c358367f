"""The Python API (docs/api.md): simulator.run / sweep / gps, tables, figures, save."""

import json
import subprocess
import sys

import pytest

import simulator
from simulator.errors import ScenarioError
from simulator.scenario.run import simulate
from simulator.scenario.schema import validate_scenario

TINY = {
    "name": "api-test",
    "model": {"base": "mixtral-8x7b", "name": "tiny-moe", "layers": 2, "hidden": 512, "ffn": 1024,
              "experts": 8, "top_k": 2, "heads": 8, "kv_heads": 8, "head_dim": 64, "vocab": 1000},
    "topology": {"builder": "nvlink_mesh", "gpus": 4, "device": "a100-sxm4-80gb"},
    "workload": {"batch": 2, "seq_len": 64, "iterations": 3},
}


@pytest.fixture(scope="module")
def result():
    return simulator.run(TINY, set={"workload.batch": 4}, seed=1)


def test_run_is_the_cli_run_with_set_and_seed(result):
    expected = simulate(validate_scenario({**TINY, "seed": 1, "workload": {**TINY["workload"], "batch": 4}}))
    got, want = dict(result.summary), dict(expected.summary)
    got.pop("wall_s"), want.pop("wall_s")
    assert got == want
    assert result.summary["seed"] == 1 and result.summary["scenario"]["workload"]["batch"] == 4


def test_tables_hold_one_row_per_iteration_layer_and_span(result):
    rows = simulator.table(result.records.rows)
    iterations, spans = result.iterations, result.spans
    assert len(iterations) == len(rows) == 3 * (1 + 2)
    assert len(spans) == len(result.records.spans) > 0
    first = spans.iloc[0] if hasattr(spans, "iloc") else spans[0]
    assert {"gpu", "stream", "phase", "start_s", "end_s"} <= set(first.keys())


def test_plots_are_matplotlib_figures(result):
    from matplotlib.figure import Figure

    for name in ("breakdown", "expert_load", "link_utilization", "skewness", "gantt"):
        assert isinstance(getattr(result.plot, name)(), Figure), name


def test_save_writes_what_moesim_run_writes(result, tmp_path):
    out = result.save(tmp_path / "run")
    assert sorted(p.name for p in out.iterdir()) == ["iterations.csv", "summary.json", "timeline.json"]
    assert json.loads((out / "summary.json").read_text())["latency_s"] == result.summary["latency_s"]


def test_bad_input_is_one_scenario_error():
    with pytest.raises(ScenarioError, match=r"workload.batch: "):
        simulator.run(TINY, set={"workload.batch": 0})


def test_gps_recommends_one_of_its_candidates():
    found = simulator.gps(TINY, balancers=("static",), sizes=(16,))
    assert found.best in found.rows and len(found.rows) >= 4
    assert found.rows[0]["strategy"] == "none" and found.rows[0]["speedup_vs_none"] == 1.0


def test_import_simulator_stays_light():
    code = ("import sys, simulator; heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'scipy', 'matplotlib', 'torch', 'pandas'}); print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_docs_api_example_runs(tmp_path, monkeypatch):
    """The python block of docs/api.md, run as written (its output directory under tmp_path)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "api.md").read_text()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "scenarios").symlink_to(root / "scenarios")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "docs/api.md", "exec"), {})
    assert (tmp_path / "results" / "api-example" / "summary.json").is_file()


def test_sweep_returns_results_csv_as_a_table(tmp_path):
    import yaml

    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**TINY, "workload": {**TINY["workload"], "iterations": 2}}))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "grid": {"workload.batch": [1, 2]}}))
    rows = simulator.sweep(tmp_path / "sweep.yaml", out=tmp_path / "out")
    assert len(rows) == 2
    assert (tmp_path / "out" / "results.csv").is_file()

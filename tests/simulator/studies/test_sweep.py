"""`moesim sweep`: expansion, content-hash ids, resume after interruption, Dask, one-line errors."""

import csv
import hashlib
import json
import re
import socket
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator.scenario.run
from simulator.cli import main
from simulator.errors import ScenarioError
from simulator.scenario.schema import scenario_to_dict
from simulator.studies.sweep import expand_sweep, load_sweep, run_sweep, scenario_id, write_results_csv

ROOT = Path(__file__).resolve().parents[3]
TINY = {
    "name": "tiny",
    "model": {"base": "mixtral-8x7b", "name": "tiny-moe", "layers": 2, "hidden": 512, "ffn": 1024,
              "experts": 8, "top_k": 2, "heads": 8, "kv_heads": 8, "head_dim": 64, "vocab": 1000},
    "topology": {"builder": "nvlink_mesh", "gpus": 4, "device": "a100-sxm4-80gb"},
    "workload": {"batch": 1, "seq_len": 128, "iterations": 2},
}
GRID = {"workload.batch": [1, 2], "balancer.kind": ["static", "oracle"]}


def write_sweep(directory: Path, **spec) -> Path:
    spec = spec or {"scenario": TINY, "grid": GRID}
    path = directory / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_rows(path: Path, drop=("wall_s",)) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(path.open())]


@pytest.fixture
def count_simulations(monkeypatch):
    """Count in-process simulations (workers=1 runs in this process)."""
    calls = []
    real = simulator.scenario.run.simulate

    def counting(scenario, source="scenario"):
        calls.append(scenario_id(scenario))
        return real(scenario, source)

    monkeypatch.setattr(simulator.scenario.run, "simulate", counting)
    return calls


# --- expansion -----------------------------------------------------------------------------------


def test_grid_is_cartesian_first_key_outermost_then_zip_then_seeds(tmp_path):
    spec = {"scenario": TINY, "grid": {"workload.batch": [1, 2], "workload.seq_len": [64, 128]},
            "zip": {"topology.gpus": [2, 4], "parallelism.ep": [2, 4]}, "seeds": [3, 5]}
    sweep = expand_sweep(spec, "s.yaml", tmp_path)
    assert sweep.keys == ("workload.batch", "workload.seq_len", "topology.gpus", "parallelism.ep", "seed")
    assert len(sweep.variants) == 2 * 2 * 2 * 2
    assert [tuple(v.values.values()) for v in sweep.variants[:4]] == [
        (1, 64, 2, 2, 3), (1, 64, 2, 2, 5), (1, 64, 4, 4, 3), (1, 64, 4, 4, 5)]
    last = sweep.variants[-1]
    assert (last.scenario.workload.batch, last.scenario.workload.seq_len, last.scenario.seed,
            last.scenario.topology["gpus"], last.scenario.parallelism.ep) == (2, 128, 5, 4, 4)
    assert [v.index for v in sweep.variants] == list(range(16))


def test_repeat_runs_consecutive_seeds_from_the_base_seed(tmp_path):
    sweep = expand_sweep({"scenario": {**TINY, "seed": 7}, "repeat": 3}, "s.yaml", tmp_path)
    assert [v.scenario.seed for v in sweep.variants] == [7, 8, 9]
    assert sweep.keys == ("seed",)


def test_base_file_resolves_relative_to_the_sweep_file(tmp_path):
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    path = write_sweep(tmp_path, base="scenarios/tiny.yaml", grid=GRID)
    from_file = load_sweep(path)
    inline = expand_sweep({"scenario": TINY, "grid": GRID}, "inline", tmp_path)
    assert [v.id for v in from_file.variants] == [v.id for v in inline.variants]
    assert from_file.variants[0].scenario.base_dir == str(tmp_path / "scenarios")


def test_id_is_a_hash_of_the_resolved_scenario(tmp_path):
    sweep = expand_sweep({"scenario": TINY, "grid": GRID}, "s.yaml", tmp_path)
    for variant in sweep.variants:
        text = json.dumps(scenario_to_dict(variant.scenario), sort_keys=True, separators=(",", ":"))
        assert variant.id == hashlib.sha256(text.encode()).hexdigest()[:12]
    # writing a default explicitly resolves to the same scenario, hence the same id
    explicit = expand_sweep({"scenario": {**TINY, "seed": 0}, "grid": GRID}, "s.yaml", tmp_path)
    assert [v.id for v in explicit.variants] == [v.id for v in sweep.variants]


@settings(max_examples=25, deadline=None)
@given(batches=st.lists(st.integers(1, 64), min_size=1, max_size=4, unique=True),
       lengths=st.lists(st.integers(1, 4096), min_size=1, max_size=4, unique=True),
       seeds=st.lists(st.integers(0, 10**6), min_size=1, max_size=3, unique=True))
def test_every_combination_once_with_distinct_ids(batches, lengths, seeds):
    spec = {"scenario": TINY, "grid": {"workload.batch": batches, "workload.seq_len": lengths},
            "seeds": seeds}
    sweep = expand_sweep(spec, "s.yaml", Path("."))
    assert len(sweep.variants) == len(batches) * len(lengths) * len(seeds)
    assert len({v.id for v in sweep.variants}) == len(sweep.variants)
    combos = {(v.scenario.workload.batch, v.scenario.workload.seq_len, v.scenario.seed)
              for v in sweep.variants}
    assert combos == {(b, s, seed) for b in batches for s in lengths for seed in seeds}


# --- running and resuming ------------------------------------------------------------------------


def test_sweep_writes_one_run_dir_and_one_row_per_variant(tmp_path, capsys):
    code, out, err = run_cli(capsys, "sweep", write_sweep(tmp_path), "--out", tmp_path / "out", "--quiet")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    sweep = load_sweep(tmp_path / "sweep.yaml")
    assert [r["id"] for r in rows] == [v.id for v in sweep.variants]
    assert sorted(p.name for p in (tmp_path / "out" / "runs").iterdir()) == sorted(r["id"] for r in rows)
    assert [(r["workload.batch"], r["balancer.kind"]) for r in rows] == [
        ("1", "static"), ("1", "oracle"), ("2", "static"), ("2", "oracle")]
    for row in rows:
        summary = json.loads((tmp_path / "out" / "runs" / row["id"] / "summary.json").read_text())
        assert summary["scenario"]["workload"]["batch"] == int(row["workload.batch"])
        assert float(row["latency_mean_s"]) == summary["latency_s"]["mean"]
        assert float(row["expert_s"]) == summary["breakdown_s"]["expert"]
        assert float(row["skewness_after"]) == summary["skewness"]["after"]
        assert int(row["events"]) == summary["events"]
        assert (tmp_path / "out" / "runs" / row["id"] / "iterations.csv").is_file()
    assert out == ""


def test_interrupted_sweep_resumes_to_the_uninterrupted_results(tmp_path, count_simulations):
    sweep = load_sweep(write_sweep(tmp_path))
    whole = run_sweep(sweep, tmp_path / "whole")
    assert (whole.ran, whole.reused, whole.stopped) == (4, 0, False)

    first = run_sweep(sweep, tmp_path / "resumed", stop_after=1)
    assert (first.ran, first.stopped) == (1, True)
    assert len(read_rows(tmp_path / "resumed" / "results.csv")) == 1
    count_simulations.clear()
    second = run_sweep(sweep, tmp_path / "resumed")
    assert (second.ran, second.reused, second.stopped) == (3, 1, False)
    assert len(count_simulations) == 3 and sweep.variants[0].id not in count_simulations
    assert read_rows(tmp_path / "resumed" / "results.csv") == read_rows(tmp_path / "whole" / "results.csv")


def test_finished_sweep_reruns_nothing_and_leaves_runs_untouched(tmp_path, count_simulations):
    sweep = load_sweep(write_sweep(tmp_path))
    run_sweep(sweep, tmp_path / "out")
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "runs").rglob("*")}
    count_simulations.clear()
    report = run_sweep(sweep, tmp_path / "out")
    assert (report.ran, report.reused) == (0, 4) and count_simulations == []
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "runs").rglob("*")} == stamps


def test_half_written_runs_are_ignored_and_cleaned(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path))
    run_sweep(sweep, tmp_path / "whole")
    runs = tmp_path / "out" / "runs"
    first, second = sweep.variants[0].id, sweep.variants[1].id
    (runs / f".tmp-{first}-12345").mkdir(parents=True)  # a worker killed mid-write
    (runs / f".tmp-{first}-12345" / "iterations.csv").write_text("iteration,lay")
    (runs / second).mkdir()  # a directory without summary.json is not a result
    (runs / second / "iterations.csv").write_text("garbage")
    report = run_sweep(sweep, tmp_path / "out")
    assert report.ran == 4
    assert sorted(p.name for p in runs.iterdir()) == sorted(v.id for v in sweep.variants)
    assert read_rows(tmp_path / "out" / "results.csv") == read_rows(tmp_path / "whole" / "results.csv")


def test_run_dir_holding_another_scenario_is_refused(tmp_path, capsys):
    path = write_sweep(tmp_path)
    sweep = load_sweep(path)
    run_sweep(sweep, tmp_path / "out", stop_after=1)
    runs = tmp_path / "out" / "runs"
    (runs / sweep.variants[1].id).mkdir()
    (runs / sweep.variants[1].id / "summary.json").write_text(
        (runs / sweep.variants[0].id / "summary.json").read_text())
    code, _, err = run_cli(capsys, "sweep", path, "--out", tmp_path / "out", "--quiet")
    assert code == 2 and err.count("\n") == 1
    assert f"runs/{sweep.variants[1].id}/summary.json: holds a different scenario" in err
    assert len(list(runs.iterdir())) == 2  # nothing ran


def test_variant_failing_at_run_time_does_not_stop_the_others(tmp_path, capsys):
    # greedy_duplication needs a predictor: the schema accepts it, building the system does not
    grid = {"balancer.kind": ["greedy_duplication", "static", "oracle"]}
    path = write_sweep(tmp_path, scenario=TINY, grid=grid)
    code, _, err = run_cli(capsys, "sweep", path, "--out", tmp_path / "out", "--quiet")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "1 of 3 variants failed" in err
    assert "sweep.yaml variant 0 [" in err and "balancer.kind=greedy_duplication]: balancer.kind: " in err
    rows = read_rows(tmp_path / "out" / "results.csv")
    assert [r["balancer.kind"] for r in rows] == ["static", "oracle"]


def test_two_worker_processes_give_the_serial_results(tmp_path, capsys):
    path = write_sweep(tmp_path)
    assert run_cli(capsys, "sweep", path, "--out", tmp_path / "serial", "--quiet")[0] == 0
    code, _, err = run_cli(capsys, "sweep", path, "--out", tmp_path / "parallel", "--workers", "2", "--quiet")
    assert code == 0, err
    assert read_rows(tmp_path / "parallel" / "results.csv") == read_rows(tmp_path / "serial" / "results.csv")


def test_dask_scheduler_gives_the_same_results(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    path = write_sweep(tmp_path)
    assert run_cli(capsys, "sweep", path, "--out", tmp_path / "local", "--quiet")[0] == 0
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:
        code, _, err = run_cli(capsys, "sweep", path, "--out", tmp_path / "dask",
                               "--scheduler", cluster.scheduler_address, "--quiet")
    assert code == 0, err
    assert read_rows(tmp_path / "dask" / "results.csv") == read_rows(tmp_path / "local" / "results.csv")
    assert sorted(p.name for p in (tmp_path / "dask" / "runs").iterdir()) == \
        sorted(p.name for p in (tmp_path / "local" / "runs").iterdir())


# --- bad input: one line, exit 2, nothing run ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


BAD_SWEEPS = [
    ({"scenario": TINY, "grid": {"workload.tokens": [1, 2]}},
     "sweep.yaml: grid: unknown key 'workload.tokens' under workload; "
     "allowed: batch, iterations, mode, phase, seq_len, trace"),
    ({"scenario": TINY, "zip": {"workload.batch": [1, 2], "workload.seq_len": [64]}},
     "sweep.yaml: zip: lists must have equal lengths, got workload.batch: 2, workload.seq_len: 1"),
    ({"scenario": TINY, "grid": GRID, "gird": {}},
     "sweep.yaml: unknown key 'gird'; allowed: base, grid, repeat, scenario, seeds, zip"),
    ({"scenario": TINY, "base": "x.yaml"}, "give exactly one of base"),
    ({"base": "missing.yaml"}, "missing.yaml: no such file"),
    ({"scenario": TINY, "grid": {"workload.batch": 4}}, "grid.workload.batch: must be a non-empty list"),
    ({"scenario": TINY, "grid": {"workload.batch": [1, 0]}},
     "sweep.yaml variant 1 [workload.batch=0]: workload.batch: "
     "input should be greater than or equal to 1, got 0"),
    ({"scenario": TINY, "grid": {"workload.batch": [1, 1]}}, "variants 0 and 1 are the same scenario"),
    ({"scenario": TINY, "seeds": [0], "repeat": 2}, "seeds (a list) or repeat (a count), not both"),
    ({"scenario": TINY, "grid": {"seed": [0, 1]}, "repeat": 2}, "seed is swept in grid/zip and by seeds"),
    ({"scenario": TINY, "grid": {"workload.batch": [1]}, "zip": {"workload.batch": [2]}},
     "'workload.batch' is in both grid and zip"),
]


@pytest.mark.parametrize("spec, expected", BAD_SWEEPS)
def test_bad_sweep_files_exit_2_before_anything_runs(tmp_path, capsys, spec, expected):
    path = write_sweep(tmp_path, **spec)
    code, _, err = run_cli(capsys, "sweep", path, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert expected in err
    assert not (tmp_path / "out").exists()


def test_unreachable_scheduler_exits_2_before_anything_runs(tmp_path, capsys):
    address = f"tcp://127.0.0.1:{_free_port()}"
    code, _, err = run_cli(capsys, "sweep", write_sweep(tmp_path), "--out", tmp_path / "out",
                           "--scheduler", address)
    assert code == 2 and err.count("\n") == 1
    assert f"--scheduler: cannot reach {address}: " in err
    assert not (tmp_path / "out").exists()


def test_bad_worker_count_exits_2(tmp_path, capsys):
    code, _, err = run_cli(capsys, "sweep", write_sweep(tmp_path), "--out", tmp_path / "out",
                           "--workers", "0")
    assert code == 2 and "--workers: must be >= 1, got 0" in err


def test_set_changes_the_base_of_every_variant(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path), ["workload.iterations=1"])
    assert {v.scenario.workload.iterations for v in sweep.variants} == {1}
    with pytest.raises(ScenarioError, match="--set: unknown key 'workload.tokens'"):
        load_sweep(tmp_path / "sweep.yaml", ["workload.tokens=1"])


# --- the bundled example -------------------------------------------------------------------------


def test_bundled_example_sweep_expands_to_eight_distinct_variants():
    sweep = load_sweep(ROOT / "scenarios" / "sweep-nvlink-vs-pcie.yaml")
    assert len(sweep.variants) == 8 and len({v.id for v in sweep.variants}) == 8
    pairs = {(v.scenario.topology["builder"], v.scenario.topology["device"]) for v in sweep.variants}
    assert pairs == {("nvlink_mesh", "a100-sxm4-80gb"), ("pcie_tree", "a100-pcie-80gb")}


# --- docs that run -------------------------------------------------------------------------------

DOC = (ROOT / "docs" / "sweeps.md").read_text()


def test_docs_sweep_file_is_the_bundled_example():
    block = re.search(r"```yaml\n(.*?)```", DOC, re.S).group(1)
    example = ROOT / "scenarios" / "sweep-nvlink-vs-pcie.yaml"
    assert yaml.safe_load(block) == yaml.safe_load(example.read_text())


def test_docs_results_header_is_the_example_sweeps_header(tmp_path):
    sweep = load_sweep(ROOT / "scenarios" / "sweep-nvlink-vs-pcie.yaml")
    write_results_csv(tmp_path / "results.csv", sweep, {})
    header = (tmp_path / "results.csv").read_text().strip()
    assert f"```text\n{header}\n```" in DOC


def test_docs_error_messages_are_the_real_ones():
    quoted = re.findall(r"\(`(sweep\.yaml[^`]*)`\)", DOC)
    assert len(quoted) == 3
    assert set(quoted) <= {expected for _, expected in BAD_SWEEPS}

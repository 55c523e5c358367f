"""`moesim run` and `moesim validate`: outputs per DESIGN.md section 6, one-line errors, exit 2."""

import csv
import json
import shutil
from pathlib import Path

import pytest

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[3]
DEFAULT = ROOT / "scenarios" / "default.yaml"
FAST = ["--set", "workload.iterations=2"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_writes_the_three_result_files(tmp_path, capsys):
    code, out, err = run_cli(capsys, "run", DEFAULT, "--out", tmp_path, *FAST)
    assert code == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("scenario", "seed", "iterations", "latency_s", "breakdown_s", "skewness", "predictor",
                "gpu_utilization", "link_utilization", "events", "wall_s"):
        assert key in summary
    assert set(summary["latency_s"]) >= {"mean", "p50", "p99"}
    assert set(summary["breakdown_s"]) == {"attention", "predictor", "gate", "dispatch", "expert",
                                           "combine", "collective", "replication", "optimizer"}
    assert set(summary["skewness"]) >= {"before", "after"}
    assert summary["scenario"]["model"] == "mixtral-8x7b"
    rows = list(csv.DictReader((tmp_path / "iterations.csv").open()))
    assert len(rows) == 2 * (1 + 32)
    trace = json.loads((tmp_path / "timeline.json").read_text())
    assert any(e["ph"] == "X" for e in trace["traceEvents"])
    assert "latency" in out and "breakdown" in out


def test_run_seed_option_overrides_the_scenario(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", DEFAULT, "--out", tmp_path, "--seed", "7", *FAST)
    assert code == 0, err
    assert json.loads((tmp_path / "summary.json").read_text())["seed"] == 7


def test_summary_is_byte_identical_across_runs_except_wall_time(tmp_path, capsys):
    texts = []
    for name in ("a", "b"):
        assert run_cli(capsys, "run", DEFAULT, "--out", tmp_path / name, *FAST)[0] == 0
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        summary.pop("wall_s")
        texts.append(json.dumps(summary))
    assert texts[0] == texts[1]
    assert (tmp_path / "a" / "iterations.csv").read_bytes() == (tmp_path / "b" / "iterations.csv").read_bytes()


def test_validate_checks_without_running(capsys):
    code, out, _ = run_cli(capsys, "validate", DEFAULT)
    assert code == 0 and "ok" in out


@pytest.mark.parametrize("text, expected", [
    ("model: mixtral-9x9b\n", "model: unknown model 'mixtral-9x9b'"),
    ("topology: {builder: nvlink_mesh, gpus: 4, device: a100-sxm9}\n", "unknown GPU 'a100-sxm9'"),
    ("workload: {batch: 4096, seq_len: 4096}\n", "workload.batch: does not fit in GPU memory"),
    ("workload: {batchh: 1}\n", "workload.batchh: unknown key"),
    ("balancer: {kind: static, placement: {0: 0, 1: 1}}\n", "expert 2 has no replica"),
    ("balancer: {kind: magic}\n", "balancer.kind: unknown balancer 'magic'"),
])
def test_bad_scenarios_give_one_line_and_exit_2(tmp_path, capsys, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "workload: {iterations: 1}\n" * ("workload" not in text))
    code, _, err = run_cli(capsys, "run", path, "--out", tmp_path / "out")
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert expected in err and "bad.yaml" in err


def test_set_on_unknown_key_exits_2(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", DEFAULT, "--out", tmp_path, "--set", "workload.tokens=3")
    assert code == 2 and "--set: unknown key 'workload.tokens'" in err


def test_trace_that_disagrees_with_the_model_exits_2(tmp_path, capsys):
    from workloads.models import model_spec
    from workloads.synthetic import generate_trace

    olmoe = model_spec("olmoe-1b-7b")
    generate_trace(olmoe, iterations=2, tokens=512, seed=0).save(tmp_path / "olmoe.npz")
    scenario = tmp_path / "s.yaml"
    shutil.copy(DEFAULT, scenario)
    code, _, err = run_cli(capsys, "run", scenario, "--out", tmp_path / "out",
                           "--set", f"workload.trace={{file: {tmp_path / 'olmoe.npz'}}}", *FAST)
    assert code == 2 and "workload.trace.file" in err and err.count("\n") == 1


def test_missing_scenario_file_exits_2(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", tmp_path / "nope.yaml", "--out", tmp_path)
    assert code == 2 and "no such file" in err


def test_progress_bar_counts_iterations_on_stderr(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", DEFAULT, "--out", tmp_path, "--progress", *FAST)
    assert code == 0
    assert "2/2" in err and "iteration" in err
    assert "reading trace" in err and "planning" in err and "simulating" in err


def test_validate_checks_the_trace_without_building_it(tmp_path, capsys, monkeypatch):
    from simulator.scenario import traces

    def never(*args, **kwargs):
        raise AssertionError("validate must not generate the trace")

    monkeypatch.setattr(traces, "synthetic_trace", never)
    code, out, err = run_cli(capsys, "validate", ROOT / "scenarios" / "deepseek-v3-4x8xh100-ib.yaml",
                             "--set", "workload.phase=prefill", "--set", "workload.seq_len=16384",
                             "--set", "workload.batch=32")
    assert code == 0, err
    assert "524288 tokens per iteration" in out and "trace 10 x 58 x 524288 x 8 checked" in out
    code, _, err = run_cli(capsys, "validate", DEFAULT, "--set",
                           "workload.trace={synthetic: {skewness: 9}}")
    assert code == 2 and "workload.trace.synthetic.skewness" in err


def test_timeline_can_be_skipped_or_gzipped_and_is_rounded_to_the_nanosecond(tmp_path, capsys):
    import gzip

    from simulator.output.timeline import read_timeline

    assert run_cli(capsys, "run", DEFAULT, "--out", tmp_path / "plain", *FAST)[0] == 0
    plain = json.loads((tmp_path / "plain" / "timeline.json").read_text())
    for event in plain["traceEvents"]:
        assert round(event["ts"], 3) == event["ts"]
        if "dur" in event:
            assert round(event["dur"], 3) == event["dur"] >= 0
    iterations = sorted((e["ts"], e["dur"]) for e in plain["traceEvents"]
                        if e["ph"] == "X" and e["cat"] == "iteration")
    for (ts, dur), (next_ts, _) in zip(iterations, iterations[1:]):
        assert round(ts + dur, 3) == next_ts  # ends are rounded, not durations: slices still touch

    assert run_cli(capsys, "run", DEFAULT, "--out", tmp_path / "gz", "--timeline-gz", *FAST)[0] == 0
    packed = (tmp_path / "gz" / "timeline.json.gz").read_bytes()
    assert not (tmp_path / "gz" / "timeline.json").exists()
    assert json.loads(gzip.decompress(packed)) == plain
    assert len(read_timeline(tmp_path / "gz" / "timeline.json.gz").slices["gpu"]) == \
        sum(e["ph"] == "X" and e["pid"] < 4 for e in plain["traceEvents"])

    code, _, err = run_cli(capsys, "run", DEFAULT, "--out", tmp_path / "gz", "--no-timeline", *FAST)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "gz").iterdir()) == ["iterations.csv", "summary.json"]

"""`moesim compare`: table of latency, speedup vs the first directory and breakdown; stacked plot."""

import csv
import json
import shutil

import pytest

from simulator.cli import main
from simulator.cli.compare import comparison_rows, format_table
from simulator.output.summary import write_results
from simulator.scenario.run import simulate
from simulator.scenario.schema import validate_scenario

MODEL = {"base": "mixtral-8x7b", "name": "tiny-moe", "layers": 2, "hidden": 512, "ffn": 1024,
         "experts": 8, "top_k": 2, "heads": 8, "kv_heads": 8, "head_dim": 64, "vocab": 1000}


def write_run(out, skewness):
    result = simulate(validate_scenario({
        "name": out.name, "model": MODEL,
        "topology": {"builder": "nvlink_mesh", "gpus": 4, "device": "a100-sxm4-80gb"},
        "workload": {"batch": 1, "seq_len": 256, "iterations": 2,
                     "trace": {"synthetic": {"skewness": skewness}}},
    }))
    write_results(out, result.summary, result.rows, result.timeline())
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    return write_run(base / "even", 1.0), write_run(base / "skewed", 4.0)


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def summary(path):
    return json.loads((path / "summary.json").read_text())


def test_compare_prints_latency_speedup_and_breakdown_and_writes_the_plot(runs, tmp_path, capsys):
    even, skewed = runs
    code, out, err = cli(capsys, "compare", even, skewed, "--out", tmp_path / "cmp", "--names", "even,skewed")
    assert code == 0, err
    header, first, second = out.splitlines()[:3]
    assert header.split()[:5] == ["name", "mean_ms", "p50_ms", "p99_ms", "speedup"]
    assert "expert_ms" in header and "dispatch_ms" in header
    assert first.split()[0] == "even" and first.split()[4] == "1.000x"
    a, b = summary(even)["latency_s"]["mean"], summary(skewed)["latency_s"]["mean"]
    assert second.split()[0] == "skewed" and second.split()[4] == f"{a / b:.3f}x"
    assert float(second.split()[1]) == pytest.approx(b * 1e3, abs=5e-4)
    rows = list(csv.DictReader((tmp_path / "cmp" / "compare.csv").open()))
    assert [r["name"] for r in rows] == ["even", "skewed"]
    assert float(rows[1]["speedup"]) == pytest.approx(a / b, rel=1e-12)
    assert float(rows[1]["expert_ms"]) == pytest.approx(summary(skewed)["breakdown_s"]["expert"] * 1e3,
                                                        rel=1e-12)
    png = (tmp_path / "cmp" / "compare_breakdown.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    assert (tmp_path / "cmp" / "compare_breakdown.svg").exists()


def test_compare_defaults_to_directory_names_and_the_first_directory_plots(runs, tmp_path, capsys):
    even, skewed = runs
    first = tmp_path / "even"
    shutil.copytree(even, first)
    code, out, err = cli(capsys, "compare", first, skewed, "--format", "png")
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()[1:3]] == ["even", "skewed"]
    assert (first / "plots" / "compare_breakdown.png").exists()
    assert not (first / "plots" / "compare_breakdown.svg").exists()


def test_speedup_is_the_first_mean_latency_over_each_mean_latency():
    summaries = [{"latency_s": {"mean": 2.0, "p50": 2.0, "p99": 2.5}, "breakdown_s": {"expert": 1.0}},
                 {"latency_s": {"mean": 0.5, "p50": 0.5, "p99": 0.6}, "breakdown_s": {"expert": 0.25}}]
    rows = comparison_rows(["a", "b"], summaries)
    assert [r["speedup"] for r in rows] == [1.0, 4.0]
    assert list(rows[0]) == ["name", "mean_ms", "p50_ms", "p99_ms", "speedup", "expert_ms"]
    assert format_table(rows).splitlines()[2].split() == ["b", "500.000", "500.000", "600.000", "4.000x",
                                                          "250.000"]


@pytest.mark.parametrize("extra, needle", [
    (["--names", "only-one"], "--names: expected 2 non-empty comma-separated names"),
    (["--format", "jpg"], "--format: unknown format(s) ['jpg']"),
])
def test_bad_options_exit_2(runs, capsys, extra, needle):
    code, _, err = cli(capsys, "compare", *runs, *extra)
    assert code == 2 and needle in err


def test_a_directory_without_summary_exits_2_naming_the_file(runs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(capsys, "compare", runs[0], empty)
    assert code == 2 and f"{empty / 'summary.json'}: missing" in err

"""`moesim plot`: every figure from a result directory's files, Gantt at 8 and 64 GPUs, bad input."""

import re
import shlex
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from simulator.output import plots
from simulator.cli import main
from simulator.cli.plot import parse_range
from simulator.engine.cluster import Span
from simulator.errors import ScenarioError
from simulator.output.summary import write_results
from simulator.scenario.run import simulate
from simulator.scenario.schema import validate_scenario
from simulator.output.timeline import read_timeline, run_timeline

ROOT = Path(__file__).resolve().parents[3]
MODEL = {"base": "mixtral-8x7b", "name": "tiny-moe", "layers": 2, "hidden": 512, "ffn": 1024,
         "experts": 8, "top_k": 2, "heads": 8, "kv_heads": 8, "head_dim": 64, "vocab": 1000}
FIGURES = ("breakdown", "expert_load", "link_utilization", "skewness")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_run(out: Path, model=MODEL, topology=None, parallelism=None, workload=None, **sections) -> Path:
    """Simulate a tiny scenario and write its result files as `moesim run` does (full timeline)."""
    raw = {"name": out.name, "model": model,
           "topology": topology or {"builder": "nvlink_mesh", "gpus": 4, "device": "a100-sxm4-80gb"},
           "workload": {"batch": 1, "seq_len": 256, "iterations": 2,
                        "trace": {"synthetic": {"skewness": 1.4}}, **(workload or {})},
           **({"parallelism": parallelism} if parallelism else {}), **sections}
    result = simulate(validate_scenario(raw))
    write_results(out, result.summary, result.rows, run_timeline(result))
    return out


@pytest.fixture(scope="module")
def result_dir(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("runs") / "tiny")


@pytest.fixture(scope="module")
def result_dir_8(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("runs") / "nvswitch8",
                     topology={"builder": "nvswitch", "gpus": 8, "device": "h100-sxm5-80gb"},
                     workload={"iterations": 1})


@pytest.fixture(scope="module")
def result_dir_64(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("runs") / "multi64",
                     model={**MODEL, "experts": 64, "layers": 1},
                     topology={"builder": "multi_node", "nodes": 8, "gpus_per_node": 8,
                               "device": "h100-sxm5-80gb"},
                     parallelism={"ep": 64, "attention": "dp"},
                     workload={"iterations": 1, "batch": 8, "seq_len": 64})


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 2000, path
    return struct.unpack(">II", data[16:24])  # IHDR width, height


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_plot_writes_every_figure_as_png_and_svg(result_dir, capsys):
    code, out, err = cli(capsys, "plot", result_dir, "--timeline")
    assert code == 0, err
    for name in FIGURES + ("gantt",):
        png_size(result_dir / "plots" / f"{name}.png")
        assert (result_dir / "plots" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
        assert str(result_dir / "plots" / f"{name}.png") in out


def test_plot_reads_only_the_three_result_files(result_dir, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("summary.json", "iterations.csv", "timeline.json"):
        shutil.copy(result_dir / name, copy / name)
    code, _, err = cli(capsys, "plot", copy, "--format", "png", "--iterations", "1", "--layers", "1:")
    assert code == 0, err
    assert sorted(p.name for p in (copy / "plots").iterdir()) == sorted(f"{f}.png" for f in FIGURES)


def test_plot_accepts_a_timeline_without_network_or_load_counters(result_dir, tmp_path, capsys):
    """A timeline from spans alone (older moesim) still plots; the missing panels say why."""
    import json

    from simulator.output.timeline import chrome_trace

    bare = tmp_path / "bare"
    shutil.copytree(result_dir, bare, ignore=shutil.ignore_patterns("plots"))
    timeline = read_timeline(bare / "timeline.json")
    spans = [Span(int(g), st, ph, name, int(it), int(layer), start, end) for g, st, ph, name, it, layer,
             start, end in zip(*(timeline.slices[k] for k in ("gpu", "stream", "phase", "name",
                                                            "iteration", "layer", "start_s", "end_s")))]
    (bare / "timeline.json").write_text(json.dumps(chrome_trace(spans, timeline.gpus)))
    code, _, err = cli(capsys, "plot", bare, "--timeline", "--format", "png")
    assert code == 0, err
    png_size(bare / "plots" / "link_utilization.png")


def test_gantt_at_8_gpus_has_a_row_per_gpu_stream_and_at_64_aggregates(result_dir_8, result_dir_64,
                                                                        tmp_path):
    small = plots.plot_gantt(read_timeline(result_dir_8 / "timeline.json"), tmp_path / "g8")
    large = plots.plot_gantt(read_timeline(result_dir_64 / "timeline.json"), tmp_path / "g64")
    assert [p.suffix for p in small] == [".png", ".svg"]
    _, height_8 = png_size(small[0])
    _, height_64 = png_size(large[0])
    # 8 GPUs x 2 streams = 16 rows; 64 GPUs as rows would be 4x taller, aggregated it is not
    assert height_64 < 1.5 * height_8


def test_gantt_of_a_window_outside_the_run_is_an_error(result_dir, capsys):
    code, _, err = cli(capsys, "plot", result_dir, "--timeline", "--iterations", "0", "--layers", "7:9")
    assert code == 2 and "--iterations/--layers" in err and "no timeline slices" in err
    code, _, err = cli(capsys, "plot", result_dir, "--iterations", "5:9")
    assert code == 2 and err.startswith("moesim: error: --iterations:") and "has 2" in err


@pytest.mark.parametrize("argv, needle", [
    (["--iterations", "1-3"], "--iterations: expected A:B"),
    (["--iterations", "3:1"], "--iterations: empty range"),
    (["--layers", "a:b"], "--layers: expected A:B"),
    (["--format", "png,gif"], "--format: unknown format(s) ['gif']; allowed: png, svg"),
])
def test_bad_options_exit_2_naming_the_option(result_dir, capsys, argv, needle):
    code, _, err = cli(capsys, "plot", result_dir, *argv)
    assert code == 2 and needle in err and err.count("\n") == 1


def test_missing_or_broken_result_files_exit_2_naming_the_file(result_dir, tmp_path, capsys):
    code, _, err = cli(capsys, "plot", tmp_path / "nowhere")
    assert code == 2 and "nowhere: no such result directory" in err
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(result_dir / "summary.json", partial / "summary.json")
    code, _, err = cli(capsys, "plot", partial)
    assert code == 2 and "iterations.csv: missing" in err
    shutil.copy(result_dir / "iterations.csv", partial / "iterations.csv")
    (partial / "timeline.json").write_text("{not json")
    code, _, err = cli(capsys, "plot", partial)
    assert code == 2 and "timeline.json: not valid JSON" in err


@pytest.mark.parametrize("text, expected", [
    ("0:2", (0, 2)), ("3", (3, 4)), ("2:", (2, None)), (":5", (None, 5)), (":", (None, None)),
    (" 1 : 4 ", (1, 4)),
])
def test_parse_range_is_half_open_like_python_slices(text, expected):
    assert parse_range(text, "--layers") == expected


@pytest.mark.parametrize("text", ["", "-1:2", "1:2:3", "x", "4:4"])
def test_parse_range_rejects_bad_syntax(text):
    with pytest.raises(ScenarioError, match="--layers"):
        parse_range(text, "--layers")


def test_bin_average_and_peak_of_a_step_function_are_exact():
    times = np.array([0.0, 1.0, 3.0, 4.0])
    values = np.array([0.0, 2.0, 1.0, 0.0])
    edges = np.array([0.0, 2.0, 4.0, 6.0])
    assert plots._bin_average(times, values, edges) == pytest.approx([1.0, 1.5, 0.0])
    assert plots._bin_peak(times, values, edges).tolist() == [2.0, 2.0, 0.0]


@pytest.mark.slow
def test_docs_outputs_commands_run(tmp_path, capsys, monkeypatch):
    """Every `moesim` command in docs/outputs.md's shell blocks runs (results under tmp_path), and
    the compare table is the one the page shows."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scenarios").symlink_to(ROOT / "scenarios")
    text = (ROOT / "docs" / "outputs.md").read_text()
    commands = [line for block in re.findall(r"```bash\n(.*?)```", text, re.S)
                for line in block.splitlines() if line.startswith("moesim ")]
    assert any(c.startswith("moesim plot") for c in commands)
    assert any(c.startswith("moesim compare") for c in commands)
    shown = re.search(r"prints\n\n```text\n(.*?)```", text, re.S).group(1)
    for command in commands:
        code, out, err = cli(capsys, *shlex.split(command)[1:])
        assert code == 0, (command, err)
        if command.startswith("moesim compare"):
            assert out.startswith(shown)  # the table docs/outputs.md shows

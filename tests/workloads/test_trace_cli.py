"""`moesim trace generate|stats`, errors (exit 2), and the examples in docs/workloads.md."""

import json
import re
import shlex
from pathlib import Path

import pytest

from simulator.cli import main
from workloads.models import model_catalogue
from workloads.trace import RoutingTrace

DOC = Path(__file__).resolve().parents[2] / "docs" / "workloads.md"


def test_generate_writes_a_trace_and_reports_its_skewness(tmp_path, capsys):
    out = tmp_path / "t.npz"
    code = main(["trace", "generate", "--model", "mixtral-8x7b", "--iterations", "3",
                 "--tokens", "512", "--skewness", "1.8", "--seed", "4", "--weights",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "3 iterations x 32 MoE layers x 512 tokens, top-2 of 8 experts" in printed
    trace = RoutingTrace.load(out)
    assert trace.meta["generator"]["seed"] == 4 and trace.weights is not None
    assert trace.meta["skewness_achieved"] == pytest.approx(1.8, rel=0.05)


def test_stats_json_is_machine_readable(tmp_path, capsys):
    out = tmp_path / "t.npz"
    main(["trace", "generate", "--model", "switch-base-8", "--iterations", "2", "--tokens", "256",
          "--no-features", "--out", str(out)])
    capsys.readouterr()
    assert main(["trace", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["layers"] == 12 and stats["top_k"] == 1 and stats["num_experts"] == 8
    assert len(stats["skewness"]["per_layer"]) == 12


@pytest.mark.parametrize("argv, message", [
    (["generate", "--model", "mixtral", "--out", "x.npz"],
     "--model: unknown model 'mixtral'; known:"),
    (["generate", "--model", "mixtral-8x7b", "--skewness", "9", "--out", "x.npz"],
     "--skewness: must be between 1 and experts/top_k = 8/2"),
    (["generate", "--model", "mixtral-8x7b", "--iterations", "0", "--out", "x.npz"],
     "--iterations: must be >= 1, got 0"),
    (["stats", "absent.npz"], "absent.npz: no such file"),
])
def test_bad_input_exits_2_with_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["trace", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moesim: error: ") and message in err and err.count("\n") == 1


def test_stats_of_a_non_trace_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert main(["trace", "stats", str(bad)]) == 2
    assert "not a .npz trace" in capsys.readouterr().err


# --- docs that run ---------------------------------------------------------------------------

def _console_blocks(text: str):
    """(command, expected output lines) for each ```console block with a `$ moesim` line."""
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        lines = block.rstrip("\n").split("\n")
        assert lines[0].startswith("$ moesim "), lines[0]
        yield shlex.split(lines[0][2:])[1:], lines[1:]


def _same_line(actual: str, expected: str) -> bool:
    """Words equal; numbers equal within 2% (other BLAS/CPUs may round a tie differently)."""
    a, e = actual.split(), expected.split()
    if len(a) != len(e):
        return False
    for x, y in zip(a, e):
        if x == y:
            continue
        try:
            fx, fy = float(x.rstrip(",;)")), float(y.rstrip(",;)"))
        except ValueError:
            return False
        if abs(fx - fy) > 0.02 * abs(fy) + 1e-3:
            return False
    return True


def test_docs_console_blocks_print_what_the_docs_show(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    blocks = list(_console_blocks(DOC.read_text()))
    assert len(blocks) == 2
    for argv, expected in blocks:
        assert main(argv) == 0
        actual = capsys.readouterr().out.rstrip("\n").split("\n")
        assert len(actual) == len(expected), argv
        for got, want in zip(actual, expected):
            assert _same_line(got, want), f"{got!r} != {want!r}"


def test_docs_python_example_runs(capsys):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), flags=re.S).group(1)
    exec(compile(code, str(DOC), "exec"), {})
    assert "skewness (max/mean load)" in capsys.readouterr().out


def test_docs_catalogue_table_matches_the_catalogue():
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in DOC.read_text().splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in model_catalogue()}
    assert set(rows) == set(model_catalogue())
    for name, m in model_catalogue().items():
        assert rows[name][:8] == [str(m.layers), str(m.moe_layers), str(m.hidden), str(m.ffn),
                                  f"{m.experts} / {m.top_k}", str(m.shared_experts), m.attention,
                                  f"{m.total_params / 1e9:.1f} / {m.active_params / 1e9:.1f}"]
        assert m.source.split()[0] in rows[name][8]

"""docs/predictors.md, "Figures on the real token trace": the Python block prints what the docs
show, and every row of the U-shape table is what its `moesim run` command gives."""

import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "predictors.md"
HEADING = "## Figures on the real token trace"


def _section() -> str:
    text = DOC.read_text()
    start = text.index(HEADING)
    end = text.index("\n## ", start + len(HEADING))
    return text[start:end]


@pytest.mark.slow
def test_real_trace_block_prints_what_the_docs_show(capsys, monkeypatch):
    pytest.importorskip("torch")  # token.lstm rows
    code, shown = re.search(r"```python\n(.*?)```\n\nprints\n\n```text\n(.*?)```", _section(),
                            re.S).groups()
    monkeypatch.chdir(ROOT)
    exec(compile(code, str(DOC), "exec"), {})
    assert capsys.readouterr().out == shown


def _row_arguments(balancer: str, predictor: str) -> list[str]:
    """The documented command's --set options for one table row ("`kind` (objective)")."""
    kind, objective = re.fullmatch(r"`([a-z_]+)`(?: \((time|tokens)\))?", balancer).groups()
    sets = ["predictor.history=10", f"balancer.kind={kind}"]
    if objective == "tokens":
        sets.append("balancer.objective=tokens")
    if predictor == "oracle.token":
        sets.append("predictor.kind=oracle.token")
    elif predictor != "none":
        size = int(re.fullmatch(r"token\.ffn, h = (\d+)", predictor).group(1))
        sets += ["predictor.kind=token.ffn", f"predictor.size={size}"]
    return [arg for value in sets for arg in ("--set", value)]


def test_u_shape_command_template_is_the_one_the_test_runs():
    command = next(line for line in _section().splitlines()
                   if line.startswith("moesim run scenarios/real-token-trace.yaml"))
    argv = shlex.split(command)
    sets = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--set"]
    assert sets == ["predictor.history=10", "balancer.kind=BALANCER", "predictor.kind=token.ffn",
                    "predictor.size=H"]
    assert "--set 'workload.trace={synthetic: {skewness: 1.873}}'" in _section()


@pytest.mark.slow
def test_u_shape_table_rows_are_what_moesim_run_gives(tmp_path):
    from simulator import cli

    rows = [line for line in _section().splitlines() if line.startswith("| `")]
    assert len(rows) == 19
    for number, line in enumerate(rows):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        balancer, predictor = cells[0], cells[1]
        measured = []
        for synthetic in (False, True):
            out = tmp_path / f"{number}-{synthetic}"
            argv = ["run", str(ROOT / "scenarios" / "real-token-trace.yaml"), "--out", str(out),
                    "--quiet", *_row_arguments(balancer, predictor)]
            if synthetic:
                argv += ["--set", "workload.trace={synthetic: {skewness: 1.873}}"]
            assert cli.main(argv) == 0, argv
            measured.append(json.loads((out / "summary.json").read_text()))
        real, synth = measured

        def accuracy(summary):
            value = summary["predictor"]["accuracy"]
            return "-" if value is None else f"{value:.3f}"

        expected = [accuracy(real), f"{real['predictor']['overhead_s'] * 1e6:.2f}",
                    f"{real['breakdown_s']['expert'] * 1e6:.2f}",
                    f"{real['latency_s']['mean'] * 1e6:.2f}", accuracy(synth),
                    f"{synth['latency_s']['mean'] * 1e6:.2f}"]
        assert cells[2:] == expected, line

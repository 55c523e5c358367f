"""What a new user tripped over walking through README and docs/ (issue 11, items 1-3, 5, 6)."""

import subprocess
import sys
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.cli.progress import Progress
from simulator.scenario.schema import load_scenario

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = """\
nodes:
  - {name: gpu0, kind: gpu, device: a100-sxm4-80gb}
  - {name: gpu1, kind: gpu, device: a100-sxm4-80gb}
  - {name: sw0, kind: switch}
links:
  - {a: gpu0, b: sw0, kind: nvlink3}
  - {a: gpu1, b: sw0, kind: nvlink3}
"""
TINY_MODEL = ("{base: mixtral-8x7b, name: tiny-moe, layers: 2, hidden: 512, ffn: 1024, experts: E, "
              "top_k: 2, heads: 8, kv_heads: 8, head_dim: 64, vocab: 1000}")


def test_scenario_names_a_topology_file_relative_to_itself(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "two-gpus.yaml").write_text(TOPOLOGY)
    (folder / "s.yaml").write_text(f"name: x\nmodel: {TINY_MODEL.replace('E', '8')}\n"
                                   "topology: two-gpus.yaml\n"
                                   "workload: {seq_len: 64, iterations: 2}\n")
    monkeypatch.chdir(tmp_path)  # elsewhere: the path is the scenario's, not the shell's
    assert main(["validate", "study/s.yaml"]) == 0
    assert "2 GPUs" in capsys.readouterr().out


def test_validate_checks_every_variant_of_a_sweep(capsys):
    assert main(["validate", str(ROOT / "scenarios" / "sweep-nvlink-vs-pcie.yaml")]) == 0
    out = capsys.readouterr().out
    variants = int(out.rsplit("(", 1)[1].split()[0])
    assert variants > 1 and out.count(" GPUs, ") == variants


def test_set_topology_gpus_carries_ep_and_the_name_along():
    scenario = load_scenario(ROOT / "scenarios" / "default.yaml",
                             ["workload.batch=4", "topology.gpus=8"])
    assert scenario.parallelism.ep == 8 and scenario.topology["gpus"] == 8
    assert scenario.name == "mixtral-8x7b-8xa100-nvlink"
    explicit = load_scenario(ROOT / "scenarios" / "default.yaml",
                             ["topology.gpus=8", "parallelism.ep=4", "name=mine"])
    assert explicit.parallelism.ep == 4 and explicit.name == "mine"


def test_many_experts_with_predictor_history_do_not_overflow(tmp_path, capsys):
    """E * E exceeds int16 from 182 experts: the co-routing counts were computed in int16."""
    path = tmp_path / "s.yaml"
    path.write_text(f"name: x\nmodel: {TINY_MODEL.replace('E', '256')}\n"
                    "workload: {seq_len: 64, iterations: 2}\n"
                    "predictor: {kind: distribution.mle, history: 2}\nbalancer: {kind: eplb}\n")
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    from simulator.scenario.system import _reduce_trace, build_system

    system = build_system(load_scenario(path))
    _, counts, _ = _reduce_trace(system.trace, system.ownership, system.gpus, 4, 2, system.tokens, 256,
                                 lambda done, total: None)
    assert counts.min() >= 0 and counts.sum() == 2 * 1 * system.tokens  # history x (layers-1) x tokens


def test_forecast_without_torch_suggests_the_methods_that_work(monkeypatch, capsys, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    trace = ROOT / "workloads" / "data" / "train_load_wikipedia.npz"
    code = main(["forecast", str(trace), "--horizon", "10", "--out", str(tmp_path / "f")])
    err = capsys.readouterr().err
    assert code == 2 and "--methods: lstm needs torch" in err and "--methods window,arima" in err


def test_python_m_workloads_moe_lm_prints_no_runpy_warning():
    result = subprocess.run([sys.executable, "-m", "workloads.moe_lm", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "RuntimeWarning" not in result.stderr


def test_progress_off_a_terminal_is_plain_lines(monkeypatch, capsys):
    monkeypatch.setattr("simulator.cli.progress.LINE_EVERY_S", 0.0)
    with Progress(None, 3, "sweep", "run", "lines") as bar:
        for _ in range(3):
            bar.update(1)
    err = capsys.readouterr().err
    assert "\r" not in err and err.splitlines()[-1].startswith("sweep: 3/3 runs (100%)")
    with Progress(None, 3, "sweep", "run", "off") as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""

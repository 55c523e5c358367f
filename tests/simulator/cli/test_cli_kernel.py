"""`moesim kernel`: output, JSON, errors (exit 2) and the commands shown in docs/compute.md."""

import json
import re
import shlex
from pathlib import Path

import pytest

from simulator.cli.kernel import parse_counts
from simulator.model.compute import ComputeModel, reference_gemms
from simulator.errors import ScenarioError
from topologies.devices import gpu_spec

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "compute.md"


def test_ffn_table_prints_one_row_per_token_count(moesim):
    code, out, err = moesim("kernel", "--gpu", "a100-sxm4-80gb", "--op", "ffn", "--tokens", "1,64,4096")
    assert code == 0, err
    lines = out.splitlines()
    assert "mixtral-8x7b" in lines[0] and "a100-sxm4-80gb" in lines[0]
    assert lines[1].split() == ["tokens", "time_us", "GFLOP", "MB", "TFLOP/s", "%peak", "bound"]
    rows = [line.split() for line in lines[2:]]
    assert [r[0] for r in rows] == ["1", "64", "4096"]
    assert [r[-1] for r in rows] == ["memory", "memory", "compute"]


def test_json_rows_are_the_compute_model(moesim):
    code, out, err = moesim("kernel", "--gpu", "h100-sxm5-80gb", "--op", "gemm", "--n", "4096",
                            "--k", "7168", "--tokens", "64:256:x2", "--dtype-bytes", "1", "--json")
    assert code == 0, err
    rows = json.loads(out)
    compute = ComputeModel(gpu_spec("h100-sxm5-80gb"))
    assert [r["m"] for r in rows] == [64, 128, 256]
    for row in rows:
        cost = compute.gemm(row["m"], 4096, 7168, dtype_bytes=1)
        assert row["time_us"] == pytest.approx(cost.time_s * 1e6, rel=1e-12)
        assert row["flops"] == cost.flops and row["bytes"] == cost.bytes
        assert row["bound"] == cost.bound and row["kernels"] == 1
        assert row["tflops"] == pytest.approx(cost.flops / cost.time_s / 1e12, rel=1e-12)
        assert row["percent_of_peak"] == pytest.approx(
            100 * cost.flops / cost.time_s / compute.peak_flops(1), rel=1e-12)


def test_decode_attention_rows_use_tokens_as_batch(moesim):
    code, out, err = moesim("kernel", "--gpu", "h100-sxm5-80gb", "--op", "attention", "--phase", "decode",
                            "--tokens", "1,32", "--context", "8192", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["batch"], r["context"], r["phase"]) for r in rows] == [(1, 8192, "decode"),
                                                                      (32, 8192, "decode")]
    assert all(r["bound"] == "memory" for r in rows)


def test_prefill_attention_and_router_run(moesim):
    code, out, err = moesim("kernel", "--gpu", "mi300x", "--op", "attention", "--tokens", "4096",
                            "--batch", "2", "--tp", "2", "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert (row["batch"], row["context"], row["tp"]) == (2, 2048, 2)
    code, out, err = moesim("kernel", "--gpu", "b200-sxm-180gb", "--op", "router")
    assert code == 0, err
    assert "router" in out.splitlines()[0]


def test_calibration_csv_replaces_listed_shapes(moesim, tmp_path):
    csv = tmp_path / "k.csv"
    csv.write_text("gpu,op,m,n,k,time_us,source\na100-sxm4-80gb,gemm,100,1024,1024,50,t\n"
                   "a100-sxm4-80gb,gemm,200,1024,1024,70,t\n")
    code, out, err = moesim("kernel", "--gpu", "a100-sxm4-80gb", "--op", "gemm", "--n", "1024", "--k", "1024",
                            "--tokens", "100,150,300", "--calibration", csv, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["bound"] for r in rows] == ["calibrated", "calibrated", "compute"]
    assert rows[1]["time_us"] == pytest.approx(60.0, rel=1e-12)


@pytest.mark.parametrize("argv, message", [
    (["--gpu", "v100", "--op", "ffn"], "--gpu: unknown GPU 'v100'; known: a100-pcie-80gb"),
    (["--gpu", "a100-sxm4-80gb", "--op", "ffn", "--model", "gpt-5"], "--model: unknown model 'gpt-5'"),
    (["--gpu", "a100-sxm4-80gb", "--op", "ffn", "--tokens", "1,x"], "--tokens: expected N"),
    (["--gpu", "a100-sxm4-80gb", "--op", "ffn", "--tokens", "8:2"], "--tokens: range '8:2' must not go down"),
    (["--gpu", "a100-sxm4-80gb", "--op", "gemm", "--m", "8"], "--op: gemm needs --n, --k"),
    (["--gpu", "a100-sxm4-80gb", "--op", "attention", "--phase", "decode", "--tokens", "4", "--batch", "4"],
     "--batch: in decode --tokens is the batch"),
    (["--gpu", "a100-sxm4-80gb", "--op", "attention", "--tokens", "512", "--context", "100"],
     "context_len: must be >= the new tokens per sequence (512)"),
    (["--gpu", "a100-sxm4-80gb", "--op", "ffn", "--calibration", "absent.csv"], "absent.csv: no such file"),
])
def test_bad_input_exits_2_with_one_line(moesim, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = moesim("kernel", *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("moesim: error: ")
    assert message in err


def test_bad_calibration_csv_exits_2_naming_line_and_column(moesim, tmp_path):
    csv = tmp_path / "k.csv"
    csv.write_text("gpu,op,m,n,k,time_us,source\na100-sxm4-80gb,gemm,1,2,3,-1,t\n")
    code, out, err = moesim("kernel", "--gpu", "a100-sxm4-80gb", "--op", "ffn", "--calibration", csv)
    assert code == 2
    assert f"{csv}:2: column 'time_us': must be a number > 0" in err


def test_unknown_op_is_an_argparse_error(moesim):
    with pytest.raises(SystemExit) as exit_:
        moesim("kernel", "--gpu", "a100-sxm4-80gb", "--op", "conv")
    assert exit_.value.code == 2


@pytest.mark.parametrize("text, counts", [
    ("7", [7]),
    ("1,16,128,4096", [1, 16, 128, 4096]),
    ("1:8:x2", [1, 2, 4, 8]),
    ("1:10:x4", [1, 4]),
    ("0:10:5", [0, 5, 10]),
    ("3:5", [3, 4, 5]),
    ("1, 2:3", [1, 2, 3]),
])
def test_parse_counts(text, counts):
    assert parse_counts(text) == counts


@pytest.mark.parametrize("text", ["", "a", "-1", "1:8:x1", "0:8:x2", "1:8:0", "1:8:2.5", "0:100000000"])
def test_parse_counts_rejects(text):
    with pytest.raises(ScenarioError, match="--tokens"):
        parse_counts(text)


# --- docs that run ---------------------------------------------------------------------------------

def doc_blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_docs_console_blocks_print_what_the_docs_show(moesim, tmp_path, monkeypatch):
    """Every `$ moesim ...` block in docs/compute.md, run, prints exactly the lines below it."""
    (csv,) = doc_blocks("csv")
    (tmp_path / "kernels.csv").write_text(csv)
    monkeypatch.chdir(tmp_path)
    blocks = doc_blocks("console")
    assert len(blocks) >= 5
    for block in blocks:
        command, _, expected = block.partition("\n")
        assert command.startswith("$ moesim kernel ")
        code, out, err = moesim(*shlex.split(command[2:])[1:])
        assert code == 0, (command, err)
        assert out == expected, command


def test_docs_validation_table_matches_the_model():
    text = DOC.read_text()
    table = text.split("<!-- validation-table -->")[1].split("<!-- end validation-table -->")[0]
    rows = [line.strip("|").split("|") for line in table.strip().splitlines()[2:]]
    references = {(r["gpu"], r["m"], r["n"], r["k"], r["dtype_bytes"]): r for r in reference_gemms()}
    assert len(rows) >= 10
    for cells in rows:
        gpu, m, n, k, d, measured, modelled, _source = (c.strip() for c in cells)
        key = (gpu, int(m), int(n), int(k), int(d))
        assert float(measured) == references[key]["tflops"]
        cost = ComputeModel(gpu_spec(gpu)).gemm(int(m), int(n), int(k), int(d))
        assert f"{cost.tflops:.1f}" == modelled, key

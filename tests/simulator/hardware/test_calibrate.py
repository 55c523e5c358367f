"""`moesim calibrate`: nccl-tests logs and kernel CSVs in, fitted catalogue figures out; bad input
names the file and line; the fit recovers the mechanisms that generated the data; docs run."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

import topologies
from simulator.hardware import fit as cal
from simulator.errors import ScenarioError
from topologies.paths import PathTable, gpu_nodes

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "calibration.md"

# what "the hardware" is in the recovery tests: mechanisms the fit must find again
TRUTH = {"links": {"nvswitch3": {"efficiency": 0.7, "message_latency_us": 1.5}}, "launch_us": {"ring": 6.0}}
SIZES_SMALL = [1024, 4096]
SIZES_LARGE = [2**28, 2**30]


def measured_log(tmp_path, ranks, op="all_reduce", sizes=SIZES_SMALL + SIZES_LARGE, name=None):
    """An nccl-tests log of what the TRUTH-calibrated 8-GPU A100 NVSwitch server does."""
    truth = PathTable(topologies.calibrate(topologies.nvswitch(gpus=8, device="a100-sxm4-80gb"), TRUTH))
    group = gpu_nodes(truth.graph)[:ranks]
    rows = [(size, cal.simulate_row(truth, op, group, size)["time_us"]) for size in sizes]
    path = tmp_path / (name or f"{op}_perf_{ranks}.log")
    path.write_text(cal.format_nccl_tests(op, rows, ranks, device="NVIDIA A100-SXM4-80GB"))
    return path


# ------------------------------------------------------------------ parsing nccl-tests output


def test_parser_reads_ranks_hosts_devices_and_rows(tmp_path):
    log = cal.parse_nccl_tests(measured_log(tmp_path, 4))
    assert (log.op, log.ranks, log.hosts) == ("all_reduce", 4, 1)
    assert log.devices == ("NVIDIA A100-SXM4-80GB",) * 4
    assert [row.size for row in log.rows] == SIZES_SMALL + SIZES_LARGE
    assert all(row.in_place_time_us == pytest.approx(row.time_us) for row in log.rows)


OLD_LAYOUT = """\
nThread 1 nGpus 2 minBytes 32 maxBytes 1073741824 step: 2(factor) warmup iters: 5 iters: 20 validation: 1

Using devices
  Rank  0 Pid 1533050 on AI-A100-Beethoven01 device  0 [0x00] NVIDIA A100-SXM4-40GB
  Rank  1 Pid 1533050 on AI-A100-Beethoven01 device  1 [0x00] NVIDIA A100-SXM4-40GB

                                                       out-of-place                       in-place
       size         count      type   redop     time   algbw   busbw  error     time   algbw   busbw  error
        (B)    (elements)                       (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
          32             8     float     sum    10.14    0.00    0.00  0e+00    10.21    0.00    0.00  0e+00
          64            16     float     sum    10.14    0.01    0.01  0e+00    10.31    0.01    0.01  0e+00
 Out of bounds values : 0 OK
 Avg bus bandwidth    : 0.005
"""


def test_parser_reads_the_older_layout_without_root_column(tmp_path):
    path = tmp_path / "all_reduce_perf.txt"
    path.write_text(OLD_LAYOUT)
    log = cal.parse_nccl_tests(path)
    assert (log.op, log.ranks, log.hosts) == ("all_reduce", 2, 1)
    assert [(r.size, r.time_us, r.in_place_time_us) for r in log.rows] == [(32, 10.14, 10.21), (64, 10.14, 10.31)]


def test_parser_skips_mpi_prefixes_and_nccl_info_lines(tmp_path):
    text = measured_log(tmp_path, 2).read_text().splitlines()
    noisy = [f"[0] {line}" if i % 2 else line for i, line in enumerate(text)]
    noisy.insert(12, "node0:1234:1234 [0] NCCL INFO Channel 00/24 : 0 1")
    path = tmp_path / "noisy_all_reduce_perf.log"
    path.write_text("\n".join(noisy))
    assert len(cal.parse_nccl_tests(path).rows) == 4


def test_parser_counts_hosts_for_multi_server_logs(tmp_path):
    path = tmp_path / "sendrecv_perf.log"
    path.write_text(cal.format_nccl_tests("sendrecv", [(2**20, 30.0)], ranks=16, hosts=2))
    log = cal.parse_nccl_tests(path)
    assert (log.op, log.ranks, log.hosts) == ("sendrecv", 16, 2)


def lines_of(path):
    return path.read_text().splitlines()


def test_truncated_log_names_the_cut_line(tmp_path):
    lines = lines_of(measured_log(tmp_path, 4))
    last_row = max(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    cut = lines[:last_row] + [lines[last_row][:40]]  # the job died mid-line
    path = tmp_path / "cut_all_reduce_perf.log"
    path.write_text("\n".join(cut))
    with pytest.raises(ScenarioError) as error:
        cal.parse_nccl_tests(path)
    assert error.value.field == f"{path}:{last_row + 1}" and "truncated line" in str(error.value)


def test_log_without_its_closing_line_is_refused(tmp_path):
    lines = lines_of(measured_log(tmp_path, 4))
    rows_end = max(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    path = tmp_path / "short_all_reduce_perf.log"
    path.write_text("\n".join(lines[:rows_end + 1]))
    with pytest.raises(ScenarioError, match=rf"{path}:{rows_end + 1}: log ends at line {rows_end + 1}"):
        cal.parse_nccl_tests(path)


@pytest.mark.parametrize("column, index", [("size", 0), ("time", 5), ("busbw", 7)])
def test_non_numeric_field_names_line_and_column(tmp_path, column, index):
    lines = lines_of(measured_log(tmp_path, 4))
    first_row = min(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    fields = lines[first_row].split()
    fields[index] = "fast"
    lines[first_row] = "  ".join(fields)
    text = "no result rows" if column == "size" else f"column '{column}'"
    path = tmp_path / "bad_all_reduce_perf.log"
    path.write_text("\n".join(lines))
    if column == "size":  # not a row at all: skipped like chatter; the other rows still parse
        assert len(cal.parse_nccl_tests(path).rows) == 3
        return
    with pytest.raises(ScenarioError, match=rf"{path}:{first_row + 1}: {text}"):
        cal.parse_nccl_tests(path)


def test_unrecognisable_logs_are_refused(tmp_path):
    empty = tmp_path / "all_gather_perf.log"
    empty.write_text("# nThread 1 nGpus 1\n# Avg bus bandwidth    : 0\n")
    with pytest.raises(ScenarioError, match="no result rows"):
        cal.parse_nccl_tests(empty)
    anonymous = tmp_path / "results.txt"
    anonymous.write_text("hello\n")
    with pytest.raises(ScenarioError, match="cannot tell which collective"):
        cal.parse_nccl_tests(anonymous)
    with pytest.raises(ScenarioError, match="no such file"):
        cal.parse_nccl_tests(tmp_path / "missing_all_reduce_perf.log")


# ------------------------------------------------------------------ fitting


def test_fit_recovers_efficiency_message_and_launch_latency(tmp_path):
    """2- and 4-rank logs: different step counts separate the launch from the per-step latency."""
    logs = [cal.parse_nccl_tests(measured_log(tmp_path, n)) for n in (2, 4)]
    fitted, fit = cal.calibrate(topologies.nvswitch(gpus=8, device="a100-sxm4-80gb"), logs)
    figures = fitted["links"]["nvswitch3"]
    assert figures["efficiency"] == pytest.approx(0.7, rel=2e-3)
    assert figures["message_latency_us"] == pytest.approx(1.5, rel=2e-3)
    assert fitted["launch_us"]["ring"] == pytest.approx(6.0, rel=2e-3)
    assert "all_reduce_perf_2.log" in figures["source"]
    assert all(abs(r["model_us"] / r["measured_us"] - 1) < 5e-3 for r in fit.report)


def test_one_log_keeps_the_catalogue_launch_and_fits_the_rest(tmp_path):
    from simulator.engine.collectives import tuning

    logs = [cal.parse_nccl_tests(measured_log(tmp_path, 8))]
    fitted, _ = cal.calibrate(topologies.nvswitch(gpus=8, device="a100-sxm4-80gb"), logs)
    assert "launch_us" not in fitted  # one step count cannot separate the two
    assert fitted["links"]["nvswitch3"]["efficiency"] == pytest.approx(0.7, rel=2e-3)
    default = tuning()["launch_us"]["ring"]["value"]
    # launch + 14 steps x (m + 0.6): the per-step latency absorbs the launch difference
    expected_m = 1.5 + (6.0 - default) / 14
    assert fitted["links"]["nvswitch3"]["message_latency_us"] == pytest.approx(expected_m, rel=5e-3)
    assert set(fitted["links"]) == {"nvswitch3"}  # kinds the logs do not reach keep the catalogue's


def test_fitted_file_makes_the_collective_match_the_measurement(tmp_path, moesim):
    logs = [measured_log(tmp_path, n) for n in (2, 4)]
    out = tmp_path / "fit.yaml"
    code, text, err = moesim("calibrate", *logs, "--topology", "nvswitch", "--device", "a100-sxm4-80gb",
                             "--out", out)
    assert code == 0, err
    assert "nvswitch3: efficiency 0.7" in text and f"wrote {out}" in text
    data = yaml.safe_load(out.read_text())
    assert set(data) == {"links", "launch_us"}
    code, text, err = moesim("collective", "allreduce", "--topology", "nvswitch", "--device", "a100-sxm4-80gb",
                             "--gpus", "4", "--min-bytes", "1G", "--max-bytes", "1G", "--calibration", out,
                             "--json")
    assert code == 0, err
    measured = cal.parse_nccl_tests(logs[1]).rows[-1]
    assert yaml.safe_load(text)[0]["time_us"] == pytest.approx(measured.time_us, rel=5e-3)
    # and in a scenario's topology section
    graph = topologies.build({"builder": "nvswitch", "device": "a100-sxm4-80gb", "calibration": str(out)})
    assert graph.edges["gpu0", "nvsw0"]["bandwidth_Bps"] == pytest.approx(0.7 * 300e9, rel=2e-3)


def test_kernel_csv_is_checked_written_back_and_fitted(tmp_path, moesim):
    from simulator.model.compute import ComputeModel
    from topologies.devices import gpu_spec

    model = ComputeModel(gpu_spec("a100-sxm4-80gb"))
    rows = ["gpu,op,m,n,k,time_us,source"]
    for m in (64, 256, 1024, 4096):
        rows.append(f"a100-sxm4-80gb,gemm,{m},4096,4096,{model.gemm(m, 4096, 4096).time_s * 1e6 * 1.25:.4f},bench")
    csv = tmp_path / "kernels.csv"
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "fit.yaml"
    code, text, err = moesim("calibrate", "--kernels", csv, "--topology", "nvswitch", "--out", out)
    assert code == 0, err
    data = yaml.safe_load(out.read_text())
    assert data["kernels_csv"] == "fit.kernels.csv" and (tmp_path / "fit.kernels.csv").exists()
    # 25% slower everywhere: the saturated efficiency falls, the memory-bound rows limit the fit
    assert data["kernels"]["a100-sxm4-80gb"]["eff_max"] < 0.8
    assert "a100-sxm4-80gb: GEMM eff_max" in text


@pytest.mark.parametrize("content, where, text", [
    ("gpu,op,m,n,k,source\na100-sxm4-80gb,gemm,1,2,3,x\n", ":1", "missing column 'time_us'"),
    ("gpu,op,m,n,k,time_us,source\na100-sxm4-80gb,gemm,1,2,3,fast,x\n", ":2", "column 'time_us'"),
])
def test_bad_kernel_csv_exits_2_naming_the_line(tmp_path, moesim, content, where, text):
    csv = tmp_path / "kernels.csv"
    csv.write_text(content)
    code, out, err = moesim("calibrate", "--kernels", csv, "--topology", "nvswitch", "--out", tmp_path / "f.yaml")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and f"{csv}{where}" in err and text in err


def test_bad_calibrate_input_exits_2_with_one_line(tmp_path, moesim):
    path = tmp_path / "all_reduce_perf.log"
    lines = lines_of(measured_log(tmp_path, 4, name="all_reduce_perf.log"))
    path.write_text("\n".join(lines[:-4]) + "\n" + lines[-5][:30])
    code, out, err = moesim("calibrate", path, "--topology", "nvswitch", "--out", tmp_path / "f.yaml")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and str(path) + ":" in err
    code, _, err = moesim("calibrate", "--topology", "nvswitch", "--out", tmp_path / "f.yaml")
    assert code == 2 and "LOG" in err
    big = measured_log(tmp_path, 8, name="all_reduce_perf_8.log")
    code, _, err = moesim("calibrate", big, "--topology", "nvswitch", "--device", "h100-sxm5-80gb",
                            "--nodes", "1", "--out", tmp_path / "f.yaml", "--algo", "bogus")
    assert code == 2 and "--algo" in err


def test_log_larger_than_the_topology_is_refused(tmp_path):
    log = cal.parse_nccl_tests(measured_log(tmp_path, 8))
    with pytest.raises(ScenarioError, match="8 ranks, the topology has 4 GPUs"):
        cal.group_for(topologies.nvswitch(gpus=4), log)


# ------------------------------------------------------------------ docs that run


def doc_blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_docs_console_blocks_print_what_the_docs_show(moesim, tmp_path, monkeypatch):
    """docs/calibration.md's logs are written to a directory and its commands run there."""
    for block in doc_blocks("text"):
        name, _, content = block.partition("\n")
        if name.startswith("# file: "):
            (tmp_path / name[len("# file: "):].strip()).write_text(content)
    monkeypatch.chdir(tmp_path)
    blocks = doc_blocks("console")
    assert len(blocks) >= 2
    for block in blocks:
        command, _, expected = block.partition("\n")
        assert command.startswith("$ moesim "), command
        code, out, err = moesim(*shlex.split(command[2:])[1:])
        assert code == 0, (command, err)
        assert out == expected, command
    for block in doc_blocks("yaml"):  # the scenario snippets build (one takes the fitted file)
        spec = yaml.safe_load(block)["topology"]
        graph = topologies.build(spec)
        if "calibration" in spec:
            fitted = yaml.safe_load(Path(spec["calibration"]).read_text())
            assert graph.graph["calibration"]["launch_us"] == fitted["launch_us"]
        if "algorithms" in spec:
            assert graph.graph["algorithms"] == spec["algorithms"]

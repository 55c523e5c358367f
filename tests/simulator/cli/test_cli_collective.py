"""`moesim collective`: nccl-tests columns, bus bandwidth, JSON, errors (exit 2) and the docs."""

import json
import re
import shlex
from pathlib import Path

import pytest

from simulator.cli.collective import parse_size, sizes
from simulator.errors import ScenarioError

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "collectives.md"


def test_table_has_nccl_tests_columns_and_one_row_per_size(moesim):
    code, out, err = moesim("collective", "allreduce", "--topology", "nvswitch", "--gpus", "8",
                            "--min-bytes", "1K", "--max-bytes", "1M", "--factor", "4")
    assert code == 0, err
    lines = out.splitlines()
    assert "nvswitch-8x" in lines[0] and "8 GPUs" in lines[0]
    header = [line for line in lines if line.startswith("#") and "size" in line][0]
    assert header.split()[1:] == ["size", "count", "type", "redop", "time", "algbw", "busbw"]
    rows = [line.split() for line in lines if not line.startswith("#")]
    assert [int(r[0]) for r in rows] == [1024, 4096, 16384, 65536, 262144, 1048576]
    assert all(r[2] == "bfloat16" and r[3] == "sum" for r in rows)
    assert [int(r[1]) for r in rows] == [int(r[0]) // 2 for r in rows]


@pytest.mark.parametrize("op, factor", [("allreduce", 2 * 7 / 8), ("reducescatter", 7 / 8),
                                        ("allgather", 7 / 8), ("alltoall", 7 / 8), ("sendrecv", 1.0)])
def test_busbw_uses_nccl_tests_factors(moesim, op, factor):
    code, out, err = moesim("collective", op, "--topology", "ring", "--gpus", "8",
                            "--min-bytes", "1M", "--max-bytes", "4M", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 3
    for row in rows:
        assert row["algbw_GBps"] == pytest.approx(row["bytes"] / (row["time_us"] * 1e-6) / 1e9, rel=1e-12)
        assert row["busbw_GBps"] == pytest.approx(row["algbw_GBps"] * factor, rel=1e-12)
        assert row["op"] == op and row["gpus"] == 8


def test_allreduce_on_a_ring_matches_the_closed_form(moesim):
    code, out, err = moesim("collective", "allreduce", "--topology", "ring", "--gpus", "4",
                            "--min-bytes", "64M", "--max-bytes", "64M", "--alpha-us", "3", "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    import topologies

    graph = topologies.ring(gpus=4)
    bandwidth, latency = graph.edges["gpu0", "gpu1"]["bandwidth_Bps"], graph.edges["gpu0", "gpu1"]["latency_s"]
    expected = 2 * 3 * (3e-6 + latency) + 2 * 3 / 4 * 2**26 / bandwidth
    assert row["time_us"] == pytest.approx(expected * 1e6, rel=1e-9)


def test_size_conventions_follow_nccl_tests(moesim):
    # alltoall: size = a rank's whole send buffer, size/n to each peer; count = per peer
    code, out, err = moesim("collective", "alltoall", "--topology", "nvswitch", "--gpus", "4",
                            "--min-bytes", "1004", "--max-bytes", "1004", "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["bytes"] == 1000 and row["count"] == 125  # 502 elements rounded down to 4 x 125
    assert row["network_bytes"] == pytest.approx(4 * 3 * 250)
    # sizes too small to give every rank an element are skipped
    code, out, err = moesim("collective", "allgather", "--topology", "nvswitch", "--gpus", "8",
                            "--min-bytes", "8", "--max-bytes", "32", "--json")
    assert [row["bytes"] for row in json.loads(out)] == [16, 32]


def test_multi_node_gpus_option_is_the_total(moesim):
    code, out, err = moesim("collective", "alltoall", "--topology", "multi_node", "--nodes", "2",
                            "--gpus", "8", "--min-bytes", "1M", "--max-bytes", "1M", "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["gpus"] == 8 and row["flows"] == 56


def test_yaml_topology_file_and_gpus_prefix(moesim, tmp_path):
    path = tmp_path / "pair.yaml"
    path.write_text(
        "topology:\n"
        "  nodes:\n"
        "    - {name: a, kind: gpu, device: h100-sxm5-80gb}\n"
        "    - {name: b, kind: gpu, device: h100-sxm5-80gb}\n"
        "    - {name: c, kind: gpu, device: h100-sxm5-80gb}\n"
        "  links:\n"
        "    - {a: a, b: b, kind: nvlink4, bandwidth_GBps: 100, latency_us: 1}\n"
        "    - {a: b, b: c, kind: nvlink4, bandwidth_GBps: 100, latency_us: 1}\n"
    )
    code, out, err = moesim("collective", "sendrecv", "--topology", path, "--gpus", "2",
                            "--min-bytes", "1G", "--max-bytes", "1G", "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["gpus"] == 2
    assert row["time_us"] == pytest.approx((1e-6 + 2**30 / 100e9) * 1e6, rel=1e-9)


@pytest.mark.parametrize("argv, option", [
    (["bogus", "--topology", "nvswitch"], "op"),
    (["alltoall", "--topology", "nvswitch", "--min-bytes", "1X"], "--min-bytes"),
    (["alltoall", "--topology", "nvswitch", "--max-bytes", "-3"], "--max-bytes"),
    (["alltoall", "--topology", "nvswitch", "--min-bytes", "2M", "--max-bytes", "1M"], "--min-bytes"),
    (["alltoall", "--topology", "nvswitch", "--factor", "1"], "--factor"),
    (["alltoall", "--topology", "nvswitch", "--factor", "two"], "--factor"),
    (["alltoall", "--topology", "nvswitch", "--alpha-us", "-1"], "--alpha-us"),
    (["alltoall", "--topology", "nvswitch", "--gpus", "2.5"], "--gpus"),
    (["alltoall", "--topology", "nvswitch", "--gpus", "1"], "--gpus"),
    (["alltoall", "--topology", "multi_node", "--nodes", "3", "--gpus", "8"], "--gpus"),
    (["alltoall"], "--topology"),
    (["alltoall", "--topology", "nvswich"], "topology"),
    (["alltoall", "--topology", "nvswitch", "--device", "h100-pcie-80gb"], "device"),
    (["alltoall", "--topology", "missing.yaml"], "missing.yaml"),
])
def test_bad_input_exits_2_with_one_line_naming_the_option(moesim, argv, option):
    code, out, err = moesim("collective", *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert option in err


@pytest.mark.parametrize("text, nbytes", [("1", 1), ("1K", 1024), ("128M", 128 * 2**20),
                                          ("8G", 8 * 2**30), ("2k", 2048), ("1GiB", 2**30), ("64MB", 64 * 2**20)])
def test_parse_size_uses_powers_of_1024(text, nbytes):
    assert parse_size(text, "--min-bytes") == nbytes


@pytest.mark.parametrize("text", ["", "K", "1X", "-1", "0", "1.5.2K"])
def test_parse_size_rejects(text):
    with pytest.raises(ScenarioError, match="--max-bytes"):
        parse_size(text, "--max-bytes")


def test_sizes_step_by_factor_up_to_max_inclusive():
    assert sizes(1024, 8192, 2) == [1024, 2048, 4096, 8192]
    assert sizes(1, 10, 1.5) == [1, 2, 3, 4, 6, 9]


# --- docs that run -------------------------------------------------------------------------------


def doc_blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_docs_console_blocks_print_what_the_docs_show(moesim):
    """Every `$ moesim collective ...` block in docs/collectives.md prints exactly what follows it."""
    blocks = doc_blocks("console")
    assert len(blocks) >= 3
    for block in blocks:
        command, _, expected = block.partition("\n")
        assert command.startswith("$ moesim collective "), command
        code, out, err = moesim(*shlex.split(command[2:])[1:])
        assert code == 0, (command, err)
        assert out == expected, command


def test_docs_python_examples_run():
    for block in doc_blocks("python"):
        exec(compile(block, str(DOC), "exec"), {})

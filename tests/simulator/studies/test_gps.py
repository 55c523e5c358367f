"""`moesim gps` and simulator/studies/gps.py: the gps.csv contract, the recommendation, the oracle
bound, the knobs swept, the Dask path and bad input."""

import csv

import pytest
import yaml

from simulator.studies import gps

TINY = {"base": "mixtral-8x7b", "name": "tiny-moe", "layers": 2, "hidden": 512, "ffn": 1024,
        "experts": 8, "top_k": 2, "heads": 8, "kv_heads": 8, "head_dim": 64, "vocab": 1000}
# DESIGN.md section 6: these columns, in this order, come first
CONTRACT = ("strategy", "predictor", "predictor_size", "balancer", "error_rate", "accuracy",
            "predictor_overhead_s", "latency_s", "speedup_vs_none")
FAST = ["--sizes", "8", "--balancers", "greedy_duplication", "--history", "2", "--quiet"]


@pytest.fixture
def tiny_scenario(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "model": TINY,
        "topology": {"builder": "nvlink_mesh", "gpus": 4, "device": "a100-sxm4-80gb"},
        "workload": {"batch": 2, "seq_len": 256, "iterations": 3,
                     "trace": {"synthetic": {"skewness": 3.0}}},
    }))
    return path


def read_rows(path):
    with open(path) as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


@pytest.fixture
def swept(moesim, tiny_scenario, tmp_path):
    code, out, err = moesim("gps", tiny_scenario, "--out", tmp_path / "out", *FAST,
                            "--replan-every", "1,2", "--redundant-slots", "none,1")
    assert code == 0, err
    return out, *read_rows(tmp_path / "out" / "gps.csv"), tmp_path / "out"


def test_gps_csv_keeps_the_contract_columns_and_adds_the_knobs(swept):
    _, columns, rows, out = swept
    assert tuple(columns[: len(CONTRACT)]) == CONTRACT
    for column in ("replan_every", "redundant_slots", "objective", "copies_per_iteration"):
        assert column in columns
    # none, then greedy x 2 intervals x 2 slot settings x (3 distribution + 2 token + 1 ffn + oracle)
    assert len(rows) == 1 + 2 * 2 * 7
    assert rows[0]["strategy"] == "none" and float(rows[0]["speedup_vs_none"]) == 1.0
    assert {r["replan_every"] for r in rows[1:]} == {"1", "2"}
    assert {r["redundant_slots"] for r in rows[1:]} == {"", "1"}
    assert {r["objective"] for r in rows[1:]} == {"time"}
    assert all(float(r["copies_per_iteration"]) >= 0 for r in rows)
    assert (out / "gps_accuracy_latency.png").is_file()


def test_gps_recommends_in_one_sentence_naming_the_mechanism(swept):
    text, _, rows, _ = swept
    why = [line for line in text.splitlines() if line.startswith("why: ")]
    assert len(why) == 1
    assert any(word in why[0] for word in ("weight reads", "copies", "forecast", "pre-sending",
                                           "saves"))
    best = min((r for r in rows if r["strategy"] != "oracle"), key=lambda r: float(r["latency_s"]))
    assert f"{float(best['latency_s']) * 1e3:.3f} ms" in text


def test_gps_runs_enough_iterations_for_the_longest_interval(swept):
    text, *_ = swept
    assert "x 4 iterations" in text  # scenario says 3; two intervals of 2 need 4


def test_the_oracle_is_never_slower_than_static_in_gps(swept):
    _, _, rows, _ = swept
    static = float(rows[0]["latency_s"])
    oracles = [r for r in rows if r["strategy"] == "oracle"]
    assert oracles
    assert all(float(r["latency_s"]) <= static * (1 + 1e-9) for r in oracles)


def test_explain_names_weight_reads_when_duplication_cannot_pay():
    rows = [
        {"strategy": "none", "latency_s": 1.0, "expert_s": 0.5, "dispatch_s": 0.1, "combine_s": 0.1,
         "replication_s": 0.0, "predictor_overhead_s": 0.0, "copies_per_iteration": 0.0},
        {"strategy": "distribution", "latency_s": 1.01, "expert_s": 0.5, "dispatch_s": 0.1,
         "combine_s": 0.1, "replication_s": 0.0, "predictor_overhead_s": 1e-5,
         "copies_per_iteration": 0.0, "replan_every": 1},
    ]
    sentence = gps.explain(rows, 128, memory_bound=True)
    assert sentence.startswith("duplication loses here: at 128 tokens per expert a replica is bound "
                               "by its weight reads")
    rows[1].update(copies_per_iteration=3.0, replication_s=0.2, expert_s=0.45)
    assert "weight copies leave 200.00 ms" in gps.explain(rows, 128, memory_bound=True)


def test_assume_moe_gps_sweeps_only_its_assumptions():
    chosen = gps.candidates({}, ("greedy_duplication",), (8,), replan_every=(1, 10),
                            redundant_slots=(None, 2), assume="moe-gps")
    assert {(c.replan_every, c.redundant_slots) for c in chosen[1:]} == {(1, None)}
    assert all(c.balancer_section().get("assume") == "moe-gps" for c in chosen[1:])
    assert all(c.balancer_section()["objective"] == "tokens" for c in chosen[1:])


def test_gps_on_a_dask_cluster_gives_the_local_rows(moesim, tiny_scenario, tmp_path):
    distributed = pytest.importorskip("distributed")
    local_args = ["--sizes", "8", "--balancers", "greedy_duplication", "--history", "2", "--quiet",
                  "--replan-every", "1", "--redundant-slots", "none"]
    assert moesim("gps", tiny_scenario, "--out", tmp_path / "local", *local_args)[0] == 0
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        code, out, err = moesim("gps", tiny_scenario, "--out", tmp_path / "dask", *local_args,
                                "--scheduler", cluster.scheduler_address)
    assert code == 0, err
    local, remote = read_rows(tmp_path / "local" / "gps.csv")[1], read_rows(tmp_path / "dask" / "gps.csv")[1]
    assert [r["latency_s"] for r in local] == [r["latency_s"] for r in remote]


@pytest.mark.parametrize("args, field", [
    (["--assume", "paper"], "--assume: must be one of none, moe-gps"),
    (["--replan-every", "0"], "--replan-every: expected positive integers"),
    (["--redundant-slots", "x"], "--redundant-slots: expected 'none' or integers >= 0"),
    (["--objectives", "speed"], "--objectives: expected a comma-separated list of time, tokens"),
    (["--redundant-slots", "400"], "balancer.redundant_slots: 400 redundant slot(s)"),
])
def test_bad_gps_input_exits_2_with_one_line_naming_the_field(moesim, tiny_scenario, tmp_path, args,
                                                             field):
    code, out, err = moesim("gps", tiny_scenario, "--out", tmp_path / "out", *FAST, *args)
    assert code == 2
    assert field in err and len(err.strip().splitlines()) == 1

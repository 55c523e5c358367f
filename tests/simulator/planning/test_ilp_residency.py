"""Token residency `expert` (MoETuner's execution) with the ILP: a perfect inter-layer dependency
sends no cross-GPU byte between dependent layers; the attention pays its K/V exchange; bytes in
the network's records match summary.json; owner stays what it was; bad input exits 2."""

import json

import numpy as np
import pytest

from simulator.scenario.run import simulate
from simulator.scenario.schema import validate_scenario
from workloads.trace import RoutingTrace

MODEL = {"base": "mixtral-8x7b", "name": "tiny-moe", "layers": 3, "hidden": 512, "ffn": 1024,
         "experts": 8, "top_k": 2, "heads": 8, "kv_heads": 8, "head_dim": 64, "vocab": 1000}


def perfect_trace(path, iterations=8, tokens=1024, seed=0):
    """Each token picks one pair {2j, 2j+1} and keeps it at every layer: the layer-l expert fixes
    the layer-(l+1) experts (a perfect dependency); pairs drawn uniformly, so keeping each pair on
    one GPU is also balanced and the ILP has no reason to split it."""
    rng = np.random.default_rng(seed)
    pair = rng.choice(4, size=(iterations, tokens))
    experts = np.stack([2 * pair, 2 * pair + 1], axis=-1)  # [iterations, tokens, 2]
    experts = np.repeat(experts[:, None], 3, axis=1).astype(np.int16)  # [iterations, layers, tokens, 2]
    RoutingTrace(experts, meta={"model": "tiny-moe", "dataset": "perfect-dependency",
                                "source": "synthetic", "num_experts": 8}).save(path)
    return path


def scenario(trace, balancer="ilp", residency="expert", **balancer_options):
    return validate_scenario({
        "name": "residency", "model": dict(MODEL),
        "topology": {"builder": "nvswitch", "gpus": 4, "device": "h100-sxm5-80gb"},
        "parallelism": {"ep": 4, "attention": "dp", "token_residency": residency},
        "workload": {"batch": 4, "seq_len": 256, "iterations": 4, "trace": {"file": str(trace)}},
        "predictor": {"kind": "distribution.mle", "history": 4, "replan_every": 4},
        "balancer": {"kind": balancer, **balancer_options},
    })


def off_diagonal(matrix):
    return int(matrix.sum() - np.trace(matrix, axis1=-2, axis2=-1).sum())


@pytest.mark.parametrize("mode", ["two_step", "sequential"])
def test_perfect_dependency_with_expert_residency_and_ilp_sends_no_cross_gpu_bytes(tmp_path, mode):
    trace = perfect_trace(tmp_path / "perfect.npz")
    result = simulate(scenario(trace, mode=mode))
    plan = result.system.plan
    # dependent layers: the dispatch of MoE layers 1 and 2 leaves from where layer 0 / 1 ran, and
    # the combine of layers 0 and 1 stays on the first choice's GPU, which hosts the pair's twin
    assert off_diagonal(plan.dispatch_pairs[:, 1:]) == 0
    assert off_diagonal(plan.combine_pairs[:, :-1]) == 0
    # the first dispatch leaves the owners and the last combine returns there: those do cross
    assert off_diagonal(plan.dispatch_pairs[:, 0]) > 0 and off_diagonal(plan.combine_pairs[:, -1]) > 0
    # the attention pays: tokens now live by expert, so sequences' K/V must be exchanged
    assert result.summary["conservation"]["bytes_kv_exchanged"] > 0
    # round-robin splits every pair {2j, 2j+1} over two GPUs: its dependent layers do cross
    static = simulate(scenario(trace, balancer="static")).system.plan
    assert off_diagonal(static.dispatch_pairs[:, 1:]) > 0


def test_network_records_carry_the_bytes_summary_counts(tmp_path):
    result = simulate(scenario(perfect_trace(tmp_path / "perfect.npz", seed=1), balancer="static"))
    sent = {"dispatch": 0.0, "combine": 0.0, "kv": 0.0}
    for span in result.spans:
        if span.phase in ("dispatch", "combine"):
            sent[span.phase] += span.bytes
        elif span.name == "kv_all_to_all":
            sent["kv"] += span.bytes
    conservation = result.summary["conservation"]
    assert sent["dispatch"] == conservation["bytes_dispatched"] > 0
    assert sent["combine"] == conservation["bytes_combined"] > 0
    assert sent["kv"] == conservation["bytes_kv_exchanged"] > 0
    assert conservation["pairs_routed"] == conservation["pairs_computed"]
    # every token's state is somewhere: resident tokens sum to the batch at every layer
    assert np.all(result.system.plan.resident_tokens.sum(axis=2) == result.system.tokens)


def test_owner_residency_is_the_default_and_unchanged(tmp_path):
    trace = perfect_trace(tmp_path / "perfect.npz", seed=2)
    default = validate_scenario({**scenario(trace, balancer="static").model_dump(),
                                 "parallelism": {"ep": 4, "attention": "dp"}})
    explicit = scenario(trace, balancer="static", residency="owner")
    a, b = simulate(default), simulate(explicit)
    assert a.summary["latency_s"] == b.summary["latency_s"]
    assert a.system.plan.combine_pairs is None and "bytes_kv_exchanged" not in a.summary["conservation"]
    assert a.summary["conservation"]["bytes_dispatched"] == a.summary["conservation"]["bytes_combined"]


def test_ilp_report_reaches_summary_json(tmp_path, moesim):
    trace = perfect_trace(tmp_path / "perfect.npz", seed=3)
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(scenario(trace).model_dump()))
    code, _, err = moesim("run", path, "--out", tmp_path / "out", "--no-progress")
    assert code == 0, err
    block = json.loads((tmp_path / "out" / "summary.json").read_text())["balancer"]
    assert block["kept"] == "ilp" and block["plans"] == 1 and block["deployed_before_run"]
    assert block["mip_gap_max"] is not None and block["mip_gap_max"] <= 0.025 + 1e-9
    assert set(block["objective"]) == {"ilp", "load_only", "static"}


@pytest.mark.parametrize("override, field", [
    ("parallelism.token_residency=nearest", "parallelism.token_residency"),
    ("balancer.time_limit_s=0", "balancer.time_limit_s"),
    ("balancer.time_limit_s=-1", "balancer.time_limit_s"),
    ("parallelism.attention=tp", "parallelism.token_residency"),
    ("model=mixtral-8x7b", "workload.trace.file"),
])
def test_bad_input_is_one_line_naming_the_field_and_exit_2(moesim, tmp_path, override, field):
    extra = ["--set", "balancer.kind=ilp"] if "time_limit" in override else []
    code, _, err = moesim("run", "scenarios/moetuner-single-node.yaml", "--out", tmp_path / "o",
                          "--set", override, *extra, "--no-progress")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and field in err

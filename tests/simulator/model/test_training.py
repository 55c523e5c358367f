"""Training mode: forward + backward + gradient sync + optimizer, simulated as events."""

import numpy as np
import pytest

from simulator.errors import ScenarioError
from simulator.scenario.run import simulate
from simulator.scenario.schema import validate_scenario
from simulator.scenario.system import build_system

MODEL = {"base": "mixtral-8x7b", "name": "small-moe", "layers": 2, "hidden": 1024, "ffn": 2048}


def training(**overrides):
    raw = {
        "model": MODEL,
        "topology": {"builder": "nvlink_mesh", "gpus": 4, "device": "a100-sxm4-80gb"},
        "parallelism": {"attention": "dp"},
        "workload": {"mode": "training", "batch": 4, "seq_len": 256, "iterations": 2,
                     "trace": {"synthetic": {"skewness": 1.6}}},
    }
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return validate_scenario(raw)


def expert_flops(result, backward: bool) -> np.ndarray:
    """[iterations, layers, gpus] FLOPs of expert kernels in the forward or backward stages."""
    layers = result.system.model.layers
    flops = np.zeros((2, layers, 4))
    for span in result.spans:
        if span.phase != "expert" or span.stream != "compute":
            continue
        is_backward = layers <= span.layer < 2 * layers
        if is_backward == backward:
            layer = 2 * layers - 1 - span.layer if backward else span.layer
            flops[span.iteration, layer, span.gpu] += span.flops
    return flops


def test_every_routed_pair_is_computed_in_forward_and_backward():
    result = simulate(training())
    forward, backward = expert_flops(result, False), expert_flops(result, True)
    system = result.system
    compute = system.compute[0]
    for it in range(2):
        for layer in range(2):
            for gpu in range(4):
                tokens = system.plan.expert_pairs[it, layer, gpu]
                expected = sum(compute.expert_ffn(int(n), system.model).flops for n in tokens if n)
                assert forward[it, layer, gpu] == pytest.approx(expected, rel=1e-12)
    assert np.allclose(backward, 2 * forward, rtol=1e-12)
    conservation = result.summary["conservation"]
    assert conservation["pairs_routed"] == conservation["pairs_computed"]


def test_backward_all_to_alls_mirror_the_forward_ones():
    result = simulate(training())
    layers = result.system.model.layers
    sent = {}
    for span in result.spans:
        if span.phase in ("dispatch", "combine"):
            direction = "bwd" if span.layer >= layers else "fwd"
            sent[span.phase, direction] = sent.get((span.phase, direction), 0.0) + span.bytes
    assert sent["dispatch", "fwd"] == sent["combine", "fwd"] == sent["dispatch", "bwd"] == sent[
        "combine", "bwd"] > 0


def test_training_step_costs_more_than_a_forward_pass_and_ends_with_the_optimizer():
    train = simulate(training())
    infer = simulate(training(workload={"mode": "inference"}))
    assert train.summary["latency_s"]["mean"] > 2 * infer.summary["latency_s"]["mean"]
    assert train.summary["breakdown_s"]["optimizer"] > 0
    stages = [row["layer"] for row in train.rows if row["iteration"] == 0]
    assert stages == ["all", "0", "1", "bwd1", "bwd0", "optimizer"]


def test_gradient_all_reduce_overlaps_the_next_layers_backward():
    result = simulate(training())
    spans = result.spans
    syncs = [s for s in spans if s.name == "grad_all_reduce"]
    assert syncs
    compute = [s for s in spans if s.stream == "compute"]
    assert any(c.gpu == g.gpu and c.start_s < g.end_s and g.start_s < c.end_s and c.layer > g.layer
               for g in syncs for c in compute)


def test_forecast_guided_replacement_pays_weight_and_optimizer_migration():
    result = simulate(training(
        workload={"iterations": 4, "trace": {"synthetic": {"skewness": 3.0}}},
        predictor={"kind": "distribution.window", "history": 3, "replan_every": 2},
        balancer={"kind": "greedy_duplication", "objective": "tokens"}))  # copies even if they cost
    copies = [s for s in result.spans if s.phase == "replication" and s.stream == "copy"]
    assert copies
    model = result.system.model
    assert all(s.bytes == model.expert_params * (model.dtype_bytes + 12) for s in copies)
    assert result.summary["replicas"]["copy_active_s"] > 0


def test_training_load_trace_drives_the_steps(tmp_path):
    from workloads.moe_lm import TrainingLoadTrace

    shares = np.random.default_rng(0).dirichlet(np.ones(8), size=(10, 3))
    TrainingLoadTrace(shares).save(tmp_path / "load.npz")
    scenario = training(workload={"trace": {"training_load": str(tmp_path / "load.npz"), "start": 4,
                                            "stride": 3}})
    system = build_system(scenario)
    assert system.trace.meta["training_steps"] == [4, 7]
    loads = system.plan.expert_pairs.sum(axis=2)[0, 0] / system.plan.expert_pairs[0, 0].sum()
    assert np.abs(loads - shares[4, 0]).max() < 0.05
    with pytest.raises(ScenarioError, match=r"needs step 13 .* 10 steps"):
        build_system(training(workload={"iterations": 4, "trace": {
            "training_load": str(tmp_path / "load.npz"), "start": 4, "stride": 3}}))


def test_training_load_trace_with_other_expert_count_is_an_error(tmp_path):
    from workloads.moe_lm import TrainingLoadTrace

    TrainingLoadTrace(np.full((4, 2, 16), 1 / 16)).save(tmp_path / "load16.npz")
    with pytest.raises(ScenarioError, match="16 experts but the model small-moe has 8"):
        build_system(training(workload={"trace": {"training_load": str(tmp_path / "load16.npz")}}))


def test_training_needs_prefill():
    with pytest.raises(ScenarioError, match="workload.phase"):
        build_system(training(workload={"phase": "decode"}))

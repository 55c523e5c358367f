"""Prediction strategies simulated as events: the MoE-GPS directions emerge, costs are charged.

Small system (a 4-layer Mixtral-shaped model, 4 GPUs, 4,096 prefill tokens) so that experts are
compute-bound and duplication can pay; directions, not magnitudes, are asserted. The balancers
use the papers' token-count objective here (`objective: tokens`, copies still simulated); the time
objective has its own tests (test_time_objective.py).
"""

import numpy as np
import pytest

from simulator.errors import ScenarioError
from simulator.scenario.run import simulate
from simulator.scenario.schema import validate_scenario
from simulator.scenario.system import build_system

MODEL = {"base": "mixtral-8x7b", "name": "small-moe", "layers": 4}
NVLINK = {"builder": "nvlink_mesh", "gpus": 4, "device": "a100-sxm4-80gb"}
PCIE = {"builder": "pcie_tree", "gpus": 4, "device": "a100-pcie-80gb", "gpus_per_switch": 2,
        "sockets": 1}


def scenario(predictor, balancer="greedy_duplication", topology=NVLINK, skewness=2.5, iterations=6,
             history=4):
    # every variant, the baseline included, simulates the same trace iterations (after `history`)
    predictor = {"history": history, **predictor}
    if predictor["kind"] != "none":
        predictor = {"replan_every": 3, **predictor}
    return validate_scenario({
        "model": MODEL, "topology": topology,
        "workload": {"batch": 2, "seq_len": 2048, "iterations": iterations,
                     "trace": {"synthetic": {"skewness": skewness}}},
        "predictor": predictor,
        "balancer": ({"kind": balancer, "objective": "tokens"} if predictor["kind"] != "none"
                     else {"kind": "static"}),
    })


def latency(**kwargs) -> float:
    return simulate(scenario(**kwargs)).summary["latency_s"]["mean"]


def test_distribution_beats_best_token_strategy_on_nvlink_at_moderate_skew():
    distribution = latency(predictor={"kind": "distribution.mle"})
    tokens = [latency(predictor={"kind": "token.conditional"}),
              latency(predictor={"kind": "token.ffn", "size": 64})]
    assert distribution < min(tokens)
    assert distribution < latency(predictor={"kind": "none"})


@pytest.mark.slow
def test_token_strategy_gains_ground_on_pcie_as_skew_grows():
    def token_over_distribution(skewness):
        distribution = latency(predictor={"kind": "distribution.mle"}, topology=PCIE, skewness=skewness)
        token = latency(predictor={"kind": "token.ffn", "size": 64}, topology=PCIE, skewness=skewness)
        return token / distribution

    moderate, high = token_over_distribution(1.4), token_over_distribution(3.5)
    assert high < moderate
    assert high < 1.0  # at high skew on PCIe the token-level strategy wins outright


@pytest.mark.slow
def test_token_predictor_size_gives_a_u_shaped_latency():
    # static placement isolates the token-level mechanism: accuracy saves dispatch traffic
    # (tokens pre-sent to their expert's GPU), size costs predictor time
    def run(size):
        spec = {"kind": "token.ffn", "size": size, "epochs": 1}
        return simulate(scenario(spec, balancer="static", topology=PCIE, skewness=3.5, iterations=4,
                                 history=3)).summary

    small, medium, large = run(1), run(64), run(4096)
    assert medium["predictor"]["accuracy"] > small["predictor"]["accuracy"]
    assert large["predictor"]["overhead_s"] > 10 * medium["predictor"]["overhead_s"]
    assert medium["latency_s"]["mean"] < small["latency_s"]["mean"]
    assert medium["latency_s"]["mean"] < large["latency_s"]["mean"]


def test_greedy_oracle_pulls_the_slowest_gpu_expert_time_towards_the_mean():
    def expert_time_per_gpu(result):
        busy = np.zeros(4)
        for span in result.spans:
            if span.phase == "expert" and span.stream == "compute":
                busy[span.gpu] += span.end_s - span.start_s
        return busy

    static = expert_time_per_gpu(simulate(scenario({"kind": "none"}, skewness=3.5)))
    oracle = expert_time_per_gpu(simulate(scenario({"kind": "oracle.token"}, balancer="oracle",
                                                   skewness=3.5)))
    assert oracle.max() / oracle.mean() < static.max() / static.mean()
    assert oracle.max() < static.max()


def test_predictor_is_scored_on_held_out_iterations_only():
    system = build_system(scenario({"kind": "token.frequency"}, history=3, iterations=2))
    assert system.history == 3
    # the trace holds history + simulated iterations; routing uses only the simulated ones
    assert system.trace.iterations == 5
    assert system.plan.expert_pairs.shape[0] == 2
    truth = system.trace.materialise().experts[3:5]
    counts = np.stack([np.bincount(truth[i, l].ravel(), minlength=8) for i in range(2)
                       for l in range(4)]).reshape(2, 4, 8)
    assert np.array_equal(system.plan.expert_pairs.sum(axis=2), counts)


def test_predictor_overhead_and_replica_copies_are_events():
    result = simulate(scenario({"kind": "token.ffn", "size": 64}))
    spans = result.spans
    assert any(s.phase == "predictor" for s in spans)
    copies = [s for s in spans if s.phase == "replication" and s.stream == "copy"]
    assert copies and all(s.stream == "copy" and s.bytes > 0 for s in copies)
    summary = result.summary
    assert summary["replicas"]["copies"] == len(copies)
    assert summary["predictor"]["overhead_s"] > 0
    assert summary["conservation"]["pairs_routed"] == summary["conservation"]["pairs_computed"]
    assert summary["conservation"]["pairs_presorted"] > 0


def test_experts_wait_for_their_replica_weights():
    result = simulate(scenario({"kind": "oracle.token"}, balancer="oracle", skewness=3.5))
    spans = result.spans
    copies = [s for s in spans if s.phase == "replication" and s.stream == "copy"]
    assert copies
    for copy in copies:
        dst = int(copy.name.rsplit("_to_gpu", 1)[1])
        experts = [s for s in spans if s.phase == "expert" and s.gpu == dst and s.stream == "compute"
                   and s.iteration == copy.iteration and s.layer == copy.layer]
        assert experts and min(s.start_s for s in experts) >= copy.end_s


@pytest.mark.parametrize("predictor, message", [
    ({"kind": "token.magic"}, "predictor.kind: unknown predictor 'token.magic'"),
    ({"kind": "token.ffn", "hiddn": 3}, "predictor.hiddn: unknown parameter"),
    ({"kind": "distribution.mle", "history": -1}, "predictor.history: must be an integer >= 0"),
])
def test_bad_predictor_settings_name_the_field(predictor, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_system(scenario(predictor))


def test_balancer_needing_loads_without_predictor_is_an_error():
    raw = scenario({"kind": "none"}).model_dump()
    raw["balancer"] = {"kind": "greedy_duplication"}
    with pytest.raises(ScenarioError, match="balancer"):
        build_system(validate_scenario(raw))


def test_ilp_placement_lowers_inter_layer_traffic_on_a_correlated_trace():
    """MoETuner's objective, measured on the simulated (held-out) iterations' true routing."""
    from simulator.planning.balancers import dispatch_traffic

    def traffic(balancer):
        raw = scenario({"kind": "distribution.mle"}, balancer=balancer, iterations=2, history=3).model_dump()
        raw["workload"]["trace"] = {"synthetic": {"skewness": 1.4, "layer_correlation": 0.99}}
        raw["workload"]["batch"], raw["workload"]["seq_len"] = 1, 1024
        system = build_system(validate_scenario(raw))
        first = system.trace.materialise().experts[3:5, :, : system.tokens, 0]  # simulated iterations, first choice
        transitions = np.zeros((3, 8, 8))
        for layer in range(3):
            np.add.at(transitions[layer], (first[:, layer].ravel(), first[:, layer + 1].ravel()), 1)
        return dispatch_traffic(system.strategy.placements[0], transitions)

    assert traffic("ilp") < 0.8 * traffic("static")

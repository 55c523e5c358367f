"""Resident replicas, hysteresis, copies that start early, MoE-GPS's assumptions, bad input."""

from pathlib import Path

import numpy as np
import pytest

from simulator.planning.balancers.common import equal_share_placement
from simulator.output.summary import union_lengths
from simulator.planning.resident import ResidentReplicas
from simulator.scenario.run import simulate
from simulator.scenario.schema import validate_scenario

DEFAULT = Path(__file__).resolve().parents[3] / "scenarios" / "default.yaml"
MODEL = {"base": "mixtral-8x7b", "name": "small-moe", "layers": 4}


def scenario(balancer, predictor=None, iterations=4, skewness=3.5, seq_len=2048):
    return validate_scenario({
        "model": MODEL, "topology": {"builder": "nvlink_mesh", "gpus": 4, "device": "a100-sxm4-80gb"},
        "workload": {"batch": 2, "seq_len": seq_len, "iterations": iterations,
                     "trace": {"synthetic": {"skewness": skewness}}},
        "predictor": predictor or {"kind": "none", "history": 2},
        "balancer": balancer,
    })


def resident(slots=3, min_gain=0.0):
    return ResidentReplicas(1, 4, [0, 1], slots, None, "tokens", min_gain)


def proposal(*hosts):
    return equal_share_placement([[list(h) for h in hosts]])


def test_a_replan_copies_only_what_is_not_resident():
    held = resident()
    loads = np.array([[100.0, 10, 10, 10]])
    _, copies = held.replan(proposal([0, 1], [1], [0], [1]), loads)
    assert [(c.expert, c.src, c.dst) for c in copies] == [(0, 0, 1)]
    _, again = held.replan(proposal([0, 1], [1], [0], [1]), loads)
    assert again == []


def test_a_dropped_replica_stays_resident_and_comes_back_free():
    held = resident()
    hot0, hot1 = np.array([[100.0, 10, 10, 10]]), np.array([[10.0, 10, 10, 10]])
    held.replan(proposal([0, 1], [1], [0], [1]), hot0)
    placement, copies = held.replan(proposal([0], [1], [0], [1]), hot1)
    assert copies == [] and placement.replicas[0][0] == (0,)
    assert 1 in held.present(0)[0]  # still held while memory allows
    placement = held.resplit(hot0)  # a forecast re-splits over it at no copy cost
    assert placement.replicas[0][0] == (0, 1)


def test_a_full_gpu_evicts_its_least_recently_used_idle_replica():
    held = resident(slots=3)
    loads = np.array([[100.0, 100, 10, 10]])
    held.replan(proposal([0, 1], [1], [0], [1]), np.array([[100.0, 10, 10, 10]]))
    held.replan(proposal([0], [1, 0], [0], [1]), np.array([[10.0, 100, 10, 10]]))  # gpu0: 0, 2, 1
    held.replan(proposal([0], [1], [0, 1], [1]), np.array([[10.0, 10, 100, 10]]))  # gpu1: 1, 3, 2
    assert 1 not in held.present(0)[0]  # evicted from gpu1 to make room for expert 2
    assert sorted(len(h) for h in held.held[0].values()) == [3, 3]
    del loads


def test_hysteresis_keeps_the_resident_placement_when_the_gain_is_small():
    held = resident(min_gain=0.5)
    placement, copies = held.replan(proposal([0, 1], [1], [0], [1]), np.array([[30.0, 10, 10, 10]]))
    assert copies == [] and placement.replicas[0][0] == (0,)


def spans(result, phase, stream):
    return [s for s in result.spans if s.phase == phase and s.stream == stream]


@pytest.mark.slow
def test_resident_replicas_copy_less_than_planning_from_scratch():
    common = {"kind": "oracle", "objective": "tokens"}
    fresh = simulate(scenario(common, iterations=4))
    kept = simulate(scenario({**common, "redundant_slots": 2}, iterations=4))
    assert 0 < kept.summary["replicas"]["copies"] < fresh.summary["replicas"]["copies"]
    assert kept.summary["conservation"]["pairs_routed"] == kept.summary["conservation"]["pairs_computed"]


@pytest.mark.slow
def test_prefetched_copies_start_before_their_layer_and_waits_are_the_replication_phase():
    late = simulate(scenario({"kind": "oracle", "objective": "tokens", "prefetch": 0}, iterations=2))
    early = simulate(scenario({"kind": "oracle", "objective": "tokens"}, iterations=2))
    for result in (late, early):
        copies = spans(result, "replication", "copy")
        assert copies
        waits = spans(result, "replication", "compute")  # GPUs idle until their replicas arrived
        cell = np.array([w.iteration * 4 + w.layer for w in waits])
        exposed = union_lengths(cell, np.array([w.start_s for w in waits]),
                                np.array([w.end_s for w in waits]), 8).sum() / 2
        assert result.summary["breakdown_s"]["replication"] == pytest.approx(exposed, rel=1e-9)
        assert result.summary["breakdown_s"]["replication"] <= result.summary["replicas"]["copy_active_s"]
    late_start = min(s.start_s for s in spans(late, "replication", "copy") if s.layer == 3)
    early_start = min(s.start_s for s in spans(early, "replication", "copy") if s.layer == 3)
    assert early_start < late_start
    attention = [s for s in late.spans if s.phase == "attention" and s.layer == 3
                 and s.iteration == 0]
    assert late_start >= min(s.start_s for s in attention)
    assert early.summary["breakdown_s"]["replication"] < late.summary["breakdown_s"]["replication"]


def test_assume_moe_gps_counts_copies_but_they_take_no_time():
    result = simulate(scenario({"kind": "oracle", "assume": "moe-gps"}, iterations=2, seq_len=512))
    assert result.summary["replicas"]["copies"] > 0
    assert spans(result, "replication", "copy") == []
    assert result.summary["breakdown_s"]["replication"] == 0.0


@pytest.mark.parametrize("sets, field", [
    (["balancer.kind=oracle", "balancer.objective=latency"], "balancer.objective: must be one of time, tokens"),
    (["balancer.kind=oracle", "balancer.assume=paper"], "balancer.assume: must be one of none, moe-gps"),
    (["balancer.kind=oracle", "balancer.redundant_slots=400"], "balancer.redundant_slots: 400 redundant"),
    (["balancer.kind=oracle", "balancer.redundant_slots=-1"], "balancer.redundant_slots: must be an integer >= 0"),
    (["balancer.kind=oracle", "predictor.replan_every=0"], "predictor.replan_every: must be an integer >= 1"),
    (["balancer.kind=oracle", "balancer.assume=moe-gps", "balancer.objective=time"],
     "balancer.objective: assume moe-gps"),
])
def test_bad_balancing_settings_exit_2_naming_the_field(moesim, tmp_path, sets, field):
    args = [a for s in sets for a in ("--set", s)]
    code, out, err = moesim("run", DEFAULT, "--out", tmp_path, "--set",
                            "workload.iterations=1", *args)
    assert code == 2
    assert field in err and len(err.strip().splitlines()) == 1

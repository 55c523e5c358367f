"""MoETuner's ILP: valid, never worse than static or load-only by its own objective, one global time
limit, MIP gap reported, node-aware costs from the topology, errors that name the field."""

import dataclasses
import itertools
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import milp as real_milp

import simulator.planning.balancers.ilp as ilp_module
from simulator.errors import ScenarioError
from simulator.planning.balancers import BalancerWarning, dispatch_traffic, ilp_placement
from simulator.planning.balancers.ilp import ilp_objective
from simulator.planning.placement import Placement, PlacementRequest, static_placement

EXACT = {"time_limit_s": 20.0, "mip_gap": 0.0}


def request(loads, gpus=4, config=None, transitions=None, pair_cost=None, slots=None):
    loads = np.atleast_2d(np.asarray(loads, dtype=float))
    return PlacementRequest(loads.shape[0], loads.shape[1], list(range(gpus)), [0] * gpus,
                            dict(config or {}), loads=loads, transitions=transitions,
                            slots_per_gpu=slots, pair_cost=pair_cost)


def correlated(layers, experts, tokens=100.0, noise=2.0, seed=0, step=3):
    """Expert e at layer l sends most of its tokens to expert (step e) mod E at layer l + 1."""
    rng = np.random.default_rng(seed)
    trans = rng.uniform(0, noise, (layers - 1, experts, experts))
    for e in range(experts):
        trans[:, e, (step * e) % experts] += tokens
    return trans


def two_nodes(gpus=4, nvlink_GBps=450.0, nic_GBps=50.0):
    """Seconds per byte between GPU ranks of two servers (half the GPUs each)."""
    half = gpus // 2
    return np.array([[0.0 if a == b else 1 / (nvlink_GBps if a // half == b // half else nic_GBps)
                      for b in range(gpus)] for a in range(gpus)])


def homes(placement):
    return [[ranks[0] for ranks in layer] for layer in placement.replicas]


@st.composite
def problems(draw):
    experts = draw(st.integers(1, 8))
    gpus = draw(st.integers(1, 4))
    layers = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    loads = rng.pareto(draw(st.sampled_from([0.7, 1.5, 5.0])), (layers, experts)) * 100
    trans = rng.integers(0, 20, (layers - 1, experts, experts)).astype(float)
    cost = two_nodes(gpus) if gpus % 2 == 0 and draw(st.booleans()) else None
    weight = draw(st.sampled_from([0.0, 0.5, 1.0]))
    mode = draw(st.sampled_from(["two_step", "sequential"]))
    return request(loads, gpus, {**EXACT, "weight": weight, "mode": mode}, trans, cost)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_ilp_never_worse_than_static_or_load_only_by_its_own_objective(req):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BalancerWarning)
        placement = ilp_placement(req)
    cap = -(-req.experts // len(req.ep_ranks))
    for layer in placement.replicas:
        assert all(len(ranks) == 1 for ranks in layer)
        assert max(np.bincount([r[0] for r in layer], minlength=len(req.ep_ranks))) <= cap
    score = ilp_objective(req, placement)
    assert score <= ilp_objective(req, static_placement(req)) + 1e-12
    notes = placement.notes
    assert notes["objective"][notes["kept"]] == pytest.approx(score, abs=1e-6)
    assert score <= min(notes["objective"].values()) + 1e-6


def test_ilp_cuts_inter_layer_traffic_on_correlated_routing_and_balances_load():
    loads = np.full((3, 8), 100.0)
    trans = correlated(3, 8)
    for mode in ("two_step", "sequential"):
        req = request(loads, 4, {**EXACT, "mode": mode}, trans)
        placement = ilp_placement(req)
        assert dispatch_traffic(placement, trans) < 0.2 * dispatch_traffic(static_placement(req), trans)
        per_gpu = np.array([np.bincount(h, weights=loads[l], minlength=4)
                            for l, h in enumerate(homes(placement))])
        assert np.all(per_gpu == 200.0)
        assert placement.notes["kept"] == "ilp"


def test_load_only_ilp_matches_brute_force_optimum():
    """weight 1: MoETuner's ILP1 alone, the smallest total deviation from a perfect split."""
    loads = np.array([[9.0, 7.0, 6.0, 5.0, 4.0, 1.0]])
    mean = loads.sum() / 3
    best = min(sum(abs(loads[0, [e for e in range(6) if home[e] == g]].sum() - mean) for g in range(3))
               for home in itertools.product(range(3), repeat=6) if max(home.count(g) for g in range(3)) == 2)
    placement = ilp_placement(request(loads, 3, {**EXACT, "weight": 1.0}))
    per_gpu = np.bincount(homes(placement)[0], weights=loads[0], minlength=3)
    assert np.abs(per_gpu - mean).sum() == pytest.approx(best, rel=1e-9)


def test_sequential_never_worse_than_two_step_on_one_layer_pair():
    """Cluster-then-map is a restriction of placing directly: per layer the fused model wins or ties."""
    rng = np.random.default_rng(3)
    loads = rng.pareto(1.5, (2, 8)) * 100 + 1
    trans = rng.integers(0, 30, (1, 8, 8)).astype(float)
    cost = two_nodes(4)
    scores = {}
    for mode in ("two_step", "sequential"):
        req = request(loads, 4, {**EXACT, "mode": mode, "polish": False}, trans, cost)
        scores[mode] = ilp_objective(req, ilp_placement(req))
    assert scores["sequential"] <= scores["two_step"] + 1e-9


@pytest.mark.parametrize("mode", ["two_step", "sequential"])
def test_node_aware_costs_keep_dependent_tokens_inside_a_server(mode):
    """Across two servers a NIC hop costs 9x an NVLink hop: over six random dependency matrices the
    node-aware ILP sends fewer tokens across NICs than the same ILP with every GPU pair alike."""
    aware = blind = 0.0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        loads = rng.pareto(1.5, (4, 8)) * 100 + 10
        trans = rng.dirichlet(np.full(8, 0.3), (3, 8)) * loads[:-1, :, None]

        def cross_node(placement):
            node = np.array([[r // 2 for r in layer] for layer in homes(placement)])
            return sum(trans[l][node[l][:, None] != node[l + 1][None, :]].sum() for l in range(3))

        config = {**EXACT, "mode": mode}
        aware += cross_node(ilp_placement(request(loads, 4, config, trans, two_nodes(4))))
        blind += cross_node(ilp_placement(request(loads, 4, config, trans)))
    assert aware < 0.97 * blind


def test_global_time_limit_bounds_the_whole_placement():
    """32 layers x 64 experts x 8 GPUs needs far longer than 1 s: the total, not each solve, stops."""
    rng = np.random.default_rng(0)
    loads = rng.pareto(1.5, (32, 64)) * 100 + 10
    req = request(loads, 8, {"time_limit_s": 1.0}, correlated(32, 64))
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        placement = ilp_placement(req)
    wall_s = time.perf_counter() - started
    assert wall_s < 1.0 + 1.0  # the budget plus model building and the final comparison
    assert placement.notes["elapsed_s"] <= wall_s
    assert placement.notes["solves"] == 64
    assert any("global time limit of 1 s" in str(w.message) for w in caught)
    assert ilp_objective(req, placement) <= ilp_objective(req, static_placement(req))


def _limited_milp(x_none):
    def fake(*args, **kwargs):
        result = real_milp(*args, **kwargs)
        result.status, result.mip_gap = 1, 0.05
        if x_none:
            result.x = None
        return result
    return fake


def test_time_limit_stop_reports_the_gap_and_keeps_the_incumbent(monkeypatch):
    req = request(np.full((2, 8), 10.0), 4, {"time_limit_s": 5.0}, correlated(2, 8))
    expected = ilp_placement(req)
    monkeypatch.setattr(ilp_module, "milp", _limited_milp(x_none=False))
    with pytest.warns(BalancerWarning, match=r"ILP: 3 of 4 solves stopped at the global time limit "
                                             r"of 5 s \(largest MIP gap 5\.0%\)"):
        placement = ilp_placement(req)
    assert placement == expected
    assert placement.notes["mip_gap_max"] == 0.05 and placement.notes["solves_at_time_limit"] == 3


def test_no_solution_falls_back_and_says_which_placement_it_kept(monkeypatch):
    loads = np.array([[50.0, 40, 30, 20, 10, 5, 5, 1]])
    req = request(loads, 4, {"time_limit_s": 0.5})
    monkeypatch.setattr(ilp_module, "milp", _limited_milp(x_none=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        placement = ilp_placement(req)
    messages = [str(w.message) for w in caught]
    assert any("no solution within the global time limit of 0.5 s for ilp1 layer 0" in m for m in messages)
    assert placement.notes["solves_without_solution"] == 1
    # the load-only clusters stand in, and beat round-robin on load
    assert placement.notes["kept"] == "ilp"
    assert ilp_objective(req, placement) < ilp_objective(req, static_placement(req))


def test_a_worse_incumbent_is_replaced_by_static_and_said_so(monkeypatch):
    """A solver answer worse than round-robin is never returned."""
    req = request(np.full((1, 4), 10.0), 2, {"time_limit_s": 5.0, "polish": False})

    def skewed(*args, **kwargs):  # puts experts 0..2 on one GPU: worse than round-robin
        result = real_milp(*args, **kwargs)
        x = result.x.copy()
        y = x[:8].reshape(4, 2)
        y[:] = 0.0
        y[[0, 1, 2], 0], y[3, 1] = 1.0, 1.0
        x[:8] = y.ravel()
        result.x = x
        return result

    monkeypatch.setattr(ilp_module, "milp", skewed)
    with pytest.warns(BalancerWarning, match=r"worse than .*keeping"):
        placement = ilp_placement(req)
    assert placement.notes["kept"] in ("static", "load_only")
    assert homes(placement)[0].count(0) == 2


@pytest.mark.parametrize("config, field, message", [
    ({"time_limit_s": 0}, "balancer.time_limit_s", "> 0, got 0"),
    ({"time_limit_s": -3}, "balancer.time_limit_s", "> 0, got -3"),
    ({"weight": 1.5}, "balancer.weight", ">= 0 and <= 1, got 1.5"),
    ({"mode": "joint"}, "balancer.mode", "one of two_step, sequential"),
    ({"mip_gap": -0.1}, "balancer.mip_gap", ">= 0"),
    ({"max_experts_per_gpu": 1}, "balancer.max_experts_per_gpu", "needs 2"),
    ({"solver": "cbc"}, "balancer.solver", "allowed: time_limit_s, weight, mode"),
    ({"polish": "yes"}, "balancer.polish", "true or false"),
])
def test_bad_options_name_the_field(config, field, message):
    with pytest.raises(ScenarioError, match=message) as error:
        ilp_placement(request(np.ones((1, 8)), 4, config))
    assert error.value.field == field


def test_polish_never_raises_the_objective_and_finds_what_layer_by_layer_misses():
    """Layer 0 placed for load alone splits the pairs the next layers keep together; a swap fixes it."""
    loads = np.full((3, 4), 100.0)
    trans = np.zeros((2, 4, 4))
    trans[:, [0, 1, 2, 3], [0, 1, 2, 3]] = 100.0  # expert e -> expert e
    coact = np.zeros((3, 4, 4))
    coact[:, 0, 1] = coact[:, 2, 3] = 100.0  # {0, 1} and {2, 3} always chosen together
    req = dataclasses.replace(request(loads, 2, EXACT, trans), coactivation=coact)
    raw = ilp_placement(dataclasses.replace(req, config={**EXACT, "polish": False}))
    polished = ilp_placement(req)
    assert ilp_objective(req, polished) <= ilp_objective(req, raw)
    for layer in homes(polished):
        assert layer[0] == layer[1] and layer[2] == layer[3]


def test_notes_do_not_change_placement_equality():
    a = Placement((((0,),),), (((1.0,),),), notes={"kept": "ilp"})
    assert a == dataclasses.replace(a, notes=None)


class _SqrtEstimator:
    """A stand-in cost model: an expert on `tokens` pairs takes sqrt(tokens) seconds."""

    def replica_s(self, rank, tokens):
        return float(np.sqrt(tokens)) if tokens > 0 else 0.0


def test_time_objective_balances_the_estimators_seconds_not_tokens():
    loads = np.array([[100.0, 81, 64, 49, 9, 1]])
    req = dataclasses.replace(request(loads, 3, {**EXACT, "weight": 1.0}), objective="time",
                              cost=_SqrtEstimator())
    seconds = np.sqrt(loads[0])
    mean = seconds.sum() / 3
    best = min(sum(abs(seconds[[e for e in range(6) if home[e] == g]].sum() - mean) for g in range(3))
               for home in itertools.product(range(3), repeat=6) if max(home.count(g) for g in range(3)) == 2)
    placement = ilp_placement(req)
    per_gpu = np.bincount(homes(placement)[0], weights=seconds, minlength=3)
    assert np.abs(per_gpu - mean).sum() == pytest.approx(best, rel=1e-9)
    assert placement.notes["load_unit"] == "seconds"
    with pytest.raises(ScenarioError, match="needs the run's cost model") as error:
        ilp_placement(dataclasses.replace(req, cost=None))
    assert error.value.field == "balancer.objective"

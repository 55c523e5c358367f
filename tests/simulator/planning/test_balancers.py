"""Balancers: valid placements for any input, better balance or traffic than round-robin, errors."""

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.planning.balancers import (
    BALANCERS_EXTRA, dispatch_traffic, eplb, gpu_loads, greedy_duplication,
)
from simulator.planning.balancers.eplb_policy import balanced_packing
from simulator.errors import ScenarioError
from simulator.planning.placement import Placement, PlacementRequest, assign_replicas, static_placement


def request(loads, gpus=4, node_of=None, config=None, transitions=None, slots=None, redundant=0,
            ranks=None):
    loads = np.asarray(loads, dtype=float)
    loads = loads[None, :] if loads.ndim == 1 else loads
    ranks = list(range(gpus)) if ranks is None else ranks
    return PlacementRequest(
        loads.shape[0], loads.shape[1], ranks, node_of if node_of is not None else [0] * len(ranks),
        dict(config or {}), loads=loads, transitions=transitions, slots_per_gpu=slots,
        redundant=redundant,
    )


def imbalance(placement, loads):
    """max / mean GPU load per layer, predicted from `loads` and the shares."""
    per_gpu = gpu_loads(placement, np.atleast_2d(loads))
    return per_gpu.max(axis=1) / per_gpu.mean(axis=1)


def zipf_loads(experts, layers=1, exponent=1.2, seed=0):
    rng = np.random.default_rng(seed)
    base = 1000.0 / np.arange(1, experts + 1) ** exponent
    return np.stack([rng.permutation(base) for _ in range(layers)])


def correlated_transitions(layers, experts, tokens=100.0, noise=2.0, seed=0):
    """Expert e at layer l sends most of its tokens to expert (3 e) mod E at layer l + 1."""
    rng = np.random.default_rng(seed)
    trans = rng.uniform(0, noise, (layers - 1, experts, experts))
    for e in range(experts):
        trans[:, e, (3 * e) % experts] += tokens
    return trans


def assert_valid(placement, req, slots=None):
    assert placement.layers == req.layers
    for layer in range(req.layers):
        assert len(placement.replicas[layer]) == req.experts
        held = dict.fromkeys(req.ep_ranks, 0)
        for ranks, shares in zip(placement.replicas[layer], placement.shares[layer]):
            assert len(ranks) >= 1
            assert len(set(ranks)) == len(ranks), "replicas of one expert on distinct GPUs"
            assert set(ranks) <= set(req.ep_ranks)
            assert len(shares) == len(ranks) and min(shares) > 0
            assert sum(shares) == pytest.approx(1.0, rel=1e-12)
            for rank in ranks:
                held[rank] += 1
        if slots is not None:
            assert max(held.values()) <= slots


# --- every balancer, any input -------------------------------------------------------------------

@st.composite
def cases(draw, max_experts=12, max_gpus=5, max_layers=3):
    experts = draw(st.integers(1, max_experts))
    gpus = draw(st.integers(1, max_gpus))
    layers = draw(st.integers(1, max_layers))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    loads = rng.pareto(draw(st.sampled_from([0.7, 1.5, 5.0])), (layers, experts)) * 100
    loads[rng.random((layers, experts)) < draw(st.sampled_from([0.0, 0.3]))] = 0.0
    layout = draw(st.sampled_from(["one", "equal", "ragged"]))
    if layout == "equal" and gpus % 2 == 0:
        node_of = [g // (gpus // 2) for g in range(gpus)]
    elif layout == "ragged":
        node_of = sorted(rng.integers(0, 3, gpus).tolist())
    else:
        node_of = [0] * gpus
    ranks = sorted(rng.choice(3 * gpus, gpus, replace=False).tolist()) if draw(st.booleans()) \
        else list(range(gpus))
    need = -(-experts // gpus)
    slots = draw(st.one_of(st.none(), st.integers(need, need + 3)))
    redundant = draw(st.integers(0, 6))
    trans = rng.integers(0, 20, (layers - 1, experts, experts)).astype(float)
    return request(loads, gpus, node_of, transitions=trans, slots=slots, redundant=redundant,
                   ranks=ranks), slots


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.sampled_from(["greedy_duplication", "eplb", "oracle"]))
def test_heuristic_balancers_return_valid_placements(case, kind):
    req, slots = case
    assert_valid(BALANCERS_EXTRA[kind](req), req, slots)


@settings(max_examples=40, deadline=None)
@given(cases(), st.sampled_from(["greedy_duplication", "eplb"]), st.integers(1, 400))
def test_routed_pairs_follow_shares(case, kind, tokens):
    """assign_replicas sends every pair to one of its expert's replicas, each within 1 of its share."""
    req, _ = case
    placement = BALANCERS_EXTRA[kind](req)
    pairs = np.random.default_rng(tokens).integers(0, req.experts, (tokens, 2))
    gpu = assign_replicas(pairs, placement.replicas[0], placement.shares[0])
    for expert, (ranks, shares) in enumerate(zip(placement.replicas[0], placement.shares[0])):
        mine = gpu[pairs == expert]
        assert set(mine.tolist()) <= set(ranks)
        counts = np.array([np.sum(mine == r) for r in ranks])
        assert counts.sum() == len(mine)
        assert np.all(np.abs(counts - np.array(shares) * len(mine)) < 1.0)


# --- greedy duplication (MoE-GPS Algorithm 1) ----------------------------------------------------

@settings(max_examples=80, deadline=None)
@given(cases())
def test_greedy_never_raises_max_gpu_load(case):
    req, _ = case
    before = gpu_loads(static_placement(req), req.loads).max(axis=1)
    after = gpu_loads(greedy_duplication(req), req.loads).max(axis=1)
    assert np.all(after <= before * (1 + 1e-12))


def test_greedy_with_true_loads_lowers_skewed_imbalance():
    rng = np.random.default_rng(1)
    popularity = 1.0 / np.arange(1, 9) ** 1.5
    pairs = rng.choice(8, size=(2048, 2), p=popularity / popularity.sum())
    true = np.bincount(pairs.ravel(), minlength=8).astype(float)
    req = request(true, gpus=4, config={"replica_budget": 4})
    static, greedy = static_placement(req), greedy_duplication(req)

    def routed_max_over_mean(placement):
        gpu = assign_replicas(pairs, placement.replicas[0], placement.shares[0])
        per_gpu = np.bincount(gpu.ravel(), minlength=4)
        return per_gpu.max() / per_gpu.mean()

    assert routed_max_over_mean(static) > 2.0
    assert routed_max_over_mean(greedy) < 1.1


def test_greedy_splits_hot_expert_evenly_onto_coldest_gpu():
    # expert 0 (GPU 0) carries 90 tokens; GPU 1 is the coldest (experts 1 and 3: 2 tokens)
    req = request([90, 1, 5, 1], gpus=2, config={"replica_budget": 1})
    placement = greedy_duplication(req)
    assert placement.replicas[0][0] == (0, 1)
    assert placement.shares[0][0] == (0.5, 0.5)
    np.testing.assert_allclose(gpu_loads(placement, req.loads)[0], [50.0, 47.0], rtol=1e-12)


def test_greedy_respects_replica_budget_and_slots():
    loads = zipf_loads(16, exponent=2.0)
    for budget in (0, 1, 3):
        placement = greedy_duplication(request(loads, gpus=4, config={"replica_budget": budget}))
        assert sum(map(len, placement.replicas[0])) <= 16 + budget
    placement = greedy_duplication(request(loads, gpus=4, slots=5, config={"replica_budget": 16}))
    assert_valid(placement, request(loads, gpus=4), slots=5)
    placement = greedy_duplication(request(loads, gpus=4, config={"max_replicas_per_gpu": 4}))
    assert sum(map(len, placement.replicas[0])) == 16


def test_greedy_stops_when_nothing_improves():
    # perfectly balanced: duplicating anything can only raise some GPU, so nothing is added
    placement = greedy_duplication(request([10, 10, 10, 10], gpus=2, config={"replica_budget": 5}))
    assert all(len(r) == 1 for r in placement.replicas[0])


def test_oracle_is_greedy_on_given_loads():
    req = request(zipf_loads(8, layers=2), gpus=4)
    assert BALANCERS_EXTRA["oracle"](req) == greedy_duplication(req)


# --- EPLB ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("node_of", [[0, 0, 0, 0], [0, 0, 1, 1]])
def test_eplb_balances_better_than_round_robin(seed, node_of):
    req = request(zipf_loads(16, layers=2, seed=seed), gpus=4, node_of=node_of)
    assert np.all(imbalance(eplb(req), req.loads) < imbalance(static_placement(req), req.loads))


def test_eplb_gives_every_gpu_the_same_number_of_slots():
    req = request(zipf_loads(8, layers=3), gpus=4, config={"redundant_experts": 4})
    placement = eplb(req)
    for layer in range(3):
        assert [len(placement.hosted(layer, g)) for g in range(4)] == [3, 3, 3, 3]


def test_eplb_hierarchical_keeps_groups_inside_one_node():
    node_of = [0, 0, 0, 0, 1, 1, 1, 1]
    req = request(zipf_loads(16, layers=2), gpus=8, node_of=node_of, config={"groups": 4})
    placement = eplb(req)
    for layer in placement.replicas:
        for group in range(4):
            nodes = {node_of[g] for e in range(4 * group, 4 * group + 4) for g in layer[e]}
            assert len(nodes) == 1
        for node in (0, 1):  # each node holds two whole groups: 8 experts + its 4 redundant replicas
            assert sum(node_of[g] == node for ranks in layer for g in ranks) == 12


def test_eplb_replicates_the_heaviest_expert():
    placement = eplb(request([100, 1, 1, 1], gpus=2, config={"redundant_experts": 2}))
    assert placement.replicas[0][0] == (0, 1)


def test_balanced_packing_repairs_when_a_label_blocks_every_open_pack():
    # A fills pack 0, B..F fill pack 1 and half of pack 2, then label 6 needs three distinct packs
    weight = np.array([100, 10, 9, 8, 7, 6, 1, 1, 1], dtype=float)
    label = np.array([0, 1, 2, 3, 4, 5, 6, 6, 6])
    packs = balanced_packing(weight, 3, label)
    assert np.bincount(packs, minlength=3).tolist() == [3, 3, 3]
    assert sorted(packs[label == 6].tolist()) == [0, 1, 2]


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 6), st.lists(st.integers(1, 6), min_size=1, max_size=12), st.integers(0, 999))
def test_balanced_packing_keeps_labels_apart_and_counts_equal(packs, copies, seed):
    copies = [min(c, packs) for c in copies]
    label = np.repeat(np.arange(len(copies)), copies)
    weight = np.random.default_rng(seed).pareto(1.0, len(label))
    pack_of = balanced_packing(weight, packs, label)
    assert np.bincount(pack_of, minlength=packs).max() <= -(-len(label) // packs)
    for lab in range(len(copies)):
        assert len(set(pack_of[label == lab].tolist())) == copies[lab]


# --- helpers -------------------------------------------------------------------------------------

def test_dispatch_traffic_counts_pairs_on_different_gpus():
    trans = np.array([[[5.0, 1.0], [2.0, 7.0]]])
    # round-robin puts expert 0 on GPU 0 in both layers, so only the off-diagonal pairs cross
    assert dispatch_traffic(static_placement(request(np.ones((2, 2)), gpus=2)), trans) == 3.0
    swapped = Placement((((0,), (1,)), ((1,), (0,))), (((1.0,), (1.0,)), ((1.0,), (1.0,))))
    assert dispatch_traffic(swapped, trans) == 12.0
    halves = Placement((((0, 1), (1,)), ((0,), (1,))), (((0.5, 0.5), (1.0,)), ((1.0,), (1.0,))))
    # expert 0 at layer 0 half on each GPU: its 5 pairs to expert 0 and 1 pair to expert 1 cross half
    assert dispatch_traffic(halves, trans) == pytest.approx(0.5 * 5 + 0.5 * 1 + 2.0, rel=1e-12)


# --- configuration and input errors --------------------------------------------------------------

@pytest.mark.parametrize("kind, config, field, message", [
    ("greedy_duplication", {"budget": 3}, "balancer.budget", "allowed: replica_budget, max_replicas"),
    ("greedy_duplication", {"replica_budget": -1}, "balancer.replica_budget", "integer >= 0, got -1"),
    ("greedy_duplication", {"replica_budget": True}, "balancer.replica_budget", "integer >= 0"),
    ("greedy_duplication", {"max_replicas_per_gpu": 1}, "balancer.max_replicas_per_gpu", "needs 2"),
    ("oracle", {"replica_budget": "many"}, "balancer.replica_budget", "integer >= 0, got 'many'"),
    ("eplb", {"redundant": 2}, "balancer.redundant", "allowed: redundant_experts, groups"),
    ("eplb", {"groups": 3}, "balancer.groups", "must divide the 8 experts, got 3"),
    ("eplb", {"redundant_experts": -2}, "balancer.redundant_experts", "integer >= 0"),
])
def test_bad_options_name_the_field(kind, config, field, message):
    with pytest.raises(ScenarioError, match=message) as error:
        BALANCERS_EXTRA[kind](request(np.ones((1, 8)), gpus=4, config=config))
    assert error.value.field == field


@pytest.mark.parametrize("kind", sorted(BALANCERS_EXTRA))
def test_missing_loads_asks_for_a_predictor(kind):
    req = PlacementRequest(1, 8, [0, 1, 2, 3], [0] * 4, {})
    with pytest.raises(ScenarioError, match="predictor.kind") as error:
        BALANCERS_EXTRA[kind](req)
    assert error.value.field == "balancer.kind"


@pytest.mark.parametrize("kind", sorted(BALANCERS_EXTRA))
def test_too_few_memory_slots_is_an_error(kind):
    with pytest.raises(ScenarioError, match="only 1 expert replica"):
        BALANCERS_EXTRA[kind](request(np.ones((1, 8)), gpus=4, slots=1))


def test_bad_loads_and_transitions_are_errors():
    with pytest.raises(ScenarioError, match=r"shape \(1, 8\)") as error:
        eplb(PlacementRequest(1, 8, [0, 1], [0, 0], {}, loads=np.ones((1, 7))))
    assert error.value.field == "balancer.loads"
    with pytest.raises(ScenarioError, match="finite and >= 0"):
        greedy_duplication(request([1.0, -1.0, 2.0, 3.0], gpus=2))
    with pytest.raises(ScenarioError, match="transitions must have shape"):
        BALANCERS_EXTRA["ilp"](request(np.ones((2, 4)), gpus=2, transitions=np.ones((2, 4, 4))))


def test_docs_example_prints_what_docs_show(capsys):
    """The Python block of docs/balancers.md, run, prints the text block that follows it."""
    text = (Path(__file__).parents[3] / "docs" / "balancers.md").read_text()
    code, shown = re.search(r"```python\n(.*?)```\n\nprints\n\n```text\n(.*?)```", text, re.S).groups()
    exec(compile(code, "docs/balancers.md", "exec"), {})
    assert capsys.readouterr().out == shown

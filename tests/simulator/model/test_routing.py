"""Routing from counts: owner-by-expert pair counts give exactly the token-by-token plan."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.model.routing import (owner_bounds, owner_expert_counts, plan_routing,
                                     plan_routing_tokens, token_ownership)
from simulator.planning.placement import Placement


def random_placement(rng, layers, experts, gpus):
    """Round-robin plus a few experts replicated on 2-3 GPUs with uneven shares."""
    replicas, shares = [], []
    for _ in range(layers):
        layer_replicas, layer_shares = [], []
        for expert in range(experts):
            count = int(rng.choice([1, 1, 2, 3])) if gpus > 1 else 1
            gpus_e = [expert % gpus] + [int(g) for g in rng.choice(
                [g for g in range(gpus) if g != expert % gpus], size=min(count, gpus) - 1,
                replace=False)]
            weights = rng.random(len(gpus_e)) + 0.05
            layer_replicas.append(tuple(gpus_e))
            layer_shares.append(tuple(float(w) for w in weights / weights.sum()))
        replicas.append(tuple(layer_replicas))
        shares.append(tuple(layer_shares))
    return Placement(tuple(replicas), tuple(shares))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), gpus=st.sampled_from([1, 2, 4, 8]),
       tp=st.sampled_from([1, 2, 4]), batch=st.integers(1, 6), seq=st.integers(1, 40),
       experts=st.sampled_from([4, 8, 16]), top_k=st.integers(1, 3))
def test_plan_from_counts_equals_the_token_by_token_plan(seed, gpus, tp, batch, seq, experts, top_k):
    if gpus % tp:
        tp = 1
    rng = np.random.default_rng(seed)
    iterations, layers = 2, 3
    ownership = token_ownership(batch, seq, gpus, tp)
    tokens = len(ownership.owner)
    choices = np.stack([np.stack([np.argsort(rng.random((tokens, experts)), axis=1)[:, :top_k]
                                  for _ in range(layers)]) for _ in range(iterations)])
    placements = [random_placement(rng, layers, experts, gpus) for _ in range(iterations)]
    bounds = owner_bounds(ownership, gpus)
    counts = np.array([[owner_expert_counts(choices[it, layer], bounds, experts)
                        for layer in range(layers)] for it in range(iterations)])
    fast = plan_routing(counts, ownership, placements, gpus, experts)
    slow = plan_routing_tokens(lambda it: iter(choices[it]), ownership, placements, gpus, experts)
    assert np.array_equal(fast.dispatch_pairs, slow.dispatch_pairs)
    assert np.array_equal(fast.expert_pairs, slow.expert_pairs)
    assert np.array_equal(fast.owned_tokens, slow.owned_tokens)
    assert fast.expert_pairs.sum() == iterations * layers * tokens * top_k


def test_counts_need_tokens_owned_in_contiguous_runs():
    ownership = token_ownership(2, 4, 2, 1)
    scrambled = type(ownership)(ownership.owner[::-1].copy(), ownership.group_tokens,
                                ownership.group_sequences, ownership.tp)
    with pytest.raises(ValueError, match="contiguous runs"):
        owner_bounds(scrambled, 2)


def test_one_pass_over_the_trace_counts_pairs_and_history_transitions_for_256_experts():
    from simulator.scenario.system import _reduce_trace
    from workloads.trace import RoutingTrace

    rng = np.random.default_rng(1)
    experts, layers, tokens, history = 256, 3, 50, 2
    choices = np.stack([[np.argsort(rng.random((tokens + 10, experts)), axis=1)[:, :2]
                         for _ in range(layers)] for _ in range(3)])
    trace = RoutingTrace(choices, meta={"num_experts": experts})
    ownership = token_ownership(5, 10, 4, 2)
    seen = []
    counts, transitions, coactivation = _reduce_trace(
        trace, ownership, 4, 3, history, tokens, experts,
        lambda done, total: seen.append((done, total)), all_next=True)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    expected = np.zeros((layers - 1, experts, experts), dtype=np.int64)
    together = np.zeros((layers, experts, experts), dtype=np.int64)
    for it in range(history):
        for layer in range(layers):
            for t in range(tokens):  # the first `tokens` tokens only; e * 256 overflows int16
                first, other = choices[it, layer, t]
                together[layer, first, other] += 1
                if layer < layers - 1:
                    for k in range(2):  # all_next: first choice -> each choice of the next layer
                        expected[layer, first, choices[it, layer + 1, t, k]] += 1
    assert np.array_equal(transitions, expected)
    assert np.array_equal(coactivation, together)
    for rank in range(4):
        mine = ownership.owner[:tokens] == rank
        assert np.array_equal(counts[1, 2, rank],
                              np.bincount(choices[1, 2, :tokens][mine].ravel(), minlength=experts))

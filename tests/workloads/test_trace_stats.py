"""Trace statistics against hand-computed values."""

import math

import numpy as np
import pytest

from workloads.stats import (
    contingency,
    cramers_v,
    drift,
    entropy_bits,
    format_stats,
    layer_dependency,
    normalised_mutual_information,
    skewness,
    token_consistency,
    trace_stats,
)
from workloads.trace import RoutingTrace


def top1_trace(choices, experts, token_ids=None):
    """Trace from first choices [iterations, layers, tokens]."""
    array = np.asarray(choices, dtype=np.int16)[..., None]
    ids = None if token_ids is None else np.asarray(token_ids, dtype=np.int32)
    return RoutingTrace(experts=array, token_ids=ids, meta={"num_experts": experts})


def test_skewness_and_entropy_of_a_known_load():
    trace = top1_trace([[[0, 0, 0, 1]]], experts=4)  # loads 3, 1, 0, 0; mean 1
    assert skewness(trace)[0, 0] == pytest.approx(3.0, rel=1e-12)
    expected_bits = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert entropy_bits(trace)[0, 0] == pytest.approx(expected_bits, rel=1e-12)


def test_balanced_load_has_skewness_one_and_full_entropy():
    trace = top1_trace([[[0, 1, 2, 3, 0, 1, 2, 3]]], experts=4)
    assert skewness(trace)[0, 0] == pytest.approx(1.0, rel=1e-12)
    assert entropy_bits(trace)[0, 0] == pytest.approx(2.0, rel=1e-12)


def test_cramers_v_and_nmi_of_a_permutation_are_one():
    first = np.array([0, 1, 2, 3] * 5)
    table = contingency(first, (first + 1) % 4, 4)
    assert cramers_v(table) == pytest.approx(1.0, rel=1e-12)
    assert normalised_mutual_information(table) == pytest.approx(1.0, rel=1e-12)


def test_cramers_v_and_nmi_of_independent_layers_are_zero():
    first = np.repeat([0, 1], 4)   # 0 0 0 0 1 1 1 1
    second = np.tile([0, 1], 4)    # 0 1 0 1 0 1 0 1: every pair equally often
    table = contingency(first, second, 2)
    assert cramers_v(table) == pytest.approx(0.0, abs=1e-12)
    assert normalised_mutual_information(table) == pytest.approx(0.0, abs=1e-12)


def test_layer_dependency_of_copied_layers_is_one():
    choices = [[[0, 1, 2, 3, 1, 0], [0, 1, 2, 3, 1, 0]]]
    assert layer_dependency(top1_trace(choices, 4))["cramers_v"] == pytest.approx(1.0)


def test_token_consistency_counts_modal_expert_of_repeated_ids():
    # id 7 seen 3 times: experts 2, 2, 1 -> 2 hits; id 9 seen twice: 0, 3 -> 1 hit; id 5 once.
    trace = top1_trace([[[2, 2, 1, 0, 3, 1]]], experts=4, token_ids=[[7, 7, 7, 9, 9, 5]])
    assert token_consistency(trace) == pytest.approx(3 / 5, rel=1e-12)


def test_drift_is_the_mean_l1_between_consecutive_load_shares():
    # iteration 0 loads (2, 0) -> shares (1, 0); iteration 1 (1, 1) -> (0.5, 0.5): L1 = 1.
    trace = top1_trace([[[0, 0]], [[0, 1]]], experts=2)
    assert drift(trace) == pytest.approx(1.0, rel=1e-12)
    assert drift(top1_trace([[[0, 1]], [[1, 0]]], experts=2)) == 0.0


def test_trace_stats_summary_and_text_table():
    trace = top1_trace([[[0, 1, 1, 0], [1, 0, 0, 1]]], experts=2, token_ids=[[4, 4, 5, 5]])
    stats = trace_stats(trace)
    assert stats["skewness"]["mean"] == pytest.approx(1.0)
    assert stats["layer_dependency"]["cramers_v"] == pytest.approx(1.0)
    assert len(stats["skewness"]["per_layer"]) == 2
    text = format_stats(stats)
    assert "skewness (max/mean load)" in text and "Cramer's V 1.000" in text
    assert text.splitlines()[-1].split()[0] == "1"  # one row per MoE layer


def test_stats_without_token_ids_or_second_layer_are_marked_missing():
    stats = trace_stats(top1_trace([[[0, 1]]], experts=2))
    assert stats["token_consistency"] is None
    assert stats["layer_dependency"] == {"cramers_v": None, "nmi": None}
    assert "n/a" in format_stats(stats)

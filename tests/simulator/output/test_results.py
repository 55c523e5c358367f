"""Union-of-intervals arithmetic used for the per-phase breakdown."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from simulator.output.summary import union_lengths


def test_union_of_overlapping_and_disjoint_intervals():
    group = np.array([0, 0, 0, 1, 1])
    start = np.array([0.0, 1.0, 5.0, 2.0, 2.5])
    end = np.array([2.0, 3.0, 6.0, 3.0, 2.7])
    assert np.allclose(union_lengths(group, start, end, 3), [4.0, 1.0, 0.0])


@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 10), st.floats(0, 5)), min_size=1, max_size=40))
def test_union_matches_a_fine_grid(items):
    group = np.array([g for g, _, _ in items])
    start = np.array([s for _, s, _ in items])
    end = start + np.array([d for _, _, d in items])
    got = union_lengths(group, start, end, 4)
    for g in range(4):
        intervals = sorted((s, e) for gg, s, e in zip(group, start, end) if gg == g)
        total, reach = 0.0, -np.inf
        for s, e in intervals:
            total += max(0.0, e - max(s, reach))
            reach = max(reach, e)
        assert np.isclose(got[g], total, rtol=1e-9, atol=1e-9)

"""The solver kernels: numba and numpy give the same bits, and both give the closed forms."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.engine import maxmin

numba_kernels = maxmin.numba_kernels()
needs_numba = pytest.mark.skipif(numba_kernels is None, reason="numba not installed (extra: fast)")


@st.composite
def active_flows(draw):
    """Flows on up to 8 links (ragged paths, arbitrary mantissas), part-drained, some rates kept."""
    n_links = draw(st.integers(1, 8))
    capacity = draw(st.lists(st.floats(1.0, 100.0), min_size=n_links, max_size=n_links))
    paths = [draw(st.permutations(range(n_links)))[:draw(st.integers(1, n_links))]
             for _ in range(draw(st.integers(1, 14)))]
    width = max(len(p) for p in paths)
    cols = np.full((width, len(paths)), n_links, dtype=np.int64)
    for f, links in enumerate(paths):
        cols[:len(links), f] = links
    size = np.array(draw(st.lists(st.floats(1.0, 1e6), min_size=len(paths), max_size=len(paths))))
    return cols, np.append(capacity, np.inf), size


def both(function_name, *arrays_and_scalars):
    """Run a kernel on copies of the arguments with each implementation; return both results."""
    out = []
    for kernels in (maxmin.numpy_kernels(), numba_kernels):
        args = [a.copy() if isinstance(a, np.ndarray) else a for a in arrays_and_scalars]
        result = getattr(kernels, function_name)(*args)
        out.append((result, args))
    return out


@needs_numba
@settings(max_examples=150, deadline=None)
@given(active_flows(), st.data())
def test_numba_and_numpy_kernels_agree_to_the_bit(problem, data):
    cols, capacity, size = problem
    n = cols.shape[1]
    remaining, rate = size.copy(), np.zeros(n)
    (r_np, a_np), (r_nb, a_nb) = both("solve", cols, capacity, remaining, rate, n, 0.0)
    assert r_np[0] == r_nb[0] and r_np[1] == r_nb[1]
    np.testing.assert_array_equal(a_np[3], a_nb[3])
    rate = a_np[3]
    # drain to the first completion and resume from the finished flows' level
    dt = float(r_np[1]) * data.draw(st.sampled_from([0.5, 1.0]))
    ids = np.arange(n, dtype=np.int64)
    (f_np, b_np), (f_nb, b_nb) = both("advance_finish", cols, ids, size, remaining, rate, n, dt,
                                      1e-10, 4 * math.ulp(dt), np.zeros(n, dtype=np.int64))
    assert f_np == f_nb
    for x, y in zip(b_np, b_nb):
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
    m, _, restart = f_np
    if m:
        cols2, _, _, remaining2, rate2 = b_np[:5]
        (s_np, c_np), (s_nb, c_nb) = both("solve", cols2, capacity, remaining2, rate2, m, restart)
        assert s_np == s_nb
        np.testing.assert_array_equal(c_np[3][:m], c_nb[3][:m])


@pytest.mark.parametrize("implementation", ["numpy", "numba"])
def test_kernels_give_closed_forms(implementation):
    """Three flows on a 10 B/s link and one of them also on a 2 B/s link: max-min gives 2, 4, 4;
    the 4 B/s flows of 8 B end at 2 s, then the remaining flow alone keeps 2 B/s."""
    kernels = maxmin.numpy_kernels() if implementation == "numpy" else numba_kernels
    if kernels is None:
        pytest.skip("numba not installed")
    capacity = np.array([10.0, 2.0, np.inf])
    cols = np.array([[0, 0, 0], [1, 2, 2]], dtype=np.int64)
    size = np.array([100.0, 8.0, 8.0])
    remaining, rate = size.copy(), np.zeros(3)
    rounds, wake = kernels.solve(cols, capacity, remaining, rate, 3, 0.0)
    np.testing.assert_array_equal(rate, [2.0, 4.0, 4.0])
    assert wake == 2.0 and rounds == 2
    ids = np.arange(3, dtype=np.int64)
    done = np.zeros(3, dtype=np.int64)
    n, n_done, restart = kernels.advance_finish(cols, ids, size, remaining, rate, 3, 2.0, 1e-10, 0.0, done)
    assert (n, n_done, restart) == (1, 2, 4.0)
    np.testing.assert_array_equal(done[:2], [1, 2])
    assert remaining[0] == 96.0 and ids[0] == 0
    rounds, wake = kernels.solve(cols, capacity, remaining, rate, 1, restart)
    assert rate[0] == 2.0 and wake == 48.0


def test_solver_choice_follows_the_environment(monkeypatch):
    monkeypatch.setenv("MOESIM_SOLVER", "numpy")
    assert maxmin.kernels().name == "numpy"
    monkeypatch.setenv("MOESIM_SOLVER", "nope")
    with pytest.raises(ValueError, match="MOESIM_SOLVER"):
        maxmin.kernels()
    monkeypatch.setenv("MOESIM_SOLVER", "auto")
    assert maxmin.kernels().name == ("numba" if numba_kernels is not None else "numpy")


def test_a_network_switches_kernels_mid_run_without_changing_a_bit(monkeypatch):
    """Runs start on numpy and move to numba after SWITCH_UPDATES updates: the same bits as numpy
    all along (the kernels agree to the bit)."""
    import simpy

    from simulator.engine.network import FlowNetwork
    from topologies import multi_node
    from topologies.paths import PathTable, gpu_nodes

    def run(solver, switch):
        monkeypatch.setenv("MOESIM_SOLVER", solver)
        monkeypatch.setattr(maxmin, "SWITCH_UPDATES", switch)
        paths = PathTable(multi_node(nodes=2, gpus_per_node=4))
        names = gpu_nodes(paths.graph)
        env = simpy.Environment()
        net = FlowNetwork(env, paths, alpha_s=1e-6)
        if solver == "auto":  # as in a fresh process: start on numpy
            net._kernels = maxmin.numpy_kernels()
        rng = np.random.default_rng(3)
        pairs = [(a, b) for a in names for b in names if a != b]
        net.transfer_many([a for a, _ in pairs], [b for _, b in pairs], rng.uniform(1e5, 4e6, len(pairs)))
        env.run()
        return net

    reference = run("numpy", 10**9)
    switched = run("auto", 20)
    assert switched._kernels.name == ("numba" if numba_kernels is not None else "numpy")
    assert reference.solves > 20
    np.testing.assert_array_equal(switched.flow_table()["end_s"], reference.flow_table()["end_s"])

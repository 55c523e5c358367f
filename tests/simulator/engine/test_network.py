"""The max-min fair flow network: closed forms, the solver against a reference, invariants."""

import networkx as nx
import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.engine.network import FlowNetwork, FlowRecord, GroupRecord, max_min_rates
from topologies.paths import PathTable

REL = 1e-12


# ------------------------------------------------------------------ small hand-built graphs


def add_link(graph, a, b, bandwidth_Bps, latency_s=0.0, kind="test", directed=False):
    for u, v in [(a, b)] if directed else [(a, b), (b, a)]:
        graph.add_edge(u, v, bandwidth_Bps=float(bandwidth_Bps), latency_s=float(latency_s),
                       kind=kind, explicit=True)


def add_gpus(graph, count, node_id=0, first=0):
    names = [f"gpu{first + i}" for i in range(count)]
    for i, name in enumerate(names):
        graph.add_node(name, kind="gpu", device="h100-sxm5-80gb", rank=first + i, node_id=node_id)
    return names


def line(bandwidths_Bps, latencies_s=None):
    """gpu0 - sw1 - sw2 - ... - gpu1: one path whose hops have the given figures."""
    latencies_s = latencies_s or [0.0] * len(bandwidths_Bps)
    graph = nx.DiGraph(name="line")
    add_gpus(graph, 2)
    nodes = ["gpu0"] + [f"sw{i}" for i in range(1, len(bandwidths_Bps))] + ["gpu1"]
    for node in nodes[1:-1]:
        graph.add_node(node, kind="switch")
    for (a, b), bw, lat in zip(zip(nodes, nodes[1:]), bandwidths_Bps, latencies_s):
        add_link(graph, a, b, bw, lat)
    return graph


def star(gpus, port_Bps, latency_s=0.0):
    """`gpus` GPUs on one switch (an NVSwitch node)."""
    graph = nx.DiGraph(name="star")
    graph.add_node("sw", kind="switch")
    for name in add_gpus(graph, gpus):
        add_link(graph, name, "sw", port_Bps, latency_s)
    return graph


def two_tier(nodes, per_node, port_Bps=450e9, nic_Bps=50e9, lat_s=1e-6):
    """Servers of `per_node` GPUs on a switch each, one NIC per GPU to a spine (multi-node)."""
    graph = nx.DiGraph(name="two_tier")
    graph.add_node("spine", kind="switch")
    for node in range(nodes):
        graph.add_node(f"sw{node}", kind="switch")
        for name in add_gpus(graph, per_node, node_id=node, first=node * per_node):
            add_link(graph, name, f"sw{node}", port_Bps, lat_s / 2, kind="nvswitch")
            graph.add_node(f"nic_{name}", kind="nic")
            add_link(graph, name, f"nic_{name}", 63e9, lat_s / 2, kind="pcie")
            add_link(graph, f"nic_{name}", "spine", nic_Bps, lat_s, kind="ib")
    return graph


def network(graph, alpha_s=0.0, **kwargs):
    env = simpy.Environment()
    return env, FlowNetwork(env, PathTable(graph), alpha_s=alpha_s, **kwargs)


@pytest.fixture
def env():
    return simpy.Environment()


def run_transfers(net, flows):
    """Start (src, dst, bytes, at_s) flows; returns their FlowRecords once all are done."""
    events = []

    def start(src, dst, nbytes, at_s):
        yield net.env.timeout(at_s)
        events.append(net.transfer(src, dst, nbytes))

    for flow in flows:
        net.env.process(start(*flow))
    net.env.run()
    return [event.value for event in events]


# ------------------------------------------------------------------ closed forms


def test_one_flow_on_one_link_takes_alpha_latency_and_bytes_over_bandwidth():
    env, net = network(line([25e9], [1.5e-6]), alpha_s=3e-6)
    event = net.transfer("gpu0", "gpu1", 7e6)
    env.run()
    expected = 3e-6 + 1.5e-6 + 7e6 / 25e9
    assert event.value.end_s == pytest.approx(expected, rel=REL)
    assert event.value.first_byte_s == pytest.approx(4.5e-6, rel=REL)
    assert isinstance(event.value, FlowRecord) and event.value.bytes == 7e6


def test_multi_hop_flow_is_limited_by_its_bottleneck_plus_latency_sum():
    env, net = network(line([100e9, 12e9, 50e9], [1e-6, 2e-6, 0.5e-6]), alpha_s=1e-6)
    event = net.transfer("gpu0", "gpu1", 3e8)
    env.run()
    assert event.value.end_s == pytest.approx(1e-6 + 3.5e-6 + 3e8 / 12e9, rel=REL)
    assert len(event.value.links) == 3


def test_flow_started_later_measures_from_its_request():
    env, net = network(line([10e9], [2e-6]), alpha_s=1e-6)
    (record,) = run_transfers(net, [("gpu0", "gpu1", 1e6, 5e-3)])
    assert record.start_s == 5e-3
    assert record.end_s - record.start_s == pytest.approx(3e-6 + 1e-4, rel=1e-9)


@pytest.mark.parametrize("k", [2, 3, 7])
def test_k_equal_flows_on_one_link_each_get_a_kth_and_finish_together(k):
    graph = nx.DiGraph(name="fan")
    add_gpus(graph, k + 1)
    graph.add_node("sw", kind="switch")
    add_link(graph, "sw", "gpu0", 40e9)  # the shared link
    for i in range(1, k + 1):
        add_link(graph, f"gpu{i}", "sw", 1e12)
    env, net = network(graph)
    rates = []
    net.on_solve = lambda t, link_rate: rates.append(link_rate.copy())
    records = run_transfers(net, [(f"gpu{i}", "gpu0", 1e8, 0.0) for i in range(1, k + 1)])
    for record in records:
        assert record.end_s == pytest.approx(k * 1e8 / 40e9, rel=1e-9)
    assert len({r.end_s for r in records}) == 1  # one completion event
    assert net.solves == 1
    shared = net.paths.link_id[("sw", "gpu0")]
    assert rates[0][shared] == pytest.approx(40e9, rel=REL)


def test_two_flows_share_bottleneck_max_min_not_proportionally():
    # flow A crosses a slow 1 GB/s link then a 10 GB/s link shared with flow B.
    graph = nx.DiGraph(name="y")
    add_gpus(graph, 3)
    graph.add_node("sw", kind="switch")
    add_link(graph, "gpu0", "sw", 1e9)  # A's own bottleneck
    add_link(graph, "gpu1", "sw", 100e9)
    add_link(graph, "sw", "gpu2", 10e9)  # shared
    env, net = network(graph)
    a, b = run_transfers(net, [("gpu0", "gpu2", 1e9, 0.0), ("gpu1", "gpu2", 9e9, 0.0)])
    # max-min: A gets 1 (its bottleneck), B the remaining 9 -- not 5/5, not 10 * 1/11 ...
    assert b.end_s == pytest.approx(9e9 / 9e9, rel=1e-9)
    assert a.end_s == pytest.approx(1e9 / 1e9, rel=1e-9)


def test_rates_are_recomputed_when_a_flow_leaves():
    env, net = network(line([10e9]))
    small, big = run_transfers(net, [("gpu0", "gpu1", 1e9, 0.0), ("gpu0", "gpu1", 5e9, 0.0)])
    assert small.end_s == pytest.approx(2 * 1e9 / 10e9, rel=1e-9)
    assert big.end_s == pytest.approx((5e9 + 1e9) / 10e9, rel=1e-9)


def test_rates_are_recomputed_when_a_flow_arrives():
    env, net = network(line([10e9]))
    first, second = run_transfers(net, [("gpu0", "gpu1", 2e9, 0.0), ("gpu0", "gpu1", 1e9, 0.1)])
    # first alone for 0.1 s (1e9 bytes), then both at 5 GB/s: 1e9 left each, 0.2 s
    assert first.end_s == pytest.approx(0.3, rel=1e-9)
    assert second.end_s == pytest.approx(0.3, rel=1e-9)


def test_opposite_directions_do_not_share_a_link():
    env, net = network(line([10e9]))
    a, b = run_transfers(net, [("gpu0", "gpu1", 1e9, 0.0), ("gpu1", "gpu0", 1e9, 0.0)])
    assert a.end_s == b.end_s == pytest.approx(0.1, rel=1e-9)


def test_zero_bytes_cost_alpha_and_latency_and_a_local_copy_costs_nothing():
    env, net = network(line([10e9], [2e-6]), alpha_s=5e-6)
    empty = net.transfer("gpu0", "gpu1", 0)
    local = net.transfer("gpu0", "gpu0", 1e9)
    env.run()
    assert empty.value.end_s == pytest.approx(7e-6, rel=REL)
    assert local.value.end_s == 0.0 and local.value.links == ()
    assert net.bytes_delivered == net.bytes_requested == 1e9


def test_all_to_all_batch_is_one_solve_and_one_completion_event():
    env, net = network(star(16, 450e9, 0.3e-6), alpha_s=2e-6)
    names = [f"gpu{i}" for i in range(16)]
    pairs = [(a, b) for a in names for b in names if a != b]
    event = net.transfer_many([a for a, _ in pairs], [b for _, b in pairs], 1e6, tag="a2a")
    env.run()
    assert net.solves == 1
    assert isinstance(event.value, GroupRecord) and event.value.flows == 240
    assert event.value.end_s == pytest.approx(2e-6 + 0.6e-6 + 15 * 1e6 / 450e9, rel=1e-12)
    assert len(set(net.flow_table()["end_s"])) == 1


def test_empty_batch_completes_at_once(env):
    net = FlowNetwork(env, PathTable(line([1e9])))
    event = net.transfer_many([], [], 0)
    env.run()
    assert event.value.flows == 0 and event.value.end_s == 0.0


def test_bad_inputs_raise_value_error(env):
    paths = PathTable(line([1e9]))
    with pytest.raises(ValueError, match="alpha_s"):
        FlowNetwork(env, paths, alpha_s=-1)
    net = FlowNetwork(env, paths)
    with pytest.raises(ValueError, match="sizes"):
        net.transfer("gpu0", "gpu1", -5)
    with pytest.raises(ValueError, match="sizes"):
        net.transfer("gpu0", "gpu1", float("nan"))
    with pytest.raises(ValueError, match="length"):
        net.transfer_many(["gpu0"], [], 1)


# ------------------------------------------------------------------ records and conservation


def test_records_and_link_counters_conserve_bytes():
    graph = two_tier(2, 2)
    env, net = network(graph, alpha_s=1e-6)
    rng = np.random.default_rng(1)
    names = [f"gpu{i}" for i in range(4)]
    pairs = [(a, b) for a in names for b in names if a != b]
    sizes = rng.uniform(1e5, 1e7, len(pairs))
    net.transfer_many([a for a, _ in pairs], [b for _, b in pairs], sizes, tag="x")
    net.transfer("gpu0", "gpu3", 5e6, tag="y")
    env.run()
    records = net.records()
    assert len(records) == len(pairs) + 1 == net.flow_count
    assert [r.tag for r in records] == ["x"] * len(pairs) + ["y"]
    assert net.bytes_requested == pytest.approx(net.bytes_delivered, rel=1e-15)
    assert net.bytes_delivered == pytest.approx(sizes.sum() + 5e6, rel=1e-12)
    expected = np.zeros(len(net.paths.links))
    for r in records:
        assert r.start_s <= r.first_byte_s <= r.end_s
        assert list(r.links) == list(net.paths.path(r.src, r.dst))
        expected[list(r.links)] += r.bytes
    np.testing.assert_allclose(net.bytes_on_link, expected, rtol=1e-12)
    by_kind = net.bytes_by_link_kind()
    assert set(by_kind) == {"nvswitch", "pcie", "ib"}
    assert sum(by_kind.values()) == pytest.approx(expected.sum(), rel=1e-12)
    table = net.flow_table()
    assert list(table["src"][:3]) == [pairs[0][0], pairs[1][0], pairs[2][0]]
    np.testing.assert_array_equal(table["end_s"], [r.end_s for r in records])


# ------------------------------------------------------------------ the solver


def reference_max_min(flow_links, capacity):
    """Textbook progressive filling, one level at a time, in plain Python."""
    n = len(flow_links)
    rate = [0.0] * n
    frozen = [False] * n
    left = list(capacity)
    while not all(frozen):
        users = {}
        for f, links in enumerate(flow_links):
            if not frozen[f]:
                for link in links:
                    users[link] = users.get(link, 0) + 1
        step = min(left[link] / count for link, count in users.items())
        for f in range(n):
            if not frozen[f]:
                rate[f] += step
        for link, count in users.items():
            left[link] -= step * count
        for link in users:
            if left[link] <= 1e-9 * capacity[link]:
                for f, links in enumerate(flow_links):
                    if link in links:
                        frozen[f] = True
    return np.array(rate)


@st.composite
def incidence(draw):
    n_links = draw(st.integers(1, 8))
    n_flows = draw(st.integers(1, 12))
    capacity = draw(st.lists(st.sampled_from([1.0, 2.0, 3.0, 5.0, 10.0, 7.5]),
                             min_size=n_links, max_size=n_links))
    flow_links = [sorted(draw(st.sets(st.integers(0, n_links - 1), min_size=1, max_size=n_links)))
                  for _ in range(n_flows)]
    return flow_links, capacity


def as_pairs(flow_links):
    pair_flow = np.array([f for f, links in enumerate(flow_links) for _ in links], dtype=np.int64)
    pair_link = np.array([link for links in flow_links for link in links], dtype=np.int64)
    return pair_flow, pair_link


@settings(max_examples=150, deadline=None)
@given(incidence())
def test_max_min_rates_match_textbook_progressive_filling(problem):
    flow_links, capacity = problem
    pair_flow, pair_link = as_pairs(flow_links)
    rates, rounds = max_min_rates(pair_flow, pair_link, np.array(capacity), len(flow_links))
    np.testing.assert_allclose(rates, reference_max_min(flow_links, capacity), rtol=1e-9)
    # feasible, and every flow has a saturated link on which no flow gets more (max-min)
    load = np.bincount(pair_link, weights=rates[pair_flow], minlength=len(capacity))
    assert np.all(load <= np.array(capacity) * (1 + 1e-9))
    for f, links in enumerate(flow_links):
        assert any(load[link] >= capacity[link] * (1 - 1e-9)
                   and all(rates[g] <= rates[f] * (1 + 1e-9)
                           for g, other in enumerate(flow_links) if link in other)
                   for link in links)
    assert 1 <= rounds <= len(capacity)


@settings(max_examples=100, deadline=None)
@given(incidence(), st.data())
def test_resumed_solve_equals_full_solve(problem, data):
    """Keeping the flows below some level (as after departures) gives the same answer."""
    flow_links, capacity = problem
    pair_flow, pair_link = as_pairs(flow_links)
    rates, _ = max_min_rates(pair_flow, pair_link, np.array(capacity), len(flow_links))
    level = data.draw(st.sampled_from(sorted(set(rates.tolist()))))
    kept = np.where(rates < level * (1 - 1e-9), rates, np.nan)
    resumed, _ = max_min_rates(pair_flow, pair_link, np.array(capacity), len(flow_links), kept)
    np.testing.assert_allclose(resumed, rates, rtol=1e-9)


class FullSolveNetwork(FlowNetwork):
    """Always solves from scratch on every link (the reference for resumed solves and pruning)."""

    resume_solves = False

    def _prune(self):
        self._new_routes = []


def random_all_to_all(net_class, seed, **kwargs):
    graph = two_tier(3, 4)
    env = simpy.Environment()
    net = net_class(env, PathTable(graph), alpha_s=1e-6, **kwargs)
    rng = np.random.default_rng(seed)
    names = [f"gpu{i}" for i in range(12)]
    pairs = [(a, b) for a in names for b in names if a != b]
    net.transfer_many([a for a, _ in pairs], [b for _, b in pairs], rng.integers(1, 50, len(pairs)) * 1e5)
    env.run()
    return net


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_all_to_all_resumed_solves_match_full_solves(seed):
    fast = random_all_to_all(FlowNetwork, seed)
    full = random_all_to_all(FullSolveNetwork, seed)
    np.testing.assert_allclose(fast.flow_table()["end_s"], full.flow_table()["end_s"], rtol=1e-9)
    assert fast.solve_rounds < full.solve_rounds


def test_links_that_can_never_bind_are_skipped_on_a_multi_node_fabric():
    import topologies

    graph = topologies.multi_node(nodes=2, gpus_per_node=4)
    env = simpy.Environment()
    paths = PathTable(graph)
    net = FlowNetwork(env, paths)
    names = [f"gpu{i}" for i in range(8)]
    pairs = [(a, b) for a in names for b in names if a != b]
    net.transfer_many([a for a, _ in pairs], [b for _, b in pairs], 1e6)
    skipped = {paths.link_kind[k] for k in np.flatnonzero(net._redundant)}
    kept = {paths.link_kind[k] for k in np.flatnonzero(~net._redundant)}
    assert "pcie5" in skipped and kept >= {"nvswitch4", "ib-ndr"}
    env.run()
    # the GPU->NIC PCIe hop (63 GB/s) feeds only the 50 GB/s NIC port: the NIC port binds
    nic_Bps = graph.edges["n0_nic0", "leaf0"]["bandwidth_Bps"]
    assert net.flow_table()["end_s"].max() == pytest.approx(
        paths.path_latency_s("gpu0", "gpu4") + 4 * 1e6 / nic_Bps, rel=1e-9)


def test_equal_capacity_links_in_series_never_excuse_each_other():
    env, net = network(line([10e9, 10e9, 10e9]))
    event = net.transfer("gpu0", "gpu1", 1e9)
    env.run()
    assert event.value.end_s == pytest.approx(0.1, rel=1e-12)
    assert not net._redundant[list(event.value.links)].all()


def test_a_skipped_link_is_enforced_again_when_a_new_route_makes_it_bind():
    graph = nx.DiGraph(name="v")
    add_gpus(graph, 3)
    graph.add_node("sw", kind="switch")
    add_link(graph, "gpu0", "sw", 15e9)
    add_link(graph, "sw", "gpu1", 10e9)
    add_link(graph, "sw", "gpu2", 10e9)
    env, net = network(graph)
    first, second = run_transfers(net, [("gpu0", "gpu1", 2e9, 0.0), ("gpu0", "gpu2", 0.75e9, 0.1)])
    # first alone at 10 GB/s for 0.1 s; then both share gpu0->sw at 7.5 GB/s for 0.1 s;
    # then first alone again at 10 GB/s for its last 0.25e9 bytes
    assert second.end_s == pytest.approx(0.2, rel=1e-9)
    assert first.end_s == pytest.approx(0.225, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_skipping_links_does_not_change_results_on_a_real_fabric(seed):
    import topologies

    graph = topologies.multi_node(nodes=2, gpus_per_node=4, intra="pcie_tree")
    rng = np.random.default_rng(seed)
    names = [f"gpu{i}" for i in range(8)]
    pairs = [(a, b) for a in names for b in names if a != b]
    sizes = rng.uniform(1e5, 1e7, len(pairs))
    ends = []
    for net_class in (FlowNetwork, FullSolveNetwork):
        env = simpy.Environment()
        net = net_class(env, PathTable(graph), alpha_s=1e-6)
        net.transfer_many([a for a, _ in pairs], [b for _, b in pairs], sizes)
        env.run()
        ends.append(net.flow_table()["end_s"])
    np.testing.assert_allclose(ends[0], ends[1], rtol=1e-9)


def test_no_link_carries_more_than_its_capacity_at_any_solve():
    loads = []
    graph = two_tier(3, 4)
    env = simpy.Environment()
    paths = PathTable(graph)
    net = FlowNetwork(env, paths, alpha_s=1e-6, on_solve=lambda t, rate: loads.append(rate.copy()))
    rng = np.random.default_rng(3)
    names = [f"gpu{i}" for i in range(12)]
    for _ in range(40):
        a, b = rng.choice(names, 2, replace=False)
        net.transfer(a, b, float(rng.uniform(1e5, 1e7)))
    env.run()
    assert net.solves == len(loads) > 10
    assert np.all(np.array(loads) <= paths.capacity_Bps * (1 + 1e-9))


def test_finish_tolerance_trades_solves_for_bounded_error():
    exact = random_all_to_all(FlowNetwork, 5)
    rough = random_all_to_all(FlowNetwork, 5, finish_rtol=1e-2)
    assert rough.solves < exact.solves
    exact_end, rough_end = exact.flow_table()["end_s"], rough.flow_table()["end_s"]
    assert rough_end.max() == pytest.approx(exact_end.max(), rel=2e-2)
    with pytest.raises(ValueError, match="finish_rtol"):
        random_all_to_all(FlowNetwork, 5, finish_rtol=1.0)


# ------------------------------------------------------------------ the fast path is exact


@st.composite
def ragged_incidence(draw):
    """Paths of different lengths in any link order, capacities with arbitrary mantissas."""
    n_links = draw(st.integers(1, 8))
    capacity = draw(st.lists(st.floats(1.0, 100.0), min_size=n_links, max_size=n_links))
    flow_links = [draw(st.permutations(range(n_links)))[:draw(st.integers(1, n_links))]
                  for _ in range(draw(st.integers(1, 14)))]
    return flow_links, capacity


def as_columns(flow_links, n_links):
    width = max(len(links) for links in flow_links)
    cols = np.full((width, len(flow_links)), n_links, dtype=np.int64)  # spare link n_links
    for f, links in enumerate(flow_links):
        cols[:len(links), f] = links
    return cols


@settings(max_examples=150, deadline=None)
@given(ragged_incidence(), st.data())
def test_column_solver_gives_the_pair_solver_rates_to_the_bit(problem, data):
    from simulator.engine.network import _fill_columns

    flow_links, capacity = problem
    pair_flow, pair_link = as_pairs(flow_links)
    cols = as_columns(flow_links, len(capacity))
    capacity_ext = np.append(capacity, np.inf)
    rates, rounds = max_min_rates(pair_flow, pair_link, np.array(capacity), len(flow_links))
    fast, fast_rounds = _fill_columns(cols, capacity_ext)
    np.testing.assert_array_equal(fast, rates)
    assert fast_rounds == rounds
    level = data.draw(st.sampled_from(sorted(set(rates.tolist()))))
    kept = rates < level * (1 - 1e-9)
    resumed, resumed_rounds = max_min_rates(pair_flow, pair_link, np.array(capacity),
                                            len(flow_links), np.where(kept, rates, np.nan))
    fast, fast_rounds = _fill_columns(cols, capacity_ext, rates, kept)
    np.testing.assert_array_equal(fast, resumed)
    assert fast_rounds == resumed_rounds


def test_bytes_on_link_is_the_same_whenever_it_is_read():
    """Per-link bytes are added lazily in batches; reading early or late changes no bit."""
    def run(read_every_solve):
        graph = two_tier(3, 4)
        env = simpy.Environment()
        seen = []
        net = FlowNetwork(env, PathTable(graph), alpha_s=1e-6)
        if read_every_solve:
            net.on_solve = lambda _t, _rate: seen.append(net.bytes_on_link.copy())
        rng = np.random.default_rng(7)
        names = [f"gpu{i}" for i in range(12)]
        pairs = [(a, b) for a in names for b in names if a != b]
        for _ in range(3):  # over 256 completion events: the batch flush runs mid-run too
            net.transfer_many([a for a, _ in pairs], [b for _, b in pairs],
                              rng.uniform(1e5, 5e6, len(pairs)))
        env.run()
        return net, seen

    lazy, _ = run(False)
    eager, seen = run(True)
    assert len(seen) > 256 and np.all(np.diff(np.array(seen), axis=0) >= 0)
    np.testing.assert_array_equal(lazy.bytes_on_link, eager.bytes_on_link)
    expected = np.zeros(len(lazy.paths.links))
    for record in lazy.records():
        expected[list(record.links)] += record.bytes
    np.testing.assert_allclose(lazy.bytes_on_link, expected, rtol=1e-12)


# ------------------------------------------------------------------ the fast model


def test_fast_model_solves_less_conserves_bytes_and_is_never_faster_than_exact():
    """Fast keeps rates after completions until 1/32 of the flows are done: feasible rates, so the
    bytes all arrive, the all-to-all does not end before its exact end, and fewer solves."""
    exact = random_all_to_all(FlowNetwork, 3)
    fast = random_all_to_all(FlowNetwork, 3, model="fast")
    assert fast.solves < exact.solves / 1.5
    assert fast.bytes_delivered == pytest.approx(exact.bytes_delivered, rel=1e-12)
    end_exact, end_fast = exact.flow_table()["end_s"], fast.flow_table()["end_s"]
    assert end_fast.max() >= end_exact.max() * (1 - 1e-12)
    assert end_fast.max() == pytest.approx(end_exact.max(), rel=0.02)
    assert end_fast.mean() == pytest.approx(end_exact.mean(), rel=0.02)
    with pytest.raises(ValueError, match="network model"):
        random_all_to_all(FlowNetwork, 3, model="approximate")


def test_fast_model_is_exact_for_a_single_flow_and_equal_flows():
    for model in ("exact", "fast"):
        env, net = network(star(4, 100.0), alpha_s=1e-3, model=model)
        net.transfer_many(["gpu0", "gpu1", "gpu2"], ["gpu3"] * 3, 300.0)
        env.run()
        assert net.flow_table()["end_s"].tolist() == pytest.approx([1e-3 + 9.0] * 3, rel=1e-12)

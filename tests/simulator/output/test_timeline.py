"""timeline.json against the trace-event format and against summary.json (built from the same records)."""

import json
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.engine.network import FlowRecord
from simulator.output.timeline import chrome_trace as results_chrome_trace
from simulator.scenario.run import simulate
from simulator.scenario.schema import validate_scenario
from simulator.output.timeline import copy_lanes, link_utilization_series, read_timeline, run_timeline

# tiny Mixtral-shaped model (conftest's TINY_MODEL); oracle balancing at high skew makes replica
# copies, several at once from one GPU, so the copy lanes are exercised
MODEL = {"base": "mixtral-8x7b", "name": "tiny-moe", "layers": 2, "hidden": 512, "ffn": 1024,
         "experts": 8, "top_k": 2, "heads": 8, "kv_heads": 8, "head_dim": 64, "vocab": 1000}


@pytest.fixture(scope="module")
def run():
    scenario = validate_scenario({
        "name": "timeline-test", "model": MODEL,
        "topology": {"builder": "nvlink_mesh", "gpus": 4, "device": "a100-sxm4-80gb"},
        "workload": {"batch": 1, "seq_len": 256, "iterations": 3,
                     "trace": {"synthetic": {"skewness": 3.5}}},
        "predictor": {"kind": "oracle.token"}, "balancer": {"kind": "oracle", "objective": "tokens"},
    })
    result = simulate(scenario)
    trace = json.loads(json.dumps(run_timeline(result)))  # as written
    return result, trace


def slices_by_track(trace):
    tracks = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] == "X":
            tracks[e["pid"], e["tid"]].append(e)
    return tracks


def process_ids(trace):
    return {e["args"]["name"]: e["pid"] for e in trace["traceEvents"]
            if e["ph"] == "M" and e["name"] == "process_name"}


def test_every_event_has_the_fields_its_type_requires(run):
    _, trace = run
    assert isinstance(trace["traceEvents"], list) and trace["displayTimeUnit"] in ("ms", "ns")
    kinds = set()
    for e in trace["traceEvents"]:
        kinds.add(e["ph"])
        assert e["ph"] in ("X", "C", "M")
        for key in ("ph", "ts", "pid", "tid", "name"):
            assert key in e, (key, e)
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int) and isinstance(e["ts"], float | int)
        if e["ph"] == "X":
            assert isinstance(e["dur"], float | int) and e["dur"] >= 0
        if e["ph"] in ("C", "M"):
            assert isinstance(e["args"], dict) and e["args"]
        if e["ph"] == "C":
            assert all(isinstance(v, float | int) for v in e["args"].values())
        if e["ph"] == "M":
            assert e["name"] in ("process_name", "thread_name", "process_sort_index", "thread_sort_index")
    assert kinds == {"X", "C", "M"}


def test_slices_are_the_spans_in_microseconds_with_iteration_and_layer(run):
    result, trace = run
    gpu_slices = sorted(((e["pid"], e["ts"], e["dur"], e["name"], e["args"]["iteration"], e["args"]["layer"])
                         for e in trace["traceEvents"] if e["ph"] == "X" and e["pid"] < result.system.gpus))
    spans = sorted((s.gpu, s.start_s * 1e6, (s.end_s - s.start_s) * 1e6, s.name, s.iteration, s.layer)
                   for s in result.spans)
    assert gpu_slices == spans  # ts == start_s * 1e6 exactly, after the JSON round trip


def test_no_two_slices_overlap_on_one_track(run):
    _, trace = run
    tracks = slices_by_track(trace)
    for events in tracks.values():
        events.sort(key=lambda e: e["ts"])
        for a, b in zip(events, events[1:]):
            assert b["ts"] >= a["ts"] + a["dur"] - 1e-9 * (a["ts"] + a["dur"])
    copy_tracks = [tid for (pid, tid), ev in tracks.items()
                   if ev and ev[0]["args"].get("stream") == "copy" and tid > 2]
    assert copy_tracks, "expected concurrent copies on some GPU (a second copy lane)"


def test_compute_track_sums_to_the_busy_time_in_summary(run):
    result, trace = run
    summary = result.summary
    tracks = slices_by_track(trace)
    for rank in range(result.system.gpus):
        # a wait for replica weights is shown on the compute track but is not busy time
        busy_s = sum(e["dur"] for e in tracks[rank, 0] if e["args"]["phase"] != "replication") * 1e-6
        expected = summary["gpu_utilization"][f"gpu{rank}"] * summary["latency_s"]["total"]
        assert busy_s == pytest.approx(expected, rel=1e-9)


def test_iteration_slices_tile_the_run_and_last_as_long_as_the_latency(run):
    result, trace = run
    pid = process_ids(trace)["run"]
    iterations = sorted(slices_by_track(trace)[pid, 0], key=lambda e: e["ts"])
    layers = sorted(slices_by_track(trace)[pid, 1], key=lambda e: e["ts"])
    durations = np.array([e["dur"] for e in iterations]) * 1e-6
    assert len(iterations) == result.summary["iterations"]
    assert durations.mean() == pytest.approx(result.summary["latency_s"]["mean"], rel=1e-9)
    assert durations.sum() == pytest.approx(result.summary["latency_s"]["total"], rel=1e-9)
    assert iterations[0]["ts"] == 0.0
    for a, b in zip(iterations, iterations[1:]):
        assert b["ts"] == pytest.approx(a["ts"] + a["dur"], rel=1e-12)
    assert len(layers) == len(iterations) * MODEL["layers"]
    for it in iterations:
        inside = [e["dur"] for e in layers if e["args"]["iteration"] == it["args"]["iteration"]]
        assert sum(inside) == pytest.approx(it["dur"], rel=1e-9)


def test_link_counter_averages_to_summary_link_utilization(run):
    """Uniform-rate flows keep every byte: the counter's time-average is the run's utilisation
    (exact for a kind whose links share one capacity, as the mesh's nvlink3)."""
    result, trace = run
    pid = process_ids(trace)["network"]
    by_kind = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] == "C" and e["pid"] == pid:
            by_kind[e["name"]].append((e["ts"] * 1e-6, e["args"]["utilization"]))
    assert set(by_kind) == set(result.summary["link_utilization"])
    total_s = result.summary["latency_s"]["total"]
    for kind, points in by_kind.items():
        t, u = np.array(points).T
        assert u[-1] == 0.0 and t[-1] <= total_s * (1 + 1e-12)
        integral = float(np.sum(np.diff(t) * u[:-1]))
        assert integral / total_s == pytest.approx(result.summary["link_utilization"][kind], rel=1e-9)


def test_link_counter_of_known_flows_is_their_rate_over_the_kind_capacity():
    # links 0, 1: kind "a", 10 B/s each (20 in all); link 2: kind "b", 5 B/s
    flows = [FlowRecord("f", "x", "y", 10.0, 0.5, 1.0, 2.0, (0, 2)),  # 10 B/s on links 0 and 2
             FlowRecord("g", "x", "y", 4.0, 1.5, 1.5, 3.5, (0, 1)),   # 2 B/s on links 0 and 1
             FlowRecord("h", "x", "x", 8.0, 0.0, 0.0, 0.0, ())]       # local copy: no link
    series = link_utilization_series(flows, ["a", "a", "b"], np.array([10.0, 10.0, 5.0]))
    t, u = series["a"]
    assert t.tolist() == [0.0, 1.0, 1.5, 2.0, 3.5]
    assert u == pytest.approx([0.0, 10 / 20, (10 + 2 * 2) / 20, 4 / 20, 0.0], rel=1e-12)
    t, u = series["b"]
    assert t.tolist() == [0.0, 1.0, 2.0] and u == pytest.approx([0.0, 2.0, 0.0])


def test_expert_load_counters_are_the_routed_pairs_per_gpu(run):
    result, trace = run
    after = defaultdict(float)
    before = defaultdict(float)
    for e in trace["traceEvents"]:
        if e["ph"] == "C" and e["name"] == "expert load":
            after[e["pid"]] += e["args"]["after"]
            before[e["pid"]] += e["args"]["before"]
    pairs = result.system.plan.expert_pairs.sum(axis=(0, 1, 3))
    assert [after[r] for r in range(result.system.gpus)] == pairs.tolist()
    assert sum(before.values()) == sum(after.values())


def test_results_chrome_trace_builds_from_spans_alone(run):
    result, _ = run
    trace = results_chrome_trace(result.spans, result.system.gpus)
    names = set(process_ids(trace))
    assert "run" in names and "network" not in names
    assert sum(e["ph"] == "X" and e["pid"] < result.system.gpus for e in trace["traceEvents"]) == \
        len(result.spans)


def test_read_timeline_recovers_slices_tracks_and_counters(run, tmp_path):
    result, trace = run
    path = tmp_path / "timeline.json"
    path.write_text(json.dumps(trace))
    timeline = read_timeline(path)
    assert timeline.gpus == result.system.gpus
    assert len(timeline.slices["gpu"]) == len(result.spans)
    assert set(timeline.slices["stream"]) == {"compute", "comm", "copy"}
    assert timeline.iterations.shape == (3, 2)
    assert set(timeline.links) == set(result.summary["link_utilization"])
    assert set(timeline.expert_load) == set(range(result.system.gpus))


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 6)), min_size=1, max_size=30))
def test_copy_lanes_never_overlap_and_use_the_peak_overlap(items):
    start = np.array([s for s, _ in items], dtype=float)
    end = start + np.array([d for _, d in items], dtype=float)
    lanes = copy_lanes(start, end)
    for lane in set(lanes.tolist()):
        order = sorted(zip(start[lanes == lane], end[lanes == lane]))
        assert all(b[0] >= a[1] for a, b in zip(order, order[1:]))
    peak = max(int(np.sum((start <= t) & (end > t))) for t in start)  # touching is not overlap
    assert lanes.max() + 1 == peak


def test_training_stages_are_labelled_and_timed_as_iterations_csv():
    """With the pipeline's stages and marks, each stage slice lasts as long as its row of
    iterations.csv (a backward stage's gradient all-reduce runs on past its mark)."""
    scenario = validate_scenario({
        "name": "training-timeline", "model": MODEL,
        "topology": {"builder": "nvlink_mesh", "gpus": 4, "device": "a100-sxm4-80gb"},
        "parallelism": {"ep": 4, "attention": "dp"},
        "workload": {"mode": "training", "batch": 4, "seq_len": 128, "iterations": 2,
                     "trace": {"synthetic": {"skewness": 1.4}}},
    })
    records = simulate(scenario)
    system, rows = records.system, records.rows
    trace = json.loads(json.dumps(run_timeline(records)))
    pid = process_ids(trace)["run"]
    stages = sorted(slices_by_track(trace)[pid, 1], key=lambda e: e["ts"])
    stage_rows = [r for r in rows if r["layer"] != "all"]
    assert [e["args"]["stage"] for e in stages] == [r["layer"] for r in stage_rows]
    assert [e["name"] for e in stages[:5]] == ["layer 0", "layer 1", "bwd1", "bwd0", "optimizer"]
    for event, row in zip(stages, stage_rows):
        assert event["dur"] * 1e-6 == pytest.approx(row["latency_s"], rel=1e-9, abs=1e-15)
    for events in slices_by_track(trace).values():  # still no overlap, gradient syncs included
        events.sort(key=lambda e: e["ts"])
        assert all(b["ts"] >= a["ts"] + a["dur"] - 1e-6 for a, b in zip(events, events[1:]))
    after = sum(e["args"]["after"] for e in trace["traceEvents"] if e["name"] == "expert load")
    assert after == 2 * system.plan.expert_pairs.sum()  # forward and backward compute the pairs

"""RoutingTrace: npz round trip, one-line load errors, model checks, vectorised load counts."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workloads.errors import WorkloadError
from workloads.models import model_spec
from workloads.trace import RoutingTrace


def random_trace(iterations=3, layers=4, tokens=10, top_k=2, experts=8, seed=0, **extra):
    rng = np.random.default_rng(seed)
    every_expert = np.broadcast_to(np.arange(experts), (iterations, layers, tokens, experts))
    experts_array = rng.permuted(every_expert, axis=-1)[..., :top_k]  # distinct per token
    return RoutingTrace(experts=experts_array, meta={"num_experts": experts, "model": "m"}, **extra)


def test_round_trip_keeps_every_array_and_meta(tmp_path):
    rng = np.random.default_rng(1)
    trace = random_trace(
        token_ids=rng.integers(0, 100, (3, 10)).astype(np.int32),
        features=rng.standard_normal((3, 10, 4)).astype(np.float32),
        weights=rng.random((3, 4, 10, 2)).astype(np.float32),
    )
    trace.meta.update(dataset="unit", source="test", generator={"seed": 3})
    path = trace.save(tmp_path / "sub" / "t.npz")
    loaded = RoutingTrace.load(path)
    for name in ("experts", "token_ids", "features", "weights"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(trace, name))
    assert loaded.meta["generator"] == {"seed": 3} and loaded.meta["dataset"] == "unit"
    assert loaded.meta["path"] == str(path)
    assert (loaded.iterations, loaded.layers, loaded.tokens, loaded.top_k) == (3, 4, 10, 2)
    assert loaded.num_experts == 8
    assert [p.name for p in path.parent.iterdir()] == ["t.npz"]  # no temp file left behind


def test_npz_layout_follows_the_contract(tmp_path):
    path = random_trace().save(tmp_path / "t.npz")
    with np.load(path) as data:
        assert set(data.files) == {"experts", "meta"}
        assert data["experts"].ndim == 4 and np.issubdtype(data["experts"].dtype, np.integer)
        meta = json.loads(str(data["meta"][0]))
    assert meta == {"model": "m", "num_experts": 8}


def test_optional_arrays_stay_absent(tmp_path):
    loaded = RoutingTrace.load(random_trace().save(tmp_path / "t.npz"))
    assert loaded.token_ids is None and loaded.features is None and loaded.weights is None


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("arrays, message", [
    ({"token_ids": np.zeros((1, 2), np.int32)}, r"missing array 'experts' \(found: token_ids\)"),
    ({"experts": np.zeros((2, 3, 4), np.int16)}, r"\[experts\]: must be 4-D"),
    ({"experts": -np.ones((1, 1, 2, 1), np.int16)},
     r"\[experts\]: expert ids must be >= 0, found -1"),
    ({"experts": np.full((1, 1, 2, 1), 8, np.int16), "meta": np.array(['{"num_experts": 8}'])},
     r"\[experts\]: expert ids must be < num_experts \(8\), found 8"),
    ({"experts": np.zeros((1, 1, 2, 2), np.int16)}, r"same expert twice"),
    ({"experts": np.zeros((1, 1, 2, 1), np.float32)}, r"must be integers"),
    ({"experts": np.zeros((1, 1, 2, 1), np.int16), "meta": np.array(["{not json"])},
     r"\[meta\]: not a JSON string"),
    ({"experts": np.zeros((1, 1, 2, 1), np.int16), "token_ids": np.zeros((1, 3), np.int32)},
     r"\[token_ids\]: must be integers of shape \(1, 2\)"),
])
def test_load_errors_name_the_file_and_the_array(tmp_path, arrays, message):
    path = _write(tmp_path / "bad.npz", **arrays)
    with pytest.raises(WorkloadError, match=message) as error:
        RoutingTrace.load(path, field="workload.trace.file")
    text = str(error.value)
    assert "bad.npz" in text and "\n" not in text
    assert error.value.field == "workload.trace.file"


def test_load_rejects_a_file_that_is_not_an_npz(tmp_path):
    path = tmp_path / "trace.npz"
    path.write_text("experts,1,2\n")
    with pytest.raises(WorkloadError, match=r"trace\.npz: not a \.npz trace"):
        RoutingTrace.load(path)


def test_load_of_missing_file_is_a_workload_error(tmp_path):
    with pytest.raises(WorkloadError, match="no such file"):
        RoutingTrace.load(tmp_path / "absent.npz")


def test_constructor_validates_too():
    with pytest.raises(WorkloadError, match=r"trace\[experts\]: must be 4-D"):
        RoutingTrace(experts=np.zeros((2, 2), np.int16))


def test_check_against_accepts_matching_model():
    model = model_spec({"layers": 4, "hidden": 64, "ffn": 64, "experts": 8, "top_k": 2, "heads": 2})
    random_trace().check_against(model)


@pytest.mark.parametrize("override, what", [
    ({"layers": 5}, "MoE layers = 4 but model custom has 5"),
    ({"experts": 16}, "experts = 8 but model custom has 16"),
    ({"top_k": 1}, "top_k = 2 but model custom has 1"),
])
def test_check_against_names_the_mismatch(override, what):
    values = {"layers": 4, "hidden": 64, "ffn": 64, "experts": 8, "top_k": 2, "heads": 2}
    model = model_spec({**values, **override})
    with pytest.raises(WorkloadError, match=what) as error:
        random_trace().check_against(model)
    assert error.value.field == "workload.trace"


def test_counts_and_load_counts_agree_with_a_loop():
    trace = random_trace(iterations=4, layers=3, tokens=50, top_k=2, experts=8, seed=3)
    loads = trace.load_counts()
    assert loads.shape == (4, 3, 8)
    for i in range(4):
        for layer in range(3):
            expected = np.zeros(8, int)
            for token in range(50):
                for e in trace.experts[i, layer, token]:
                    expected[e] += 1
            np.testing.assert_array_equal(loads[i, layer], expected)
            np.testing.assert_array_equal(trace.counts(i, layer), expected)


@settings(max_examples=30, deadline=None)
@given(iterations=st.integers(1, 3), layers=st.integers(1, 3), tokens=st.integers(1, 20),
       experts=st.integers(1, 12), data=st.data())
def test_load_counts_conserve_tokens(iterations, layers, tokens, experts, data):
    top_k = data.draw(st.integers(1, experts))
    seed = data.draw(st.integers(0, 2**16))
    trace = random_trace(iterations, layers, tokens, top_k, experts, seed)
    loads = trace.load_counts()
    assert (loads.sum(axis=-1) == tokens * top_k).all()
    assert (loads <= tokens).all()  # a token picks an expert at most once


def test_slice_tokens_takes_the_first_tokens():
    rng = np.random.default_rng(0)
    trace = random_trace(token_ids=rng.integers(0, 9, (3, 10)).astype(np.int32))
    head = trace.slice_tokens(4)
    assert head.tokens == 4
    np.testing.assert_array_equal(head.experts, trace.experts[:, :, :4])
    np.testing.assert_array_equal(head.token_ids, trace.token_ids[:, :4])
    with pytest.raises(WorkloadError, match="needs 11 tokens per iteration but the trace has 10"):
        trace.slice_tokens(11)


def test_take_iterations_and_wrap():
    trace = random_trace(iterations=3)
    assert trace.take(2).iterations == 2
    wrapped = trace.take(5, wrap=True)
    np.testing.assert_array_equal(wrapped.experts[3], trace.experts[0])
    with pytest.raises(WorkloadError, match="needs 5 iterations but the trace has 3"):
        trace.take(5)


def test_a_trace_is_its_own_source():
    experts = np.arange(2 * 3 * 4 * 1).reshape(2, 3, 4, 1) % 5
    trace = RoutingTrace(experts, meta={"num_experts": 5})
    assert trace.materialise() is trace
    np.testing.assert_array_equal(np.stack(list(trace.layer_choices(1))), trace.experts[1])

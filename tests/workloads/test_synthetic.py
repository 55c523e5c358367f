"""Synthetic traces behave like a router: calibrated skewness, layer and token structure, drift."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workloads import synthetic
from workloads.errors import WorkloadError
from workloads.models import model_spec
from workloads.stats import drift, layer_dependency, skewness, token_consistency
from workloads.synthetic import generate_trace
from workloads.trace import RoutingTrace

MIXTRAL = model_spec("mixtral-8x7b")
OLMOE = model_spec("olmoe-1b-7b")


def shuffled_within_layers(trace: RoutingTrace, seed: int = 0) -> RoutingTrace:
    """Independent-dice baseline with the same loads: each layer's choices permuted over tokens."""
    rng = np.random.default_rng(seed)
    experts = trace.experts.copy()
    for i in range(trace.iterations):
        for layer in range(trace.layers):
            experts[i, layer] = experts[i, layer][rng.permutation(trace.tokens)]
    return RoutingTrace(experts, trace.token_ids, None, None, dict(trace.meta))


@pytest.fixture(scope="module")
def mixtral_trace():
    return generate_trace(MIXTRAL, iterations=8, tokens=2048, skewness=1.4, seed=0)


@pytest.mark.parametrize("model, target", [
    (MIXTRAL, 1.5), (MIXTRAL, 2.5), (OLMOE, 1.5), (OLMOE, 2.5), (OLMOE, 4.0),
])
def test_mean_skewness_hits_the_target_within_5_percent(model, target):
    trace = generate_trace(model, iterations=4, tokens=1024, skewness=target, seed=1)
    achieved = skewness(trace).mean()
    assert achieved == pytest.approx(target, rel=0.05)
    assert trace.meta["skewness_achieved"] == pytest.approx(achieved, rel=1e-9)


def test_calibration_on_a_sample_of_layers_holds_for_the_whole_trace(monkeypatch):
    # A budget of 6 (iteration, layer) pairs: calibrate on 6 of 16 layers of one iteration.
    monkeypatch.setattr(synthetic, "_CALIBRATION_BUDGET", 6 * 1024 * OLMOE.experts)
    trace = generate_trace(OLMOE, iterations=8, tokens=1024, skewness=3.0, seed=4)
    assert skewness(trace).mean() == pytest.approx(3.0, rel=0.05)


def test_skewness_near_one_gives_the_sampling_floor():
    trace = generate_trace(MIXTRAL, iterations=6, tokens=4096, skewness=1.0, seed=2)
    assert skewness(trace).mean() < 1.12  # 8 experts, 8192 choices: only sampling noise
    assert trace.meta["bias_scale"] == 0.0
    assert trace.meta["skewness_floor"] < 1.12


def test_consecutive_layers_are_dependent_unlike_independent_dice(mixtral_trace):
    real = layer_dependency(mixtral_trace, distance=1)
    dice = layer_dependency(shuffled_within_layers(mixtral_trace), distance=1)
    assert real["cramers_v"] > 0.15 > 3 * dice["cramers_v"]
    assert real["nmi"] > 10 * dice["nmi"]


def test_dependency_decays_with_layer_distance(mixtral_trace):
    near = layer_dependency(mixtral_trace, distance=1)["cramers_v"]
    far = layer_dependency(mixtral_trace, distance=16)["cramers_v"]
    assert near > far


def test_repeated_token_ids_pick_the_same_expert_more_than_dice(mixtral_trace):
    real = token_consistency(mixtral_trace)
    dice = token_consistency(shuffled_within_layers(mixtral_trace))
    assert real > dice + 0.1


def test_expert_popularity_drifts_slowly():
    still = generate_trace(MIXTRAL, iterations=12, tokens=1024, skewness=2.0, drift=0.0, seed=3)
    moving = generate_trace(MIXTRAL, iterations=12, tokens=1024, skewness=2.0, drift=0.2, seed=3)
    assert drift(moving) > drift(still) > 0
    assert drift(moving) < 0.5  # L1 between consecutive iterations: small, not a reshuffle
    share = moving.load_counts() / (moving.tokens * moving.top_k)
    far_apart = np.abs(share[-1] - share[0]).sum(axis=-1).mean()
    assert far_apart > drift(moving)  # it wanders, not just noise around a fixed point


def test_same_seed_same_trace_other_seed_other_trace():
    first = generate_trace(OLMOE, iterations=2, tokens=256, skewness=2.0, seed=7, weights=True)
    again = generate_trace(OLMOE, iterations=2, tokens=256, skewness=2.0, seed=7, weights=True)
    other = generate_trace(OLMOE, iterations=2, tokens=256, skewness=2.0, seed=8)
    for name in ("experts", "token_ids", "features", "weights"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert first.meta == again.meta
    assert not np.array_equal(first.experts, other.experts)


def test_trace_fits_its_model_and_carries_features(mixtral_trace):
    mixtral_trace.check_against(MIXTRAL)
    assert mixtral_trace.features.shape == (8, 2048, 16)
    assert mixtral_trace.features.dtype == np.float32
    assert mixtral_trace.token_ids.shape == (8, 2048)
    assert mixtral_trace.meta["model"] == "mixtral-8x7b"
    assert mixtral_trace.meta["num_experts"] == 8


def test_gate_weights_are_probabilities():
    trace = generate_trace(MIXTRAL, iterations=2, tokens=256, weights=True, features=False)
    assert trace.features is None
    assert (trace.weights > 0).all() and (trace.weights.sum(axis=-1) <= 1 + 1e-6).all()


def test_dense_layers_are_not_in_the_trace():
    model = model_spec("deepseek-v2-lite")
    trace = generate_trace(model, iterations=1, tokens=256, skewness=1.5)
    assert trace.layers == 26 and trace.meta["moe_layer_indices"][0] == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"skewness": 4.5}, "workload.trace.synthetic.skewness: must be between 1 and experts/top_k"),
    ({"skewness": 0.5}, "skewness: must be between 1"),
    ({"iterations": 0}, "workload.trace.synthetic.iterations: must be >= 1, got 0"),
    ({"tokens": 2.5}, "tokens: must be an integer"),
    ({"token_affinity": 1.5}, "token_affinity: must be >= 0 and <= 1, got 1.5"),
    ({"temperature": 0.0}, "temperature: must be > 0"),
    ({"drift": 1.0}, "drift: must be >= 0 and < 1"),
    ({"feature_dim": 65}, "feature_dim: must be >= 1 and <= 64"),
])
def test_bad_generator_arguments_name_the_field(kwargs, message):
    arguments = {"iterations": 2, "tokens": 64, **kwargs}
    with pytest.raises(WorkloadError, match=message.replace(".", r"\.")):
        generate_trace(MIXTRAL, **arguments)


@settings(max_examples=25, deadline=None)
@given(experts=st.integers(2, 24), layers=st.integers(1, 4), tokens=st.integers(1, 96),
       seed=st.integers(0, 1000), data=st.data())
def test_choices_are_valid_expert_ids_and_distinct_per_token(experts, layers, tokens, seed, data):
    top_k = data.draw(st.integers(1, min(experts, 6)))
    target = data.draw(st.floats(1.0, experts / top_k))
    model = model_spec({"layers": layers, "hidden": 64, "ffn": 64, "experts": experts,
                        "top_k": top_k, "heads": 2, "vocab": 500})
    trace = generate_trace(model, iterations=2, tokens=tokens, skewness=target, seed=seed)
    chosen = trace.experts
    assert chosen.shape == (2, layers, tokens, top_k)
    assert chosen.min() >= 0 and chosen.max() < experts
    ordered = np.sort(chosen, axis=-1)
    assert (ordered[..., 1:] != ordered[..., :-1]).all()


def test_streamed_iterations_equal_the_materialised_trace_in_any_order():
    stream = synthetic.synthetic_trace(OLMOE, iterations=3, tokens=300, skewness=2.0, seed=5)
    whole = stream.materialise()
    for i in (2, 0, 1):
        layers = list(stream.layer_choices(i))
        assert len(layers) == stream.layers == whole.layers
        np.testing.assert_array_equal(np.stack(layers), whole.experts[i])
    assert whole.meta["skewness_achieved"] == pytest.approx(skewness(whole).mean(), rel=1e-9)
    assert "skewness_achieved" not in stream.meta  # known only once every iteration was made


@pytest.mark.parametrize("model, weights", [(OLMOE, True), (MIXTRAL, False)])
def test_scores_made_in_row_chunks_give_the_same_trace(monkeypatch, model, weights):
    # Above _STREAM_ELEMENTS an (iteration, layer)'s scores are made in chunks of _GEMM_ELEMENTS
    # (calibration too): the numbers must not change, only the memory they need.
    whole = generate_trace(model, iterations=2, tokens=1000, skewness=1.8, seed=3, weights=weights)
    monkeypatch.setattr(synthetic, "_STREAM_ELEMENTS", 1000)
    monkeypatch.setattr(synthetic, "_GEMM_ELEMENTS", 130 * model.experts)  # 130-row chunks
    chunked = generate_trace(model, iterations=2, tokens=1000, skewness=1.8, seed=3, weights=weights)
    for name in ("experts", "token_ids", "features", "weights"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))
    assert chunked.meta == whole.meta


def test_checking_arguments_builds_nothing(monkeypatch):
    monkeypatch.setattr(synthetic, "_build_router", None)  # would fail if called
    assert synthetic.check_synthetic(MIXTRAL, 10, 524_288)["temperature"] > 0
    with pytest.raises(WorkloadError, match="skewness"):
        synthetic.check_synthetic(MIXTRAL, 10, 64, skewness=9.0)
    with pytest.raises(TypeError):
        synthetic.check_synthetic(MIXTRAL, 10, 64, skewnes=1.2)

"""Token-level routing recorded from the small MoE LM: what the recorder keeps, and the bundled trace."""

import hashlib
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml

from workloads.errors import WorkloadError
from workloads.models import model_spec
from workloads.token_trace import (TokenTrace, build_parser, layer_transitions, load_router_inputs,
                                   main, model_mapping, record_token_trace)
from workloads.trace import RoutingTrace

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "workloads" / "data" / "moe-lm-wikipedia.npz"
NOTICE = ROOT / "workloads" / "data" / "moe-lm-wikipedia.NOTICE.md"
SCENARIO = ROOT / "scenarios" / "real-token-trace.yaml"
CORPUS = ROOT.parent / "shared" / "data" / "text" / "wikipedia_texts.txt"

MICRO = {"layers": 3, "experts": 4, "top_k": 2, "d_model": 16, "d_ffn": 16, "heads": 2,
         "seq_len": 16, "batch": 4, "warmup": 5}


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "tiny_texts.txt"
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "while",
             "experts", "route", "tokens"]
    path.write_text(" ".join(np.random.default_rng(0).choice(words, 1500)))
    return path


def micro(text, **overrides):
    settings = {"iterations": 4, "tokens_per_iteration": 64, "holdout": 0.2,
                **MICRO, **overrides}
    return record_token_trace(text, 30, **settings)


@pytest.fixture(scope="module")
def recorded(text):
    pytest.importorskip("torch")
    return micro(text)


def test_micro_recording_keeps_routing_ids_and_router_inputs_of_the_held_out_text(recorded, text):
    trace = recorded.trace
    assert trace.experts.shape == (4, 3, 64, 2) and trace.num_experts == 4
    assert np.all(trace.experts[..., 0] != trace.experts[..., 1])
    data = np.frombuffer(text.read_bytes(), dtype=np.uint8)
    split = int(round(data.size * 0.8))
    # token ids are the held-out bytes, in order: sequence-major, 4 sequences of 16 per iteration
    np.testing.assert_array_equal(trace.token_ids.ravel(), data[split:split + 256])
    assert trace.features.shape == (4, 64, 16) and trace.features.dtype == np.float16
    assert recorded.router_inputs.shape == (4, 3, 64, 8)
    meta = trace.meta
    assert meta["source"] == "recorded" and meta["dataset"] == "tiny"
    assert meta["training"]["steps"] == 30 and meta["training"]["train_bytes"] == split
    assert meta["heldout"]["first_byte"] == split and meta["seed"] == 0
    assert meta["corpus"]["sha256"] == hashlib.sha256(text.read_bytes()).hexdigest()
    assert meta["model_config"]["top_k"] == 2 and meta["tokens_per_iteration"] == 64
    assert meta["dependency"] == layer_transitions(trace)
    assert len(meta["dependency"]) == 2


def test_router_space_projection_reproduces_the_routing_and_the_next_routers_view(recorded):
    """The stored coordinates keep exactly what layer l's and l+1's routers read: re-routing the
    projection gives the recorded top-k (float16 storage may flip a near tie, nothing more)."""
    meta = recorded.trace.meta["router_inputs"]
    assert min(meta["same_top_k_when_reconstructed"]) >= 0.98
    assert all(0.0 < share < 1.0 for share in meta["variance_kept"])
    basis = recorded.router_basis
    for layer in range(3):
        used = basis[layer][:, np.abs(basis[layer]).sum(axis=0) > 0]
        np.testing.assert_allclose(used.T @ used, np.eye(used.shape[1]), atol=1e-5)
    # the last layer has no next router: its second half of the basis is zeros
    assert np.all(basis[2][:, 4:] == 0) and np.all(recorded.router_inputs[:, 2, :, 4:] == 0)


def test_features_are_layer_0_gate_input_whose_projection_is_stored(recorded):
    features = recorded.trace.features.astype(np.float32)
    z = (features - recorded.router_mean[0]) @ recorded.router_basis[0]
    np.testing.assert_allclose(z, recorded.router_inputs[:, 0].astype(np.float32), atol=0.02)


def test_recording_is_deterministic_and_seeded(recorded, text):
    again, other = micro(text), micro(text, seed=1)
    np.testing.assert_array_equal(recorded.trace.experts, again.trace.experts)
    np.testing.assert_array_equal(recorded.trace.features, again.trace.features)
    np.testing.assert_array_equal(recorded.router_inputs, again.router_inputs)
    assert not np.array_equal(recorded.trace.experts, other.trace.experts)


def test_saved_file_is_a_routing_trace_plus_router_inputs(recorded, tmp_path):
    path = recorded.save(tmp_path / "t.npz")
    trace = RoutingTrace.load(path)
    np.testing.assert_array_equal(trace.experts, recorded.trace.experts)
    loaded = TokenTrace.load(path)
    np.testing.assert_array_equal(loaded.router_inputs, recorded.router_inputs)
    np.testing.assert_array_equal(loaded.router_basis, recorded.router_basis)
    plain = tmp_path / "plain.npz"
    trace.save(plain)
    with pytest.raises(WorkloadError, match="missing array 'router_inputs'"):
        load_router_inputs(plain)


def test_layer_transitions_of_perfect_and_independent_dependency():
    rng = np.random.default_rng(0)
    first = rng.integers(0, 8, size=(2, 4000))
    permuted = np.array([3, 5, 0, 7, 1, 2, 6, 4])[first]
    independent = rng.integers(0, 8, size=(2, 4000))
    experts = np.stack([first, permuted, independent], axis=1)[..., None]   # top-1
    rows = layer_transitions(RoutingTrace(experts, meta={"num_experts": 8}))
    perfect, none = rows
    assert perfect["conditional_entropy_bits"] == pytest.approx(0.0, abs=1e-9)
    assert perfect["top1_concentration"] == 1.0 and perfect["nmi"] == pytest.approx(1.0)
    assert perfect["mutual_information_bits"] == pytest.approx(perfect["entropy_bits"])
    assert none["mutual_information_bits"] < 0.02
    assert none["top1_concentration"] < none["independent_concentration"] + 0.03


@pytest.mark.parametrize("overrides, field", [
    ({"iterations": 500}, "held-out part has"),
    ({"tokens_per_iteration": 60}, "multiple of seq_len"),
    ({"features_layer": 3}, "must be < layers"),
    ({"lookahead": 4}, "must be <= d_model"),
    ({"holdout": 1.0}, "must be > 0 and < 1"),
    ({"top_k": 5}, "must be <= experts"),
])
def test_bad_arguments_are_one_workload_error(text, overrides, field):
    with pytest.raises(WorkloadError, match=field):
        micro(text, **overrides)


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["--text", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file" in err[0]


# --- the bundled trace --------------------------------------------------------------------------

def test_bundled_trace_is_small_real_and_carries_its_provenance():
    assert BUNDLED.stat().st_size < 4_000_000
    recorded = TokenTrace.load(BUNDLED)
    trace, meta = recorded.trace, recorded.trace.meta
    assert (trace.iterations, trace.layers, trace.tokens, trace.top_k) == (32, 4, 512, 2)
    assert trace.features.shape == (32, 512, 64)
    assert meta["source"] == "recorded" and meta["dataset"] == "wikipedia"
    assert "Apache" in meta["corpus"]["notice"] and "allenai/OLMoE" in meta["corpus"]["notice"]
    assert meta["training"]["loss_last_100"] < meta["training"]["loss_first_100"] - 1.0
    assert meta["dependency"] == layer_transitions(trace)
    if CORPUS.is_file():
        assert meta["corpus"]["sha256"] == hashlib.sha256(CORPUS.read_bytes()).hexdigest()
        data = np.frombuffer(CORPUS.read_bytes(), dtype=np.uint8)
        start = meta["heldout"]["first_byte"]
        np.testing.assert_array_equal(trace.token_ids.ravel(), data[start:start + trace.tokens * trace.iterations])


def test_bundled_trace_regeneration_command_matches_its_meta():
    """The NOTICE's command, parsed, asks for exactly the configuration the meta records."""
    line = next(line.strip() for line in NOTICE.read_text().splitlines()
                if line.strip().startswith("python -m workloads.token_trace"))
    args = build_parser().parse_args(shlex.split(line)[3:])
    meta = RoutingTrace.load(BUNDLED).meta
    config = meta["model_config"]
    for name, value in config.items():
        assert getattr(args, name) == value, name
    assert args.steps == meta["training"]["steps"]
    assert (args.iterations, args.tokens_per_iteration) == (32, meta["tokens_per_iteration"])
    assert args.lookahead == meta["router_inputs"]["lookahead"]
    assert Path(args.out).name == BUNDLED.name and Path(args.text).name == meta["corpus"]["file"]


def test_bundled_scenario_simulates_the_recorded_model_shape():
    scenario = yaml.safe_load(SCENARIO.read_text())
    meta = RoutingTrace.load(BUNDLED).meta
    inline = {k: v for k, v in scenario["model"].items() if k != "source"}
    assert inline == model_mapping(meta)
    model = model_spec(scenario["model"])
    RoutingTrace.load(BUNDLED).check_against(model)
    workload = scenario["workload"]
    assert workload["batch"] * workload["seq_len"] == meta["tokens_per_iteration"]
    assert workload["seq_len"] == meta["seq_len"]


def test_bundled_scenario_runs_on_the_real_trace(tmp_path):
    from simulator import cli

    assert cli.main(["run", str(SCENARIO), "--out", str(tmp_path), "--quiet",
                     "--set", "workload.iterations=2"]) == 0
    import json
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["tokens_per_iteration"] == 512 and summary["latency_s"]["mean"] > 0
    routed = summary["conservation"]
    assert routed["pairs_routed"] == routed["pairs_computed"] == 2 * 4 * 512 * 2


def test_docs_dependency_table_is_the_bundled_traces_meta():
    text = (ROOT / "docs" / "traces.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and " → " in line]
    assert len(rows) == 3
    for line, row in zip(rows, RoutingTrace.load(BUNDLED).meta["dependency"]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == f"{row['layers'][0]} → {row['layers'][1]}"
        keys = ("entropy_bits", "conditional_entropy_bits", "mutual_information_bits",
                "top1_concentration", "top2_concentration", "independent_concentration", "nmi")
        assert [float(c) for c in cells[1:]] == [round(row[k], 3) for k in keys]

"""Training-load traces: a micro MoE LM trained for a few steps, the .npz form, its errors."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from workloads.errors import WorkloadError
from workloads.trace import RoutingTrace
from workloads.moe_lm import TrainingLoadTrace, main, train_load_trace

DATA = Path(__file__).resolve().parents[2] / "workloads" / "data"
COMMITTED = DATA / "train_load_wikipedia.npz"
CORPUS = Path("/work/shared/data/text/wikipedia_texts.txt")

MICRO = {"layers": 2, "experts": 4, "top_k": 2, "d_model": 16, "d_ffn": 16, "heads": 2,
         "seq_len": 16, "batch": 4, "warmup": 5}


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "tiny.txt"
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "while",
             "experts", "route", "tokens"]
    rng = np.random.default_rng(0)
    path.write_text(" ".join(rng.choice(words, 600)))
    return path


def micro(text, seed=0, steps=20, **overrides):
    settings = {**MICRO, **overrides}
    return train_load_trace(text, steps, seed=seed, **settings)


def test_micro_training_records_shares_that_sum_to_one_per_layer_and_step(text):
    pytest.importorskip("torch")
    trace = micro(text)
    assert trace.shares.shape == (20, 2, 4) and trace.loss.shape == (20,)
    np.testing.assert_allclose(trace.shares.sum(axis=-1), 1.0, atol=1e-6)
    # a share is a whole number of the step's token-expert assignments (4 x 16 tokens x top-2)
    assignments = trace.shares * (4 * 16 * 2)
    np.testing.assert_allclose(assignments, np.round(assignments), atol=1e-3)
    assert np.all(np.isfinite(trace.loss)) and trace.loss[-5:].mean() < trace.loss[:5].mean()
    meta = trace.meta
    assert meta["kind"] == "training-load" and meta["steps"] == 20 and meta["seed"] == 0
    assert meta["aux_loss"] == 0.01 and meta["model"]["experts"] == 4
    assert meta["corpus"]["sha256"] == hashlib.sha256(text.read_bytes()).hexdigest()


def test_same_seed_gives_identical_shares_and_another_seed_does_not(text):
    pytest.importorskip("torch")
    first, again, other = micro(text, seed=3), micro(text, seed=3), micro(text, seed=4)
    np.testing.assert_array_equal(first.shares, again.shares)
    np.testing.assert_array_equal(first.loss, again.loss)
    assert not np.array_equal(first.shares, other.shares)


def test_aux_loss_coefficient_enters_training(text):
    pytest.importorskip("torch")
    without, strong = micro(text, aux_loss=0.0), micro(text, aux_loss=1.0)
    assert without.meta["aux_loss"] == 0.0
    assert not np.array_equal(without.shares, strong.shares)


def test_save_and_load_round_trip_leaves_no_temp_files(tmp_path):
    shares = np.full((3, 2, 4), 0.25, dtype=np.float32)
    trace = TrainingLoadTrace(shares, np.arange(3, dtype=np.float32), {"seed": 1})
    path = trace.save(tmp_path / "sub" / "t.npz")
    again = TrainingLoadTrace.load(path)
    np.testing.assert_array_equal(again.shares, shares)
    np.testing.assert_array_equal(again.loss, [0, 1, 2])
    assert again.meta["seed"] == 1 and again.meta["kind"] == "training-load"
    assert again.meta["path"] == str(path)
    assert [p.name for p in path.parent.iterdir()] == ["t.npz"]


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "absent.npz", "absent.npz: no such file"),
    (lambda p: (p / "x.npz").write_bytes(b"not a zip") and p / "x.npz", "not a zip archive"),
    (lambda p: _npz(p / "x.npz", loss=np.zeros(3)), "missing array 'shares' (found: loss)"),
    (lambda p: _npz(p / "x.npz", shares=np.full((3, 4), 0.25)), "must be 3-D [steps, layers"),
    (lambda p: _npz(p / "x.npz", shares=np.full((3, 2, 4), 0.3)), "must sum to 1"),
    (lambda p: _npz(p / "x.npz", shares=np.zeros((0, 2, 4))), "must not be empty"),
    (lambda p: _npz(p / "x.npz", shares=np.full((3, 2, 4), 0.25), loss=np.zeros(2)),
     "[loss]: must be floats of shape (3,)"),
    (lambda p: _npz(p / "x.npz", shares=np.full((3, 2, 4), 0.25),
                    meta=np.array([json.dumps({"kind": "routing"})])), "kind must be"),
])
def test_load_rejects_bad_files_with_one_workload_error(tmp_path, make, message):
    with pytest.raises(WorkloadError) as error:
        TrainingLoadTrace.load(make(tmp_path), field="TRACE")
    assert message in str(error.value) and str(error.value).startswith("TRACE: ")


def test_a_routing_trace_is_named_as_such(tmp_path):
    path = RoutingTrace(np.zeros((2, 1, 4, 1), dtype=np.int16), meta={"num_experts": 2}).save(
        tmp_path / "routing.npz")
    with pytest.raises(WorkloadError, match="this is a routing trace"):
        TrainingLoadTrace.load(path)


@pytest.mark.parametrize("content, kwargs, message", [
    (None, {}, "no such file"),
    (b"", {}, "the text is empty"),
    (b"short", {}, "one sequence needs 17"),
    (b"x" * 100, {"top_k": 5}, "top_k: must be <= experts (4), got 5"),
    (b"x" * 100, {"heads": 3}, "heads: d_model (16) must be a multiple of heads"),
    (b"x" * 100, {"lr": 0.0}, "lr: must be a finite number > 0"),
    (b"x" * 100, {"aux_loss": -1.0}, "aux_loss: must be a finite number >= 0"),
    (b"x" * 100, {"dmodel": 8}, "unknown training parameter 'dmodel'"),
])
def test_bad_training_input_is_a_workload_error(tmp_path, content, kwargs, message):
    path = tmp_path / "t.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WorkloadError) as error:
        micro(path, **kwargs)
    assert message in str(error.value)


def test_bad_steps_is_a_workload_error(text):
    with pytest.raises(WorkloadError, match="steps: must be an integer >= 1, got 0"):
        micro(text, steps=0)


def test_command_line_writes_a_trace_and_reports_bad_input_in_one_line(text, tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "t.npz"
    argv = ["--text", str(text), "--steps", "3", "--out", str(out), "--layers", "1",
            "--experts", "4", "--d-model", "16", "--d-ffn", "8", "--heads", "2", "--seq-len", "8",
            "--batch", "2", "--log-every", "0"]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    assert TrainingLoadTrace.load(out).shares.shape == (3, 1, 4)
    assert main(argv[:-2] + ["--top-k", "9"]) == 2
    err = capsys.readouterr().err
    assert "top_k: must be <= experts (4), got 9" in err and err.count("\n") == 1


def test_committed_trace_is_a_valid_training_load_trace():
    trace = TrainingLoadTrace.load(COMMITTED)
    assert trace.shares.shape == (trace.meta["steps"], trace.meta["model"]["layers"],
                                  trace.meta["model"]["experts"])
    np.testing.assert_allclose(trace.shares.sum(axis=-1), 1.0, atol=1e-5)
    assert trace.meta["corpus"]["file"] == CORPUS.name
    if CORPUS.is_file():
        assert trace.meta["corpus"]["sha256"] == hashlib.sha256(CORPUS.read_bytes()).hexdigest()


def test_documented_command_reproduces_the_start_of_the_committed_trace(tmp_path, capsys):
    """The command in workloads/data/README.md, cut to 20 steps, replays the committed run."""
    pytest.importorskip("torch")
    if not CORPUS.is_file():
        pytest.skip(f"{CORPUS} not available")
    line = next(line.strip() for line in (DATA / "README.md").read_text().splitlines()
                if line.strip().startswith("python -m workloads.moe_lm"))
    argv = line.split()[3:]
    argv[argv.index("--steps") + 1] = "20"
    argv[argv.index("--out") + 1] = str(tmp_path / "t.npz")
    assert main(argv) == 0
    capsys.readouterr()
    replay = TrainingLoadTrace.load(tmp_path / "t.npz")
    committed = TrainingLoadTrace.load(COMMITTED)
    assert replay.meta["training"] == committed.meta["training"]
    # identical on the machine that made it; another CPU may flip a near-tied token or two
    np.testing.assert_allclose(replay.shares, committed.shares[:20], atol=4 / 1024)

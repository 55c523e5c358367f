"""`moesim trace record`: tiny random MoE models of each family, built and saved locally, are
recorded and the trace is checked against the routers' own choices (captured independently
by hooks that keep what each router module returned)."""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from simulator.cli import build_parser, main  # noqa: E402
from workloads.errors import WorkloadError  # noqa: E402
from workloads.models import model_spec  # noqa: E402
from workloads.record import find_routers, quiet_transformers, record_trace  # noqa: E402
from workloads.trace import RoutingTrace  # noqa: E402

DOC = Path(__file__).resolve().parents[2] / "docs" / "traces.md"
TEXT = ("Mixture-of-experts layers route every token to a few experts. " * 40
        + "Routers are tiny linear maps; their choices decide the all-to-all traffic. " * 20)
SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=300, max_position_embeddings=128)


def _config(family: str):
    c = transformers
    if family == "mixtral":
        return c.MixtralConfig(**SMALL, num_local_experts=4, num_experts_per_tok=2)
    if family == "qwen2_moe":
        return c.Qwen2MoeConfig(**SMALL, num_experts=6, num_experts_per_tok=2,
                                moe_intermediate_size=16, shared_expert_intermediate_size=32,
                                norm_topk_prob=False)
    if family == "qwen3_moe":
        return c.Qwen3MoeConfig(**SMALL, num_experts=6, num_experts_per_tok=3,
                                moe_intermediate_size=16, head_dim=8, norm_topk_prob=True)
    if family == "olmoe":
        return c.OlmoeConfig(**SMALL, num_experts=8, num_experts_per_tok=2)
    deepseek = dict(n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=16,
                    n_shared_experts=1, first_k_dense_replace=1, kv_lora_rank=16,
                    qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8, n_group=4,
                    topk_group=2)
    if family == "deepseek_v2":
        if not hasattr(c, "DeepseekV2Config"):
            pytest.skip("this transformers has no DeepSeek-V2")
        return c.DeepseekV2Config(**SMALL, **deepseek, q_lora_rank=None,
                                  topk_method="group_limited_greedy")
    if family == "deepseek_v3":
        if not hasattr(c, "DeepseekV3Config"):
            pytest.skip("this transformers has no DeepSeek-V3")
        return c.DeepseekV3Config(**SMALL, **deepseek, q_lora_rank=16)
    if family == "switch":
        return c.SwitchTransformersConfig(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2,
                                          num_decoder_layers=2, num_experts=4, vocab_size=300,
                                          encoder_sparse_step=2, decoder_sparse_step=2,
                                          expert_capacity=512)
    if family == "dense":
        return c.MistralConfig(**SMALL)
    raise AssertionError(family)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """family -> a saved tiny model with random routers (built once per module)."""
    made = {}

    def build(family: str) -> Path:
        if family not in made:
            config = _config(family)
            torch.manual_seed(0)
            with quiet_transformers():
                auto = (transformers.AutoModelForSeq2SeqLM if config.is_encoder_decoder
                        else transformers.AutoModelForCausalLM)
                model = auto.from_config(config)
                with torch.no_grad():  # routers far from uniform, so choices are clear-cut
                    for _, router in find_routers(model):
                        for p in router.parameters():
                            p.normal_(0.0, 1.0)
                        bias = getattr(router, "e_score_correction_bias", None)
                        if bias is not None:
                            bias.copy_(torch.randn_like(bias) * 0.5)
                path = tmp_path_factory.mktemp(family)
                model.save_pretrained(path)
            made[family] = path
        return made[family]
    return build


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(TEXT)
    return path


def router_oracle(path: Path, sequences: np.ndarray, encoder_decoder: bool):
    """What each router module itself returned: (choices [n, layers, L, k] sorted by expert id
    where the router does not sort, weights aligned with them, router inputs)."""
    with quiet_transformers():
        model = transformers.AutoModel.from_pretrained(path, local_files_only=True,
                                                       dtype=torch.float32)
    model.eval()
    seen = []

    def hook(module, args, output):
        if not isinstance(output, tuple) or len(output) != 3:
            pytest.skip("routers of this transformers do not return their choices")
        if encoder_decoder:  # (one-hot dispatch mask, top probability, logits)
            mask, probability, _ = output
            indices = mask.reshape(-1, mask.shape[-1]).argmax(dim=-1, keepdim=True)
            weights = probability.reshape(-1, 1)
        else:  # (logits, weights, indices)
            _, weights, indices = output
        seen.append((indices.reshape(-1, indices.shape[-1]).long(),
                     weights.reshape(-1, weights.shape[-1]).float(),
                     args[0].reshape(-1, args[0].shape[-1]).float()))

    for _, router in find_routers(model):
        router.register_forward_hook(hook)
    ids = torch.as_tensor(sequences)
    inputs = {"input_ids": ids}
    if encoder_decoder:
        inputs["decoder_input_ids"] = torch.cat([torch.zeros_like(ids[:, :1]), ids[:, :-1]], 1)
    with torch.no_grad():
        model(**inputs)
    n, length = sequences.shape
    experts = np.stack([s[0].numpy().reshape(n, length, -1) for s in seen], axis=1)
    weights = np.stack([s[1].numpy().reshape(n, length, -1) for s in seen], axis=1)
    return experts, weights, seen[0][2].numpy().reshape(n, length, -1)


def as_sequences(trace: RoutingTrace, length: int) -> np.ndarray:
    return trace.token_ids.reshape(-1, length)


def trace_per_sequence(array: np.ndarray, length: int) -> np.ndarray:
    """[iterations, layers, T, k] -> [sequences, layers, L, k]."""
    iterations, layers, tokens, k = array.shape
    per = tokens // length
    return array.reshape(iterations, layers, per, length, k).transpose(0, 2, 1, 3, 4).reshape(
        iterations * per, layers, length, k)


FAMILIES = [  # family, sorted like the model (else compare as sets), MoE block indices
    ("mixtral", True, [0, 1]),
    ("qwen2_moe", True, [0, 1]),
    ("qwen3_moe", True, [0, 1]),
    ("olmoe", True, [0, 1]),
    ("deepseek_v2", False, [1]),
    ("deepseek_v3", False, [1]),
    ("switch", True, [1, 3]),
]


@pytest.mark.parametrize("family, ordered, blocks", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_recorded_choices_are_the_routers_own(family, ordered, blocks, model_dir, text_file):
    path = model_dir(family)
    with quiet_transformers():
        trace = record_trace(str(path), text_file, tokens_per_iteration=64, max_length=32,
                             batch_size=3, iterations=3, features=True, weights=True,
                             features_dtype="float32")
    config = transformers.AutoConfig.from_pretrained(path)
    encoder_decoder = bool(config.is_encoder_decoder)
    experts, weights, features = router_oracle(path, as_sequences(trace, 32), encoder_decoder)
    mine = trace_per_sequence(trace.experts, 32).astype(np.int64)
    my_weights = trace_per_sequence(trace.weights, 32)
    assert trace.layers == len(blocks) and trace.meta["moe_layer_indices"] == blocks
    if ordered:
        assert np.array_equal(mine, experts)
        np.testing.assert_allclose(my_weights, weights, rtol=1e-5, atol=1e-6)
    else:  # DeepSeek's routers return an unsorted top-k; ours is best first
        order, theirs = np.argsort(mine, axis=-1), np.argsort(experts, axis=-1)
        assert np.array_equal(np.take_along_axis(mine, order, -1),
                              np.take_along_axis(experts, theirs, -1))
        np.testing.assert_allclose(np.take_along_axis(my_weights, order, -1),
                                   np.take_along_axis(weights, theirs, -1), rtol=1e-5, atol=1e-6)
        assert np.all(np.diff(my_weights, axis=-1) <= 1e-6) or family == "deepseek_v3"
    np.testing.assert_allclose(trace.features.reshape(features.shape), features, rtol=1e-5,
                               atol=1e-5)
    assert trace.meta["source"] == "recorded" and trace.meta["dataset"] == "corpus.txt"
    assert trace.meta["tokens_per_iteration"] == 64 and trace.meta["tokenizer"].startswith("bytes")


def test_deepseek_v3_correction_bias_changes_the_choice(model_dir, text_file):
    """The recorder must choose with sigmoid + bias, as the model does (checked above), and
    that differs from plain top-k of the scores for this router."""
    path = model_dir("deepseek_v3")
    with quiet_transformers():
        model = transformers.AutoModel.from_pretrained(path, local_files_only=True)
    (_, router), = find_routers(model)
    assert router.e_score_correction_bias.abs().sum() > 0
    with quiet_transformers():
        trace = record_trace(str(path), text_file, tokens_per_iteration=64, iterations=1,
                             weights=True)
    assert "e_score_correction_bias" in trace.meta["routing"]


def test_tokens_are_the_text_bytes_cut_into_iterations(model_dir, text_file):
    with quiet_transformers():
        trace = record_trace(str(model_dir("mixtral")), text_file, tokens_per_iteration=64,
                             max_length=16, iterations=3, batch_size=4)
    data = np.frombuffer(TEXT.encode(), dtype=np.uint8)
    assert trace.iterations == 3 and trace.meta["text_tokens"] == len(data)
    assert np.array_equal(trace.token_ids.ravel(), data[: trace.iterations * 64])
    spec = model_spec({"name": "tiny", "layers": 2, "hidden": 32, "ffn": 64, "experts": 4,
                       "top_k": 2, "heads": 4})
    trace.check_against(spec)


def test_batch_size_does_not_change_the_trace(model_dir, text_file):
    path = str(model_dir("olmoe"))
    with quiet_transformers():
        one = record_trace(path, text_file, tokens_per_iteration=64, max_length=32, iterations=2)
        four = record_trace(path, text_file, tokens_per_iteration=64, max_length=32,
                            iterations=2, batch_size=4)
    assert np.array_equal(one.experts, four.experts)


def test_a_saved_tokenizer_is_used_with_bos_per_sequence(model_dir, text_file, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    words = sorted(set(re.findall(r"\w+|[^\w\s]", TEXT)))
    vocab = {"<s>": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    core = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>",
                                                unk_token="[UNK]")
    fast.save_pretrained(tmp_path / "tok")
    with quiet_transformers():
        trace = record_trace(str(model_dir("mixtral")), text_file, tokens_per_iteration=32,
                             max_length=16, tokenizer=str(tmp_path / "tok"))
    ids = trace.token_ids.reshape(-1, 16)
    assert np.all(ids[:, 0] == 0) and trace.meta["bos_per_sequence"]
    expected = fast(TEXT, add_special_tokens=False)["input_ids"]
    assert ids[:, 1:].ravel().tolist() == expected[: ids[:, 1:].size]


@pytest.mark.parametrize("kwargs, field, message", [
    ({"text": "empty"}, "--text", "is empty"),
    ({"text": "short"}, "--text", "are needed for 1 iteration(s) of 2048 tokens"),
    ({"model": "dense"}, "--model", "no router found"),
    ({"model": "./no/such/dir"}, "--model", "no such model directory"),
    ({"tokens_per_iteration": 64, "max_length": 48}, "--tokens-per-iteration",
     "must be a multiple of --max-length (48)"),
    ({"tokens_per_iteration": 256}, "--max-length", "max_position_embeddings (128)"),
    ({"features": True, "features_layer": 5, "tokens_per_iteration": 64}, "--features-layer",
     "must be in 0..1"),
])
def test_bad_input_is_one_workload_error(kwargs, field, message, model_dir, text_file, tmp_path):
    kwargs = dict(kwargs)
    text = {"empty": " \n", "short": "tiny"}.get(kwargs.pop("text", None))
    if text is not None:
        (tmp_path / "t.txt").write_text(text)
    model = kwargs.pop("model", "mixtral")
    model = str(model_dir(model)) if model in ("mixtral", "dense") else model
    kwargs.setdefault("tokens_per_iteration", 2048 if text is not None else 64)
    if kwargs["tokens_per_iteration"] == 2048:
        kwargs["max_length"] = 64
    with quiet_transformers(), pytest.raises(WorkloadError) as error:
        record_trace(model, tmp_path / "t.txt" if text is not None else text_file, **kwargs)
    assert error.value.field == field and message in str(error.value)


def test_only_hub_names_may_download(tmp_path):
    from workloads.record import _model_location

    assert _model_location(str(tmp_path)) == (str(tmp_path), True)
    assert _model_location("allenai/OLMoE-1B-7B-0924") == ("allenai/OLMoE-1B-7B-0924", False)
    with pytest.raises(WorkloadError, match="no such model directory"):
        _model_location("models/OLMoE/oops")


def test_an_unsupported_moe_family_is_refused_before_loading_weights(text_file, tmp_path):
    if not hasattr(transformers, "PhimoeConfig"):
        pytest.skip("this transformers has no PhiMoE")
    transformers.PhimoeConfig(**SMALL).save_pretrained(tmp_path)  # config only, no weights
    with pytest.raises(WorkloadError, match="unsupported MoE family 'phimoe'; supported"):
        record_trace(str(tmp_path), text_file, tokens_per_iteration=64)


def test_record_cli_writes_a_trace_and_reports_errors_in_one_line(model_dir, text_file,
                                                                  tmp_path, capsys):
    out = tmp_path / "t.npz"
    argv = ["trace", "record", "--model", str(model_dir("qwen2_moe")), "--text", str(text_file),
            "--tokens-per-iteration", "64", "--max-length", "32", "--iterations", "2",
            "--weights", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "2 iterations x 2 MoE layers x 64 tokens, top-2 of 6 experts" in printed
    assert "LOAD REPORT" not in printed
    trace = RoutingTrace.load(out)
    assert trace.weights is not None and trace.meta["model_type"] == "qwen2_moe"
    assert main(["trace", "record", "--model", str(model_dir("dense")), "--text",
                 str(text_file), "--tokens-per-iteration", "64", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moesim: error: --model: no router found") and err.count("\n") == 1


def test_docs_record_commands_parse():
    commands = [shlex.split(line) for line in DOC.read_text().splitlines()
                if line.startswith("moesim trace record ")]
    assert len(commands) >= 3
    for argv in commands:
        args = build_parser("trace").parse_args(argv[1:])
        assert args.trace_action == "record" and args.out.endswith(".npz")

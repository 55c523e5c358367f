"""Model catalogue: figures match each model's HF config.json, derived sizes, strict validation."""

import pytest

from workloads.errors import WorkloadError
from workloads.models import ModelSpec, model_catalogue, model_spec

CATALOGUE = ("mixtral-8x7b", "mixtral-8x22b", "deepseek-v2-lite", "deepseek-v3",
             "qwen1.5-moe-a2.7b", "qwen3-30b-a3b", "olmoe-1b-7b", "switch-base-8")


def test_catalogue_has_every_model_with_a_config_json_source():
    catalogue = model_catalogue()
    assert set(CATALOGUE) <= set(catalogue)
    for name, spec in catalogue.items():
        assert spec.name == name
        assert "huggingface.co/" in spec.source and "config.json" in spec.source


def test_mixtral_8x7b_matches_hf_config():
    m = model_spec("mixtral-8x7b")
    assert (m.layers, m.dense_layers, m.hidden, m.ffn) == (32, 0, 4096, 14336)
    assert (m.experts, m.top_k, m.shared_experts) == (8, 2, 0)
    assert (m.heads, m.kv_heads, m.head_dim, m.attention) == (32, 8, 128, "gqa")
    assert (m.vocab, m.gated, m.dtype_bytes) == (32000, True, 2)
    assert m.moe_layers == 32 and m.moe_layer_indices == tuple(range(32))


def test_deepseek_v3_matches_hf_config():
    m = model_spec("deepseek-v3")
    assert (m.layers, m.dense_layers, m.hidden) == (61, 3, 7168)
    assert (m.experts, m.top_k, m.shared_experts, m.shared_ffn) == (256, 8, 1, 2048)
    assert (m.ffn, m.dense_ffn) == (2048, 18432)
    assert (m.attention, m.kv_lora_rank, m.heads) == ("mla", 512 + 64, 128)
    assert m.moe_layers == 58
    assert m.moe_layer_indices[0] == 3 and not m.is_moe_layer(2) and m.is_moe_layer(60)


def test_deepseek_v2_lite_has_one_dense_layer_and_two_shared_experts():
    m = model_spec("deepseek-v2-lite")
    assert (m.layers, m.dense_layers, m.moe_layers) == (27, 1, 26)
    assert (m.experts, m.top_k, m.shared_experts, m.ffn, m.dense_ffn) == (64, 6, 2, 1408, 10944)


def test_switch_base_8_has_moe_in_every_second_block():
    m = model_spec("switch-base-8")
    assert m.moe_layer_indices == tuple(range(1, 24, 2))
    assert m.top_k == 1 and not m.gated
    assert m.expert_params == 2 * 768 * 3072  # wi and wo only (ReLU FFN)


def test_expert_attention_and_kv_sizes_follow_from_shapes():
    m = model_spec("mixtral-8x7b")
    assert m.expert_params == 3 * 4096 * 14336
    assert m.expert_bytes == 2 * m.expert_params
    assert m.attention_params == 2 * 4096 * 32 * 128 + 2 * 4096 * 8 * 128
    assert m.kv_bytes_per_token_per_layer == 2 * 8 * 128 * 2
    assert m.dense_ffn_params == 0
    v3 = model_spec("deepseek-v3")
    assert v3.kv_bytes_per_token_per_layer == 576 * 2  # MLA caches the latent only
    assert v3.dense_ffn_params == 3 * 7168 * 18432
    assert v3.shared_expert_params == 3 * 7168 * 2048


@pytest.mark.parametrize("name, total_b, active_b", [
    ("mixtral-8x7b", 46.7, 12.9),        # Mistral AI announcement
    ("mixtral-8x22b", 141, 39),
    ("deepseek-v3", 671, 37),            # DeepSeek-V3 technical report (without the MTP module)
    ("deepseek-v2-lite", 15.7, None),
    ("qwen1.5-moe-a2.7b", 14.3, 2.7),    # Qwen1.5-MoE model card
    ("qwen3-30b-a3b", 30.5, 3.3),
    ("olmoe-1b-7b", 6.9, 1.3),
])
def test_parameter_counts_match_published_totals(name, total_b, active_b):
    m = model_spec(name)
    assert m.total_params / 1e9 == pytest.approx(total_b, rel=0.02)
    if active_b is not None:
        assert m.active_params / 1e9 == pytest.approx(active_b, rel=0.04)


def test_unknown_model_lists_known_names():
    with pytest.raises(WorkloadError, match="known: deepseek-v2-lite, deepseek-v3") as error:
        model_spec("mixtral")
    assert error.value.field == "model"


def test_inline_mapping_with_defaults():
    m = model_spec({"name": "tiny", "layers": 4, "hidden": 256, "ffn": 512, "experts": 4,
                    "top_k": 2, "heads": 4})
    assert isinstance(m, ModelSpec)
    assert (m.kv_heads, m.head_dim, m.attention, m.gated, m.moe_layers) == (4, 64, "gqa", True, 4)
    assert m.source == "inline in scenario"


def test_inline_mapping_from_base_overrides_fields():
    m = model_spec({"base": "mixtral-8x7b", "experts": 16, "top_k": 4})
    assert (m.experts, m.top_k, m.hidden, m.name) == (16, 4, 4096, "mixtral-8x7b")
    assert "overridden in scenario: experts, top_k" in m.source


def test_inline_typo_names_the_field_and_lists_allowed_keys():
    with pytest.raises(WorkloadError, match=r"model\.hiden: unknown key; allowed: .*hidden"):
        model_spec({"base": "mixtral-8x7b", "hiden": 1024})


def test_inline_missing_required_key_names_it():
    with pytest.raises(WorkloadError, match=r"scenario\.model\.ffn: missing required key"):
        model_spec({"layers": 2, "hidden": 64, "experts": 4, "top_k": 1, "heads": 2},
                   field="scenario.model")


@pytest.mark.parametrize("key, value, message", [
    ("hidden", -5, "model.hidden: must be >= 1, got -5"),
    ("experts", 2.5, "model.experts: must be an integer >= 1, got 2.5"),
    ("top_k", True, "model.top_k: must be an integer"),
    ("top_k", 9, "model.top_k: must be <= experts (8), got 9"),
    ("attention", "mha", "model.attention: must be one of gqa, mla"),
    ("gated", "yes", "model.gated: must be true or false"),
    ("kv_heads", 3, "model.kv_heads: must divide heads (32), got 3"),
    ("dense_layers", 32, "model.dense_layers: must be < layers (32)"),
])
def test_inline_bad_values_are_one_line_errors(key, value, message):
    with pytest.raises(WorkloadError) as error:
        model_spec({"base": "mixtral-8x7b", key: value})
    assert str(error.value).startswith(message)
    assert error.value.field == f"model.{key}"


def test_dense_blocks_need_a_dense_ffn():
    with pytest.raises(WorkloadError, match=r"model\.dense_ffn: must be > 0"):
        model_spec({"base": "mixtral-8x7b", "dense_layers": 2})


def test_non_mapping_model_is_rejected():
    with pytest.raises(WorkloadError, match="must be a catalogue name or a mapping"):
        model_spec(42)

"""Model catalogue: the shapes of MoE models that set compute, memory and traffic.

Figures are data (`data/models.yaml`, one Hugging Face config.json cited per model). A scenario
names a catalogue model or writes a mapping of fields inline, optionally starting from
``base: <catalogue name>``; either way `model_spec` validates it once and returns a frozen
`ModelSpec` that the rest of the code trusts.
"""

from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources

import yaml

from workloads.errors import WorkloadError

ATTENTION_KINDS = ("gqa", "mla")


@dataclass(frozen=True)
class ModelSpec:
    """One MoE transformer. Sizes are element counts; `dtype_bytes` converts them to bytes.

    `ffn` is the intermediate size of one routed expert, `shared_ffn` that of one shared expert,
    `dense_ffn` that of the FFN in blocks without MoE. MoE blocks are the ones at index >=
    `dense_layers` whose offset from there is a multiple of `moe_step` (1-based, as HF's
    ``decoder_sparse_step``), so Switch's "every second block" is ``moe_step: 2``.
    For MLA, `kv_lora_rank` is the cached width per token including the rope part, `head_dim`
    the per-head value (and non-rope query/key) width, `rope_head_dim` the rope width and
    `q_lora_rank` the query's low-rank width (0 = full-rank query projection).
    """

    name: str
    layers: int
    dense_layers: int
    hidden: int
    ffn: int
    dense_ffn: int
    experts: int
    top_k: int
    shared_experts: int
    shared_ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    attention: str
    kv_lora_rank: int
    gated: bool
    vocab: int
    dtype_bytes: int = 2
    source: str = ""
    # Extensions beyond the core fields (defaults keep every other model exact):
    moe_step: int = 1
    q_lora_rank: int = 0
    rope_head_dim: int = 0

    @property
    def moe_index(self) -> dict[int, int]:
        """Block index -> position among the MoE layers (the `layer` axis of traces and plans)."""
        return {layer: moe for moe, layer in enumerate(self.moe_layer_indices)}

    @property
    def moe_layer_indices(self) -> tuple[int, ...]:
        """Block indices (0-based, of all `layers`) that hold a routed-expert layer."""
        return tuple(
            i
            for i in range(self.dense_layers, self.layers)
            if (i - self.dense_layers + 1) % self.moe_step == 0
        )

    @property
    def moe_layers(self) -> int:
        return len(self.moe_layer_indices)

    def is_moe_layer(self, index: int) -> bool:
        return index >= self.dense_layers and (index - self.dense_layers + 1) % self.moe_step == 0

    @property
    def _ffn_matrices(self) -> int:
        # SwiGLU: gate (w1), up (w3) and down (w2) projections; plain FFN: in and out.
        return 3 if self.gated else 2

    @property
    def expert_params(self) -> int:
        """Parameters of one routed expert."""
        return self._ffn_matrices * self.hidden * self.ffn

    @property
    def expert_bytes(self) -> int:
        return self.expert_params * self.dtype_bytes

    @property
    def shared_expert_params(self) -> int:
        """Parameters of all shared experts of one MoE layer together."""
        return self.shared_experts * self._ffn_matrices * self.hidden * self.shared_ffn

    @property
    def gate_params(self) -> int:
        """Router (gate) matrix of one MoE layer: hidden x experts."""
        return self.hidden * self.experts

    @property
    def dense_ffn_params(self) -> int:
        """Parameters of the FFN of one non-MoE block (0 when there is none)."""
        return self._ffn_matrices * self.hidden * self.dense_ffn

    @property
    def attention_params(self) -> int:
        """Projection weights of one attention block (norms and biases left out)."""
        if self.attention == "gqa":
            q_and_o = 2 * self.hidden * self.heads * self.head_dim
            k_and_v = 2 * self.hidden * self.kv_heads * self.head_dim
            return q_and_o + k_and_v
        qk_dim = self.head_dim + self.rope_head_dim
        if self.q_lora_rank:
            q = self.hidden * self.q_lora_rank + self.q_lora_rank * self.heads * qk_dim
        else:
            q = self.hidden * self.heads * qk_dim
        kv_down = self.hidden * self.kv_lora_rank  # compressed latent + shared rope key
        kv_up = (self.kv_lora_rank - self.rope_head_dim) * self.heads * 2 * self.head_dim
        out = self.heads * self.head_dim * self.hidden
        return q + kv_down + kv_up + out

    @property
    def kv_bytes_per_token_per_layer(self) -> int:
        """KV-cache bytes one token adds to one layer (MLA caches only the latent)."""
        if self.attention == "mla":
            return self.kv_lora_rank * self.dtype_bytes
        return 2 * self.kv_heads * self.head_dim * self.dtype_bytes

    @property
    def total_params(self) -> int:
        """All weights: blocks plus untied input and output embeddings."""
        moe = self.moe_layers * (self.experts * self.expert_params + self.shared_expert_params
                                 + self.gate_params)
        dense = (self.layers - self.moe_layers) * self.dense_ffn_params
        return self.layers * self.attention_params + moe + dense + 2 * self.vocab * self.hidden

    @property
    def active_params(self) -> int:
        """Weights one token touches: like `total_params` but only `top_k` routed experts."""
        idle = self.moe_layers * (self.experts - self.top_k) * self.expert_params
        return self.total_params - idle


# --- catalogue and validation -------------------------------------------------------------

_INT_FIELDS_POSITIVE = ("layers", "hidden", "ffn", "experts", "top_k", "heads", "kv_heads",
                        "head_dim", "vocab", "dtype_bytes", "moe_step")
_INT_FIELDS_NONNEGATIVE = ("dense_layers", "dense_ffn", "shared_experts", "shared_ffn",
                           "kv_lora_rank", "q_lora_rank", "rope_head_dim")
_REQUIRED = ("layers", "hidden", "ffn", "experts", "top_k", "heads")
# What a mapping may leave out (head_dim and kv_heads follow from hidden and heads).
_DEFAULTS = {"dense_layers": 0, "dense_ffn": 0, "shared_experts": 0, "shared_ffn": 0,
             "attention": "gqa", "kv_lora_rank": 0, "gated": True, "vocab": 32000,
             "dtype_bytes": 2, "moe_step": 1, "q_lora_rank": 0, "rope_head_dim": 0}
_ALLOWED = tuple(f.name for f in fields(ModelSpec)) + ("base",)


def model_catalogue() -> dict[str, ModelSpec]:
    """All catalogue models by name (a fresh dict; the file is read once)."""
    return dict(_catalogue())


@cache
def _catalogue() -> tuple[tuple[str, ModelSpec], ...]:
    text = resources.files("workloads").joinpath("data/models.yaml").read_text()
    return tuple(
        (name, _build(dict(row), name=name, field=f"models.yaml:{name}"))
        for name, row in yaml.safe_load(text).items()
    )


def model_spec(name_or_mapping: str | Mapping | ModelSpec, field: str = "model") -> ModelSpec:
    """A catalogue name or an inline mapping (optionally ``base: NAME`` plus overrides)."""
    if isinstance(name_or_mapping, ModelSpec):
        return name_or_mapping
    if isinstance(name_or_mapping, str):
        return _lookup(name_or_mapping, field)
    if not isinstance(name_or_mapping, Mapping):
        kind = type(name_or_mapping).__name__
        raise WorkloadError(f"must be a catalogue name or a mapping of fields, got {kind}", field)
    values = dict(name_or_mapping)
    unknown = sorted(str(key) for key in values if key not in _ALLOWED)
    if unknown:
        raise WorkloadError(f"unknown key; allowed: {', '.join(_ALLOWED)}",
                            f"{field}.{unknown[0]}")
    base_name = values.pop("base", None)
    if base_name is not None:
        if not isinstance(base_name, str):
            raise WorkloadError(f"must be a catalogue name, got {base_name!r}", f"{field}.base")
        base = _lookup(base_name, f"{field}.base")
        overridden = sorted(key for key in values if key != "name")
        merged = {f.name: getattr(base, f.name) for f in fields(ModelSpec)}
        merged["source"] = (f"{base.source}; overridden in scenario: {', '.join(overridden)}"
                            if overridden else base.source)
        merged.update(values)
        return _build(merged, name=values.get("name", base.name), field=field)
    values.setdefault("source", "inline in scenario")
    return _build(values, name=values.get("name", "custom"), field=field)


def _lookup(name: str, field: str) -> ModelSpec:
    catalogue = model_catalogue()
    if name not in catalogue:
        raise WorkloadError(f"unknown model {name!r}; known: {', '.join(sorted(catalogue))}", field)
    return catalogue[name]


def _build(values: dict, name: str, field: str) -> ModelSpec:
    """Fill defaults, check every value and the cross-field rules, and freeze."""
    missing = [key for key in _REQUIRED if key not in values]
    if missing:
        raise WorkloadError(f"missing required key; required: {', '.join(_REQUIRED)}",
                            f"{field}.{missing[0]}")
    values = {**_DEFAULTS, **values, "name": name}
    if not isinstance(name, str) or not name:
        raise WorkloadError(f"must be a non-empty string, got {name!r}", f"{field}.name")
    for key in ("heads", "hidden"):
        _check_int(values[key], f"{field}.{key}", minimum=1)
    values.setdefault("kv_heads", values["heads"])
    values.setdefault("head_dim", values["hidden"] // values["heads"])
    for key in _INT_FIELDS_POSITIVE:
        _check_int(values[key], f"{field}.{key}", minimum=1)
    for key in _INT_FIELDS_NONNEGATIVE:
        _check_int(values[key], f"{field}.{key}", minimum=0)
    if not isinstance(values["gated"], bool):
        raise WorkloadError(f"must be true or false, got {values['gated']!r}", f"{field}.gated")
    if values["attention"] not in ATTENTION_KINDS:
        raise WorkloadError(f"must be one of {', '.join(ATTENTION_KINDS)}, got "
                            f"{values['attention']!r}", f"{field}.attention")
    if not isinstance(values.get("source", ""), str):
        raise WorkloadError("must be a string", f"{field}.source")
    _check_consistency(values, field)
    return ModelSpec(**values)


def _check_int(value, field: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WorkloadError(f"must be an integer >= {minimum}, got {value!r}", field)
    if value < minimum:
        raise WorkloadError(f"must be >= {minimum}, got {value}", field)


def _check_consistency(v: dict, field: str) -> None:
    def fail(key: str, message: str) -> None:
        raise WorkloadError(message, f"{field}.{key}")

    if v["top_k"] > v["experts"]:
        fail("top_k", f"must be <= experts ({v['experts']}), got {v['top_k']}")
    if v["dense_layers"] >= v["layers"]:
        fail("dense_layers", f"must be < layers ({v['layers']}) so at least one layer is MoE, "
                             f"got {v['dense_layers']}")
    if v["moe_step"] > v["layers"] - v["dense_layers"]:
        fail("moe_step", f"must be <= layers - dense_layers ({v['layers'] - v['dense_layers']}) "
                         f"so at least one layer is MoE, got {v['moe_step']}")
    has_dense_blocks = v["dense_layers"] > 0 or v["moe_step"] > 1
    if has_dense_blocks and v["dense_ffn"] == 0:
        fail("dense_ffn", "must be > 0 when some blocks are dense "
                          "(dense_layers > 0 or moe_step > 1)")
    if v["shared_experts"] > 0 and v["shared_ffn"] == 0:
        fail("shared_ffn", "must be > 0 when shared_experts > 0")
    if v["attention"] == "gqa":
        if v["heads"] % v["kv_heads"]:
            fail("kv_heads", f"must divide heads ({v['heads']}), got {v['kv_heads']}")
        if v["kv_lora_rank"]:
            fail("kv_lora_rank", "only applies to attention: mla; must be 0 for gqa")
    elif v["kv_lora_rank"] <= v["rope_head_dim"]:
        fail("kv_lora_rank", f"must be > rope_head_dim ({v['rope_head_dim']}) for attention: mla "
                             f"(it includes the rope part), got {v['kv_lora_rank']}")


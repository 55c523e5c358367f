"""Per-GPU memory accounting: weights, expert replicas, KV cache and activations.

Checked once before a run, so a placement or batch that cannot fit fails with one clear message
instead of simulating an impossible system.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.errors import ScenarioError

# Adam keeps an fp32 master copy, first and second moments per parameter: 3 x 4 bytes.
ADAM_STATE_BYTES_PER_PARAM = 12


@dataclass(frozen=True)
class MemoryUse:
    """Bytes one GPU holds during the run."""

    dense_weights: float
    expert_weights: float
    kv_cache: float
    activations: float

    @property
    def total(self) -> float:
        return self.dense_weights + self.expert_weights + self.kv_cache + self.activations


def gpu_memory_use(model, rank: int, replicas_held: int, tp: int, group_sequences: int,
                   group_tokens: int, context_len: int, max_expert_pairs: int,
                   training: bool = False) -> MemoryUse:
    """Memory of GPU `rank`.

    Attention, embeddings and dense FFNs are split over the attention TP group; shared experts
    are replicated on every GPU (they run on the tokens each GPU owns); each routed-expert
    replica is a full copy. The KV cache holds the group's sequences, split over TP by KV heads
    (an MLA latent cache is not split). Activations: the group's hidden states twice (input and
    output of a layer) plus the largest expert intermediate on this GPU.
    """
    dtype = model.dtype_bytes
    attention = model.attention_params * model.layers / tp
    embeddings = 2 * model.vocab * model.hidden / tp
    dense_ffn = model.dense_ffn_params * model.dense_layers
    shared = model.shared_experts * _ffn_params(model, model.shared_ffn) * model.moe_layers
    dense_weights = (attention + embeddings + dense_ffn + shared) * dtype
    expert_weights = replicas_held * model.expert_bytes
    kv_split = 1 if model.attention == "mla" else min(tp, model.kv_heads)
    kv_cache = group_sequences * context_len * model.kv_bytes_per_token_per_layer * model.layers / kv_split
    activations = (2 * group_tokens * model.hidden + max_expert_pairs * model.ffn * 2) * dtype
    if training:  # per parameter: weight + gradient (dtype each) + Adam's fp32 master, m and v
        per_param = (2 * dtype + ADAM_STATE_BYTES_PER_PARAM) / dtype
        dense_weights, expert_weights = dense_weights * per_param, expert_weights * per_param
        kv_cache = 0.0
        activations *= model.layers
    return MemoryUse(dense_weights, expert_weights, kv_cache, activations)


def _ffn_params(model, ffn: int) -> int:
    return (3 if model.gated else 2) * model.hidden * ffn


def check_fits(use: MemoryUse, capacity_bytes: float, rank: int, device: str) -> None:
    if use.total <= capacity_bytes:
        return
    gb = 1e9
    raise ScenarioError(
        f"does not fit in GPU memory: gpu{rank} needs {use.total / gb:.1f} GB "
        f"(weights {use.dense_weights / gb:.1f}, experts {use.expert_weights / gb:.1f}, "
        f"KV cache {use.kv_cache / gb:.1f}, activations {use.activations / gb:.1f}) but {device} has "
        f"{capacity_bytes / gb:.1f} GB; lower workload.batch or workload.seq_len, or use more GPUs",
        "workload.batch",
    )

"""Kernel cost model: how long one kernel takes on one GPU (DESIGN.md section 4).

Roofline per kernel, ``time = launch + max(compute, memory)``, with a compute efficiency that
falls for small kernels (``eff_c``) and a sustained HBM efficiency (``eff_m``). Constants per GPU
family live in ``data/kernel_efficiency.yaml`` with their sources; docs/compute.md explains them.
A `CalibrationTable` of measured times replaces the roofline for the shapes it lists.

Why weights matter: an expert's weights are read once per call whatever its token count, so an
expert with few tokens is memory-bound on its weights and costs about as much as one with a
hundred tokens. That is why duplicating an expert is not free.

Every method is a pure, cheap function of its arguments (scalar float arithmetic, numpy only for
per-expert arrays): the engine calls them per GPU, per layer, per iteration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from simulator.errors import ScenarioError
from topologies.devices import GpuSpec

if TYPE_CHECKING:
    from simulator.model.kernel_table import CalibrationTable

WORKLOAD_PHASES = ("prefill", "decode")  # what one inference iteration is (workload.phase)
BOUNDS = ("compute", "memory", "calibrated", "none")


@dataclass(frozen=True)
class KernelCost:
    """Cost of one kernel (or a fused group of `kernels` launches) in SI units.

    `bound` says which roofline term set the time: "compute", "memory", "calibrated" (a measured
    time from the calibration table) or "none" (no work: nothing is launched).
    """

    name: str
    flops: float
    bytes: float
    time_s: float
    bound: str = "none"
    kernels: int = 0

    @classmethod
    def zero(cls, name: str) -> KernelCost:
        """No work: no launch, no time (an expert that received no token)."""
        return cls(name, 0.0, 0.0, 0.0, "none", 0)

    @classmethod
    def total(cls, name: str, parts: Iterable[KernelCost]) -> KernelCost:
        """Kernels run back to back: times, FLOPs and bytes add; the slowest part names the bound."""
        parts = [part for part in parts if part.kernels or part.time_s > 0]
        if not parts:
            return cls.zero(name)
        slowest = max(parts, key=lambda part: part.time_s)
        return cls(name, sum(p.flops for p in parts), sum(p.bytes for p in parts),
                   sum(p.time_s for p in parts), slowest.bound, sum(p.kernels for p in parts))

    @property
    def tflops(self) -> float:
        """Achieved TFLOP/s (FLOPs over the whole time, launch included)."""
        return self.flops / self.time_s / 1e12 if self.time_s > 0 else 0.0


@dataclass(frozen=True)
class KernelParams:
    """Cost-model constants of one GPU (its family's, with per-GPU overrides applied)."""

    gpu: str
    family: str
    sms: int
    eff_max: Mapping[int, float]  # saturated GEMM efficiency per element size (bytes)
    peak_scale: Mapping[int, float]  # tensor-core FLOP/s relative to the BF16 peak, per element size
    half_work_flops: float
    attention_eff: float
    eff_m: float
    launch_s: float
    source: str


@cache
def _efficiency_data() -> dict[str, Any]:
    text = resources.files("simulator").joinpath("data/kernel_efficiency.yaml").read_text()
    return yaml.safe_load(text)


def reference_gemms() -> list[dict[str, Any]]:
    """The published GEMM measurements the constants were fitted to (copies, safe to modify)."""
    return [dict(row) for row in _efficiency_data()["reference_gemms"]]


@cache
def kernel_params(gpu_name: str) -> KernelParams:
    """Constants for a catalogue GPU; a GPU without an entry gets the 'generic' family."""
    data = _efficiency_data()
    entry = data["gpus"].get(gpu_name, {"family": "generic", "sms": 100,
                                        "source": "not in kernel_efficiency.yaml: generic family"})
    family = dict(data["families"][entry["family"]])
    family.update({key: value for key, value in entry.items() if key in family})
    return KernelParams(
        gpu=gpu_name,
        family=entry["family"],
        sms=int(entry["sms"]),
        eff_max=MappingProxyType({int(k): float(v) for k, v in family["eff_max"].items()}),
        peak_scale=MappingProxyType({int(k): float(v) for k, v in family["peak_scale"].items()}),
        half_work_flops=float(family["half_work_gflop"]) * 1e9,
        attention_eff=float(family["attention_eff"]),
        eff_m=float(family["eff_m"]),
        launch_s=float(family["launch_us"]) * 1e-6,
        source=str(entry["source"]),
    )


def _check_dtype(dtype_bytes: int, params: KernelParams) -> None:
    if dtype_bytes not in params.eff_max:
        allowed = ", ".join(str(b) for b in sorted(params.eff_max))
        raise ScenarioError(f"element size must be one of {allowed} bytes, got {dtype_bytes!r}",
                            "dtype_bytes")


def _check_count(value: float, field: str) -> None:
    if not value >= 0:  # also rejects NaN
        raise ScenarioError(f"must be >= 0, got {value}", field)


class ComputeModel:
    """Kernel times on one GPU model.

    `calibration` (optional) replaces the roofline for the shapes it lists; `launch_s` overrides
    the family's launch overhead (e.g. 0 for a CUDA-graph-captured decode loop).
    """

    def __init__(self, gpu: GpuSpec, calibration: CalibrationTable | None = None,
                 launch_s: float | None = None,
                 params: KernelParams | None = None):
        self.gpu = gpu
        self.calibration = calibration
        self.params = params or kernel_params(gpu.name)
        if launch_s is not None:
            if not launch_s >= 0:
                raise ScenarioError(f"must be >= 0, got {launch_s}", "launch_s")
            self.launch_s = float(launch_s)
        else:
            self.launch_s = self.params.launch_s
        self.hbm_Bps = gpu.hbm_Bps * self.params.eff_m

    def __repr__(self) -> str:
        return f"ComputeModel({self.gpu.name!r}, family={self.params.family!r})"

    # --- the roofline -------------------------------------------------------------------------

    def peak_flops(self, dtype_bytes: int = 2) -> float:
        """Tensor-core peak FLOP/s for elements of `dtype_bytes` bytes."""
        _check_dtype(dtype_bytes, self.params)
        return self.gpu.peak_flops * self.params.peak_scale[dtype_bytes]

    def eff_c(self, flops: float, dtype_bytes: int = 2, attention: bool = False) -> float:
        """Compute efficiency of a kernel doing `flops` FLOPs: eff * F / (F + min(W_half, (sms-1) F))."""
        _check_dtype(dtype_bytes, self.params)
        if flops <= 0:
            return 0.0
        eff = self.params.attention_eff if attention else self.params.eff_max[dtype_bytes]
        tail = min(self.params.half_work_flops, (self.params.sms - 1) * flops)
        return eff * flops / (flops + tail)

    def compute_time_s(self, flops: float, dtype_bytes: int = 2, attention: bool = False) -> float:
        """Seconds the tensor cores need for `flops` (no launch): F / (peak * eff_c(F))."""
        if flops <= 0:
            return 0.0
        p = self.params
        eff = p.attention_eff if attention else p.eff_max[dtype_bytes]
        tail = min(p.half_work_flops, (p.sms - 1) * flops)
        return (flops + tail) / (self.gpu.peak_flops * p.peak_scale[dtype_bytes] * eff)

    def memory_time_s(self, nbytes: float) -> float:
        """Seconds to move `nbytes` through HBM at the sustained bandwidth (hbm * eff_m)."""
        return nbytes / self.hbm_Bps if nbytes > 0 else 0.0

    def roofline(self, name: str, flops: float, nbytes: float, dtype_bytes: int = 2,
                 kernels: int = 1, attention: bool = False) -> KernelCost:
        """`kernels` launches + max(compute, memory) for work already summed over them."""
        _check_dtype(dtype_bytes, self.params)
        if flops <= 0 and nbytes <= 0:
            return KernelCost.zero(name)
        compute = self.compute_time_s(flops, dtype_bytes, attention)
        memory = self.memory_time_s(nbytes)
        bound = "compute" if compute > memory else "memory"
        return KernelCost(name, float(flops), float(nbytes),
                          kernels * self.launch_s + max(compute, memory), bound, kernels)

    def _calibrated(self, op: str, m: float, n: int, k: int, dtype_bytes: int) -> float | None:
        if self.calibration is None:
            return None
        return self.calibration.lookup_s(self.gpu.name, op, m, n, k, dtype_bytes)

    # --- GEMMs and FFNs -------------------------------------------------------------------------

    def gemm(self, m: float, n: int, k: int, dtype_bytes: int = 2, name: str = "gemm") -> KernelCost:
        """C[m, n] = A[m, k] B[k, n]: reads A and B, writes C (in max(dtype_bytes, 2) bytes)."""
        for value, field in ((m, "m"), (n, "n"), (k, "k")):
            _check_count(value, field)
        if m == 0 or n == 0 or k == 0:
            return KernelCost.zero(name)
        flops = 2.0 * m * n * k
        nbytes = (m * k + k * n) * dtype_bytes + m * n * max(dtype_bytes, 2)
        measured = self._calibrated("gemm", m, n, k, dtype_bytes)
        if measured is not None:
            return KernelCost(name, flops, float(nbytes), measured, "calibrated", 1)
        return self.roofline(name, flops, nbytes, dtype_bytes)

    def _ffn(self, tokens: float, hidden: int, ffn: int, gated: bool, dtype_bytes: int,
             name: str) -> KernelCost:
        """One FFN (SwiGLU: w1, w3, w2; plain: w1, w2) on `tokens` tokens, weights read once."""
        _check_count(tokens, "tokens")
        if tokens == 0 or ffn == 0:
            return KernelCost.zero(name)
        measured = self._calibrated("expert_ffn", tokens, ffn, hidden, dtype_bytes)
        up = self.gemm(tokens, ffn, hidden, dtype_bytes, name)
        down = self.gemm(tokens, hidden, ffn, dtype_bytes, name)
        parts = [up, up, down] if gated else [up, down]
        cost = KernelCost.total(name, parts)
        if measured is not None:
            return KernelCost(name, cost.flops, cost.bytes, measured, "calibrated", cost.kernels)
        return cost

    def expert_ffn(self, tokens: float, model: Any, ffn: int | None = None) -> KernelCost:
        """One routed expert on `tokens` tokens (0 tokens: no kernel, zero cost)."""
        return self._ffn(tokens, model.hidden, model.ffn if ffn is None else ffn, model.gated,
                         model.dtype_bytes, "expert_ffn")

    def grouped_expert_ffn(self, tokens_per_expert: Any, model: Any, ffn: int | None = None
                           ) -> KernelCost:
        """One grouped GEMM kernel over the hosted experts (one launch).

        Weights of every expert with > 0 tokens are read once; experts without tokens cost nothing.
        Not calibrated (the table has no grouped op): the roofline of the summed work.
        """
        counts = np.asarray(tokens_per_expert, dtype=np.float64)
        if counts.size and counts.min() < 0:
            raise ScenarioError(f"must be >= 0, got {counts.min()}", "tokens_per_expert")
        tokens = float(counts.sum())
        active = int(np.count_nonzero(counts))
        if active == 0:
            return KernelCost.zero("grouped_expert_ffn")
        hidden, ffn = model.hidden, model.ffn if ffn is None else ffn
        matrices = 3 if model.gated else 2
        d = model.dtype_bytes
        flops = 2.0 * tokens * hidden * ffn * matrices
        weights = active * matrices * hidden * ffn * d
        # activations: read x (hidden), write/read the intermediate (ffn per up-matrix), write y
        activations = tokens * (hidden * d + (matrices - 1) * ffn * max(d, 2)
                                + ffn * d + hidden * max(d, 2))
        return self.roofline("grouped_expert_ffn", flops, weights + activations, d)

    def shared_experts(self, tokens: float, model: Any) -> KernelCost:
        """The shared experts of one MoE layer, as one FFN of shared_experts x shared_ffn."""
        width = model.shared_experts * model.shared_ffn
        return self._ffn(tokens, model.hidden, width, model.gated, model.dtype_bytes,
                         "shared_experts")

    def dense_ffn(self, tokens: float, model: Any, tp: int = 1) -> KernelCost:
        """The FFN of a non-MoE block, its intermediate size split over `tp` GPUs."""
        if tp < 1:
            raise ScenarioError(f"must be >= 1, got {tp}", "tp")
        return self._ffn(tokens, model.hidden, model.dense_ffn / tp, model.gated,
                         model.dtype_bytes, "dense_ffn")

    def router(self, tokens: float, model: Any) -> KernelCost:
        """Gate GEMM (tokens x hidden x experts) with softmax and top-k folded into the same kernel."""
        _check_count(tokens, "tokens")
        if tokens == 0:
            return KernelCost.zero("router")
        d, experts = model.dtype_bytes, model.experts
        gemm = self.gemm(tokens, experts, model.hidden, d, "router")
        topk_flops = 5.0 * tokens * experts  # exp, sum, divide, compare, select
        topk_bytes = tokens * experts * max(d, 2) + tokens * model.top_k * 8  # logits in; ids, weights out
        if gemm.bound == "calibrated":
            return KernelCost("router", gemm.flops + topk_flops, gemm.bytes + topk_bytes,
                              gemm.time_s + self.memory_time_s(topk_bytes), "calibrated", 1)
        return self.roofline("router", gemm.flops + topk_flops, gemm.bytes + topk_bytes, d)

    # --- attention ------------------------------------------------------------------------------

    def attention(self, tokens: float, model: Any, phase: str, context_len: float, batch: float,
                  tp: int = 1) -> KernelCost:
        """One attention block for `batch` sequences on one GPU of a `tp`-way tensor-parallel group.

        prefill: `tokens` new tokens (tokens / batch per sequence) attend causally to themselves and
        to ``context_len - tokens / batch`` cached ones; decode: one new token per sequence
        (tokens == batch) reads the KV cache of `context_len` positions. Projections and the score/
        value FLOPs are split by `tp`; the pre-attention layer norm is folded in as activation bytes.
        MLA caches one latent of kv_lora_rank per token (replicated on every TP rank) and decodes
        with the absorbed (latent-space) form.
        """
        if phase not in WORKLOAD_PHASES:
            raise ScenarioError(f"must be one of {', '.join(WORKLOAD_PHASES)}, got {phase!r}", "phase")
        for value, field in ((tokens, "tokens"), (batch, "batch"), (context_len, "context_len")):
            _check_count(value, field)
        if tp < 1:
            raise ScenarioError(f"must be >= 1, got {tp}", "tp")
        if tokens == 0:
            return KernelCost.zero("attention")
        if batch == 0:
            raise ScenarioError(f"must be >= 1 when tokens > 0, got {batch}", "batch")
        if phase == "decode" and tokens != batch:
            raise ScenarioError(f"decode processes one token per sequence: tokens must equal batch "
                                f"({batch}), got {tokens}", "tokens")
        new = tokens / batch  # new tokens per sequence
        if context_len < new:
            raise ScenarioError(f"must be >= the new tokens per sequence ({new:g}), got "
                                f"{context_len}", "context_len")
        d = model.dtype_bytes
        mla = model.attention == "mla"
        cached = context_len - new
        pairs = batch * (new * cached + new * (new + 1) / 2)  # causal (query, key) pairs
        heads = model.heads / tp
        rope = getattr(model, "rope_head_dim", 0)
        if mla:
            latent = model.kv_bytes_per_token_per_layer / d  # cached width per token
            kv_share = 1.0
            if phase == "decode":  # absorbed: scores over the latent, values in the latent
                pair_flops = 2.0 * heads * (latent + (model.kv_lora_rank - rope))
            else:
                pair_flops = 2.0 * heads * (2 * model.head_dim + rope)
            q_width, kv_width = heads * (model.head_dim + rope), latent
        else:
            kv_share = max(1.0 / tp, 1.0 / model.kv_heads)  # KV heads are replicated past kv_heads
            pair_flops = 4.0 * heads * model.head_dim
            q_width = heads * model.head_dim
            kv_width = 2 * model.kv_heads * model.head_dim * kv_share
        kv_bytes_per_token = model.kv_bytes_per_token_per_layer * kv_share

        # projections (QKV in, O out) + layer norm + KV-cache append
        proj_flops = 2.0 * tokens * model.attention_params / tp
        weights = model.attention_params * d / tp
        activations = tokens * d * (4 * model.hidden + q_width + kv_width + q_width)
        projections = self.roofline("attention", proj_flops, weights + activations
                                    + tokens * kv_bytes_per_token, d, kernels=2)
        # the core (flash attention): reads Q and the cache, writes O
        core_flops = pairs * pair_flops
        core_bytes = (batch * context_len * kv_bytes_per_token
                      + tokens * d * (q_width + q_width))
        core = self.roofline("attention", core_flops, core_bytes, d, kernels=1, attention=True)
        return KernelCost.total("attention", [projections, core])

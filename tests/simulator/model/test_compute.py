"""Kernel cost model (simulator.model.compute) and the calibration table (simulator.model.kernel_table)."""

from dataclasses import dataclass, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.model.kernel_table import CalibrationPoint, CalibrationTable
from simulator.model.compute import ComputeModel, KernelCost, kernel_params, reference_gemms
from simulator.errors import ScenarioError
from topologies.devices import gpu_catalogue, gpu_spec

A100 = "a100-sxm4-80gb"
H100 = "h100-sxm5-80gb"


@dataclass(frozen=True)
class StandInModel:
    """The ModelSpec fields the compute model reads (Mixtral-8x7B's shape by default)."""

    name: str = "stand-in"
    layers: int = 32
    dense_layers: int = 0
    hidden: int = 4096
    ffn: int = 14336
    dense_ffn: int = 0
    experts: int = 8
    top_k: int = 2
    shared_experts: int = 0
    shared_ffn: int = 0
    heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    attention: str = "gqa"
    kv_lora_rank: int = 0
    gated: bool = True
    vocab: int = 32000
    dtype_bytes: int = 2
    source: str = "test"
    rope_head_dim: int = 0

    @property
    def moe_layer_indices(self):
        return tuple(range(self.dense_layers, self.layers))

    @property
    def moe_layers(self):
        return len(self.moe_layer_indices)

    @property
    def expert_params(self):
        return (3 if self.gated else 2) * self.hidden * self.ffn

    @property
    def expert_bytes(self):
        return self.expert_params * self.dtype_bytes

    @property
    def dense_ffn_params(self):
        return (3 if self.gated else 2) * self.hidden * self.dense_ffn

    @property
    def attention_params(self):
        if self.attention == "gqa":
            return 2 * self.hidden * (self.heads + self.kv_heads) * self.head_dim
        return 4 * self.hidden * self.heads * self.head_dim  # rough, enough for the tests

    @property
    def kv_bytes_per_token_per_layer(self):
        if self.attention == "mla":
            return self.kv_lora_rank * self.dtype_bytes
        return 2 * self.kv_heads * self.head_dim * self.dtype_bytes


MIXTRAL = StandInModel()


@pytest.fixture(params=[A100, H100])
def model(request):
    return ComputeModel(gpu_spec(request.param))


@pytest.fixture
def a100():
    return ComputeModel(gpu_spec(A100))


def saturated_time(compute, flops, dtype_bytes=2):
    """Closed form for a kernel past the half-work point: launch + (F + W_half) / (peak eff_max)."""
    p = compute.params
    peak = compute.gpu.peak_flops * p.peak_scale[dtype_bytes]
    return compute.launch_s + (flops + p.half_work_flops) / (peak * p.eff_max[dtype_bytes])


# --- the roofline -------------------------------------------------------------------------------

def test_large_gemm_equals_the_compute_roofline(model):
    m = n = k = 8192
    flops = 2.0 * m * n * k
    cost = model.gemm(m, n, k)
    assert cost.bound == "compute"
    assert cost.flops == flops
    expected = model.launch_s + flops / (model.gpu.peak_flops * model.eff_c(flops))
    assert cost.time_s == pytest.approx(expected, rel=1e-12)
    assert cost.time_s == pytest.approx(saturated_time(model, flops), rel=1e-12)


def test_tiny_m_gemm_is_memory_bound_on_its_weights(model):
    m, n, k = 1, 8192, 8192
    cost = model.gemm(m, n, k)
    nbytes = 2 * (m * k + k * n + m * n)
    assert cost.bound == "memory"
    assert cost.bytes == nbytes
    expected = model.launch_s + nbytes / (model.gpu.hbm_Bps * model.params.eff_m)
    assert cost.time_s == pytest.approx(expected, rel=1e-12)


def test_eff_c_is_the_m_half_curve_for_fixed_n_and_k(model):
    n, k = 4096, 7168
    p = model.params
    m_half = p.half_work_flops / (2.0 * n * k)
    for m in (64, 128, 1024, 4096):
        assert model.eff_c(2.0 * m * n * k) == pytest.approx(p.eff_max[2] * m / (m + m_half), rel=1e-12)


def test_eff_c_rises_towards_eff_max(model):
    flops = np.logspace(3, 15, 50)
    eff = [model.eff_c(f) for f in flops]
    assert all(b >= a * (1 - 1e-12) for a, b in zip(eff, eff[1:]))
    assert eff[-1] == pytest.approx(model.params.eff_max[2], rel=1e-3)
    assert eff[-1] < model.params.eff_max[2]


def test_tiny_kernel_is_no_slower_than_one_sm_doing_all_of_it(a100):
    flops = 1e6  # far below W_half / sms: the fill/drain tail cannot exceed the work itself
    one_sm = flops / (a100.gpu.peak_flops / a100.params.sms * a100.params.eff_max[2])
    assert a100.compute_time_s(flops) == pytest.approx(one_sm, rel=1e-12)


def test_calibrated_constants_reproduce_the_published_gemms():
    """Every row the constants were fitted to (Azure cuBLASLt/hipBLASLt, DeepGEMM) within 30%."""
    errors = []
    for row in reference_gemms():
        compute = ComputeModel(gpu_spec(row["gpu"]))
        measured_s = 2.0 * row["m"] * row["n"] * row["k"] / (row["tflops"] * 1e12)
        ratio = compute.gemm(row["m"], row["n"], row["k"], row["dtype_bytes"]).time_s / measured_s
        assert 1 / 1.3 < ratio < 1.3, (row, ratio)
        errors.append(np.log(ratio))
    assert np.sqrt(np.mean(np.square(errors))) < 0.12


def test_brief_curve_points_come_out_of_the_mechanism():
    """A100 cuBLAS 1024^3 ~38% and 8192^3 ~81%; DeepGEMM M=64 ~15%, M=4096 ~65% of the FP8 peak."""
    a100, h100 = ComputeModel(gpu_spec(A100)), ComputeModel(gpu_spec(H100))

    def share(compute, m, n, k, d):
        return compute.gemm(m, n, k, d).tflops * 1e12 / compute.peak_flops(d)

    assert share(a100, 1024, 1024, 1024, 2) == pytest.approx(0.38, abs=0.05)
    assert share(a100, 8192, 8192, 8192, 2) == pytest.approx(0.81, abs=0.05)
    assert share(h100, 64, 4096, 7168, 1) == pytest.approx(0.15, abs=0.03)
    assert share(h100, 128, 4096, 7168, 1) == pytest.approx(0.27, abs=0.05)
    assert share(h100, 4096, 4096, 7168, 1) == pytest.approx(0.66, abs=0.05)


def test_fp8_doubles_the_peak_on_hopper_but_not_on_ampere():
    h100, a100 = ComputeModel(gpu_spec(H100)), ComputeModel(gpu_spec(A100))
    assert h100.peak_flops(1) == 2 * h100.peak_flops(2)
    assert a100.peak_flops(1) == a100.peak_flops(2)
    assert h100.peak_flops(4) == 0.5 * h100.peak_flops(2)


def test_unknown_element_size_is_rejected(a100):
    with pytest.raises(ScenarioError, match="dtype_bytes: element size must be one of 1, 2, 4"):
        a100.gemm(16, 16, 16, dtype_bytes=3)


def test_every_catalogue_gpu_has_its_own_constants():
    for name in gpu_catalogue():
        params = kernel_params(name)
        assert params.family != "generic", name
        assert params.sms > 0 and params.half_work_flops > 0 and params.launch_s > 0
        assert 0 < params.eff_m < 1 and 0 < params.attention_eff < 1
        assert all(0 < eff < 1 for eff in params.eff_max.values())


def test_launch_override(a100):
    graph = ComputeModel(gpu_spec(A100), launch_s=0.0)
    assert a100.gemm(1, 4096, 4096).time_s - graph.gemm(1, 4096, 4096).time_s == pytest.approx(
        a100.params.launch_s, rel=1e-9)
    with pytest.raises(ScenarioError, match="launch_s"):
        ComputeModel(gpu_spec(A100), launch_s=-1.0)


# --- experts --------------------------------------------------------------------------------------

def test_zero_tokens_cost_nothing(model):
    zero = [
        model.gemm(0, 4096, 4096),
        model.expert_ffn(0, MIXTRAL),
        model.grouped_expert_ffn(np.zeros(8, dtype=int), MIXTRAL),
        model.router(0, MIXTRAL),
        model.attention(0, MIXTRAL, "prefill", 512, 0),
        model.attention(0, MIXTRAL, "decode", 512, 0),
        model.shared_experts(128, MIXTRAL),  # Mixtral has no shared expert
        model.dense_ffn(128, MIXTRAL),  # nor dense FFN blocks
    ]
    for cost in zero:
        assert (cost.time_s, cost.flops, cost.bytes, cost.kernels, cost.bound) == (0.0, 0.0, 0.0, 0, "none")


def test_expert_time_is_flat_to_64_tokens_then_grows(model):
    t = {n: model.expert_ffn(n, MIXTRAL).time_s for n in (1, 16, 64, 1024, 4096)}
    assert t[64] / t[1] < 1.3
    assert t[16] / t[1] < 1.3
    assert t[1024] > 2 * t[64]
    assert t[4096] > 3.5 * t[1024]


def test_expert_weights_are_read_once_per_call(a100):
    tokens = 10
    cost = a100.expert_ffn(tokens, MIXTRAL)
    h, f = MIXTRAL.hidden, MIXTRAL.ffn
    activations = 2 * tokens * (2 * (h + f) + (f + h))  # w1, w3: read x, write hidden; w2: read, write
    assert cost.bytes == MIXTRAL.expert_bytes + activations
    assert cost.flops == 2.0 * tokens * MIXTRAL.expert_params
    assert cost.kernels == 3 and cost.bound == "memory"


def test_duplicating_a_lightly_loaded_expert_is_not_free(model):
    one = model.expert_ffn(32, MIXTRAL).time_s
    two_replicas = 2 * model.expert_ffn(16, MIXTRAL).time_s
    assert two_replicas > 1.9 * one


def test_plain_ffn_has_two_gemms(a100):
    plain = replace(MIXTRAL, gated=False)
    cost = a100.expert_ffn(4096, plain)
    assert cost.kernels == 2
    assert cost.flops == 2.0 * 4096 * 2 * MIXTRAL.hidden * MIXTRAL.ffn


def test_grouped_gemm_reads_the_weights_of_active_experts_once_in_one_launch(model):
    counts = np.array([0, 5, 0, 12, 3, 0, 0, 0])
    cost = model.grouped_expert_ffn(counts, MIXTRAL)
    assert cost.kernels == 1
    assert cost.flops == 2.0 * counts.sum() * MIXTRAL.expert_params
    weights = 3 * MIXTRAL.expert_bytes
    assert weights < cost.bytes < weights * 1.01
    separate = sum(model.expert_ffn(int(c), MIXTRAL).time_s for c in counts)
    assert cost.time_s < separate  # fewer launches, same bytes
    assert cost.time_s == pytest.approx(
        model.launch_s + cost.bytes / (model.gpu.hbm_Bps * model.params.eff_m), rel=1e-12)


def test_shared_experts_are_one_ffn_of_their_total_width(a100):
    deepseek_like = replace(MIXTRAL, shared_experts=2, shared_ffn=1408)
    shared = a100.shared_experts(300, deepseek_like)
    alone = a100.expert_ffn(300, deepseek_like, ffn=2 * 1408)
    assert (shared.time_s, shared.flops, shared.bytes) == (alone.time_s, alone.flops, alone.bytes)
    assert shared.name == "shared_experts"


def test_dense_ffn_is_split_by_tensor_parallelism(a100):
    hybrid = replace(MIXTRAL, dense_layers=1, dense_ffn=18432)
    whole, half = a100.dense_ffn(2048, hybrid), a100.dense_ffn(2048, hybrid, tp=2)
    assert half.flops == pytest.approx(whole.flops / 2, rel=1e-12)
    assert half.time_s < whole.time_s
    with pytest.raises(ScenarioError, match="tp"):
        a100.dense_ffn(1, hybrid, tp=0)


def test_router_is_the_gate_gemm_plus_softmax_top_k(a100):
    cost = a100.router(1000, MIXTRAL)
    assert cost.flops == 2.0 * 1000 * MIXTRAL.hidden * MIXTRAL.experts + 5.0 * 1000 * MIXTRAL.experts
    assert cost.kernels == 1
    assert cost.time_s < a100.expert_ffn(1000, MIXTRAL).time_s / 20


# --- attention ------------------------------------------------------------------------------------

def test_prefill_counts_causal_pairs(a100):
    s = 2048
    no_weights = replace(MIXTRAL, hidden=1)  # projections vanish next to the core
    cost = a100.attention(s, MIXTRAL, "prefill", s, 1)
    core = cost.flops - 2.0 * s * MIXTRAL.attention_params
    assert core == pytest.approx(4.0 * MIXTRAL.heads * MIXTRAL.head_dim * s * (s + 1) / 2, rel=1e-12)
    assert a100.attention(s, no_weights, "prefill", s, 1).bound == "compute"


def test_decode_reads_the_kv_cache_and_is_memory_bound(model):
    short = model.attention(32, MIXTRAL, "decode", 1024, 32)
    long = model.attention(32, MIXTRAL, "decode", 2048, 32)
    assert long.bytes - short.bytes == pytest.approx(32 * 1024 * MIXTRAL.kv_bytes_per_token_per_layer,
                                                     rel=1e-12)
    assert long.bound == "memory"
    assert long.time_s > short.time_s


def test_decode_needs_one_token_per_sequence(a100):
    with pytest.raises(ScenarioError, match="tokens: decode processes one token per sequence"):
        a100.attention(64, MIXTRAL, "decode", 1024, 32)
    with pytest.raises(ScenarioError, match="phase: must be one of prefill, decode"):
        a100.attention(64, MIXTRAL, "train", 1024, 32)
    with pytest.raises(ScenarioError, match="context_len"):
        a100.attention(512, MIXTRAL, "prefill", 256, 1)


def test_tensor_parallel_splits_projections_and_gqa_cache_not_mla_cache(a100):
    one = a100.attention(1024, MIXTRAL, "prefill", 1024, 1, tp=1)
    two = a100.attention(1024, MIXTRAL, "prefill", 1024, 1, tp=2)
    assert two.flops == pytest.approx(one.flops / 2, rel=1e-12)

    def cache_bytes(model, tp):  # bytes the cache of 1000 more positions adds, 8 sequences
        return (a100.attention(8, model, "decode", 2000, 8, tp=tp).bytes
                - a100.attention(8, model, "decode", 1000, 8, tp=tp).bytes)

    assert cache_bytes(MIXTRAL, 2) == pytest.approx(cache_bytes(MIXTRAL, 1) / 2, rel=1e-12)
    assert cache_bytes(MIXTRAL, 16) == pytest.approx(cache_bytes(MIXTRAL, 1) / 8, rel=1e-12)  # 8 KV heads
    mla = replace(MIXTRAL, attention="mla", kv_lora_rank=576, rope_head_dim=64, kv_heads=32)
    assert cache_bytes(mla, 2) == pytest.approx(cache_bytes(mla, 1), rel=1e-12)  # latent replicated


def test_mla_decode_uses_the_latent_cache(a100):
    mla = replace(MIXTRAL, attention="mla", kv_lora_rank=576, rope_head_dim=64, heads=128)
    short = a100.attention(16, mla, "decode", 1000, 16)
    long = a100.attention(16, mla, "decode", 2000, 16)
    assert long.bytes - short.bytes == pytest.approx(16 * 1000 * 576 * 2, rel=1e-12)
    per_pair = 2.0 * 128 * (576 + 512)  # scores over the latent, values in the 512-wide latent
    assert long.flops - short.flops == pytest.approx(16 * 1000 * per_pair, rel=1e-12)


# --- invariants -----------------------------------------------------------------------------------

GPUS = st.sampled_from(sorted(gpu_catalogue()))


@settings(max_examples=60, deadline=None)
@given(gpu=GPUS, a=st.integers(0, 20000), b=st.integers(0, 20000))
def test_time_is_monotone_in_tokens(gpu, a, b):
    lo, hi = sorted((a, b))
    compute = ComputeModel(gpu_spec(gpu))
    assert compute.expert_ffn(lo, MIXTRAL).time_s <= compute.expert_ffn(hi, MIXTRAL).time_s
    assert compute.gemm(lo, 4096, 1024).time_s <= compute.gemm(hi, 4096, 1024).time_s
    assert compute.router(lo, MIXTRAL).time_s <= compute.router(hi, MIXTRAL).time_s
    assert (compute.attention(lo, MIXTRAL, "prefill", max(lo, 1), 1).time_s
            <= compute.attention(hi, MIXTRAL, "prefill", max(hi, 1), 1).time_s)
    assert (compute.attention(lo, MIXTRAL, "decode", 4096, lo).time_s
            <= compute.attention(hi, MIXTRAL, "decode", 4096, hi).time_s)


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(0, 3000), min_size=1, max_size=16), extra=st.integers(0, 500),
       which=st.integers(0, 15))
def test_grouped_time_is_monotone_in_any_experts_tokens(counts, extra, which):
    compute = ComputeModel(gpu_spec(H100))
    more = list(counts)
    more[which % len(more)] += extra
    assert (compute.grouped_expert_ffn(counts, MIXTRAL).time_s
            <= compute.grouped_expert_ffn(more, MIXTRAL).time_s)


def test_costs_are_deterministic_and_frozen(a100):
    assert a100.expert_ffn(77, MIXTRAL) == ComputeModel(gpu_spec(A100)).expert_ffn(77, MIXTRAL)
    with pytest.raises(AttributeError):
        a100.expert_ffn(77, MIXTRAL).time_s = 0.0


def test_total_sums_parts_and_names_the_slowest_bound():
    parts = [KernelCost("a", 1.0, 10.0, 2e-6, "memory", 1), KernelCost("b", 5.0, 1.0, 3e-6, "compute", 2),
             KernelCost.zero("c")]
    total = KernelCost.total("t", parts)
    assert (total.flops, total.bytes, total.kernels, total.bound) == (6.0, 11.0, 3, "compute")
    assert total.time_s == pytest.approx(5e-6)
    assert KernelCost.total("none", [KernelCost.zero("x")]) == KernelCost.zero("none")


def test_real_catalogue_model_works_like_the_stand_in():
    models = pytest.importorskip("workloads.models")
    mixtral = models.model_spec("mixtral-8x7b")
    compute = ComputeModel(gpu_spec(A100))
    for tokens in (0, 1, 64, 4096):
        real = compute.expert_ffn(tokens, mixtral)
        stand_in = compute.expert_ffn(tokens, MIXTRAL)
        assert (real.time_s, real.flops, real.bytes) == (stand_in.time_s, stand_in.flops, stand_in.bytes)
    assert compute.expert_ffn(64, mixtral).time_s / compute.expert_ffn(1, mixtral).time_s < 1.3
    for name in models.model_catalogue():
        spec = models.model_spec(name)
        for phase, tokens, batch in (("prefill", 1024, 2), ("decode", 8, 8)):
            cost = compute.attention(tokens, spec, phase, 2048, batch, tp=2)
            assert cost.time_s > 0 and cost.flops > 0, name
        assert compute.router(128, spec).time_s > 0
        assert compute.grouped_expert_ffn([3, 0, 9], spec).kernels == 1


# --- calibration table ----------------------------------------------------------------------------

def table(*rows, path="t.csv"):
    return CalibrationTable([CalibrationPoint(A100, op, m, n, k, t / 1e6, "test", 2, i + 2)
                             for i, (op, m, n, k, t) in enumerate(rows)], path)


def test_calibration_hits_listed_points_exactly_and_interpolates_linearly():
    calib = table(("gemm", 16, 4096, 4096, 30.0), ("gemm", 256, 4096, 4096, 90.0))
    compute = ComputeModel(gpu_spec(A100), calib)
    assert compute.gemm(16, 4096, 4096).time_s == 30e-6
    assert compute.gemm(256, 4096, 4096).time_s == 90e-6
    mid = compute.gemm(136, 4096, 4096)
    assert mid.time_s == pytest.approx(60e-6, rel=1e-12)
    assert mid.bound == "calibrated" and mid.flops == 2.0 * 136 * 4096 * 4096
    roofline = ComputeModel(gpu_spec(A100))
    assert compute.gemm(257, 4096, 4096) == roofline.gemm(257, 4096, 4096)  # above the range
    assert compute.gemm(8, 4096, 4096) == roofline.gemm(8, 4096, 4096)  # below it
    assert compute.gemm(16, 4096, 2048) == roofline.gemm(16, 4096, 2048)  # unlisted shape
    assert compute.gemm(0, 4096, 4096).time_s == 0.0
    other = ComputeModel(gpu_spec(H100), calib)  # rows of another GPU never apply
    assert other.gemm(16, 4096, 4096) == ComputeModel(gpu_spec(H100)).gemm(16, 4096, 4096)


def test_expert_ffn_rows_replace_the_whole_expert_and_gemm_rows_its_gemms():
    h, f = MIXTRAL.hidden, MIXTRAL.ffn
    whole = ComputeModel(gpu_spec(A100), table(("expert_ffn", 1, f, h, 200.0),
                                               ("expert_ffn", 65, f, h, 264.0)))
    cost = whole.expert_ffn(33, MIXTRAL)
    assert cost.time_s == pytest.approx(232e-6, rel=1e-12) and cost.bound == "calibrated"
    assert cost.flops == 2.0 * 33 * MIXTRAL.expert_params
    gemms = ComputeModel(gpu_spec(A100), table(("gemm", 33, f, h, 70.0), ("gemm", 33, h, f, 71.0)))
    assert gemms.expert_ffn(33, MIXTRAL).time_s == pytest.approx(211e-6, rel=1e-12)


def write(tmp_path, text, name="kernels.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = "gpu,op,m,n,k,time_us,source\n"


def test_calibration_csv_round_trip_skips_comments_and_blank_lines(tmp_path):
    path = write(tmp_path, "# measured with cuBLAS\n" + GOOD + "\n"
                 f"{A100},gemm,16,4096,4096,30.5,run 1\n# next\n{A100},gemm,32,4096,4096,31,run 1\n")
    calib = CalibrationTable.from_csv(path)
    assert len(calib) == 2 and calib.gpus == {A100}
    assert [p.line for p in calib.points] == [4, 6]
    assert calib.lookup_s(A100, "gemm", 24, 4096, 4096) == pytest.approx(30.75e-6, rel=1e-12)
    fp8 = write(tmp_path, "gpu,op,m,n,k,time_us,source,dtype_bytes\n"
                f"{H100},gemm,64,4096,7168,13.1,DeepGEMM,1\n", "fp8.csv")
    compute = ComputeModel(gpu_spec(H100), CalibrationTable.from_csv(fp8))
    assert compute.gemm(64, 4096, 7168, dtype_bytes=1).time_s == pytest.approx(13.1e-6)
    assert compute.gemm(64, 4096, 7168, dtype_bytes=2).bound != "calibrated"


@pytest.mark.parametrize("text, where, message", [
    ("gpu,op,m,n,time_us\n", ":1", "missing column 'k', 'source'"),
    (GOOD + f"{A100},gemm,16,4096,4096,30,a\n{A100},gemm,32,4096,4096,fast,b\n", ":3: column 'time_us'",
     "must be a number > 0 (microseconds), got 'fast'"),
    (GOOD + f"{A100},gemm,16,4096,4096,-5,a\n", ":2: column 'time_us'", "must be a number > 0"),
    (GOOD + f"{A100},gemm,16,4096,4096,nan,a\n", ":2: column 'time_us'", "must be a number > 0"),
    (GOOD + f"{A100},gemm,1.5,4096,4096,5,a\n", ":2: column 'm'", "must be an integer >= 1, got '1.5'"),
    (GOOD + f"{A100},gemm,16,0,4096,5,a\n", ":2: column 'n'", "must be an integer >= 1, got 0"),
    (GOOD + f"{A100},conv,16,4096,4096,5,a\n", ":2: column 'op'", "must be one of gemm, expert_ffn"),
    (GOOD + "v100,gemm,16,4096,4096,5,a\n", ":2: column 'gpu'", "unknown GPU 'v100'; known:"),
    (GOOD + f"{A100},gemm,16,4096,4096\n", ":2", "has 5 values, the header has 7 columns"),
    (GOOD + f"{A100},gemm,16,4096,4096,5,a\n{A100},gemm,16,4096,4096,6,b\n", ":3", "duplicate of line 2"),
    ("# nothing here\n\n", "", "empty: needs a header line"),
    ("gpu,op,m,n,k,time_us,source,dtype_bytes\n" + f"{A100},gemm,16,4096,4096,5,a,3\n",
     ":2: column 'dtype_bytes'", "must be one of 1, 2, 4, got '3'"),
])
def test_bad_calibration_csv_names_file_line_and_column(tmp_path, text, where, message):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as error:
        CalibrationTable.from_csv(path)
    assert str(error.value).startswith(f"{path}{where}: ")
    assert message in str(error.value)


def test_missing_calibration_file_is_a_scenario_error(tmp_path):
    with pytest.raises(ScenarioError, match="no such file"):
        CalibrationTable.from_csv(tmp_path / "absent.csv")

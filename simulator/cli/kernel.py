"""`moesim kernel --gpu G --op OP`: what the compute model says one kernel costs.

Prints time, FLOPs, bytes, achieved TFLOP/s and the bound, one row per token count, so a
``--tokens 1:4096:x2`` sweep shows the efficiency curve (flat while weight-bandwidth bound, then
growing with tokens).
"""

from __future__ import annotations

import json
import re

from simulator.model.compute import ComputeModel, KernelCost
from simulator.errors import ScenarioError
from topologies.devices import gpu_spec

HELP = "cost of one kernel (expert FFN, GEMM, attention, router) on a GPU, over token counts"
OPS = ("ffn", "gemm", "attention", "router")
DEFAULT_TOKENS = {
    "ffn": "1,4,16,64,128,256,512,1024,4096",
    "router": "1,16,128,1024,4096",
    "prefill": "128,512,2048,8192",
    "decode": "1,8,32,128",
}
DEFAULT_DECODE_CONTEXT = 2048
MAX_ROWS = 10_000


def add_arguments(parser) -> None:
    parser.add_argument("--gpu", required=True, help="GPU catalogue name, e.g. a100-sxm4-80gb")
    parser.add_argument("--op", required=True, choices=OPS,
                        help="ffn: one routed expert; gemm: C[m,n]=A[m,k]B[k,n]; attention; router")
    parser.add_argument("--tokens", metavar="LIST",
                        help="token counts: N, a list 1,16,128, or a range A:B (step 1), A:B:S "
                             "(step S) or A:B:xF (times F); for gemm it sets m, for decode "
                             "attention the batch")
    parser.add_argument("--model", default="mixtral-8x7b",
                        help="model catalogue name for ffn, attention and router (default: %(default)s)")
    parser.add_argument("--m", type=int, help="gemm: rows of A and C (tokens)")
    parser.add_argument("--n", type=int, help="gemm: columns of B and C")
    parser.add_argument("--k", type=int, help="gemm: inner dimension")
    parser.add_argument("--dtype-bytes", type=int, choices=(1, 2, 4),
                        help="element size (default: the model's; 2 for gemm)")
    parser.add_argument("--phase", choices=("prefill", "decode"), default="prefill",
                        help="attention phase (default: %(default)s)")
    parser.add_argument("--context", type=int,
                        help="attention: KV positions per sequence (prefill default: tokens/batch, "
                             f"decode default: {DEFAULT_DECODE_CONTEXT})")
    parser.add_argument("--batch", type=int,
                        help="attention: sequences (prefill default 1; decode: the --tokens value)")
    parser.add_argument("--tp", type=int, default=1, help="attention: tensor-parallel degree")
    parser.add_argument("--launch-us", type=float, help="override the per-kernel launch overhead")
    parser.add_argument("--calibration", metavar="CSV", help="measured kernel times (docs/compute.md)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def parse_counts(text: str, option: str = "--tokens") -> list[int]:
    """``N``, ``A,B,C`` or ``A:B[:S|:xF]`` (inclusive of B when the steps land on it) -> counts."""
    counts: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+):(\d+)(?::(x?)(\d+(?:\.\d+)?))?", part)
        if re.fullmatch(r"\d+", part):
            counts.append(int(part))
        elif match:
            start, stop, times, step = match.groups()
            start, stop = int(start), int(stop)
            step_value = float(step) if step else 1.0
            if stop < start:
                raise ScenarioError(f"range {part!r} must not go down", option)
            if times and (step_value <= 1 or start == 0):
                raise ScenarioError(f"range {part!r}: a multiplier needs start >= 1 and factor > 1",
                                    option)
            if not times and (step_value < 1 or step_value != int(step_value)):
                raise ScenarioError(f"range {part!r}: step must be an integer >= 1", option)
            value = float(start)
            while value <= stop and len(counts) <= MAX_ROWS:
                counts.append(int(round(value)))
                value = value * step_value if times else value + step_value
        else:
            raise ScenarioError(f"expected N, A,B,... or A:B[:S|:xF] with integers >= 0, got {part!r}",
                                option)
        if len(counts) > MAX_ROWS:
            raise ScenarioError(f"at most {MAX_ROWS} rows", option)
    return counts


def run(args) -> int:
    gpu = gpu_spec(args.gpu, field="--gpu")
    if args.launch_us is not None and not args.launch_us >= 0:
        raise ScenarioError(f"must be >= 0, got {args.launch_us}", "--launch-us")
    calibration = None
    if args.calibration:
        from simulator.model.kernel_table import CalibrationTable

        calibration = CalibrationTable.from_csv(args.calibration)
    launch_s = None if args.launch_us is None else args.launch_us * 1e-6
    compute = ComputeModel(gpu, calibration, launch_s=launch_s)
    title, rows = _rows(args, compute)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(title)
        print(_table(rows))
    return 0


def _rows(args, compute: ComputeModel) -> tuple[str, list[dict]]:
    op = args.op
    if op == "gemm":
        return _gemm_rows(args, compute)
    from workloads.models import model_spec

    model = model_spec(args.model, field="--model")
    if args.dtype_bytes is not None:
        from dataclasses import replace

        model = replace(model, dtype_bytes=args.dtype_bytes)
    dtype = model.dtype_bytes
    if op == "attention":
        return _attention_rows(args, compute, model)
    counts = parse_counts(args.tokens or DEFAULT_TOKENS[op])
    rows = []
    for tokens in counts:
        cost = compute.expert_ffn(tokens, model) if op == "ffn" else compute.router(tokens, model)
        rows.append(_row(cost, compute, dtype, op=op, model=model.name, tokens=tokens))
    what = "one routed expert FFN" if op == "ffn" else "router (gate GEMM + softmax/top-k)"
    shape = (f"hidden {model.hidden}, ffn {model.ffn}, {'SwiGLU' if model.gated else 'plain'}"
             if op == "ffn" else f"hidden {model.hidden}, experts {model.experts}, top-{model.top_k}")
    return _title(compute, f"{model.name} {what} ({shape}, {dtype}-byte elements)"), rows


def _gemm_rows(args, compute: ComputeModel) -> tuple[str, list[dict]]:
    if args.n is None or args.k is None or (args.m is None and args.tokens is None):
        raise ScenarioError("gemm needs --n, --k and --m (or --tokens for a list of m)", "--op")
    for value, option in ((args.n, "--n"), (args.k, "--k"), (args.m, "--m")):
        if value is not None and value < 1:
            raise ScenarioError(f"must be >= 1, got {value}", option)
    dtype = args.dtype_bytes or 2
    counts = parse_counts(args.tokens) if args.tokens else [args.m]
    rows = [_row(compute.gemm(m, args.n, args.k, dtype), compute, dtype, op="gemm", tokens=m,
                 m=m, n=args.n, k=args.k) for m in counts]
    return _title(compute, f"GEMM m x {args.n} x {args.k} ({dtype}-byte elements)"), rows


def _attention_rows(args, compute: ComputeModel, model) -> tuple[str, list[dict]]:
    phase, dtype = args.phase, model.dtype_bytes
    for value, option in ((args.context, "--context"), (args.batch, "--batch"), (args.tp, "--tp")):
        if value is not None and value < 1:
            raise ScenarioError(f"must be >= 1, got {value}", option)
    if phase == "decode" and args.tokens and args.batch is not None:
        raise ScenarioError("in decode --tokens is the batch (one token per sequence): give one "
                            "of --tokens and --batch", "--batch")
    if phase == "decode":
        counts = parse_counts(args.tokens or str(args.batch or DEFAULT_TOKENS["decode"]))
    else:
        counts = parse_counts(args.tokens or DEFAULT_TOKENS["prefill"])
    rows = []
    for tokens in counts:
        batch = tokens if phase == "decode" else (args.batch or 1)
        if phase == "decode":
            context = args.context or DEFAULT_DECODE_CONTEXT
        else:
            context = args.context if args.context is not None else tokens / batch
        cost = compute.attention(tokens, model, phase, context, batch, tp=args.tp)
        rows.append(_row(cost, compute, dtype, op="attention", model=model.name, tokens=tokens,
                         phase=phase, batch=batch, context=context, tp=args.tp))
    kind = "MLA" if model.attention == "mla" else f"GQA {model.heads}/{model.kv_heads} heads"
    return _title(compute, f"{model.name} attention ({kind}, head_dim {model.head_dim}), {phase}, "
                           f"tp {args.tp}"), rows


def _title(compute: ComputeModel, what: str) -> str:
    p = compute.params
    return (f"{what} on {compute.gpu.name} [{p.family}: peak {compute.gpu.peak_flops / 1e12:.1f} "
            f"TFLOP/s bf16, HBM {compute.gpu.hbm_Bps / 1e9:.0f} GB/s x {p.eff_m:.3f}, "
            f"launch {compute.launch_s * 1e6:.2f} us]")


def _row(cost: KernelCost, compute: ComputeModel, dtype: int, **fields) -> dict:
    peak = compute.peak_flops(dtype)
    return {
        **fields,
        "gpu": compute.gpu.name,
        "time_us": cost.time_s * 1e6,
        "flops": cost.flops,
        "bytes": cost.bytes,
        "tflops": cost.tflops,
        "percent_of_peak": 100.0 * cost.flops / cost.time_s / peak if cost.time_s > 0 else 0.0,
        "bound": cost.bound,
        "kernels": cost.kernels,
    }


def _table(rows: list[dict]) -> str:
    lines = [f"{'tokens':>8} {'time_us':>11} {'GFLOP':>10} {'MB':>10} {'TFLOP/s':>8} {'%peak':>6}  bound"]
    for row in rows:
        lines.append(f"{row['tokens']:>8} {row['time_us']:>11.2f} {row['flops'] / 1e9:>10.3f} "
                     f"{row['bytes'] / 1e6:>10.2f} {row['tflops']:>8.1f} {row['percent_of_peak']:>6.1f}  "
                     f"{row['bound']}")
    return "\n".join(lines)

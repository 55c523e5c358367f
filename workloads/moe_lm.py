"""Training-time expert load: train a small MoE language model and record its expert load shares.

"Prediction Is All MoE Needs" (arXiv 2404.16914) traced the share of tokens each expert
receives at every training step and found a *transient* phase (loads fluctuate while the
router learns) followed by a *stable* one (loads keep their level, so the recent past
predicts the next thousands of steps). This module reproduces that measurement at laptop
scale, for real: a byte-level MoE transformer trained with torch on CPU on a text file,
recording per step and MoE layer the fraction of token-expert assignments each expert got.

- `train_load_trace(text_path, steps, ...)` trains and returns a `TrainingLoadTrace`;
- `TrainingLoadTrace` holds ``shares`` float32 [steps, layers, experts] (rows sum to 1) and
  the LM loss per step, and is one ``.npz`` on disk (``shares``, ``loss``, JSON ``meta``);
- ``python -m workloads.moe_lm --text FILE --steps N --out FILE.npz`` is the command line.

The model: token + position embeddings, `layers` pre-norm blocks of causal self-attention
and an MoE FFN (`experts` ReLU experts, softmax router, top-k, no capacity limit so the load
is exactly what the router chose), tied output head; AdamW with linear warm-up. The optional
auxiliary loss is Switch Transformer's ``coef · E · Σ_e f_e · P_e`` (f_e = share of
assignments, P_e = mean router probability), summed over MoE layers. torch is optional and
imported only when training (``pip install moesim[lstm]``); loading a trace needs only numpy.
Runs are deterministic for a given seed and thread count: one seeded torch generator for the
weights, one numpy generator for the batches, deterministic algorithms on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from simulator.safeio import read_bytes
from workloads.errors import WorkloadError
from workloads.npz import load_npz, save_npz_atomic

KIND = "training-load"
_SUM_TOLERANCE = 1e-3  # float32 shares of one layer-step must sum to 1 within this


# --- the trace --------------------------------------------------------------------------------

@dataclass(eq=False)  # arrays: == would be elementwise
class TrainingLoadTrace:
    """Per-step expert load shares of a training run; see the module docstring."""

    shares: np.ndarray
    loss: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.shares, self.loss, self.meta = _checked(self.shares, self.loss, self.meta, "trace")

    @property
    def steps(self) -> int:
        return self.shares.shape[0]

    @property
    def layers(self) -> int:
        return self.shares.shape[1]

    @property
    def experts(self) -> int:
        return self.shares.shape[2]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the .npz atomically (temp file in the same folder, then os.replace)."""
        arrays = {"shares": self.shares}
        if self.loss is not None:
            arrays["loss"] = self.loss
        return save_npz_atomic(path, arrays, self.meta)

    @classmethod
    def load(cls, path: str | os.PathLike, field: str | None = None) -> TrainingLoadTrace:
        """Read a training-load trace; any defect is one WorkloadError naming file and array."""
        path = Path(path)
        arrays, meta = load_npz(path, ".npz training-load trace", field)  # headers checked first
        if "shares" not in arrays:
            found = ", ".join(sorted(arrays)) or "nothing"
            hint = (" (this is a routing trace; `moesim forecast` needs a training-load trace "
                    "from `python -m workloads.moe_lm`)" if "experts" in arrays else "")
            raise WorkloadError(f"{path}: missing array 'shares' (found: {found}){hint}", field)
        meta["path"] = str(path)
        try:
            shares, loss, meta = _checked(arrays["shares"], arrays.get("loss"), meta, str(path))
        except WorkloadError as error:
            raise WorkloadError(str(error), field) from None
        trace = cls.__new__(cls)  # already checked
        trace.shares, trace.loss, trace.meta = shares, loss, meta
        return trace


def _checked(shares, loss, meta, where: str):
    def fail(name: str, message: str):
        raise WorkloadError(f"{where}[{name}]: {message}")

    shares = np.asarray(shares)
    if shares.ndim != 3:
        fail("shares", f"must be 3-D [steps, layers, experts], got shape {shares.shape}")
    if not np.issubdtype(shares.dtype, np.floating):
        fail("shares", f"must be floats, got {shares.dtype}")
    if min(shares.shape) == 0:
        fail("shares", f"must not be empty, got shape {shares.shape}")
    if not np.all(np.isfinite(shares)) or shares.min() < 0:
        fail("shares", "must be finite and >= 0")
    sums = shares.sum(axis=-1, dtype=np.float64)
    worst = float(np.abs(sums - 1.0).max())
    if worst > _SUM_TOLERANCE:
        fail("shares", f"each step's and layer's shares must sum to 1, found a sum off by {worst:.3g}")
    shares = shares.astype(np.float32, copy=False)
    if loss is not None:
        loss = np.asarray(loss)
        if loss.shape != shares.shape[:1] or not np.issubdtype(loss.dtype, np.floating):
            fail("loss", f"must be floats of shape ({shares.shape[0]},), "
                         f"got {loss.dtype} {loss.shape}")
        loss = loss.astype(np.float32, copy=False)
    if not isinstance(meta, dict):
        fail("meta", f"must be a mapping, got {type(meta).__name__}")
    meta = dict(meta)
    meta.setdefault("kind", KIND)
    if meta["kind"] != KIND:
        fail("meta", f"kind must be {KIND!r}, got {meta['kind']!r}")
    return shares, loss, meta


# --- the model and its training -----------------------------------------------------------------

@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of the MoE language model and its training (sizes in elements)."""

    layers: int = 4          # transformer blocks, each with an MoE FFN
    experts: int = 8
    top_k: int = 1
    d_model: int = 64
    d_ffn: int = 128         # hidden width of one expert
    heads: int = 4
    seq_len: int = 32
    batch: int = 32          # sequences per step; tokens per step = batch * seq_len
    lr: float = 1e-3
    warmup: int = 100        # steps of linear learning-rate warm-up, then constant
    weight_decay: float = 0.01
    aux_loss: float = 0.01   # Switch load-balancing loss coefficient (Switch's value; 0 = off)
    seed: int = 0
    threads: int = 1         # torch intra-op threads (results are reproducible per count)

    def check(self) -> None:
        ints = {"layers": (1, 64), "experts": (2, 1024), "top_k": (1, None),
                "d_model": (4, 8192), "d_ffn": (1, 65536), "heads": (1, 256),
                "seq_len": (2, 65536), "batch": (1, 65536), "warmup": (0, None),
                "seed": (0, None), "threads": (1, 1024)}
        for name, (low, high) in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise WorkloadError(f"must be an integer, got {value!r}", name)
            if value < low or (high is not None and value > high):
                allowed = f">= {low}" if high is None else f"between {low} and {high}"
                raise WorkloadError(f"must be {allowed}, got {value}", name)
        if self.top_k > self.experts:
            raise WorkloadError(f"must be <= experts ({self.experts}), got {self.top_k}", "top_k")
        if self.d_model % self.heads:
            raise WorkloadError(f"d_model ({self.d_model}) must be a multiple of heads, "
                                f"got {self.heads}", "heads")
        for name, positive in (("lr", True), ("weight_decay", False), ("aux_loss", False)):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                    or not np.isfinite(value) or value < 0 or (positive and value == 0)):
                allowed = "> 0" if positive else ">= 0"
                raise WorkloadError(f"must be a finite number {allowed}, got {value!r}", name)


def _torch(field: str = "torch"):
    try:
        import torch
    except ImportError:
        raise WorkloadError("training a MoE model needs torch, which is not installed: "
                            "pip install moesim[lstm] (or pip install torch)", field) from None
    return torch


@contextmanager
def _torch_settings(torch, threads: int):
    """Given thread count and deterministic algorithms inside the block; restored after."""
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)


def _build_model(torch, config: TrainingConfig, vocab: int):
    """A byte-level MoE transformer whose forward returns (logits, counts [L, E], aux loss)."""
    nn, F = torch.nn, torch.nn.functional
    d, E, k = config.d_model, config.experts, config.top_k

    class MoE(nn.Module):
        def __init__(self):
            super().__init__()
            self.router = nn.Linear(d, E, bias=False)
            scale_in, scale_out = d ** -0.5, config.d_ffn ** -0.5
            self.w1 = nn.Parameter(torch.randn(E, d, config.d_ffn) * scale_in)
            self.b1 = nn.Parameter(torch.zeros(E, config.d_ffn))
            self.w2 = nn.Parameter(torch.randn(E, config.d_ffn, d) * scale_out)

        def forward(self, x):
            """x [T, d] -> (y [T, d], counts [E] assignments, aux scalar)."""
            probs = torch.softmax(self.router(x), dim=-1)             # [T, E]
            gate, chosen = probs.topk(k, dim=-1)                      # [T, k]
            if k > 1:
                gate = gate / gate.sum(dim=-1, keepdim=True)
            counts = torch.bincount(chosen.reshape(-1), minlength=E)
            out = torch.zeros_like(x)
            for expert in range(E):
                token, slot = (chosen == expert).nonzero(as_tuple=True)
                if len(token) == 0:
                    continue
                hidden = F.relu(x[token] @ self.w1[expert] + self.b1[expert])
                out.index_add_(0, token, (hidden @ self.w2[expert]) * gate[token, slot, None])
            fraction = counts.to(x.dtype) / (x.shape[0] * k)
            aux = E * (fraction * probs.mean(dim=0)).sum()
            return out, counts, aux

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.moe = MoE()

        def forward(self, x):
            b, s, _ = x.shape
            q, key, v = self.qkv(self.norm1(x)).split(d, dim=-1)
            shape = (b, s, config.heads, d // config.heads)
            q, key, v = (t.reshape(shape).transpose(1, 2) for t in (q, key, v))
            attended = F.scaled_dot_product_attention(q, key, v, is_causal=True)
            x = x + self.proj(attended.transpose(1, 2).reshape(b, s, d))
            y, counts, aux = self.moe(self.norm2(x).reshape(b * s, d))
            return x + y.reshape(b, s, d), counts, aux

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, d)
            nn.init.normal_(self.embed.weight, std=d ** -0.5)  # tied head: logits start O(1)
            self.position = nn.Parameter(torch.randn(config.seq_len, d) * 0.02)
            self.blocks = nn.ModuleList(Block() for _ in range(config.layers))
            self.norm = nn.LayerNorm(d)

        def forward(self, tokens):
            x = self.embed(tokens) + self.position[: tokens.shape[1]]
            all_counts, aux_total = [], 0.0
            for block in self.blocks:
                x, counts, aux = block(x)
                all_counts.append(counts)
                aux_total = aux_total + aux
            logits = self.norm(x) @ self.embed.weight.T
            return logits, torch.stack(all_counts), aux_total

    return Model()


def read_text(text_path: str | os.PathLike, min_bytes: int, field: str = "text") -> np.ndarray:
    """The file's bytes as uint8 tokens (byte-level: vocabulary 256, any encoding works)."""
    path = Path(text_path)
    data = np.frombuffer(read_bytes(path, field, error=WorkloadError), dtype=np.uint8)
    if data.size == 0:
        raise WorkloadError(f"{path}: the text is empty", field)
    if data.size < min_bytes:
        raise WorkloadError(f"{path}: has {data.size} bytes but one sequence needs {min_bytes} "
                            "(seq_len + 1)", field)
    return data


def train_load_trace(text_path: str | os.PathLike, steps: int, layers: int = 4, experts: int = 8,
                     top_k: int = 1, aux_loss: float = 0.01, seed: int = 0,
                     log_every: int = 0, **hyper) -> TrainingLoadTrace:
    """Train the MoE LM for `steps` steps on `text_path`; return its per-step load shares.

    `hyper` sets the other `TrainingConfig` fields (d_model, d_ffn, heads, seq_len, batch,
    lr, warmup, weight_decay, threads). Each step samples `batch` random windows of
    ``seq_len + 1`` bytes; the shares of step s are those of step s's forward pass, i.e. of
    the router before the update of step s. `log_every` > 0 prints progress to stderr.
    """
    unknown = sorted(set(hyper) - set(TrainingConfig.__dataclass_fields__))
    if unknown:
        allowed = ", ".join(TrainingConfig.__dataclass_fields__)
        raise WorkloadError(f"unknown training parameter {unknown[0]!r}; allowed: {allowed}",
                            unknown[0])
    config = TrainingConfig(layers=layers, experts=experts, top_k=top_k, aux_loss=aux_loss,
                            seed=seed, **hyper)
    config.check()
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise WorkloadError(f"must be an integer >= 1, got {steps!r}", "steps")
    data = read_text(text_path, config.seq_len + 1)
    torch = _torch()
    start = time.perf_counter()
    with _torch_settings(torch, config.threads):
        shares, loss, _ = _train(torch, config, data, int(steps), log_every)
    path = Path(text_path)
    meta = {
        "kind": KIND,
        "source": "workloads.moe_lm.train_load_trace",
        "model": {"layers": config.layers, "experts": config.experts, "top_k": config.top_k,
                  "d_model": config.d_model, "d_ffn": config.d_ffn, "heads": config.heads,
                  "vocab": 256, "tokenizer": "bytes"},
        "training": asdict(config),
        "corpus": {"file": path.name, "bytes": int(data.size),
                   "sha256": hashlib.sha256(data.tobytes()).hexdigest()},
        "seed": config.seed,
        "aux_loss": config.aux_loss,
        "steps": int(steps),
        "tokens_per_step": config.batch * config.seq_len,
        "torch": torch.__version__,
        "wall_s": round(time.perf_counter() - start, 3),
    }
    return TrainingLoadTrace(shares=shares, loss=loss, meta=meta)


def _train(torch, config: TrainingConfig, data: np.ndarray, steps: int, log_every: int):
    """(shares [steps, L, E], LM loss [steps], the trained model); call inside `_torch_settings`."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = _build_model(torch, config, vocab=256)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    warmup = max(config.warmup, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / warmup))
    window = config.seq_len + 1
    offsets = np.arange(window)
    shares = np.zeros((steps, config.layers, config.experts), dtype=np.float32)
    losses = np.zeros(steps, dtype=np.float32)
    assignments = config.batch * config.seq_len * config.top_k
    tick = time.perf_counter()
    for step in range(steps):
        starts = rng.integers(0, data.size - window + 1, size=config.batch)
        batch = torch.from_numpy(data[starts[:, None] + offsets].astype(np.int64))
        logits, counts, aux = model(batch[:, :-1])
        lm = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), batch[:, 1:].reshape(-1))
        loss = lm + config.aux_loss * aux if config.aux_loss else lm
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        shares[step] = counts.numpy() / assignments
        losses[step] = lm.item()
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps}  loss {losses[step - log_every + 1:step + 1].mean():.3f}"
                  f"  {time.perf_counter() - tick:.0f} s", file=sys.stderr, flush=True)
    return shares, losses, model


# --- command line ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    defaults = TrainingConfig()
    parser = argparse.ArgumentParser(
        prog="python -m workloads.moe_lm",
        description="Train a small byte-level MoE LM on a text file with torch (CPU) and record "
                    "its per-step expert load shares as a training-load trace (.npz).")
    parser.add_argument("--text", required=True, help="training text file (any encoding; bytes)")
    parser.add_argument("--steps", type=int, required=True, help="training steps")
    parser.add_argument("--out", required=True, help="output .npz path")
    for name, help_text in (
        ("layers", "transformer blocks, each with an MoE FFN"), ("experts", "experts per layer"),
        ("top_k", "experts per token"), ("d_model", "model width"),
        ("d_ffn", "hidden width of one expert"), ("heads", "attention heads"),
        ("seq_len", "tokens (bytes) per sequence"), ("batch", "sequences per step"),
        ("warmup", "linear learning-rate warm-up steps"), ("seed", "random seed"),
        ("threads", "torch threads (results are reproducible per thread count)"),
    ):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name),
                            help=f"{help_text} (default {getattr(defaults, name)})")
    for name, help_text in (("lr", "AdamW learning rate"), ("weight_decay", "AdamW weight decay"),
                            ("aux_loss", "Switch load-balancing loss coefficient, 0 = off")):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float,
                            default=getattr(defaults, name),
                            help=f"{help_text} (default {getattr(defaults, name):g})")
    parser.add_argument("--log-every", type=int, default=500,
                        help="print progress every N steps to stderr, 0 = quiet (default 500)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    hyper = {name: getattr(args, name) for name in (
        "d_model", "d_ffn", "heads", "seq_len", "batch", "lr", "warmup", "weight_decay",
        "threads")}
    try:
        trace = train_load_trace(args.text, args.steps, args.layers, args.experts, args.top_k,
                                 args.aux_loss, args.seed, log_every=args.log_every, **hyper)
        path = trace.save(args.out)
    except WorkloadError as error:
        print(f"python -m workloads.moe_lm: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}: {trace.steps} steps x {trace.layers} MoE layers x {trace.experts} "
          f"experts (top-{args.top_k}, aux loss {args.aux_loss:g}); final loss "
          f"{float(trace.loss[-100:].mean()):.3f}; {trace.meta['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

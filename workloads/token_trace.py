"""Real token-level routing with router inputs: train the small MoE LM, then record its routers.

Every token predictor in `predictors/` needs per-token routing, and `token.ffn`/`token.lstm`
also need what the router saw. Synthetic traces make the router linear in a random state by
construction and converted load tables carry no per-token inputs, so neither says how well
a predictor does on a real router. This module records one, for real, at laptop scale:

1. train `workloads.moe_lm`'s byte-level MoE transformer (torch, CPU, seeded) on the first
   ``1 - holdout`` of a text file's bytes;
2. run the trained model over the held-out rest, cut into consecutive sequences of the
   training context (``seq_len`` bytes); an iteration is ``tokens_per_iteration / seq_len``
   consecutive sequences, tokens in sequence-major order (batch x seq_len, as a scenario's);
3. hook every MoE layer's input (the hidden state entering its gate, after the block's
   LayerNorm) and re-apply that layer's own router to it (softmax, top-k, the same ops as in
   training, so the choices are exactly the model's).

The file is a `RoutingTrace` ``.npz`` (`workloads.trace`): ``experts`` [iterations, layers,
tokens, top_k], ``token_ids`` (the bytes), ``features`` = the full-width gate input of MoE
layer `features_layer` (float16; what `token.ffn`/`token.lstm` read) and a ``meta`` with the
provenance (model config, training steps and loss, held-out loss, corpus name, size, sha256
and licence note, seed, torch version) and the measured inter-layer dependency. Three more
arrays, which `RoutingTrace.load` ignores and `load_router_inputs` reads, keep every layer's
gate input at reduced width (documented in docs/traces.md):

- ``router_inputs`` float16 [iterations, layers, tokens, p]: each layer's (centred) gate input
  in an orthonormal basis of the row space of its own router and the next `lookahead`
  routers, p = (1 + lookahead) x experts: exactly the part of the hidden state those routers
  read (principal components do not keep routing: 48 of 64 components still changed 10-13 %
  of the top-2 choices of the bundled model);
- ``router_basis`` float32 [layers, d, p] and ``router_mean`` float32 [layers, d]: the
  projection is ``mean + z @ basis.T``; meta says which share of the input's variance lies
  in it and how often re-routing the projection gives the recorded top-k.

``python -m workloads.token_trace --text FILE --out FILE.npz`` is the command line; the
bundled ``workloads/data/moe-lm-wikipedia.npz`` is made by the command in its NOTICE.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from workloads.errors import WorkloadError
from workloads.moe_lm import TrainingConfig, _torch, _torch_settings, _train, read_text
from workloads.npz import save_npz_atomic
from workloads.stats import contingency, cramers_v, normalised_mutual_information
from workloads.trace import RoutingTrace

SOURCE = "workloads.token_trace.record_token_trace"
EXTRA_ARRAYS = ("router_inputs", "router_basis", "router_mean")

# The recorded model's defaults: top-2 of 8 experts (Mixtral's routing), 4 MoE layers, a
# 64-byte context; one training step is 16 x 64 = 1,024 tokens, as moe_lm's default.
DEFAULTS = {"layers": 4, "experts": 8, "top_k": 2, "d_model": 64, "d_ffn": 128, "heads": 4,
            "seq_len": 64, "batch": 16}


@dataclass(eq=False)
class TokenTrace:
    """A recorded `RoutingTrace` plus every layer's reduced router input (module docstring)."""

    trace: RoutingTrace
    router_inputs: np.ndarray   # float16 [iterations, layers, tokens, p]
    router_basis: np.ndarray    # float32 [layers, d, p]
    router_mean: np.ndarray     # float32 [layers, d]

    def save(self, path: str | os.PathLike) -> Path:
        """One .npz: the trace's arrays and meta plus the three router-input arrays."""
        arrays = {"experts": self.trace.experts, "token_ids": self.trace.token_ids,
                  "features": self.trace.features}
        arrays.update(router_inputs=self.router_inputs, router_basis=self.router_basis,
                      router_mean=self.router_mean)
        return save_npz_atomic(path, arrays, self.trace.meta)

    @classmethod
    def load(cls, path: str | os.PathLike, field: str | None = None) -> TokenTrace:
        trace = RoutingTrace.load(path, field)
        inputs, basis, mean = load_router_inputs(path, trace, field)
        return cls(trace, inputs, basis, mean)


def load_router_inputs(path: str | os.PathLike, trace: RoutingTrace | None = None,
                       field: str | None = None):
    """(router_inputs, router_basis, router_mean) of a recorded trace, shapes checked."""
    path = Path(path)
    trace = trace if trace is not None else RoutingTrace.load(path, field)
    if not zipfile.is_zipfile(path):
        raise WorkloadError(f"{path}: not a .npz trace", field)
    with np.load(path, allow_pickle=False) as data:
        missing = [name for name in EXTRA_ARRAYS if name not in data.files]
        if missing:
            raise WorkloadError(f"{path}: missing array {missing[0]!r} (not a trace recorded "
                                "by workloads.token_trace)", field)
        inputs, basis, mean = (data[name] for name in EXTRA_ARRAYS)
    expected = (trace.iterations, trace.layers, trace.tokens)
    if (inputs.ndim != 4 or inputs.shape[:3] != expected or basis.ndim != 3
            or basis.shape[0] != trace.layers or basis.shape[2] != inputs.shape[3]
            or mean.shape != basis.shape[:2]):
        raise WorkloadError(f"{path}[router_inputs]: shapes {inputs.shape}, {basis.shape}, "
                            f"{mean.shape} do not match the trace {expected}", field)
    return inputs, basis, mean


# --- recording ------------------------------------------------------------------------------

def record_token_trace(text_path: str | os.PathLike, steps: int = 3000, *,
                       iterations: int = 32, tokens_per_iteration: int = 512,
                       holdout: float = 0.1, features_layer: int = 0, lookahead: int = 1,
                       log_every: int = 0, **hyper) -> TokenTrace:
    """Train on the first 1 - `holdout` of the text, record routing on the held-out rest.

    `hyper` sets `TrainingConfig` fields (defaults: `DEFAULTS`, else moe_lm's). Raises
    WorkloadError naming the argument for anything that does not fit.
    """
    unknown = sorted(set(hyper) - set(TrainingConfig.__dataclass_fields__))
    if unknown:
        allowed = ", ".join(TrainingConfig.__dataclass_fields__)
        raise WorkloadError(f"unknown training parameter {unknown[0]!r}; allowed: {allowed}",
                            unknown[0])
    config = TrainingConfig(**{**DEFAULTS, **hyper})
    config.check()
    for name, value, low in (("steps", steps, 1), ("iterations", iterations, 1),
                             ("tokens_per_iteration", tokens_per_iteration, 1),
                             ("features_layer", features_layer, 0),
                             ("lookahead", lookahead, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise WorkloadError(f"must be an integer >= {low}, got {value!r}", name)
    if features_layer >= config.layers:
        raise WorkloadError(f"must be < layers ({config.layers}), got {features_layer}",
                            "features_layer")
    if (1 + lookahead) * config.experts > config.d_model:
        raise WorkloadError(f"(1 + lookahead) x experts must be <= d_model ({config.d_model}), "
                            f"got {lookahead}", "lookahead")
    if tokens_per_iteration % config.seq_len:
        raise WorkloadError(f"must be a multiple of seq_len ({config.seq_len}), got "
                            f"{tokens_per_iteration}", "tokens_per_iteration")
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 < holdout < 1:
        raise WorkloadError(f"must be > 0 and < 1, got {holdout!r}", "holdout")
    data = read_text(text_path, config.seq_len + 1)
    split = int(round(data.size * (1 - holdout)))
    train, held = data[:split], data[split:]
    needed = iterations * tokens_per_iteration
    if train.size < config.seq_len + 1:
        raise WorkloadError(f"{text_path}: only {train.size} training bytes before the held-out "
                            f"part; one sequence needs {config.seq_len + 1}", "text")
    if held.size < needed:
        raise WorkloadError(f"{text_path}: the held-out part has {held.size} bytes but "
                            f"{iterations} iterations x {tokens_per_iteration} tokens need "
                            f"{needed}; lower iterations or raise holdout", "text")
    torch = _torch()
    start = time.perf_counter()
    with _torch_settings(torch, config.threads):
        shares, loss, model = _train(torch, config, train, int(steps), log_every)
        trained_s = time.perf_counter() - start
        sequences = held[:needed].astype(np.int64).reshape(-1, config.seq_len)
        experts, gate_inputs, heldout_loss = _route(torch, model, config, sequences)
    tokens = tokens_per_iteration
    experts = experts.reshape(config.layers, iterations, tokens, config.top_k).transpose(1, 0, 2, 3)
    gate_inputs = gate_inputs.reshape(config.layers, iterations, tokens, config.d_model)
    token_ids = held[:needed].astype(np.int32).reshape(iterations, tokens)
    features = gate_inputs[features_layer].astype(np.float16)
    reduced, basis, mean, kept = _router_space(model, gate_inputs, lookahead)
    agreement = _reconstructed_agreement(torch, model, config, experts, reduced, basis, mean)
    path = Path(text_path)
    meta = _meta(config, path, data, split, held, steps, loss, trained_s, heldout_loss,
                 iterations, tokens, features_layer, lookahead, kept, agreement, torch)
    meta["wall_s"] = round(time.perf_counter() - start, 3)
    trace = RoutingTrace(experts=experts, token_ids=token_ids, features=features, meta=meta)
    trace.meta["dependency"] = layer_transitions(trace)
    return TokenTrace(trace, reduced, basis, mean)


def _route(torch, model, config: TrainingConfig, sequences: np.ndarray):
    """Run the model on [n, seq_len] byte sequences: (experts [L, n*S, k], gate inputs
    [L, n*S, d] float32, mean next-byte cross-entropy in nats)."""
    captured: list = []
    hooks = [block.moe.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
             for block in model.blocks]
    try:
        model.eval()
        with torch.no_grad():
            batch = torch.from_numpy(sequences)
            logits, counts, _ = model(batch)
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
            chosen = []
            for block, x in zip(model.blocks, captured):
                probs = torch.softmax(block.moe.router(x), dim=-1)   # as MoE.forward does
                chosen.append(probs.topk(config.top_k, dim=-1).indices.numpy())
    finally:
        for hook in hooks:
            hook.remove()
    chosen = np.stack(chosen)
    again = np.stack([np.bincount(c.ravel(), minlength=config.experts) for c in chosen])
    if not np.array_equal(again, counts.numpy()):  # the re-applied router must be the model's
        raise RuntimeError("recorded choices differ from the model's own expert counts")
    gate_inputs = np.stack([x.numpy() for x in captured]).astype(np.float32)
    return chosen.astype(np.int16), gate_inputs, float(loss)


def _router_space(model, gate_inputs: np.ndarray, lookahead: int):
    """Per layer: the gate input's coordinates in the row space of the routers of layers
    l .. l + `lookahead` (the part of the hidden state those routers read, nothing else).

    Returns (coordinates float16 [I, L, T, p], basis float32 [L, d, p], mean float32 [L, d],
    share of the gate input's variance that lies in the basis, per layer), p = (1 + lookahead)
    x experts; where fewer routers follow (the last layers) the basis is padded with zero
    columns, whose coordinates are zero. The basis is orthonormal (QR of the stacked router
    weights, signs fixed so the diagonal of R is positive), so mean + z @ basis.T is the
    projection of the input and every one of those routers' logits is exactly reproduced.
    """
    layers, iterations, tokens, d = gate_inputs.shape
    weights = [block.moe.router.weight.detach().numpy().astype(np.float64)
               for block in model.blocks]                               # [E, d] each
    experts = weights[0].shape[0]
    width = (1 + lookahead) * experts
    coordinates = np.zeros((iterations, layers, tokens, width), dtype=np.float16)
    basis = np.zeros((layers, d, width), dtype=np.float32)
    mean = np.zeros((layers, d), dtype=np.float32)
    kept = []
    for layer in range(layers):
        rows = np.concatenate(weights[layer: layer + 1 + lookahead])    # [m E, d]
        q, r = np.linalg.qr(rows.T)                                     # [d, m E]
        q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
        x = gate_inputs[layer].reshape(-1, d).astype(np.float64)
        centre = x.mean(axis=0)
        z = (x - centre) @ q
        basis[layer, :, : q.shape[1]], mean[layer] = q, centre
        coordinates[:, layer, :, : q.shape[1]] = z.reshape(iterations, tokens, -1)
        kept.append(float((z ** 2).sum() / ((x - centre) ** 2).sum()))
    return coordinates, basis, mean, kept


def _reconstructed_agreement(torch, model, config, experts, reduced, basis, mean) -> list[float]:
    """Per layer: share of tokens whose top-k set from the reconstructed gate input (mean + z
    basis^T, via the layer's own router) equals the recorded top-k set."""
    agreement = []
    with torch.no_grad():
        for layer, block in enumerate(model.blocks):
            z = reduced[:, layer].astype(np.float32)                    # [I, T, p]
            x = torch.from_numpy(mean[layer] + z @ basis[layer].T)
            again = torch.softmax(block.moe.router(x), dim=-1).topk(config.top_k, dim=-1).indices
            same = np.sort(again.numpy(), axis=-1) == np.sort(experts[:, layer], axis=-1)
            agreement.append(float(same.all(axis=-1).mean()))
    return agreement


def domain_of(path: Path) -> str:
    """'wikipedia' for wikipedia_texts.txt (the shared text samples' naming), else the stem."""
    stem = path.stem
    return stem[: -len("_texts")] if stem.endswith("_texts") else stem


def _corpus_notice(path: Path) -> str | None:
    """The SOURCE.md beside the text (where it came from, its licence), verbatim, if any."""
    source = path.parent / "SOURCE.md"
    return source.read_text().strip() if source.is_file() else None


def model_mapping(meta: dict) -> dict:
    """The inline `model:` mapping of a scenario that simulates the recorded LM (its real shape;
    weights assumed BF16 on the GPU, as the catalogue's models)."""
    model = meta["model_config"]
    return {"name": meta["model"], "layers": model["layers"], "hidden": model["d_model"],
            "ffn": model["d_ffn"], "experts": model["experts"], "top_k": model["top_k"],
            "heads": model["heads"], "kv_heads": model["heads"],
            "head_dim": model["d_model"] // model["heads"], "gated": False, "vocab": 256,
            "dtype_bytes": 2}


def _meta(config, path, data, split, held, steps, loss, trained_s, heldout_loss, iterations,
          tokens, features_layer, lookahead, kept, agreement, torch) -> dict:
    domain = domain_of(path)
    last = loss[-min(100, len(loss)):]
    meta = {
        "model": f"moe-lm-{domain}",
        "dataset": domain,
        "source": "recorded",
        "recorder": SOURCE,
        "num_experts": config.experts,
        "model_type": "workloads.moe_lm byte-level MoE transformer",
        "routing": "softmax over experts, top-k, no capacity limit (choices are the router's)",
        "model_config": asdict(config),
        "moe_layer_indices": list(range(config.layers)),
        "tokenizer": "bytes",
        "training": {"steps": int(steps), "train_bytes": int(split),
                     "tokens_per_step": config.batch * config.seq_len,
                     "loss_first_100": round(float(loss[:100].mean()), 4),
                     "loss_last_100": round(float(last.mean()), 4),
                     "wall_s": round(trained_s, 3)},
        "heldout": {"first_byte": int(split), "bytes": int(held.size),
                    "bytes_used": iterations * tokens,
                    "loss_nats": round(heldout_loss, 4),
                    "bits_per_byte": round(float(heldout_loss / np.log(2)), 4)},
        "corpus": {"file": path.name, "bytes": int(data.size),
                   "sha256": hashlib.sha256(data.tobytes()).hexdigest(),
                   "notice": _corpus_notice(path)},
        "seed": config.seed,
        "tokens_per_iteration": tokens,
        "seq_len": config.seq_len,
        "sequences_per_iteration": tokens // config.seq_len,
        "features": (f"hidden state entering the gate of MoE layer {features_layer} "
                     "(after the block's LayerNorm), full width, float16"),
        "features_layer": features_layer,
        "router_inputs": {
            "description": ("every MoE layer's gate input (centred) in an orthonormal basis of "
                            "the row space of the routers of that layer and the next "
                            f"{lookahead} (zero columns where none follow): the part of the "
                            "hidden state those routers read; projection = router_mean + "
                            "router_inputs @ router_basis.T"),
            "lookahead": lookahead,
            "dims": (1 + lookahead) * config.experts,
            "variance_kept": [round(v, 4) for v in kept],
            "same_top_k_when_reconstructed": [round(v, 4) for v in agreement]},
        "torch": torch.__version__,
    }
    meta["model_mapping"] = model_mapping(meta)
    return meta


# --- inter-layer dependency -----------------------------------------------------------------

def layer_transitions(trace: RoutingTrace) -> list[dict]:
    """For each consecutive MoE layer pair l -> l+1, over all tokens' first choices:

    - ``entropy_bits``: H(e_{l+1}); ``conditional_entropy_bits``: H(e_{l+1} | e_l);
      ``mutual_information_bits`` = their difference;
    - ``top1_concentration``: sum_i P(e_l = i) max_j P(e_{l+1} = j | e_l = i), the share of
      tokens that go where their layer-l expert's most frequent successor is (what a
      placement co-locating i with that successor keeps local); ``independent_concentration``
      = max_j P(e_{l+1} = j), what it would be without dependency;
    - ``top2_concentration``: the same with each expert's two most frequent successors;
    - ``cramers_v`` and ``nmi`` as `moesim trace stats` reports them.
    """
    firsts = trace.experts[..., 0]
    experts = trace.num_experts
    rows = []
    for layer in range(trace.layers - 1):
        table = contingency(firsts[:, layer], firsts[:, layer + 1], experts).astype(np.float64)
        joint = table / table.sum()
        p_prev, p_next = joint.sum(axis=1), joint.sum(axis=0)
        h_next = _bits(p_next)
        h_joint = _bits(joint.ravel())
        conditional = h_joint - _bits(p_prev)
        ordered = np.sort(joint, axis=1)[:, ::-1]
        rows.append({
            "layers": [layer, layer + 1],
            "entropy_bits": round(h_next, 4),
            "conditional_entropy_bits": round(conditional, 4),
            "mutual_information_bits": round(h_next - conditional, 4),
            "top1_concentration": round(float(ordered[:, 0].sum()), 4),
            "top2_concentration": round(float(ordered[:, :2].sum()), 4),
            "independent_concentration": round(float(p_next.max()), 4),
            "cramers_v": round(cramers_v(table), 4),
            "nmi": round(normalised_mutual_information(table), 4),
        })
    return rows


def _bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def format_transitions(rows: list[dict]) -> str:
    lines = [f"{'layers':>7} {'H(next)':>8} {'H(next|prev)':>12} {'MI':>6} {'top-1 conc':>10} "
             f"{'top-2 conc':>10} {'indep.':>6} {'NMI':>6}"]
    for row in rows:
        a, b = row["layers"]
        lines.append(f"{f'{a}->{b}':>7} {row['entropy_bits']:>8.3f} "
                     f"{row['conditional_entropy_bits']:>12.3f} "
                     f"{row['mutual_information_bits']:>6.3f} {row['top1_concentration']:>10.3f} "
                     f"{row['top2_concentration']:>10.3f} {row['independent_concentration']:>6.3f} "
                     f"{row['nmi']:>6.3f}")
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workloads.token_trace",
        description="Train the small byte-level MoE LM (workloads.moe_lm) on the first part of a "
                    "text file and record per-token routing with router inputs on the held-out "
                    "rest, as a routing trace (.npz).")
    parser.add_argument("--text", required=True, help="text file (bytes)")
    parser.add_argument("--out", required=True, help="output .npz path")
    parser.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    parser.add_argument("--iterations", type=int, default=32, help="recorded iterations (32)")
    parser.add_argument("--tokens-per-iteration", type=int, default=512,
                        help="tokens per iteration, a multiple of --seq-len (512)")
    parser.add_argument("--holdout", type=float, default=0.1,
                        help="share of the text held out for recording, at its end (0.1)")
    parser.add_argument("--features-layer", type=int, default=0,
                        help="MoE layer whose full gate input is stored as features (0)")
    parser.add_argument("--lookahead", type=int, default=1,
                        help="also keep, per layer, what the next N layers' routers read (1)")
    defaults = TrainingConfig(**DEFAULTS)
    for name in ("layers", "experts", "top_k", "d_model", "d_ffn", "heads", "seq_len", "batch",
                 "warmup", "seed", "threads"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int,
                            default=getattr(defaults, name),
                            help=f"see python -m workloads.moe_lm (default {getattr(defaults, name)})")
    for name in ("lr", "weight_decay", "aux_loss"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float,
                            default=getattr(defaults, name),
                            help=f"see python -m workloads.moe_lm (default {getattr(defaults, name):g})")
    parser.add_argument("--log-every", type=int, default=500,
                        help="print training progress every N steps to stderr, 0 = quiet (500)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    hyper = {name: getattr(args, name) for name in (
        "layers", "experts", "top_k", "d_model", "d_ffn", "heads", "seq_len", "batch", "warmup",
        "seed", "threads", "lr", "weight_decay", "aux_loss")}
    try:
        recorded = record_token_trace(
            args.text, args.steps, iterations=args.iterations,
            tokens_per_iteration=args.tokens_per_iteration, holdout=args.holdout,
            features_layer=args.features_layer, lookahead=args.lookahead,
            log_every=args.log_every, **hyper)
        path = recorded.save(args.out)
    except WorkloadError as error:
        print(f"python -m workloads.token_trace: error: {error}", file=sys.stderr)
        return 2
    trace, meta = recorded.trace, recorded.trace.meta
    print(f"wrote {path}: {meta['model']}, {trace.iterations} iterations x {trace.layers} MoE "
          f"layers x {trace.tokens} tokens, top-{trace.top_k} of {trace.num_experts} experts; "
          f"training loss {meta['training']['loss_last_100']:.3f}, held-out "
          f"{meta['heldout']['bits_per_byte']:.3f} bits/byte; {meta['wall_s']:.0f} s")
    print(format_transitions(meta["dependency"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

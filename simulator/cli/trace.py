"""`moesim trace ACTION`: make and inspect routing traces (.npz, see docs/workloads.md and
docs/traces.md).

Each action is one entry of ACTIONS (help, add_arguments, run), so new ones slot in without
touching the others. `record` and `convert` import torch, transformers and their readers only
when they run.
"""

import argparse
import json

from simulator.cli.outputs import check_out_file, count
from workloads.models import model_spec
from workloads.stats import format_stats, trace_stats
from workloads.synthetic import generate_trace
from workloads.trace import RoutingTrace

HELP = "Generate, record and convert routing traces and print their statistics."


def _add_generate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="catalogue model name (e.g. mixtral-8x7b)")
    parser.add_argument("--iterations", type=count, default=20, help="iterations (default 20)")
    parser.add_argument("--tokens", type=count, default=4096,
                        help="tokens per iteration, B*S for prefill (default 4096)")
    parser.add_argument("--skewness", type=float, default=1.4,
                        help="target mean max/mean expert load (default 1.4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--vocab-size", type=count, default=None,
                        help="token vocabulary (default: the model's)")
    parser.add_argument("--zipf-a", type=float, default=1.1,
                        help="Zipf exponent of token frequencies (default 1.1)")
    parser.add_argument("--token-affinity", type=float, default=0.6,
                        help="share of the hidden state set by the token id, 0..1 (default 0.6)")
    parser.add_argument("--layer-correlation", type=float, default=0.9,
                        help="gate-direction correlation between consecutive layers (default 0.9)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="router temperature (default 0.5*(8/experts)**0.25)")
    parser.add_argument("--drift", type=float, default=0.05,
                        help="per-iteration change of expert popularity, 0..1 (default 0.05)")
    parser.add_argument("--feature-dim", type=int, default=16,
                        help="width of the stored hidden-state features, 1..64 (default 16)")
    parser.add_argument("--no-features", action="store_true", help="do not store features")
    parser.add_argument("--weights", action="store_true", help="also store gate probabilities")
    parser.add_argument("--out", required=True, help="output .npz path")


def _run_generate(args: argparse.Namespace) -> int:
    check_out_file(args.out)
    model = model_spec(args.model, field="--model")
    trace = generate_trace(
        model, args.iterations, args.tokens, skewness=args.skewness, seed=args.seed,
        vocab_size=args.vocab_size, zipf_a=args.zipf_a, token_affinity=args.token_affinity,
        layer_correlation=args.layer_correlation, temperature=args.temperature,
        drift=args.drift, feature_dim=args.feature_dim, features=not args.no_features,
        weights=args.weights, field=None,
    )
    path = trace.save(args.out)
    meta = trace.meta
    print(f"wrote {path}: {model.name}, {trace.iterations} iterations x {trace.layers} MoE layers"
          f" x {trace.tokens} tokens, top-{trace.top_k} of {trace.num_experts} experts; "
          f"skewness {meta['skewness_achieved']:.3f} (target {meta['skewness_target']:g}, "
          f"floor {meta['skewness_floor']:.3f})")
    return 0


def _add_stats(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", metavar="TRACE.npz", help="trace file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _run_stats(args: argparse.Namespace) -> int:
    stats = trace_stats(RoutingTrace.load(args.trace, field=None))
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def _add_record(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="Hugging Face model directory, or a hub name org/name (downloads)")
    parser.add_argument("--text", required=True, help="UTF-8 text file to route")
    parser.add_argument("--out", required=True, help="output .npz path")
    parser.add_argument("--tokens-per-iteration", type=int, default=2048,
                        help="tokens per iteration, B*S (default 2048)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="iterations (default: as many as the text fills)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens per sequence; must divide --tokens-per-iteration "
                             "(default: --tokens-per-iteration)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="sequences per forward pass (memory only; default 1)")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer directory or hub name, or 'bytes' for UTF-8 bytes "
                             "(default: the model's; bytes if its directory has none)")
    parser.add_argument("--features", action="store_true",
                        help="store the hidden state entering one router (large)")
    parser.add_argument("--features-layer", type=int, default=0,
                        help="MoE layer (0-based) whose router input --features stores (default 0)")
    parser.add_argument("--features-dtype", default="float16", choices=("float16", "float32"),
                        help="dtype of stored features (default float16)")
    parser.add_argument("--weights", action="store_true",
                        help="also store the gate weights of the choices")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--dtype", default="auto",
                        choices=("auto", "float32", "bfloat16", "float16"),
                        help="model dtype (default auto: float32 on CPU, else the checkpoint's)")


def _run_record(args: argparse.Namespace) -> int:
    check_out_file(args.out)
    from workloads.record import quiet_transformers, record_trace

    with quiet_transformers():
        trace = record_trace(
            args.model, args.text, tokens_per_iteration=args.tokens_per_iteration,
            iterations=args.iterations, batch_size=args.batch_size, max_length=args.max_length,
            tokenizer=args.tokenizer, features=args.features, features_layer=args.features_layer,
            features_dtype=args.features_dtype, weights=args.weights, device=args.device,
            dtype=args.dtype,
        )
    path = trace.save(args.out)
    meta = trace.meta
    print(f"wrote {path}: {meta['model']} ({meta['model_type']}), {trace.iterations} iterations x "
          f"{trace.layers} MoE layers x {trace.tokens} tokens, top-{trace.top_k} of "
          f"{trace.num_experts} experts; {meta['dataset']}: {meta['tokens_used']} of "
          f"{meta['text_tokens']} tokens used ({meta['tokenizer']})")
    return 0


def _add_convert(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT",
                        help="file, or a directory holding expert_counts.csv (olmoe-counts)")
    parser.add_argument("--out", required=True, help="output .npz path")
    parser.add_argument("--format", default="auto",
                        choices=("auto", "olmoe-counts", "counts-csv", "token-jsonl", "token-csv"),
                        help="input format (default auto: from the name and header)")
    parser.add_argument("--model", default=None,
                        help="olmoe-counts: which model's rows (mixtral-8x7b, olmoe-1b-7b); "
                             "others: the model's name (a catalogue name sets --top-k and "
                             "--num-experts)")
    parser.add_argument("--domain", default=None, help="olmoe-counts: arxiv, book, c4, ...")
    parser.add_argument("--routing", default="top_k", choices=("top_k", "top_1"),
                        help="olmoe-counts: top_k (all k choices) or top_1 (first choice only)")
    parser.add_argument("--crosslayer", default=None,
                        help="olmoe-counts: cross-layer pair counts (default: "
                             "crosslayer_counts.csv beside the input)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="drawn formats: iterations (default 10, or the file's)")
    parser.add_argument("--tokens", type=int, default=2048,
                        help="drawn formats: tokens per iteration (default 2048)")
    parser.add_argument("--seed", type=int, default=0, help="drawn formats: seed (default 0)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="counts-csv: experts per token (default the model's, else 1)")
    parser.add_argument("--num-experts", type=int, default=None,
                        help="experts (default the model's, else largest id + 1)")
    parser.add_argument("--dataset", default=None,
                        help="dataset name for meta (default the domain or file name)")


def _run_convert(args: argparse.Namespace) -> int:
    from workloads.convert import convert_trace

    check_out_file(args.out)
    trace = convert_trace(
        args.input, format=args.format, model=args.model, domain=args.domain,
        routing=args.routing, crosslayer=args.crosslayer, iterations=args.iterations,
        tokens=args.tokens, seed=args.seed, top_k=args.top_k, num_experts=args.num_experts,
        dataset=args.dataset,
    )
    path = trace.save(args.out)
    meta = trace.meta
    line = (f"wrote {path}: {meta['model']} {meta['dataset']} ({meta['format']}), "
            f"{trace.iterations} iterations x {trace.layers} MoE layers x {trace.tokens} tokens, "
            f"top-{trace.top_k} of {trace.num_experts} experts")
    if "layers_measured" in meta:
        measured = ", ".join(str(layer) for layer in meta["layers_measured"])
        line += f"; measured layers {measured}: use model {meta['pairs_with_model']}"
    print(line)
    return 0


# action -> (help, add_arguments, run)
ACTIONS = {
    "generate": ("write a synthetic trace for a catalogue model", _add_generate, _run_generate),
    "stats": ("print skewness, entropy, layer dependency, token consistency, drift",
              _add_stats, _run_stats),
    "record": ("record a trace by running text through a Hugging Face MoE model",
               _add_record, _run_record),
    "convert": ("make a trace from routing dumps or per-expert load tables",
                _add_convert, _run_convert),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="trace_action", required=True, metavar="ACTION")
    for name, (help_text, add, run_action) in ACTIONS.items():
        action_parser = actions.add_parser(name, help=help_text, description=help_text)
        add(action_parser)
        action_parser.set_defaults(_trace_run=run_action)


def run(args: argparse.Namespace) -> int:
    return args._trace_run(args)

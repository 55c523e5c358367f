"""`moesim trace ACTION`: make and inspect routing traces (.npz, see docs/workloads.md).

Each action is one entry of ACTIONS (help, add_arguments, run), so later ones (`record`,
`convert`) slot in without touching the others.
"""

import argparse
import json

from workloads.models import model_spec
from workloads.stats import format_stats, trace_stats
from workloads.synthetic import generate_trace
from workloads.trace import RoutingTrace

HELP = "Generate routing traces and print their statistics."


def _add_generate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="catalogue model name (e.g. mixtral-8x7b)")
    parser.add_argument("--iterations", type=int, default=20, help="iterations (default 20)")
    parser.add_argument("--tokens", type=int, default=4096,
                        help="tokens per iteration, B*S for prefill (default 4096)")
    parser.add_argument("--skewness", type=float, default=1.4,
                        help="target mean max/mean expert load (default 1.4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--vocab-size", type=int, default=None,
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


# action -> (help, add_arguments, run)
ACTIONS = {
    "generate": ("write a synthetic trace for a catalogue model", _add_generate, _run_generate),
    "stats": ("print skewness, entropy, layer dependency, token consistency, drift",
              _add_stats, _run_stats),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="trace_action", required=True, metavar="ACTION")
    for name, (help_text, add, run_action) in ACTIONS.items():
        action_parser = actions.add_parser(name, help=help_text, description=help_text)
        add(action_parser)
        action_parser.set_defaults(_trace_run=run_action)


def run(args: argparse.Namespace) -> int:
    return args._trace_run(args)

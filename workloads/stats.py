"""Statistics of a routing trace: how skewed, how predictable, how stable.

These are the properties that decide whether prediction and re-placement pay off, so
`moesim trace stats` prints them and the synthetic generator is tested against them:

- skewness: max expert load / mean expert load per (iteration, layer) (MoE-GPS), all top-k
  choices counted;
- entropy: bits of the expert-load distribution (log2(experts) when perfectly balanced);
- inter-layer dependency: Cramér's V and normalised mutual information between each token's
  first choice at MoE layer l and at l + `distance` (0 for independent layers);
- token consistency: how often a repeated token id's first choice is that id's most common one
  at that layer (the ceiling of a per-token-id frequency predictor);
- drift: mean L1 distance between consecutive iterations' load distributions (0..2).
"""

import numpy as np

from workloads.trace import RoutingTrace


def skewness(trace: RoutingTrace) -> np.ndarray:
    """[iterations, layers] max/mean expert load."""
    loads = trace.load_counts()
    return loads.max(axis=-1) / loads.mean(axis=-1)


def entropy_bits(trace: RoutingTrace) -> np.ndarray:
    """[iterations, layers] entropy in bits of the load distribution."""
    loads = trace.load_counts().astype(np.float64)
    share = loads / loads.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(share > 0, -share * np.log2(share), 0.0)
    return terms.sum(axis=-1)


def contingency(first: np.ndarray, second: np.ndarray, experts: int) -> np.ndarray:
    """[experts, experts] counts of (expert at one layer, expert at another) over tokens."""
    pair = first.astype(np.int64).ravel() * experts + second.astype(np.int64).ravel()
    return np.bincount(pair, minlength=experts * experts).reshape(experts, experts)


def cramers_v(table: np.ndarray) -> float:
    """Cramér's V of a contingency table (rows/columns that are all zero are ignored)."""
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0].astype(np.float64)
    n = table.sum()
    if n == 0 or min(table.shape) < 2:
        return 0.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    chi2 = ((table - expected) ** 2 / expected).sum()
    return float(np.sqrt(chi2 / n / (min(table.shape) - 1)))


def normalised_mutual_information(table: np.ndarray) -> float:
    """I(X;Y) / sqrt(H(X) H(Y)) of a contingency table (0 when either is constant)."""
    joint = table.astype(np.float64) / max(table.sum(), 1)
    px, py = joint.sum(axis=1), joint.sum(axis=0)
    hx, hy = _entropy(px), _entropy(py)
    if hx == 0 or hy == 0:
        return 0.0
    nonzero = joint > 0
    mutual = (joint[nonzero] * np.log(joint[nonzero] / np.outer(px, py)[nonzero])).sum()
    return float(mutual / np.sqrt(hx * hy))


def layer_dependency(trace: RoutingTrace, distance: int = 1) -> dict:
    """Mean Cramér's V and NMI between first choices at MoE layers l and l + distance."""
    firsts = trace.experts[..., 0]  # [iterations, layers, tokens]
    pairs = range(trace.layers - distance)
    if distance < 1 or not pairs:
        return {"cramers_v": float("nan"), "nmi": float("nan")}
    tables = [contingency(firsts[:, l], firsts[:, l + distance], trace.num_experts) for l in pairs]
    return {"cramers_v": float(np.mean([cramers_v(t) for t in tables])),
            "nmi": float(np.mean([normalised_mutual_information(t) for t in tables]))}


def token_consistency(trace: RoutingTrace) -> float:
    """Share of occurrences of repeated token ids whose first choice is the id's modal expert.

    Counted per layer over the whole trace, for ids seen at least twice; NaN without token ids.
    Independent dice give about 1/experts plus a small-sample excess; compare with a shuffle.
    """
    if trace.token_ids is None:
        return float("nan")
    ids = trace.token_ids.ravel()
    _, id_index, id_count = np.unique(ids, return_inverse=True, return_counts=True)
    repeated = id_count[id_index] >= 2
    if not repeated.any():
        return float("nan")
    n_ids, experts = len(id_count), trace.num_experts
    hits = 0
    for layer in range(trace.layers):
        first = trace.experts[:, layer, :, 0].ravel()
        table = np.bincount(id_index[repeated] * experts + first[repeated],
                            minlength=n_ids * experts).reshape(n_ids, experts)
        hits += table.max(axis=1).sum()
    return float(hits / (repeated.sum() * trace.layers))


def drift(trace: RoutingTrace) -> float:
    """Mean L1 distance between consecutive iterations' load shares (averaged over layers)."""
    if trace.iterations < 2:
        return 0.0
    loads = trace.load_counts().astype(np.float64)
    share = loads / loads.sum(axis=-1, keepdims=True)
    return float(np.abs(np.diff(share, axis=0)).sum(axis=-1).mean())


def trace_stats(trace: RoutingTrace) -> dict:
    """All statistics above, summarised (per-layer lists are means over iterations)."""
    skew = skewness(trace)
    entropy = entropy_bits(trace)
    dependency = (layer_dependency(trace, 1) if trace.layers > 1
                  else {"cramers_v": None, "nmi": None})
    return {
        "model": trace.meta.get("model"),
        "dataset": trace.meta.get("dataset"),
        "source": trace.meta.get("source"),
        "iterations": trace.iterations,
        "layers": trace.layers,
        "tokens": trace.tokens,
        "top_k": trace.top_k,
        "num_experts": trace.num_experts,
        "skewness": {"mean": float(skew.mean()), "min": float(skew.min()),
                     "max": float(skew.max()), "per_layer": skew.mean(axis=0).round(4).tolist()},
        "entropy_bits": {"mean": float(entropy.mean()),
                         "max_possible": float(np.log2(trace.num_experts)),
                         "per_layer": entropy.mean(axis=0).round(4).tolist()},
        "layer_dependency": dependency,
        "token_consistency": _none_if_nan(token_consistency(trace)),
        "drift_l1": drift(trace),
    }


def format_stats(stats: dict) -> str:
    """A short text report: header lines, then one row per MoE layer."""
    dependency = stats["layer_dependency"]
    lines = [
        f"model {stats['model']}  dataset {stats['dataset']}  source {stats['source']}",
        f"iterations {stats['iterations']}  MoE layers {stats['layers']}  "
        f"tokens {stats['tokens']}  experts {stats['num_experts']}  top-k {stats['top_k']}",
        f"skewness (max/mean load)   mean {stats['skewness']['mean']:.3f}  "
        f"min {stats['skewness']['min']:.3f}  max {stats['skewness']['max']:.3f}",
        f"entropy (bits)             mean {stats['entropy_bits']['mean']:.3f} "
        f"of {stats['entropy_bits']['max_possible']:.3f}",
        f"layer l->l+1 dependency    Cramer's V {_fmt(dependency['cramers_v'])}  "
        f"NMI {_fmt(dependency['nmi'])}",
        f"token-id consistency       {_fmt(stats['token_consistency'])}",
        f"drift (L1, iter to iter)   {stats['drift_l1']:.4f}",
        "",
        f"{'layer':>5} {'skewness':>9} {'entropy':>8}",
    ]
    for layer, (skew, bits) in enumerate(zip(stats["skewness"]["per_layer"],
                                             stats["entropy_bits"]["per_layer"])):
        lines.append(f"{layer:>5} {skew:>9.3f} {bits:>8.3f}")
    return "\n".join(lines)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _fmt(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _none_if_nan(value: float):
    return None if value != value else value

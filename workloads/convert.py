"""Convert routing data from elsewhere into `RoutingTrace`s: load tables and per-token dumps.

Two kinds of input, two kinds of result:

- **Per-token dumps** (``token-jsonl``, ``token-csv``: one record per iteration, layer and
  token listing its experts) convert *exactly*; any gap, duplicate or ragged top-k is an
  error naming the file and line.
- **Per-expert load tables** (``olmoe-counts``: the OLMoE repository's routing analysis as
  in ``shared/data/routing``; ``counts-csv``: any ``layer, expert, count[, iteration]``
  table) hold no per-token routing, so a trace is *drawn* from them, seeded:

  * every token's k choices are a set drawn with exactly the measured inclusion
    probabilities (share of tokens that picked each expert), by systematic sampling over a
    random order of the experts, so the loads match the table in expectation and no token
    repeats an expert;
  * ``olmoe-counts`` also gives first choices (``top_1`` rows) and cross-layer pair counts:
    each token's first choice follows a Markov chain over the measured layers (layer 0 from
    its first-choice distribution, each later one from P(e_l | e_prev) of the pair counts),
    so first choices keep the measured inter-layer dependency exactly; the other k-1
    choices are drawn given the first (never equal to it) with inclusion probabilities
    fitted so that all-k loads match the ``top_k`` rows (`rest_inclusion`), in random order.
    Iterations are independent draws (the tables are aggregates: no drift).

The OLMoE tables cover layers 0, 7 and 15 only, so their traces have 3 MoE layers; pair them
with a 3-layer model such as ``model: {base: olmoe-1b-7b, layers: 3}`` (docs/traces.md).
"""

import csv
import json
import math
import os
from pathlib import Path

import numpy as np

from simulator.safeio import check_regular_file
from simulator.safeio.files import text_limit_bytes
from workloads.errors import WorkloadError
from workloads.models import model_spec
from workloads.trace import RoutingTrace

FORMATS = ("auto", "olmoe-counts", "counts-csv", "token-jsonl", "token-csv")
ROUTINGS = ("top_k", "top_1")
OLMOE_EXPERT_COLUMNS = ("model", "num_experts", "top_k", "domain", "routing", "layer", "expert",
                        "count")
OLMOE_PAIR_COLUMNS = ("model", "num_experts", "top_k", "domain", "routing", "from_layer",
                      "to_layer", "from_expert", "to_expert", "count")
COUNTS_COLUMNS = ("layer", "expert", "count")
TOKEN_KEYS = ("iteration", "layer", "token", "experts")
OLMOE_LICENCE = ("Apache-2.0; Copyright Allen Institute for AI (allenai/OLMoE, "
                 "scripts/routing_output, commit 357454f)")
_FIT_STEPS = 2000
_FIT_TOLERANCE = 1e-9


# --- entry point -------------------------------------------------------------------------------

def convert_trace(source: str | os.PathLike, *, format: str = "auto", model: str | None = None,
                  domain: str | None = None, routing: str = "top_k",
                  crosslayer: str | os.PathLike | None = None, iterations: int | None = None,
                  tokens: int = 2048, seed: int = 0, top_k: int | None = None,
                  num_experts: int | None = None, dataset: str | None = None) -> RoutingTrace:
    """Read `source` in `format` (``auto`` guesses from the name and header) into a trace.

    Drawn formats use `iterations` x `tokens` and `seed`; `model` selects the rows of an
    ``olmoe-counts`` table and elsewhere names the model (a catalogue name also sets the
    default `top_k` and `num_experts`); `dataset` goes to ``meta`` (default: domain or file).
    """
    if format not in FORMATS:
        raise WorkloadError(f"must be one of {', '.join(FORMATS)}, got {format!r}", "--format")
    path = Path(source)
    if not path.exists():
        raise WorkloadError(f"{path}: no such file or directory", "--input")
    if not path.is_dir():  # a FIFO or /dev/zero would hang or fill memory
        check_regular_file(path, "--input", text_limit_bytes(), error=WorkloadError)
    try:
        if format == "auto":
            format = detect_format(path)
        if format == "olmoe-counts":
            return olmoe_counts_trace(path, model=model, domain=domain, routing=routing,
                                      crosslayer=crosslayer,
                                      iterations=10 if iterations is None else iterations,
                                      tokens=tokens, seed=seed, dataset=dataset)
        if path.is_dir():
            raise WorkloadError(f"{path} is a directory; format {format} reads one file",
                                "--input")
        if format == "counts-csv":
            return counts_csv_trace(path, model=model, top_k=top_k, num_experts=num_experts,
                                    iterations=iterations, tokens=tokens, seed=seed,
                                    dataset=dataset)
        reader = read_token_jsonl if format == "token-jsonl" else read_token_csv
        return reader(path, model=model, num_experts=num_experts, dataset=dataset)
    except (UnicodeDecodeError, csv.Error) as error:
        raise WorkloadError(f"{path}: not a UTF-8 text table ({error})", "--input") from None


def detect_format(path: Path) -> str:
    """Guess the format: a directory or a table with model/domain columns is olmoe-counts;
    .jsonl/.json is token-jsonl; a CSV with e0 is token-csv, with count counts-csv."""
    if path.is_dir():
        return "olmoe-counts"
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return "token-jsonl"
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        header = [name.strip() for name in next(csv.reader(handle), [])]
    if {"from_layer", "to_layer"} <= set(header):
        raise WorkloadError(f"{path} holds cross-layer pair counts; pass expert_counts.csv (or "
                            "its folder) as INPUT and this file as --crosslayer", "--input")
    if {"domain", "routing"} <= set(header):
        return "olmoe-counts"
    if "e0" in header:
        return "token-csv"
    if "count" in header:
        return "counts-csv"
    raise WorkloadError(f"{path}: cannot tell the format from its name and header "
                        f"({', '.join(header) or 'empty'}); pass --format one of "
                        f"{', '.join(FORMATS[1:])}", "--format")


# --- drawing from load tables ------------------------------------------------------------------

def systematic_choices(rng: np.random.Generator, inclusion: np.ndarray, m: int) -> np.ndarray:
    """[tokens, m] distinct expert ids per row, expert e included with probability
    ``inclusion[row, e]`` exactly (rows sum to m, entries in [0, 1]): systematic sampling
    over a random order of the experts, so the choices come out in random order."""
    tokens, experts = inclusion.shape
    order = np.argsort(rng.random((tokens, experts)), axis=1)
    cumulative = np.cumsum(np.take_along_axis(inclusion, order, axis=1), axis=1)
    cumulative *= m / cumulative[:, -1:]
    points = rng.random((tokens, 1)) + np.arange(m)
    offsets = np.arange(tokens)[:, None] * (m + 1.0)  # keeps the flattened rows sorted
    flat = np.searchsorted((cumulative + offsets).ravel(), (points + offsets).ravel(),
                           side="right").reshape(tokens, m)
    position = flat - np.arange(tokens)[:, None] * experts
    return np.take_along_axis(order, np.minimum(position, experts - 1), axis=1)


def capped_inclusion(weight: np.ndarray, m: int) -> np.ndarray:
    """R[f, b] = min(1, lambda_f * weight[b]) for b != f, 0 on the diagonal, each row summing
    to m (water-filling for lambda_f): inclusion probabilities of m further choices."""
    experts = len(weight)
    rows = np.broadcast_to(weight, (experts, experts)).copy()
    np.fill_diagonal(rows, 0.0)
    ordered = -np.sort(-rows, axis=1)
    tail = np.cumsum(ordered[:, ::-1], axis=1)[:, ::-1]  # tail[:, c] = sum of entries c..
    scale = np.full(experts, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        for capped in range(m):  # `capped` largest entries at 1, the rest proportional
            trial = (m - capped) / tail[:, capped]
            fits = trial * ordered[:, capped] <= 1 + 1e-12
            if capped:
                fits &= trial * ordered[:, capped - 1] >= 1 - 1e-12
            fresh = fits & np.isnan(scale)
            scale[fresh] = trial[fresh]
        # a row with fewer than m candidates (inconsistent input) takes all of them
        scaled = np.nan_to_num(scale, nan=np.inf)[:, None] * rows
    return np.where(rows > 0, np.minimum(1.0, scaled), 0.0)


def rest_inclusion(first: np.ndarray, rest: np.ndarray, m: int) -> tuple[np.ndarray, float]:
    """(R, error): R[f, b] is the probability that b is among the other m choices of a token
    whose first choice is f, fitted (multiplicative scaling of one weight per expert) so that
    sum_f first[f] R[f, b] = rest[b]; `first` sums to 1, `rest` to m. `error` = max misfit."""
    weight = np.where(rest > 0, rest, 0.0)
    error = math.inf
    for _ in range(_FIT_STEPS):
        inclusion = capped_inclusion(weight, m)
        achieved = first @ inclusion
        error = float(np.abs(achieved - rest).max())
        if error < _FIT_TOLERANCE:
            break
        weight = weight * np.where(achieved > 0, rest / np.maximum(achieved, 1e-300), 1.0)
    return inclusion, error


def _first_choice_chain(rng, tokens: int, first: list[np.ndarray],
                        transitions: list[np.ndarray | None]) -> np.ndarray:
    """[layers, tokens] first choices: layer 0 from `first[0]`, layer l from row e_{l-1} of
    `transitions[l-1]` (counts; None or an empty row: `first[l]`, independent)."""
    chosen = np.empty((len(first), tokens), dtype=np.int64)
    chosen[0] = _draw(rng, np.broadcast_to(first[0], (tokens, len(first[0]))))
    for layer in range(1, len(first)):
        matrix = transitions[layer - 1]
        if matrix is None:
            rows = np.broadcast_to(first[layer], (tokens, len(first[layer])))
        else:
            totals = matrix.sum(axis=1, keepdims=True)
            conditional = np.where(totals > 0, matrix / np.maximum(totals, 1), first[layer])
            rows = conditional[chosen[layer - 1]]
        chosen[layer] = _draw(rng, rows)
    return chosen


def _draw(rng, probabilities: np.ndarray) -> np.ndarray:
    """One category per row of `probabilities` (inverse CDF, vectorised)."""
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative /= cumulative[:, -1:]
    index = (rng.random((len(probabilities), 1)) >= cumulative).sum(axis=1)
    return np.minimum(index, probabilities.shape[1] - 1)


# --- olmoe-counts ------------------------------------------------------------------------------

def olmoe_counts_trace(source: Path, *, model: str | None, domain: str | None,
                       routing: str = "top_k", crosslayer: str | os.PathLike | None = None,
                       iterations: int = 10, tokens: int = 2048, seed: int = 0,
                       dataset: str | None = None) -> RoutingTrace:
    """Draw a trace from the OLMoE routing tables (see the module docstring for how)."""
    _check_draw_sizes(iterations, tokens)
    if routing not in ROUTINGS:
        raise WorkloadError(f"must be one of {', '.join(ROUTINGS)}, got {routing!r}", "--routing")
    experts_path = source / "expert_counts.csv" if source.is_dir() else source
    if not experts_path.is_file():
        raise WorkloadError(f"{experts_path}: no such file (olmoe-counts reads expert_counts.csv)",
                            "--input")
    if crosslayer is None:
        beside = experts_path.with_name("crosslayer_counts.csv")
        pairs_path = beside if beside.is_file() else None
    else:
        pairs_path = Path(crosslayer)
        if not pairs_path.is_file():
            raise WorkloadError(f"{pairs_path}: no such file", "--crosslayer")

    table = _read_olmoe_experts(experts_path)
    model = _pick(model, sorted(table), "model", "--model", experts_path)
    num_experts, top_k = table[model]["shape"]
    domains = table[model]["domains"]
    domain = _pick(domain, sorted(domains), f"domain of {model}", "--domain", experts_path)
    rows = domains[domain]  # routing -> layer -> counts
    if routing not in rows:
        raise WorkloadError(f"{experts_path} has no {routing} rows for {model} {domain}; "
                            f"available: {', '.join(sorted(rows))}", "--routing")
    layers = sorted(rows[routing])
    have_top_1 = "top_1" in rows and sorted(rows["top_1"]) == layers
    pair_routing = "top_1" if have_top_1 else routing
    counts_k = {layer: rows[routing][layer] for layer in layers}
    _check_same_tokens(counts_k, experts_path, f"{model} {domain} {routing}")
    k = 1 if routing == "top_1" else top_k
    source_tokens = int(counts_k[layers[0]].sum()) // k
    for layer in layers:
        heavy = int(np.argmax(counts_k[layer]))
        if counts_k[layer][heavy] > source_tokens:
            raise WorkloadError(f"{experts_path}: expert {heavy} at layer {layer} counts "
                                f"{int(counts_k[layer][heavy])} choices but there are only "
                                f"{source_tokens} tokens (top_k {k})", "--input")
    if have_top_1:
        first = {layer: rows["top_1"][layer] / rows["top_1"][layer].sum() for layer in layers}
        for layer in layers:
            if int(rows["top_1"][layer].sum()) * k != int(counts_k[layer].sum()):
                raise WorkloadError(f"{experts_path}: {model} {domain} layer {layer}: top_1 rows "
                                    f"count {int(rows['top_1'][layer].sum())} tokens but top_k "
                                    f"rows {int(counts_k[layer].sum())} choices (top_k {k})",
                                    "--input")
    else:  # no first-choice data: the first is a uniformly random one of the k
        first = {layer: counts_k[layer] / counts_k[layer].sum() for layer in layers}

    transitions, dependent = [], []
    pairs = (_read_olmoe_pairs(pairs_path, model, domain, pair_routing, num_experts)
             if pairs_path is not None else {})
    for a, b in zip(layers[:-1], layers[1:], strict=True):
        matrix = pairs.get((a, b))
        if matrix is not None:
            base = rows[pair_routing]
            _check_pair_margins(matrix, base[a], base[b], pairs_path, a, b)
            dependent.append([a, b])
        transitions.append(matrix)

    rest, misfit = None, 0.0
    if k > 1:
        rest = {}
        for layer in layers:
            target = counts_k[layer] / source_tokens - first[layer]
            rest[layer], error = rest_inclusion(first[layer], np.clip(target, 0.0, None), k - 1)
            misfit = max(misfit, error)

    rng = np.random.default_rng(seed)
    experts = np.empty((iterations, len(layers), tokens, k), dtype=np.int64)
    for iteration in range(iterations):
        chosen = _first_choice_chain(rng, tokens, [first[layer] for layer in layers], transitions)
        experts[iteration, :, :, 0] = chosen
        if rest is not None:
            for index, layer in enumerate(layers):
                experts[iteration, index, :, 1:] = systematic_choices(
                    rng, rest[layer][chosen[index]], k - 1)

    how = ("first choices: Markov chain over the measured layers from the "
           f"{pair_routing} first-choice distribution at layer {layers[0]} and "
           f"P(e_l | e_prev) of the {pair_routing} cross-layer pair counts for layer pairs "
           f"{dependent or 'none (independent layers)'}")
    if k > 1:
        how += ("; other choices: drawn given the first with inclusion probabilities fitted to "
                "the top_k loads, systematic sampling, random order")
    meta = {
        "model": model, "dataset": dataset or domain, "domain": domain, "source": "converted",
        "format": "olmoe-counts", "routing": routing, "num_experts": int(num_experts),
        "top_k": int(k), "layers_measured": layers, "tokens_per_iteration": tokens,
        "seed": seed, "inputs": [experts_path.name] + ([pairs_path.name] if pairs_path else []),
        "source_tokens": source_tokens, "dependent_layer_pairs": dependent,
        "first_choices_from": "top_1" if have_top_1 else f"{routing} (uniform among the k)",
        "drawn": how, "iterations_independent": True, "inclusion_fit_error": misfit,
        "pairs_with_model": f"{{base: {model}, layers: {len(layers)}}}",
        "licence": OLMOE_LICENCE,
    }
    return RoutingTrace(experts=experts, meta=meta)


def _read_olmoe_experts(path: Path) -> dict:
    """model -> {"shape": (num_experts, top_k), "domains": {domain: {routing: {layer: counts}}}}."""
    table: dict = {}
    for line, row in _csv_rows(path, OLMOE_EXPERT_COLUMNS):
        model = row["model"]
        num_experts = _int(row, "num_experts", path, line, minimum=1)
        top_k = _int(row, "top_k", path, line, minimum=1)
        entry = table.setdefault(model, {"shape": (num_experts, top_k), "domains": {}})
        if entry["shape"] != (num_experts, top_k):
            raise WorkloadError(f"{path}:{line}: {model} has num_experts, top_k = "
                                f"{num_experts}, {top_k} but earlier rows say "
                                f"{entry['shape'][0]}, {entry['shape'][1]}")
        routing = row["routing"]
        if routing not in ROUTINGS:
            raise WorkloadError(f"{path}:{line}: routing must be one of {', '.join(ROUTINGS)}, "
                                f"got {routing!r}")
        layer = _int(row, "layer", path, line, minimum=0)
        expert = _int(row, "expert", path, line, minimum=0, below=num_experts)
        count = _int(row, "count", path, line, minimum=0)
        layers = entry["domains"].setdefault(row["domain"], {}).setdefault(routing, {})
        layers.setdefault(layer, np.zeros(num_experts, dtype=np.int64))[expert] += count
    if not table:
        raise WorkloadError(f"{path}: no rows")
    return table


def _read_olmoe_pairs(path: Path, model: str, domain: str, routing: str,
                      num_experts: int) -> dict:
    """(from_layer, to_layer) -> [E, E] pair counts for one model, domain and routing."""
    pairs: dict = {}
    for line, row in _csv_rows(path, OLMOE_PAIR_COLUMNS):
        if (row["model"], row["domain"], row["routing"]) != (model, domain, routing):
            continue
        key = (_int(row, "from_layer", path, line, minimum=0),
               _int(row, "to_layer", path, line, minimum=0))
        a = _int(row, "from_expert", path, line, minimum=0, below=num_experts)
        b = _int(row, "to_expert", path, line, minimum=0, below=num_experts)
        count = _int(row, "count", path, line, minimum=0)
        pairs.setdefault(key, np.zeros((num_experts, num_experts), dtype=np.int64))[a, b] += count
    return pairs


def _check_same_tokens(counts: dict, path: Path, what: str) -> None:
    totals = {layer: int(values.sum()) for layer, values in counts.items()}
    first_layer = min(totals)
    for layer, total in totals.items():
        if total == 0:
            raise WorkloadError(f"{path}: {what} layer {layer} has no counts")
        if total != totals[first_layer]:
            raise WorkloadError(f"{path}: {what} layer {layer} counts {total} choices but layer "
                                f"{first_layer} counts {totals[first_layer]}: every layer must "
                                "count the same tokens")


def _check_pair_margins(matrix, from_counts, to_counts, path, a: int, b: int) -> None:
    for axis, counts, layer in ((1, from_counts, a), (0, to_counts, b)):
        sums = matrix.sum(axis=axis)
        bad = np.flatnonzero(sums != counts)
        if bad.size:
            e = int(bad[0])
            raise WorkloadError(f"{path}: pairs {a}->{b} count {int(sums[e])} for expert {e} at "
                                f"layer {layer} but the expert counts say {int(counts[e])}: the "
                                "files do not match")


def _pick(value: str | None, known: list[str], what: str, field: str, path: Path) -> str:
    if value is None:
        if len(known) == 1:
            return known[0]
        raise WorkloadError(f"required: {path} holds several, pick one of {', '.join(known)}",
                            field)
    if value not in known:
        raise WorkloadError(f"unknown {what} {value!r} in {path}; known: {', '.join(known)}",
                            field)
    return value


# --- counts-csv --------------------------------------------------------------------------------

def counts_csv_trace(path: Path, *, model: str | None = None, top_k: int | None = None,
                     num_experts: int | None = None, iterations: int | None = None,
                     tokens: int = 2048, seed: int = 0, dataset: str | None = None) -> RoutingTrace:
    """Draw a trace from a ``layer, expert, count[, iteration]`` table: independent layers,
    each token's top-k a set with inclusion probabilities top_k * count / layer total."""
    spec = _catalogue_model(model)
    top_k = top_k if top_k is not None else (spec.top_k if spec else 1)
    _check_int_option(top_k, "--top-k")
    rows = []
    with_iteration = None
    for line, row in _csv_rows(path, COUNTS_COLUMNS):
        if with_iteration is None:
            with_iteration = "iteration" in row
        iteration = _int(row, "iteration", path, line, minimum=0) if with_iteration else 0
        rows.append((line, iteration, _int(row, "layer", path, line, minimum=0),
                     _int(row, "expert", path, line, minimum=0),
                     _int(row, "count", path, line, minimum=0)))
    if not rows:
        raise WorkloadError(f"{path}: no rows")
    data = np.array([row[1:] for row in rows], dtype=np.int64)
    lines = np.array([row[0] for row in rows])
    widest = int(data[:, 2].max()) + 1
    if num_experts is None:
        num_experts = spec.experts if spec else widest
    _check_int_option(num_experts, "--num-experts")
    if widest > num_experts:
        line = int(lines[np.argmax(data[:, 2])])
        raise WorkloadError(f"{path}:{line}: expert {widest - 1} but there are {num_experts} "
                            "experts (--num-experts)")
    if top_k > num_experts:
        raise WorkloadError(f"must be <= the number of experts ({num_experts}), got {top_k}",
                            "--top-k")
    file_iterations = np.unique(data[:, 0])
    layer_values = np.unique(data[:, 1])
    if with_iteration:
        wanted = len(file_iterations) if iterations is None else iterations
        _check_int_option(wanted, "--iterations")
        if wanted > len(file_iterations):
            raise WorkloadError(f"{path} has {len(file_iterations)} iterations, got {wanted}",
                                "--iterations")
    else:
        wanted = 10 if iterations is None else iterations
    _check_draw_sizes(wanted, tokens)

    counts = np.zeros((len(file_iterations), len(layer_values), num_experts), dtype=np.int64)
    i_index = np.searchsorted(file_iterations, data[:, 0])
    l_index = np.searchsorted(layer_values, data[:, 1])
    np.add.at(counts, (i_index, l_index, data[:, 2]), data[:, 3])
    present = np.zeros(counts.shape[:2], dtype=bool)
    present[i_index, l_index] = True
    if not present.all():
        i, j = np.argwhere(~present)[0]
        raise WorkloadError(f"{path}: iteration {int(file_iterations[i])} has no rows for layer "
                            f"{int(layer_values[j])} (every iteration needs every layer)")
    totals = counts.sum(axis=2, keepdims=True)
    for i, j in np.argwhere(totals[:, :, 0] == 0):
        raise WorkloadError(f"{path}: iteration {int(file_iterations[i])} layer "
                            f"{int(layer_values[j])} has only zero counts")
    inclusion = top_k * counts / totals
    if inclusion.max() > 1 + 1e-12:
        i, j, e = np.unravel_index(int(np.argmax(inclusion)), inclusion.shape)
        mask = ((data[:, 0] == file_iterations[i]) & (data[:, 1] == layer_values[j])
                & (data[:, 2] == e))
        raise WorkloadError(f"{path}:{int(lines[mask][0])}: expert {e} has {int(counts[i, j, e])} "
                            f"of {int(totals[i, j, 0])} choices at layer {int(layer_values[j])}: "
                            f"more than 1/top_k with top_k {top_k} (a token picks an expert at "
                            "most once; pass --top-k)")
    rng = np.random.default_rng(seed)
    experts = np.empty((wanted, len(layer_values), tokens, top_k), dtype=np.int64)
    for iteration in range(wanted):
        for layer in range(len(layer_values)):
            share = np.minimum(inclusion[iteration % len(file_iterations), layer], 1.0)
            experts[iteration, layer] = systematic_choices(
                rng, np.broadcast_to(share, (tokens, num_experts)), top_k)
    meta = {
        "model": model or "unknown", "dataset": dataset or path.stem, "source": "converted",
        "format": "counts-csv", "num_experts": int(num_experts), "top_k": int(top_k),
        "layers_in_file": layer_values.tolist(), "tokens_per_iteration": tokens, "seed": seed,
        "inputs": [path.name],
        "drawn": ("each token's top-k a set with inclusion probabilities top_k * count / total "
                  "(systematic sampling, random order); layers independent; "
                  + ("iteration i from the file's i-th iteration" if with_iteration
                     else "iterations independent draws")),
    }
    return RoutingTrace(experts=experts, meta=meta)


# --- per-token dumps ---------------------------------------------------------------------------

def read_token_jsonl(path: Path, *, model: str | None = None, num_experts: int | None = None,
                     dataset: str | None = None) -> RoutingTrace:
    """Exact trace from JSON lines ``{"iteration", "layer", "token", "experts": [...]}``
    (optional ``token_id`` and ``weights``)."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                raise WorkloadError(f"{path}:{line}: not JSON ({error.msg})") from None
            except RecursionError:
                raise WorkloadError(f"{path}:{line}: JSON nested too deeply") from None
            if not isinstance(row, dict):
                raise WorkloadError(f"{path}:{line}: must be a JSON object with keys "
                                    f"{', '.join(TOKEN_KEYS)}")
            missing = [key for key in TOKEN_KEYS if key not in row]
            if missing:
                raise WorkloadError(f"{path}:{line}: missing key {missing[0]!r}; required: "
                                    f"{', '.join(TOKEN_KEYS)} (optional: token_id, weights)")
            experts = row["experts"]
            if not isinstance(experts, list) or not experts:
                raise WorkloadError(f"{path}:{line}: experts must be a non-empty list of ints")
            weights = row.get("weights")
            if weights is not None and (not isinstance(weights, list)
                                        or len(weights) != len(experts)):
                raise WorkloadError(f"{path}:{line}: weights must be a list as long as experts")
            records.append((line, [_json_int(row[key], key, path, line)
                                   for key in TOKEN_KEYS[:3]],
                            [_json_int(e, "experts", path, line) for e in experts],
                            None if "token_id" not in row
                            else _json_int(row["token_id"], "token_id", path, line),
                            None if weights is None
                            else [_json_float(w, "weights", path, line) for w in weights]))
    return _assemble(records, path, "token-jsonl", model, num_experts, dataset)


def read_token_csv(path: Path, *, model: str | None = None, num_experts: int | None = None,
                   dataset: str | None = None) -> RoutingTrace:
    """Exact trace from CSV ``iteration, layer, token, e0, e1, ...`` (optional ``token_id``
    and ``w0, w1, ...`` weight columns)."""
    records = []
    header = None
    for line, row in _csv_rows(path, ("iteration", "layer", "token", "e0")):
        if header is None:
            header = list(row)
            choices = _numbered(header, "e")
            weight_columns = _numbered(header, "w")
            if weight_columns and len(weight_columns) != len(choices):
                raise WorkloadError(f"{path}:1: {len(weight_columns)} weight columns w0.. but "
                                    f"{len(choices)} expert columns e0..")
        records.append((line, [_int(row, key, path, line, minimum=0) for key in TOKEN_KEYS[:3]],
                        [_int(row, key, path, line) for key in choices],
                        _int(row, "token_id", path, line) if "token_id" in row else None,
                        [_float(row, key, path, line) for key in weight_columns] or None))
    return _assemble(records, path, "token-csv", model, num_experts, dataset)


def _numbered(header: list[str], prefix: str) -> list[str]:
    columns = []
    while f"{prefix}{len(columns)}" in header:
        columns.append(f"{prefix}{len(columns)}")
    return columns


def _assemble(records: list, path: Path, format: str, model, num_experts, dataset) -> RoutingTrace:
    """Place (line, [i, l, t], experts, token_id, weights) records into the dense arrays."""
    if not records:
        raise WorkloadError(f"{path}: no records")
    first_line, _, first_experts, first_id, first_weights = records[0]
    top_k = len(first_experts)
    for line, index, experts, token_id, weights in records:
        if min(index) < 0:
            name = TOKEN_KEYS[int(np.argmin(index))]
            raise WorkloadError(f"{path}:{line}: {name} must be >= 0, got {min(index)}")
        if len(experts) != top_k:
            raise WorkloadError(f"{path}:{line}: {len(experts)} experts but line {first_line} has "
                                f"{top_k}: top_k must be the same for every token")
        if min(experts) < 0:
            raise WorkloadError(f"{path}:{line}: expert ids must be >= 0, got {min(experts)}")
        if len(set(experts)) != top_k:
            raise WorkloadError(f"{path}:{line}: lists an expert twice ({experts})")
        if (token_id is None) != (first_id is None) or (weights is None) != (first_weights is None):
            raise WorkloadError(f"{path}:{line}: token_id/weights present on some records but "
                                f"not others (compare line {first_line})")
    lines = np.array([record[0] for record in records])
    index = np.array([record[1] for record in records], dtype=np.int64)
    shape = tuple(int(n) for n in index.max(axis=0) + 1)  # iterations, layers, tokens
    flat = np.ravel_multi_index(index.T, shape)
    order = np.argsort(flat, kind="stable")
    repeated = np.flatnonzero(np.diff(flat[order]) == 0)
    if repeated.size:
        a, b = lines[order[repeated[0]]], lines[order[repeated[0] + 1]]
        i, layer, t = index[order[repeated[0]]]
        raise WorkloadError(f"{path}:{b}: iteration {i}, layer {layer}, token {t} again (first "
                            f"at line {a})")
    if len(records) != math.prod(shape):
        seen = np.zeros(math.prod(shape), dtype=bool)
        seen[flat] = True
        i, layer, t = np.unravel_index(int(np.argmin(seen)), shape)
        raise WorkloadError(f"{path}: no record for iteration {i}, layer {layer}, token {t}: "
                            f"every iteration and layer needs the same tokens (shape {shape})")
    experts = np.empty((math.prod(shape), top_k), dtype=np.int64)
    experts[flat] = [record[2] for record in records]
    widest = int(experts.max()) + 1
    spec = _catalogue_model(model)
    if num_experts is None:
        num_experts = max(widest, spec.experts if spec else 0)
    if widest > num_experts:
        bad = int(np.argmax([max(record[2]) for record in records]))
        raise WorkloadError(f"{path}:{records[bad][0]}: expert {widest - 1} but there are "
                            f"{num_experts} experts (--num-experts)")
    weights = token_ids = None
    if first_weights is not None:
        weights = np.empty((math.prod(shape), top_k), dtype=np.float32)
        weights[flat] = [record[4] for record in records]
        weights = weights.reshape(*shape, top_k)
    if first_id is not None:
        ids = np.full(shape, -1, dtype=np.int64)
        ids.reshape(-1)[flat] = [record[3] for record in records]
        differs = np.argwhere((ids != ids[:, :1, :]).any(axis=1))
        if differs.size:
            i, t = differs[0]
            layer = int(np.argmax(ids[i, :, t] != ids[i, 0, t]))
            where = lines[np.flatnonzero(flat == np.ravel_multi_index((i, layer, t), shape))[0]]
            raise WorkloadError(f"{path}:{where}: token_id {int(ids[i, layer, t])} for iteration "
                                f"{i}, token {t} but layer 0 says {int(ids[i, 0, t])}")
        token_ids = ids[:, 0, :].astype(np.int32)
    meta = {"model": model or "unknown", "dataset": dataset or path.stem, "source": "converted",
            "format": format, "num_experts": int(num_experts), "top_k": top_k,
            "inputs": [path.name], "drawn": "exact (per-token dump)"}
    return RoutingTrace(experts=experts.reshape(*shape, top_k), token_ids=token_ids,
                        weights=weights, meta=meta)


def write_token_jsonl(trace: RoutingTrace, path: str | os.PathLike) -> Path:
    """One JSON line per (iteration, layer, token): the inverse of `read_token_jsonl`."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as out:
        for (i, layer, t), experts, token_id, weights in _token_rows(trace):
            row = {"iteration": i, "layer": layer, "token": t, "experts": experts}
            if token_id is not None:
                row["token_id"] = token_id
            if weights is not None:
                row["weights"] = weights
            out.write(json.dumps(row) + "\n")
    return path


def write_token_csv(trace: RoutingTrace, path: str | os.PathLike) -> Path:
    """CSV ``iteration, layer, token, e0.. [, token_id] [, w0..]``: the inverse of
    `read_token_csv`."""
    path = Path(path)
    k = trace.top_k
    header = ["iteration", "layer", "token", *(f"e{j}" for j in range(k))]
    header += ["token_id"] if trace.token_ids is not None else []
    header += [f"w{j}" for j in range(k)] if trace.weights is not None else []
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        for index, experts, token_id, weights in _token_rows(trace):
            writer.writerow([*index, *experts, *([] if token_id is None else [token_id]),
                             *([] if weights is None else [repr(w) for w in weights])])
    return path


def _token_rows(trace: RoutingTrace):
    """((iteration, layer, token), experts, token_id | None, weights | None) as Python values;
    weights are float32 values as floats, so their text form reads back exactly."""
    index = np.indices(trace.experts.shape[:3]).reshape(3, -1).T.tolist()
    experts = trace.experts.reshape(-1, trace.top_k).tolist()
    token_ids = weights = None
    if trace.token_ids is not None:
        token_ids = np.broadcast_to(trace.token_ids[:, None, :], trace.experts.shape[:3])
        token_ids = token_ids.ravel().tolist()
    if trace.weights is not None:
        weights = trace.weights.reshape(-1, trace.top_k).astype(np.float64).tolist()
    for row, (where, chosen) in enumerate(zip(index, experts, strict=True)):
        yield (tuple(where), chosen, None if token_ids is None else token_ids[row],
               None if weights is None else weights[row])


# --- small readers -----------------------------------------------------------------------------

def _csv_rows(path: Path, required: tuple[str, ...]):
    """(line number, row dict) for every data row; missing columns name the file and line 1."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise WorkloadError(f"{path}:1: column {repeated[0]!r} appears twice; give each once")
        missing = [name for name in required if name not in header]
        if missing:
            raise WorkloadError(f"{path}:1: missing column {missing[0]!r}; required: "
                                f"{', '.join(required)} (found: {', '.join(header) or 'nothing'})")
        for line, values in enumerate(reader, start=2):
            if not values or not any(value.strip() for value in values):
                continue
            if len(values) != len(header):
                raise WorkloadError(f"{path}:{line}: {len(values)} fields but the header has "
                                    f"{len(header)}")
            yield line, dict(zip(header, (value.strip() for value in values), strict=True))


def _int(row: dict, key: str, path, line: int, minimum: int | None = None,
         below: int | None = None) -> int:
    text = row[key]
    try:
        value = int(text)
    except ValueError:
        raise WorkloadError(f"{path}:{line}: {key} must be an integer, got {text!r}") from None
    if minimum is not None and value < minimum:
        what = "counts must be >= 0" if key == "count" else f"{key} must be >= {minimum}"
        raise WorkloadError(f"{path}:{line}: {what}, got {value}")
    if below is not None and value >= below:
        raise WorkloadError(f"{path}:{line}: {key} must be < {below}, got {value}")
    return value


def _float(row: dict, key: str, path, line: int) -> float:
    try:
        return float(row[key])
    except ValueError:
        raise WorkloadError(f"{path}:{line}: {key} must be a number, got {row[key]!r}") from None


def _json_int(value, key: str, path, line: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WorkloadError(f"{path}:{line}: {key} must be integers, got {value!r}")
    return value


def _json_float(value, key: str, path, line: int) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WorkloadError(f"{path}:{line}: {key} must be numbers, got {value!r}")
    return float(value)


def _check_int_option(value, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WorkloadError(f"must be an integer >= 1, got {value!r}", field)


def _check_draw_sizes(iterations: int, tokens: int) -> None:
    _check_int_option(iterations, "--iterations")
    _check_int_option(tokens, "--tokens")


def _catalogue_model(name: str | None):
    """The catalogue spec when `name` is a catalogue model, else None (any name is allowed)."""
    if name is None:
        return None
    try:
        return model_spec(name, field="--model")
    except WorkloadError:
        return None

"""`moesim trace convert`: exact per-token dumps, traces drawn from load tables, errors, the
bundled OLMoE trace and the console blocks of docs/traces.md."""

import csv
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.cli import main
from workloads.convert import (
    capped_inclusion,
    convert_trace,
    rest_inclusion,
    systematic_choices,
    write_token_csv,
    write_token_jsonl,
)
from workloads.errors import WorkloadError
from workloads.models import model_spec
from workloads.stats import cramers_v
from workloads.trace import RoutingTrace

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "traces.md"
SHARED = REPO.parent / "shared" / "data" / "routing"
BUNDLED = REPO / "workloads" / "data" / "olmoe-arxiv.npz"
needs_shared = pytest.mark.skipif(not (SHARED / "expert_counts.csv").is_file(),
                                  reason="shared/data/routing not present")


def random_trace(seed=0, iterations=2, layers=3, tokens=5, experts=8, top_k=2, extras=True):
    rng = np.random.default_rng(seed)
    choice = np.argsort(rng.random((iterations, layers, tokens, experts)), axis=-1)[..., :top_k]
    return RoutingTrace(
        experts=choice,
        token_ids=rng.integers(0, 1000, (iterations, tokens)).astype(np.int32) if extras else None,
        weights=rng.random(choice.shape).astype(np.float32) if extras else None,
        meta={"model": "m", "num_experts": experts},
    )


# --- per-token dumps: exact ------------------------------------------------------------------

@pytest.mark.parametrize("writer, name", [(write_token_jsonl, "t.jsonl"),
                                          (write_token_csv, "t.csv")])
def test_token_dump_round_trips_to_an_identical_trace(tmp_path, writer, name):
    trace = random_trace()
    path = writer(trace, tmp_path / name)
    back = convert_trace(path, num_experts=8)
    assert np.array_equal(back.experts, trace.experts)
    assert np.array_equal(back.token_ids, trace.token_ids)
    assert np.array_equal(back.weights, trace.weights)  # float32 survives the text exactly
    assert back.meta["num_experts"] == 8 and back.meta["source"] == "converted"


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 6), st.integers(1, 4),
       st.integers(0, 10_000), st.booleans())
def test_csv_dump_round_trip_property(tmp_path_factory, iterations, layers, tokens, top_k, seed,
                                      extras):
    trace = random_trace(seed, iterations, layers, tokens, experts=6, top_k=top_k, extras=extras)
    path = write_token_csv(trace, tmp_path_factory.mktemp("dump") / "t.csv")
    back = convert_trace(path, format="token-csv", num_experts=6)
    assert np.array_equal(back.experts, trace.experts)
    assert (back.token_ids is None) == (not extras)


def test_token_records_may_come_in_any_order(tmp_path):
    trace = random_trace()
    path = write_token_jsonl(trace, tmp_path / "t.jsonl")
    lines = path.read_text().splitlines()
    np.random.default_rng(1).shuffle(lines)
    path.write_text("\n".join(lines) + "\n")
    assert np.array_equal(convert_trace(path, num_experts=8).experts, trace.experts)


def test_catalogue_model_sets_the_expert_count(tmp_path):
    path = write_token_jsonl(random_trace(experts=4), tmp_path / "t.jsonl")
    back = convert_trace(path, model="mixtral-8x7b")
    assert back.num_experts == 8 and back.meta["model"] == "mixtral-8x7b"


def _ragged(rows):
    rows = list(rows)
    rows[4] = rows[4].replace('"experts": [', '"experts": [7, 6, ')
    return rows


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows[:3] + rows[4:], "no record for iteration 0, layer 1, token 0"),
    (lambda rows: rows + [rows[0]],
     "t.jsonl:13: iteration 0, layer 0, token 0 again (first at line 1)"),
    (_ragged, "t.jsonl:5: 4 experts but line 1 has 2: top_k must be the same for every token"),
])
def test_token_jsonl_gaps_duplicates_and_ragged_top_k_are_refused(tmp_path, edit, message):
    trace = random_trace(iterations=2, layers=2, tokens=3, extras=False)
    path = write_token_jsonl(trace, tmp_path / "t.jsonl")
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    with pytest.raises(WorkloadError, match=re.escape(message)):
        convert_trace(path, num_experts=8)


@pytest.mark.parametrize("text, message", [
    ("iteration,layer,e0\n0,0,1\n", "t.csv:1: missing column 'token'; required: iteration, "
                                    "layer, token, e0"),
    ("iteration,layer,token,e0,e1\n0,0,0,1,1\n", "t.csv:2: lists an expert twice ([1, 1])"),
    ("iteration,layer,token,e0\n0,0,0,-1\n", "t.csv:2: expert ids must be >= 0, got -1"),
    ("iteration,layer,token,e0\n0,0,0,x\n", "t.csv:2: e0 must be an integer, got 'x'"),
    ("iteration,layer,token,e0\n0,0,0,1,5\n", "t.csv:2: 5 fields but the header has 4"),
    ("iteration,layer,token,e0,token_id\n0,0,0,1,7\n0,1,0,2,8\n",
     "t.csv:3: token_id 8 for iteration 0, token 0 but layer 0 says 7"),
    ("iteration,layer,token,e0\n0,0,0,9\n", "t.csv:2: expert 9 but there are 8 experts"),
])
def test_token_csv_defects_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(WorkloadError, match=re.escape(message)):
        convert_trace(path, format="token-csv", num_experts=8)


def test_bad_json_line_is_reported(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"iteration": 0, "layer": 0, "token": 0, "experts": [1]}\n{oops\n')
    with pytest.raises(WorkloadError, match=r"t\.jsonl:2: not JSON"):
        convert_trace(path)
    path.write_text('{"iteration": 0, "layer": 0, "experts": [1]}\n')
    with pytest.raises(WorkloadError, match=r"t\.jsonl:1: missing key 'token'"):
        convert_trace(path)


# --- drawing primitives ----------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(st.integers(2, 12), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_systematic_choices_are_distinct_and_inside_the_support(experts, m, seed):
    m = min(m, experts - 1)
    rng = np.random.default_rng(seed)
    weight = rng.random(experts) ** 4 * (rng.random(experts) > 0.3)
    weight[: m + 1] += 1e-3  # at least m candidates besides expert 0
    inclusion = capped_inclusion(weight, m)[0]
    np.testing.assert_allclose(inclusion.sum(), m)
    inclusion = np.broadcast_to(inclusion, (50, experts))
    chosen = systematic_choices(rng, inclusion, m)
    assert chosen.shape == (50, m)
    assert all(len(set(row)) == m for row in chosen.tolist())
    assert np.all(inclusion[np.arange(50)[:, None], chosen] > 0)


def test_systematic_choices_hit_the_inclusion_probabilities():
    rng = np.random.default_rng(0)
    target = np.array([0.95, 0.8, 0.1, 0.05, 0.6, 0.5])  # sums to 3
    chosen = systematic_choices(rng, np.broadcast_to(target, (200_000, 6)), 3)
    share = np.bincount(chosen.ravel(), minlength=6) / 200_000
    assert np.abs(share - target).max() < 0.005


def test_rest_inclusion_fits_the_loads_with_valid_rows():
    rng = np.random.default_rng(3)
    first = rng.dirichlet(np.ones(10))
    true = np.stack([capped_inclusion(rng.random(10) ** 3, 3)[f] for f in range(10)])
    rest = first @ true  # a feasible target
    inclusion, error = rest_inclusion(first, rest, 3)
    assert error < 1e-9
    np.testing.assert_allclose(first @ inclusion, rest, atol=1e-9)
    np.testing.assert_allclose(inclusion.sum(axis=1), 3, rtol=1e-12)
    assert np.all(np.diag(inclusion) == 0) and inclusion.max() <= 1 + 1e-12


# --- counts-csv ------------------------------------------------------------------------------

def write_csv(path, header, rows):
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_counts_csv_reproduces_each_layers_loads(tmp_path):
    counts = {0: [900, 500, 400, 200], 1: [300, 300, 700, 700]}
    path = write_csv(tmp_path / "loads.csv", ["layer", "expert", "count"],
                     [(layer, e, c) for layer, row in counts.items() for e, c in enumerate(row)])
    trace = convert_trace(path, top_k=2, iterations=2, tokens=50_000, seed=1)
    assert trace.experts.shape == (2, 2, 50_000, 2)
    loads = trace.load_counts().sum(axis=0)
    for layer, row in counts.items():
        share = np.array(row) / sum(row)
        np.testing.assert_allclose(loads[layer] / loads[layer].sum(), share, rtol=0.02)
    assert trace.meta["format"] == "counts-csv" and trace.meta["top_k"] == 2


def test_counts_csv_with_iterations_draws_each_from_its_own_row(tmp_path):
    rows = [(0, 0, 0, 90), (0, 0, 1, 10), (1, 0, 0, 10), (1, 0, 1, 90)]
    path = write_csv(tmp_path / "c.csv", ["iteration", "layer", "expert", "count"], rows)
    trace = convert_trace(path, format="counts-csv", tokens=20_000, seed=0)
    assert trace.iterations == 2
    share = trace.load_counts()[:, 0, 0] / 20_000
    np.testing.assert_allclose(share, [0.9, 0.1], atol=0.01)


def test_counts_csv_same_seed_same_trace(tmp_path):
    path = write_csv(tmp_path / "c.csv", ["layer", "expert", "count"],
                     [(0, e, e + 1) for e in range(6)])
    a = convert_trace(path, top_k=2, tokens=300, seed=5)
    b = convert_trace(path, top_k=2, tokens=300, seed=5)
    c = convert_trace(path, top_k=2, tokens=300, seed=6)
    assert np.array_equal(a.experts, b.experts) and not np.array_equal(a.experts, c.experts)


@pytest.mark.parametrize("header, rows, options, message", [
    (["layer", "expert", "tokens"], [(0, 0, 1)], {}, "c.csv:1: missing column 'count'"),
    (["layer", "expert", "count"], [(0, 0, 5), (0, 1, -3)], {},
     "c.csv:3: counts must be >= 0, got -3"),
    (["layer", "expert", "count"], [(0, 0, 9), (0, 1, 1)], {"top_k": 2},
     "c.csv:2: expert 0 has 9 of 10 choices at layer 0: more than 1/top_k with top_k 2"),
    (["iteration", "layer", "expert", "count"], [(0, 0, 0, 1), (0, 1, 0, 1), (1, 0, 0, 1)], {},
     "iteration 1 has no rows for layer 1"),
    (["layer", "expert", "count"], [(0, 0, 0), (0, 1, 0)], {}, "layer 0 has only zero counts"),
    (["iteration", "layer", "expert", "count"], [(0, 0, 0, 1)], {"iterations": 3},
     "c.csv has 1 iterations, got 3"),
])
def test_counts_csv_defects(tmp_path, header, rows, options, message):
    path = write_csv(tmp_path / "c.csv", header, rows)
    with pytest.raises(WorkloadError, match=re.escape(message)):
        convert_trace(path, format="counts-csv", **options)


# --- olmoe-counts ----------------------------------------------------------------------------

def toy_olmoe_tables(folder: Path, tokens=20_000, experts=6, top_k=2, seed=0):
    """OLMoE-format tables of a known process: first choices a Markov chain, the second a
    random other expert. Pair counts pair the i-th choices, as the OLMoE script does."""
    rng = np.random.default_rng(seed)
    layers = (0, 7, 15)
    start = rng.dirichlet(np.ones(experts) * 0.5)
    step = rng.dirichlet(np.ones(experts) * 0.3, size=experts)
    first = [rng.choice(experts, tokens, p=start)]
    for _ in layers[1:]:
        cumulative = step[first[-1]].cumsum(axis=1)
        first.append(np.minimum((rng.random((tokens, 1)) > cumulative).sum(axis=1), experts - 1))
    second = [(f + rng.integers(1, experts, tokens)) % experts for f in first]
    rows, pairs = [], []
    for index, layer in enumerate(layers):
        for routing, picks in (("top_1", [first[index]]), ("top_k", [first[index], second[index]])):
            counts = np.bincount(np.concatenate(picks), minlength=experts)
            rows += [("toy", experts, top_k, "arxiv", routing, layer, e, int(c))
                     for e, c in enumerate(counts)]
    for here in range(len(layers) - 1):
        for routing, slots in (("top_1", [first]), ("top_k", [first, second])):
            matrix = np.zeros((experts, experts), dtype=np.int64)
            for choice in slots:  # the i-th choice at one layer with the i-th at the next
                np.add.at(matrix, (choice[here], choice[here + 1]), 1)
            pairs += [("toy", experts, top_k, "arxiv", routing, layers[here], layers[here + 1],
                       i, j, int(matrix[i, j]))
                      for i in range(experts) for j in range(experts) if matrix[i, j]]
    write_csv(folder / "expert_counts.csv", ["model", "num_experts", "top_k", "domain", "routing",
                                             "layer", "expert", "count"], rows)
    write_csv(folder / "crosslayer_counts.csv",
              ["model", "num_experts", "top_k", "domain", "routing", "from_layer", "to_layer",
               "from_expert", "to_expert", "count"], pairs)
    return folder


def source_tables(folder: Path, model: str, domain: str, experts: int):
    loads, transition = {}, np.zeros((experts, experts))
    for row in csv.DictReader(open(folder / "expert_counts.csv")):
        if row["model"] == model and row["domain"] == domain:
            key = (row["routing"], int(row["layer"]))
            loads.setdefault(key, np.zeros(experts))[int(row["expert"])] = int(row["count"])
    for row in csv.DictReader(open(folder / "crosslayer_counts.csv")):
        if (row["model"], row["domain"], row["routing"], row["from_layer"]) == (
                model, domain, "top_1", "0"):
            transition[int(row["from_expert"]), int(row["to_expert"])] = int(row["count"])
    return loads, transition


def check_reproduces_source(trace, folder, model, domain, load_l1, transition_tv):
    experts = trace.num_experts
    loads, pairs = source_tables(folder, model, domain, experts)
    counted = trace.load_counts().sum(axis=0)
    for index, layer in enumerate((0, 7, 15)):
        source = loads[("top_k", layer)] / loads[("top_k", layer)].sum()
        drawn = counted[index] / counted[index].sum()
        assert np.abs(drawn - source).sum() < load_l1, layer
        first = np.bincount(trace.experts[:, index, :, 0].ravel(), minlength=experts)
        source_first = loads[("top_1", layer)] / loads[("top_1", layer)].sum()
        assert np.abs(first / first.sum() - source_first).sum() < load_l1, layer
    drawn_pairs = np.zeros((experts, experts))
    np.add.at(drawn_pairs, (trace.experts[:, 0, :, 0].ravel(), trace.experts[:, 1, :, 0].ravel()),
              1)
    source_p = pairs / np.maximum(pairs.sum(axis=1, keepdims=True), 1)
    drawn_p = drawn_pairs / np.maximum(drawn_pairs.sum(axis=1, keepdims=True), 1)
    weight = pairs.sum(axis=1) / pairs.sum()
    tv = float((weight * 0.5 * np.abs(source_p - drawn_p).sum(axis=1)).sum())
    independent = pairs.sum(axis=0) / pairs.sum()
    tv_independent = float((weight * 0.5 * np.abs(source_p - independent).sum(axis=1)).sum())
    assert tv < transition_tv and tv < 0.25 * tv_independent
    assert cramers_v(drawn_pairs) == pytest.approx(cramers_v(pairs), rel=0.1)


def test_olmoe_counts_reproduce_loads_and_first_choice_dependency(tmp_path):
    folder = toy_olmoe_tables(tmp_path)
    trace = convert_trace(folder, model="toy", domain="arxiv", iterations=2, tokens=40_000, seed=0)
    assert trace.experts.shape == (2, 3, 40_000, 2)
    assert trace.meta["layers_measured"] == [0, 7, 15]
    assert trace.meta["dependent_layer_pairs"] == [[0, 7], [7, 15]]
    assert trace.meta["first_choices_from"] == "top_1"
    check_reproduces_source(trace, folder, "toy", "arxiv", load_l1=0.02, transition_tv=0.02)


def test_olmoe_counts_without_pairs_draw_independent_layers(tmp_path):
    folder = toy_olmoe_tables(tmp_path)
    (folder / "crosslayer_counts.csv").unlink()
    trace = convert_trace(folder / "expert_counts.csv", model="toy", domain="arxiv", tokens=500)
    assert trace.meta["dependent_layer_pairs"] == []
    assert trace.meta["inputs"] == ["expert_counts.csv"]


def test_olmoe_counts_top_1_routing_gives_first_choices_only(tmp_path):
    folder = toy_olmoe_tables(tmp_path)
    trace = convert_trace(folder, model="toy", domain="arxiv", routing="top_1", tokens=100)
    assert trace.top_k == 1 and trace.meta["routing"] == "top_1"


@pytest.mark.parametrize("options, field, message", [
    ({"model": "mixtral", "domain": "arxiv"}, "--model", "unknown model 'mixtral' in"),
    ({"model": "toy", "domain": "news"}, "--domain", "unknown domain of toy 'news' in"),
    ({"model": "toy"}, "--domain", None),
])
def test_olmoe_counts_unknown_names_list_the_known_ones(tmp_path, options, field, message):
    folder = toy_olmoe_tables(tmp_path, tokens=200)
    with open(folder / "expert_counts.csv", "a") as out:  # a second domain
        out.write("toy,6,2,book,top_k,0,0,2\n")
    with pytest.raises(WorkloadError) as error:
        convert_trace(folder, **options)
    assert error.value.field == field
    assert "known: " in str(error.value) or "pick one of arxiv, book" in str(error.value)
    if message:
        assert message in str(error.value)


def test_a_pair_count_file_given_as_input_points_to_crosslayer(tmp_path):
    folder = toy_olmoe_tables(tmp_path, tokens=200)
    with pytest.raises(WorkloadError, match="as INPUT and this file as --crosslayer"):
        convert_trace(folder / "crosslayer_counts.csv")


def test_olmoe_counts_with_mismatched_layers_or_files_are_refused(tmp_path):
    folder = toy_olmoe_tables(tmp_path, tokens=200)
    text = (folder / "expert_counts.csv").read_text().replace(
        "toy,6,2,arxiv,top_k,7,0,", "toy,6,2,arxiv,top_k,7,0,1")  # more tokens at layer 7
    (folder / "expert_counts.csv").write_text(text)
    with pytest.raises(WorkloadError, match="every layer must count the same tokens"):
        convert_trace(folder, model="toy", domain="arxiv")
    (tmp_path / "again").mkdir()
    folder = toy_olmoe_tables(tmp_path / "again", tokens=200)
    pairs = folder / "crosslayer_counts.csv"
    lines = pairs.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",9999"  # a top_1 pair count off
    pairs.write_text("\n".join(lines) + "\n")
    with pytest.raises(WorkloadError, match="the files do not match"):
        convert_trace(folder, model="toy", domain="arxiv")


# --- the real tables and the bundled trace ---------------------------------------------------

@needs_shared
@pytest.mark.parametrize("model, domain", [("olmoe-1b-7b", "arxiv"), ("mixtral-8x7b", "github")])
def test_real_counts_are_reproduced(model, domain):
    trace = convert_trace(SHARED, model=model, domain=domain, iterations=1, tokens=60_000, seed=2)
    check_reproduces_source(trace, SHARED, model, domain, load_l1=0.03, transition_tv=0.06)
    assert trace.meta["inclusion_fit_error"] < 1e-8


@needs_shared
def test_tulu_has_no_first_choices_or_pairs_and_says_so():
    trace = convert_trace(SHARED, model="olmoe-1b-7b", domain="tulu", tokens=256)
    assert trace.meta["dependent_layer_pairs"] == []
    assert trace.meta["first_choices_from"].startswith("top_k")


def test_bundled_olmoe_trace_pairs_with_a_three_layer_olmoe():
    trace = RoutingTrace.load(BUNDLED)
    assert trace.experts.shape == (20, 3, 1024, 8) and trace.num_experts == 64
    assert "Allen Institute for AI" in trace.meta["licence"]
    assert BUNDLED.stat().st_size < 1_000_000
    trace.check_against(model_spec({"base": "olmoe-1b-7b", "layers": 3}))
    with pytest.raises(WorkloadError, match="MoE layers = 3 but model olmoe-1b-7b has 16"):
        trace.check_against(model_spec("olmoe-1b-7b"))
    assert (REPO / "workloads" / "data" / "olmoe-arxiv.NOTICE.md").is_file()


# --- CLI and docs ----------------------------------------------------------------------------

def test_convert_cli_reports_bad_input_on_one_line(tmp_path, capsys):
    path = write_csv(tmp_path / "c.csv", ["layer", "expert", "count"], [(0, 0, -1)])
    assert main(["trace", "convert", str(path), "--out", str(tmp_path / "t.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moesim: error: ") and "c.csv:2: counts must be >= 0" in err
    assert err.count("\n") == 1
    assert main(["trace", "convert", str(tmp_path / "absent.csv"), "--out", "x.npz"]) == 2
    assert "absent.csv: no such file" in capsys.readouterr().err


def _doc_files(text: str) -> dict[str, str]:
    return dict(re.findall(r"```\w+ file=(\S+)\n(.*?)```", text, flags=re.S))


def _console_blocks(text: str):
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        lines = block.rstrip("\n").split("\n")
        assert lines[0].startswith("$ moesim "), lines[0]
        yield shlex.split(lines[0][2:])[1:], lines[1:]


def test_docs_console_blocks_print_what_the_docs_show(tmp_path, monkeypatch, capsys):
    text = DOC.read_text()
    for name, content in _doc_files(text).items():
        (tmp_path / name).write_text(content)
    (tmp_path / "workloads" / "data").mkdir(parents=True)
    for bundled in BUNDLED.parent.glob("*.npz"):  # the bundled traces the blocks read
        shutil.copy(bundled, tmp_path / "workloads" / "data")
    monkeypatch.chdir(tmp_path)
    ran = 0
    for argv, expected in _console_blocks(text):
        if "../shared/data/routing" in argv:
            if not (SHARED / "expert_counts.csv").is_file():
                continue
            argv = [str(SHARED) if arg == "../shared/data/routing" else arg for arg in argv]
        assert main(argv) == 0, argv
        assert capsys.readouterr().out.rstrip("\n").split("\n") == expected
        ran += 1
    assert ran >= 4


@needs_shared
def test_bundled_trace_is_what_its_documented_command_makes(tmp_path, monkeypatch, capsys):
    command = next(argv for argv, _ in _console_blocks(DOC.read_text())
                   if "workloads/data/olmoe-arxiv.npz" in argv and "convert" in argv)
    monkeypatch.chdir(tmp_path)
    argv = [str(SHARED) if arg == "../shared/data/routing" else arg for arg in command]
    assert main(argv) == 0
    made = RoutingTrace.load(tmp_path / "workloads" / "data" / "olmoe-arxiv.npz")
    shipped = RoutingTrace.load(BUNDLED)
    assert np.array_equal(made.experts, shipped.experts)
    assert {k: v for k, v in made.meta.items() if k != "path"} == {
        k: v for k, v in shipped.meta.items() if k != "path"}

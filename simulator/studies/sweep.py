"""Sweeps: many variants of one scenario, run in parallel, resumable, one results table.

A sweep file names a base scenario and the keys to vary (`grid:` cartesian product, `zip:` taken
together, `seeds:`/`repeat:` replicates). Everything is expanded and validated before anything
runs, so a typo fails in a second, not after an hour. Each variant is identified by a hash of its
resolved scenario, so its result directory `runs/<id>/` can never hold another scenario's numbers
and an interrupted sweep resumes by skipping the ids already there. Workers only simulate and
serialise; the process that owns the output directory writes every file (via a temporary directory
renamed into place), so the same code serves local processes and a Dask cluster with no shared
file system.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import itertools
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import as_completed as futures_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.safeio import InputError, read_json
from simulator.errors import USER_ERRORS, ScenarioError
from simulator.output.records import PIPELINE_PHASES
from simulator.output.files import csv_text, write_atomic
from simulator.studies.workers import worker_pool
from simulator.scenario.schema import (
    Scenario,
    check_override_path,
    set_path,
    apply_override,
    read_yaml_mapping,
    scenario_to_dict,
    validate_scenario,
)

SWEEP_KEYS = ("base", "scenario", "grid", "zip", "seeds", "repeat")
METRIC_COLUMNS = (
    ("latency_mean_s", ("latency_s", "mean")),
    ("latency_p50_s", ("latency_s", "p50")),
    ("latency_p99_s", ("latency_s", "p99")),
    ("throughput_tokens_per_s", ("throughput_tokens_per_s",)),
    *((f"{phase}_s", ("breakdown_s", phase)) for phase in PIPELINE_PHASES),
    ("skewness_expert", ("skewness", "expert")),
    ("skewness_before", ("skewness", "before")),
    ("skewness_after", ("skewness", "after")),
    ("events", ("events",)),
    ("wall_s", ("wall_s",)),
)
RUNS = "runs"
TMP_PREFIX = ".tmp-"
# numpy's BLAS threads x worker processes oversubscribe the cores and make runs several times slower
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Variant:
    index: int  # position in sweep order
    id: str  # content hash of the resolved scenario
    values: dict[str, Any]  # swept key -> value, as written in the sweep file
    scenario: Scenario

    def describe(self, source: str) -> str:
        return _label(source, self.index, self.values, self.id)


@dataclass(frozen=True)
class Sweep:
    source: str  # the sweep file, for messages
    keys: tuple[str, ...]  # swept keys, in results.csv column order
    variants: tuple[Variant, ...]


@dataclass(frozen=True)
class SweepReport:
    ran: int  # simulations run by this call
    reused: int  # variants whose result was already on disk
    total: int
    wall_s: float
    stopped: bool  # True when `stop_after` ended the sweep early


# --- the sweep file ------------------------------------------------------------------------------


def load_sweep(path: str | Path, overrides: list[str] = ()) -> Sweep:
    """Read and expand a sweep file; every key and every variant is checked before returning."""
    path = Path(path)
    spec = read_yaml_mapping(path)
    return expand_sweep(spec, str(path), path.resolve().parent, overrides)


def expand_sweep(spec: dict[str, Any], source: str, base_dir: Path,
                 overrides: list[str] = ()) -> Sweep:
    """The variants of a parsed sweep file, in sweep order (grid outermost, then zip, then seeds).

    `base_dir` is where a relative `base:` path and an inline scenario's relative paths resolve.
    """
    unknown = sorted(set(spec) - set(SWEEP_KEYS))
    if unknown:
        allowed = ", ".join(sorted(SWEEP_KEYS))
        raise ScenarioError(f"{source}: unknown key {unknown[0]!r}; allowed: {allowed}")
    base = _base_scenario(spec, source, Path(base_dir))
    for override in overrides:
        apply_override(base, override)
    grid = _key_lists(spec, "grid", source)
    zipped = _key_lists(spec, "zip", source)
    both = sorted(set(grid) & set(zipped))
    if both:
        raise ScenarioError(f"{source}: {both[0]!r} is in both grid and zip; give each key once")
    lengths = {key: len(values) for key, values in zipped.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise ScenarioError(f"{source}: zip: lists must have equal lengths, got {shown}")
    replicates = spec.get("repeat") if isinstance(spec.get("repeat"), int) else len(
        spec.get("seeds") or [0]) if isinstance(spec.get("seeds"), list) else 1
    planned = math.prod(len(v) for v in grid.values()) * max(lengths.values(), default=1) * max(
        1, replicates)
    check_variant_count(planned, source)
    seeds = _seeds(spec, source, base, swept=[*grid, *zipped])
    for section, keys in (("grid", grid), ("zip", zipped)):
        for key in keys:
            _check_key(base, key, f"{source}: {section}")

    grid_rows = list(itertools.product(*grid.values()))
    zip_rows = list(zip(*zipped.values())) if zipped else [()]
    seed_rows = [(seed,) for seed in seeds] if seeds is not None else [()]
    keys = (*grid, *zipped, *(("seed",) if seeds is not None else ()))
    variants: list[Variant] = []
    seen: dict[str, Variant] = {}
    for g, z, s in itertools.product(grid_rows, zip_rows, seed_rows):
        values = dict(zip(keys, (*g, *z, *s)))
        raw = copy.deepcopy(base)
        for key, value in values.items():
            set_path(raw, key.split("."), copy.deepcopy(value))
        index = len(variants)
        scenario = validate_scenario(raw, source=_label(source, index, values))
        variant = Variant(index, scenario_id(scenario), values, scenario)
        if variant.id in seen:
            raise ScenarioError(f"{source}: variants {seen[variant.id].index} and {index} are the same "
                                f"scenario ({_settings(seen[variant.id])} vs {_settings(variant)}); "
                                "remove the duplicate value")
        seen[variant.id] = variant
        variants.append(variant)
    return Sweep(source, keys, tuple(variants))


MAX_VARIANTS_ENV = "MOESIM_MAX_VARIANTS"
DEFAULT_MAX_VARIANTS = 10_000


def check_variant_count(planned: int, source: str) -> None:
    """Refuse a sweep of more variants than the limit before expanding any (each variant is
    validated, hashed and kept in memory, even for --dry-run)."""
    text = os.environ.get(MAX_VARIANTS_ENV, "").strip()
    limit = int(text) if text.isdigit() and int(text) > 0 else DEFAULT_MAX_VARIANTS
    if planned > limit:
        raise ScenarioError(f"{source}: grid x zip x seeds/repeat is {planned:,} variants; the limit "
                            f"is {limit:,} (set {MAX_VARIANTS_ENV} to raise it)")


def _base_scenario(spec: dict[str, Any], source: str, base_dir: Path) -> dict[str, Any]:
    if ("base" in spec) == ("scenario" in spec):
        raise ScenarioError(f"{source}: give exactly one of base (a scenario file) or scenario "
                            "(an inline scenario mapping)")
    if "base" in spec:
        if not isinstance(spec["base"], str):
            raise ScenarioError(f"{source}: base: must be a path to a scenario YAML file, "
                                f"got {spec['base']!r}")
        path = Path(spec["base"])
        path = path if path.is_absolute() else base_dir / path
        raw = read_yaml_mapping(path)
        raw.setdefault("base_dir", str(path.resolve().parent))
        return raw
    if not isinstance(spec["scenario"], dict):
        raise ScenarioError(f"{source}: scenario: must be a mapping of scenario keys, "
                            f"got {spec['scenario']!r}")
    raw = copy.deepcopy(spec["scenario"])
    raw.setdefault("base_dir", str(base_dir))
    return raw


def _key_lists(spec: dict[str, Any], section: str, source: str) -> dict[str, list[Any]]:
    found = spec.get(section) or {}
    if not isinstance(found, dict):
        raise ScenarioError(f"{source}: {section}: must be a mapping of key.path: [values], got {found!r}")
    for key, values in found.items():
        if not isinstance(key, str) or not key:
            raise ScenarioError(f"{source}: {section}: keys must be dotted scenario paths, got {key!r}")
        if not isinstance(values, list) or not values:
            raise ScenarioError(f"{source}: {section}.{key}: must be a non-empty list of values, "
                                f"got {values!r}")
    return dict(found)


def _seeds(spec: dict[str, Any], source: str, base: dict[str, Any], swept: list[str]) -> list[int] | None:
    if "seeds" in spec and "repeat" in spec:
        raise ScenarioError(f"{source}: give seeds (a list) or repeat (a count), not both")
    if "seeds" not in spec and "repeat" not in spec:
        return None
    if "seed" in swept:
        raise ScenarioError(f"{source}: seed is swept in grid/zip and by seeds/repeat; use one")
    if "repeat" in spec:
        repeat = spec["repeat"]
        if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
            raise ScenarioError(f"{source}: repeat: must be an integer >= 1, got {repeat!r}")
        first = base.get("seed", 0)
        first = first if isinstance(first, int) else 0
        return list(range(first, first + repeat))
    seeds = spec["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ScenarioError(f"{source}: seeds: must be a non-empty list of integers >= 0, got {seeds!r}")
    return list(seeds)


def _check_key(base: dict[str, Any], key: str, where: str) -> None:
    """The same rule as `--set`: the schema declares the key or the base scenario already has it."""
    try:
        check_override_path(base, key.split("."), key)
    except ScenarioError as error:
        message = str(error).removeprefix(f"{error.field}: ") if error.field else str(error)
        raise ScenarioError(f"{where}: {message}") from None


def scenario_id(scenario: Scenario) -> str:
    """12 hex digits of sha256 over the canonical JSON of the resolved scenario (machine paths excluded)."""
    text = json.dumps(scenario_to_dict(scenario), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _label(source: str, index: int, values: dict[str, Any], run_id: str = "") -> str:
    """How messages name a variant: `sweep.yaml variant 3 [id: workload.batch=4, seed=1]`."""
    settings = ", ".join(f"{k}={_cell(v)}" for k, v in values.items())
    inside = ": ".join(part for part in (run_id, settings) if part)
    return f"{source} variant {index}" + (f" [{inside}]" if inside else "")


def _settings(variant: Variant) -> str:
    return ", ".join(f"{k}={_cell(v)}" for k, v in variant.values.items()) or "the base scenario"


def _cell(value: Any) -> str:
    """A swept value as results.csv shows it: strings as they are, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


# --- one run (in a worker) -----------------------------------------------------------------------


def simulate_variant(scenario: Scenario, source: str, timeline: bool = False) -> dict[str, Any]:
    """Simulate one variant and serialise its files here, in the worker, in parallel.

    Returns {"summary": dict, "files": {name: text}}; the caller writes the files.
    """
    from simulator.scenario.run import simulate

    result = simulate(scenario, source)
    files = {"iterations.csv": csv_text(result.rows, list(result.rows[0]))}
    if timeline:
        from simulator.output.timeline import timeline_bytes  # the bytes `moesim run` writes

        files["timeline.json"] = timeline_bytes(result.timeline()).decode()
    files["summary.json"] = json.dumps(result.summary, indent=2) + "\n"  # last: marks a complete run
    return {"summary": result.summary, "files": files}


# --- the output directory ------------------------------------------------------------------------


def completed_runs(out_dir: Path, sweep: Sweep) -> dict[str, dict[str, Any]]:
    """Summaries of the variants already on disk, by id; a run holding another scenario is an error."""
    done: dict[str, dict[str, Any]] = {}
    for variant in sweep.variants:
        path = Path(out_dir) / RUNS / variant.id / "summary.json"
        if not path.is_file():
            continue
        try:
            summary = read_json(path)
        except InputError:
            continue  # unreadable: run it again (the directory is replaced)
        if not isinstance(summary, dict):
            continue  # not a summary (e.g. `[]`): run it again
        expected = json.loads(json.dumps(scenario_to_dict(variant.scenario)))
        if summary.get("scenario") != expected:
            raise ScenarioError(f"{path}: holds a different scenario than {variant.describe(sweep.source)}; "
                                "move it away or use another --out")
        done[variant.id] = summary
    return done


def write_run(out_dir: Path, run_id: str, files: dict[str, str]) -> None:
    """Write a run's files into a temporary directory, then rename it to runs/<id> in one step."""
    runs = Path(out_dir) / RUNS
    tmp = runs / f"{TMP_PREFIX}{run_id}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, text in files.items():  # summary.json is the last key
        (tmp / name).write_text(text)
    final = runs / run_id
    if final.exists():  # an unreadable earlier result: replace it
        shutil.rmtree(final)
    os.replace(tmp, final)


def results_rows(sweep: Sweep, summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per completed variant, in sweep order."""
    rows = []
    for variant in sweep.variants:
        summary = summaries.get(variant.id)
        if summary is None:
            continue
        row: dict[str, Any] = {"id": variant.id}
        row.update({key: _cell(value) for key, value in variant.values.items()})
        for column, path in METRIC_COLUMNS:
            value: Any = summary
            for part in path:
                value = value.get(part, "") if isinstance(value, dict) else ""
            row[column] = value
        rows.append(row)
    return rows


def write_results_csv(path: Path, sweep: Sweep, summaries: dict[str, dict[str, Any]]) -> None:
    columns = ["id", *sweep.keys, *(c for c, _ in METRIC_COLUMNS)]
    write_atomic(path, csv_text(results_rows(sweep, summaries), columns))


@contextmanager
def _locked(out_dir: Path):
    """One sweep at a time per output directory (so removing stale temporary directories is safe)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(out_dir / ".sweep.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ScenarioError(f"another sweep is writing to {out_dir}", "--out") from None
        yield


def _remove_temporaries(out_dir: Path) -> None:
    runs = out_dir / RUNS
    if runs.is_dir():
        for tmp in runs.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(tmp, ignore_errors=True)


# --- executors -----------------------------------------------------------------------------------


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S):
    """A Dask distributed Client for `address`, or a ScenarioError saying why not."""
    try:
        from distributed import Client
        from distributed.comm import connect as open_comm
        from distributed.comm.addressing import parse_host_port
    except ImportError:
        raise ScenarioError("needs dask[distributed]: pip install 'moesim[sweep]'", "--scheduler") from None

    async def probe() -> None:
        comm = await open_comm(address, timeout=timeout_s)
        await comm.close()

    # probe first: a refused TCP connection fails at once (Dask would retry until the timeout), and
    # a Client that fails to start hangs ~10 s in its finaliser
    try:
        scheme, _, location = address.rpartition("://")
        if scheme in ("tcp", "tls"):
            host, port = parse_host_port(location)
            socket.create_connection((host, port), timeout=timeout_s).close()
        asyncio.run(probe())
        return Client(address, timeout=timeout_s, set_as_default=False)
    except Exception as error:  # OSError / TimeoutError, ValueError for a malformed address, ...
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ScenarioError(f"cannot reach {address}: {reason}", "--scheduler") from None


def _outcomes(variants: list[Variant], source: str, timeline: bool, workers: int,
              client) -> Iterator[tuple[Variant, dict[str, Any] | Exception]]:
    """(variant, simulate_variant's result or its bad-input error) as runs finish.

    Closing the generator cancels the runs not started; other exceptions propagate.
    """
    jobs = [(v, v.describe(source)) for v in variants]
    if client is not None:
        from distributed import as_completed

        futures = {client.submit(simulate_variant, v.scenario, label, timeline, pure=False): v
                   for v, label in jobs}
        try:
            for future in as_completed(futures, loop=client.loop):
                yield futures[future], _result(future.result)
        finally:
            client.cancel(list(futures))
    elif workers > 1:
        with worker_pool(workers) as pool:
            futures = {pool.submit(simulate_variant, v.scenario, label, timeline): v for v, label in jobs}
            try:
                for future in futures_completed(futures):
                    yield futures[future], _result(future.result)
            finally:
                for future in futures:
                    future.cancel()
    else:
        for variant, label in jobs:
            yield variant, _result(simulate_variant, variant.scenario, label, timeline)


def _result(call: Callable, *args) -> dict[str, Any] | Exception:
    try:
        return call(*args)
    except USER_ERRORS as error:  # one variant's bad input: report it, run the others
        return error


# --- the sweep -----------------------------------------------------------------------------------


def run_sweep(sweep: Sweep, out_dir: str | Path, workers: int = 1, client=None, timeline: bool = False,
              progress: Callable | None = None, stop_after: int | None = None,
              csv_every_s: float = 1.0) -> SweepReport:
    """Run every variant not yet in `out_dir/runs/`, then write `out_dir/results.csv`.

    `client`: a Dask distributed Client (runs go to its cluster instead of local processes).
    `progress`: a tqdm-like callable. `stop_after`: stop after this many new runs (resume later).
    A variant whose system cannot be built (bad input the schema cannot see) does not stop the
    others; the sweep then ends with one ScenarioError naming the first failed variant.
    results.csv is rewritten (atomically) at most every `csv_every_s` seconds and at the end.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _locked(out_dir):
        _remove_temporaries(out_dir)
        summaries = completed_runs(out_dir, sweep)
        reused = len(summaries)
        todo = [v for v in sweep.variants if v.id not in summaries]
        bar = progress(total=len(todo), desc="sweep", unit="run") if progress else None
        ran, stopped, last_csv, failures = 0, False, 0.0, []
        outcomes = _outcomes(todo, sweep.source, timeline, workers, client)
        try:
            for variant, outcome in outcomes:
                if bar is not None:
                    bar.update(1)
                if isinstance(outcome, Exception):
                    failures.append((variant.index, str(outcome)))
                    continue
                write_run(out_dir, variant.id, outcome["files"])
                summaries[variant.id] = outcome["summary"]
                ran += 1
                if time.perf_counter() - last_csv >= csv_every_s:
                    write_results_csv(out_dir / "results.csv", sweep, summaries)
                    last_csv = time.perf_counter()
                if stop_after is not None and ran >= stop_after:
                    stopped = len(summaries) < len(sweep.variants)
                    break
        finally:
            outcomes.close()
            if bar is not None:
                bar.close()
            write_results_csv(out_dir / "results.csv", sweep, summaries)
    if failures:
        first = min(failures)[1]
        raise ScenarioError(f"{len(failures)} of {len(sweep.variants)} variants failed (the other results "
                            f"are in {out_dir / 'results.csv'}); first: {first}")
    return SweepReport(ran, reused, len(sweep.variants), time.perf_counter() - started, stopped)


def check_variants(sweep: Sweep) -> list[str]:
    """Build every variant's system (model, topology, trace, placement, memory) without simulating."""
    from simulator.scenario.system import build_system

    lines = []
    for variant in sweep.variants:
        system = build_system(variant.scenario, variant.describe(sweep.source))
        lines.append(f"{variant.id}  {_settings(variant)}  ({system.gpus} GPUs, {system.tokens} tokens)")
    return lines

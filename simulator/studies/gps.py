"""MoE-GPS guidance: simulate every prediction strategy x balancer for one system, recommend one.

Each candidate is a full simulation of the user's scenario with its `predictor` and `balancer`
replaced, so accuracy (measured on held-out trace iterations), predictor overhead, replica
copies and communication all come from the same events as any `moesim run`.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from typing import Any

from simulator.output.summary import write_atomic
from simulator.scenario.run import simulate
from simulator.scenario.schema import Scenario
from simulator.studies.workers import worker_pool

DISTRIBUTION_PREDICTORS = ("distribution.mle", "distribution.window", "distribution.ewma")
TOKEN_PREDICTORS = ("token.frequency", "token.conditional")
TOKEN_SIZES = (8, 32, 128, 512, 2048)
BALANCERS = ("greedy_duplication", "eplb")
COLUMNS = ("strategy", "predictor", "predictor_size", "balancer", "error_rate", "accuracy",
           "predictor_overhead_s", "latency_s", "speedup_vs_none", "expert_s", "dispatch_s",
           "combine_s", "replication_s", "skewness_after")


@dataclass(frozen=True)
class Candidate:
    strategy: str  # none | distribution | token | oracle
    predictor: dict[str, Any]
    balancer: str
    size: int | None = None


def candidates(predictor_extra: dict[str, Any], balancers=BALANCERS, token_sizes=TOKEN_SIZES,
               with_arima: bool = False) -> list[Candidate]:
    """The sweep: none; each Distribution-Only predictor; each Token-to-Expert predictor (the
    learned one over sizes); the oracle — each with each balancer."""
    # the baseline simulates the same trace iterations as the others (same history offset)
    found = [Candidate("none", {"kind": "none", **predictor_extra}, "static")]
    distribution = DISTRIBUTION_PREDICTORS + (("distribution.arima",) if with_arima else ())
    for balancer in balancers:
        for kind in distribution:
            found.append(Candidate("distribution", {"kind": kind, **predictor_extra}, balancer))
        for kind in TOKEN_PREDICTORS:
            found.append(Candidate("token", {"kind": kind, **predictor_extra}, balancer))
        for size in token_sizes:
            found.append(Candidate("token", {"kind": "token.ffn", "size": size, **predictor_extra},
                                   balancer, size))
        found.append(Candidate("oracle", {"kind": "oracle.token", **predictor_extra}, balancer))
    return found


def _simulate_candidate(args) -> dict[str, Any]:
    scenario, source, candidate = args
    variant = scenario.model_copy(update={
        "predictor": scenario.predictor.model_validate(candidate.predictor),
        "balancer": scenario.balancer.model_validate({"kind": candidate.balancer}),
    })
    summary = simulate(variant, source).summary
    predictor, breakdown = summary["predictor"], summary["breakdown_s"]
    return {
        "strategy": candidate.strategy,
        "predictor": candidate.predictor["kind"],
        "predictor_size": candidate.size if candidate.size is not None else "",
        "balancer": candidate.balancer,
        "error_rate": predictor["error"] if predictor["error"] is not None else "",
        "accuracy": predictor["accuracy"] if predictor["accuracy"] is not None else "",
        "predictor_overhead_s": predictor["overhead_s"],
        "latency_s": summary["latency_s"]["mean"],
        "expert_s": breakdown["expert"],
        "dispatch_s": breakdown["dispatch"],
        "combine_s": breakdown["combine"],
        "replication_s": breakdown["replication"],
        "skewness_after": summary["skewness"]["after"],
        "_fit_s": predictor["fit_s"],
        "_wall_s": summary["wall_s"],
    }


def run_gps(scenario: Scenario, source: str, chosen: list[Candidate], workers: int = 1,
            progress=None) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Simulate every candidate (in `workers` processes); rows in candidate order, and timings."""
    started = time.perf_counter()
    jobs = [(scenario, source, c) for c in chosen]
    if workers > 1:
        with worker_pool(workers) as pool:
            rows = list(_progress(pool.map(_simulate_candidate, jobs), len(jobs), progress))
    else:
        rows = list(_progress(map(_simulate_candidate, jobs), len(jobs), progress))
    baseline = rows[0]["latency_s"]
    for row in rows:
        row["speedup_vs_none"] = baseline / row["latency_s"]
    timings = {
        "wall_s": time.perf_counter() - started,
        "fit_s": sum(r.pop("_fit_s") for r in rows),
        "simulate_s": sum(r.pop("_wall_s") for r in rows),
    }
    timings["simulate_s"] -= timings["fit_s"]
    return rows, timings


def _progress(iterable, total: int, progress):
    if progress is None:
        return iterable
    return progress(iterable, total=total, desc="gps", unit="run")


def recommend(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The fastest non-oracle strategy and the best of the *other* strategy families (its margin).

    The oracle is a bound to compare against, not something a user can deploy.
    """
    usable = sorted((r for r in rows if r["strategy"] != "oracle"), key=lambda r: r["latency_s"])
    best = usable[0]
    other = next((r for r in usable[1:] if r["strategy"] != best["strategy"]), None)
    return best, other


def write_csv(path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


def describe(row: dict[str, Any]) -> str:
    size = f" (size {row['predictor_size']})" if row["predictor_size"] != "" else ""
    if row["strategy"] == "none":
        return "no prediction, static placement"
    return f"{row['strategy']}: {row['predictor']}{size} + {row['balancer']}"

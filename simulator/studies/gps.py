"""MoE-GPS guidance: simulate every prediction strategy x balancer for one system, recommend one.

Each candidate is a full simulation of the user's scenario with its `predictor` and `balancer`
replaced, so accuracy (measured on held-out trace iterations), predictor overhead, replica
copies and communication all come from the same events as any `moesim run`. The sweep spans the
knobs that decide whether balancing pays: predictor x balancer x re-plan interval x redundant
(resident) slots; every candidate simulates the same iterations, at least two of the longest
re-plan interval, so its copies are counted against the iterations they serve.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from simulator.output.files import write_csv as write_table
from simulator.scenario.run import simulate
from simulator.scenario.schema import Scenario
from simulator.studies.workers import worker_pool

DISTRIBUTION_PREDICTORS = ("distribution.mle", "distribution.window", "distribution.ewma")
TOKEN_PREDICTORS = ("token.frequency", "token.conditional")
TOKEN_SIZES = (8, 32, 128, 512, 2048)
BALANCERS = ("greedy_duplication", "eplb")
REPLAN_EVERY = (1, 10)  # add 100 with --replan-every 1,10,100 (200 iterations per candidate)
REDUNDANT_SLOTS = (None, 2)  # None: no resident replicas (each re-plan from scratch)
ASSUMPTIONS = ("none", "moe-gps")
COLUMNS = ("strategy", "predictor", "predictor_size", "balancer", "error_rate", "accuracy",
           "predictor_overhead_s", "latency_s", "speedup_vs_none", "expert_s", "dispatch_s",
           "combine_s", "replication_s", "skewness_after", "replan_every", "redundant_slots",
           "objective", "copies_per_iteration")


@dataclass(frozen=True)
class Candidate:
    strategy: str  # none | distribution | token | oracle
    predictor: dict[str, Any]
    balancer: str
    size: int | None = None
    replan_every: int = 1
    redundant_slots: int | None = None
    objective: str = "time"
    assume: str = "none"

    def balancer_section(self) -> dict[str, Any]:
        if self.balancer == "static":
            return {"kind": "static"}
        section: dict[str, Any] = {"kind": self.balancer, "objective": self.objective}
        if self.redundant_slots is not None:
            section["redundant_slots"] = self.redundant_slots
        if self.assume != "none":
            section["assume"] = self.assume
        return section


def candidates(predictor_extra: dict[str, Any], balancers=BALANCERS, token_sizes=TOKEN_SIZES,
               with_arima: bool = False, replan_every=(1,), redundant_slots=(None,),
               objectives=("time",), assume: str = "none") -> list[Candidate]:
    """The sweep: none; each Distribution-Only predictor; each Token-to-Expert predictor (the
    learned one over sizes); the oracle — each with each balancer, re-plan interval, number of
    redundant slots and objective. `assume="moe-gps"`: MoE-GPS's modelling (free copies, token
    objective, a re-plan every batch, no resident replicas), so only those values are swept."""
    if assume == "moe-gps":
        replan_every, redundant_slots, objectives = (1,), (None,), ("tokens",)
    # the baseline simulates the same trace iterations as the others (same history offset)
    found = [Candidate("none", {"kind": "none", **predictor_extra}, "static")]
    distribution = DISTRIBUTION_PREDICTORS + (("distribution.arima",) if with_arima else ())
    for balancer in balancers:
        static = balancer == "static"  # nothing to re-plan: one setting
        for window in replan_every if not static else replan_every[:1]:
            for slots in redundant_slots if not static else (None,):
                for objective in objectives if not static else objectives[:1]:
                    knobs = {"replan_every": window, "redundant_slots": slots,
                             "objective": objective, "assume": assume}
                    extra = {**predictor_extra, "replan_every": window}
                    for kind in distribution:
                        found.append(Candidate("distribution", {"kind": kind, **extra}, balancer,
                                               **knobs))
                    for kind in TOKEN_PREDICTORS:
                        found.append(Candidate("token", {"kind": kind, **extra}, balancer, **knobs))
                    for size in token_sizes:
                        found.append(Candidate("token", {"kind": "token.ffn", "size": size, **extra},
                                               balancer, size, **knobs))
                    # the bound: true loads, no pre-sending (a balancer's oracle, not a predictor's)
                    found.append(Candidate("oracle", {"kind": "oracle.token", "presend": False,
                                                      **extra}, balancer, **knobs))
    return found


def iterations_needed(scenario: Scenario, chosen: list[Candidate]) -> int:
    """Simulated iterations: the scenario's, and at least two of the longest re-plan interval."""
    longest = max((c.replan_every for c in chosen if c.balancer != "static"), default=1)
    return max(scenario.workload.iterations, 2 * longest if longest > 1 else 1)


def _simulate_candidate(args) -> dict[str, Any]:
    scenario, source, candidate = args
    variant = scenario.model_copy(update={
        "predictor": scenario.predictor.model_validate(candidate.predictor),
        "balancer": scenario.balancer.model_validate(candidate.balancer_section()),
    })
    summary = simulate(variant, source).summary
    predictor, breakdown = summary["predictor"], summary["breakdown_s"]
    static = candidate.balancer == "static"
    return {
        "strategy": candidate.strategy,
        "predictor": candidate.predictor["kind"],
        "predictor_size": candidate.size if candidate.size is not None else "",
        "balancer": candidate.balancer,
        "replan_every": "" if static else candidate.replan_every,
        "redundant_slots": "" if static or candidate.redundant_slots is None else candidate.redundant_slots,
        "objective": "" if static else (candidate.objective if candidate.assume != "moe-gps" else "tokens"),
        "copies_per_iteration": summary["replicas"]["copies"] / summary["iterations"],
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
            progress=None, client=None) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Simulate every candidate (in `workers` processes, or on a Dask `client`'s cluster); rows in
    candidate order, and timings. Every candidate simulates `iterations_needed` iterations."""
    started = time.perf_counter()
    iterations = iterations_needed(scenario, chosen)
    if iterations != scenario.workload.iterations:
        scenario = scenario.model_copy(update={
            "workload": scenario.workload.model_copy(update={"iterations": iterations})})
    jobs = [(scenario, source, c) for c in chosen]
    if client is not None:
        rows = _on_cluster(client, jobs, progress)
    elif workers > 1:
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
        "iterations": iterations,
    }
    timings["simulate_s"] -= timings["fit_s"]
    return rows, timings


def _on_cluster(client, jobs, progress) -> list[dict[str, Any]]:
    """Candidates as Dask futures (like `moesim sweep --scheduler`); rows back in candidate order."""
    from distributed import as_completed

    futures = {client.submit(_simulate_candidate, job, pure=False): i for i, job in enumerate(jobs)}
    rows: list[dict[str, Any] | None] = [None] * len(jobs)
    bar = progress(total=len(jobs), desc="gps", unit="run") if progress is not None else None
    try:
        for future in as_completed(futures, loop=client.loop):
            rows[futures[future]] = future.result()
            if bar is not None:
                bar.update(1)
    finally:
        client.cancel(list(futures))
        if bar is not None:
            bar.close()
    return rows


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


def explain(rows: list[dict[str, Any]], pairs_per_expert: float, memory_bound: bool) -> str:
    """One sentence naming the mechanism behind the recommendation.

    pairs_per_expert: mean (token, k) pairs per expert per layer; memory_bound: whether an expert
    kernel on that many pairs is bound by its weight reads (the compute model's verdict).
    """
    best, _ = recommend(rows)
    balanced = [r for r in rows if r["strategy"] not in ("none", "oracle")]
    none = next(r for r in rows if r["strategy"] == "none")
    if best["strategy"] == "none":
        if not balanced:
            return "static placement is the only candidate"
        top = min(balanced, key=lambda r: r["latency_s"])
        saved = none["expert_s"] - top["expert_s"]
        if saved <= 0:
            if top["copies_per_iteration"] == 0:
                detail = "the time objective keeps every expert in one place"
            else:
                detail = (f"the balanced placements' expert phase rises from "
                          f"{none['expert_s'] * 1e3:.2f} to {top['expert_s'] * 1e3:.2f} ms")
            if memory_bound:
                return (f"duplication loses here: at {pairs_per_expert:.0f} tokens per expert a replica "
                        f"is bound by its weight reads, so a second replica costs about as much as "
                        f"the expert; {detail}")
            return (f"duplication loses here: no duplicate saves more expert time on the busiest GPU "
                    f"than it costs; {detail}")
        if top["replication_s"] > saved:
            return (f"duplication loses here: weight copies leave {top['replication_s'] * 1e3:.2f} ms "
                    f"per iteration exposed ({top['copies_per_iteration']:.1f} copies) against "
                    f"{max(saved, 0) * 1e3:.2f} ms saved in the expert phase")
        return (f"duplication loses here: balancing saves {max(saved, 0) * 1e3:.2f} ms of expert time "
                f"but costs {(top['latency_s'] - none['latency_s']) * 1e3:.2f} ms more elsewhere "
                f"(predictor {top['predictor_overhead_s'] * 1e6:.0f} µs, dispatch, copies)")
    if best["strategy"] == "distribution":
        tokens = [r for r in rows if r["strategy"] == "token"]
        overhead = (f" against {min(r['predictor_overhead_s'] for r in tokens) * 1e6:.0f} µs for the "
                    "cheapest Token-to-Expert predictor") if tokens else ""
        return (f"Distribution-Only wins: its forecast costs {best['predictor_overhead_s'] * 1e6:.1f} µs "
                f"per iteration{overhead}, and re-placing every {best['replan_every']} iteration(s) "
                f"from it cuts the expert phase from {none['expert_s'] * 1e3:.2f} to "
                f"{best['expert_s'] * 1e3:.2f} ms")
    saved = (none["dispatch_s"] + none["combine_s"]) - (best["dispatch_s"] + best["combine_s"])
    return (f"Token-to-Expert wins: pre-sending tokens to their predicted GPU and balancing from "
            f"per-token predictions saves {(none['latency_s'] - best['latency_s']) * 1e3:.2f} ms per "
            f"iteration ({saved * 1e3:.2f} ms of all-to-all, {(none['expert_s'] - best['expert_s']) * 1e3:.2f} "
            f"ms of expert time), more than its {best['predictor_overhead_s'] * 1e6:.0f} µs predictor")


def expert_regime(scenario: Scenario) -> tuple[float, bool]:
    """(mean pairs per expert per layer, whether an expert kernel on them is memory-bound)."""
    from simulator.model.compute import ComputeModel
    from topologies import build as build_topology
    from topologies.devices import gpu_spec
    from topologies.paths import gpu_nodes
    from workloads.models import model_spec

    model = model_spec(scenario.model, field="model")
    workload = scenario.workload
    tokens = workload.batch * (workload.seq_len if workload.phase == "prefill" else 1)
    pairs = tokens * model.top_k / model.experts
    graph = build_topology(dict(scenario.topology), field="topology")
    device = graph.nodes[gpu_nodes(graph)[0]]["device"]
    cost = ComputeModel(gpu_spec(device)).expert_ffn(max(pairs, 1.0), model)
    return pairs, cost.bound == "memory"


def write_csv(path, rows: list[dict[str, Any]]) -> None:
    write_table(path, rows, COLUMNS)


def describe(row: dict[str, Any]) -> str:
    size = f" (size {row['predictor_size']})" if row["predictor_size"] != "" else ""
    if row["strategy"] == "none":
        return "no prediction, static placement"
    knobs = f", re-plan every {row['replan_every']}"
    if row.get("redundant_slots", "") != "":
        knobs += f", {row['redundant_slots']} redundant slot(s)"
    if row.get("objective"):
        knobs += f", {row['objective']} objective"
    return f"{row['strategy']}: {row['predictor']}{size} + {row['balancer']}{knobs}"

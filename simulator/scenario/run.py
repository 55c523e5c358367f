"""One simulation run: scenario in, records out (the summary is computed from the records)."""

from __future__ import annotations

import time

import numpy as np

from simulator.engine.cluster import Cluster, CountingEnvironment
from simulator.model.pipeline import MoEPipeline
from simulator.model.training_step import TrainingPipeline
from simulator.output.records import LinkRecords, RoutingRecords, RunRecords, StrategyRecords
from simulator.scenario.schema import Scenario, scenario_to_dict
from simulator.scenario.system import System, build_system


def simulate(scenario: Scenario, source: str = "scenario", on_iteration=None,
             on_progress=None) -> RunRecords:
    """Build the system, run every iteration as events, and bundle what the run recorded.

    `on_iteration(i)` is called as GPU 0 finishes iteration i (for progress bars);
    `on_progress(stage, done, total)` while the trace is read and planned (`build_system`).
    """
    started = time.perf_counter()
    system = build_system(scenario, source, on_progress)
    env = CountingEnvironment()
    cluster = Cluster(env, system.graph, alpha_s=scenario.network.alpha_us * 1e-6,
                      network_model=scenario.network.model)
    pipeline_class = TrainingPipeline if scenario.workload.mode == "training" else MoEPipeline
    pipeline = pipeline_class(cluster, system)
    pipeline.on_iteration = on_iteration
    pipeline.start()
    env.run()
    wall_s = time.perf_counter() - started
    return collect_records(system, cluster, pipeline, {"events": env.events_processed, "wall_s": wall_s})


def collect_records(system: System, cluster: Cluster, pipeline, counters: dict) -> RunRecords:
    """The one place that reads the finished run's objects: everything reports need, copied out."""
    scenario, plan, strategy, model = system.scenario, system.plan, system.strategy, system.model
    paths = cluster.paths
    iterations = scenario.workload.iterations
    trace = system.trace
    copies = sum(len(c) for c in strategy.copies)
    return RunRecords(
        scenario=scenario_to_dict(scenario),
        seed=scenario.seed,
        iterations=iterations,
        gpus=system.gpus,
        tokens=system.tokens,
        stages=tuple(pipeline.stages()),
        moe_layers=tuple(model.moe_layer_indices),
        spans=cluster.spans,
        flows=cluster.net.records(),
        marks=pipeline.marks,
        links=LinkRecords(tuple(paths.link_kind), np.asarray(paths.capacity_Bps, dtype=float),
                          np.array(cluster.net.bytes_on_link, dtype=float),
                          tuple(tuple(link) for link in paths.links)),
        routing=RoutingRecords(plan.expert_pairs, plan.dispatch_pairs,
                               int(iterations * trace.layers * system.tokens * trace.top_k), plan.presorted_pairs,
                               model.hidden * model.dtype_bytes, plan.combine_pairs, plan.kv_bytes),
        strategy=StrategyRecords(
            strategy.name, strategy.family, strategy.error, strategy.accuracy, strategy.fit_s,
            dict(strategy.notes),
            tuple(sum(len(g) - 1 for layer in p.replicas for g in layer) for p in strategy.placements),
            copies, float(copies * model.expert_bytes)),
        memory_bytes=tuple(m.total for m in system.memory),
        counters=dict(counters),
        system=system,
    )

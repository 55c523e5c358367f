"""One simulation run: scenario in, records out, summary computed from the records."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from simulator.engine.cluster import Cluster, CountingEnvironment
from simulator.model.pipeline import MoEPipeline
from simulator.output.summary import summarize
from simulator.scenario.schema import Scenario, scenario_to_dict
from simulator.scenario.system import System, build_system
from simulator.output.timeline import run_timeline
from simulator.model.training_step import TrainingPipeline


@dataclass
class RunResult:
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    system: System
    cluster: Cluster
    pipeline: MoEPipeline

    def timeline(self) -> dict[str, Any]:
        return run_timeline(self.cluster, self.system, self.pipeline)


def simulate(scenario: Scenario, source: str = "scenario", on_iteration=None,
             on_progress=None) -> RunResult:
    """Build the system, run every iteration as events, and summarise the records.

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
    summary, rows = summarize(system, cluster, pipeline, wall_s, scenario_to_dict(scenario))
    return RunResult(summary, rows, system, cluster, pipeline)

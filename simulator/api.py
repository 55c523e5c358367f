"""The Python API for notebooks and scripts, next to the CLI (DESIGN.md section 6).

    import simulator
    result = simulator.run("scenarios/default.yaml", set={"workload.batch": 4}, seed=0)
    result.summary["latency_s"]["mean"]      # summary.json as a dict
    result.iterations                        # iterations.csv as a table
    result.spans                             # one row per compute span / collective
    fig = result.plot.breakdown()            # a matplotlib Figure
    result.save("results/batch4")            # summary.json, iterations.csv, timeline.json

Tables are pandas DataFrames when pandas is installed, lists of dicts otherwise. Nothing heavy
is imported until it is used: `import simulator` loads neither scipy nor matplotlib nor torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any


def table(rows: list[dict[str, Any]]):
    """A pandas DataFrame of `rows` when pandas is installed, else the list of dicts itself."""
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows)


def _overrides(values: Mapping[str, Any] | None, seed: int | None) -> list[str]:
    """``{"workload.batch": 4}`` as the CLI's ``--set workload.batch=4`` (values as JSON, which is YAML)."""
    overrides = [f"{key}={json.dumps(value)}" for key, value in (values or {}).items()]
    if seed is not None:
        overrides.append(f"seed={json.dumps(seed)}")
    return overrides


def load(scenario: str | Path | Mapping[str, Any], set: Mapping[str, Any] | None = None,
         seed: int | None = None):
    """A validated `Scenario` from a YAML path or a mapping, with `set` overrides and `seed`."""
    from simulator.scenario.schema import apply_override, load_scenario, validate_scenario

    if isinstance(scenario, Mapping):
        raw = json.loads(json.dumps(dict(scenario)))
        for override in _overrides(set, seed):
            apply_override(raw, override)
        return validate_scenario(raw)
    return load_scenario(scenario, _overrides(set, seed))


def run(scenario: str | Path | Mapping[str, Any], set: Mapping[str, Any] | None = None,
        seed: int | None = None, progress=None) -> Result:
    """Simulate a scenario (YAML path or mapping) and return its `Result`.

    `set` takes the CLI's ``--set`` keys (``{"workload.batch": 4, "topology.builder": "pcie_tree"}``);
    `seed` overrides the scenario's seed; `progress(i)` is called as iteration i ends.
    Bad input raises `simulator.errors.ScenarioError` with the YAML path in its message.
    """
    from simulator.scenario.run import simulate

    source = str(scenario) if not isinstance(scenario, Mapping) else "scenario"
    return Result(simulate(load(scenario, set, seed), source=source, on_iteration=progress))


class Result:
    """One run: the records it emitted and the reports computed from them."""

    def __init__(self, records):
        self.records = records

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json's content."""
        return self.records.summary

    @property
    def iterations(self):
        """iterations.csv as a table: one row per iteration (layer "all"), then one per layer."""
        return table(self.records.rows)

    @property
    def spans(self):
        """One row per kernel or collective per GPU: gpu, stream, phase, name, iteration, layer,
        start_s, end_s, flops, bytes."""
        return table([asdict(span) for span in self.records.spans])

    @property
    def flows(self):
        """One row per network flow: tag, src, dst, bytes, start_s, first_byte_s, end_s."""
        return table([{k: v for k, v in asdict(flow).items() if k != "links"} for flow in self.records.flows])

    @cached_property
    def timeline(self) -> dict[str, Any]:
        """timeline.json's content (Chrome trace events; open the saved file in Perfetto)."""
        return self.records.timeline()

    @cached_property
    def plot(self) -> Plots:
        """The figures of `moesim plot`, as matplotlib Figures: ``result.plot.breakdown()``."""
        return Plots(self)

    def save(self, directory: str | Path) -> Path:
        """Write summary.json, iterations.csv and timeline.json (as `moesim run --out`)."""
        from simulator.output.summary import write_results

        write_results(Path(directory), self.summary, self.records.rows, self.timeline)
        return Path(directory)

    def __repr__(self) -> str:
        latency = self.summary["latency_s"]["mean"]
        return (f"<Result {self.summary['scenario'].get('name', '')!r}: {self.summary['iterations']} "
                f"iterations, mean latency {latency * 1e3:.4g} ms>")


class Plots:
    """Figures of one result, each a matplotlib Figure (matplotlib imported on first use)."""

    def __init__(self, result: Result):
        self._result = result

    @cached_property
    def _timeline(self):
        from simulator.output.timeline import parse_timeline

        return parse_timeline(json.loads(json.dumps(self._result.timeline)))

    def breakdown(self):
        """Mean time per phase per iteration, beside the iteration latency."""
        from simulator.output import plots

        return plots.plot_phase_breakdown(self._result.summary, self._result.records.rows, None)

    def expert_load(self):
        """Per GPU: token-expert pairs before and after balancing, and expert time."""
        from simulator.output import plots

        return plots.plot_expert_load(self._timeline, self._result.summary, None)

    def link_utilization(self, iterations: tuple[int | None, int | None] = (None, None)):
        """Per link kind, utilisation over time."""
        from simulator.output import plots

        return plots.plot_link_utilization(self._timeline, None, iterations=iterations)

    def skewness(self):
        """Per MoE layer: expert skewness and GPU skewness before/after balancing."""
        from simulator.output import plots

        return plots.plot_skewness(self._result.records.rows, None)

    def gantt(self, iterations: tuple[int | None, int | None] = (0, 1),
              layers: tuple[int | None, int | None] = (None, None)):
        """Gantt chart of the chosen iterations and layers, coloured by phase."""
        from simulator.output import plots

        return plots.plot_gantt(self._timeline, None, iterations, layers)


def sweep(path: str | Path, out: str | Path, workers: int = 1, set: Mapping[str, Any] | None = None,
          timeline: bool = False):
    """Run a sweep file (as `moesim sweep`, resumable in `out`) and return results.csv as a table."""
    import csv

    from simulator.studies.sweep import load_sweep, run_sweep

    run_sweep(load_sweep(path, _overrides(set, None)), out, workers=workers, timeline=timeline)
    with (Path(out) / "results.csv").open(newline="") as handle:
        return table(list(csv.DictReader(handle)))


def gps(scenario: str | Path | Mapping[str, Any], set: Mapping[str, Any] | None = None,
        seed: int | None = None, balancers: tuple[str, ...] | None = None,
        sizes: tuple[int, ...] | None = None, history: int = 10, replan_every: int = 1,
        workers: int = 1) -> GPSResult:
    """MoE-GPS for one system (as `moesim gps`): every prediction strategy x balancer simulated.

    Returns a `GPSResult`: `.table` (gps.csv's rows), `.best` and `.runner_up` (rows).
    """
    from simulator.studies import gps as study

    loaded = load(scenario, set, seed)
    chosen = study.candidates({"history": history, "replan_every": replan_every},
                              balancers if balancers is not None else study.BALANCERS,
                              sizes if sizes is not None else study.TOKEN_SIZES)
    source = str(scenario) if not isinstance(scenario, Mapping) else "scenario"
    rows, _ = study.run_gps(loaded, source, chosen, workers=workers)
    best, runner_up = study.recommend(rows)
    return GPSResult(rows, best, runner_up, study.describe(best))


class GPSResult:
    """`moesim gps`'s answer: every candidate's row, the recommendation and the runner-up."""

    def __init__(self, rows: list[dict[str, Any]], best: dict[str, Any], runner_up: dict[str, Any] | None,
                 recommendation: str):
        self.rows, self.best, self.runner_up, self.recommendation = rows, best, runner_up, recommendation

    @property
    def table(self):
        return table(self.rows)

    def __repr__(self) -> str:
        return f"<GPSResult {len(self.rows)} candidates; recommended: {self.recommendation}>"

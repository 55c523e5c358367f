"""`moesim run SCENARIO.yaml --out DIR`: simulate a scenario and write summary, rows and timeline."""

from __future__ import annotations

from pathlib import Path

from simulator.cli.outputs import check_replaceable, result_dir
from simulator.cli.progress import add_progress_arguments, progress_from_args
from simulator.output.summary import write_results
from simulator.scenario.run import simulate
from simulator.scenario.schema import load_scenario

HELP = "simulate a scenario; write summary.json, iterations.csv and timeline.json"
TIMELINE_FILES = {"json": "timeline.json", "gz": "timeline.json.gz", "none": None}
STAGES = {"trace": "reading trace", "planning": "planning", "simulate": "simulating"}


def add_arguments(parser) -> None:
    parser.add_argument("scenario", help="scenario YAML file")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario value, e.g. --set workload.batch=4 (repeatable)")
    add_progress_arguments(parser, "print nothing on success")
    timeline = parser.add_mutually_exclusive_group()
    timeline.add_argument("--no-timeline", dest="timeline", action="store_const", const="none",
                          default="json", help="write no timeline (the largest file, and the time "
                                               "to build it)")
    timeline.add_argument("--timeline-gz", dest="timeline", action="store_const", const="gz",
                          help="write the timeline gzip-compressed as timeline.json.gz (Perfetto "
                               "and `moesim plot` open it)")


class _Stages:
    """One progress bar per stage (`simulator.cli.progress`): reading the trace, planning, then
    the simulated iterations. Planning's bar opens as soon as the trace is read, so a slow
    balancer (ILP) shows as "planning 0/N" instead of a finished bar."""

    def __init__(self, progress, name: str, iterations: int):
        self.progress, self.name, self.iterations = progress, name, iterations
        self.bar, self.stage = None, None

    def update(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = self.progress(total=total, unit="iteration",
                                     desc=f"{self.name}: {STAGES.get(stage, stage)}")
        self.bar.update(done - self.bar.n)

    def build(self, stage: str, done: int, total: int) -> None:
        """`build_system`'s callback."""
        self.update(stage, done, total)
        if stage == "trace" and done == total:
            self.update("planning", 0, self.iterations)

    def iteration(self, _iteration: int) -> None:
        done = self.bar.n + 1 if self.stage == "simulate" else 1
        self.update("simulate", done, self.iterations)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(args) -> int:
    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    scenario = load_scenario(args.scenario, overrides)
    check_replaceable(Path(args.out))  # before simulating: a bad --out fails in a second
    stages = _Stages(progress_from_args(args), scenario.name, scenario.workload.iterations)
    try:
        result = simulate(scenario, source=args.scenario, on_iteration=stages.iteration,
                          on_progress=stages.build)
    finally:
        stages.close()
    name = TIMELINE_FILES[args.timeline]
    with result_dir(args.out) as temp:  # all-new or all-old, never a mix of two runs
        write_results(temp, result.summary, result.rows, result.timeline() if name else None,
                      name or "timeline.json")
    if not args.quiet:
        print(format_summary(result.summary, args.out))
    return 0


def format_summary(summary: dict, out_dir: str) -> str:
    """A short human summary: latency, breakdown, skewness, where the files are."""
    scenario = summary["scenario"]
    latency = summary["latency_s"]
    lines = [
        f"{scenario['name']}: {summary['iterations']} iterations on {summary['gpus']} GPUs, "
        f"{summary['tokens_per_iteration']} tokens each",
        f"latency  mean {latency['mean'] * 1e3:.3f} ms   p50 {latency['p50'] * 1e3:.3f} ms   "
        f"p99 {latency['p99'] * 1e3:.3f} ms",
        "breakdown (ms per iteration, wall time each phase is active on any GPU):",
    ]
    total = sum(summary["breakdown_s"].values()) or 1.0
    for phase, seconds in summary["breakdown_s"].items():
        if seconds > 0:
            lines.append(f"  {phase:<11} {seconds * 1e3:9.3f}  {100 * seconds / total:5.1f}%")
    skew = summary["skewness"]
    lines.append(f"skewness  experts {skew['expert']:.2f}   GPUs before {skew['before']:.2f}   "
                 f"after {skew['after']:.2f}")
    lines.append(f"events {summary['events']}   wall {summary['wall_s']:.2f} s   results in {out_dir}/")
    return "\n".join(lines)

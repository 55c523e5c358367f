"""`moesim calibrate --topology T LOG... [--kernels CSV] --out fit.yaml`: fit the link catalogue to
your own nccl-tests logs (and check your kernel timings), so the simulator matches your cluster.

The output is a calibration YAML: pass it as ``topology: {builder: ..., calibration: fit.yaml}``
in a scenario or ``moesim collective ... --calibration fit.yaml``. Kernel timings are written back
as a compute calibration table (``compute: {calibration: kernels.csv}``). docs/calibration.md
walks through it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

import topologies
from simulator.cli.outputs import check_out_file, write_text_atomic
from simulator.hardware import fit as cal
from simulator.model.kernel_table import CalibrationTable
from simulator.cli.collective import parse_size
from simulator.errors import ScenarioError

HELP = "fit catalogue entries (link efficiency, per-message latency) to your nccl-tests logs and kernel timings"


def add_arguments(parser) -> None:
    parser.add_argument("logs", nargs="*", metavar="LOG",
                        help="nccl-tests outputs (all_reduce_perf, all_gather_perf, reduce_scatter_perf, "
                             "alltoall_perf, sendrecv_perf); the op comes from the log or its file name")
    parser.add_argument("--topology", required=True,
                        help="your system: a builder (dgx-h100, multi_node, ...) or a topology YAML file")
    parser.add_argument("--nodes", type=int, help="servers, for multi-server builders")
    parser.add_argument("--device", help="GPU catalogue name, for builders that take one")
    parser.add_argument("--kernels", metavar="CSV", help="measured kernel times (compute calibration format)")
    parser.add_argument("--algo", default="auto",
                        help="the NCCL algorithm the logs ran (NCCL_ALGO); default auto: NCCL's own choice")
    parser.add_argument("--small-max", default="64K",
                        help="rows up to this size fit the latencies (default 64K)")
    parser.add_argument("--out", required=True, help="calibration YAML to write")
    parser.add_argument("--kernels-out", help="where to write the checked kernel table "
                                              "(default: OUT with .kernels.csv)")


def run(args) -> int:
    if not args.logs and not args.kernels:
        raise ScenarioError("give at least one nccl-tests log or --kernels CSV", "LOG")
    if args.algo not in ("auto", "ring", "tree", "nvls", "direct", "pxn"):
        raise ScenarioError(f"must be auto, ring, tree, nvls, direct or pxn, got {args.algo!r}", "--algo")
    small_max = parse_size(args.small_max, "--small-max")
    check_out_file(args.out)
    if args.kernels_out:
        check_out_file(args.kernels_out, "--kernels-out")
    overrides = {key: value for key, value in (("nodes", args.nodes), ("device", args.device)) if value is not None}
    graph = topologies.resolve(args.topology, **overrides)
    logs = [cal.parse_nccl_tests(path) for path in args.logs]
    kernels = CalibrationTable.from_csv(args.kernels) if args.kernels else None
    result, fit = cal.calibrate(graph, logs, kernels, algorithm=args.algo, small_max_bytes=small_max)
    out = Path(args.out)
    header = [(f"# moesim calibrate: fitted to {', '.join(Path(p).name for p in args.logs) or 'no log'}"
              f" on {graph.graph.get('name', args.topology)}"),
              (f"# use: topology: {{builder: ..., calibration: {out.name}}}  or  "
              f"moesim collective OP --topology ... --calibration {out.name}")]
    if kernels is not None:
        kernels_out = Path(args.kernels_out) if args.kernels_out else out.with_suffix(".kernels.csv")
        _write_kernels(kernels, kernels_out)
        header.append(f"# kernels: compute: {{calibration: {kernels_out.name}}} (measured times replace the roofline)")
        result["kernels_csv"] = kernels_out.name
    write_text_atomic(out, "\n".join(header) + "\n" + yaml.safe_dump(result, sort_keys=False, width=110))
    if fit.report:
        print(f"{'log':<28} {'size':>12} {'algo':>6} {'measured us':>12} {'model us':>10} {'error':>8} "
              f"{'busbw':>8} {'model':>8}")
        for row in fit.report:
            error = (row["model_us"] - row["measured_us"]) / row["measured_us"]
            print(f"{Path(row['log']).name[:28]:<28} {row['size']:>12} {row['algorithm']:>6} "
                  f"{row['measured_us']:>12.2f} {row['model_us']:>10.2f} {error:>+8.1%} "
                  f"{row['measured_busbw_GBps']:>8.2f} {row['model_busbw_GBps']:>8.2f}")
    for kind, figures in result["links"].items():
        shown = ", ".join(f"{k} {v:g}" for k, v in figures.items() if k != "source")
        print(f"{kind}: {shown}")
    for name, value in result.get("launch_us", {}).items():
        print(f"launch {name}: {value:g} us")
    for gpu, figures in result.get("kernels", {}).items():
        print(f"{gpu}: GEMM eff_max {figures['eff_max']:g}, W_half {figures['half_work_gflop']:g} GFLOP "
              f"({figures['gemm_rows']} rows, rms log error {figures['rms_log_error']:g})")
    print(f"wrote {out}")
    return 0


def _write_kernels(table: CalibrationTable, path: Path) -> None:
    lines = ["gpu,op,m,n,k,time_us,source,dtype_bytes"]
    for p in table.points:
        source = p.source.replace(",", ";")
        lines.append(f"{p.gpu},{p.op},{p.m},{p.n},{p.k},{p.time_s * 1e6:.6g},{source},{p.dtype_bytes}")
    write_text_atomic(path, "\n".join(lines) + "\n", "--kernels-out")

"""Peak memory of a run at the token counts users ask about: it must not grow with tokens.

Run: `.venv/bin/python benchmarks/bench_memory.py [--tokens-per-gpu N] [--iterations N] [--quick]`.

Each case runs in a fresh Python process and reports that process's peak resident set size
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`), so cases never inherit each other's memory:

- `import`   the simulator imported, nothing built (the floor every case pays);
- `validate` `moesim validate` of the scenario (schema, shapes, memory; no trace);
- `build`    `build_system`: the synthetic trace streamed iteration by iteration and reduced to
             owner-by-expert counts, balancer and routing plan;
- `run`      the whole simulation (`simulate`: build, events, summary), unless `--quick`.

The scenario is the bundled DeepSeek-V3 one (4 nodes x 8 H100, EP32 over InfiniBand) switched to
prefill of batch 32 x seq_len `tokens-per-gpu` (default 16,384: 524,288 tokens per iteration).
`trace_GB` is what the old [iterations, layers, tokens, top_k] int16 trace alone held in memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "deepseek-v3-4x8xh100-ib.yaml"

CASE = r"""
import json, resource, sys, time
started = time.perf_counter()
case, overrides = sys.argv[1], json.loads(sys.argv[2])
from simulator.scenario.schema import load_scenario
scenario = load_scenario(sys.argv[3], overrides)
if case == "validate":
    from simulator.scenario.system import check_system
    check_system(scenario)
elif case == "build":
    from simulator.scenario.system import build_system
    build_system(scenario)
elif case == "run":
    from simulator.scenario.run import simulate
    simulate(scenario)
peak_MB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
print(json.dumps({"wall_s": time.perf_counter() - started, "peak_MB": peak_MB}))
"""


def measure(case: str, overrides: list[str]) -> dict:
    """One case in its own interpreter: wall time and peak RSS."""
    out = subprocess.run([sys.executable, "-c", CASE, case, json.dumps(overrides), str(SCENARIO)],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{case} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens-per-gpu", type=int, default=16384,
                        help="prefill seq_len; batch 32, so tokens per iteration = 32 x this")
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="skip the full simulation")
    args = parser.parse_args(argv)
    overrides = ["workload.phase=prefill", "workload.batch=32",
                 f"workload.seq_len={args.tokens_per_gpu}", f"workload.iterations={args.iterations}"]
    tokens = 32 * args.tokens_per_gpu
    trace_GB = args.iterations * 58 * tokens * 8 * 2 / 1e9  # DeepSeek-V3: 58 MoE layers, top-8
    print(f"DeepSeek-V3 prefill, EP32, {tokens:,} tokens x {args.iterations} iteration(s); "
          f"the materialised trace would hold {trace_GB:.2f} GB")
    print(f"{'case':<10}{'wall_s':>10}{'peak_MB':>10}")
    cases = ["import", "validate", "build"] + ([] if args.quick else ["run"])
    for case in cases:
        result = measure(case, overrides)
        print(f"{case:<10}{result['wall_s']:>10.2f}{result['peak_MB']:>10.0f}", flush=True)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - start:.1f} s")

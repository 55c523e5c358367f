"""Memory budget of a run, checked before anything token-sized is allocated.

A scenario's numbers drive allocations: the routing trace is (history + iterations) x MoE layers x
tokens x top_k expert ids, plus the synthetic generator's per-token features and the routing
plan's per-iteration GPU x GPU matrices. `workload.batch: 1000000000` or deleting
`workload.phase` from a decode scenario (524k prefill tokens x 58 layers) would allocate tens of
GB to TBs and swap for minutes; here the estimate is compared with `simulator.safeio.memory_limit_bytes()`
first, and the message says how much, what drove it and how to raise the limit.
"""

from __future__ import annotations

from typing import Any

from simulator.safeio import check_bytes
from simulator.errors import ScenarioError
from simulator.planning.strategy import predictor_settings

ID_BYTES = 2 + 8  # int16 expert ids stored, plus int64 temporaries of the load counts / routing
FEATURE_BYTES = 4 + 16 * 4  # token id + the synthetic generator's float32 features (feature_dim 16)


def check_workload_budget(scenario: Any, model: Any, gpus: int | None = None,
                          tokens_only: bool = False, streamed: bool = False) -> None:
    """Raise ScenarioError if the trace and routing plan of `scenario` would exceed the limit.

    `tokens_only`: just the per-token arrays built before the GPU-memory check (token
    ownership), so that check, which names the GPU, still reports a batch that cannot fit.
    `streamed`: the trace is read one iteration at a time (`simulator.scenario.system`), so only
    one iteration's ids and features are held; the plan's matrices still grow with iterations.
    """
    workload = scenario.workload
    history, _, _ = predictor_settings(scenario.predictor.model_dump())
    iterations = history + workload.iterations
    tokens = workload.batch * (workload.seq_len if workload.phase == "prefill" else 1)
    layers, top_k = model.moe_layers, model.top_k
    held = 1 if streamed else iterations  # iterations of token-level arrays in memory at once
    trace_bytes = float(held) * layers * tokens * top_k * ID_BYTES
    feature_bytes = float(held) * tokens * FEATURE_BYTES
    plan_bytes = float(iterations) * layers * (gpus or 1) * ((gpus or 1) + model.experts) * 8 * 2
    needed = float(tokens) * 8 * 2 if tokens_only else trace_bytes + feature_bytes + plan_bytes
    what = (f"the routing of {iterations:,} iterations (history {history} + {workload.iterations}) "
            f"x {layers} MoE layers x {tokens:,} tokens (batch {workload.batch:,}"
            f"{f' x seq_len {workload.seq_len:,}' if workload.phase == 'prefill' else ', decode'})"
            f" x top-{top_k}")
    if tokens_only:
        what = (f"the per-token arrays of {tokens:,} tokens per iteration (batch "
                f"{workload.batch:,}{f' x seq_len {workload.seq_len:,}' if workload.phase == 'prefill' else ''})")
    field = "workload.batch" if workload.batch >= max(workload.seq_len, workload.iterations) else (
        "workload.seq_len" if workload.phase == "prefill" and workload.seq_len >= workload.iterations
        else "workload.iterations")
    check_bytes(needed, what, field, error=ScenarioError)

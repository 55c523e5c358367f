"""Trace sources: where a scenario's routing comes from (`workload.trace`), one registry.

``{synthetic: {skewness: S, ...}}`` draws a trace, ``{file: path.npz}`` loads a recorded one and
``{training_load: path.npz, start: step, stride: steps}`` turns a training-load trace into routing.
The source is the mapping's one key among these names; the rest of the mapping are its
parameters, checked against the source's model when the scenario loads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from simulator.errors import ScenarioError
from simulator.registry import Params, Registry, params_from_signature, sub
from workloads.load_shares import trace_from_load_shares
from workloads.synthetic import generate_trace
from workloads.trace import RoutingTrace

FIELD = "workload.trace"


class FileParams(Params):
    file: str = Field(description="a recorded routing trace (.npz), relative to the scenario")


class TrainingLoadParams(Params):
    training_load: str = Field(description="a training-load trace (.npz), relative to the scenario")
    start: int = Field(0, ge=0, description="training step simulated as iteration 0")
    stride: int = Field(1, ge=1, description="training steps between simulated iterations")


# generate_trace checks its own knob values (it is a public function); its signature is the model.
SyntheticParams = params_from_signature(generate_trace, "SyntheticParams",
                                        skip=("model", "iterations", "tokens", "field"))


def _synthetic(scenario, params, model, tokens: int, iterations: int) -> RoutingTrace:
    knobs = params.given()
    return generate_trace(model, iterations=iterations, tokens=tokens,
                          seed=knobs.pop("seed", scenario.seed), **knobs)


def _file(scenario, params: FileParams, model, tokens: int, iterations: int) -> RoutingTrace:
    if not params.file.strip():
        raise ScenarioError("must be the path of a .npz trace, got an empty string", f"{FIELD}.file")
    trace = RoutingTrace.load(scenario.resolve_path(params.file))
    trace.check_against(model, field=f"{FIELD}.file")
    if trace.iterations < iterations or trace.tokens < tokens:
        history = iterations - scenario.workload.iterations
        raise ScenarioError(
            f"trace has {trace.iterations} iterations x {trace.tokens} tokens; the workload needs "
            f"{iterations} x {tokens} (predictor history {history} + {iterations - history} "
            "simulated)", f"{FIELD}.file")
    return trace


def _training_load(scenario, params: TrainingLoadParams, model, tokens: int,
                   iterations: int) -> RoutingTrace:
    """Iteration i simulates training step start + i * stride of a recorded training-load trace."""
    from workloads.moe_lm import TrainingLoadTrace

    start, stride = params.start, params.stride
    load = TrainingLoadTrace.load(scenario.resolve_path(params.training_load),
                                  field=f"{FIELD}.training_load")
    steps = start + np.arange(iterations) * stride
    if steps[-1] >= load.steps:
        raise ScenarioError(f"needs step {steps[-1]} (start {start} + {iterations} iterations x stride "
                            f"{stride}) but the trace has {load.steps} steps", f"{FIELD}.training_load")
    return trace_from_load_shares(load.shares[steps], model, tokens, scenario.seed,
                                  {"training_steps": steps.tolist()}, f"{FIELD}.training_load")


TRACE_SOURCES = Registry("trace source", ScenarioError)
TRACE_SOURCES.register("synthetic", _synthetic, SyntheticParams)
TRACE_SOURCES.register("file", _file, FileParams)
TRACE_SOURCES.register("training_load", _training_load, TrainingLoadParams)


def parse_trace(spec: Any) -> tuple[str, Params]:
    """(source name, its checked parameters) from the `workload.trace` mapping."""
    keys = sorted(spec) if isinstance(spec, dict) else []
    named = [key for key in keys if key in TRACE_SOURCES]
    if len(named) != 1:
        raise ScenarioError(f"expected {{synthetic: {{...}}}}, {{file: path.npz}} or {{training_load: "
                            f"path.npz, start: step, stride: steps}}, got keys {keys}", FIELD)
    name = named[0]
    if name == "synthetic":
        if set(spec) != {"synthetic"}:
            extra = sorted(set(spec) - {"synthetic"})[0]
            raise ScenarioError(f"unknown key {extra!r} next to synthetic; allowed: synthetic",
                                sub(FIELD, extra))
        return name, TRACE_SOURCES.parse(name, spec["synthetic"] or {}, sub(FIELD, "synthetic"))
    if name == "file":
        return name, TRACE_SOURCES.parse(name, {k: str(v) if k == "file" and v is not None else v
                                                for k, v in spec.items()}, FIELD)
    return name, TRACE_SOURCES.parse(
        name, {k: str(v) if k == "training_load" else v for k, v in spec.items()}, FIELD)


def load_trace(scenario, model, tokens: int, history: int) -> RoutingTrace:
    """The trace: `history` iterations the predictor fits on, then the simulated ones."""
    name, params = scenario.workload.trace_source
    iterations = history + scenario.workload.iterations
    return TRACE_SOURCES.factory(name, FIELD)(scenario, params, model, tokens, iterations)

"""Trace sources: where a scenario's routing comes from (`workload.trace`), one registry.

``{synthetic: {skewness: S, ...}}`` draws a trace, ``{file: path.npz}`` loads a recorded one and
``{training_load: path.npz, start: step, stride: steps}`` turns a training-load trace into routing.
The source is the mapping's one key among these names; the rest of the mapping are its
parameters, checked against the source's model when the scenario loads.

A source returns a `workloads.trace.TraceSource`: the synthetic one generates iterations on
demand (nothing token-level is held), the others are in memory. With `build=False` a source only
checks what a run would read (a file's arrays, the generator's arguments) and returns
the [iterations, layers, tokens, top_k] shape: what `moesim validate` runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from simulator.errors import ScenarioError
from simulator.registry import Params, Registry, params_from_signature, sub
from workloads.synthetic import check_synthetic, synthetic_trace
from workloads.trace import RoutingTrace, TraceSource

FIELD = "workload.trace"


class FileParams(Params):
    file: str = Field(description="a recorded routing trace (.npz), relative to the scenario")


class TrainingLoadParams(Params):
    training_load: str = Field(description="a training-load trace (.npz), relative to the scenario")
    start: int = Field(0, ge=0, description="training step simulated as iteration 0")
    stride: int = Field(1, ge=1, description="training steps between simulated iterations")


# synthetic_trace checks its own knob values (it is a public function); its signature is the model.
SyntheticParams = params_from_signature(synthetic_trace, "SyntheticParams",
                                        skip=("model", "iterations", "tokens", "field"))


def _synthetic(scenario, params, model, tokens: int, iterations: int, build: bool = True):
    knobs = params.given()
    seed = knobs.pop("seed", scenario.seed)
    if not build:
        check_synthetic(model, iterations, tokens, seed=seed, **knobs)
        return _shape(model, tokens, iterations)
    return synthetic_trace(model, iterations=iterations, tokens=tokens, seed=seed, **knobs)


def _shape(model, tokens: int, iterations: int) -> tuple[int, int, int, int]:
    return (iterations, model.moe_layers, tokens, model.top_k)


def _file(scenario, params: FileParams, model, tokens: int, iterations: int, build: bool = True):
    if not params.file.strip():
        raise ScenarioError("must be the path of a .npz trace, got an empty string", f"{FIELD}.file")
    path = scenario.resolve_path(params.file)
    trace = RoutingTrace.load(path)  # validate reads a file whole too: every id is checked
    trace.check_against(model, field=f"{FIELD}.file")
    if trace.iterations < iterations or trace.tokens < tokens:
        history = iterations - scenario.workload.iterations
        raise ScenarioError(
            f"trace has {trace.iterations} iterations x {trace.tokens} tokens; the workload needs "
            f"{iterations} x {tokens} (predictor history {history} + {iterations - history} "
            "simulated)", f"{FIELD}.file")
    return trace if build else _shape(model, tokens, iterations)


def _training_load(scenario, params: TrainingLoadParams, model, tokens: int, iterations: int,
                   build: bool = True):
    """Iteration i simulates training step start + i * stride of a recorded training-load trace."""
    from workloads.moe_lm import TrainingLoadTrace

    start, stride = params.start, params.stride
    load = TrainingLoadTrace.load(scenario.resolve_path(params.training_load),
                                  field=f"{FIELD}.training_load")
    steps = start + np.arange(iterations) * stride
    if steps[-1] >= load.steps:
        raise ScenarioError(f"needs step {steps[-1]} (start {start} + {iterations} iterations x stride "
                            f"{stride}) but the trace has {load.steps} steps", f"{FIELD}.training_load")
    if not build:
        if load.experts != model.experts:
            raise ScenarioError(f"the load trace has {load.experts} experts but the model "
                                f"{model.name} has {model.experts}", f"{FIELD}.training_load")
        return _shape(model, tokens, iterations)
    from workloads.load_shares import trace_from_load_shares

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


def load_trace(scenario, model, tokens: int, history: int) -> TraceSource:
    """The trace: `history` iterations the predictor fits on, then the simulated ones."""
    name, params = scenario.workload.trace_source
    iterations = history + scenario.workload.iterations
    return TRACE_SOURCES.factory(name, FIELD)(scenario, params, model, tokens, iterations)


def check_trace(scenario, model, tokens: int, history: int) -> tuple[int, int, int, int]:
    """`load_trace`'s checks without reading or generating the trace: the shape it will have."""
    name, params = scenario.workload.trace_source
    iterations = history + scenario.workload.iterations
    return TRACE_SOURCES.factory(name, FIELD)(scenario, params, model, tokens, iterations,
                                              build=False)

"""Scenario: load a YAML file, apply `--set` overrides, validate once, resolve defaults.

Everything downstream trusts the frozen `Scenario` this module returns (STYLE.md item 8).
Schema errors become one `ScenarioError` whose field is the YAML path
(``workload.batch: must be >= 1, got -1``).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from predictors.registry import PREDICTORS, make_predictor
from simulator.safeio import InputError, loads_yaml, read_yaml
from simulator.engine.collectives import check_algorithms
from simulator.errors import USER_ERRORS, ScenarioError
from simulator.planning.placement import BALANCERS
from simulator.planning.strategy import (
    BALANCER_RUN_KEYS, PREDICTOR_RUN_KEYS, BalancerRun, PredictorRun, balancer_run,
)
from simulator.registry import Params, parse_params
from simulator.scenario.strict import reject_bool_numbers


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _OpenSection(BaseModel):
    """A section whose extra keys belong to a pluggable kind (predictor, balancer)."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)


class Parallelism(_Section):
    """How the GPUs split the model: expert parallelism and attention parallelism."""

    ep: int | None = Field(None, ge=1, description="expert-parallel group size; default: every GPU")
    attention: Literal["tp", "dp"] = Field("tp", description="tensor- or data-parallel attention")
    tp: int | None = Field(
        None, ge=1, description="attention tensor-parallel size; default ep for tp, 1 for dp"
    )
    token_residency: Literal["owner", "expert"] = Field(
        "owner", description="where a token lives between layers: owner (the combine returns it, "
        "vLLM/SGLang/Megatron) or expert (it stays on its first-choice expert's GPU, MoETuner/"
        "ExFlow; needs attention: dp)")


class Workload(_Section):
    """What one iteration is and where its routing comes from."""

    mode: Literal["inference", "training"] = Field(
        "inference", description="inference: forward passes; training: forward + backward + optimizer")
    phase: Literal["prefill", "decode"] = Field(
        "prefill", description="prefill: batch x seq_len tokens; decode: one new token per sequence")
    batch: int = Field(1, ge=1, description="sequences per iteration")
    seq_len: int = Field(512, ge=1, description="prefill: tokens per sequence; decode: KV-cache length")
    iterations: int = Field(20, ge=1, description="forward passes simulated back to back")
    trace: dict[str, Any] = Field(
        default_factory=lambda: {"synthetic": {"skewness": 1.4}},
        description="{synthetic: {skewness: S, ...}}, {file: path.npz} or "
                    "{training_load: path.npz, start: step, stride: steps}",
    )

    @property
    def trace_source(self) -> tuple[str, Params]:
        """(source name, its checked parameters); see simulator.scenario.traces."""
        from simulator.scenario.traces import parse_trace

        return parse_trace(self.trace)


class Predictor(_OpenSection):
    """Load or token predictor; other keys: its hyper-parameters, history, replan_every, presend."""

    kind: str = Field("none", description="none, distribution.*, token.*, oracle.* (predictors.md)")

    @property
    def run(self) -> PredictorRun:
        """history, replan_every, presend: checked against `PredictorRun`."""
        extra = self.model_extra or {}
        values = {key: extra[key] for key in PREDICTOR_RUN_KEYS if key in extra}
        return parse_params(PredictorRun, values, "predictor", "the predictor section", "key",
                            ScenarioError)

    @property
    def hyper_parameters(self) -> dict[str, Any]:
        return {k: v for k, v in (self.model_extra or {}).items() if k not in PREDICTOR_RUN_KEYS}

    @property
    def params(self) -> Params:
        """The hyper-parameters checked against the kind's model and its constructor's checks."""
        hyper = self.hyper_parameters
        params = PREDICTORS.parse(self.kind, hyper, "predictor")
        make_predictor({"kind": self.kind, **hyper})  # the constructor's value checks
        return params


class Balancer(_OpenSection):
    """Expert placement; other keys: objective (time | tokens), redundant_slots, min_gain, prefetch,
    assume (none | moe-gps) — docs/balancers.md — and the balancer's options (or `placement`)."""

    kind: str = Field("static", description="static, greedy_duplication, eplb, ilp, oracle")

    @property
    def run(self) -> BalancerRun:
        """objective, redundant_slots, min_gain, prefetch, assume: checked against `BalancerRun`."""
        return balancer_run(self.model_extra or {})

    @property
    def params(self) -> Params:
        """The options checked against the balancer's model (simulator.planning.balancers.params)."""
        self.run  # noqa: B018  (the strategy's keys, checked too)
        options = {k: v for k, v in (self.model_extra or {}).items() if k not in BALANCER_RUN_KEYS}
        return BALANCERS.parse(self.kind, options, "balancer")


class Network(_Section):
    """Flow-network settings."""

    alpha_us: float = Field(0.0, ge=0, description="per-message software overhead added to every flow")
    model: Literal["exact", "fast"] = Field(
        "exact", description="exact: re-solve max-min rates at every flow change; fast: after "
        "completions only once 1/32 of the flows have finished (for large sweeps; error table in "
        "benchmarks.md)")


class Compute(_Section):
    """Kernel cost model settings."""

    calibration: str | None = Field(None, description="CSV of measured kernel times (optional)")
    grouped_gemm: bool = Field(False, description="one grouped GEMM per GPU instead of one per expert")


class Scenario(_Section):
    name: str = Field("scenario", description="a label carried into the results")
    seed: int = Field(0, ge=0, description="seeds the synthetic trace and any drawn routing")
    model: str | dict[str, Any] = Field(
        "mixtral-8x7b", description="catalogue name or an inline mapping (workloads.md)")
    topology: str | dict[str, Any] = Field(
        default_factory=lambda: {"builder": "nvlink_mesh", "gpus": 4, "device": "a100-sxm4-80gb"},
        description="{builder: NAME, ...arguments}, {nodes: [...], links: [...]} or a topology "
                    "YAML file, relative to the scenario (topologies.md)",
    )
    parallelism: Parallelism = Parallelism()
    workload: Workload = Workload()
    predictor: Predictor = Predictor()
    balancer: Balancer = Balancer()
    network: Network = Network()
    compute: Compute = Compute()
    base_dir: str = Field(".", description="directory relative paths resolve against (set by the loader)")

    def resolve_path(self, path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else Path(self.base_dir) / candidate


def load_scenario(path: str | Path, overrides: list[str] = ()) -> Scenario:
    """Read a scenario YAML, apply `key.path=value` overrides and validate it."""
    path = Path(path)
    raw = read_yaml_mapping(path)
    raw.setdefault("base_dir", str(path.resolve().parent))
    before = copy.deepcopy(raw)
    for override in overrides:
        apply_override(raw, override)
    follow_gpu_count(before, raw, overrides)
    return validate_scenario(raw, source=str(path))


def follow_gpu_count(before: dict[str, Any], raw: dict[str, Any], overrides: list[str]) -> None:
    """`--set topology.gpus=8` on a scenario written for 4 GPUs: an `ep` (and attention `tp`)
    that spanned every GPU keeps spanning every GPU unless set too, and a name that says
    ``4xa100`` says ``8xa100`` (a run must not carry its 4-GPU name on 8 GPUs)."""
    keys = {o.partition("=")[0].strip() for o in overrides}
    old_topo, new_topo = before.get("topology"), raw.get("topology")
    if "topology.gpus" not in keys or not isinstance(old_topo, dict) or not isinstance(new_topo, dict):
        return
    old, new = old_topo.get("gpus"), new_topo.get("gpus")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (old, new)) or old == new:
        return
    parallelism = raw.get("parallelism")
    if isinstance(parallelism, dict):
        for key in ("ep", "tp"):
            if f"parallelism.{key}" not in keys and parallelism.get(key) == old:
                parallelism[key] = new
    name = raw.get("name")
    if "name" not in keys and isinstance(name, str):
        renamed = re.sub(rf"(?<![0-9.]){old}x(?=[a-z])", f"{new}x", name)
        raw["name"] = renamed if renamed != name else f"{name}-{new}gpus"


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    data = read_yaml(path, error=ScenarioError)  # strict: duplicate keys, 010, .inf, alias bombs, FIFOs refused
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: top level must be a mapping of scenario keys")
    return data


def validate_scenario(raw: dict[str, Any], source: str = "scenario") -> Scenario:
    """The typed scenario: schema first, then each pluggable section against its kind's model."""
    try:
        scenario = Scenario.model_validate(raw)
    except pydantic.ValidationError as error:
        raise ScenarioError(f"{source}: {_describe(error.errors()[0], Scenario)}") from None
    reject_bool_numbers(raw, scenario, source)
    try:
        check_sections(scenario)
    except USER_ERRORS as error:
        raise ScenarioError(f"{source}: {error}") from None
    return scenario


def check_sections(scenario: Scenario) -> None:
    """Validate the kind-specific sections (predictor, balancer, trace source, the topology's
    collective algorithms) against their registries' parameter models."""
    scenario.predictor.run  # noqa: B018 - the properties validate
    scenario.predictor.params  # noqa: B018
    scenario.balancer.params  # noqa: B018
    scenario.workload.trace_source  # noqa: B018
    if isinstance(scenario.topology, dict) and "algorithms" in scenario.topology:
        check_algorithms(scenario.topology["algorithms"], "topology.algorithms")


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one `--set key.path=value`; the value is parsed as YAML (numbers, lists, maps)."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ScenarioError(f"expected key.path=value, got {override!r}", "--set")
    parts = key.split(".")
    check_override_path(raw, parts, key)
    try:
        value = loads_yaml(text, f"--set {key}")
    except InputError as error:
        raise ScenarioError(f"value of {key} is not valid: {error}", "--set") from None
    set_path(raw, parts, value)


def set_path(raw: dict[str, Any], parts: list[str], value: Any) -> None:
    """raw[parts[0]][parts[1]]... = value, creating (or replacing non-mapping) sections on the way."""
    node = raw
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def check_override_path(raw: dict[str, Any], parts: list[str], key: str) -> None:
    """A key is settable if the schema declares it or the scenario already has it.

    Open sections (model mapping, topology, predictor, balancer, trace) take kind-specific keys;
    those are checked again downstream by the builder or registry that receives them.
    """
    model: type[BaseModel] | None = Scenario
    node: Any = raw
    for depth, part in enumerate(parts):
        in_raw = isinstance(node, dict) and part in node
        fields = model.model_fields if model is not None else {}
        if model is not None and part not in fields and not (
            in_raw or model.model_config.get("extra") == "allow"
        ):
            prefix = ".".join(parts[:depth])
            allowed = ", ".join(sorted(fields))
            where = f" under {prefix}" if prefix else ""
            raise ScenarioError(f"unknown key {key!r}{where}; allowed: {allowed}", "--set")
        annotation = fields[part].annotation if part in fields else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        node = node.get(part) if isinstance(node, dict) else None
        if model is None and node is None and depth < len(parts) - 1 and part not in fields:
            return


def _describe(error: dict[str, Any], schema: type[BaseModel]) -> str:
    """One line from a pydantic error: YAML path, what is wrong, what is allowed."""
    loc = [part for part in error["loc"] if not str(part).startswith(("function-", "literal["))]
    field = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(schema, loc[:-1])
        return f"{field}: unknown key; allowed: {', '.join(allowed)}"
    value = error.get("input")
    shown = "" if isinstance(value, dict) else f", got {value!r}"
    return f"{field}: {error['msg'].lower()}{shown}"


def _allowed_keys(schema: type[BaseModel], loc: list[Any]) -> list[str]:
    model = schema
    for part in loc:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(k for k in model.model_fields if k != "base_dir")


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """The resolved scenario as plain data (for summary.json), without machine-specific paths."""
    data = scenario.model_dump(mode="json")
    data.pop("base_dir", None)
    return data

"""The balancers' parameter models (the `Registry` of `simulator.planning.placement` uses them).

Kept apart from the algorithms so a scenario is validated at load time without importing scipy
(the ILP's solver). Every option is optional: None means the balancer's own default, which may
depend on the request (`replica_budget` defaults to the request's redundancy).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from simulator.registry import Params


class StaticParams(Params):
    """Static placement: round-robin, or an explicit expert -> GPU rank(s) map checked against the
    model and the EP group when the system is built."""

    model_config = Params.model_config | {"strict": False}
    placement: Any = Field(None, description="expert id -> GPU rank or list of ranks, every layer")


class GreedyParams(Params):
    """Options of greedy duplication (and of the oracle, which is greedy duplication on true loads)."""

    replica_budget: int | None = Field(None, ge=0, description="extra replicas per layer")
    max_replicas_per_gpu: int | None = Field(None, ge=1, description="replica slots per GPU per layer")


class EPLBParams(Params):
    """Options of EPLB."""

    redundant_experts: int | None = Field(None, ge=0, description="extra replicas per layer")
    groups: int | None = Field(None, ge=1, description="expert groups packed whole onto servers")


class ILPParams(Params):
    """Options of the MoETuner ILP (defaults in `ilp_placement`'s docstring)."""

    time_limit_s: float | None = Field(None, gt=0.0, description="wall-clock budget for the placement")
    weight: float | None = Field(None, ge=0.0, le=1.0, description="share of the objective given to balance")
    mode: Literal["two_step", "sequential"] | None = None
    mip_gap: float | None = Field(None, ge=0.0, le=1.0, description="relative gap at which HiGHS may stop")
    max_experts_per_gpu: int | None = Field(None, ge=1)
    initial: Literal["deployed", "copied"] | None = Field(None, description="first plan loaded before serving")
    polish: bool | None = Field(None, description="local search on the objective after the ILPs (default true)")

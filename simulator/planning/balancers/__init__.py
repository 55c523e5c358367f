"""Expert-placement balancers beyond static round-robin, as pure functions of a `PlacementRequest`.

`BALANCERS_EXTRA` maps scenario names (`balancer.kind`) to functions (for tests and direct use); the
`BALANCERS` registry of `simulator.planning.placement` names the same functions with their parameter
models (`simulator.planning.balancers.params`). See docs/balancers.md for the algorithms, their options and sources.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.planning.balancers.common import BalancerWarning, dispatch_traffic, gpu_loads
from simulator.planning.balancers.eplb_policy import eplb
from simulator.planning.balancers.greedy import greedy_duplication
from simulator.planning.balancers.ilp import ilp_placement

if TYPE_CHECKING:  # at run time simulator.planning.placement imports this package
    from simulator.planning.placement import Placement, PlacementRequest


def oracle(request: PlacementRequest) -> Placement:
    """Greedy duplication planned from the true loads (the simulator feeds them as `loads`)."""
    return greedy_duplication(request, name="oracle")


BALANCERS_EXTRA = {
    "greedy_duplication": greedy_duplication,
    "eplb": eplb,
    "ilp": ilp_placement,
    "oracle": oracle,
}

__all__ = [
    "BALANCERS_EXTRA", "BalancerWarning", "dispatch_traffic", "eplb", "gpu_loads",
    "greedy_duplication", "ilp_placement", "oracle",
]

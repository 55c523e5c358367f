"""Expert-placement balancers beyond static round-robin, as pure functions of a `PlacementRequest`.

`BALANCERS_EXTRA` maps scenario names (`balancer.kind`) to functions; `simulator.placement` merges it
into its `BALANCERS` registry. See docs/balancers.md for the algorithms, their options and sources.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.balancers.common import BalancerWarning, dispatch_traffic, gpu_loads
from simulator.balancers.eplb_policy import eplb
from simulator.balancers.greedy import greedy_duplication
from simulator.balancers.ilp import ilp_placement

if TYPE_CHECKING:  # at run time simulator.placement imports this package
    from simulator.placement import Placement, PlacementRequest


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

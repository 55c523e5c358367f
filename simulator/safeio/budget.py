"""Memory budgets checked before allocating: a typo of 10^9 fails in a millisecond, not in swap.

One limit for every large allocation a user's numbers drive (tokens x layers x top_k of a trace,
flows of a collective, sweep variants): ``MOESIM_MEMORY_LIMIT_GB`` (default 16 GB, 10^9 bytes).
"""

from __future__ import annotations

import os

from simulator.safeio.errors import InputError, raising

LIMIT_ENV = "MOESIM_MEMORY_LIMIT_GB"
DEFAULT_LIMIT_GB = 16.0


def memory_limit_bytes() -> float:
    """The allocation limit in bytes: $MOESIM_MEMORY_LIMIT_GB, else 16 GB."""
    text = os.environ.get(LIMIT_ENV)
    if text is None or not text.strip():
        return DEFAULT_LIMIT_GB * 1e9
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"must be a number of GB, got {text!r}", LIMIT_ENV) from None
    if not value > 0 or value != value or value == float("inf"):
        raise InputError(f"must be a finite number of GB > 0, got {text!r}", LIMIT_ENV)
    return value * 1e9


@raising
def check_bytes(needed_bytes: float, what: str, field: str | None = None) -> None:
    """Raise one InputError if `what` would need more than the memory limit.

    ``workload.batch: a routing trace of 1000 iterations x 58 layers x ... would need 7.5 GB;
    the limit is 16 GB, set MOESIM_MEMORY_LIMIT_GB to raise it``.
    """
    limit = memory_limit_bytes()
    if needed_bytes > limit:
        raise InputError(
            f"{what} would need {_gb(needed_bytes)}; the limit is {_gb(limit)}, "
            f"set {LIMIT_ENV} to raise it", field)


def _gb(count: float) -> str:
    gb = count / 1e9
    if gb >= 1e6:
        return f"{gb:.3g} GB"
    return f"{gb:,.1f} GB" if gb >= 0.1 else f"{gb:.3g} GB"

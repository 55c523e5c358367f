"""The max-min fair solver of the flow network, apart from the network model (as SimGrid keeps it).

Two kernels do all the per-event numeric work of `FlowNetwork` on its active flows, held as
parallel arrays of which the first `n` entries are live:

- `advance_finish`: drain every active flow for `dt` seconds at its rate, pick the finished
  ones, compact the arrays in place (order kept) and hand back the finished flows' ids;
- `solve`: progressive filling (max-min fairness) over the flows' link columns, resumed above
  a restart level when flows only left, then the time to the next completion.

Each has two implementations with the same arithmetic in the same order, so the same results to
the bit: compiled with numba (the `fast` extra; compiled on first use, cached on disk) and plain
numpy (whole-column operations; a round costs a few microseconds of numpy call overhead). The
numba one is used when numba imports, the numpy one otherwise; ``MOESIM_SOLVER=numpy`` forces
numpy (tests run both and compare them). numba is imported lazily, never at start-up.

Why compiled: a DeepSeek-V3 decode all-to-all over 32 GPUs has ~1,000 flows of distinct sizes,
so one iteration costs ~50 k completions, each a re-solve; with numpy each costs ~150 us of call
overhead on ~500 flows, compiled ~10 us.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable

import numpy as np

# Links whose fair share is within this relative distance of the round's minimum saturate in the
# same progressive-filling round (so equal shares computed with different rounding stay equal).
LEVEL_RTOL = 1e-12
# A re-solve after completions keeps flows whose rate is below (1 - this) x the lowest finished
# rate; flows at (or a hair below) that level are solved again.
RESTART_RTOL = 1e-9


# ------------------------------------------------------------------ numpy


def fill_columns(
    cols: np.ndarray, capacity_Bps: np.ndarray, rate_Bps: np.ndarray | None = None,
    kept: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Max-min rates of the flows whose links are the columns ``cols[:, f]`` (numpy).

    Columns are padded with the spare link ``len(capacity_Bps) - 1``, whose capacity must be
    inf (it never binds). `kept` (optional, a mask) keeps those flows at `rate_Bps`: they must
    be the flows frozen below some level in the answer (a resumed solve). Returns (rates in
    bytes/s, rounds). A link saturates when no flow on it has a lower minimum (that is
    `level <= link_min * (1 + LEVEL_RTOL)`), and the capacity a round takes is summed flow by
    flow in path order, as `network.max_min_rates` does, so the same rates to the bit. A link
    nobody uses any more may be zeroed early: it is never read again.
    """
    width, n_flows = cols.shape
    n_links = len(capacity_Bps)
    if kept is None:
        rate = np.zeros(n_flows)
        capacity_left = capacity_Bps.copy()
        free = np.arange(n_flows)
    else:
        rate = rate_Bps.copy()  # the free flows' entries are all overwritten below
        capacity_left = np.maximum(capacity_Bps - np.bincount(
            cols[:, kept].T.ravel(), weights=np.repeat(rate[kept], width), minlength=n_links
        ), 0.0)
        free = np.flatnonzero(~kept)
        cols = cols[:, free]
    rounds = 0
    bound = 1 + LEVEL_RTOL
    minimum, any_of = np.minimum.reduce, np.logical_or.reduce
    while free.size:
        rounds += 1
        level = capacity_left / np.maximum(np.bincount(cols.ravel(), minlength=n_links), 1)
        pair_level = level[cols]
        flow_min = minimum(pair_level, axis=0)
        blocked = np.zeros(n_links, dtype=bool)
        blocked[cols[pair_level > flow_min * bound]] = True
        saturated = ~blocked  # (or unused: its level and capacity are never read again)
        frozen = any_of(saturated[cols], axis=0)
        if frozen.all():
            rate[free] = flow_min
            break
        frozen_rate = flow_min[frozen]
        rate[free[frozen]] = frozen_rate
        capacity_left -= np.bincount(cols[:, frozen].T.ravel(),
                                     weights=np.repeat(frozen_rate, width), minlength=n_links)
        capacity_left[saturated | (capacity_left < 0)] = 0.0
        keep = ~frozen
        cols, free = cols[:, keep], free[keep]
    return rate, rounds


def _advance_finish_numpy(cols, ids, size, remaining, rate, n, dt, finish_rtol, time_eps, done_out):
    if dt > 0:
        remaining[:n] -= rate[:n] * dt
    done = (remaining[:n] <= finish_rtol * size[:n]) | (remaining[:n] <= rate[:n] * time_eps)
    n_done = int(np.count_nonzero(done))
    if not n_done:
        return n, 0, math.inf
    restart = float(rate[:n][done].min())
    done_out[:n_done] = ids[:n][done]
    keep = np.flatnonzero(~done)
    m = keep.size
    cols[:, :m] = cols[:, keep]
    for array in (ids, size, remaining, rate):
        array[:m] = array[keep]
    return m, n_done, restart


def _solve_numpy(cols, capacity_ext, remaining, rate, n, restart_level):
    live = cols[:, :n]
    if restart_level > 0:
        kept = rate[:n] < restart_level * (1 - RESTART_RTOL)
        new, rounds = fill_columns(live, capacity_ext, rate[:n], kept)
        if not np.all(new > 0):
            # rounding left a resumed solve without capacity for some flow: solve afresh
            new, more = fill_columns(live, capacity_ext)
            rounds += more
    else:
        new, rounds = fill_columns(live, capacity_ext)
    rate[:n] = new
    return rounds, float(np.min(remaining[:n] / rate[:n]))


# ------------------------------------------------------------------ choice of implementation


def _step_numpy(cols, ids, size, remaining, rate, n, dt, finish_rtol, time_eps, done_out, capacity_ext,
                min_done, resume):
    n, n_done, restart = _advance_finish_numpy(cols, ids, size, remaining, rate, n, dt, finish_rtol,
                                               time_eps, done_out)
    if not n:
        return n, n_done, -1, math.inf
    if n_done and n_done >= min_done:
        rounds, wake = _solve_numpy(cols, capacity_ext, remaining, rate, n, restart if resume else 0.0)
        return n, n_done, rounds, wake
    return n, n_done, -1, float(np.min(remaining[:n] / rate[:n]))


class Kernels:
    """One implementation of the kernels (`name` is "numba" or "numpy").

    `step` is `advance_finish` then `solve` in one call (the common update: completions, no
    arrival); it returns (flows left, flows finished, solver rounds or -1 when it did not solve,
    time to the next completion).
    """

    def __init__(self, name: str, advance_finish: Callable[..., Any], solve: Callable[..., Any],
                 step: Callable[..., Any], compile_s: float = 0.0):
        self.name = name
        self.advance_finish = advance_finish
        self.solve = solve
        self.step = step
        self.compile_s = compile_s


_CHOSEN: dict[str, Kernels] = {}


def numpy_kernels() -> Kernels:
    return Kernels("numpy", _advance_finish_numpy, _solve_numpy, _step_numpy)


def numba_kernels() -> Kernels | None:
    """The compiled kernels, or None when numba is not installed. Compiled once per process
    (loaded from numba's on-disk cache after the first run); `compile_s` says how long the
    import, compile or cache load took."""
    if "numba" in _CHOSEN:
        return _CHOSEN["numba"]
    start = time.perf_counter()
    try:
        from simulator.engine import maxmin_numba
    except ImportError:
        return None
    kernels = Kernels("numba", maxmin_numba.advance_finish, maxmin_numba.solve, maxmin_numba.step)
    _warm(kernels)
    kernels.compile_s = time.perf_counter() - start
    _CHOSEN["numba"] = kernels
    return kernels


def _warm(kernels: Kernels) -> None:
    """Compile both kernels on a two-flow problem (so the first real event pays nothing)."""
    cols = np.array([[0, 1]], dtype=np.int64)
    capacity = np.array([1.0, 2.0, np.inf])
    ids = np.arange(2, dtype=np.int64)
    size, remaining, rate = np.ones(2), np.ones(2), np.zeros(2)
    kernels.solve(cols, capacity, remaining, rate, 2, 0.0)
    kernels.advance_finish(cols, ids, size, remaining, rate, 2, 0.5, 1e-10, 0.0,
                           np.zeros(2, dtype=np.int64))
    kernels.step(cols, ids, size, remaining, rate, 2, 0.5, 1e-10, 0.0, np.zeros(2, dtype=np.int64),
                 capacity, 1.0, True)


# A network starts on the numpy kernels and moves to numba after this many updates, or once its
# updates have seen this many active flows in all (both give the same bits, so it may switch at
# any event): loading numba costs ~0.8 s of CPU per process (import and cache load), which only
# pays off over a few thousand small solves or a few dozen over thousands of flows.
SWITCH_UPDATES = 2000
SWITCH_FLOWS = 100_000


def kernels(start: bool = False) -> Kernels:
    """The kernels to use: numba when it imports (unless ``MOESIM_SOLVER=numpy``), else numpy.

    `start`: the kernels a new network starts with: numpy unless numba is already loaded in this
    process (or ``MOESIM_SOLVER=numba``); `FlowNetwork` asks again after `SWITCH_UPDATES`.
    """
    wanted = os.environ.get("MOESIM_SOLVER", "auto")
    if wanted not in ("auto", "numba", "numpy"):
        raise ValueError(f"MOESIM_SOLVER must be auto, numba or numpy, got {wanted!r}")
    if start and wanted == "auto" and "numba" not in _CHOSEN:
        return _CHOSEN.setdefault("numpy", numpy_kernels())
    if wanted != "numpy":
        compiled = numba_kernels()
        if compiled is not None:
            return compiled
        if wanted == "numba":
            raise ImportError("MOESIM_SOLVER=numba but numba is not installed (pip install moesim[fast])")
    return _CHOSEN.setdefault("numpy", numpy_kernels())

"""The compiled (numba) kernels of `simulator.engine.maxmin`: the same arithmetic as its numpy ones.

Imported only by `maxmin.numba_kernels()`, never at start-up (numba takes ~0.5 s to import).
Every loop below repeats a numpy expression of `maxmin` operation for operation (sums start at
0 and add in flow order, then are subtracted, as `np.bincount` does), so both give the same
bits; tests/simulator/engine/test_maxmin.py checks it.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from simulator.engine.maxmin import LEVEL_RTOL, RESTART_RTOL

jit = numba.njit(cache=True, nogil=True)


@jit
def advance_finish(cols, ids, size, remaining, rate, n, dt, finish_rtol, time_eps, done_out):
    width = cols.shape[0]
    n_done = 0
    m = 0
    restart = math.inf
    for f in range(n):
        if dt > 0:
            remaining[f] -= rate[f] * dt
        if remaining[f] <= finish_rtol * size[f] or remaining[f] <= rate[f] * time_eps:
            done_out[n_done] = ids[f]
            n_done += 1
            if rate[f] < restart:
                restart = rate[f]
        else:
            if m != f:
                for w in range(width):
                    cols[w, m] = cols[w, f]
                ids[m] = ids[f]
                size[m] = size[f]
                remaining[m] = remaining[f]
                rate[m] = rate[f]
            m += 1
    return m, n_done, restart


@jit
def fill(cols, capacity_ext, rate, n, kept, use_kept):
    """`fill_columns` on the first `n` columns, writing `rate` in place; returns rounds."""
    width = cols.shape[0]
    n_links = capacity_ext.shape[0]
    bound = 1 + LEVEL_RTOL
    capacity_left = np.empty(n_links)
    taken = np.zeros(n_links)
    free = np.empty(n, dtype=np.int64)
    m = 0
    if use_kept:
        for f in range(n):
            if kept[f]:
                for w in range(width):
                    taken[cols[w, f]] += rate[f]
            else:
                free[m] = f
                m += 1
        for k in range(n_links):
            capacity_left[k] = max(capacity_ext[k] - taken[k], 0.0)
    else:
        for f in range(n):
            free[f] = f
        m = n
        for k in range(n_links):
            capacity_left[k] = capacity_ext[k]
    count = np.zeros(n_links, dtype=np.int64)
    level = np.empty(n_links)
    blocked = np.zeros(n_links, dtype=np.bool_)
    flow_min = np.empty(n)
    rounds = 0
    while m:
        rounds += 1
        count[:] = 0
        for j in range(m):
            f = free[j]
            for w in range(width):
                count[cols[w, f]] += 1
        for k in range(n_links):
            level[k] = capacity_left[k] / max(count[k], 1)
        blocked[:] = False
        for j in range(m):
            f = free[j]
            low = level[cols[0, f]]
            for w in range(1, width):
                v = level[cols[w, f]]
                if v < low:
                    low = v
            flow_min[j] = low
            limit = low * bound
            for w in range(width):
                if level[cols[w, f]] > limit:
                    blocked[cols[w, f]] = True
        taken[:] = 0.0
        kept_m = 0
        all_frozen = True
        for j in range(m):
            f = free[j]
            frozen = False
            for w in range(width):
                if not blocked[cols[w, f]]:
                    frozen = True
                    break
            if frozen:
                rate[f] = flow_min[j]
                for w in range(width):
                    taken[cols[w, f]] += flow_min[j]
            else:
                all_frozen = False
                free[kept_m] = f
                kept_m += 1
        if all_frozen:
            break
        for k in range(n_links):
            capacity_left[k] -= taken[k]
            if not blocked[k] or capacity_left[k] < 0:
                capacity_left[k] = 0.0
        m = kept_m
    return rounds


@jit
def solve(cols, capacity_ext, remaining, rate, n, restart_level):
    kept = np.zeros(n, dtype=np.bool_)
    if restart_level > 0:
        limit = restart_level * (1 - RESTART_RTOL)
        for f in range(n):
            kept[f] = rate[f] < limit
        rounds = fill(cols, capacity_ext, rate, n, kept, True)
        positive = True
        for f in range(n):
            if not rate[f] > 0:
                positive = False
        if not positive:
            # rounding left a resumed solve without capacity for some flow: solve afresh
            rounds += fill(cols, capacity_ext, rate, n, kept, False)
    else:
        rounds = fill(cols, capacity_ext, rate, n, kept, False)
    wake = math.inf
    for f in range(n):
        t = remaining[f] / rate[f]
        if t < wake:
            wake = t
    return rounds, wake


@jit
def step(cols, ids, size, remaining, rate, n, dt, finish_rtol, time_eps, done_out, capacity_ext,
         min_done, resume):
    """`advance_finish`, then (when at least `min_done` flows finished and some remain) `solve`
    from the finished flows' level (from 0 unless `resume`), else only the next wake-up."""
    n, n_done, restart = advance_finish(cols, ids, size, remaining, rate, n, dt, finish_rtol, time_eps,
                                        done_out)
    rounds = -1  # no solve
    wake = math.inf
    if n:
        if n_done and n_done >= min_done:
            rounds, wake = solve(cols, capacity_ext, remaining, rate, n, restart if resume else 0.0)
        else:
            for f in range(n):
                t = remaining[f] / rate[f]
                if t < wake:
                    wake = t
    return n, n_done, rounds, wake

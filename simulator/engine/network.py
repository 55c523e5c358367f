"""Fluid, flow-level network with max-min fair sharing of directed links (DESIGN.md section 3).

A transfer of B bytes from `src` to `dst` waits `alpha_s + Σ latency` of its path (software
overhead, then propagation), then becomes a fluid flow that drains at a rate set by max-min
fairness over every link it crosses. Whenever the set of active flows changes (arrivals,
completions), the rates of all active flows are recomputed by progressive filling and a single
wake-up is scheduled at the earliest completion. Consequences:

- one flow alone takes exactly ``alpha_s + Σ latency + B / min(bandwidth)``;
- contention (k flows on a link get C/k each, a flow bottlenecked elsewhere leaves its unused
  share to the others) emerges without any per-topology rule.

Why fluid and max-min: it is the model SimGrid validated against packet-level simulation, it
costs one solve per change instead of one event per packet, and the solve vectorises over the
n(n-1) flows of an all-to-all (numpy over (flow, link) incidence pairs, one round per distinct
bottleneck level).

Edge cases (chosen, documented): a transfer with ``src == dst`` is a local copy: it completes at
once (no alpha, no latency, no link). A transfer of 0 bytes between distinct nodes is still a
message: it completes after ``alpha_s + Σ latency`` (the B -> 0 limit of the formula above).

The network knows nothing about MoE and never writes files: it keeps flat, immutable records
(`FlowRecord`, one per flow), per-link delivered bytes (`bytes_on_link`) and counters (`solves`)
that exporters read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import simpy

from simulator.engine import maxmin
from simulator.engine.maxmin import LEVEL_RTOL, RESTART_RTOL  # noqa: F401 (re-exported)
from topologies.paths import PathTable

# A flow whose remaining bytes fall below this fraction of its size is finished. It only absorbs
# floating-point residue (the remaining bytes are updated by subtraction at every change), and it
# makes equal flows finish at the same event.
FINISH_RTOL = 1e-10
# "exact": re-solve at every change. "fast": after completions alone, re-solve only once the flows
# finished since the last solve reach FAST_RESOLVE_FRACTION of those active after it; until then
# the others keep their rates (a feasible, slightly pessimistic allocation: the capacity the
# finished flows freed idles). Arrivals always re-solve. Error table: docs/benchmarks.md.
MODELS = ("exact", "fast")
FAST_RESOLVE_FRACTION = 1 / 32
# LEVEL_RTOL (equal shares saturate together) and RESTART_RTOL (which flows a resumed solve keeps)
# live with the solver in simulator.engine.maxmin.


@dataclass(frozen=True)
class FlowRecord:
    """One transfer as it happened, in simulated seconds and bytes.

    `start_s` is the request time, `first_byte_s` the time the flow started to drain (after alpha
    and the path latency), `end_s` the time the last byte arrived (nan while in flight). `links`
    are `PathTable` link ids along the path (empty for a local copy).
    """

    tag: Any
    src: str
    dst: str
    bytes: float
    start_s: float
    first_byte_s: float
    end_s: float
    links: tuple[int, ...]


@dataclass(frozen=True)
class GroupRecord:
    """A batch of transfers requested together (`FlowNetwork.transfer_many`), done when all are."""

    tag: Any
    flows: int
    bytes: float
    start_s: float
    end_s: float


def max_min_rates(
    pair_flow: np.ndarray,
    pair_link: np.ndarray,
    capacity_Bps: np.ndarray,
    n_flows: int,
    kept_rate_Bps: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Max-min fair rates of `n_flows` flows on links of `capacity_Bps` (progressive filling).

    Flow `pair_flow[k]` crosses link `pair_link[k]`; every flow must cross at least one link.
    `kept_rate_Bps` (optional, nan = to solve) fixes some flows' rates: those must be the flows
    frozen below some level in the answer (used to resume a solve, see `FlowNetwork._solve`).
    Returns (rates in bytes/s, rounds).

    Each link's level is (capacity left by frozen flows) / (unfrozen flows on it). A link whose
    level is the lowest on every path through it (a local minimum) is a bottleneck at exactly
    that level: no flow of it can be frozen lower elsewhere (it is the minimum), and freezing
    flows at lower levels elsewhere only raises other links' levels. So each round saturates
    all local minima at once and freezes their flows. The result equals raising all flows
    together one level at a time, in fewer rounds (a uniform all-to-all takes two or three);
    each round is O(unfrozen (flow, link) pairs), numpy only.
    """
    n_links = len(capacity_Bps)
    if kept_rate_Bps is None:
        rate = np.zeros(n_flows)
        capacity_left = np.array(capacity_Bps, dtype=float)
        free, pos, link = None, pair_flow, pair_link
    else:
        kept = ~np.isnan(kept_rate_Bps)
        rate = np.where(kept, kept_rate_Bps, 0.0)
        kept_pair = kept[pair_flow]
        capacity_left = np.maximum(capacity_Bps - np.bincount(
            pair_link[kept_pair], weights=rate[pair_flow[kept_pair]], minlength=n_links
        ), 0.0)
        # renumber the flows still to solve 0..m-1 so every round works on m, not n_flows
        free = np.flatnonzero(~kept)
        index = np.full(n_flows, -1, dtype=np.int64)
        index[free] = np.arange(free.size)
        pos, link = index[pair_flow[~kept_pair]], pair_link[~kept_pair]
    m = n_flows if free is None else free.size
    solved = np.zeros(m)
    rounds = 0
    while pos.size:
        rounds += 1
        count = np.bincount(link, minlength=n_links)
        level = capacity_left / np.maximum(count, 1)
        level[count == 0] = np.inf
        flow_min = np.full(m, np.inf)
        np.minimum.at(flow_min, pos, level[link])
        link_min = np.full(n_links, np.inf)
        np.minimum.at(link_min, link, flow_min[pos])
        saturated = (count > 0) & (level <= link_min * (1 + LEVEL_RTOL))
        frozen = np.zeros(m, dtype=bool)
        frozen[pos[saturated[link]]] = True
        solved[frozen] = flow_min[frozen]
        leaving = frozen[pos]
        capacity_left -= np.bincount(link[leaving], weights=solved[pos[leaving]], minlength=n_links)
        capacity_left[saturated | (capacity_left < 0)] = 0.0
        pos, link = pos[~leaving], link[~leaving]
    if free is None:
        return solved, rounds
    rate[free] = solved
    return rate, rounds


# The column solver (numpy); kept under its old name for callers and tests.
_fill_columns = maxmin.fill_columns


class _Columns:
    """Growable numpy columns (amortised O(1) append of many rows at once)."""

    def __init__(self, **dtypes: Any):
        self.n = 0
        self._data = {name: np.zeros(16, dtype=dtype) for name, dtype in dtypes.items()}
        self.__dict__.update(self._data)  # each column is also a plain attribute (fast to read)

    def extend(self, **values: Any) -> np.ndarray:
        """Append rows (scalars broadcast); returns their indices."""
        count = 1
        for v in values.values():
            if not isinstance(v, (int, float)) and np.ndim(v):
                count = len(v)
                break
        start, stop = self.n, self.n + count
        data = self._data
        capacity = len(next(iter(data.values())))
        if stop > capacity:
            new_capacity = max(stop, 2 * capacity)
            for name, column in data.items():
                grown = np.zeros(new_capacity, dtype=column.dtype)
                grown[:start] = column[:start]
                data[name] = grown
            self.__dict__.update(data)
        for name, column in data.items():
            column[start:stop] = values[name]
        self.n = stop
        return np.arange(start, stop, dtype=np.int64)


class FlowNetwork:
    """Max-min fair fluid flows on the directed links of one topology.

    `paths` gives each (src, dst) its link ids, capacities (bytes/s) and latencies (s);
    `alpha_s` is the per-message software overhead added before the first byte.
    `on_solve(time_s, link_rate_Bps)` (optional, for tests and debugging) is called after every
    rate solve with the total rate on each link, indexed by link id.
    `finish_rtol`: a flow within this fraction of its bytes of done finishes at the current
    event. The default only absorbs rounding. Raising it (say 1e-3) batches completions that
    are close in time, trading that much accuracy per flow for far fewer solves when thousands
    of flows of different sizes share links (a random 256-GPU all-to-all).
    """

    # False: every solve starts from scratch instead of resuming above the finished flows'
    # level (a reference for tests; the same rates to ~1e-15, more rounds)
    resume_solves = True

    def __init__(
        self,
        env: simpy.Environment,
        paths: PathTable,
        alpha_s: float = 0.0,
        on_solve: Callable[[float, np.ndarray], None] | None = None,
        finish_rtol: float = FINISH_RTOL,
        model: str = "exact",
    ):
        if not alpha_s >= 0:
            raise ValueError(f"alpha_s must be >= 0 seconds, got {alpha_s}")
        if not 0 <= finish_rtol < 1:
            raise ValueError(f"finish_rtol must be in [0, 1), got {finish_rtol}")
        if model not in MODELS:
            raise ValueError(f"network model must be one of {', '.join(MODELS)}, got {model!r}")
        self.model = model
        # fast model: flows finished since the last solve, and flows active right after it
        self._done_since_solve = 0
        self._active_at_solve = 0
        self._columns_version = 0  # bumped when _prune changes the links solved on
        self.env = env
        self.paths = paths
        self.alpha_s = float(alpha_s)
        self.finish_rtol = float(finish_rtol)
        self.on_solve = on_solve
        self._capacity_Bps = np.asarray(paths.capacity_Bps, dtype=float)
        self._n_links = len(self._capacity_Bps)
        # observability: delivered bytes per link, solves, totals
        self._bytes_on_link = np.zeros(self._n_links)
        self._done_batches: list[np.ndarray] = []  # finished flows not yet in _bytes_on_link
        self.solves = 0
        self.solve_rounds = 0
        self.bytes_requested = 0.0
        self.bytes_delivered = 0.0
        # every flow ever requested, as columns (records are built from these on demand)
        self._flows = _Columns(
            src=np.int64, dst=np.int64, size=float, start=float, first_byte=float, end=float,
            group=np.int64, link_offset=np.int64, link_count=np.int64,
        )
        self._tags: list[Any] = []
        self._link_store = _Columns(link=np.int64)
        self._node_names: list[str] = []
        self._node_index: dict[str, int] = {}
        self._route_cache: dict[tuple[str, str], tuple[np.ndarray, float]] = {}
        self._shapes: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple] = {}
        # links that can never be a flow's only binding constraint (see _prune); routes seen so
        # far as (link, next link) codes and the links routes start / end on
        self._new_routes: list[np.ndarray] = []
        self._adjacent = np.zeros(0, dtype=np.int64)
        self._starts = np.zeros(self._n_links, dtype=bool)
        self._ends = np.zeros(self._n_links, dtype=bool)
        self._redundant = np.zeros(self._n_links, dtype=bool)
        # groups: one SimPy event per transfer()/transfer_many() call
        self._groups = _Columns(left=np.int64, first=np.int64, count=np.int64, single=bool)
        self._group_events: list[simpy.Event | None] = []  # None once fired (or never made)
        self._group_owner: list[Callable[[np.ndarray], None] | None] = []  # transfer_each's on_done
        self._group_meta: list[tuple[Any, float, float]] = []  # tag, start_s, bytes
        # active (draining) flows: the first _act_n entries of buffers that grow by doubling,
        # compacted in place by the solver kernels (simulator.engine.maxmin)
        self._kernels = maxmin.kernels(start=True)
        self._updates = 0  # updates and active flows seen by them, until the switch to numba
        self._flows_seen = 0
        self._act_n = 0
        self._act_id = np.zeros(16, dtype=np.int64)
        self._act_size = np.zeros(16)
        self._act_remaining = np.zeros(16)
        self._act_rate = np.zeros(16)
        self._done_buf = np.zeros(16, dtype=np.int64)
        # each active flow's enforced links as a column, padded with the spare link n_links of
        # infinite capacity (so the solver works on whole columns, no per-pair bookkeeping)
        self._capacity_ext = np.append(self._capacity_Bps, np.inf)
        self._act_cols = np.full((1, 16), self._n_links, dtype=np.int64)
        self._last_update_s = env.now
        # flows waiting out alpha + latency, keyed by the exact activation time
        self._arrivals: dict[float, list[np.ndarray]] = {}
        self._incoming: list[np.ndarray] = []
        self._version = 0

    # ------------------------------------------------------------------ requests

    def transfer(self, src: str, dst: str, nbytes: float, tag: Any = None) -> simpy.Event:
        """Send `nbytes` from `src` to `dst`; the event's value is the flow's `FlowRecord`."""
        return self._request([src], [dst], np.array([nbytes], dtype=float), tag, single=True)

    def transfer_many(
        self, srcs: Sequence[str], dsts: Sequence[str], nbytes: Any, tag: Any = None
    ) -> simpy.Event:
        """Start many flows at once (one batch, one solve); the event fires when all have arrived.

        `nbytes` is a scalar or one size per flow. The event's value is a `GroupRecord`.
        """
        if len(srcs) != len(dsts):
            raise ValueError(f"srcs and dsts differ in length: {len(srcs)} != {len(dsts)}")
        sizes = np.broadcast_to(np.asarray(nbytes, dtype=float), (len(srcs),)).copy()
        return self._request(list(srcs), list(dsts), sizes, tag, single=False)

    def transfer_each(self, srcs: Sequence[str], dsts: Sequence[str], nbytes: Any, tag: Any,
                      on_done: Callable[[np.ndarray], None]) -> np.ndarray:
        """Start flows with no SimPy event: `on_done(ids)` is called at each completion instant with
        the ids (returned here, in request order) of this call's flows that finished then.

        For algorithms that chain flows (a ring step starts when the previous chunk is in):
        `on_done` runs inside the network's update, so the flows it starts are requested at
        the completion instant without a SimPy event or process per step. It must not wait.
        """
        if len(srcs) != len(dsts):
            raise ValueError(f"srcs and dsts differ in length: {len(srcs)} != {len(dsts)}")
        sizes = np.broadcast_to(np.asarray(nbytes, dtype=float), (len(srcs),)).copy()
        start = self._flows.n
        self._request(list(srcs), list(dsts), sizes, tag, single=False, on_done=on_done)
        return np.arange(start, self._flows.n, dtype=np.int64)

    def _request(self, srcs: list[str], dsts: list[str], sizes: np.ndarray, tag: Any,
                 single: bool, on_done: Callable[[np.ndarray], None] | None = None
                 ) -> simpy.Event | None:
        if sizes.size and not (np.all(np.isfinite(sizes)) and sizes.min() >= 0):
            raise ValueError(f"transfer sizes must be finite and >= 0 bytes, got {sizes.min()}")
        now = self.env.now
        count = len(srcs)
        # routes of this (srcs, dsts) list, cached: collectives repeat the same lists every layer
        if count <= 64:  # (large requests cost O(flows) anyway; keep the cache small)
            key = (tuple(srcs), tuple(dsts))
            shape = self._shapes.get(key)
            if shape is None:
                shape = self._shapes[key] = self._shape(srcs, dsts)
        else:
            shape = self._shape(srcs, dsts)
        src_ids, dst_ids, links, lengths, offsets0, local, arrivals = shape
        offsets = offsets0 + self._link_store.n
        if links.size:
            self._link_store.extend(link=links)
        event = self.env.event() if on_done is None else None
        group = self._groups.extend(left=count, first=self._flows.n, count=count, single=single)[0]
        self._group_events.append(event)
        self._group_owner.append(on_done)
        self._group_meta.append((tag, now, float(sizes.sum())))
        ids = self._flows.extend(
            src=src_ids, dst=dst_ids, size=sizes,
            start=now, first_byte=np.nan, end=np.nan, group=group, link_offset=offsets,
            link_count=lengths,
        )
        self._tags.extend([tag] * count)
        self.bytes_requested += float(sizes.sum())

        if self._new_routes:
            self._prune()
        if local is not None:  # src == dst: a local copy, done now
            self._flows.first_byte[ids[local]] = now
            self._complete(ids[local], now)
        if count == 0:
            self._succeed_group(group, now)
        for delay, which in arrivals:
            self._schedule_arrival(delay, ids if which is None else ids[which])
        return event

    def _shape(self, srcs: list[str], dsts: list[str]) -> tuple:
        """What a request of these (src, dst) pairs needs besides sizes: node ids, concatenated
        link ids, path lengths and link offsets (from 0), the local-copy mask (None: none), and
        its arrivals as (alpha + path latency, which flows; None = all) per distinct delay."""
        routes = [self._route(src, dst) for src, dst in zip(srcs, dsts)]
        lengths = np.array([len(r[0]) for r in routes], dtype=np.int64)
        links = np.concatenate([r[0] for r in routes]) if routes else np.zeros(0, dtype=np.int64)
        latency = np.array([r[1] for r in routes], dtype=float)
        local = lengths == 0
        remote = np.flatnonzero(~local)
        delays = self.alpha_s + latency[remote]
        if delays.size and delays.min() == delays.max() and remote.size == len(srcs):
            arrivals = [(float(delays[0]), None)]
        else:
            arrivals = [(float(delay), remote[delays == delay]) for delay in np.unique(delays)]
        return (np.array([self._node(a) for a in srcs], dtype=np.int64),
                np.array([self._node(b) for b in dsts], dtype=np.int64), links.astype(np.int64), lengths,
                np.cumsum(lengths) - lengths, local if local.any() else None, arrivals)

    def _node(self, name: str) -> int:
        index = self._node_index.get(name)
        if index is None:
            index = self._node_index[name] = len(self._node_names)
            self._node_names.append(name)
        return index

    def _route(self, src: str, dst: str) -> tuple[np.ndarray, float]:
        key = (src, dst)
        cached = self._route_cache.get(key)
        if cached is None:
            route = self.paths.path(src, dst)
            cached = self._route_cache[key] = (route, float(self.paths.latency_s[route].sum()))
            if len(route):
                self._new_routes.append(route)
        return cached

    def _schedule_arrival(self, delay_s: float, ids: np.ndarray) -> None:
        key = self.env.now + delay_s
        waiting = self._arrivals.get(key)
        if waiting is None:
            self._arrivals[key] = [ids]
            timeout = self.env.timeout(delay_s, value=key)
            timeout.callbacks.append(self._on_arrival)
        else:
            waiting.append(ids)

    def _on_arrival(self, event: simpy.Event) -> None:
        self._incoming.extend(self._arrivals.pop(event.value))
        self._update()

    def _on_wake(self, event: simpy.Event) -> None:
        if event.value == self._version:  # stale wake-ups (rates changed since) are ignored
            self._update()

    # ------------------------------------------------------------------ the fluid model

    def _update(self) -> None:
        """Bring the fluid state to now: drain, finish, admit arrivals, re-solve, schedule the next
        wake-up. Runs right in the arrival's or wake-up's callback: a second change at the same
        instant (an arrival and a completion) runs it again with dt = 0, which ends in the same
        rates as one combined update (the last solve of the instant is a full one either way)."""
        now = self.env.now
        dt = now - self._last_update_s
        self._last_update_s = now
        if self._updates >= 0:
            self._updates += 1
            self._flows_seen += self._act_n
            if self._updates >= maxmin.SWITCH_UPDATES or self._flows_seen >= maxmin.SWITCH_FLOWS:
                self._kernels = maxmin.kernels()  # a long run: compiled kernels pay off now
                self._updates = -1  # switched
        kernels = self._kernels
        n = self._act_n
        if n and not self._incoming:  # completions only (the common case): one kernel call
            time_eps = 4 * math.ulp(max(now, 1e-300))
            min_done = 0.0 if self.model == "exact" else (
                FAST_RESOLVE_FRACTION * self._active_at_solve - self._done_since_solve)
            n, n_done, rounds, wake_s = kernels.step(
                self._act_cols, self._act_id, self._act_size, self._act_remaining, self._act_rate,
                n, float(dt), self.finish_rtol, time_eps, self._done_buf, self._capacity_ext,
                float(min_done), self.resume_solves)
            self._act_n = n
            if n_done:
                ids = self._done_buf[:n_done].copy()
                self._done_batches.append(ids)
                self._done_since_solve += n_done
            if rounds >= 0:
                self._solved(rounds)
            if n_done:
                columns = self._columns_version
                self._complete(ids, now)  # (may start flows: ring steps)
                if len(self._done_batches) >= 256:
                    self._flush_bytes_on_link()
                if self._columns_version != columns and self._act_n:
                    wake_s = self._solve(0.0)  # a new route changed the links solved on
            if self._act_n:
                self._version += 1
                self.env.timeout(wake_s, value=self._version).callbacks.append(self._on_wake)
            return
        # restart level of the next solve: 0 = full solve, inf = nothing changed (no solve)
        restart_level_Bps = math.inf
        if n:
            # finished: residue below FINISH_RTOL of the size, or below what the clock can resolve
            time_eps = 4 * math.ulp(max(now, 1e-300))
            n, n_done, restart_level_Bps = kernels.advance_finish(
                self._act_cols, self._act_id, self._act_size, self._act_remaining, self._act_rate,
                n, float(dt), self.finish_rtol, time_eps, self._done_buf)
            self._act_n = n
            if n_done:
                self._finished(self._done_buf[:n_done].copy(), now)
                if self.model == "fast":
                    self._done_since_solve += n_done
                    if self._done_since_solve < FAST_RESOLVE_FRACTION * self._active_at_solve:
                        restart_level_Bps = math.inf  # keep the others' rates (see MODELS)
        if self._incoming:
            self._activate(np.concatenate(self._incoming), now)
            self._incoming = []
            restart_level_Bps = 0.0
        n = self._act_n
        if n:
            if restart_level_Bps < math.inf:
                wake_s = self._solve(restart_level_Bps)
            else:
                wake_s = float(np.min(self._act_remaining[:n] / self._act_rate[:n]))
            self._version += 1
            self.env.timeout(wake_s, value=self._version).callbacks.append(self._on_wake)

    def _activate(self, ids: np.ndarray, now: float) -> None:
        flows = self._flows
        flows.first_byte[ids] = now
        sizes = flows.size[ids]
        empty = sizes == 0
        if empty.any():
            self._complete(ids[empty], now)
            ids, sizes = ids[~empty], sizes[~empty]
        if not ids.size:
            return
        cols = self._columns_of(ids)
        n, k = self._act_n, ids.size
        self._reserve(n + k, cols.shape[0])
        self._act_cols[:cols.shape[0], n:n + k] = cols
        self._act_cols[cols.shape[0]:, n:n + k] = self._n_links
        self._act_id[n:n + k] = ids
        self._act_size[n:n + k] = sizes
        self._act_remaining[n:n + k] = sizes
        self._act_rate[n:n + k] = 0.0
        self._act_n = n + k

    def _reserve(self, count: int, width: int) -> None:
        """Grow the active buffers to hold `count` flows of `width` solver links each."""
        old_width, capacity = self._act_cols.shape
        if count <= capacity and width <= old_width:
            return
        n = self._act_n
        new_capacity = max(capacity, 2 * count) if count > capacity else capacity
        cols = np.full((max(width, old_width), new_capacity), self._n_links, dtype=np.int64)
        cols[:old_width, :n] = self._act_cols[:, :n]
        self._act_cols = cols
        if new_capacity > capacity:
            for name in ("_act_id", "_act_size", "_act_remaining", "_act_rate", "_done_buf"):
                old = getattr(self, name)
                grown = np.zeros(new_capacity, dtype=old.dtype)
                grown[:n] = old[:n]
                setattr(self, name, grown)

    def _pad(self, cols: np.ndarray, width: int) -> np.ndarray:
        """`cols` with spare-link rows added up to `width` (paths of different lengths)."""
        if cols.shape[0] == width:
            return cols
        spare = np.full((width - cols.shape[0], cols.shape[1]), self._n_links, dtype=np.int64)
        return np.concatenate((cols, spare))

    def _columns_of(self, ids: np.ndarray) -> np.ndarray:
        """The solver columns of flows `ids`: their non-redundant links in path order, padded."""
        which, links = self._links_of(ids)
        keep = ~self._redundant[links]
        which, links = which[keep], links[keep]
        counts = np.bincount(which, minlength=ids.size)
        width = max(int(counts.max()) if ids.size else 1, 1)
        first = np.cumsum(counts) - counts
        within = np.arange(which.size, dtype=np.int64) - np.repeat(first, counts)
        cols = np.full((width, ids.size), self._n_links, dtype=np.int64)
        cols[within, which] = links
        return cols

    def _links_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All (index into `ids`, link id) pairs of the flows `ids`, gathered without a loop."""
        flows = self._flows
        counts = flows.link_count[ids]
        total = int(counts.sum())
        which = np.repeat(np.arange(ids.size), counts)
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        return which, self._link_store.link[flows.link_offset[ids][which] + within]

    def _prune(self) -> None:
        """Mark links that can never be a flow's binding constraint; the solver skips them.

        Link a carries only flows that arrive over its in-links (the links just before it on
        every route through it), so its load never exceeds the sum of their capacities; if that
        sum is <= a's capacity, a never binds. Likewise with out-links. (A route starting on a
        has no in-link there, so a starts-on link uses out-links only, an ends-on link in-links
        only.) To never let two links excuse each other, a bound by a single link of equal
        capacity only counts when that link has the lower id: the chain of excuses then strictly
        decreases in (capacity, id) and ends on an enforced link. On a multi-node fabric this
        leaves the NIC ports and the NVSwitch ports of a flow, not the PCIe hops to the NIC or
        a non-blocking leaf/spine.
        """
        routes, self._new_routes = self._new_routes, []
        n_links = self._n_links
        for route in routes:
            self._starts[route[0]] = True
            self._ends[route[-1]] = True
        codes = [route[:-1] * n_links + route[1:] for route in routes if len(route) > 1]
        if codes:
            self._adjacent = np.union1d(self._adjacent, np.concatenate(codes))
        before, after = self._adjacent // n_links, self._adjacent % n_links
        capacity = self._capacity_Bps
        redundant = np.zeros(n_links, dtype=bool)
        for near, far, open_end in ((before, after, self._starts), (after, before, self._ends)):
            # bound on link `far` by the links `near` next to it on every route
            total = np.bincount(far, weights=capacity[near], minlength=n_links)
            count = np.bincount(far, minlength=n_links)
            single = np.zeros(n_links, dtype=np.int64)
            single[far] = near  # the only neighbour where count == 1
            excuse = (count >= 2) | (capacity[single] < capacity) | (
                (capacity[single] == capacity) & (single < np.arange(n_links)))
            redundant |= (count > 0) & ~open_end & excuse & (total <= capacity * (1 + 1e-12))
        if not np.array_equal(redundant, self._redundant):
            self._redundant = redundant
            self._rebuild_pairs()

    def _rebuild_pairs(self) -> None:
        """Recompute the active flows' solver columns after the set of skipped links changed."""
        self._columns_version += 1
        n = self._act_n
        cols = self._columns_of(self._act_id[:n])
        self._act_cols = np.full((cols.shape[0], self._act_id.size), self._n_links, dtype=np.int64)
        self._act_cols[:, :n] = cols

    def _finished(self, ids: np.ndarray, now: float) -> None:
        """Flows `ids` (already out of the active buffers) delivered their last byte at `now`."""
        self._done_batches.append(ids)
        if len(self._done_batches) >= 256:
            self._flush_bytes_on_link()
        self._complete(ids, now)

    @property
    def bytes_on_link(self) -> np.ndarray:
        """Bytes delivered over each link (by flows finished so far), indexed by link id."""
        self._flush_bytes_on_link()
        return self._bytes_on_link

    def _flush_bytes_on_link(self) -> None:
        """Add the finished batches' bytes per link, batch by batch as if added at each event.

        Deferred so one call handles many events: a (batch, link) bincount sums each batch in
        flow order from 0, and cumsum over batches adds them to the total in event order, the
        same floating-point operations as ``bytes_on_link += bincount(batch)`` per event.
        """
        batches, self._done_batches = self._done_batches, []
        if not batches:
            return
        ids = np.concatenate(batches)
        which, links = self._links_of(ids)
        n_links = self._n_links
        batch = np.repeat(np.arange(len(batches)), [b.size for b in batches])[which]
        sums = np.bincount(batch * n_links + links, weights=self._flows.size[ids][which],
                           minlength=len(batches) * n_links).reshape(len(batches), n_links)
        sums[0] += self._bytes_on_link
        self._bytes_on_link[:] = np.cumsum(sums, axis=0)[-1]  # in place: views stay current

    def _solve(self, restart_level_Bps: float = 0.0) -> float:
        """Recompute the active flows' rates; after completions only, from `restart_level_Bps`.
        Returns the time to the next completion (s).

        After flows leave (and none arrive), the flows whose rate was below the lowest rate of
        the leavers are exactly those that progressive filling freezes before that level in the
        new problem too (removing flows only raises link levels, and every link of a leaver had
        a level >= the leaver's rate), so they keep their rates and filling resumes above it:
        only the flows whose bottleneck may have changed are solved again.
        """
        n = self._act_n
        if not self.resume_solves:
            restart_level_Bps = 0.0
        rounds, wake_s = self._kernels.solve(self._act_cols, self._capacity_ext, self._act_remaining,
                                             self._act_rate, n, float(restart_level_Bps))
        self._solved(rounds)
        return wake_s

    def _solved(self, rounds: int) -> None:
        """Count a solve and report it (`on_solve`)."""
        n = self._act_n
        self._done_since_solve, self._active_at_solve = 0, n
        self.solves += 1
        self.solve_rounds += int(rounds)
        if self.on_solve is not None:
            which, links = self._links_of(self._act_id[:n])
            link_rate = np.bincount(links, weights=self._act_rate[:n][which], minlength=self._n_links)
            self.on_solve(self.env.now, link_rate)

    def _complete(self, ids: np.ndarray, now: float) -> None:
        flows = self._flows
        left = self._groups.left
        if ids.size == 1:  # the common case, without numpy calls
            flow = int(ids[0])
            flows.end[flow] = now
            self.bytes_delivered += float(flows.size[flow])
            group = int(flows.group[flow])
            left[group] -= 1
            owner = self._group_owner[group]
            if owner is not None:
                owner(ids)
            if left[group] == 0:
                self._succeed_group(group, now)
            return
        flows.end[ids] = now
        self.bytes_delivered += float(flows.size[ids].sum())
        groups = flows.group[ids]
        np.subtract.at(left, groups, 1)
        owners = self._group_owner
        called = {}
        for k, group in enumerate(groups.tolist()):  # transfer_each callbacks, first-seen order
            owner = owners[group]
            if owner is not None:
                called.setdefault(id(owner), (owner, []))[1].append(k)
        for owner, which in called.values():
            owner(ids[which])
        done = groups[left[groups] == 0]
        if done.size:
            for group in np.unique(done):  # in group order, as events are scheduled
                self._succeed_group(int(group), now)

    def _succeed_group(self, group: int, now: float) -> None:
        event, self._group_events[group] = self._group_events[group], None
        if event is None:  # transfer_each: no event
            return
        if self._groups.single[group]:
            value: Any = self._record(int(self._groups.first[group]))
        else:
            tag, start_s, nbytes = self._group_meta[group]
            value = GroupRecord(tag, int(self._groups.count[group]), nbytes, start_s, now)
        event.succeed(value)

    # ------------------------------------------------------------------ observability

    @property
    def flow_count(self) -> int:
        return self._flows.n

    def _record(self, flow: int) -> FlowRecord:
        f = self._flows
        offset, count = int(f.link_offset[flow]), int(f.link_count[flow])
        return FlowRecord(
            tag=self._tags[flow],
            src=self._node_names[f.src[flow]],
            dst=self._node_names[f.dst[flow]],
            bytes=float(f.size[flow]),
            start_s=float(f.start[flow]),
            first_byte_s=float(f.first_byte[flow]),
            end_s=float(f.end[flow]),
            links=tuple(int(x) for x in self._link_store.link[offset: offset + count]),
        )

    def records(self) -> list[FlowRecord]:
        """One immutable record per flow requested so far, in request order."""
        return [self._record(k) for k in range(self._flows.n)]

    def flow_table(self) -> dict[str, np.ndarray]:
        """The same data as `records()` as numpy columns (src/dst as node names), for bulk use."""
        f, n = self._flows, self._flows.n
        names = np.array(self._node_names, dtype=object)
        return {
            "src": names[f.src[:n]] if n else np.zeros(0, dtype=object),
            "dst": names[f.dst[:n]] if n else np.zeros(0, dtype=object),
            "bytes": f.size[:n].copy(),
            "start_s": f.start[:n].copy(),
            "first_byte_s": f.first_byte[:n].copy(),
            "end_s": f.end[:n].copy(),
        }

    def bytes_by_link_kind(self) -> dict[str, float]:
        """Delivered bytes summed per link kind (``nvlink4``, ``pcie5``, ...)."""
        totals: dict[str, float] = {}
        for kind, nbytes in zip(self.paths.link_kind, self.bytes_on_link):
            totals[kind] = totals.get(kind, 0.0) + float(nbytes)
        return totals

"""Token-level bookkeeping in numpy: who owns each token, where each (token, k) pair is computed.

This is the only place tokens are touched one by one (vectorised); the SimPy side only sees the
per-GPU counts and the GPU-to-GPU matrices computed here (STYLE.md item 10).

Tokens are owned in contiguous runs (rank 0's tokens first, then rank 1's...), and the pairs of
an expert are split over its replicas in token order (`assign_replicas`). So one layer's routing
is fully described by its [gpus, experts] owner-by-expert pair counts (`owner_expert_counts`,
computed while the trace streams by); `plan_routing` turns them into the dispatch and per-GPU
expert matrices without any token-level array. Only predicted ownership (a Token-to-Expert
predictor pre-sending tokens) moves tokens out of their runs; `plan_routing_tokens` handles it
one iteration at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.planning.placement import Placement, assign_replicas


@dataclass(frozen=True)
class Ownership:
    """How one iteration's tokens are spread for attention and who owns each token afterwards.

    Attention groups are `tp` consecutive GPUs; the batch's sequences are split over groups, and
    a group's tokens are split evenly over its members (the reduce-scatter's slices).
    """

    owner: np.ndarray  # [tokens] rank owning each token between reduce-scatter and all-gather
    group_tokens: np.ndarray  # [groups] tokens each attention group processes
    group_sequences: np.ndarray  # [groups] sequences each attention group processes
    tp: int

    def group_of(self, rank: int) -> int:
        return rank // self.tp

    def members(self, group: int) -> list[int]:
        return list(range(group * self.tp, (group + 1) * self.tp))


def token_ownership(batch: int, tokens_per_sequence: int, gpus: int, tp: int) -> Ownership:
    groups = gpus // tp
    sequences = np.array([len(s) for s in np.array_split(np.arange(batch), groups)], dtype=np.int64)
    group_tokens = sequences * tokens_per_sequence
    owner = np.empty(int(group_tokens.sum()), dtype=np.int64)
    start = 0
    for group, count in enumerate(group_tokens):
        slices = np.array_split(np.arange(count), tp)
        for member, piece in enumerate(slices):
            owner[start + piece] = group * tp + member
        start += count
    return Ownership(owner, group_tokens, sequences, tp)


@dataclass(frozen=True)
class RoutingPlan:
    """Per iteration and MoE layer: pairs sent GPU i -> GPU j, and pairs GPU j computes per expert.

    Counts are (token, k) pairs: a token whose two experts live on the same remote GPU is sent
    twice, as in a per-choice all-to-all (vLLM, Megatron); conservation is per pair.
    """

    dispatch_pairs: np.ndarray  # [iterations, moe_layers, gpus, gpus] true pairs owner -> GPU
    expert_pairs: np.ndarray  # [iterations, moe_layers, gpus, experts]
    owned_tokens: np.ndarray  # [gpus]
    presorted_pairs: int = 0  # pairs that needed no dispatch thanks to predicted ownership
    # token_residency `expert` only (None: owner, the combine is dispatch transposed):
    combine_pairs: np.ndarray | None = None  # [iterations, moe_layers, gpus, gpus]
    resident_tokens: np.ndarray | None = None  # [iterations, layers, gpus] at each layer's start
    kv_bytes: np.ndarray | None = None  # [iterations, layers, gpus, gpus] sent before attention

    def combine(self, iteration: int, moe: int) -> np.ndarray:
        """[gpus, gpus] pairs sent computing GPU -> where the token lives next."""
        if self.combine_pairs is None:
            return self.dispatch_pairs[iteration, moe].T
        return self.combine_pairs[iteration, moe]


def predicted_ownership(ownership: Ownership, target: np.ndarray) -> np.ndarray:
    """Owners chosen so each token lands, through the reduce-scatter, on its predicted GPU.

    Token-to-Expert pre-sending (MoE-GPS): the reduce-scatter that ends attention already moves
    every token to some GPU of its attention group; steering each token to the GPU of its
    predicted first expert skips the dispatch for correctly predicted pairs. Each member keeps
    its reduce-scatter slice size; tokens that do not fit where predicted fill the free slots.
    """
    owner = ownership.owner.copy()
    start = 0
    for group, count in enumerate(ownership.group_tokens):
        members = ownership.members(group)
        tokens = np.arange(start, start + count)
        capacity = {m: int(np.sum(ownership.owner[tokens] == m)) for m in members}
        free = np.ones(count, dtype=bool)
        for member in members:
            wanted = np.flatnonzero((target[tokens] == member) & free)[: capacity[member]]
            owner[tokens[wanted]] = member
            free[wanted] = False
            capacity[member] -= len(wanted)
        rest = np.flatnonzero(free)
        fill = np.repeat(members, [capacity[m] for m in members])
        owner[tokens[rest]] = fill
        start += count
    return owner


def owner_bounds(ownership: Ownership, gpus: int) -> np.ndarray:
    """[gpus + 1] first token of each rank's contiguous run of owned tokens (and the end)."""
    owner = ownership.owner
    if np.any(np.diff(owner) < 0):
        raise ValueError("owner_expert_counts needs tokens owned in contiguous runs by rank")
    return np.searchsorted(owner, np.arange(gpus + 1), side="left")


def owner_expert_counts(choices: np.ndarray, bounds: np.ndarray, num_experts: int) -> np.ndarray:
    """[gpus, experts] (token, k) pairs of one layer's [tokens, top_k] choices, by owner rank (its
    run of tokens, `owner_bounds`) and expert: all a layer's routing needs once owners are runs."""
    gpus = len(bounds) - 1
    counts = np.empty((gpus, num_experts), dtype=np.int64)
    for rank in range(gpus):
        counts[rank] = np.bincount(choices[bounds[rank]: bounds[rank + 1]].ravel(),
                                   minlength=num_experts)
    return counts


def split_counts(counts: np.ndarray, layer_replicas, layer_shares,
                 gpus: int) -> tuple[np.ndarray, np.ndarray]:
    """(dispatch [gpus, gpus], computed [gpus, experts]) of one layer from its owner-by-expert
    counts: exactly what `assign_replicas` gives token by token when owners are contiguous runs.

    Expert e's pairs in token order are owner 0's, then owner 1's, ...: owner o holds positions
    [C_o, C_o+1) with C the running sum of counts[:, e]; replica r takes positions
    [bound_r-1, bound_r) of the share bounds `assign_replicas` uses; pairs sent o -> replica r are
    the overlap of the two intervals.
    """
    experts = counts.shape[1]
    dispatch = np.zeros((gpus, gpus), dtype=np.int64)
    computed = np.zeros((gpus, experts), dtype=np.int64)
    single = np.array([replicas[0] for replicas in layer_replicas], dtype=np.int64)
    many = np.array([len(replicas) > 1 for replicas in layer_replicas])
    alone = np.flatnonzero(~many)
    if len(alone):
        order = alone[np.argsort(single[alone], kind="stable")]
        targets, starts = np.unique(single[order], return_index=True)
        dispatch[:, targets] = np.add.reduceat(counts[:, order], starts, axis=1)
        computed[single[alone], alone] = counts[:, alone].sum(axis=0)
    for expert in np.flatnonzero(many):
        column = counts[:, expert]
        total = int(column.sum())
        replicas = np.asarray(layer_replicas[expert], dtype=np.int64)
        bounds = np.floor(np.cumsum(layer_shares[expert]) * total + 0.5).astype(np.int64)
        low = np.clip(np.concatenate(([0], bounds[:len(replicas) - 1])), 0, total)
        high = np.clip(np.concatenate((bounds[:len(replicas) - 1], [total])), 0, total)
        high = np.maximum(high, low)
        edges = np.concatenate(([0], np.cumsum(column)))
        overlap = np.maximum(0, np.minimum(edges[1:, None], high[None, :])
                             - np.maximum(edges[:-1, None], low[None, :]))  # [owners, replicas]
        np.add.at(dispatch, (slice(None), replicas), overlap)
        np.add.at(computed, (replicas, expert), overlap.sum(axis=0))
    return dispatch, computed


def plan_routing(counts: np.ndarray, ownership: Ownership, placements: list[Placement], gpus: int,
                 num_experts: int) -> RoutingPlan:
    """counts: [iterations, moe_layers, gpus, experts] owner-by-expert pairs of the simulated
    iterations (`owner_expert_counts`); placements: one per iteration."""
    iterations, layers = counts.shape[:2]
    dispatch = np.zeros((iterations, layers, gpus, gpus), dtype=np.int64)
    computed = np.zeros((iterations, layers, gpus, num_experts), dtype=np.int64)
    for it in range(iterations):
        placement = placements[it]
        for layer in range(layers):
            dispatch[it, layer], computed[it, layer] = split_counts(
                counts[it, layer], placement.replicas[layer], placement.shares[layer], gpus)
    owned = np.bincount(ownership.owner, minlength=gpus)
    return RoutingPlan(dispatch, computed, owned, 0)


def _pair_matrix(owner_pairs: np.ndarray, gpu: np.ndarray, gpus: int) -> np.ndarray:
    return np.bincount(owner_pairs * gpus + gpu, minlength=gpus * gpus).reshape(gpus, gpus)


def plan_routing_tokens(layer_choices, ownership: Ownership, placements: list[Placement], gpus: int,
                        num_experts: int, predicted: np.ndarray | None = None) -> RoutingPlan:
    """Token by token: layer_choices(it) yields iteration it's [tokens, top_k] true choices per
    MoE layer (one iteration in memory at a time); predicted: [iterations, moe_layers, tokens,
    top_k], a token predictor's choices: tokens are then owned where their predicted first expert
    lives (see `predicted_ownership`). Without `predicted` it equals `plan_routing` on the counts."""
    iterations = len(placements)
    dispatch, computed, presorted = [], [], 0
    for it in range(iterations):
        placement = placements[it]
        layer_dispatch, layer_computed = [], []
        for layer, choices in enumerate(layer_choices(it)):
            replicas, shares = placement.replicas[layer], placement.shares[layer]
            top_k = choices.shape[1]
            gpu = assign_replicas(choices, replicas, shares)
            owner = ownership.owner
            if predicted is not None:
                guessed = assign_replicas(predicted[it, layer], replicas, shares)
                owner = predicted_ownership(ownership, guessed[:, 0])
                presorted += int(np.sum((gpu == owner[:, None]) & (gpu != ownership.owner[:, None])))
            layer_dispatch.append(_pair_matrix(np.repeat(owner, top_k), gpu.ravel(), gpus))
            flat = choices.ravel()
            layer_computed.append(np.bincount(gpu.ravel() * num_experts + flat,
                                              minlength=gpus * num_experts).reshape(gpus, num_experts))
        dispatch.append(layer_dispatch)
        computed.append(layer_computed)
    owned = np.bincount(ownership.owner, minlength=gpus)
    return RoutingPlan(np.array(dispatch, dtype=np.int64).reshape(iterations, -1, gpus, gpus),
                       np.array(computed, dtype=np.int64).reshape(iterations, -1, gpus, num_experts),
                       owned, presorted)


# --- token residency `expert`: a token lives where its first-choice expert ran --------------------

RESIDENCY_MODES = ("owner", "expert")


def plan_expert_residency(layer_choices, ownership: Ownership, placements: list[Placement],
                          gpus: int, num_experts: int, moe_layer_indices: list[int], layers: int,
                          tokens_per_sequence: int, phase: str,
                          kv_bytes_per_token: float) -> RoutingPlan:
    """Routing with `parallelism.token_residency: expert` (MoETuner's and ExFlow's model).

    A token's hidden state stays, after MoE layer m, on the GPU of the replica that computed its
    first choice: the combine brings its other k-1 outputs there, and the next layer's attention
    and dispatch start there. Attention is data-parallel over the tokens resident on each GPU, so
    a GPU first needs the K/V of the tokens of its tokens' sequences that live elsewhere
    (`kv_bytes`: prefill, the earlier positions of the same sequences; decode, every new token's
    K/V to every GPU, the KV cache being replicated). The last MoE layer combines to the owner, so
    the forward pass ends where it began (LM head, next decode step).

    layer_choices(it): iteration it's [tokens, top_k] true choices, one array per MoE layer.

    Tokens are numbered sequence by sequence (token t is position t % tokens_per_sequence of
    sequence t // tokens_per_sequence; decode: one token per sequence)."""
    iterations, moe_count = len(placements), len(moe_layer_indices)
    moe_of = {layer: m for m, layer in enumerate(moe_layer_indices)}
    owner = ownership.owner
    tokens = len(owner)
    sequence = np.arange(tokens) // tokens_per_sequence
    position = np.arange(tokens) % tokens_per_sequence
    dispatch = np.zeros((iterations, moe_count, gpus, gpus), dtype=np.int64)
    combine = np.zeros_like(dispatch)
    computed = np.zeros((iterations, moe_count, gpus, num_experts), dtype=np.int64)
    resident = np.zeros((iterations, layers, gpus), dtype=np.int64)
    kv = np.zeros((iterations, layers, gpus, gpus))
    for it in range(iterations):
        choices = list(layer_choices(it))
        placement = placements[it]
        where = owner
        for layer in range(layers):
            resident[it, layer] = np.bincount(where, minlength=gpus)
            kv[it, layer] = _kv_exchange(where, sequence, position, gpus, phase) * kv_bytes_per_token
            if layer not in moe_of:
                continue
            m = moe_of[layer]
            top_k = choices[m].shape[1]
            gpu = assign_replicas(choices[m], placement.replicas[m], placement.shares[m])
            dispatch[it, m] = _pair_matrix(np.repeat(where, top_k), gpu.ravel(), gpus)
            computed[it, m] = np.bincount(gpu.ravel() * num_experts + choices[m].ravel(),
                                          minlength=gpus * num_experts).reshape(gpus, num_experts)
            after = owner if m == moe_count - 1 else gpu[:, 0]
            combine[it, m] = _pair_matrix(gpu.ravel(), np.repeat(after, top_k), gpus)
            where = after
    return RoutingPlan(dispatch, computed, np.bincount(owner, minlength=gpus), 0,
                       combine_pairs=combine, resident_tokens=resident, kv_bytes=kv)


def _kv_exchange(where: np.ndarray, sequence: np.ndarray, position: np.ndarray, gpus: int,
                 phase: str) -> np.ndarray:
    """[gpus, gpus] tokens whose K/V GPU a sends GPU b before attention (diagonal 0).

    prefill: b needs, of every sequence it holds a token of, the positions up to its latest one
    (causal attention); decode: the KV cache is replicated, so every new token's K/V goes to
    every other GPU."""
    matrix = np.zeros((gpus, gpus))
    if phase == "decode":
        held = np.bincount(where, minlength=gpus).astype(float)
        matrix[:] = held[:, None]
    else:
        sequences = int(sequence.max()) + 1 if len(sequence) else 0
        for b in range(gpus):
            latest = np.full(sequences, -1)
            mine = where == b
            np.maximum.at(latest, sequence[mine], position[mine])
            need = position <= latest[sequence]
            matrix[:, b] = np.bincount(where[need], minlength=gpus)
    np.fill_diagonal(matrix, 0.0)
    return matrix

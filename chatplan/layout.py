"""The bundled trainer's layout, shared by the trainer and the planner's memory and time models.

Constants the trainer allocates by (buckets, loss chunks, checkpoints kept) live here so that the
memory model reads the same numbers the trainer uses; and the late-2025 optimizer's ownership map:
which rank owns which parameter's optimizer state.

The trainer keeps full weights and full (averaged) gradients on every rank, but each parameter's
optimizer state lives on exactly one rank, its owner, which computes the update and broadcasts the
new weights. Ownership is per whole tensor (a Muon update needs the whole matrix for Newton-Schulz),
so the most-loaded rank holds slightly more than 1/W of the state: the memory model uses that rank.
"""

from __future__ import annotations

# The late-2025 trainer all-reduces its flat gradient buffers in place, in chunks of 64 Mi elements
# (fp32): the backend's scratch is at most one chunk.
COMM_BUCKET_ELEMENTS = 64 * 2**20
COMM_BUCKET_BYTES = 4 * COMM_BUCKET_ELEMENTS
# The CPU fused loss works on ~8 MB of fp32 logits per chunk (fits in cache): rows per chunk = this / V.
FUSED_LOSS_CHUNK_ELEMENTS = 2**21
# Complete checkpoints kept on disk; older ones are deleted once a newer one is complete.
CHECKPOINTS_KEPT = 3
# Parameters the late-2025 trainer hands to AdamW; every other one is a Muon matrix.
ADAMW_PARAMS_2025 = ("transformer.wte.weight", "lm_head.weight")


def assign_owners(numels: dict[str, int], world_size: int) -> dict[str, int]:
    """Greedy longest-processing-time assignment: biggest tensors first, each to the least-loaded rank.

    Deterministic for a given (names, sizes, world): ties broken by name, then by lowest rank.
    """
    if world_size < 1:
        raise ValueError(f"world size must be >= 1, got {world_size}")
    load = [0] * world_size
    owners: dict[str, int] = {}
    for name, numel in sorted(numels.items(), key=lambda kv: (-kv[1], kv[0])):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owners[name] = rank
        load[rank] += numel
    return owners


def rank_loads(numels: dict[str, int], owners: dict[str, int], world_size: int) -> list[int]:
    """Elements of optimizer-owned parameters per rank."""
    load = [0] * world_size
    for name, rank in owners.items():
        load[rank] += numels[name]
    return load


def optimizer_state_bytes(param_shapes: dict[str, tuple[int, ...]], embedding_bytes: int) -> dict[str, int]:
    """Bytes of optimizer state per parameter, as the trainer allocates it (SPEC §5).

    Muon (every block matrix): one fp32 momentum buffer. AdamW (wte, lm_head): two moments in the
    parameter's dtype (`wte` is bf16 on CUDA, embedding_bytes=2, and fp32 elsewhere; lm_head is
    fp32) plus the fused implementation's fp32 step counter.
    """
    out = {}
    for name, (rows, cols) in param_shapes.items():
        numel = rows * cols
        if name == "transformer.wte.weight":
            out[name] = 2 * numel * embedding_bytes + 4
        elif name == "lm_head.weight":
            out[name] = 2 * numel * 4 + 4
        else:
            out[name] = numel * 4
    return out


def owner_map(
    param_shapes: dict[str, tuple[int, ...]], world_size: int, embedding_bytes: int
) -> dict[str, int]:
    """Owner rank of every parameter, balancing optimizer-state bytes. The trainer calls exactly this."""
    return assign_owners(optimizer_state_bytes(param_shapes, embedding_bytes), world_size)

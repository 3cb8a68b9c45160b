"""Which rank owns which parameter's optimizer state (one source of truth for trainer and memory model).

The trainer keeps full weights and full (averaged) gradients on every rank, but each parameter's
optimizer state lives on exactly one rank, its owner, which computes the update and broadcasts the
new weights. Ownership is per whole tensor (a Muon update needs the whole matrix for Newton-Schulz),
so the most-loaded rank holds slightly more than 1/W of the state: the memory model uses that rank.
"""

from __future__ import annotations


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

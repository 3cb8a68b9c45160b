"""Batch arithmetic: sequences per rank, the device batches that divide them, gradient accumulation.

nanochat asserts that the total batch divides into device batch x context x world size; chatplan
turns that assertion into choices (the automatic batch only proposes sizes that divide) and into
errors that name the valid values.
"""

from __future__ import annotations

from chatplan.errors import InvalidInput


def sequences_per_rank(total_batch_size: int, seq_len: int, num_gpus: int) -> int:
    """Tokens per rank per step must be whole sequences: returns sequences per rank per step."""
    per_step = seq_len * num_gpus
    if total_batch_size % per_step == 0:
        return total_batch_size // per_step
    lower = (total_batch_size // per_step) * per_step
    sizes = [s for s in (lower, lower + per_step) if s > 0]
    seqs = total_batch_size / seq_len
    counts = [g for g in range(1, 4 * num_gpus + 1) if seqs == int(seqs) and int(seqs) % g == 0]
    below = max((g for g in counts if g < num_gpus), default=None)
    above = min((g for g in counts if g > num_gpus), default=None)
    gpu_hint = " or ".join(str(g) for g in (below, above) if g is not None) or "none"
    raise InvalidInput(
        f"total batch {total_batch_size:,} tokens is not divisible by context {seq_len:,} x {num_gpus} GPUs; "
        f"nearest valid total batch sizes: {' and '.join(f'{s:,}' for s in sizes)}; "
        f"nearest valid GPU counts: {gpu_hint}")


def batch_candidates(sequences_per_rank: int) -> list[int]:
    """Per-GPU batch sizes the search may pick: powers of two dividing sequences per rank per step."""
    out, b = [], 1
    while b <= sequences_per_rank:
        if sequences_per_rank % b == 0:
            out.append(b)
        b *= 2
    return out


def grad_accum_for(device_batch_size: int, sequences_per_rank: int, total_batch_size: int,
                   seq_len: int, world_size: int) -> int:
    """Gradient accumulation for an explicit device batch; InvalidInput naming the valid ones otherwise."""
    if device_batch_size < 1 or sequences_per_rank % device_batch_size:
        valid = [b for b in range(1, sequences_per_rank + 1) if sequences_per_rank % b == 0]
        raise InvalidInput(
            f"device batch size {device_batch_size} does not divide {total_batch_size:,} tokens / "
            f"({seq_len:,} x {world_size} GPUs) = {sequences_per_rank} sequences per GPU; valid: "
            f"{', '.join(map(str, valid))}")
    return sequences_per_rank // device_batch_size



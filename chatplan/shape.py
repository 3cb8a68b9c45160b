"""Model shape from depth (SPEC §1): the one knob users turn, plus explicit overrides."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from chatplan.errors import InvalidInput

DEFAULT_ASPECT_RATIO = 64  # model dim = 64 * depth
DEFAULT_HEAD_DIM = 128  # target head dim; the real one is model_dim / heads
DEFAULT_VOCAB_SIZE = 65_536
DEFAULT_SEQ_LEN = 2_048
MAX_DEPTH = 1_024  # a sanity bound for searches and inputs, far above anything trainable today


@dataclass(frozen=True)
class ModelShape:
    n_layer: int
    n_embd: int  # model dim d
    n_head: int
    n_kv_head: int
    head_dim: int
    vocab_size: int
    sequence_len: int

    @property
    def mlp_hidden(self) -> int:
        return 4 * self.n_embd

    def to_dict(self) -> dict:
        return {**asdict(self), "mlp_hidden": self.mlp_hidden}


def shape_problem(
    n_embd: int, n_head: int, n_kv_head: int
) -> str | None:
    """Why a (dim, heads, kv heads) triple is invalid, or None when it is valid (SPEC §1 rule)."""
    if n_embd % n_head:
        return f"model dim {n_embd:,} is not divisible by {n_head} heads"
    if (n_embd // n_head) % 2:
        return f"head dim {n_embd // n_head} is odd (rotary embeddings rotate halves)"
    if n_kv_head < 1 or n_kv_head > n_head or n_head % n_kv_head:
        return f"{n_head} heads are not divisible by {n_kv_head} kv heads"
    return None


def _derive(depth: int, aspect_ratio: int, head_dim: int, kv_heads: int | None) -> tuple[int, int, int]:
    n_embd = depth * aspect_ratio
    n_head = max(1, math.ceil(n_embd / head_dim))
    n_kv_head = n_head if kv_heads is None else kv_heads
    return n_embd, n_head, n_kv_head


def is_valid_depth(
    depth: int,
    aspect_ratio: int = DEFAULT_ASPECT_RATIO,
    head_dim: int = DEFAULT_HEAD_DIM,
    kv_heads: int | None = None,
) -> bool:
    return depth >= 1 and shape_problem(*_derive(depth, aspect_ratio, head_dim, kv_heads)) is None


def nearest_valid_depths(
    depth: int,
    aspect_ratio: int = DEFAULT_ASPECT_RATIO,
    head_dim: int = DEFAULT_HEAD_DIM,
    kv_heads: int | None = None,
) -> tuple[int | None, int | None]:
    """The closest valid depths strictly below and above `depth` (None where there is none)."""

    def ok(d: int) -> bool:
        return is_valid_depth(d, aspect_ratio, head_dim, kv_heads)

    below = next((d for d in range(min(depth - 1, MAX_DEPTH), 0, -1) if ok(d)), None)
    above = next((d for d in range(max(depth + 1, 1), MAX_DEPTH + 1) if ok(d)), None)
    return below, above


def model_shape(
    depth: int,
    aspect_ratio: int = DEFAULT_ASPECT_RATIO,
    head_dim: int = DEFAULT_HEAD_DIM,
    kv_heads: int | None = None,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    seq_len: int = DEFAULT_SEQ_LEN,
) -> ModelShape:
    """Shape for a depth; raises InvalidInput naming the reason and the nearest valid depths."""
    for name, value in [("depth", depth), ("aspect ratio", aspect_ratio), ("head dim", head_dim),
                        ("vocab size", vocab_size), ("sequence length", seq_len)]:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
    if depth > MAX_DEPTH:
        raise InvalidInput(f"depth {depth} is above the supported maximum {MAX_DEPTH}")
    if kv_heads is not None and (not isinstance(kv_heads, int) or kv_heads < 1):
        raise InvalidInput(f"kv heads must be a positive integer, got {kv_heads!r}")
    n_embd, n_head, n_kv_head = _derive(depth, aspect_ratio, head_dim, kv_heads)
    problem = shape_problem(n_embd, n_head, n_kv_head)
    if problem:
        below, above = nearest_valid_depths(depth, aspect_ratio, head_dim, kv_heads)
        near = " and ".join(str(d) for d in (below, above) if d is not None) or "none"
        raise InvalidInput(f"depth {depth} is invalid: {problem}; nearest valid depths: {near}")
    return ModelShape(
        n_layer=depth,
        n_embd=n_embd,
        n_head=n_head,
        n_kv_head=n_kv_head,
        head_dim=n_embd // n_head,
        vocab_size=vocab_size,
        sequence_len=seq_len,
    )

"""Exact parameter counts by tensor group (SPEC §2) and FLOPs per token (SPEC §3)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from chatplan.shape import ModelShape


@dataclass(frozen=True)
class ParamCounts:
    """Parameters by tensor group. Block groups are summed over all layers."""

    wte: int  # input embedding V x d
    lm_head: int  # output projection V x d (untied)
    attn_q: int
    attn_k: int
    attn_v: int
    attn_out: int
    mlp_in: int
    mlp_out: int

    @property
    def matrices(self) -> int:
        """All 2-D block matrices (the ones Muon optimizes)."""
        return self.attn_q + self.attn_k + self.attn_v + self.attn_out + self.mlp_in + self.mlp_out

    @property
    def total(self) -> int:
        return self.wte + self.lm_head + self.matrices

    @property
    def non_embedding(self) -> int:
        """Everything but `wte`: the parameters that cost compute (lm_head is a matmul)."""
        return self.total - self.wte

    def to_dict(self) -> dict:
        return {**asdict(self), "matrices": self.matrices, "non_embedding": self.non_embedding,
                "total": self.total}


def block_matrix_shapes(shape: ModelShape) -> list[tuple[str, tuple[int, int]]]:
    """(name, (out_features, in_features)) of one block's matrices, nn.Linear layout.

    Single source of truth for the per-block tensors: the trainer builds exactly these, and the
    memory model and optimizer-state sharding read them.
    """
    d, h, kv, hd = shape.n_embd, shape.n_head, shape.n_kv_head, shape.head_dim
    return [
        ("attn.c_q", (h * hd, d)),
        ("attn.c_k", (kv * hd, d)),
        ("attn.c_v", (kv * hd, d)),
        ("attn.c_proj", (d, h * hd)),
        ("mlp.c_fc", (shape.mlp_hidden, d)),
        ("mlp.c_proj", (d, shape.mlp_hidden)),
    ]


def param_shapes(shape: ModelShape) -> dict[str, tuple[int, int]]:
    """Every parameter tensor of the model by its trainer name (nanochat naming)."""
    shapes = {"transformer.wte.weight": (shape.vocab_size, shape.n_embd)}
    for layer in range(shape.n_layer):
        for name, dims in block_matrix_shapes(shape):
            shapes[f"transformer.h.{layer}.{name}.weight"] = dims
    shapes["lm_head.weight"] = (shape.vocab_size, shape.n_embd)
    return shapes


def param_counts(shape: ModelShape) -> ParamCounts:
    (_, q), (_, k), (_, v), (_, out), (_, fc), (_, proj) = block_matrix_shapes(shape)
    L = shape.n_layer
    embed = shape.vocab_size * shape.n_embd
    return ParamCounts(
        wte=embed,
        lm_head=embed,
        attn_q=L * q[0] * q[1],
        attn_k=L * k[0] * k[1],
        attn_v=L * v[0] * v[1],
        attn_out=L * out[0] * out[1],
        mlp_in=L * fc[0] * fc[1],
        mlp_out=L * proj[0] * proj[1],
    )


def flops_per_token(shape: ModelShape, counts: ParamCounts | None = None) -> int:
    """Training FLOPs per token, the convention nanochat uses for MFU (SPEC §3).

    6 FLOPs per parameter per token (forward 2 + backward 4) for every parameter but `wte` (a
    lookup, not a matmul), plus attention scores and values over the full context T:
    12 * L * h * hd * T (no causal halving; that is the convention, not the work done).
    """
    counts = counts or param_counts(shape)
    attention = 12 * shape.n_layer * shape.n_head * shape.head_dim * shape.sequence_len
    return 6 * counts.non_embedding + attention

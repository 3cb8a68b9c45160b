"""nanochat as of late 2025 (SPEC.md; the Oct-2025 speedrun and run1000 recipes): the default architecture.

- width 64 per layer, heads of ~128 (heads = ceil(d / 128); the real head dim is d / heads), full
  causal attention in every layer, vocabulary 65,536, context 2,048;
- parameters: untied `wte` and `lm_head` (V x d each) and six matrices per block (no biases, no
  learnable norm weights);
- FLOPs convention: 6 per parameter per token for everything but `wte`, plus 12·L·h·hd·T;
- horizon: 20 tokens per parameter (all parameters), 524,288 tokens per step;
- optimizer: Muon on the block matrices, AdamW on wte / lm_head with width-scaled learning rates.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from types import MappingProxyType

from chatplan.arch.base import Architecture, Dataset, Defaults, MemoryTerms, ModelShape, ParamCounts, StepTerms
from chatplan.layout import (
    ADAMW_PARAMS_2025,
    COMM_BUCKET_BYTES,
    FUSED_LOSS_CHUNK_ELEMENTS,
    optimizer_state_bytes,
    owner_map,
    rank_loads,
)
from chatplan.precision import Precision

TOTAL_BATCH_SIZE = 524_288  # tokens per optimizer step (2^19), SPEC §4

# --- time-model terms (assumptions, stated so they can be checked) -----------------------------------
# Bytes moved per token per layer per unit of width by the memory-bound ops of a compiled fwd+bwd
# (~25 d-wide bf16 tensors read or written forward, twice that backward).
ELEMENTWISE_BYTES_PER_LAYER_WIDTH = 100
# Bytes per token per vocabulary entry on the loss path: bf16 logits out and back in, fp32 softcap
# and cross-entropy forward, their fused backward, the bf16 gradient (2+2+4+4+4+4+2+2).
LOGITS_BYTES_PER_VOCAB = 24
# Attention is counted over the full context (SPEC §3) but causal flash attention does half that
# work at ~60% of the matmul rate: 0.5 / 0.6 ~ 0.85 of the counted FLOPs' matmul time.
ATTENTION_TIME_FACTOR = 0.85
NS_STEPS = 5

FINEWEB_EDU = Dataset(
    name="FineWeb-Edu (karpathy/fineweb-edu-100b-shuffle)",
    base_url="https://huggingface.co/datasets/karpathy/fineweb-edu-100b-shuffle/resolve/main",
    num_train_shards=1_822,  # shard_00000 ... shard_01821; the last file is the validation shard
    validation_shard_index=1_822,
    chars_per_shard=250e6,
    shard_download_bytes=100e6,  # ~100 MB compressed per shard
    chars_per_token=4.8,  # measured for the 65,536-token tokenizer on FineWeb-Edu
    kept_token_fraction=1.0,  # the streaming loader packs documents back to back: nothing is dropped
    published_downloads=((20, 240), (26, 450), (32, 800)),  # speedrun.sh, run1000.sh (SPEC §7)
)


def block_matrix_shapes(shape: ModelShape) -> list[tuple[str, tuple[int, int]]]:
    """(name, (out_features, in_features)) of one block's matrices, nn.Linear layout."""
    d, h, kv, hd = shape.n_embd, shape.n_head, shape.n_kv_head, shape.head_dim
    return [
        ("attn.c_q", (h * hd, d)),
        ("attn.c_k", (kv * hd, d)),
        ("attn.c_v", (kv * hd, d)),
        ("attn.c_proj", (d, h * hd)),
        ("mlp.c_fc", (shape.mlp_hidden, d)),
        ("mlp.c_proj", (d, shape.mlp_hidden)),
    ]


def newton_schulz_flops(rows: int, cols: int, steps: int = NS_STEPS) -> float:
    """FLOPs of the quintic Newton-Schulz iteration on one matrix (small side m, large side n)."""
    m, n = min(rows, cols), max(rows, cols)
    return steps * (2 * m * m * n + 2 * m**3 + 2 * m * m * n)  # X X^T, A A, B X


def activation_bytes_per_token(shape: ModelShape, precision: Precision) -> float:
    """Bytes saved for backward per token of a micro-batch, tensor by tensor (SPEC §6 model).

    Per block (unique storages), eager and compiled alike:
      attention: x (norm input), x_n (q/k/v input), q and k after rotary (QK-norm inputs), q and k
                 after QK-norm and v (SDPA inputs), the SDPA output (its (B, T, H*hd) view is c_proj's
                 input: the flash kernels lay it out so no copy is made); fp32 softmax logsumexp (one
                 per head) and the norms' fp32 rstd (one per row: 2 block norms, h + kv QK-norms).
      MLP:       x (norm input), x_n (c_fc input), two 4d tensors: eager keeps relu(h) and relu(h)^2;
                 compiled, inductor keeps the c_fc output h and relu(h)^2 (c_proj's input).
      (The pre-rotary q and k are not saved: the cos/sin tables need no gradient.)
    Compiled is not smaller: inductor's min-cut partitioner recomputes none of these (it keeps the
    rotary outputs beside the normed q and k, and h beside relu(h)^2), only the first block's input
    (model level, below). That is its own choice, read off its partition of this model under bf16
    autocast (tests/test_memory_vs_trainer.py); the model once assumed it recomputed rotary and
    relu^2 (24 instead of 36 bytes x d per layer).
    Model level: the embedding output (post-embedding norm input), the final norm's input and output
    (lm_head's input; on the CPU path the fused loss keeps its input gradient dx instead, same size),
    two rstd, and the int64 token ids and targets.
    Checked against autograd's saved tensors (eager) and the partitioner's (compiled) on CPU.
    """
    d, h, kv, L = shape.n_embd, shape.n_head, shape.n_kv_head, shape.n_layer
    kvd = shape.kv_dim
    a = precision.activation_bytes
    wide = 7 * d + 3 * kvd + 8 * d  # x, x_n, q_rot, q_n, out, x, x_n | k_rot, k_n, v | two 4d (see above)
    fp32_stats = 4 * (2 + h + kv + h)  # two block norms' rstd, QK-norm rstd, logsumexp per head
    per_layer = a * wide + fp32_stats
    # emb, x_L, x_L normed; two rstd; token ids and targets. Compiled, the first block's input norm(emb)
    # is recomputed from emb (eager keeps both): one d-wide tensor fewer
    model_level = a * (2 if precision.compile else 3) * d + 4 * 2 + 8 * 2
    return L * per_layer + model_level


def logits_saved_bytes_per_token(shape: ModelShape, precision: Precision) -> float:
    """The loss path's B x T x V tensors saved for backward, per token.

    CUDA, compiled: lm_head's bf16 output (2 bytes); inductor fuses the fp32 cast, the softcap and
    the cross-entropy into kernels that keep only per-row statistics (max, log-sum-exp), and
    recomputes the rest in backward (read off its partition, like the activations). Eager under CUDA
    autocast (not the default, no published run): 4 bytes assumed, the fp32 logits the softcap keeps;
    not measured (CPU autocast, whose op policy differs, keeps about 9). Eager fp32 without the fused
    loss: the tanh output and the log-softmax output (2 x 4). The CPU fused loss saves nothing per
    vocabulary entry (see `fused_loss_fixed_bytes`).
    """
    if precision.fused_loss:
        return 0.0
    if precision.activation_bytes == 2:
        return (2 if precision.compile else 4) * shape.padded_vocab_size
    return 8 * shape.padded_vocab_size


def logits_backward_bytes_per_token(shape: ModelShape, precision: Precision) -> float:
    """Extra B x T x V bytes at the start of the loss backward: the gradient of the logits, beside the
    saved tensors until lm_head's backward has used it.

    Compiled in bf16 on CUDA: none. The fused softcap/cross-entropy backward writes the bf16 gradient into
    the storage of the saved bf16 logits (their last use; AOTAutograd donates saved tensors to inductor,
    which may update a donated buffer in place since PyTorch 2.6: an older torch allocates a second bf16
    buffer, which this does not count), so the loss path peaks at 2 bytes per logit.
    This is measured, not read off generated code: the published runs that the loss path dominates allow
    no more (docs/memory.md, "The loss path"): 8xH100 d8 at batch 32 allocated 18.73 GiB, 307 KB per
    token with activations of >= 150 KB, i.e. <= 2.4 bytes per logit; one A100 at 2026's d2, batch 64 x 256,
    1.39 GiB in all, <= 2.8 bytes per logit. (Inductor's CPU backend, whose outer-loop fusion blocks that
    in-place update, does allocate a second buffer: `TORCH_LOGS=output_code`.) Eager, or compiled in fp32:
    the fp32 gradient comes first (4)."""
    if precision.fused_loss or (precision.compile and precision.activation_bytes == 2):
        return 0.0
    return 4 * shape.padded_vocab_size


def fused_loss_fixed_bytes(shape: ModelShape, precision: Precision) -> int:
    """The CPU fused loss keeps lm_head's weight gradient (V x d fp32) from forward to backward, and
    works on two chunk-sized buffers while it runs."""
    if not precision.fused_loss:
        return 0
    return 4 * shape.padded_vocab_size * shape.n_embd + 2 * 4 * FUSED_LOSS_CHUNK_ELEMENTS


def muon_workspace(shapes: dict[str, tuple[int, ...]], owners: dict[str, int], ns_bytes: int) -> int:
    """Temporaries of the trainer's Muon step on the busiest rank: matrices of one shape are stacked
    and orthogonalised together, so per group of n same-shaped (r x c) matrices it holds the Nesterov
    update and its stacked copy (fp32), X, X/|X| and the new X in the Newton-Schulz dtype, A and B
    (m x m, m = min(r, c)), and the fp32 result. Groups run one after another: the largest counts."""
    groups: dict[tuple[int, tuple[int, ...]], int] = {}
    for name, dims in shapes.items():
        if name not in ADAMW_PARAMS_2025:
            key = (owners[name], dims)
            groups[key] = groups.get(key, 0) + 1
    worst = 0
    for (_, (r, c)), n in groups.items():
        m = min(r, c)
        worst = max(worst, n * r * c * (3 * 4 + 3 * ns_bytes) + 2 * n * m * m * ns_bytes)
    return worst


# plan.json's `params` keys for the six block matrices, in nanochat's Oct-2025 order
BLOCK_GROUPS = ("attn_q", "attn_k", "attn_v", "attn_out", "mlp_in", "mlp_out")


@dataclass(frozen=True)
class Nanochat2025(Architecture):
    name: str = "nanochat-2025"
    nanochat_commit: str = "4cc605b"  # the Oct-2025 speedrun report card (SPEC.md); run1000.sh of that month
    summary: str = "late-2025 nanochat: full attention, 65,536 vocab, ratio 20 over all parameters, 2^19 batch"
    defaults: Defaults = field(default_factory=lambda: Defaults(
        aspect_ratio=64, head_dim=128, vocab_size=65_536, seq_len=2_048, data_ratio=20.0, window_pattern="L",
        eval_every=250, eval_tokens=20 * TOTAL_BATCH_SIZE))
    dataset: Dataset = FINEWEB_EDU
    fp8_supported: bool = False

    def dims(self, depth: int, aspect_ratio: int, head_dim: int, kv_heads: int | None) -> tuple[int, int, int]:
        n_embd = depth * aspect_ratio
        n_head = max(1, math.ceil(n_embd / head_dim))
        return n_embd, n_head, n_head if kv_heads is None else kv_heads

    def shape_problem(self, n_embd: int, n_head: int, n_kv_head: int) -> str | None:
        if n_embd % n_head:
            return f"model dim {n_embd:,} is not divisible by {n_head} heads"
        if (n_embd // n_head) % 2:
            return f"head dim {n_embd // n_head} is odd (rotary embeddings rotate halves)"
        if n_kv_head < 1 or n_kv_head > n_head or n_head % n_kv_head:
            return f"{n_head} heads are not divisible by {n_kv_head} kv heads"
        return None

    def build_shape(self, depth: int, n_embd: int, n_head: int, n_kv_head: int, vocab_size: int, seq_len: int,
                    window_pattern: str, aspect_ratio: int) -> ModelShape:
        from chatplan.errors import InvalidInput

        if window_pattern.upper() != "L":
            raise InvalidInput(f"--window-pattern {window_pattern!r}: {self.name} has full attention in every "
                               "layer (sliding windows came with nanochat-2026)")
        return ModelShape(arch=self.name, n_layer=depth, n_embd=n_embd, n_head=n_head, n_kv_head=n_kv_head,
                          head_dim=n_embd // n_head, vocab_size=vocab_size, padded_vocab_size=vocab_size,
                          sequence_len=seq_len, mlp_hidden=4 * n_embd, window_sizes=(seq_len,) * depth,
                          value_embed_layers=(), aspect_ratio=aspect_ratio, window_pattern="L")

    @functools.lru_cache(maxsize=512)  # noqa: B019 - the architecture is a frozen, immortal value
    def param_shapes(self, shape: ModelShape) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {"transformer.wte.weight": (shape.padded_vocab_size, shape.n_embd)}
        for layer in range(shape.n_layer):
            for name, dims in block_matrix_shapes(shape):
                shapes[f"transformer.h.{layer}.{name}.weight"] = dims
        shapes["lm_head.weight"] = (shape.padded_vocab_size, shape.n_embd)
        return MappingProxyType(shapes)  # cached and shared: read-only

    @functools.lru_cache(maxsize=512)  # noqa: B019
    def param_counts(self, shape: ModelShape) -> ParamCounts:
        embed = shape.padded_vocab_size * shape.n_embd
        blocks = [(key, shape.n_layer * r * c) for key, (_, (r, c)) in zip(BLOCK_GROUPS, block_matrix_shapes(shape))]
        matrices = sum(n for _, n in blocks)
        total = 2 * embed + matrices
        groups = (("wte", embed), ("lm_head", embed), *blocks, ("matrices", matrices),
                  ("non_embedding", total - embed), ("total", total))
        # the ratio multiplies all parameters (SPEC §4); wte is a lookup, lm_head a matmul (SPEC §3)
        return ParamCounts(groups=groups, total=total, scaling=total, matmul=total - embed, lookup=embed)

    def attention_flops_per_token(self, shape: ModelShape) -> int:
        # scores and values over the full context T in every layer, no causal halving (SPEC §3)
        return 12 * shape.n_layer * shape.n_head * shape.head_dim * shape.sequence_len

    @functools.lru_cache(maxsize=512)  # noqa: B019
    def default_total_batch_size(self, shape: ModelShape) -> int:
        return TOTAL_BATCH_SIZE

    def optimizer_settings(self, shape: ModelShape, total_batch_size: int, steps: int) -> dict:
        """SPEC §6 optimizer hyper-parameters, with the AdamW learning rates already width-scaled."""
        lr_scale = (shape.n_embd / 768) ** -0.5
        return {
            "matrix_lr": 0.02,
            "embedding_lr": 0.2 * lr_scale,
            "unembedding_lr": 0.004 * lr_scale,
            "lr_scale": lr_scale,
            "adam_betas": [0.8, 0.95],
            "adam_eps": 1e-10,
            "weight_decay": 0.0,
            "muon_momentum_start": 0.85,
            "muon_momentum_end": 0.95,
            "muon_momentum_ramp_steps": 300,
            "muon_nesterov": True,
            "ns_steps": 5,
            "ns_coefficients": [3.4445, -4.7750, 2.0315],
            "warmup_ratio": 0.0,
            "warmdown_ratio": 0.2,
            "final_lr_frac": 0.0,
            "grad_clip": 1.0,
        }

    def memory_terms(self, shape: ModelShape, world_size: int, precision: Precision) -> MemoryTerms:
        """SPEC §5 and chatplan_train's layout (`chatplan_train/optim.py`):
        - weights: fp32 masters, except `wte` which is stored in the embedding dtype; flat buffers;
        - gradients: the parameter's dtype, full on every rank, in persistent flat buffers that are
          zeroed (not freed) after each step, so they exist at every moment of the step;
        - optimizer state: only for the parameters a rank owns (`chatplan.layout.owner_map`);
        - under CUDA autocast, the bf16 casts of the fp32 matrices and lm_head, saved for backward.
        """
        counts = self.param_counts(shape)
        emb = precision.embedding_bytes
        matmul_weights = counts.total - counts.lookup  # fp32 everywhere; wte is a lookup table
        weights = 4 * matmul_weights + emb * counts.lookup
        shapes = self.param_shapes(shape)
        state = optimizer_state_bytes(shapes, emb)
        owners = owner_map(shapes, world_size, emb)
        return MemoryTerms(
            weights=weights,
            gradients=weights,
            optimizer_state_per_rank=tuple(rank_loads(state, owners, world_size)),
            weight_copies=precision.matmul_bytes * matmul_weights if precision.autocast else 0,
            optimizer_workspace=muon_workspace(shapes, owners, precision.newton_schulz_bytes),
            comm_scratch=min(COMM_BUCKET_BYTES, weights),
            activation_bytes_per_token=activation_bytes_per_token(shape, precision),
            loss_bytes_per_token=(logits_saved_bytes_per_token(shape, precision)
                                  + logits_backward_bytes_per_token(shape, precision)),
            loss_fixed_bytes=fused_loss_fixed_bytes(shape, precision),
        )

    def step_terms(self, shape: ModelShape, world_size: int, precision: Precision) -> StepTerms:
        counts = self.param_counts(shape)
        shapes = self.param_shapes(shape)
        owners = owner_map(shapes, world_size, precision.embedding_bytes)
        per_rank = [0.0] * world_size
        for name, (rows, cols) in shapes.items():
            if name not in ADAMW_PARAMS_2025:
                per_rank[owners[name]] += newton_schulz_flops(rows, cols)
        weights = 4 * (counts.total - counts.lookup) + precision.embedding_bytes * counts.lookup
        return StepTerms(
            timed_flops_per_token=6 * counts.matmul + ATTENTION_TIME_FACTOR * self.attention_flops_per_token(shape),
            memory_bytes_per_token=(ELEMENTWISE_BYTES_PER_LAYER_WIDTH * shape.n_layer * shape.n_embd
                                    + LOGITS_BYTES_PER_VOCAB * shape.padded_vocab_size),
            optimizer_flops_busiest_rank=max(per_rank),
            sync_bytes_per_rank=3 * weights,  # all-reduce of gradients (2x) and broadcast of weights (1x)
        )


NANOCHAT_2025 = Nanochat2025()

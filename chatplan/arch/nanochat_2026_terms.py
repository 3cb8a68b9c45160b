"""The memory and time terms of nanochat-2026 (SPEC-2026 §8-§10), for the generic models.

What is derived and what is fitted, and from which evidence:
- Resident memory is derived from the optimizer's layout (§10): bf16 wte and value embeddings, fp32
  everything else, full-size gradients on every rank, AdamW moments for this rank's 1/W slice (tensors
  under 1,024 elements replicated), Muon momentum + NorMuon's factored second moment for ceil(K/W)
  matrices of each shape group, and the stacked fp32 gradients of every Muon group alive during step()
  (plus a stacked copy of the parameters at world size 1).
- Activations are counted tensor by tensor (below); what torch.compile keeps on top of that cannot be
  derived from the source: one constant, INDUCTOR_EXTRA_BYTES_PER_LAYER_WIDTH, is fitted to FIELD N2
  (d24 bf16, batch 16 x 4 on 8xH100, 62,386.67 MiB allocated). N3 (batch 32 at d24 does not fit) and N4
  (the scripts' batch per depth fits) then check it.
- fp8 (§9), through torchao in the trainer: no bf16 weight copies for the 6L+1 fp8 linears, and compiled,
  the linears' inputs kept as 1-byte fp8 copies (fp8_input_width: the tensors read off inductor's
  partition, the byte off §9's d26 measurement); the matmuls run faster by FP8_MATMUL_TIME_FACTOR,
  fitted to §9's d26 measurement (630K -> 740K tok/s, +17 %), never to FIELD N1, which checks it.
- Attention (§8): FA3 on Hopper skips what the window masks; elsewhere nanochat falls back to SDPA,
  which needs a dense T x T mask for sliding windows and computes every score.
"""

from __future__ import annotations

import math

from chatplan.arch.base import MemoryTerms, ModelShape, StepTerms
from chatplan.arch.nanochat_2025 import ATTENTION_TIME_FACTOR, ELEMENTWISE_BYTES_PER_LAYER_WIDTH, LOGITS_BYTES_PER_VOCAB
from chatplan.arch.nanochat_2025 import newton_schulz_flops as polar_express_flops
from chatplan.precision import Precision

ADAMW_SCATTER_MIN_NUMEL = 1_024  # smaller AdamW tensors are all-reduced and their state replicated (§10)
FP8_BYTES = 1  # e4m3: the saved fp8 copy of an input
FP8_MIN_DIM = 128  # a Linear is converted when both dims are multiples of 16 and the smaller is >= 128 (§9)

# --- fitted constants ---------------------------------------------------------------------------------
# What the compiled graph keeps beyond the tensors counted below, in bytes per token per layer per unit
# of width. Fitted to FIELD N2 (62,386.67 MiB at d24, batch 16 on 8xH100 in bf16) with the loss path at
# 2 bytes per logit (loss_bytes_per_token). Inductor's CPU partition of the same model keeps only 0.62
# (benchmarks/results/inductor-partition-2026-12-03.md), so ~7.4 bytes·d per layer (~8 GiB at N2) are not
# explained by what the CPU partition shows: a CUDA-side difference or a batch-independent term (the two
# held-out d16 runs of chatplan/field_heldout.json, at batch 16 and 32, put ~3 GiB in the intercept). Checked
# on the held-out 2026 bf16 runs (d2, d16 x2): within +9 % / -4 %.
INDUCTOR_EXTRA_BYTES_PER_LAYER_WIDTH = 7.98
# fp8 GEMM time relative to bf16 for the converted linears. H100's fp8 peak is twice its bf16 peak; the
# tensorwise recipe's casts are counted separately (memory-bound bytes), so this is the GEMMs alone.
# Fitted to SPEC-2026 §9: d26 on 8xH100 ran 630K tok/s in bf16 and 740K in fp8 (+17 %).
FP8_MATMUL_TIME_FACTOR = 0.73

# --- assumptions (stated so they can be checked) -------------------------------------------------------
# Extra memory-bound traffic of the 2026 block over late 2025's, bytes per token per layer per unit of
# width: the resid/x0 mixing reads x and x0 and writes x (3 bf16 tensors forward, twice that backward),
# and on value-embedding layers the gather, the gate and the add into v (about the same again).
MIXING_BYTES_PER_LAYER_WIDTH = 18
VALUE_EMBED_BYTES_PER_LAYER_WIDTH = 18
# fp8 casts: every converted linear casts its input (forward) and its output gradient (backward) from
# bf16 to fp8 (read 2 bytes, write 1): 9 d-wide inputs and 9 d-wide gradients per layer.
FP8_CAST_BYTES_PER_LAYER_WIDTH = 18 * 3
# SDPA with a dense mask (nanochat's fallback off Hopper): every score of the T x T matrix is computed and
# the kernel runs at about this share of the matmul rate (nanochat warns "utilization will be terrible").
SDPA_MASKED_EFFICIENCY = 0.25


def fp8_dims(dims: tuple[int, ...]) -> bool:
    """nanochat/fp8.py converts Linear weights whose dims are multiples of 16 with min >= 128 (§9)."""
    return len(dims) == 2 and all(x % 16 == 0 for x in dims) and min(dims) >= FP8_MIN_DIM


def is_fp8_linear(name: str, dims: tuple[int, ...]) -> bool:
    """A block matrix or lm_head with fp8 dims (the gates and embeddings stay bf16)."""
    return (name.startswith("transformer.h.") or name == "lm_head.weight") and fp8_dims(dims)


def _numel(dims: tuple[int, ...]) -> int:
    return math.prod(dims)


def storage_bytes(name: str, precision: Precision) -> int:
    """wte and the value embeddings are stored in the compute dtype; every other tensor is an fp32 master."""
    lookup = name == "transformer.wte.weight" or name.startswith("value_embeds.")
    return precision.embedding_bytes if lookup else 4


def muon_groups(shapes: dict[str, tuple[int, ...]], is_muon) -> dict[tuple[int, ...], int]:
    """Matrices per shape group (the Muon groups of setup_optimizer)."""
    groups: dict[tuple[int, ...], int] = {}
    for name, dims in shapes.items():
        if is_muon(name):
            groups[dims] = groups.get(dims, 0) + 1
    return groups


def optimizer_state_per_rank(shapes: dict[str, tuple[int, ...]], is_muon, world: int,
                             precision: Precision) -> tuple[int, ...]:
    """Bytes of MuonAdamW state on each rank (§10).

    AdamW: exp_avg and exp_avg_sq in the parameter's dtype, a 1/W slice of the large tables, the small
    tensors replicated. Muon: rank r updates matrices [r·c, (r+1)·c) of each group of K (c = ceil(K/W)),
    and holds their momentum and NorMuon second moment. nanochat also keeps zero state for the padding
    slots (K rounded up to c·W) on the last ranks; chatplan's trainer does not, so those ranks hold less.
    Rank 0 always owns a full chunk: the peak (max over ranks) is the same either way."""
    adamw = 0
    for name, dims in shapes.items():
        if is_muon(name):
            continue
        numel, b = _numel(dims), storage_bytes(name, precision)
        adamw += 2 * b * (numel if numel < ADAMW_SCATTER_MIN_NUMEL else numel // world)
    per_rank = [adamw] * world
    for (rows, cols), k in muon_groups(shapes, is_muon).items():
        chunk = -(-k // world)
        second_moment = rows if rows >= cols else cols  # NorMuon: per row (tall) or per column (wide)
        for r in range(world):
            owned = max(0, min(chunk, k - r * chunk))
            per_rank[r] += owned * 4 * (rows * cols + second_moment)
    return tuple(per_rank)


def optimizer_workspace(shapes: dict[str, tuple[int, ...]], is_muon, world: int, precision: Precision) -> int:
    """Alive during step(): every group's zero-padded stacked fp32 gradients (and at world size 1 a stacked
    copy of the parameters too, §10), plus Polar Express's buffers on the largest owned chunk."""
    stacked, worst_chunk = 0, 0
    ns = precision.newton_schulz_bytes
    for (rows, cols), k in muon_groups(shapes, is_muon).items():
        padded = -(-k // world) * world
        stacked += padded * rows * cols * 4
        owned = padded // world
        m = min(rows, cols)
        worst_chunk = max(worst_chunk, owned * (3 * rows * cols * ns + 2 * m * m * ns))
    return stacked * (2 if world == 1 else 1) + worst_chunk


def weight_copy_bytes(shapes: dict[str, tuple[int, ...]], is_linear, precision: Precision) -> int:
    """The Linear casts its fp32 master to the activation dtype each forward, and autograd saves that
    copy for the input gradient: 2 bytes per weight in bf16, none in fp32. torchao's Float8Linear saves the
    fp32 master itself (a parameter, already counted) and casts it again in backward: none for the fp8
    linears (measured with saved-tensor hooks)."""
    if precision.compute_dtype == "float32":
        return 0
    total = 0
    for name, dims in shapes.items():
        if is_linear(name) and not (precision.fp8 and is_fp8_linear(name, dims)):
            total += _numel(dims) * precision.activation_bytes
    return total


def activation_bytes_per_token(shape: ModelShape, precision: Precision) -> float:
    """Saved for backward per token of a micro-batch.

    Per layer (width d, kv width k, a = activation bytes), what the block's backward needs:
      mixing     the residual before x = λr·x + λ0·x0 (for λr's gradient)              d
      attention  the norm input and its output (q/k/v input), q and k after QK-norm,
                 v (after the value embedding), the attention output (c_proj input)   3d + 2k + d ... (as 2025)
      value emb. on VE layers: the looked-up embedding (the gate's gradient needs it)  k x (n_ve / L)
      MLP        the norm input and output, the c_fc output (for relu^2's gradient) and
                 relu^2 (c_proj's input, for its weight gradient)                       2d + 4d + 4d
      fp32       norm statistics and the attention logsumexp                             small
    plus what inductor keeps beyond these (fitted, see INDUCTOR_EXTRA_BYTES_PER_LAYER_WIDTH) when compiled.
    Eager (the CPU path): rotary and QK-norm inputs and relu^2 are saved too, and SDPA with a mask keeps
    the fp32 attention probabilities (H x T per token).
    fp8 (torchao): eager, the converted linears save the same bf16 inputs; only the weight copies go (see
    weight_copy_bytes). Compiled, the fp8 cast sits in the graph and the linears' inputs are kept as
    1-byte fp8 copies: see fp8_input_width.
    Model level: the embedding output, x0, the smear input, the backout cache, the final norm's input
    and output, token ids and targets.
    """
    d, k, h, L = shape.n_embd, shape.kv_dim, shape.n_head, shape.n_layer
    a = precision.activation_bytes
    ve_share = len(shape.value_embed_layers) / L
    stats = 4 * (2 + h + shape.n_kv_head + h)  # two block norms' rstd, QK-norm rstd, logsumexp per head
    if precision.compile:
        wide = d + (4 * d + 2 * k) + k * ve_share + (2 * d + 4 * d + 4 * d)
        per_layer = a * wide + INDUCTOR_EXTRA_BYTES_PER_LAYER_WIDTH * d + stats
    else:
        # + the rotary outputs (QK-norm inputs) and c_proj's contiguous input copy
        wide = d + (4 * d + 4 * k + d) + k * ve_share + (2 * d + 4 * d + 4 * d)
        # SDPA with a boolean window mask keeps out + logsumexp like the flash path, no T x T probabilities
        # (measured with saved-tensor hooks: tests/test_memory_vs_trainer.py)
        per_layer = a * wide + stats
    model_level = a * 6 * d + 8 * 2
    # compiled fp8: the converted linears' inputs kept as their 1-byte fp8 copies (fp8_input_width)
    return L * (per_layer - (a - FP8_BYTES) * fp8_input_width(shape, precision)) + model_level


def fp8_input_width(shape: ModelShape, precision: Precision) -> int:
    """Elements per token per layer whose saved bf16 copy a compiled fp8 block replaces with a 1-byte one.

    With torchao's tensorwise Float8Linear under torch.compile, a converted linear's cast to fp8 (and its
    per-tensor scale) is part of the graph, and backward needs that fp8 input again for the weight
    gradient. So an input whose every consumer is an fp8 linear no longer has to be kept in bf16: the
    attention norm's output (c_q, c_k, c_v), the MLP norm's output (c_fc) and relu^2 (the MLP's c_proj),
    6d per layer. The attention output (c_proj's input) stays: the attention backward keeps it.
    What is kept instead, and the evidence:
    - inductor's partition of the trainer's model, compiled on this CPU (chatplan_train.saved_tensors
      --fp8), keeps neither copy of exactly these tensors (it recomputes norm -> cast from the residual
      and rstd, relu^2 -> cast from the c_fc output): 2 bytes x 6d = 12.0 bytes x d per layer fewer than
      bf16 at d4 (tests/test_memory_vs_trainer.py). That is the upper bound of the saving;
    - on CUDA the measured saving is half that, what keeping the 1-byte fp8 copies gives (2 - 1 bytes
      x 6d = 6 bytes x d per layer, as nanochat's own fp8 module saves by design, SPEC-2026 §9): §9's
      "~9 GB lower at d26" (torchao-era nanochat, batch 16: ~5-6 bytes x d per layer once the weight
      copies are taken off), and nanochat's fp8 d24 runs against N2 in bf16 at the same batch (held-out
      H13: ~6.4 bytes x d per layer beyond the weight copies).
    The planner uses the CUDA figure: the fp8 copy kept (1 byte per element). What the CUDA graph keeps
    on top (INDUCTOR_EXTRA_BYTES_PER_LAYER_WIDTH) is assumed to be the same in fp8 as in bf16."""
    if not (precision.fp8 and precision.compile):
        return 0
    d, k = shape.n_embd, shape.kv_dim
    attention_input = d if fp8_dims((d, d)) and fp8_dims((k, d)) else 0  # c_q, and c_k / c_v (k = kv width)
    mlp_input = d if fp8_dims((4 * d, d)) else 0
    relu2 = 4 * d if fp8_dims((d, 4 * d)) else 0
    return attention_input + mlp_input + relu2


def loss_bytes_per_token(shape: ModelShape, precision: Precision) -> float:
    """The B x T x V tensors of the loss at the start of backward.

    Compiled in bf16 on CUDA: 2 bytes per logit. SPEC-2026 §10 derives "logits bf16 + fp32 per micro-batch" from the
    source and adds "fusion may cut this"; it does: inductor keeps lm_head's bf16 output and per-row
    statistics only, and writes the logits' gradient into that storage (as late 2025,
    nanochat_2025.logits_backward_bytes_per_token). Measured bound: one A100 at d2, batch 64 x 256
    (16,384 tokens, V 32,768), allocated 1.39 GiB in all, <= 2.8 bytes per logit for the whole loss path
    (chatplan/field_heldout.json). Eager under bf16: the bf16 logits, their fp32 copy, and the fp32
    gradient created at the start of backward (2 + 4 + 4). In fp32 (CPU, eager): the softcap's tanh output
    and the log-softmax output, then the gradient."""
    v = shape.padded_vocab_size
    if precision.fused_loss:  # the CPU's chunked loss saves nothing per token (see loss_fixed_bytes)
        return 0
    if precision.compute_dtype == "float32":
        return (4 + 4 + 4) * v
    return 2 * v if precision.compile else (2 + 4 + 4) * v


def loss_fixed_bytes(shape: ModelShape, precision: Precision) -> int:
    """The CPU's fused chunked loss (chatplan_train.model.LinearSoftcapCrossEntropy, on lm_head's first V
    rows) computes lm_head's weight gradient in forward and keeps it, V x d fp32, whatever the batch."""
    return 4 * shape.vocab_size * shape.n_embd if precision.fused_loss else 0


def attention_seconds_factor(shape: ModelShape, precision: Precision) -> float:
    """The attention work the kernel really does, in units of the counted attention FLOPs' matmul time.

    Counted: 12·H·hd·min(w, T) per layer. Done by a causal kernel that skips masked blocks (FA3, or the
    flash path of full attention): the average position attends to min(pos, w) keys, i.e. w - w^2/(2T)
    (T/2 for a full layer), at flash attention's ~60 % of the matmul rate (the late-2025 factor 0.85 =
    0.5/0.6 per full layer). SDPA with a dense mask computes all T keys at SDPA_MASKED_EFFICIENCY.
    """
    T = shape.sequence_len
    counted = sum(min(w, T) for w in shape.window_sizes)
    flash_efficiency = 0.5 / ATTENTION_TIME_FACTOR
    if precision.attention_kernel in ("sdpa-masked", "sdpa-dense-mask") and any(w < T for w in shape.window_sizes):
        done = len(shape.window_sizes) * T
        return done / counted / SDPA_MASKED_EFFICIENCY
    done = sum(min(w, T) - min(w, T) ** 2 / (2 * T) for w in shape.window_sizes)
    return done / counted / flash_efficiency


def memory_terms(shapes: dict[str, tuple[int, ...]], shape: ModelShape, world: int, precision: Precision,
                 is_muon, is_linear) -> MemoryTerms:
    weights = sum(_numel(dims) * storage_bytes(name, precision) for name, dims in shapes.items())
    # AdamW's reduce-scatter writes this rank's gradient slice of every large AdamW tensor
    scatter = sum(_numel(dims) * storage_bytes(name, precision) // world for name, dims in shapes.items()
                  if not is_muon(name) and _numel(dims) >= ADAMW_SCATTER_MIN_NUMEL) if world > 1 else 0
    return MemoryTerms(
        weights=weights,
        gradients=weights,
        optimizer_state_per_rank=optimizer_state_per_rank(shapes, is_muon, world, precision),
        weight_copies=weight_copy_bytes(shapes, is_linear, precision),
        optimizer_workspace=optimizer_workspace(shapes, is_muon, world, precision),
        comm_scratch=scatter,
        activation_bytes_per_token=activation_bytes_per_token(shape, precision),
        loss_bytes_per_token=loss_bytes_per_token(shape, precision),
        loss_fixed_bytes=loss_fixed_bytes(shape, precision),
    )


def step_terms(shapes: dict[str, tuple[int, ...]], shape: ModelShape, world: int, precision: Precision,
               is_muon, is_linear, attention_flops: int) -> StepTerms:
    fp8_params = sum(_numel(dims) for n, dims in shapes.items()
                     if is_linear(n) and precision.fp8 and is_fp8_linear(n, dims))
    other_params = sum(_numel(dims) for n, dims in shapes.items() if is_linear(n)) - fp8_params
    timed = (6 * other_params + 6 * fp8_params * FP8_MATMUL_TIME_FACTOR
             + attention_flops * attention_seconds_factor(shape, precision))
    L, d = shape.n_layer, shape.n_embd
    per_layer = ELEMENTWISE_BYTES_PER_LAYER_WIDTH + MIXING_BYTES_PER_LAYER_WIDTH
    per_layer += VALUE_EMBED_BYTES_PER_LAYER_WIDTH * len(shape.value_embed_layers) / L
    if precision.fp8:
        per_layer += FP8_CAST_BYTES_PER_LAYER_WIDTH
    memory_bytes = per_layer * L * d + LOGITS_BYTES_PER_VOCAB * shape.padded_vocab_size
    owned_flops = 0.0
    for (rows, cols), k in muon_groups(shapes, is_muon).items():
        owned_flops += -(-k // world) * polar_express_flops(rows, cols)
    weights = sum(_numel(dims) * storage_bytes(name, precision) for name, dims in shapes.items())
    return StepTerms(
        timed_flops_per_token=timed,
        memory_bytes_per_token=memory_bytes,
        optimizer_flops_busiest_rank=owned_flops,
        sync_bytes_per_rank=2 * weights,  # reduce-scatter of the gradients, all-gather of the weights
    )

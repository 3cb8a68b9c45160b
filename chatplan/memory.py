"""Per-rank peak memory of the bundled trainer, term by term, and the automatic device batch size.

What is resident on every rank (SPEC §5, and chatplan_train's layout):
- weights: fp32 masters, except `wte` which is bf16 on CUDA;
- gradients: the parameter's dtype, full on every rank (they are all-reduced, not sharded);
- optimizer state: only for the parameters this rank owns (`chatplan.sharding.owner_map`),
  computed for the most-loaded rank;
- under CUDA autocast, the bf16 casts of the fp32 matrices and lm_head, saved for backward;
- activations saved for backward (per micro-batch), and the logits path of the loss.

The peak moment. Within a step the allocated memory peaks where the forward pass has finished and
the loss backward starts: every saved activation is alive, plus the logits path. Gradients are set to
None after every optimizer step, so with one micro-step per step they are born during backward,
while activations die (we count them absent at the peak; the optimizer-step moment, below, covers the
other side). With gradient accumulation, micro-steps 2..N run their forward with full gradients
resident. The optimizer step is a second candidate peak (weights + gradients + state + its working
buffers, activations freed); the larger of the two is reported.

Three figures, always named: `peak_allocated_gib` (comparable to torch.cuda.max_memory_allocated),
`peak_reserved_gib` (+ the allocator's cache), `peak_device_gib` (+ CUDA context, comparable to
nvidia-smi). GiB = 2^30 bytes. The fit verdict compares `peak_device_gib` with the catalog capacity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

from chatplan.counts import block_matrix_shapes, param_counts, param_shapes
from chatplan.errors import InvalidInput
from chatplan.shape import ModelShape
from chatplan.sharding import optimizer_state_bytes, owner_map, rank_loads

GIB = 2**30

# --- calibration constants (few, named, with their evidence) ---------------------------------------
# CUDA context + cuBLAS workspace + NCCL buffers per process. SPEC §5: the context costs ~0.5-1 GB.
CUDA_CONTEXT_GIB = 0.75
# The margin under capacity inside which a fit is called "tight": the model's stated uncertainty.
FIT_MARGIN_FRACTION = 0.05
# Allocator cache with gradient accumulation, as a multiple of the resident gradient bytes.
# Evidence (SPEC §5, 8xH100 80 GB, T 2,048): term by term, d32 at batch 8 allocates ~56 GiB, yet
# nvidia-smi showed ~78 GB; d20 at batch 32 (no accumulation) allocates ~78 GiB and still ran, so
# the gap is not a flat share of memory: it appears when gradients stay resident across micro-steps
# (the compiled backward returns fresh gradients that are added into the resident ones after the
# graph ends, and the allocator keeps those gradient-sized blocks cached beside the cycling
# activation blocks). PyTorch's caching allocator releases cached blocks and retries before it
# reports an OOM, so this cache is elastic: it is what nvidia-smi shows, never a cause of OOM. The
# model lets it grow to k x gradients but only into memory left free above the fit margin.
# k = 3.0 brings d32/B8 to 75.2 GiB on the device (inside SPEC's 74..79.19). Not measured here (no
# GPU yet): refit from `benchmarks/results/` runs (max_memory_reserved - max_memory_allocated).
ACCUMULATION_RESERVE_PER_GRAD_BYTE = 3.0
# Communication bucket the trainer flattens gradients into for the all-reduce (transient).
COMM_BUCKET_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ExecutionMode:
    """How the step runs: what dtype activations have and what the kernels save."""

    device_type: str  # "cuda" | "cpu"
    compiled: bool  # torch.compile (inductor recomputes cheap elementwise ops in backward)

    @property
    def activation_bytes(self) -> int:
        return 2 if self.device_type == "cuda" else 4  # bf16 autocast on CUDA, fp32 on CPU

    @property
    def embedding_bytes(self) -> int:
        return 2 if self.device_type == "cuda" else 4  # wte is kept in bf16 on CUDA

    @property
    def label(self) -> str:
        dtype = "bf16" if self.activation_bytes == 2 else "fp32"
        return f"{self.device_type} {dtype} {'compiled' if self.compiled else 'eager'}, flash attention"


def default_mode(device_type: str) -> ExecutionMode:
    return ExecutionMode(device_type=device_type, compiled=device_type == "cuda")


def activation_bytes_per_token(shape: ModelShape, mode: ExecutionMode) -> float:
    """Bytes saved for backward per token of a micro-batch, tensor by tensor (SPEC §6 model).

    Per block, eager (what autograd saves; unique storages):
      attention: x (norm input), x_n (q/k/v input), q and k after rotary (QK-norm inputs), q and k
                 after QK-norm and v (SDPA inputs), the SDPA output (its (B, T, H*hd) view is c_proj's
                 input: the flash kernels lay it out so no copy is made); fp32 softmax logsumexp (one
                 per head) and the norms' fp32 rstd (one per row: 2 block norms, h + kv QK-norms).
      MLP:       x (norm input), x_n (c_fc input), relu(h) (relu's output, also square's input),
                 relu(h)^2 (c_proj input).
      (The pre-rotary q and k are not saved: the cos/sin tables need no gradient.)
    Compiled (inductor): the rotary outputs and relu(h) are recomputed from what is kept; the c_fc
    output h is kept in their place.
    Model level: the embedding output (post-embedding norm input), the final norm's input and output
    (lm_head input), two rstd, and the int64 token ids and targets.
    Checked against autograd's saved tensors on CPU (tests/test_memory_vs_trainer.py).
    """
    d, h, kv, hd, L = shape.n_embd, shape.n_head, shape.n_kv_head, shape.head_dim, shape.n_layer
    kvd = kv * hd
    a = mode.activation_bytes
    if mode.compiled:
        wide = 6 * d + 2 * kvd + 8 * d  # x, x_n, q_n, out, x, x_n | k_n, v | h, relu(h)^2
    else:
        wide = 7 * d + 3 * kvd + 8 * d  # x, x_n, q_rot, q_n, out, x, x_n | k_rot, k_n, v | r, r^2
    fp32_stats = 4 * (2 + h + kv + h)  # two block norms' rstd, QK-norm rstd, logsumexp per head
    per_layer = a * wide + fp32_stats
    model_level = a * 3 * d + 4 * 2 + 8 * 2  # emb, x_L, x_L normed; two rstd; token ids and targets
    return L * per_layer + model_level


def logits_saved_bytes_per_token(shape: ModelShape, mode: ExecutionMode) -> float:
    """The loss path's B x T x V tensors saved for backward, per token.

    Eager fp32: the tanh output and the log-softmax output (2 x 4 bytes). CUDA, compiled: lm_head's
    bf16 logits are materialised in fp32 for the soft-capped cross-entropy (SPEC §5: 4 GiB at d32,
    B=8) and that fp32 tensor is what the fused backward reads (4).
    """
    return (4 if mode.activation_bytes == 2 else 8) * shape.vocab_size


def logits_backward_bytes_per_token(shape: ModelShape, mode: ExecutionMode) -> float:
    """Extra B x T x V bytes at the start of the loss backward: the gradient of the logits (fp32 in
    eager mode; the fused compiled backward writes the bf16 gradient lm_head's backward consumes)."""
    return (2 if mode.activation_bytes == 2 else 4) * shape.vocab_size


@dataclass(frozen=True)
class MemoryEstimate:
    device_batch_size: int
    grad_accum_steps: int
    # resident terms, bytes
    weights: int
    gradients: int
    optimizer_state: int  # most-loaded rank
    autocast_weight_copies: int
    # per micro-batch
    activations: int
    logits: int
    # other moments and overheads
    optimizer_step_transient: int
    allocator_reserve: int  # elastic cache (see ACCUMULATION_RESERVE_PER_GRAD_BYTE)
    cuda_context: int
    peak_moment: str
    backward_peak_gib: float  # allocated at the start of backward (grows with batch and context)
    optimizer_peak_gib: float  # allocated during the optimizer step (independent of batch)
    peak_allocated_gib: float
    peak_reserved_gib: float
    peak_device_gib: float
    capacity_gib: float
    headroom_gib: float  # capacity - peak_device
    margin_gib: float
    verdict: str  # "fits" | "tight" | "oom"

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1024)
def optimizer_state_loads(shape: ModelShape, world_size: int, embedding_bytes: int) -> tuple[int, ...]:
    """Optimizer-state bytes per rank under the trainer's ownership (cached: it walks 6L+2 tensors)."""
    shapes = param_shapes(shape)
    state = optimizer_state_bytes(shapes, embedding_bytes)
    return tuple(rank_loads(state, owner_map(shapes, world_size, embedding_bytes), world_size))


@dataclass(frozen=True)
class Resident:
    """What a rank holds whatever the batch: the terms that match the trainer's tensors byte for byte."""

    weights: int
    gradients: int  # same dtypes as the weights, full on every rank
    optimizer_state: int  # the most-loaded rank
    optimizer_state_per_rank: tuple[int, ...]
    autocast_weight_copies: int  # CUDA autocast: bf16 casts of the fp32 matmul weights, saved for backward
    optimizer_workspace: int  # one update's temporaries (Newton-Schulz or AdamW)


@lru_cache(maxsize=1024)
def resident_bytes(shape: ModelShape, world_size: int, device_type: str) -> Resident:
    """Weights, gradients and optimizer state per rank, exactly as the trainer allocates them.

    Cached: a pure function of frozen inputs, and the ownership walk over 6L+2 tensors is the slowest
    part of a plan.
    """
    emb = default_mode(device_type).embedding_bytes
    counts = param_counts(shape)
    matmul_weights = counts.total - counts.wte  # fp32 everywhere; wte is a lookup table
    weights = 4 * matmul_weights + emb * counts.wte
    shapes = param_shapes(shape)
    state = optimizer_state_bytes(shapes, emb)
    loads = tuple(rank_loads(state, owner_map(shapes, world_size, emb), world_size))
    m, n = max((sorted(dims) for _, dims in block_matrix_shapes(shape)), key=lambda mn: mn[0] * mn[1])
    ns_bytes = 2 if device_type == "cuda" else 4  # Newton-Schulz runs in bf16 on CUDA, fp32 on CPU
    return Resident(
        weights=weights,
        gradients=weights,
        optimizer_state=max(loads),
        optimizer_state_per_rank=loads,
        autocast_weight_copies=2 * matmul_weights if device_type == "cuda" else 0,
        # Newton-Schulz on the largest matrix (X, its update, A = X X^T, B), or AdamW's two
        # parameter-sized fp32 temporaries on lm_head
        optimizer_workspace=max(ns_bytes * (2 * m * n + 2 * m * m), 2 * 4 * counts.lm_head),
    )


def _peaks(shape: ModelShape, device_batch_size: int, grad_accum_steps: int, mode: ExecutionMode,
           resident: Resident, capacity_gib: float) -> tuple[int, int, int, int, int, int, int]:
    """(activations, logits, transient, backward peak, optimizer peak, allocator cache, context) bytes."""
    tokens = device_batch_size * shape.sequence_len
    cuda = mode.device_type == "cuda"
    activations = int(tokens * activation_bytes_per_token(shape, mode))
    logits = int(tokens * (logits_saved_bytes_per_token(shape, mode) + logits_backward_bytes_per_token(shape, mode)))
    grads_resident = resident.gradients if grad_accum_steps > 1 else 0
    backward = (resident.weights + grads_resident + resident.optimizer_state + resident.autocast_weight_copies
                + activations + logits)
    # Optimizer step: every gradient exists, activations are gone; working buffers are one
    # communication bucket and one update's temporaries.
    transient = min(COMM_BUCKET_BYTES, resident.gradients) + resident.optimizer_workspace
    optimizer = resident.weights + resident.gradients + resident.optimizer_state + transient
    context = int(CUDA_CONTEXT_GIB * GIB) if cuda else 0
    free_above_margin = capacity_gib * (1 - FIT_MARGIN_FRACTION) * GIB - max(backward, optimizer) - context
    reserve = int(min(ACCUMULATION_RESERVE_PER_GRAD_BYTE * grads_resident, max(0.0, free_above_margin)))
    return activations, logits, transient, backward, optimizer, reserve if cuda else 0, context


def estimate_memory(
    shape: ModelShape,
    device_batch_size: int,
    grad_accum_steps: int,
    world_size: int,
    capacity_gib: float,
    mode: ExecutionMode,
) -> MemoryEstimate:
    resident = resident_bytes(shape, world_size, mode.device_type)
    activations, logits, transient, backward, optimizer, reserve, context = _peaks(
        shape, device_batch_size, grad_accum_steps, mode, resident, capacity_gib)
    peak_allocated = max(backward, optimizer)
    device_gib = (peak_allocated + reserve + context) / GIB
    margin = FIT_MARGIN_FRACTION * capacity_gib
    return MemoryEstimate(
        device_batch_size=device_batch_size,
        grad_accum_steps=grad_accum_steps,
        weights=resident.weights,
        gradients=resident.gradients,
        optimizer_state=resident.optimizer_state,
        autocast_weight_copies=resident.autocast_weight_copies,
        activations=activations,
        logits=logits,
        optimizer_step_transient=transient,
        allocator_reserve=reserve,
        cuda_context=context,
        peak_moment="start of backward" if backward >= optimizer else "optimizer step",
        backward_peak_gib=backward / GIB,
        optimizer_peak_gib=optimizer / GIB,
        peak_allocated_gib=peak_allocated / GIB,
        peak_reserved_gib=(peak_allocated + reserve) / GIB,
        peak_device_gib=device_gib,
        capacity_gib=capacity_gib,
        headroom_gib=capacity_gib - device_gib,
        margin_gib=margin,
        verdict=fit_verdict(device_gib, capacity_gib),
    )


def fit_verdict(device_gib: float, capacity_gib: float) -> str:
    """`oom` above capacity, `tight` within the margin under it, else `fits` (on peak_device_gib)."""
    if device_gib > capacity_gib:
        return "oom"
    return "tight" if device_gib > capacity_gib * (1 - FIT_MARGIN_FRACTION) else "fits"


def batch_candidates(sequences_per_rank: int) -> list[int]:
    """Per-GPU batch sizes the search may pick: powers of two dividing sequences per rank per step."""
    out, b = [], 1
    while b <= sequences_per_rank:
        if sequences_per_rank % b == 0:
            out.append(b)
        b *= 2
    return out


def check_device_batch(device_batch_size: int, sequences_per_rank: int, total_batch_size: int,
                       seq_len: int, world_size: int) -> int:
    """Gradient accumulation for an explicit batch; InvalidInput naming valid values if it doesn't divide."""
    if device_batch_size < 1 or sequences_per_rank % device_batch_size:
        valid = [b for b in range(1, sequences_per_rank + 1) if sequences_per_rank % b == 0]
        raise InvalidInput(
            f"device batch size {device_batch_size} does not divide {total_batch_size:,} tokens / "
            f"({seq_len:,} x {world_size} GPUs) = {sequences_per_rank} sequences per GPU; valid: "
            f"{', '.join(map(str, valid))}")
    return sequences_per_rank // device_batch_size


def choose_device_batch(
    shape: ModelShape,
    sequences_per_rank: int,
    world_size: int,
    capacity_gib: float,
    mode: ExecutionMode,
) -> MemoryEstimate | None:
    """The largest power-of-two per-GPU batch that is not `oom`, or None when even batch 1 is."""
    resident = resident_bytes(shape, world_size, mode.device_type)
    capacity = capacity_gib * GIB
    for batch in reversed(batch_candidates(sequences_per_rank)):
        accum = sequences_per_rank // batch
        _, _, _, backward, optimizer, reserve, context = _peaks(shape, batch, accum, mode, resident, capacity_gib)
        if max(backward, optimizer) + reserve + context <= capacity:
            return estimate_memory(shape, batch, accum, world_size, capacity_gib, mode)
    return None

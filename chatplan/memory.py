"""Per-rank peak memory of the bundled trainer, term by term, and the automatic device batch size.

What is resident on every rank (SPEC §5, and chatplan_train's layout, `chatplan_train/optim.py`):
- weights: fp32 masters, except `wte` which is bf16 on CUDA; they live in flat buffers;
- gradients: the parameter's dtype, full on every rank, in persistent flat buffers that are zeroed
  (not freed) after each step, so they exist at every moment of the step;
- optimizer state: only for the parameters this rank owns (`chatplan.sharding.owner_map`),
  computed for the most-loaded rank;
- under CUDA autocast, the bf16 casts of the fp32 matrices and lm_head, saved for backward;
- activations saved for backward (per micro-batch), and the logits path of the loss.

The peak moment. Within a step the allocated memory peaks where the forward pass has finished and
the loss backward starts: every saved activation is alive, plus the logits path (and, on CUDA, the
fp32 gradient of the logits that the loss backward creates first). Backward then frees activations
layer by layer while it adds into the already-allocated gradient buffers, so memory only falls.
The optimizer step is a second candidate: weights + gradients + state + its working buffers (the
stacked Newton-Schulz of the largest group of same-shaped matrices this rank owns), with the
activations gone. The larger of the two is reported, and which one it was.

Three figures, always named: `peak_allocated_gib` (comparable to torch.cuda.max_memory_allocated),
`peak_reserved_gib` (+ the allocator's cache), `peak_device_gib` (+ CUDA context, comparable to
nvidia-smi). GiB = 2^30 bytes. The fit verdict compares `peak_device_gib` with the catalog capacity.
docs/memory.md derives every term.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

from chatplan.counts import param_counts, param_shapes
from chatplan.errors import InvalidInput
from chatplan.shape import ModelShape
from chatplan.sharding import optimizer_state_bytes, owner_map, rank_loads

GIB = 2**30

# --- calibration constants (few, named, with their evidence) ---------------------------------------
# CUDA context + cuBLAS workspace + NCCL buffers per process. SPEC §5: the context costs ~0.5-1 GB.
CUDA_CONTEXT_GIB = 0.75
# The margin under capacity inside which a fit is called "tight": the model's stated uncertainty.
FIT_MARGIN_FRACTION = 0.05
# Allocator cache, as a multiple of the gradient bytes. Evidence (SPEC §5, 8xH100 80 GB, T 2,048):
# term by term, d32 at batch 8 allocates ~50 GiB, yet nvidia-smi showed ~78 GB, while d20 at batch
# 32 allocates ~75 GiB and still ran: the gap is cache, not demand. PyTorch's caching allocator
# keeps freed blocks (gradient-sized ones from the compiled backward's fresh gradients, activation
# blocks of several micro-steps) and releases them and retries before it reports an OOM, so the
# cache is elastic: it is what nvidia-smi shows, never a cause of OOM. The model lets it grow to
# k x gradient bytes, but only into memory left free above the fit margin. k = 3.6 brings d32/B8 to
# ~75 GiB on the device (SPEC: 74..79.19). Not measured here (no GPU lent yet): the first constant
# to refit from `benchmarks/results/` runs (max_memory_reserved - max_memory_allocated).
ALLOCATOR_CACHE_PER_GRAD_BYTE = 3.6
# The trainer all-reduces its flat gradient buffers in place, in chunks of 64 Mi elements: the
# backend's scratch is at most one chunk.
COMM_BUCKET_BYTES = 64 * 2**20 * 4


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
    def fused_loss(self) -> bool:
        """The trainer's CPU path computes the loss and its gradient chunk by chunk in the forward
        (chatplan_train.model.LinearSoftcapCrossEntropy): no B x T x V tensor is ever saved."""
        return self.device_type == "cpu"

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
    Compiled (inductor): pointwise work is recomputed in backward from what is kept: the rotary
    outputs from q and k, relu(h) and relu(h)^2 from the c_fc output h, which is kept instead.
    Model level: the embedding output (post-embedding norm input), the final norm's input and output
    (lm_head's input; on the CPU path the fused loss keeps its input gradient dx instead, same size),
    two rstd, and the int64 token ids and targets.
    Checked against autograd's saved tensors on CPU (tests/test_memory_vs_trainer.py).
    """
    d, h, kv, hd, L = shape.n_embd, shape.n_head, shape.n_kv_head, shape.head_dim, shape.n_layer
    kvd = kv * hd
    a = mode.activation_bytes
    if mode.compiled:
        wide = 6 * d + 2 * kvd + 4 * d  # x, x_n, q_n, out, x, x_n | k_n, v | h
    else:
        wide = 7 * d + 3 * kvd + 8 * d  # x, x_n, q_rot, q_n, out, x, x_n | k_rot, k_n, v | r, r^2
    fp32_stats = 4 * (2 + h + kv + h)  # two block norms' rstd, QK-norm rstd, logsumexp per head
    per_layer = a * wide + fp32_stats
    model_level = a * 3 * d + 4 * 2 + 8 * 2  # emb, x_L, x_L normed; two rstd; token ids and targets
    return L * per_layer + model_level


def logits_saved_bytes_per_token(shape: ModelShape, mode: ExecutionMode) -> float:
    """The loss path's B x T x V tensors saved for backward, per token.

    CUDA, compiled: lm_head's bf16 logits are materialised in fp32 for the soft-capped cross-entropy
    (SPEC §5: 4 GiB at d32, B=8) and that fp32 tensor is kept for the backward (4 bytes). Eager fp32
    without the fused loss: the tanh output and the log-softmax output (2 x 4). The CPU fused loss
    saves nothing per vocabulary entry (see `fused_loss_fixed_bytes`).
    """
    if mode.fused_loss:
        return 0.0
    return (4 if mode.activation_bytes == 2 else 8) * shape.vocab_size


def logits_backward_bytes_per_token(shape: ModelShape, mode: ExecutionMode) -> float:
    """Extra B x T x V bytes at the start of the loss backward: the fp32 gradient of the logits,
    alive beside the saved logits until it is cast for lm_head's backward."""
    return 0.0 if mode.fused_loss else 4 * shape.vocab_size


FUSED_LOSS_CHUNK_ELEMENTS = 1 << 21  # chatplan_train.model: ~8 MB of fp32 logits per chunk


def fused_loss_fixed_bytes(shape: ModelShape, mode: ExecutionMode) -> int:
    """The CPU fused loss keeps lm_head's weight gradient (V x d fp32) from forward to backward, and
    works on two chunk-sized buffers while it runs."""
    if not mode.fused_loss:
        return 0
    return 4 * shape.vocab_size * shape.n_embd + 2 * 4 * FUSED_LOSS_CHUNK_ELEMENTS


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
    allocator_reserve: int  # elastic cache (see ALLOCATOR_CACHE_PER_GRAD_BYTE)
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
    optimizer_workspace: int  # the Muon step's temporaries on the busiest rank (AdamW is fused)


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
    owners = owner_map(shapes, world_size, emb)
    loads = tuple(rank_loads(state, owners, world_size))
    return Resident(
        weights=weights,
        gradients=weights,
        optimizer_state=max(loads),
        optimizer_state_per_rank=loads,
        autocast_weight_copies=2 * matmul_weights if device_type == "cuda" else 0,
        optimizer_workspace=muon_workspace(shapes, owners, 2 if device_type == "cuda" else 4),
    )


def muon_workspace(shapes: dict[str, tuple[int, int]], owners: dict[str, int], ns_bytes: int) -> int:
    """Temporaries of the trainer's Muon step on the busiest rank: matrices of one shape are stacked
    and orthogonalised together, so per group of n same-shaped (r x c) matrices it holds the Nesterov
    update and its stacked copy (fp32), X, X/|X| and the new X in the Newton-Schulz dtype, A and B
    (m x m, m = min(r, c)), and the fp32 result. Groups run one after another: the largest counts."""
    groups: dict[tuple[int, tuple[int, int]], int] = {}
    for name, dims in shapes.items():
        if name not in ("transformer.wte.weight", "lm_head.weight"):
            key = (owners[name], dims)
            groups[key] = groups.get(key, 0) + 1
    worst = 0
    for (_, (r, c)), n in groups.items():
        m = min(r, c)
        worst = max(worst, n * r * c * (3 * 4 + 3 * ns_bytes) + 2 * n * m * m * ns_bytes)
    return worst


@lru_cache(maxsize=1024)
def _rates(shape: ModelShape, mode: ExecutionMode) -> tuple[float, float, int]:
    """(activation bytes per token, loss-path bytes per token, loss-path bytes fixed)."""
    return (activation_bytes_per_token(shape, mode),
            logits_saved_bytes_per_token(shape, mode) + logits_backward_bytes_per_token(shape, mode),
            fused_loss_fixed_bytes(shape, mode))


def _peaks(shape: ModelShape, device_batch_size: int, mode: ExecutionMode, resident: Resident,
           capacity_gib: float) -> tuple[int, int, int, int, int, int, int]:
    """(activations, logits, transient, backward peak, optimizer peak, allocator cache, context) bytes.

    Gradient accumulation does not change the peak: the gradient buffers are resident either way
    and only one micro-batch's activations exist at a time.
    """
    tokens = device_batch_size * shape.sequence_len
    act_rate, logits_rate, logits_fixed = _rates(shape, mode)
    activations = int(tokens * act_rate)
    logits = int(tokens * logits_rate + logits_fixed)
    resident_total = resident.weights + resident.gradients + resident.optimizer_state
    backward = resident_total + resident.autocast_weight_copies + activations + logits
    # Optimizer step: activations are gone; the all-reduce scratch and the Muon temporaries remain.
    transient = min(COMM_BUCKET_BYTES, resident.gradients) + resident.optimizer_workspace
    optimizer = resident_total + transient
    if mode.device_type != "cuda":
        return activations, logits, transient, backward, optimizer, 0, 0
    context = int(CUDA_CONTEXT_GIB * GIB)
    free_above_margin = capacity_gib * (1 - FIT_MARGIN_FRACTION) * GIB - max(backward, optimizer) - context
    cache = int(min(ALLOCATOR_CACHE_PER_GRAD_BYTE * resident.gradients, max(0.0, free_above_margin)))
    return activations, logits, transient, backward, optimizer, cache, context


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
        shape, device_batch_size, mode, resident, capacity_gib)
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
    """The largest power-of-two per-GPU batch that is not `oom`, or None when even batch 1 is.

    The OOM test ignores the allocator cache (it is released before an OOM), so the device figure
    is linear in the batch: solve for the largest batch, then confirm with the full estimate.
    """
    resident = resident_bytes(shape, world_size, mode.device_type)
    _, _, _, backward_1, optimizer, _, context = _peaks(shape, 1, mode, resident, capacity_gib)
    act_rate, logits_rate, _ = _rates(shape, mode)
    per_sequence = shape.sequence_len * (act_rate + logits_rate)
    room = capacity_gib * GIB - context - (backward_1 - per_sequence)
    if optimizer + context > capacity_gib * GIB or room < per_sequence:
        return None
    largest = int(room // per_sequence)
    for batch in reversed(batch_candidates(sequences_per_rank)):
        if batch <= largest:
            est = estimate_memory(shape, batch, sequences_per_rank // batch, world_size, capacity_gib, mode)
            if est.verdict != "oom":  # rounding guard: the closed form and the estimate agree
                return est
    return None

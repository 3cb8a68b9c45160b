"""Per-rank peak memory of the bundled trainer, term by term, and the automatic device batch size.

Generic over the architecture: what a rank holds (weights, gradients, optimizer state, the saved
low-precision weight casts, activations per token, the loss path) comes from the architecture's
`memory_terms()` (chatplan/arch/), which follow its trainer's real layout; this module adds the
moments, the allocator cache, the CUDA context, the fit verdict and the batch search.

The peak moment. Within a step the allocated memory peaks where the forward pass has finished and
the loss backward starts: every saved activation is alive, plus the logits path (and, on CUDA in eager
mode, the fp32 gradient of the logits that the loss backward creates first; compiled, the gradient takes
the saved logits' storage). Backward then frees activations
layer by layer while it adds into the already-allocated gradient buffers, so memory only falls.
The optimizer step is a second candidate: weights + gradients + state + its working buffers, with
the activations gone. The larger of the two is reported, and which one it was.

Three figures, always named: `peak_allocated_gib` (comparable to torch.cuda.max_memory_allocated),
`peak_reserved_gib` (+ the allocator's cache), `peak_device_gib` (+ CUDA context, comparable to
nvidia-smi). GiB = 2^30 bytes. The fit verdict compares the demand (allocated + context: the cache is
elastic) and the high end of its measured error band with the catalog capacity.
docs/memory.md derives every term.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from chatplan.accuracy import MEMORY_REL_ERROR
from chatplan.batch import batch_candidates
from chatplan.facts import ModelFacts

GIB = 2**30

# --- calibration constants (few, named, with their evidence) ---------------------------------------
# CUDA context + cuBLAS workspace + NCCL buffers per process. SPEC §5: the context costs ~0.5-1 GB.
CUDA_CONTEXT_GIB = 0.75
# The share of capacity the elastic allocator cache may fill (below). Not a verdict margin: the fit
# verdict uses the measured error band (MEMORY_REL_ERROR, chatplan/accuracy.py).
ALLOCATOR_CEILING_FRACTION = 0.95
# Allocator cache, as a multiple of the gradient bytes. Evidence (SPEC §5, 8xH100 80 GB, T 2,048):
# term by term, d32 at batch 8 allocates ~58 GiB, yet nvidia-smi showed ~78 GB, while d20 at batch
# 32 allocated 73.7 GiB (FIELD L1) and still ran: the gap is cache, not demand. PyTorch's caching allocator
# keeps freed blocks (gradient-sized ones from the compiled backward's fresh gradients, activation
# blocks of several micro-steps) and releases them and retries before it reports an OOM, so the
# cache is elastic: it is what nvidia-smi shows, never a cause of OOM. The model lets it grow to
# k x gradient bytes, but only up to ALLOCATOR_CEILING_FRACTION of capacity. k = 3.6 and that ceiling
# bring d32/B8 to ~75 GiB on the device (FIELD L4: ~78 GB = 77.2 GiB in nvidia-smi): both rest on that
# one row, so they are not cross-validated (README). Not measured here (no GPU lent yet): the first
# constants to refit from a GPU probe (max_memory_reserved - max_memory_allocated, scripts/gpu_probe.py).
ALLOCATOR_CACHE_PER_GRAD_BYTE = 3.6


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
    margin_gib: float  # demand above capacity - margin is `tight`: capacity x (1 - 1 / (1 + memory band))
    verdict: str  # "fits" | "tight" | "oom"
    source: str = "model"  # "model" | what measured the three peak figures (chatplan.calibration)

    def to_dict(self) -> dict:
        return asdict(self)


def _peaks(facts: ModelFacts, device_batch_size: int, capacity_gib: float) -> tuple[int, ...]:
    """(activations, logits, transient, backward peak, optimizer peak, allocator cache, context) bytes.

    Gradient accumulation does not change the peak: the gradient buffers are resident either way
    and only one micro-batch's activations exist at a time.
    """
    t = facts.memory
    tokens = device_batch_size * facts.shape.sequence_len
    activations = int(tokens * t.activation_bytes_per_token)
    logits = int(tokens * t.loss_bytes_per_token + t.loss_fixed_bytes)
    resident_total = t.weights + t.gradients + max(t.optimizer_state_per_rank)
    backward = resident_total + t.weight_copies + activations + logits
    # Optimizer step: activations are gone; the collective scratch and the optimizer temporaries remain.
    transient = t.comm_scratch + t.optimizer_workspace
    optimizer = resident_total + transient
    if facts.precision.device_type != "cuda":
        return activations, logits, transient, backward, optimizer, 0, 0
    context = int(CUDA_CONTEXT_GIB * GIB)
    free_below_ceiling = capacity_gib * ALLOCATOR_CEILING_FRACTION * GIB - max(backward, optimizer) - context
    cache = int(min(ALLOCATOR_CACHE_PER_GRAD_BYTE * t.gradients, max(0.0, free_below_ceiling)))
    return activations, logits, transient, backward, optimizer, cache, context


def estimate_memory(facts: ModelFacts, device_batch_size: int, grad_accum_steps: int,
                    capacity_gib: float) -> MemoryEstimate:
    t = facts.memory
    activations, logits, transient, backward, optimizer, reserve, context = _peaks(
        facts, device_batch_size, capacity_gib)
    peak_allocated = max(backward, optimizer)
    device_gib = (peak_allocated + reserve + context) / GIB
    demand_gib = (peak_allocated + context) / GIB
    margin = capacity_gib * (1 - 1 / (1 + MEMORY_REL_ERROR))
    return MemoryEstimate(
        device_batch_size=device_batch_size,
        grad_accum_steps=grad_accum_steps,
        weights=t.weights,
        gradients=t.gradients,
        optimizer_state=max(t.optimizer_state_per_rank),
        autocast_weight_copies=t.weight_copies,
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
        verdict=fit_verdict(demand_gib, capacity_gib),
    )


def with_measured(m: MemoryEstimate, allocated_gib: float, reserved_gib: float | None, device_gib: float | None,
                  source: str) -> MemoryEstimate:
    """The estimate with its three peak figures replaced by measured ones (carried to this plan by the
    model), and the verdict on the measured demand with the measured figures' band."""
    from chatplan.calibration import CALIBRATED_MEMORY_REL_ERROR

    context = m.cuda_context / GIB
    reserved = reserved_gib if reserved_gib is not None else allocated_gib + m.allocator_reserve / GIB
    device = device_gib if device_gib is not None else reserved + context
    demand = allocated_gib + context
    return replace(m, peak_allocated_gib=allocated_gib, peak_reserved_gib=reserved, peak_device_gib=device,
                   headroom_gib=m.capacity_gib - device,
                   margin_gib=m.capacity_gib * (1 - 1 / (1 + CALIBRATED_MEMORY_REL_ERROR)),
                   verdict=fit_verdict(demand, m.capacity_gib, CALIBRATED_MEMORY_REL_ERROR), source=source)


def fit_verdict(demand_gib: float, capacity_gib: float, rel_error: float = MEMORY_REL_ERROR) -> str:
    """`oom` when the demand (allocated + CUDA context; the elastic cache is released and retried before
    PyTorch reports an OOM) exceeds capacity; `tight` when it fits but the high end of its error band,
    demand x (1 + the measured memory error), does not; else `fits`."""
    if demand_gib > capacity_gib:
        return "oom"
    return "tight" if demand_gib * (1 + rel_error) > capacity_gib else "fits"


def largest_fitting_batch(facts: ModelFacts, capacity_gib: float) -> int:
    """The largest per-GPU batch (any integer) whose device figure stays within capacity; 0 if none.

    The OOM test ignores the allocator cache (it is released before an OOM), so the device figure
    is linear in the batch: solve for it in closed form.
    """
    _, _, _, backward_1, optimizer, _, context = _peaks(facts, 1, capacity_gib)
    t = facts.memory
    per_sequence = facts.shape.sequence_len * (t.activation_bytes_per_token + t.loss_bytes_per_token)
    room = capacity_gib * GIB - context - (backward_1 - per_sequence)
    if optimizer + context > capacity_gib * GIB or room < per_sequence:
        return 0
    return int(room // per_sequence)


def choose_device_batch(facts: ModelFacts, sequences_per_rank: int, capacity_gib: float) -> MemoryEstimate | None:
    """The largest power-of-two per-GPU batch that is not `oom`, or None when even batch 1 is.

    Solve for the largest batch in closed form, then confirm with the full estimate.
    """
    largest = largest_fitting_batch(facts, capacity_gib)
    if largest < 1:
        return None
    for batch in reversed(batch_candidates(sequences_per_rank)):
        if batch <= largest:
            est = estimate_memory(facts, batch, sequences_per_rank // batch, capacity_gib)
            if est.verdict != "oom":  # rounding guard: the closed form and the estimate agree
                return est
    return None

"""Predicted MFU, step time, communication, wall time and cost.

MFU is predicted, not typed in. The model (generic; the architecture's `step_terms()` supply the
work): one optimizer step on one GPU takes

  compute   timed matmul FLOPs per token (6 N_matmul + attention weighted by its kernel's speed)
            / (peak * matmul_eff_gpu * k)
  memory    memory-bound bytes per token (norms, rotary, residual adds, ReLU^2, softcap and
            cross-entropy: not counted as FLOPs) / memory bandwidth
  overhead  a fixed launch/Python cost per micro-step
  optimizer Newton-Schulz FLOPs of the matrices the busiest rank owns, at matmul efficiency
  comm      the trainer's gradient reduction + weight distribution inside one node (not overlapped:
            the trainer syncs after backward), over the catalog's intra-node bandwidth

and MFU = FLOPs/token x tokens / (peak x time). `k` (the share of the best achievable matmul rate our
kernels reach on the model's matmuls) is the one fitted constant: it makes the single measured
anchor exact — H100 SXM, d32, batch 8, T 2,048, 8 GPUs: 1,572 ms/step, MFU 0.5092 (SPEC §5). Other
GPUs differ through their public figures (peak, best-achievable matmul share, bandwidth, links);
smaller models through width (memory-bound share grows as 1/d, the lm_head/logits share as V/F)
and tokens per micro-batch (fixed overhead). Crossing nodes adds its own line (`inter_node`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from chatplan.arch import get_arch
from chatplan.catalog import GPU, Catalog, Fleet
from chatplan.facts import ModelFacts, model_facts
from chatplan.precision import decide_precision

# --- the anchor (SPEC §5): the one measured step the software efficiency k is solved from ----------
ANCHOR_ARCH = "nanochat-2025"
ANCHOR_DEPTH, ANCHOR_BATCH, ANCHOR_SEQ_LEN, ANCHOR_WORLD = 32, 8, 2_048, 8
ANCHOR_MFU = 0.5092  # 1,572 ms per step on 8xH100 SXM (nanochat run1000.sh)

# --- assumptions (not measured here; stated so they can be checked) ---------------------------------
# Launch and Python cost per micro-step with torch.compile (a few ms on an H100).
MICRO_STEP_OVERHEAD_S = 0.005
# CPU runs (fp32, eager, gloo): share of the measured fp32 matmul peak the model's matmuls reach.
# Evidence: the reference nanochat step reaches 49% of this machine's fp32 peak at d4, T 256, batch 8
# (issue 5's benchmark); CPU runs are better calibrated from `chatplan calibrate` (CPU points only
# ever apply to CPU plans).
CPU_MATMUL_SHARE = 0.5
CPU_MICRO_STEP_OVERHEAD_S = 0.002  # eager dispatch of a few hundred ops


@dataclass(frozen=True)
class StepTime:
    compute_s: float
    memory_s: float
    overhead_s: float
    optimizer_s: float
    intra_node_comm_s: float
    step_s: float  # one node's step (what the anchor measures)
    inter_node_comm_s: float  # extra when the fleet spans nodes (exposed, its own line)
    mfu: float  # of the single-node step (inter-node excluded)

    def to_dict(self) -> dict:
        return asdict(self)


def _step_time(facts: ModelFacts, gpu: GPU, device_batch_size: int, grad_accum_steps: int, gpus_per_node: int,
               nodes: int, k: float, inter_node_gbps: float) -> StepTime:
    t = facts.step
    tokens = device_batch_size * facts.shape.sequence_len * grad_accum_steps  # per GPU per step
    matmul_rate = gpu.peak_flops * gpu.matmul_efficiency
    compute = tokens * t.timed_flops_per_token / (matmul_rate * k)
    memory = tokens * t.memory_bytes_per_token / gpu.memory_bandwidth
    overhead = grad_accum_steps * (MICRO_STEP_OVERHEAD_S if gpu.device_type == "cuda" else CPU_MICRO_STEP_OVERHEAD_S)
    optimizer = t.optimizer_flops_busiest_rank / matmul_rate
    g = gpus_per_node
    intra = t.sync_bytes_per_rank * (g - 1) / g / (gpu.intra_node_gbps * 1e9) if g > 1 else 0.0
    # Across nodes, a hierarchical all-reduce sends each GPU's 1/g slice over its own NIC.
    inter = t.sync_bytes_per_rank * (nodes - 1) / nodes / g / (inter_node_gbps * 1e9 / 8) if nodes > 1 else 0.0
    step = compute + memory + overhead + optimizer + intra
    mfu = facts.flops_per_token * tokens / (gpu.peak_flops * step)
    return StepTime(compute, memory, overhead, optimizer, intra, step, inter, mfu)


_k_cache: dict[tuple, float] = {}


def software_efficiency(catalog: Catalog) -> float:
    """The fitted `k`: solves the anchor step for the share of best-achievable matmul rate reached."""
    ref = catalog.reference
    key = (ref.peak_flops, ref.matmul_efficiency, ref.memory_bandwidth, ref.intra_node_gbps)
    if key not in _k_cache:
        arch = get_arch(ANCHOR_ARCH)
        shape = arch.model_shape(ANCHOR_DEPTH, seq_len=ANCHOR_SEQ_LEN)
        precision = decide_precision(arch.name, ref.device_type, fp8_supported=arch.fp8_supported,
                                     compute_capability=ref.compute_capability)
        facts = model_facts(arch, shape, ANCHOR_WORLD, precision)
        accum = arch.default_total_batch_size(shape) // (ANCHOR_BATCH * ANCHOR_SEQ_LEN * ANCHOR_WORLD)
        at_k1 = _step_time(facts, ref, ANCHOR_BATCH, accum, ANCHOR_WORLD, 1, 1.0, 1.0)  # one node: no link
        tokens = ANCHOR_BATCH * ANCHOR_SEQ_LEN * accum
        target_step = facts.flops_per_token * tokens / (ref.peak_flops * ANCHOR_MFU)
        rest = target_step - (at_k1.step_s - at_k1.compute_s)
        _k_cache[key] = at_k1.compute_s / rest
    return _k_cache[key]


def predict_step(facts: ModelFacts, fleet: Fleet, device_batch_size: int, grad_accum_steps: int,
                 catalog: Catalog, inter_node_gbps: float) -> StepTime:
    gpu = fleet.gpu
    k = software_efficiency(catalog) if gpu.device_type == "cuda" else CPU_MATMUL_SHARE
    return _step_time(facts, gpu, device_batch_size, grad_accum_steps, fleet.gpus_per_node, fleet.nodes, k,
                      inter_node_gbps)


def eval_passes(steps: int, every: int) -> int:
    """Validation at step 0, every `every` steps, and the last step (counted once)."""
    if every <= 0:
        return 1 if steps == 0 else 2
    return steps // every + 1 + (0 if steps % every == 0 else 1)


@dataclass(frozen=True)
class TimeCost:
    mfu: float
    mfu_source: str  # "predicted" | "override" | "calibrated"
    tokens_per_second: float  # all GPUs together, training steps
    step_seconds: float
    train_hours: float
    eval_passes: int
    eval_hours: float
    communication_hours: float  # inter-node, on top of the single-node MFU
    pretrain_hours: float
    gpu_hours: float
    price_per_gpu_hour: float
    cost_usd: float

    def to_dict(self) -> dict:
        return asdict(self)


def time_and_cost(
    total_flops: float,
    flops_per_token: int,
    steps: int,
    total_batch_size: int,
    num_gpus: int,
    fleet_peak_flops: float,
    mfu: float,
    mfu_source: str,
    price_per_gpu_hour: float,
    inter_node_comm_s: float,
    eval_every: int,
    eval_tokens: int,
) -> TimeCost:
    rate = fleet_peak_flops * mfu  # useful FLOP/s of the fleet
    train_s = total_flops / rate
    passes = eval_passes(steps, eval_every)
    eval_s = passes * eval_tokens * (flops_per_token / 3) / rate  # a forward pass is 1/3 of training
    comm_s = steps * inter_node_comm_s
    pretrain_s = train_s + eval_s + comm_s
    hours = pretrain_s / 3600
    step_s = train_s / steps + inter_node_comm_s
    return TimeCost(
        mfu=mfu,
        mfu_source=mfu_source,
        tokens_per_second=total_batch_size / step_s,
        step_seconds=step_s,
        train_hours=train_s / 3600,
        eval_passes=passes,
        eval_hours=eval_s / 3600,
        communication_hours=comm_s / 3600,
        pretrain_hours=hours,
        gpu_hours=hours * num_gpus,
        price_per_gpu_hour=price_per_gpu_hour,
        cost_usd=hours * num_gpus * price_per_gpu_hour,
    )



"""Predicted MFU, step time, communication, wall time and cost.

MFU is predicted, not typed in. The model: one optimizer step on one GPU takes

  compute   (6 (N - N_wte) + c_attn * attention FLOPs) / (peak * matmul_eff_gpu * k)
  memory    (e_act * L * d + e_logits * V) bytes per token / memory bandwidth  (norms, rotary,
            residual adds, ReLU^2, softcap and cross-entropy: memory-bound, not counted as FLOPs)
  overhead  a fixed launch/Python cost per micro-step
  optimizer Newton-Schulz FLOPs of the matrices this rank owns, at matmul efficiency
  comm      the trainer's gradient all-reduce + weight broadcast inside one node (not overlapped:
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
from functools import lru_cache

from chatplan.catalog import GPU, Catalog
from chatplan.counts import ParamCounts, flops_per_token, param_counts, param_shapes
from chatplan.shape import ModelShape, model_shape
from chatplan.sharding import owner_map

# --- the anchor (SPEC §5) ---------------------------------------------------------------------------
ANCHOR_GPU = "H100-SXM"
ANCHOR_DEPTH, ANCHOR_BATCH, ANCHOR_SEQ_LEN, ANCHOR_WORLD = 32, 8, 2_048, 8
ANCHOR_MFU = 0.5092
ANCHOR_TOTAL_BATCH = 524_288

# --- assumptions (not measured here; stated so they can be checked) ---------------------------------
# Bytes moved per token per layer per unit of width by the memory-bound ops of a compiled fwd+bwd
# (~25 d-wide bf16 tensors read or written forward, twice that backward).
ELEMENTWISE_BYTES_PER_LAYER_WIDTH = 100
# Bytes per token per vocabulary entry on the loss path: bf16 logits out and back in, fp32 softcap
# and cross-entropy forward, their fused backward, the bf16 gradient (2+2+4+4+4+4+2+2).
LOGITS_BYTES_PER_VOCAB = 24
# Attention is counted over the full context (SPEC §3) but causal flash attention does half that
# work at ~60% of the matmul rate: 0.5 / 0.6 ~ 0.85 of the counted FLOPs' matmul time.
ATTENTION_TIME_FACTOR = 0.85
# Launch and Python cost per micro-step with torch.compile (a few ms on an H100).
MICRO_STEP_OVERHEAD_S = 0.005
NS_STEPS = 5
# CPU runs (fp32, eager, gloo): share of the measured fp32 matmul peak the model's matmuls reach.
# Evidence: the reference nanochat step reaches 49% of this machine's fp32 peak at d4, T 256, batch 8
# (issue 5's benchmark); CPU runs are better calibrated from `chatplan calibrate` (CPU points only
# ever apply to CPU plans).
CPU_MATMUL_SHARE = 0.5
CPU_MICRO_STEP_OVERHEAD_S = 0.002  # eager dispatch of a few hundred ops
# Default inter-node link per GPU: 400 Gb/s (one NDR InfiniBand NIC per GPU, common on H100 nodes).
DEFAULT_INTER_NODE_GBPS = 400.0


def newton_schulz_flops(rows: int, cols: int, steps: int = NS_STEPS) -> float:
    """FLOPs of the quintic Newton-Schulz iteration on one matrix (small side m, large side n)."""
    m, n = min(rows, cols), max(rows, cols)
    return steps * (2 * m * m * n + 2 * m**3 + 2 * m * m * n)  # X X^T, A A, B X


@lru_cache(maxsize=1024)
def _owned_ns_flops(shape: ModelShape, world_size: int, embedding_bytes: int) -> float:
    shapes = param_shapes(shape)
    owners = owner_map(shapes, world_size, embedding_bytes)
    per_rank = [0.0] * world_size
    for name, (rows, cols) in shapes.items():
        if name not in ("transformer.wte.weight", "lm_head.weight"):
            per_rank[owners[name]] += newton_schulz_flops(rows, cols)
    return max(per_rank)


def _sync_bytes(counts: ParamCounts, embedding_bytes: int) -> float:
    """Bytes each rank moves per step: all-reduce of gradients (2x) and broadcast of weights (1x)."""
    weights = 4 * (counts.total - counts.wte) + embedding_bytes * counts.wte
    return 3 * weights


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


def _step_time(shape: ModelShape, gpu: GPU, device_batch_size: int, grad_accum_steps: int,
               world_size: int, gpus_per_node: int, nodes: int, k: float, inter_node_gbps: float,
               counts: ParamCounts | None = None) -> StepTime:
    embedding_bytes = 2 if gpu.device_type == "cuda" else 4
    counts = counts or param_counts(shape)
    attention = 12 * shape.n_layer * shape.n_head * shape.head_dim * shape.sequence_len
    tokens = device_batch_size * shape.sequence_len * grad_accum_steps  # per GPU per step
    matmul_rate = gpu.peak_flops * gpu.matmul_efficiency
    compute = tokens * (6 * counts.non_embedding + ATTENTION_TIME_FACTOR * attention) / (matmul_rate * k)
    moved = (ELEMENTWISE_BYTES_PER_LAYER_WIDTH * shape.n_layer * shape.n_embd
             + LOGITS_BYTES_PER_VOCAB * shape.vocab_size)
    memory = tokens * moved / gpu.memory_bandwidth
    overhead = grad_accum_steps * (MICRO_STEP_OVERHEAD_S if gpu.device_type == "cuda" else CPU_MICRO_STEP_OVERHEAD_S)
    optimizer = _owned_ns_flops(shape, world_size, embedding_bytes) / matmul_rate
    sync = _sync_bytes(counts, embedding_bytes)
    g = gpus_per_node
    intra = sync * (g - 1) / g / (gpu.intra_node_gbps * 1e9) if g > 1 else 0.0
    # Across nodes, a hierarchical all-reduce sends each GPU's 1/g slice over its own NIC.
    inter = sync * (nodes - 1) / nodes / g / (inter_node_gbps * 1e9 / 8) if nodes > 1 else 0.0
    step = compute + memory + overhead + optimizer + intra
    mfu = flops_per_token(shape, counts) * tokens / (gpu.peak_flops * step)
    return StepTime(compute, memory, overhead, optimizer, intra, step, inter, mfu)


_k_cache: dict[tuple, float] = {}


def software_efficiency(catalog: Catalog) -> float:
    """The fitted `k`: solves the anchor step for the share of best-achievable matmul rate reached."""
    ref = catalog.get(ANCHOR_GPU)
    key = (ref.peak_flops, ref.matmul_efficiency, ref.memory_bandwidth, ref.intra_node_gbps)
    if key not in _k_cache:
        shape = model_shape(ANCHOR_DEPTH, seq_len=ANCHOR_SEQ_LEN)
        accum = ANCHOR_TOTAL_BATCH // (ANCHOR_BATCH * ANCHOR_SEQ_LEN * ANCHOR_WORLD)
        at_k1 = _step_time(shape, ref, ANCHOR_BATCH, accum, ANCHOR_WORLD, ANCHOR_WORLD, 1, 1.0, 400.0)
        tokens = ANCHOR_BATCH * ANCHOR_SEQ_LEN * accum
        target_step = flops_per_token(shape) * tokens / (ref.peak_flops * ANCHOR_MFU)
        rest = target_step - (at_k1.step_s - at_k1.compute_s)
        _k_cache[key] = at_k1.compute_s / rest
    return _k_cache[key]


def predict_step(shape: ModelShape, gpu: GPU, device_batch_size: int, grad_accum_steps: int,
                 world_size: int, gpus_per_node: int, nodes: int, catalog: Catalog,
                 inter_node_gbps: float = DEFAULT_INTER_NODE_GBPS,
                 counts: ParamCounts | None = None) -> StepTime:
    k = software_efficiency(catalog) if gpu.device_type == "cuda" else CPU_MATMUL_SHARE
    return _step_time(shape, gpu, device_batch_size, grad_accum_steps, world_size, gpus_per_node,
                      nodes, k, inter_node_gbps, counts)


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



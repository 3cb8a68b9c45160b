"""plan(): compose shape, counts, horizon, fleet, memory, timing and data into one frozen Plan.

`Plan.to_dict()` is plan.json, the only contract between the planner and the trainer. plan() reads
no files: the CLI loads the GPU catalog and calibration and passes them in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from chatplan import __version__
from chatplan.calibration import Calibration, CalibrationPoint, calibrated_mfu
from chatplan.catalog import DEFAULT_GPUS_PER_NODE, Catalog, Fleet, builtin_catalog, check_batch_divides, parse_fleet
from chatplan.counts import ParamCounts, flops_per_token, param_counts
from chatplan.dataplan import DEFAULT_CHARS_PER_SHARD, DEFAULT_CHARS_PER_TOKEN, DataPlan, data_plan
from chatplan.errors import InvalidInput, RequirementFailed
from chatplan.horizon import DEFAULT_DATA_RATIO, DEFAULT_TOTAL_BATCH_SIZE, Horizon, training_horizon
from chatplan.memory import (
    ExecutionMode,
    MemoryEstimate,
    check_device_batch,
    choose_device_batch,
    estimate_memory,
)
from chatplan.shape import (
    DEFAULT_ASPECT_RATIO,
    DEFAULT_HEAD_DIM,
    DEFAULT_SEQ_LEN,
    DEFAULT_VOCAB_SIZE,
    MAX_DEPTH,
    ModelShape,
    is_valid_depth,
    model_shape,
)
from chatplan.timing import DEFAULT_INTER_NODE_GBPS, StepTime, TimeCost, predict_step, time_and_cost

SCHEMA_VERSION = 1
DEFAULT_EVAL_EVERY = 250
DEFAULT_EVAL_TOKENS = 20 * 524_288


@dataclass(frozen=True)
class Tier:
    name: str
    depth: int
    gpus: str
    budget_usd: float  # the tier's nominal end-to-end budget
    budget_hours: float  # ... and its wall time on one 8xH100 node at $24/h


# SPEC §5: the nanochat tiers, all on one 8xH100 node at $3/GPU-hour; "tiny" is a laptop-CPU preset.
TIERS = {
    "100": Tier("100", 20, "8xH100", 100.0, 4.0),
    "300": Tier("300", 26, "8xH100", 300.0, 12.0),
    "1000": Tier("1000", 32, "8xH100", 1000.0, 41.6),
    "tiny": Tier("tiny", 2, "1xCPU", 0.0, 0.0),
}
# The tiny tier: small enough that 200 steps on two CPU cores take minutes, trained on the embedded
# sample corpus with its own 8,192-token tokenizer. Depth 2 (d=128, one head of 128).
TINY = {"seq_len": 256, "vocab_size": 8_192, "device_batch_size": 8, "eval_every": 25, "steps": 200}


def get_tier(name: str | int) -> Tier:
    tier = TIERS.get(str(name).lstrip("$"))
    if tier is None:
        raise InvalidInput(f"unknown tier {name!r}: valid tiers are {', '.join(TIERS)}")
    return tier


def optimizer_settings(shape: ModelShape) -> dict:
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


def plan_for_budget(budget: float, **kwargs) -> Plan:
    """The largest valid depth whose predicted pretraining cost is within `budget` dollars.

    Cost grows monotonically with depth (FLOPs grow ~L^4 while MFU moves slowly), so the search walks
    up the valid depths and stops at the first one over budget, or that no longer fits in memory.
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
        raise InvalidInput(f"budget must be a positive number of dollars, got {budget!r}")
    best: Plan | None = None
    over: Plan | None = None
    for depth in range(1, MAX_DEPTH + 1):
        if not is_valid_depth(depth, kwargs.get("aspect_ratio", DEFAULT_ASPECT_RATIO),
                              kwargs.get("head_dim", DEFAULT_HEAD_DIM), kwargs.get("kv_heads")):
            continue
        try:
            candidate = plan(depth, **kwargs)
        except RequirementFailed:
            break  # deeper models need even more memory
        if candidate.time.cost_usd > budget:
            over = candidate
            break
        best = candidate
    if best is None:
        cheapest = f"depth {over.depth} costs ${over.time.cost_usd:,.2f}" if over else "no depth fits in memory"
        raise RequirementFailed(f"budget ${budget:,.2f} buys no model on this fleet: {cheapest}")
    note = {"usd": float(budget), "chosen_depth": best.depth, "chosen_cost_usd": best.time.cost_usd,
            "next_depth": over.depth if over else None, "next_cost_usd": over.time.cost_usd if over else None}
    return replace(best, budget=note, inputs={**best.inputs, "budget": float(budget)})


@dataclass(frozen=True)
class Parallelism:
    world_size: int
    nodes: int
    nproc_per_node: int
    device_batch_size: int
    grad_accum_steps: int
    batch_source: str  # "auto" | "user"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Plan:
    inputs: dict
    tier: Tier | None
    shape: ModelShape
    params: ParamCounts
    flops_per_token: int
    horizon: Horizon
    fleet: Fleet
    parallelism: Parallelism
    memory: MemoryEstimate
    step: StepTime  # the model's prediction for one step (before any --mfu override)
    time: TimeCost
    data: DataPlan
    optimizer: dict
    eval_every: int
    eval_tokens: int
    device: dict
    warnings: tuple[str, ...] = field(default=())
    budget: dict | None = None  # set when --budget chose the depth
    calibration: dict | None = None  # "calibrated from N runs" or "uncalibrated"

    @property
    def depth(self) -> int:
        return self.shape.n_layer

    def to_dict(self) -> dict:
        tier = None
        if self.tier is not None:
            tier = {"name": self.tier.name, "budget_usd": self.tier.budget_usd,
                    "budget_hours": self.tier.budget_hours,
                    "budget_minus_pretraining_usd": self.tier.budget_usd - self.time.cost_usd,
                    "note": "the difference pays for the stages chatplan does not run "
                            "(tokenizer training, midtraining, SFT, evaluations)"}
        return {
            "schema_version": SCHEMA_VERSION,
            "chatplan_version": __version__,
            "inputs": self.inputs,
            "tier": tier,
            "budget": self.budget,
            "calibration": self.calibration,
            "model": self.shape.to_dict(),
            "params": self.params.to_dict(),
            "flops_per_token": self.flops_per_token,
            "horizon": self.horizon.to_dict(),
            "fleet": {**self.fleet.to_dict(), "gpu_spec": self.fleet.gpu.to_dict()},
            "parallelism": self.parallelism.to_dict(),
            "memory": self.memory.to_dict(),
            "step_model": self.step.to_dict(),
            "time": self.time.to_dict(),
            "data": {**self.data.to_dict(), "dir": None,
                     "source": "sample" if self.tier is not None and self.tier.name == "tiny" else "fineweb",
                     "train_shards": self.data.download_shards},
            "tokenizer": {"dir": None, "vocab_size": self.shape.vocab_size, "ranks_sha256": None},
            "optimizer": self.optimizer,
            "eval": {"every": self.eval_every, "tokens": self.eval_tokens},
            "device": self.device,
            "predictions": {
                "tokens_per_second": self.time.tokens_per_second,
                "step_seconds": self.time.step_seconds,
                "mfu": self.time.mfu,
                "peak_flops_per_gpu": self.fleet.gpu.peak_flops,
                "peak_allocated_gib": self.memory.peak_allocated_gib,
                "peak_reserved_gib": self.memory.peak_reserved_gib,
                "peak_device_gib": self.memory.peak_device_gib,
                "train_hours": self.time.train_hours,
                "pretrain_hours": self.time.pretrain_hours,
                "cost_usd": self.time.cost_usd,
                "price_per_gpu_hour": self.time.price_per_gpu_hour,
            },
            "warnings": list(self.warnings),
        }


def _positive(name: str, value: float | None, upper: float | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise InvalidInput(f"{name} must be a positive finite number, got {value!r}")
    if upper is not None and value > upper:
        raise InvalidInput(f"{name} must be at most {upper}, got {value!r}")


def plan(
    depth: int | None = None,
    *,
    tier: str | int | None = None,
    gpus: str | None = None,
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE,
    nodes: int | None = None,
    aspect_ratio: int = DEFAULT_ASPECT_RATIO,
    head_dim: int = DEFAULT_HEAD_DIM,
    kv_heads: int | None = None,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    seq_len: int = DEFAULT_SEQ_LEN,
    total_batch_size: int = DEFAULT_TOTAL_BATCH_SIZE,
    data_ratio: float = DEFAULT_DATA_RATIO,
    target_flops: float | None = None,
    steps: int | None = None,
    device_batch_size: int | None = None,
    mfu: float | None = None,
    price: float | None = None,
    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN,
    chars_per_shard: float = DEFAULT_CHARS_PER_SHARD,
    inter_node_gbps: float = DEFAULT_INTER_NODE_GBPS,
    eval_every: int = DEFAULT_EVAL_EVERY,
    eval_tokens: int = DEFAULT_EVAL_TOKENS,
    compile: bool | None = None,
    budget: float | None = None,
    catalog: Catalog | None = None,
    calibration: Calibration | None = None,
) -> Plan:
    """The whole plan for one model on one fleet. Raises InvalidInput (exit 2) or RequirementFailed (1).

    `budget` (USD) replaces depth and tier: the plan is for the largest valid depth whose predicted
    pretraining cost on the fleet fits it.
    """
    if budget is not None:
        if depth is not None or tier is not None:
            raise InvalidInput("--budget chooses the depth: drop --depth / --tier")
        args = {k: v for k, v in locals().items() if k not in ("depth", "tier", "budget")}
        return plan_for_budget(budget, **args)
    catalog = catalog or builtin_catalog()
    tier_obj = None
    fleet = None  # parsed once, early for the tiny tier (which needs the world size), else below
    if tier is not None:
        tier_obj = get_tier(tier)
        if depth is not None and depth != tier_obj.depth:
            raise InvalidInput(f"--tier {tier_obj.name} means depth {tier_obj.depth}; drop --depth {depth} "
                               "or the tier")
        depth = tier_obj.depth
        gpus = gpus or tier_obj.gpus
        if tier_obj.name == "tiny":
            given = {"seq_len": (seq_len, DEFAULT_SEQ_LEN), "vocab_size": (vocab_size, DEFAULT_VOCAB_SIZE),
                     "device_batch_size": (device_batch_size, None), "eval_every": (eval_every, DEFAULT_EVAL_EVERY)}
            for name, (value, default) in given.items():
                if value != default and value != TINY[name]:
                    raise InvalidInput(f"--tier tiny fixes {name.replace('_', ' ')} at {TINY[name]}, got {value}: "
                                       "use --depth for a custom model")
            fleet = parse_fleet(gpus, catalog, gpus_per_node, nodes)
            if fleet.gpu.device_type != "cpu":
                raise InvalidInput(f"--tier tiny is a CPU preset (NxCPU), not for {gpus}")
            seq_len, vocab_size = TINY["seq_len"], TINY["vocab_size"]
            device_batch_size, eval_every = TINY["device_batch_size"], TINY["eval_every"]
            steps = steps or TINY["steps"]
            world = fleet.num_gpus
            total_batch_size = device_batch_size * seq_len * world  # accumulation 1
            eval_tokens = device_batch_size * seq_len * world
            compile = False
    if depth is None:
        raise InvalidInput("give a depth (--depth D), a tier (--tier 100|300|1000|tiny) or a budget (--budget USD)")
    if gpus is not None and not gpus.strip():
        raise InvalidInput("--gpus is empty: expected COUNTxGPU, e.g. 8xH100")
    gpus = gpus or "8xH100"
    _positive("MFU", mfu, upper=1.0)
    if price is not None and (isinstance(price, bool) or not (price >= 0 and math.isfinite(price))):
        raise InvalidInput(f"price must be zero or positive dollars per GPU-hour, got {price!r}")
    _positive("inter-node bandwidth", inter_node_gbps)
    _positive("eval tokens", eval_tokens)

    shape = model_shape(depth, aspect_ratio, head_dim, kv_heads, vocab_size, seq_len)
    counts = param_counts(shape)
    fpt = flops_per_token(shape, counts)
    horizon = training_horizon(counts.total, fpt, total_batch_size, steps, target_flops, data_ratio)
    fleet = fleet or parse_fleet(gpus, catalog, gpus_per_node, nodes)
    world = fleet.num_gpus
    seqs_per_rank = check_batch_divides(total_batch_size, seq_len, world)
    gpu = fleet.gpu
    compiled = (gpu.device_type == "cuda") if compile is None else compile
    mode = ExecutionMode(device_type=gpu.device_type, compiled=compiled)
    warnings: list[str] = []
    capacity = fleet.rank_capacity_gib

    if device_batch_size is not None:
        accum = check_device_batch(device_batch_size, seqs_per_rank, total_batch_size, seq_len, world)
        memory = estimate_memory(shape, device_batch_size, accum, world, capacity, mode)
        batch_source = "user"
        if memory.verdict == "oom":
            warnings.append(
                f"device batch size {device_batch_size} is predicted to run out of memory: "
                f"{memory.peak_device_gib:.1f} GiB of {capacity:.2f} GiB per rank on {gpu.name}")
    else:
        chosen = choose_device_batch(shape, seqs_per_rank, world, capacity, mode)
        if chosen is None:
            one = estimate_memory(shape, 1, seqs_per_rank, world, capacity, mode)
            raise RequirementFailed(
                f"depth {depth} does not fit on {gpu.name} even at batch 1 ({one.peak_device_gib:.1f} GiB "
                f"needed, {capacity:.2f} GiB available per rank): use a GPU with more memory, a shorter "
                f"context (--seq-len), or a smaller depth")
        memory = chosen
        batch_source = "auto"
    parallelism = Parallelism(world, fleet.nodes, fleet.gpus_per_node, memory.device_batch_size,
                              memory.grad_accum_steps, batch_source)

    step = predict_step(shape, gpu, memory.device_batch_size, memory.grad_accum_steps, world,
                        fleet.gpus_per_node, fleet.nodes, catalog, inter_node_gbps, counts)

    def model_mfu_at(point: CalibrationPoint) -> float:
        other = model_shape(point.depth, aspect_ratio, head_dim, kv_heads, vocab_size, point.seq_len)
        accum = max(1, total_batch_size // (point.device_batch_size * point.seq_len * world))
        return predict_step(other, gpu, point.device_batch_size, accum, world, fleet.gpus_per_node,
                            fleet.nodes, catalog, inter_node_gbps).mfu

    cal = None if mfu is not None else calibrated_mfu(calibration, gpu.name, gpu.device_type, world, depth,
                                                       seq_len, vocab_size, step.mfu, model_mfu_at)
    if mfu is not None:
        used_mfu, mfu_source = mfu, "override"
    elif cal is not None:
        used_mfu, mfu_source = cal.mfu, "calibrated"
    else:
        used_mfu, mfu_source = step.mfu, "predicted"
    calibration_note = {
        "status": f"calibrated from {cal.points} run{'s' if cal.points != 1 else ''} ({cal.method})" if cal
        else "uncalibrated",
        "points": cal.points if cal else 0,
        "source": calibration.source if calibration else None,
    }
    price_per_hour = gpu.price_per_hour if price is None else float(price)
    # A CPU's peak is the whole machine's (all ranks share its cores); a GPU fleet's is the sum.
    fleet_peak = gpu.peak_flops * (world if gpu.device_type == "cuda" else 1)
    # A calibrated MFU comes from whole measured steps: across nodes it already includes the
    # inter-node traffic, which must not be added a second time.
    inter_node_s = 0.0 if mfu_source == "calibrated" else step.inter_node_comm_s
    time = time_and_cost(horizon.total_flops, fpt, horizon.steps, total_batch_size, world, fleet_peak,
                         used_mfu, mfu_source, price_per_hour, inter_node_s, eval_every, eval_tokens)
    # the published recipes' downloads are comparable only for the reference horizon and shape
    reference = ((aspect_ratio, vocab_size, seq_len, total_batch_size)
                 == (DEFAULT_ASPECT_RATIO, DEFAULT_VOCAB_SIZE, DEFAULT_SEQ_LEN, DEFAULT_TOTAL_BATCH_SIZE)
                 and horizon.source == "data_ratio" and data_ratio == DEFAULT_DATA_RATIO)
    data = data_plan(horizon.tokens, depth if reference else None, chars_per_token, chars_per_shard)
    if data.warning:
        warnings.append(data.warning)

    inputs = {"depth": depth, "tier": tier_obj.name if tier_obj else None, "gpus": gpus,
              "gpus_per_node": gpus_per_node, "nodes": nodes, "aspect_ratio": aspect_ratio,
              "head_dim": head_dim, "kv_heads": kv_heads, "vocab_size": vocab_size, "seq_len": seq_len,
              "total_batch_size": total_batch_size, "data_ratio": data_ratio, "target_flops": target_flops,
              "steps": steps, "device_batch_size": device_batch_size, "mfu": mfu, "price": price,
              "chars_per_token": chars_per_token, "chars_per_shard": chars_per_shard,
              "inter_node_gbps": inter_node_gbps, "eval_every": eval_every, "eval_tokens": eval_tokens,
              "compile": compile}
    device = {"type": gpu.device_type, "gpu": gpu.name,
              "dtype": "bfloat16" if gpu.device_type == "cuda" else "float32", "compile": compiled}
    return Plan(
        inputs=inputs, tier=tier_obj, shape=shape, params=counts, flops_per_token=fpt, horizon=horizon,
        fleet=fleet, parallelism=parallelism, memory=memory, step=step, time=time, data=data,
        optimizer=optimizer_settings(shape), eval_every=eval_every, eval_tokens=eval_tokens,
        device=device, warnings=tuple(warnings), calibration=calibration_note,
    )

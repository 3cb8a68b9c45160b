"""plan(): compose shape, counts, horizon, fleet, precision, memory, timing and data into one frozen Plan.

plan() reads no files: the CLI loads the GPU catalog and calibration and passes them in. The JSON
form of a Plan (plan.json) is written by `chatplan.contract`, the one owner of that document.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from chatplan.accuracy import plan_bands
from chatplan.arch.base import MAX_DEPTH, Architecture, ModelShape, ParamCounts
from chatplan.batch import grad_accum_for, sequences_per_rank
from chatplan.calibration import Calibration, CalibrationPoint, calibrated_memory, calibrated_mfu
from chatplan.catalog import Catalog, Fleet, builtin_catalog, parse_fleet
from chatplan.dataplan import DataPlan, data_plan
from chatplan.errors import InvalidInput, RequirementFailed
from chatplan.facts import model_facts
from chatplan.forecast import Forecast, forecast_plan
from chatplan.horizon import Horizon, training_horizon
from chatplan.memory import (
    MemoryEstimate,
    choose_device_batch,
    estimate_memory,
    largest_fitting_batch,
    with_measured,
)
from chatplan.precision import Precision, decide_precision
from chatplan.request import PlanRequest, Tier, resolve, updated, wants_target
from chatplan.timing import StepTime, TimeCost, predict_step, time_and_cost

if TYPE_CHECKING:
    from chatplan.target import TargetChoice


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
class Calibrated:
    status: str  # "calibrated from N runs (method)" | "uncalibrated"
    points: int
    source: str | None  # the calibration file


@dataclass(frozen=True)
class BudgetChoice:
    usd: float
    chosen_depth: int
    chosen_cost_usd: float
    next_depth: int | None
    next_cost_usd: float | None


@dataclass(frozen=True)
class Plan:
    request: PlanRequest  # resolved: tier applied, the architecture's defaults filled in
    arch: Architecture
    tier: Tier | None
    shape: ModelShape
    params: ParamCounts
    flops_per_token: int
    horizon: Horizon
    total_batch_source: str  # "auto" (the architecture's rule) | "user"
    fleet: Fleet
    parallelism: Parallelism
    precision: Precision
    memory: MemoryEstimate
    step: StepTime  # the model's prediction for one step (before any --mfu override)
    time: TimeCost
    data: DataPlan
    data_source: str  # "dataset" | "sample"
    calibration: Calibrated
    warnings: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())  # facts worth knowing that are not problems
    budget: BudgetChoice | None = None  # set when --budget chose the depth
    target: TargetChoice | None = None  # set when --target-core / --target-bpb / --tier gpt2 chose depth and ratio

    @property
    def depth(self) -> int:
        return self.shape.n_layer

    @property
    def eval_every(self) -> int:
        return self.request.eval_every  # type: ignore[return-value]  # resolved: never None

    @property
    def eval_tokens(self) -> int:
        return self.request.eval_tokens  # type: ignore[return-value]

    @property
    def optimizer(self) -> dict:
        """The architecture's optimizer recipe for this shape, batch and horizon (plan.json's `optimizer`);
        built when asked for, like the bands: a search over many plans never needs it (~15 us for 2026)."""
        return self.arch.optimizer_settings(self.shape, self.request.total_batch_size, self.horizon.steps)

    @property
    def bands(self) -> dict[str, dict]:
        """Figure -> {value, low, high, basis}: each prediction with its measured error (chatplan.accuracy);
        computed when asked for, so a plan searched over and discarded does not pay for it."""
        return plan_bands(self.memory, self.time)

    @property
    def forecast(self) -> Forecast | None:
        """The capability forecast (chatplan.forecast): val bpb and CORE with bands; None on the embedded sample
        corpus, which no published run used. Computed when asked for (~3 us), like the bands."""
        if self.data_source == "sample":
            return None
        return forecast_plan(self.arch.name, self.shape.n_layer, self.params, self.horizon.tokens,
                             self.horizon.total_flops)

    def to_dict(self) -> dict:
        """plan.json (written by its one owner, chatplan.contract)."""
        from chatplan.contract import plan_document

        return plan_document(self)


def plan(request: PlanRequest | None = None, *, catalog: Catalog | None = None,
         calibration: Calibration | None = None, **inputs: Any) -> Plan:
    """The whole plan for one model on one fleet. Raises InvalidInput (exit 2) or RequirementFailed (1).

    Give a `PlanRequest`, or its fields as keywords (`plan(depth=20, gpus="8xH100")`). A `budget` (USD)
    replaces depth and tier: the plan is for the largest valid depth whose predicted pretraining cost
    on the fleet fits it.
    """
    try:
        request = PlanRequest(**inputs) if request is None else replace(request, **inputs)
    except TypeError as e:
        raise InvalidInput(f"plan(): {e}") from None
    catalog = catalog or builtin_catalog()
    if wants_target(request):  # the cheapest depth and ratio whose forecast reaches a quality
        from chatplan.target import plan_for_target

        return plan_for_target(request, lambda r: plan_one(r, catalog, calibration))
    if request.budget is not None:
        return plan_for_budget(request, catalog, calibration)
    return plan_one(request, catalog, calibration)


def plan_for_budget(request: PlanRequest, catalog: Catalog, calibration: Calibration | None) -> Plan:
    """The largest valid depth whose predicted pretraining cost is within the budget (dollars).

    Cost grows monotonically with depth (FLOPs grow ~L^4 while MFU moves slowly), so the search walks
    up the valid depths and stops at the first one over budget, or that no longer fits in memory.
    """
    budget = request.budget
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not (budget > 0
                                                                              and math.isfinite(budget)):
        raise InvalidInput(f"budget must be a positive finite number of dollars, got {budget!r}")
    if request.depth is not None or request.tier is not None:
        raise InvalidInput("--budget chooses the depth: drop --depth / --tier")
    resolved, arch, _ = resolve(replace(request, budget=None, depth=1))
    best: Plan | None = None
    over: Plan | None = None
    for depth in range(1, MAX_DEPTH + 1):
        if not arch.is_valid_depth(depth, resolved.aspect_ratio, resolved.head_dim, resolved.kv_heads):  # type: ignore[arg-type]
            continue
        try:
            candidate = plan_one(replace(request, budget=None, depth=depth), catalog, calibration)
        except RequirementFailed:
            break  # deeper models need even more memory
        if candidate.time.cost_usd > budget:
            over = candidate
            break
        best = candidate
    if best is None:
        cheapest = f"depth {over.depth} costs ${over.time.cost_usd:,.2f}" if over else "no depth fits in memory"
        raise RequirementFailed(f"budget ${budget:,.2f} buys no model on this fleet: {cheapest}")
    choice = BudgetChoice(float(budget), best.depth, best.time.cost_usd, over.depth if over else None,
                          over.time.cost_usd if over else None)
    return replace(best, budget=choice, request=replace(best.request, budget=float(budget)))



def plan_one(request: PlanRequest, catalog: Catalog, calibration: Calibration | None) -> Plan:
    if request.depth is None and request.tier is None:
        raise InvalidInput("give a depth (--depth D), a tier (--tier 100|300|1000|tiny) or a budget (--budget USD)")
    r, arch, tier = resolve(request)
    fleet = parse_fleet(r.gpus, catalog, r.gpus_per_node, r.nodes)  # type: ignore[arg-type]
    gpu, world = fleet.gpu, fleet.num_gpus
    if tier is not None and tier.cpu_only and gpu.device_type != "cpu":
        raise InvalidInput(f"--tier {tier.name} is a CPU preset (NxCPU), not for {r.gpus}")
    shape = arch.model_shape(r.depth, r.aspect_ratio, r.head_dim, r.kv_heads, r.vocab_size, r.seq_len,  # type: ignore[arg-type]
                             r.window_pattern)
    if tier is not None and tier.one_micro_batch:  # one device batch on every rank: accumulation 1
        tokens = r.device_batch_size * shape.sequence_len * world  # type: ignore[operator]
        r = updated(r, total_batch_size=tokens, eval_tokens=tokens)
    batch_source = "user" if r.total_batch_size is not None else "auto"
    total_batch = r.total_batch_size or arch.default_total_batch_size(shape)
    if r.total_batch_size is None:
        r = updated(r, total_batch_size=total_batch)
    counts = arch.param_counts(shape)
    fpt = arch.flops_per_token(shape, counts)
    horizon = training_horizon(counts.scaling, fpt, total_batch, r.steps, r.target_flops, r.data_ratio)  # type: ignore[arg-type]
    problem = arch.check_world_size(shape, world)
    if problem:
        raise InvalidInput(problem)
    seqs = sequences_per_rank(total_batch, shape.sequence_len, world)
    precision = decide_precision(arch.name, gpu.device_type, fp8_supported=arch.fp8_supported,
                                 compute_capability=gpu.compute_capability, fp8=r.fp8, compile=r.compile)
    facts = model_facts(arch, shape, world, precision)
    warnings: list[str] = []
    notes: list[str] = []
    capacity = fleet.rank_capacity_gib

    if r.device_batch_size is not None:
        accum = grad_accum_for(r.device_batch_size, seqs, total_batch, shape.sequence_len, world)
        memory = estimate_memory(facts, r.device_batch_size, accum, capacity)
        device_batch_source = "user"
        if memory.verdict == "oom":
            warnings.append(
                f"device batch size {r.device_batch_size} is predicted to run out of memory: "
                f"{memory.peak_device_gib:.1f} GiB of {capacity:.2f} GiB per rank on {gpu.name}")
    else:
        chosen = choose_device_batch(facts, seqs, capacity)
        if chosen is None:
            one = estimate_memory(facts, 1, seqs, capacity)
            raise RequirementFailed(
                f"depth {shape.n_layer} does not fit on {gpu.name} even at batch 1 ({one.peak_device_gib:.1f} GiB "
                f"needed, {capacity:.2f} GiB available per rank): use a GPU with more memory, a shorter "
                f"context (--seq-len), or a smaller depth")
        memory = chosen
        device_batch_source = "auto"
        if memory.device_batch_size == seqs and (fits := largest_fitting_batch(facts, capacity)) > seqs:
            notes.append(f"device batch {seqs}: a batch of up to {fits} would fit in memory, but "
                         f"the total batch of {total_batch:,} tokens is only {seqs} sequences per GPU "
                         f"({shape.sequence_len:,} tokens each on {world} GPUs); a larger one would not divide it")
    measured = _measured_memory(arch, shape, fleet, precision, memory, total_batch, calibration)
    if measured is not None:  # a probe or a run measured this depth on this GPU type: its figures, carried
        memory = with_measured(memory, measured.peak_allocated_gib, measured.peak_reserved_gib,
                               measured.peak_device_gib, measured.described)
        notes.append(measured.described)
        if memory.verdict == "oom":
            warnings.append(f"device batch size {memory.device_batch_size} runs out of memory by the measured "
                            f"figures: {memory.peak_allocated_gib:.1f} GiB allocated of {capacity:.2f} GiB")
    parallelism = Parallelism(world, fleet.nodes, fleet.gpus_per_node, memory.device_batch_size,
                              memory.grad_accum_steps, device_batch_source)

    step = predict_step(facts, fleet, memory.device_batch_size, memory.grad_accum_steps, catalog, r.inter_node_gbps)
    used_mfu, mfu_source, calibrated = _mfu(r, arch, shape, fleet, step, total_batch, catalog, calibration,
                                            memory.device_batch_size)
    price_per_hour = gpu.price_per_hour if r.price is None else float(r.price)
    # A CPU's peak is the whole machine's (all ranks share its cores); a GPU fleet's is the sum.
    fleet_peak = gpu.peak_flops * (world if gpu.device_type == "cuda" else 1)
    # A calibrated MFU comes from whole measured steps: across nodes it already includes the
    # inter-node traffic, which must not be added a second time.
    inter_node_s = 0.0 if mfu_source == "calibrated" else step.inter_node_comm_s
    time = time_and_cost(horizon.total_flops, fpt, horizon.steps, total_batch, world, fleet_peak,
                         used_mfu, mfu_source, price_per_hour, inter_node_s, r.eval_every, r.eval_tokens)  # type: ignore[arg-type]
    # the published recipes' downloads are comparable only for the reference horizon and shape
    d = arch.defaults
    reference = ((r.aspect_ratio, r.vocab_size, r.seq_len, batch_source, horizon.source, r.data_ratio)
                 == (d.aspect_ratio, d.vocab_size, d.seq_len, "auto", "data_ratio", d.data_ratio))
    data = data_plan(horizon.tokens, arch.dataset, r.chars_per_token, r.chars_per_shard,  # type: ignore[arg-type]
                     shape.n_layer if reference else None)
    if data.warning:
        warnings.append(data.warning)
    if precision.attention_kernel == "sdpa-dense-mask" and shape.window_pattern != "L":
        warnings.append(f"{gpu.name} has no windowed flash kernel in nanochat (FA3 is Hopper-only): SDPA needs a "
                        f"dense {shape.sequence_len:,} x {shape.sequence_len:,} mask for the short windows and "
                        "computes every score (slow); --window-pattern L trains at full attention instead")
    notes.extend(arch.plan_notes(shape, world))
    return Plan(
        request=r, arch=arch, tier=tier, shape=shape, params=counts, flops_per_token=fpt, horizon=horizon,
        total_batch_source=batch_source, fleet=fleet, parallelism=parallelism, precision=precision,
        memory=memory, step=step, time=time, data=data,
        data_source=tier.data_source if tier is not None else "dataset",
        calibration=calibrated, warnings=tuple(warnings), notes=tuple(notes),
    )


def _measured_memory(arch: Architecture, shape: ModelShape, fleet: Fleet, precision: Precision,
                     memory: MemoryEstimate, total_batch: int, calibration: Calibration | None):
    """Recorded memory measurements of this depth on this GPU type, carried to this plan by the model."""
    if calibration is None or not calibration.points:
        return None
    gpu, world = fleet.gpu, fleet.num_gpus

    def figures(m: MemoryEstimate) -> tuple[float, float, float]:
        return m.peak_allocated_gib, m.peak_reserved_gib, m.peak_device_gib

    def model_at(point: CalibrationPoint) -> tuple[float, float, float]:
        accum = point.grad_accum_steps or max(1, total_batch // (point.device_batch_size * point.seq_len
                                                                 * point.world_size))
        facts = model_facts(arch, shape, point.world_size, precision)
        return figures(estimate_memory(facts, point.device_batch_size, accum, fleet.rank_capacity_gib))

    return calibrated_memory(calibration, arch.name, gpu.name, gpu.device_type, world, shape.n_layer,
                             shape.sequence_len, shape.vocab_size, memory.device_batch_size, figures(memory), model_at)


def _mfu(r: PlanRequest, arch: Architecture, shape: ModelShape, fleet: Fleet, step: StepTime, total_batch: int,
         catalog: Catalog, calibration: Calibration | None,
         device_batch_size: int | None = None) -> tuple[float, str, Calibrated]:
    """The MFU the time and cost use: the override, else the calibrated, else the predicted one."""
    gpu, world = fleet.gpu, fleet.num_gpus

    def model_mfu_at(point: CalibrationPoint) -> float:
        other = arch.model_shape(point.depth, r.aspect_ratio, r.head_dim, r.kv_heads, r.vocab_size, point.seq_len,
                                 r.window_pattern)
        precision = decide_precision(arch.name, gpu.device_type, fp8_supported=arch.fp8_supported,
                                     compute_capability=gpu.compute_capability, fp8=r.fp8, compile=r.compile)
        # a probe ran one process: the model at its own world size and accumulation (then the ratio carries it)
        at_world = point.world_size if point.source == "probe" else world
        at_fleet = fleet if at_world == world else parse_fleet(f"{at_world}x{gpu.name}", catalog, at_world, 1)
        accum = point.grad_accum_steps or max(1, total_batch // (point.device_batch_size * point.seq_len * at_world))
        return predict_step(model_facts(arch, other, at_world, precision), at_fleet, point.device_batch_size, accum,
                            catalog, r.inter_node_gbps).mfu

    cal = None if r.mfu is not None else calibrated_mfu(
        calibration, arch.name, gpu.name, gpu.device_type, world, shape.n_layer, shape.sequence_len,
        shape.vocab_size, step.mfu, model_mfu_at, device_batch_size)
    source = calibration.source if calibration else None
    if cal is None:
        note = Calibrated("uncalibrated", 0, source)
    elif cal.described:
        note = Calibrated(cal.described, cal.points, source)
    else:
        note = Calibrated(f"calibrated from {cal.points} run{'s' if cal.points != 1 else ''} ({cal.method})",
                          cal.points, source)
    if r.mfu is not None:
        return r.mfu, "override", note
    if cal is not None:
        return cal.mfu, "calibrated", note
    return step.mfu, "predicted", note

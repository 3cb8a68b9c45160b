"""Many plans, one answer: fleets ranked by cost or time, and the fit grid."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from chatplan.calibration import Calibration
from chatplan.catalog import Catalog
from chatplan.errors import InvalidInput, RequirementFailed
from chatplan.plan import Plan
from chatplan.request import PlanRequest, resolve, wants_target

DEFAULT_COUNTS = (1, 8, 16, 32, 64)


@dataclass(frozen=True)
class FleetRow:
    fleet: str
    plan: Plan | None  # None when the fleet cannot run this model
    problem: str | None
    verdict: str = ""  # for rows without a plan: "oom" (nothing fits) or "invalid" (e.g. batch does not divide)

    def to_dict(self) -> dict:
        if self.plan is None:
            return {"fleet": self.fleet, "verdict": self.verdict, "problem": self.problem}
        p = self.plan
        return {"fleet": self.fleet, "depth": p.depth, "gpu": p.fleet.gpu.name, "num_gpus": p.fleet.num_gpus,
                "nodes": p.fleet.nodes,
                "verdict": p.memory.verdict, "device_batch_size": p.parallelism.device_batch_size,
                "grad_accum_steps": p.parallelism.grad_accum_steps, "peak_device_gib": p.memory.peak_device_gib,
                "mfu": p.time.mfu, "pretrain_hours": p.time.pretrain_hours, "cost_usd": p.time.cost_usd,
                "price_per_gpu_hour": p.time.price_per_gpu_hour, "data_ratio": p.request.data_ratio,
                "forecast": _forecast_brief(p)}


def _forecast_brief(p: Plan) -> dict | None:
    """A compare row's forecast: the two bands and whether it extrapolates (the plan.json section in short)."""
    if p.forecast is None:
        return None
    doc = p.forecast.to_dict()
    return {k: doc[k] for k in ("group", "val_bpb", "core", "extrapolates")}


def compare_fleets(
    request: PlanRequest,
    catalog: Catalog,
    calibration: Calibration | None = None,
    by: str = "cost",
    gpu_names: list[str] | None = None,
    counts: tuple[int, ...] = DEFAULT_COUNTS,
    max_hours: float | None = None,
) -> list[FleetRow]:
    """Every fleet (GPU type x count) planned with plan(), ranked by cost or time; non-runnable last.

    Inputs that are wrong whatever the fleet (an invalid depth, a bad MFU) are refused once, before
    any fleet is tried; only what a fleet decides (divisibility, memory) becomes a row's problem.
    """
    from chatplan.plan import plan
    if by not in ("cost", "time"):
        raise InvalidInput(f"--by {by!r} is not one of cost, time")
    if max_hours is not None and not (max_hours > 0 and math.isfinite(max_hours)):
        raise InvalidInput(f"--max-hours must be a positive finite number, got {max_hours!r}")
    bad = [c for c in counts if not (isinstance(c, int) and c >= 1)]
    if bad or not counts:
        raise InvalidInput(f"GPU counts must be positive integers, got {', '.join(map(str, counts)) or 'none'}")
    if request.budget is None and not wants_target(request):  # else each fleet's search chooses the depth
        resolved, arch, _ = resolve(request)
        if resolved.depth is None:
            raise InvalidInput("give a depth (--depth D), a tier (--tier 100|300|1000|tiny) or a budget (--budget USD)")
        arch.model_shape(resolved.depth, resolved.aspect_ratio, resolved.head_dim, resolved.kv_heads,
                         resolved.vocab_size, resolved.seq_len, resolved.window_pattern)
    names = [catalog.get(n).name for n in gpu_names] if gpu_names else [
        g.name for g in catalog.gpus if g.device_type == "cuda"]
    rows = []
    for name in names:
        for count in counts:
            fleet = f"{count}x{catalog.get(name).name}"
            try:
                rows.append(FleetRow(fleet, plan(replace(request, gpus=fleet), catalog=catalog,
                                                calibration=calibration), None))
            except RequirementFailed as e:  # valid fleet, but the model does not fit even at batch 1
                rows.append(FleetRow(fleet, None, str(e), "oom"))
            except InvalidInput as e:  # e.g. the total batch does not divide over this many GPUs
                rows.append(FleetRow(fleet, None, str(e), "invalid"))
    runnable = [r for r in rows if r.plan is not None
                and (max_hours is None or r.plan.time.pretrain_hours <= max_hours)]
    key = (lambda r: (r.plan.time.cost_usd, r.plan.time.pretrain_hours)) if by == "cost" else (
        lambda r: (r.plan.time.pretrain_hours, r.plan.time.cost_usd))
    runnable.sort(key=key)
    slow = [r for r in rows if r.plan is not None and r not in runnable]
    return runnable + slow + [r for r in rows if r.plan is None]


FIT_BATCHES = tuple(2**i for i in range(9))  # 1 ... 256


def fleet_count(spec: str | None) -> int:
    """The GPU count of a COUNTxGPU spec (0 when it has none; parse_fleet gives the error)."""
    head = (spec or "").lower().split("x", 1)[0].strip()
    return int(head) if head.isdigit() else 0


def fit_grid(request: PlanRequest, catalog: Catalog) -> dict:
    """Peak device memory of one model at every batch 1..256, on the given fleet or on one node of 8 of
    every GPU type. What fits is decided exactly as plan() decides it (same facts, same estimate)."""
    from chatplan.batch import sequences_per_rank
    from chatplan.catalog import parse_fleet
    from chatplan.facts import model_facts
    from chatplan.memory import estimate_memory
    from chatplan.precision import decide_precision

    r, arch, tier = resolve(request)
    if tier is not None and tier.cpu_only:
        raise InvalidInput(f"fit compares GPUs; the {tier.name} tier runs on the CPU: use estimate --tier {tier.name}")
    if r.depth is None:
        raise InvalidInput("give a depth (--depth D) or a tier (--tier 100|300|1000)")
    shape = arch.model_shape(r.depth, r.aspect_ratio, r.head_dim, r.kv_heads, r.vocab_size, r.seq_len,
                             r.window_pattern)
    total = r.total_batch_size or arch.default_total_batch_size(shape)
    if request.gpus:
        fleets = [parse_fleet(r.gpus, catalog, max(1, fleet_count(r.gpus)))]  # one node: nodes do not matter
        header = f"on the given fleet {fleets[0].label}"
        sequences_per_rank(total, shape.sequence_len, fleets[0].num_gpus)  # refuses a batch that cannot divide
    else:
        fleets = [parse_fleet(f"8x{g.name}", catalog) for g in catalog.gpus if g.device_type == "cuda"]
        header = "assuming one node of 8 GPUs of each type (pass --gpus to choose)"
    result = []
    for fleet in fleets:
        world = fleet.num_gpus
        gpu = fleet.gpu
        try:
            precision = decide_precision(arch.name, gpu.device_type, fp8_supported=arch.fp8_supported,
                                         compute_capability=gpu.compute_capability, fp8=r.fp8, compile=r.compile)
        except InvalidInput:
            if request.gpus:
                raise
            continue  # --fp8 over the whole catalog: only the GPUs that have it
        facts = model_facts(arch, shape, world, precision)
        per_rank = max(1, total // shape.sequence_len // world)
        cells = []
        for b in FIT_BATCHES:
            accum = max(1, per_rank // b)
            est = estimate_memory(facts, b, accum, fleet.rank_capacity_gib)
            cells.append({"device_batch_size": b, "grad_accum_steps": accum,
                          "divides_total_batch": per_rank % b == 0 and b <= per_rank,
                          "peak_allocated_gib": est.peak_allocated_gib, "peak_device_gib": est.peak_device_gib,
                          "verdict": est.verdict})
        result.append({"gpu": gpu.name, "num_gpus": world, "capacity_gib": fleet.rank_capacity_gib, "batches": cells})
    return {"arch": arch.name, "depth": r.depth, "seq_len": shape.sequence_len, "total_batch_size": total,
            "assumption": header, "compares": "peak_device_gib against torch-visible capacity", "fleets": result}

"""Budget gates for CI (`chatplan check`) and fleet comparison (`chatplan compare`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from chatplan.catalog import Catalog, builtin_catalog
from chatplan.errors import InvalidInput, RequirementFailed
from chatplan.plan import Plan, plan


@dataclass(frozen=True)
class Check:
    name: str
    limit: float
    predicted: float
    ok: bool
    unit: str
    compares: str  # what the predicted value is

    @property
    def verdict(self) -> str:
        return "pass" if self.ok else "fail"

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}

    def line(self) -> str:
        if self.name == "fits_memory":
            return (f"fits_memory: predicted {self.predicted:,.2f} GiB ({self.compares}) must be <= "
                    f"{self.limit:,.2f}: {self.verdict}")
        op = ">=" if self.name == "min_headroom_gib" else "<="
        return (f"{self.name}: predicted {self.predicted:,.4g} {self.unit} ({self.compares}) must be "
                f"{op} {self.limit:,.4g}: {self.verdict}")


def run_checks(
    p: Plan,
    max_cost: float | None = None,
    max_hours: float | None = None,
    max_gpu_memory_frac: float | None = None,
    min_headroom_gib: float | None = None,
) -> list[Check]:
    """Each limit that was given, against the plan's prediction (memory: peak_device_gib vs capacity)."""
    for name, value in [("--max-cost", max_cost), ("--max-hours", max_hours),
                        ("--max-gpu-memory-frac", max_gpu_memory_frac)]:
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise InvalidInput(f"{name} must be a positive finite number, got {value!r}")
    if min_headroom_gib is not None and not (min_headroom_gib >= 0 and math.isfinite(min_headroom_gib)):
        raise InvalidInput(f"--min-headroom-gib must be a finite number >= 0, got {min_headroom_gib!r}")
    m = p.memory
    # Always: a plan predicted to run out of memory fails, whatever limits were given.
    checks = [Check("fits_memory", m.capacity_gib, m.peak_device_gib, m.verdict != "oom", "GiB",
                    f"peak_device_gib at device batch {p.parallelism.device_batch_size} vs capacity")]
    if max_cost is not None:
        checks.append(Check("max_cost", max_cost, p.time.cost_usd, p.time.cost_usd <= max_cost, "USD",
                            "pretraining cost"))
    if max_hours is not None:
        checks.append(Check("max_hours", max_hours, p.time.pretrain_hours, p.time.pretrain_hours <= max_hours,
                            "h", "pretraining wall time"))
    if max_gpu_memory_frac is not None:
        frac = m.peak_device_gib / m.capacity_gib
        checks.append(Check("max_gpu_memory_frac", max_gpu_memory_frac, frac, frac <= max_gpu_memory_frac, "",
                            "peak_device_gib / torch-visible capacity"))
    if min_headroom_gib is not None:
        checks.append(Check("min_headroom_gib", min_headroom_gib, m.headroom_gib, m.headroom_gib >= min_headroom_gib,
                            "GiB", "capacity - peak_device_gib"))
    return checks


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
                "price_per_gpu_hour": p.time.price_per_gpu_hour}


def compare_fleets(
    by: str = "cost",
    gpu_names: list[str] | None = None,
    counts: tuple[int, ...] = DEFAULT_COUNTS,
    max_hours: float | None = None,
    catalog: Catalog | None = None,
    **plan_kwargs,
) -> list[FleetRow]:
    """Every fleet (GPU type x count) planned with plan(), ranked by cost or time; non-runnable last."""
    if by not in ("cost", "time"):
        raise InvalidInput(f"--by {by!r} is not one of cost, time")
    if max_hours is not None and not (max_hours > 0 and math.isfinite(max_hours)):
        raise InvalidInput(f"--max-hours must be a positive finite number, got {max_hours!r}")
    bad = [c for c in counts if not (isinstance(c, int) and c >= 1)]
    if bad or not counts:
        raise InvalidInput(f"GPU counts must be positive integers, got {', '.join(map(str, counts)) or 'none'}")
    catalog = catalog or builtin_catalog()
    names = [catalog.get(n).name for n in gpu_names] if gpu_names else [
        g.name for g in catalog.gpus if g.device_type == "cuda"]
    rows = []
    for name in names:
        for count in counts:
            fleet = f"{count}x{catalog.get(name).name}"
            try:
                rows.append(FleetRow(fleet, plan(gpus=fleet, catalog=catalog, **plan_kwargs), None))
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

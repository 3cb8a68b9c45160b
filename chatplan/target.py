"""The inverse question: the cheapest plan whose forecast reaches a quality (`--target-core`, `--target-bpb`,
`--tier gpt2`).

The grid is the architecture's valid depths x data ratios 4-20 in steps of 0.25, everything else as the
request gives it (fleet, precision, batch). A given `--depth` or `--data-ratio` (or a tier's depth) pins that
axis. At one depth, cost and forecast both grow with the ratio, so the cheapest reaching ratio is found by
bisection; across depths the cheapest of those wins. The walk up the depths stops when a depth no longer fits
in memory, or when STOP_AFTER depths in a row cost more than the best even at the smallest ratio (cost grows
~depth^4). plan() passes its own plan_one in, so this module never imports chatplan.plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from chatplan.arch.base import MAX_DEPTH
from chatplan.errors import InvalidInput, RequirementFailed
from chatplan.request import (
    PlanRequest,
    check_request,
    expand_target_tier,
    normalise_tier_name,
    resolve,
    target_tier,
    updated,
)

if TYPE_CHECKING:
    from chatplan.plan import Plan

RATIOS = tuple(4 + 0.25 * i for i in range(65))  # 4, 4.25, ..., 20
STOP_AFTER = 4


@dataclass(frozen=True)
class TargetChoice:
    core: float | None  # CORE at least this
    val_bpb: float | None  # validation bpb at most this
    named: str | None  # "gpt2" when a tier asked for it
    depths: tuple[int, int]  # the depths searched
    ratios: tuple[float, float]
    plans_evaluated: int
    chosen_depth: int
    chosen_ratio: float
    chosen_cost_usd: float

    def describe(self) -> str:
        want = [f"CORE >= {self.core:g}" if self.core is not None else "",
                f"val bpb <= {self.val_bpb:g}" if self.val_bpb is not None else ""]
        return " and ".join(w for w in want if w) + (f" (--tier {self.named})" if self.named else "")


def _reaches(p: Plan, core: float | None, bpb: float | None) -> bool:
    return p.forecast is not None and p.forecast.reaches(core, bpb)


def plan_for_target(request: PlanRequest, plan_one: Callable[[PlanRequest], Plan]) -> Plan:
    """The cheapest plan on the grid whose forecast reaches the target; RequirementFailed when none does."""
    named = normalise_tier_name(request.tier) if target_tier(request.tier) is not None else None
    request = expand_target_tier(request)
    core, bpb = request.target_core, request.target_bpb
    what = "--tier gpt2" if named else "--target-core" if core is not None else "--target-bpb"
    for given, flag in ((request.budget, "--budget"), (request.steps, "--steps"),
                        (request.target_flops, "--target-flops")):
        if given is not None:
            raise InvalidInput(f"{what} chooses the depth and the horizon: drop {flag}")
    check_request(request)  # the targets' own ranges, before any plan
    base = updated(request, target_core=None, target_bpb=None)
    resolved, arch, tier = resolve(base)
    if tier is not None or request.depth is not None:
        depths = [resolved.depth]
    else:
        depths = [d for d in range(1, MAX_DEPTH + 1)
                  if arch.is_valid_depth(d, resolved.aspect_ratio, resolved.head_dim, resolved.kv_heads)]
    ratios = (float(request.data_ratio),) if request.data_ratio is not None else RATIOS
    evaluated = 0
    cache: dict[tuple[int, int], Plan] = {}

    def at(depth: int, i: int) -> Plan:
        nonlocal evaluated
        if (depth, i) not in cache:
            evaluated += 1
            cache[(depth, i)] = plan_one(replace(base, depth=depth, data_ratio=ratios[i]) if tier is None
                                         else replace(base, data_ratio=ratios[i]))
        return cache[(depth, i)]

    best: Plan | None = None
    closest: Plan | None = None  # the best forecast seen, for the message when nothing reaches
    dearer = 0
    last = depths[0]
    for depth in depths:
        last = depth
        try:
            top = at(depth, len(ratios) - 1)
        except RequirementFailed:
            break  # deeper models need even more memory
        except InvalidInput:
            if len(depths) == 1:
                raise
            continue  # e.g. this depth's automatic batch does not divide over the fleet
        if best is not None and at(depth, 0).time.cost_usd > best.time.cost_usd:
            dearer += 1
            if dearer >= STOP_AFTER:
                break
            continue
        dearer = 0
        if not _reaches(top, core, bpb):
            if top.forecast is not None and (closest is None or top.forecast.core > closest.forecast.core):
                closest = top
            continue
        lo, hi = 0, len(ratios) - 1  # the smallest reaching ratio index lies in [lo, hi]; hi reaches
        while lo < hi:
            mid = (lo + hi) // 2
            if _reaches(at(depth, mid), core, bpb):
                hi = mid
            else:
                lo = mid + 1
        p = at(depth, hi)
        if best is None or (p.time.cost_usd, p.time.pretrain_hours) < (best.time.cost_usd, best.time.pretrain_hours):
            best = p
    want = " and ".join(x for x in (f"CORE {core:g}" if core is not None else "",
                                    f"val bpb {bpb:g}" if bpb is not None else "") if x)
    if best is None:
        near = (f"; the best forecast on the grid is {closest.forecast.summary()} (depth {closest.depth}, ratio "
                f"{closest.request.data_ratio:g})" if closest is not None else "")
        raise RequirementFailed(f"no plan on {resolved.gpus} reaches {want} (depths {depths[0]}-{last}, "
                                f"ratios {ratios[0]:g}-{ratios[-1]:g}){near}")
    choice = TargetChoice(core, bpb, named, (depths[0], last), (ratios[0], ratios[-1]), evaluated,
                          best.depth, float(best.request.data_ratio), best.time.cost_usd)  # type: ignore[arg-type]
    return replace(best, target=choice, request=updated(best.request, target_core=core, target_bpb=bpb))

"""Budget gates for CI (`chatplan check`): each limit against the plan's prediction."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from chatplan.errors import InvalidInput
from chatplan.plan import Plan


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
    pessimistic: bool = False,
) -> list[Check]:
    """Each limit that was given, against the plan's prediction (memory: peak_device_gib vs capacity).

    `pessimistic`: against the high end of each figure's error band instead (chatplan.accuracy), for a
    gate that must hold even when the prediction is off by its measured error."""
    for name, value in [("--max-cost", max_cost), ("--max-hours", max_hours),
                        ("--max-gpu-memory-frac", max_gpu_memory_frac)]:
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise InvalidInput(f"{name} must be a positive finite number, got {value!r}")
    if min_headroom_gib is not None and not (min_headroom_gib >= 0 and math.isfinite(min_headroom_gib)):
        raise InvalidInput(f"--min-headroom-gib must be a finite number >= 0, got {min_headroom_gib!r}")
    m = p.memory

    def figure(name: str, central: float) -> float:
        return p.bands[name]["high"] if pessimistic and name in p.bands else central

    device = figure("peak_device_gib", m.peak_device_gib)
    cost, hours_ = figure("cost_usd", p.time.cost_usd), figure("pretrain_hours", p.time.pretrain_hours)
    end = " (high end of its band)" if pessimistic else ""
    # Always: a plan predicted to run out of memory fails, whatever limits were given.
    checks = [Check("fits_memory", m.capacity_gib, device, device <= m.capacity_gib, "GiB",
                    f"peak_device_gib{end} at device batch {p.parallelism.device_batch_size} vs capacity")]
    if max_cost is not None:
        checks.append(Check("max_cost", max_cost, cost, cost <= max_cost, "USD", f"pretraining cost{end}"))
    if max_hours is not None:
        checks.append(Check("max_hours", max_hours, hours_, hours_ <= max_hours, "h", f"pretraining wall time{end}"))
    if max_gpu_memory_frac is not None:
        frac = device / m.capacity_gib
        checks.append(Check("max_gpu_memory_frac", max_gpu_memory_frac, frac, frac <= max_gpu_memory_frac, "",
                            f"peak_device_gib{end} / torch-visible capacity"))
    if min_headroom_gib is not None:
        headroom = m.capacity_gib - device
        checks.append(Check("min_headroom_gib", min_headroom_gib, headroom, headroom >= min_headroom_gib,
                            "GiB", f"capacity - peak_device_gib{end}"))
    return checks

"""Prediction vs reality: what the plan said next to what this run measured (report.json).

Step time, tok/s and MFU are medians over the steady steps (the first two steps of a process,
with compilation and allocator warm-up, are left out when there are more). Cost and hours are
extrapolated to the plan's full horizon from the measured step time, so a short smoke run on the
target hardware already tells whether the plan's budget holds.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from chatplan.contract import PlanDoc, forecast_check, forecast_checks, pair, report_pairs, run_summary

WARMUP_STEPS = 2


def steady(step_seconds: list[float]) -> list[float]:
    return step_seconds[WARMUP_STEPS:] if len(step_seconds) > WARMUP_STEPS else step_seconds


_pair = pair  # achieved, predicted and the one error measure (chatplan.contract)


def checked_mfu(flops_per_second: float | None, peak_flops: float | None) -> tuple[float | None, str | None]:
    """(MFU, None), or (None, why) when there is no figure to give. Above 100 % (or not finite) the
    denominator is wrong, not the run fast: e.g. a CPU peak measured while the CPU was shared. Such a
    figure is a measurement error to report, never a number to print or to calibrate from."""
    if not flops_per_second or not peak_flops:
        return None, None
    mfu = flops_per_second / peak_flops
    if math.isfinite(mfu) and 0 < mfu <= 1:
        return mfu, None
    return None, (f"achieved {flops_per_second:.3g} FLOP/s against a peak of {peak_flops:.3g} FLOP/s is MFU "
                  f"{mfu:.0%}, above 100 %: the peak is wrong (measured under load or oversubscribed?), "
                  "so no MFU is reported")


def build_report(doc: PlanDoc, *, step_seconds: list[float], tokens_per_step: int, flops_per_token: int,
                 peak_flops: float, peak_method: str, world_size: int, wall_seconds: float,
                 steps_done: int, memory: dict[str, float] | None, final_val_bpb: float | None,
                 final_loss: float | None) -> dict[str, Any]:
    pred = doc.predictions
    forecast = getattr(doc, "forecast", None)  # PlanDoc.forecast (None for plans without one; stand-ins lack it)
    horizon_steps = doc.steps
    times = steady(step_seconds)
    step_s = statistics.median(times) if times else None
    tok_s = tokens_per_step / step_s if step_s else None
    # One peak per comparison: achieved and predicted MFU against the same peak, so the MFU's error is the
    # throughput's. A GPU: the plan's (datasheet per GPU x GPUs). A CPU: the matmul peak the trainer
    # measured on this machine (the catalog's CPU figure is a nominal one), the plan's predicted tok/s
    # converted to it. The other peak's MFU is reported beside it.
    plan_per_gpu = pred.get("peak_flops_per_gpu") or 0.0
    plan_peak = plan_per_gpu * (world_size if doc.device_type == "cuda" else 1)
    cuda = doc.device_type == "cuda"
    achieved_flops = flops_per_token * tok_s if tok_s else None
    mfu, mfu_error = checked_mfu(achieved_flops, (plan_peak if cuda else peak_flops) or peak_flops)
    # beside it: on a GPU the MFU against the peak the trainer was given; on a CPU the throughput against
    # the catalog's nominal CPU figure (a ratio that may exceed 1 on a faster machine: no error then)
    other_mfu, other_error = checked_mfu(achieved_flops, peak_flops) if cuda else (
        achieved_flops / plan_peak if achieved_flops and plan_peak else None, None)
    predicted_mfu = pred.get("mfu")
    if not cuda and pred.get("tokens_per_second") and peak_flops:
        predicted_mfu = flops_per_token * pred.get("tokens_per_second") / peak_flops
    hours = step_s * horizon_steps / 3600 if step_s and horizon_steps else None
    price = pred.get("price_per_gpu_hour")
    gpus = world_size if doc.device_type == "cuda" else None
    cost = hours * price * gpus if hours is not None and price is not None and gpus else None
    report: dict[str, Any] = {
        "steps_done": steps_done,
        "steps_measured": len(times),
        "wall_seconds": wall_seconds,
        "final_loss": final_loss,
        "final_val_bpb": final_val_bpb,
        # the capability forecast is for the plan's full horizon: compare when steps_done is the plan's steps.
        # CORE needs its benchmark data (not downloaded here): `chatplan calibrate --core X` compares a measured one
        "val_bpb_forecast": forecast_check(final_val_bpb, forecast.get("val_bpb") if forecast else None),
        "core_forecast": forecast_check(None, forecast.get("core") if forecast else None),
        "tokens_per_second": _pair(tok_s, pred.get("tokens_per_second")),
        "step_seconds": _pair(step_s, pred.get("step_seconds")),
        "mfu": _pair(mfu, predicted_mfu),
        "peak_flops": {"value": peak_flops, "method": peak_method, "plan_value": plan_peak,
                       "mfu_against_the_other_peak": other_mfu,
                       **({"measurement_error": other_error} if other_error else {})},
        "train_hours_full_horizon": _pair(hours, pred.get("train_hours")),
        "cost_usd_full_horizon": _pair(cost, pred.get("cost_usd")),
    }
    if mfu_error:
        report["mfu"]["measurement_error"] = mfu_error
    if memory:
        report["memory_gib"] = {
            "max_allocated": _pair(memory.get("max_allocated_gib"), pred.get("peak_allocated_gib")),
            "max_reserved": _pair(memory.get("max_reserved_gib"), pred.get("peak_reserved_gib")),
            "device_used": _pair(memory.get("device_used_gib"), pred.get("peak_device_gib")),
        }
    return report


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_report(report: dict[str, Any]) -> list[str]:
    """Plain lines for the end of a run: achieved next to predicted (rows and facts read through the
    contract's report helpers). A row with a measurement error shows '-' and a line saying why."""
    lines = [f"{'':28}{'achieved':>14}{'predicted':>14}"]
    errors = []
    for label, p, spec in report_pairs(report):
        spec = ".1%" if label == "MFU" else spec
        lines.append(f"{label:28}{_fmt(p.get('achieved'), spec):>14}{_fmt(p.get('predicted'), spec):>14}")
        if p.get("measurement_error"):
            errors.append(f"{label}: measurement error: {p['measurement_error']}")
    s = run_summary(report)
    lines += errors
    for label, c in forecast_checks(report):
        lines.append(f"{label:28}{_fmt(c.get('achieved'), '.4f'):>14}{_fmt(c.get('predicted'), '.4f'):>14}"
                     + ("" if c.get("achieved") is not None else "  (not measured)"))
    lines.append(f"wall {_fmt(s.wall_seconds, '.1f')} s, {s.steps_done} steps, final loss "
                 f"{_fmt(s.final_loss, '.4f')}, val bpb {_fmt(s.final_val_bpb, '.4f')}")
    return lines

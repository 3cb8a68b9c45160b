"""How accurate the predictions are, as measured: the error band every predicted figure carries.

The band of a figure is its value times (1 ± the RMS relative error of `chatplan validate` on the FIELD
rows that no constant was fitted to, for that kind of figure). Two kinds, because the evidence comes in
two kinds: memory (the allocated memory of L1 and L5) and time (training minutes of L1, L5, N1, N2; step
time, MFU, hours and cost follow time). Rows a constant was fitted to are left out, their error being
zero or near it by construction: L4's time fixed the time model's software efficiency, L4's nvidia-smi
figure the allocator-cache constants, N2's memory the 2026 activation constant.
tests/test_validate.py recomputes both figures from the validation set, so they cannot drift from it.
The memory band is wide while L5 (one RTX 5090) misses its bar: that is the evidence today. The fit
verdict uses the same memory figure: `tight` when the high end of the band crosses capacity.
"""

from __future__ import annotations

from chatplan.contract import band

MEMORY_REL_ERROR = 0.1403  # RMS over 2 rows (L1 allocated -4.8 %, L5 allocated -19.3 %)
TIME_REL_ERROR = 0.0457  # RMS over 4 rows (L1, L5, N1, N2 training minutes)
BASIS = {"memory": f"±{MEMORY_REL_ERROR:.1%}: RMS relative error of chatplan validate's memory rows (L1, L5)",
         "time": f"±{TIME_REL_ERROR:.1%}: RMS relative error of chatplan validate's time rows (L1, L5, N1, N2)"}


def figure_band(value: float, kind: str, inverse: bool = False, rel: float | None = None,
                basis: str | None = None) -> dict:
    """The band of one figure; `inverse` for rates (MFU, tok/s), which fall when time rises. `rel` and
    `basis` replace the validation residual when the figure was measured (a probe or a run)."""
    rel = (MEMORY_REL_ERROR if kind == "memory" else TIME_REL_ERROR) if rel is None else rel
    low, high = (value / (1 + rel), value / (1 - rel)) if inverse else (value * (1 - rel), value * (1 + rel))
    return band(value, low, high, basis or BASIS[kind])


def plan_bands(m, t) -> dict[str, dict]:
    """A band for every predicted figure of a plan (plan.json's `bands`), from its memory and time."""
    rel = basis = None
    if m.source != "model":  # measured: its own band (chatplan.calibration)
        from chatplan.calibration import CALIBRATED_MEMORY_REL_ERROR

        rel, basis = CALIBRATED_MEMORY_REL_ERROR, f"±{CALIBRATED_MEMORY_REL_ERROR:.1%}: {m.source}"
    return {
        "peak_allocated_gib": figure_band(m.peak_allocated_gib, "memory", rel=rel, basis=basis),
        "peak_reserved_gib": figure_band(m.peak_reserved_gib, "memory", rel=rel, basis=basis),
        "peak_device_gib": figure_band(m.peak_device_gib, "memory", rel=rel, basis=basis),
        "step_seconds": figure_band(t.step_seconds, "time"),
        "tokens_per_second": figure_band(t.tokens_per_second, "time", inverse=True),
        "mfu": figure_band(t.mfu, "time", inverse=True),
        "train_hours": figure_band(t.train_hours, "time"),
        "pretrain_hours": figure_band(t.pretrain_hours, "time"),
        "cost_usd": figure_band(t.cost_usd, "time"),
    }

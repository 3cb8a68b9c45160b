"""Capability forecast: the validation bpb and CORE a plan's model should reach, each with a band.

The constants come from `scripts/fit_capability.py`, which fits the published nanochat runs of
`chatplan/capability.csv` and writes `chatplan/forecast_fit.json`; this module only evaluates the fitted
formulas (pure Python, no numpy or scipy, a few microseconds per plan):

- bpb, where a group has enough configurations: `E_g + A/N^a + B/D^b` (N = nanochat's scaling params,
  D = training tokens; exponents shared by the comparable groups, one E per group);
- bpb of the late-2025 group (two configurations only): a line in log10 of the effective compute;
- CORE: `c_g + s * (log10 F_eff - 19)`, one slope, one intercept per group.

F_eff, the *effective* compute, is the plan's FLOPs scaled by how far its (N, D) is from the compute-optimal
split of the fitted law: the FLOPs a compute-optimal run needs to reach the law's loss at this (N, D). For a
run near the optimal ratio it equals its FLOPs (the published runs are within ~20 %); a model trained at
ratio 4 or 40 gets less CORE per FLOP, so the cheapest plan for a target (chatplan.target) is not simply the
one with the fewest FLOPs at the best MFU.

Bands: the leave-one-configuration-out errors of the fit (scripts/fit_capability.py), widened outside
the published range of the plan's group: +100 % per decade of FLOPs, per factor 2 of ratio or of depth.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatplan.arch.base import ParamCounts

FIT_FILE = Path(__file__).with_name("forecast_fit.json")
GPT2_CORE = 0.256525  # GPT-2 1.5B's CORE (nanochat's reference; --tier gpt2)
UNKNOWNS = ("recipe changes after the fitted commits, data order and seed (CORE sd ~0.005-0.01), and the "
            "tokenizer's effect on CORE (+-0.01-0.02 at equal bpb) are not in the forecast")


@dataclass(frozen=True)
class Published:
    """One published run of the fit's data, for reference beside a forecast."""

    id: str
    label: str  # "Run 6 (C03)"
    depth: int
    ratio: float  # as published (late 2025 counted every parameter; 2026 counts scaling params)
    ratio_basis: str  # "total" | "scaling"
    precision: str
    scaling_params: int
    tokens: int
    val_bpb: float | None
    core: float | None

    def describe(self) -> str:
        got = [f"CORE {self.core:.4f}" if self.core is not None else "",
               f"bpb {self.val_bpb:.3f}" if self.val_bpb is not None else ""]
        basis = " (all params)" if self.ratio_basis == "total" else ""
        return (f"{self.label}, d{self.depth} {self.precision} ratio {self.ratio:g}{basis}: "
                f"{', '.join(g for g in got if g)}")


@dataclass(frozen=True)
class GroupFit:
    name: str
    dataset: str
    bpb: tuple[str, tuple[float, ...]]  # ("law", (E,)) | ("compute", (c0, c1))
    core_intercept: float | None
    log_flops: tuple[float, float]  # the published range of the group's fitted rows
    ratio: tuple[float, float]
    depth: tuple[int, int]
    rows: int  # fitted rows
    published: tuple[Published, ...]


@dataclass(frozen=True)
class Fit:
    """forecast_fit.json, read once."""

    law: tuple[float, float, float, float]  # A, a, B, b with N in units of 1e8 and D of 1e9
    core_slope: float  # CORE per decade of effective compute
    groups: dict[str, GroupFit]
    archs: dict[str, tuple[str, str]]  # architecture -> (group, ParamCounts field that is nanochat's N)
    half: dict[str, float]  # band half-widths inside the range: "core", "bpb_law", "bpb_compute"
    basis: dict[str, str]  # what each half-width is

    @staticmethod
    def from_dict(doc: dict[str, Any]) -> Fit:
        law = doc["law"]
        groups = {}
        for name, g in doc["groups"].items():
            rng = g["range"]
            published = tuple(Published(**p) for p in g["published"])
            bpb = ("law", (g["bpb"]["E"],)) if g["bpb"]["kind"] == "law" else (
                "compute", (g["bpb"]["c0"], g["bpb"]["c1"]))
            groups[name] = GroupFit(name, g["dataset"], bpb, g["core"]["intercept"],
                                    (math.log10(rng["flops"][0]), math.log10(rng["flops"][1])),
                                    tuple(rng["ratio"]), tuple(rng["depth"]), g["rows"], published)
        archs = {a: (v["group"], v["count"]) for a, v in doc["archs"].items()}
        bands = doc["band"]
        return Fit((law["A"], law["a"], law["B"], law["b"]), doc["core"]["slope"], groups, archs,
                   {k: v["half"] for k, v in bands.items()}, {k: v["basis"] for k, v in bands.items()})


@functools.cache
def default_fit() -> Fit:
    """The shipped fit (package data), read on first use."""
    return Fit.from_dict(json.loads(FIT_FILE.read_text()))


# --- the formulas ------------------------------------------------------------------------------------

def reducible_loss(law: tuple[float, float, float, float], n: float, d: float) -> float:
    """A/N^a + B/D^b, N in units of 1e8 parameters and D of 1e9 tokens."""
    A, a, B, b = law
    return A * n ** -a + B * d ** -b


def effective_log_flops(law: tuple[float, float, float, float], n: float, d: float, flops: float) -> float:
    """log10 of the FLOPs a compute-optimal run needs for this (N, D)'s reducible loss.

    At the optimum of A n^-a + B d^-b for a fixed n*d, a*A n^-a = b*B d^-b, so the loss L is reached by
    n* = (A (a+b) / (L b))^(1/a), d* = (B (a+b) / (L a))^(1/b); the plan's FLOPs scale by n* d* / (n d).
    """
    A, a, B, b = law
    loss = reducible_loss(law, n, d)
    n_opt = (A * (a + b) / (loss * b)) ** (1 / a)
    d_opt = (B * (a + b) / (loss * a)) ** (1 / b)
    return math.log10(flops * n_opt * d_opt / (n * d))


def predict(fit: Fit, group: str, scaling_params: float, tokens: float,
            flops: float) -> tuple[float, float | None, float]:
    """(val bpb, CORE, log10 effective FLOPs) of one configuration under a fit (CORE None: a group without
    CORE rows)."""
    g = fit.groups[group]
    n, d = scaling_params / 1e8, tokens / 1e9
    log_eff = effective_log_flops(fit.law, n, d, flops)
    kind, c = g.bpb
    bpb = c[0] + reducible_loss(fit.law, n, d) if kind == "law" else c[0] + c[1] * (log_eff - 19.0)
    core = None if g.core_intercept is None else g.core_intercept + fit.core_slope * (log_eff - 19.0)
    return bpb, core, log_eff


# --- a plan's forecast ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Forecast:
    fit: Fit
    group: str
    depth: int
    scaling_params: int
    tokens: int
    flops: float
    val_bpb: float
    core: float
    log_effective_flops: float
    widen: float  # the band's factor: 1 inside the published range
    outside: tuple[tuple[str, float, float, float], ...]  # (quantity, value, published low, high)

    @property
    def ratio(self) -> float:
        return self.tokens / self.scaling_params

    @property
    def bpb_half(self) -> float:
        return self.fit.half["bpb_law" if self.fit.groups[self.group].bpb[0] == "law" else "bpb_compute"] * self.widen

    @property
    def core_half(self) -> float:
        return self.fit.half["core"] * self.widen

    @property
    def extrapolates(self) -> bool:
        return bool(self.outside)

    def reaches(self, core: float | None = None, val_bpb: float | None = None) -> bool:
        """Whether the central forecast meets a target (CORE at least, bpb at most)."""
        return (core is None or self.core >= core) and (val_bpb is None or self.val_bpb <= val_bpb)

    def extrapolation(self) -> list[str]:
        """Plain sentences: where the plan lies beyond the published runs of its group."""
        g = self.fit.groups[self.group]
        out = []
        for what, value, lo, hi in self.outside:
            side = "above" if value > hi else "below"
            if what == "FLOPs":
                out.append(f"FLOPs {value:.2e} {side} the published {g.dataset} runs ({lo:.2e} to {hi:.2e})")
            elif what == "ratio":
                out.append(f"tokens per scaling parameter {value:.1f} {side} the published {g.dataset} runs "
                           f"({lo:.1f} to {hi:.1f})")
            else:
                out.append(f"depth {value} {side} the published {g.dataset} runs (d{lo} to d{hi})")
        return out

    def nearest(self) -> Published | None:
        """The published run of the group closest in (N, D), preferring runs that give both figures."""
        best, key = None, None
        for p in self.fit.groups[self.group].published:
            k = (p.val_bpb is None or p.core is None,
                 abs(math.log(self.scaling_params / p.scaling_params)) + abs(math.log(self.tokens / p.tokens)))
            if key is None or k < key:
                best, key = p, k
        return best

    def summary(self) -> str:
        """'CORE 0.2611 +- 0.0101, val bpb 0.7180 +- 0.0046'."""
        return (f"CORE {self.core:.4f} \u00b1 {self.core_half:.4f}, val bpb {self.val_bpb:.4f} "
                f"\u00b1 {self.bpb_half:.4f}")

    def to_dict(self) -> dict[str, Any]:
        from chatplan.contract import band

        g = self.fit.groups[self.group]
        kind = g.bpb[0]
        near = self.nearest()
        bpb_basis = self.fit.basis["bpb_law" if kind == "law" else "bpb_compute"]
        widened = f"; x{self.widen:.2f} outside the published range" if self.outside else ""
        return {
            "group": self.group,
            "dataset": g.dataset,
            "val_bpb": band(self.val_bpb, self.val_bpb - self.bpb_half, self.val_bpb + self.bpb_half,
                            bpb_basis + widened),
            "core": band(self.core, self.core - self.core_half, self.core + self.core_half,
                         self.fit.basis["core"] + widened),
            "method": ("bpb = E + A/N^a + B/D^b" if kind == "law" else "bpb: a line in log10 effective FLOPs")
                      + "; CORE: a line in log10 effective FLOPs (scripts/fit_capability.py)",
            "effective_flops": 10 ** self.log_effective_flops,
            "gpt2_core": GPT2_CORE,
            "extrapolates": self.extrapolates,
            "extrapolation": self.extrapolation(),
            "nearest_published": None if near is None else {
                "id": near.id, "label": near.label, "depth": near.depth, "ratio": near.ratio,
                "ratio_basis": near.ratio_basis, "precision": near.precision, "val_bpb": near.val_bpb,
                "core": near.core, "text": near.describe()},
            "not_modelled": UNKNOWNS,
        }


EDGE = 0.01  # inside the range within 1 % of its ends (log2 of ratio and depth, decades of FLOPs: rounding)


def _excess(value: float, lo: float, hi: float) -> float:
    return value - hi if value > hi else lo - value if value < lo else 0.0


def forecast(fit: Fit, arch: str, depth: int, counts: ParamCounts, tokens: int, flops: float) -> Forecast | None:
    """The forecast of one plan (None for an architecture the fit has no group for)."""
    entry = fit.archs.get(arch)
    if entry is None:
        return None
    group, field = entry
    n = getattr(counts, field)
    bpb, core, log_eff = predict(fit, group, n, tokens, flops)
    g = fit.groups[group]
    log_f, ratio = math.log10(flops), tokens / n
    outside = []
    widen = 1.0
    for what, value, (lo, hi), excess in (
            ("FLOPs", flops, g.log_flops, _excess(log_f, *g.log_flops)),
            ("ratio", round(ratio, 2), g.ratio, _excess(math.log2(ratio), math.log2(g.ratio[0]),
                                                        math.log2(g.ratio[1]))),
            ("depth", depth, g.depth, _excess(math.log2(depth), math.log2(g.depth[0]), math.log2(g.depth[1])))):
        if excess > EDGE:
            outside.append((what, value, 10 ** lo if what == "FLOPs" else lo, 10 ** hi if what == "FLOPs" else hi))
            widen += excess
    return Forecast(fit, group, depth, n, tokens, flops, bpb, core, log_eff, widen, tuple(outside))


def forecast_plan(arch: str, depth: int, counts: ParamCounts, tokens: int, flops: float) -> Forecast | None:
    """plan()'s forecast, under the shipped fit."""
    return forecast(default_fit(), arch, depth, counts, tokens, flops)

"""Fit the capability forecast to the published nanochat runs and measure it by leaving configurations out.

    python scripts/fit_capability.py            # fit and print the leave-one-configuration-out table
    python scripts/fit_capability.py --write    # also write chatplan/forecast_fit.json and README's table

Reads chatplan/capability.csv (a copy of the research table CAPABILITY.csv; its CAPABILITY.md says which
rows are comparable). Which rows form a group is CAPABILITY.md's table, written out below; `fit_use` says
which of a row's figures may be fitted. JAN11 (a scalar-LR ablation, "alone or not at all") is left out,
and so is every row outside the groups (other data, modified recipes, ports).

The model (evaluated by chatplan/forecast.py, which the planner runs):
- bpb of the groups with enough configurations (SWEEP-JAN27, FEB-FWE-32K, CLIMBMIX-32K), jointly:
  E_g + A/N^a + B/D^b, exponents shared, one E per group (scipy least squares);
- bpb of OCT-FWE-65K (two configurations, d12 and d20): a line in log10 effective FLOPs;
- CORE of OCT-FWE-65K, FEB-FWE-32K and CLIMBMIX-32K: one slope in log10 effective FLOPs, one intercept per
  group (linear least squares). Effective FLOPs: chatplan.forecast.effective_log_flops, under the law.
Every row counts once (replicas are evidence of the noise, so they are not averaged away).

Leave one configuration out: all rows of the same group, depth and ratio are removed together, everything
is refitted (law included) and the removed rows are predicted. The bands the planner shows are these
errors (RMS: about one standard deviation), so they are measured, not chosen. With one configuration left,
OCT-FWE-65K's line takes the law's compute-optimal slope (fit_compute_line).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: chatplan from this checkout

from chatplan.forecast import Fit, effective_log_flops, predict, reducible_loss  # noqa: E402

CSV = ROOT / "chatplan" / "capability.csv"
FIT_JSON = ROOT / "chatplan" / "forecast_fit.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- forecast:begin (scripts/fit_capability.py) -->", "<!-- forecast:end -->"


def _ids(prefix: str, numbers: Iterable[int]) -> tuple[str, ...]:
    return tuple(f"{prefix}{n:02d}" for n in numbers)


# CAPABILITY.md's groups: rows that share a validation text, a tokenizer and a bpb measurement.
GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "OCT-FWE-65K": ("late-2025 FineWeb-EDU", _ids("O", range(1, 16))),
    "SWEEP-JAN27": ("Jan-2026 sweep FineWeb-EDU", _ids("S", range(1, 29))),
    "FEB-FWE-32K": ("Feb-2026 FineWeb-EDU", _ids("F", (1, 2, 3, 4, 7, 8, 9, 10, 11))),
    "CLIMBMIX-32K": ("2026 ClimbMix", _ids("C", (1, 2, 3, 4, 8, 9, 11, 14))),
}
LAW_GROUPS = ("SWEEP-JAN27", "FEB-FWE-32K", "CLIMBMIX-32K")  # bpb: the law with one E each
COMPUTE_GROUPS = ("OCT-FWE-65K",)  # bpb: too few configurations for more than a compute-only line
CORE_GROUPS = ("OCT-FWE-65K", "FEB-FWE-32K", "CLIMBMIX-32K")  # the groups with CORE rows
# the group each architecture's plans are forecast from, and which ParamCounts field is nanochat's
# num_scaling_params (matrices + lm_head): 2026's `scaling`; 2025's ratio counted every parameter, so there
# the same quantity is its matmul (non-embedding) count
ARCHS = {"nanochat-2025": {"group": "OCT-FWE-65K", "count": "matmul"},
         "nanochat-2026": {"group": "CLIMBMIX-32K", "count": "scaling"}}
LAW_START = (0.6, 0.6, 0.6, math.log(0.15), 0.4, math.log(0.1), 0.5)  # E x3, ln A, a, ln B, b


@dataclass(frozen=True)
class Row:
    id: str
    group: str
    label: str
    depth: int
    ratio_key: str  # the CSV's ratio, as printed: a configuration is (group, depth, ratio)
    ratio_basis: str  # what the printed ratio counts: "total" (late 2025) or "scaling" params
    precision: str
    scaling_params: int
    tokens: int
    flops: float
    val_bpb: float | None  # None where the row gives none or fit_use excludes it
    core: float | None

    @property
    def config(self) -> tuple[str, int, str]:
        return (self.group, self.depth, self.ratio_key)


def _label(row: dict) -> str:
    run = re.search(r"LEADERBOARD\.md Run (\d+)", row["source"])
    return f"Run {run.group(1)} ({row['id']})" if run else row["id"]


def load_rows(path: Path = CSV) -> list[Row]:
    """The fittable rows of the groups."""
    member = {rid: g for g, (_, ids) in GROUPS.items() for rid in ids}
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            group, use = member.get(r["id"]), r["fit_use"]
            if group is None or use == "none":
                continue
            bpb = float(r["val_bpb"]) if r["val_bpb"] and use in ("both", "bpb") else None
            core = float(r["core"]) if r["core"] and use in ("both", "core") else None
            rows.append(Row(r["id"], group, _label(r), int(r["depth"]), r["ratio"], r["ratio_basis"], r["precision"],
                            int(r["scaling_params"]), int(r["tokens"]), float(r["total_flops"]), bpb, core))
    return rows


# --- fitting ----------------------------------------------------------------------------------------

def fit_law(rows: list[Row]) -> tuple[dict[str, float], tuple[float, float, float, float]]:
    """E per law group and the shared (A, a, B, b), N in units of 1e8 and D of 1e9."""
    pts = [r for r in rows if r.group in LAW_GROUPS and r.val_bpb is not None]
    gi = np.array([LAW_GROUPS.index(r.group) for r in pts])
    n = np.array([r.scaling_params / 1e8 for r in pts])
    d = np.array([r.tokens / 1e9 for r in pts])
    y = np.array([r.val_bpb for r in pts])

    def residuals(p):
        return p[:3][gi] + np.exp(p[3]) * n ** -p[4] + np.exp(p[5]) * d ** -p[6] - y

    p = least_squares(residuals, LAW_START, x_scale="jac", xtol=1e-12, ftol=1e-12, gtol=1e-12).x
    return ({g: float(p[i]) for i, g in enumerate(LAW_GROUPS)},
            (float(math.exp(p[3])), float(p[4]), float(math.exp(p[5])), float(p[6])))


def _log_eff(law, r: Row) -> float:
    return effective_log_flops(law, r.scaling_params / 1e8, r.tokens / 1e9, r.flops)


def fit_compute_line(rows: list[Row], law, group: str) -> tuple[float, float]:
    """bpb = c0 + c1 (log10 F_eff - 19) through the group's bpb rows.

    With a single configuration (when the other one is held out) the line takes the law's compute-optimal
    slope at that point: along the optimum L = A n^-a + B d^-b falls as (n d)^(-ab/(a+b)), so
    dL/dlog10 F = -ln(10) ab/(a+b) L."""
    pts = [r for r in rows if r.group == group and r.val_bpb is not None]
    x = np.array([_log_eff(law, r) - 19.0 for r in pts])
    y = np.array([r.val_bpb for r in pts])
    if len({r.config for r in pts}) >= 2:
        c1, c0 = np.polyfit(x, y, 1)
        return float(c0), float(c1)
    _, a, _, b = law
    loss = float(np.mean([reducible_loss(law, r.scaling_params / 1e8, r.tokens / 1e9) for r in pts]))
    c1 = -math.log(10) * a * b / (a + b) * loss
    return float(np.mean(y - c1 * x)), float(c1)


def fit_core(rows: list[Row], law) -> tuple[float, dict[str, float]]:
    """CORE = c_g + s (log10 F_eff - 19): the shared slope and each group's intercept."""
    pts = [r for r in rows if r.core is not None]
    groups = [g for g in CORE_GROUPS if any(r.group == g for r in pts)]
    X = np.array([[1.0 if r.group == g else 0.0 for g in groups] + [_log_eff(law, r) - 19.0] for r in pts])
    coef = np.linalg.lstsq(X, np.array([r.core for r in pts]), rcond=None)[0]
    return float(coef[-1]), {g: float(coef[i]) for i, g in enumerate(groups)}


def _range(values: list[float]) -> list[float]:
    return [min(values), max(values)]


def fit(rows: list[Row], bands: dict | None = None) -> dict:
    """The forecast's constants (forecast_fit.json without its measured accuracy)."""
    E, law = fit_law(rows)
    slope, intercept = fit_core(rows, law)
    groups = {}
    for name, (dataset, _) in GROUPS.items():
        mine = [r for r in rows if r.group == name]
        if name in LAW_GROUPS:
            bpb = {"kind": "law", "E": E[name]}
        else:
            c0, c1 = fit_compute_line(rows, law, name)
            bpb = {"kind": "compute", "c0": c0, "c1": c1}
        groups[name] = {
            "dataset": dataset, "rows": len(mine), "bpb": bpb, "core": {"intercept": intercept.get(name)},
            "range": {"flops": _range([r.flops for r in mine]),
                      "ratio": [round(x, 4) for x in _range([r.tokens / r.scaling_params for r in mine])],
                      "depth": _range([r.depth for r in mine])},
            "published": [{"id": r.id, "label": r.label, "depth": r.depth,
                           "ratio": float(r.ratio_key), "ratio_basis": r.ratio_basis.split(" ")[0],
                           "precision": r.precision,
                           "scaling_params": r.scaling_params, "tokens": r.tokens, "val_bpb": r.val_bpb,
                           "core": r.core} for r in mine],
        }
    return {"law": dict(zip("AaBb", law)), "core": {"slope": slope}, "groups": groups, "archs": ARCHS,
            "band": bands or {k: {"half": 0.0, "basis": ""} for k in ("core", "bpb_law", "bpb_compute")}}


# --- leave one configuration out ----------------------------------------------------------------------

@dataclass(frozen=True)
class Held:
    row: Row
    figure: str  # "core" | "val_bpb"
    published: float
    predicted: float

    @property
    def error(self) -> float:
        return self.predicted - self.published


def leave_one_out(rows: list[Row]) -> list[Held]:
    """Every fitted figure predicted by a fit made without its configuration."""
    held = []
    for config in sorted({r.config for r in rows}):
        out = [r for r in rows if r.config == config]
        rest = [r for r in rows if r.config != config]
        f = Fit.from_dict(fit(rest))
        for r in out:
            bpb, core, _ = predict(f, r.group, r.scaling_params, r.tokens, r.flops)
            if r.val_bpb is not None:
                held.append(Held(r, "val_bpb", r.val_bpb, bpb))
            if r.core is not None:
                held.append(Held(r, "core", r.core, core))
    return held


def _stats(errors: list[float]) -> dict:
    a = [abs(e) for e in errors]
    return {"rows": len(a), "median": round(statistics.median(a), 6), "max": round(max(a), 6),
            "rms": round(math.sqrt(sum(e * e for e in errors) / len(errors)), 6)}


def accuracy(held: list[Held]) -> dict[str, dict]:
    """Leave-one-out statistics per (group, figure), and pooled over the law groups and over all CORE rows."""
    out = {}
    for figure in ("core", "val_bpb"):
        for g in GROUPS:
            e = [h.error for h in held if h.figure == figure and h.row.group == g]
            if e:
                out[f"{g} {figure}"] = _stats(e)
    out["all CORE"] = _stats([h.error for h in held if h.figure == "core"])
    out["law groups val_bpb"] = _stats([h.error for h in held if h.figure == "val_bpb" and h.row.group in LAW_GROUPS])
    return out


def bands(acc: dict[str, dict]) -> dict:
    core, law, line = acc["all CORE"], acc["law groups val_bpb"], acc[f"{COMPUTE_GROUPS[0]} val_bpb"]
    return {
        "core": {"half": core["rms"], "basis": f"leave-one-configuration-out RMS of {core['rows']} CORE rows"},
        "bpb_law": {"half": law["rms"], "basis": f"leave-one-configuration-out RMS of {law['rows']} bpb rows"},
        "bpb_compute": {"half": line["rms"], "basis": f"leave-one-configuration-out RMS of {line['rows']} bpb rows "
                                                      "(one configuration predicted from the other)"},
    }


def document(rows: list[Row] | None = None) -> dict:
    """forecast_fit.json: the fit of every row, its leave-one-out accuracy and the bands that follow."""
    rows = load_rows() if rows is None else rows
    acc = accuracy(leave_one_out(rows))
    doc = fit(rows, bands(acc))
    digest = hashlib.sha256(CSV.read_bytes()).hexdigest()
    return {"made_by": "scripts/fit_capability.py", "data": "chatplan/capability.csv", "data_sha256": digest,
            **doc, "leave_one_out": acc}


# --- the README's table ---------------------------------------------------------------------------------

FIGURE_NAME = {"core": "CORE", "val_bpb": "val bpb"}


def table(acc: dict[str, dict]) -> str:
    lines = ["| group | figure | model | rows | median abs error | max abs error |", "|---|---|---|---|---|---|"]
    for key, s in acc.items():
        if key.startswith(("all", "law")):
            continue
        group, figure = key.split(" ")
        model = ("law E + A/N^a + B/D^b" if group in LAW_GROUPS else "line in log10 F_eff") if figure == "val_bpb" \
            else "line in log10 F_eff"
        lines.append(f"| {group} | {FIGURE_NAME[figure]} | {model} | {s['rows']} | {s['median']:.4f} | "
                     f"{s['max']:.4f} |")
    for key, label in (("all CORE", "all CORE rows"), ("law groups val_bpb", "all law-group bpb rows")):
        s = acc[key]
        lines.append(f"| **{label}** | | | {s['rows']} | **{s['median']:.4f}** | {s['max']:.4f} |")
    return "\n".join(lines)


def block(acc: dict[str, dict]) -> str:
    return f"{BEGIN}\n{table(acc)}\n{END}"


def main() -> None:
    doc = document()
    if "--write" in sys.argv:
        FIT_JSON.write_text(json.dumps(doc, indent=1) + "\n")
        text = README.read_text()
        if BEGIN in text:
            start, stop = text.index(BEGIN), text.index(END) + len(END)
            README.write_text(text[:start] + block(doc["leave_one_out"]) + text[stop:])
    print(table(doc["leave_one_out"]))
    law = doc["law"]
    print(f"\nlaw: A {law['A']:.4f} a {law['a']:.4f} B {law['B']:.4f} b {law['b']:.4f}; "
          f"CORE slope {doc['core']['slope']:.4f} per decade")


if __name__ == "__main__":
    main()

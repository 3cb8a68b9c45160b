"""Score the planner against published runs: every row of the field-validation set (chatplan/field.json,
from FIELD.md) planned with one set of constants, predicted next to measured, with the relative error.

Figures compared, with the bars they are held to (FIELD.md: runs of one configuration differ by up to
~12 % in time across nodes):
- allocated memory (torch.cuda.max_memory_allocated) vs `peak_allocated_gib`: within ±7 %;
- device memory (nvidia-smi, label GB; an 80 GB card is 79.19 GiB to torch) vs `peak_device_gib`: ±7 %;
- training time (optimizer steps only) vs `train_hours`, with the MFU predicted: within ±10 %;
- the memory outcome (fits / tight / oom) vs the plan's verdict at that device batch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatplan.catalog import Catalog

FIELD_FILE = Path(__file__).with_name("field.json")
# Runs beyond FIELD.md (public nanochat reports), never fitted to: reported beside FIELD's rows, without bars.
HELDOUT_FILE = Path(__file__).with_name("field_heldout.json")
MEMORY_BAR = 0.07
TIME_BAR = 0.10
MIB = 2**20
GIB = 2**30
LABEL_GIB_PER_GB = 79.19 / 80  # gpus.json: torch sees 79.19 GiB of an "80 GB" H100


@dataclass(frozen=True)
class Check:
    row: str
    figure: str  # "allocated GiB" | "device GiB" | "train minutes" | "memory outcome"
    predicted: float | str
    measured: float | str
    relative_error: float | None  # predicted / measured - 1 (None for outcomes)
    bar: float | None
    ok: bool

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=2)
def _rows(file: Path) -> tuple[dict, ...]:
    return tuple(json.loads(file.read_text())["rows"])


def field_rows() -> tuple[dict, ...]:
    return _rows(FIELD_FILE)


def heldout_rows() -> tuple[dict, ...]:
    return _rows(HELDOUT_FILE)


def _outcome_ok(expected: str, verdict: str) -> bool:
    # "fits" is a run that fitted: the plan may call it tight (inside the fit margin), never oom
    return verdict != "oom" if expected == "fits" else verdict == expected


def _depths(rule: dict) -> list[tuple[int, int]]:
    out = []
    for span, batch in rule.items():
        lo, hi = (int(x) for x in span.split("-"))
        out += [(d, batch) for d in range(lo, hi + 1, 2)]
    return out


def validate(catalog: Catalog | None = None, rows: tuple[dict, ...] | None = None) -> list[Check]:
    """Every row (FIELD's by default), planned with its inputs and the MFU the model predicts (never typed in)."""
    from chatplan.plan import plan

    checks: list[Check] = []
    for row in field_rows() if rows is None else rows:
        inputs, measured = dict(row["inputs"]), row["measured"]
        rule = inputs.pop("depth_rule", None)
        cases = [(row["id"], inputs)] if rule is None else [
            (f"{row['id']} d{d}", {**inputs, "depth": d, "device_batch_size": b}) for d, b in _depths(rule)]
        for label, kw in cases:
            p = plan(catalog=catalog, **kw)
            if "allocated_mib" in measured:
                m = measured["allocated_mib"] * MIB / GIB
                err = p.memory.peak_allocated_gib / m - 1
                checks.append(Check(label, "allocated GiB", p.memory.peak_allocated_gib, m, err, MEMORY_BAR,
                                    abs(err) <= MEMORY_BAR))
            if "device_gb" in measured:
                m = measured["device_gb"] * LABEL_GIB_PER_GB
                err = p.memory.peak_device_gib / m - 1
                checks.append(Check(label, "device GiB", p.memory.peak_device_gib, m, err, MEMORY_BAR,
                                    abs(err) <= MEMORY_BAR))
            if "train_minutes" in measured:
                predicted = p.time.train_hours * 60
                err = predicted / measured["train_minutes"] - 1
                checks.append(Check(label, "train minutes", predicted, measured["train_minutes"], err, TIME_BAR,
                                    abs(err) <= TIME_BAR))
            if "expect" in measured:
                checks.append(Check(label, "memory outcome", p.memory.verdict, measured["expect"], None, None,
                                    _outcome_ok(measured["expect"], p.memory.verdict)))
    return checks


def heldout(catalog: Catalog | None = None) -> list[Check]:
    """The held-out runs, scored like FIELD's rows; their `ok` says whether FIELD's bar would hold, but no
    exit code depends on it: they are evidence the constants were not fitted to, from trees that were often
    modified (chatplan/field_heldout.json)."""
    return validate(catalog, heldout_rows())


def sources(rows: tuple[dict, ...] | None = None) -> dict[str, str]:
    return {row["id"]: row["source"] for row in (field_rows() if rows is None else rows)}


# --- the fitted constants, which rows fixed them, and their leave-one-out errors ----------------------

@dataclass(frozen=True)
class FittedConstant:
    name: str  # where it lives
    value: float
    fixed_by: str  # the measurement it was solved from
    field_rows: tuple[str, ...]  # the FIELD rows (of chatplan/field.json) it was fitted to; () if none
    figure: str  # the kind of figure it moves: "memory" | "time"

    def to_dict(self) -> dict:
        return asdict(self)


def fitted_constants() -> list[FittedConstant]:
    """Every constant solved from a measurement rather than derived or read from a datasheet."""
    from chatplan.arch import nanochat_2026_terms as t26
    from chatplan.catalog import builtin_catalog
    from chatplan.memory import ALLOCATOR_CACHE_PER_GRAD_BYTE, ALLOCATOR_CEILING_FRACTION
    from chatplan.timing import software_efficiency

    return [
        FittedConstant("timing.software_efficiency (k)", software_efficiency(builtin_catalog()),
                       "L4: d32 on 8xH100, 1,572 ms/step", ("L4",), "time"),
        FittedConstant("memory.ALLOCATOR_CACHE_PER_GRAD_BYTE", ALLOCATOR_CACHE_PER_GRAD_BYTE,
                       "L4: ~78 GB in nvidia-smi at d32, batch 8", ("L4",), "memory"),
        FittedConstant("memory.ALLOCATOR_CEILING_FRACTION", ALLOCATOR_CEILING_FRACTION,
                       "L4, with the cache multiple (the ceiling binds there)", ("L4",), "memory"),
        FittedConstant("nanochat_2026_terms.INDUCTOR_EXTRA_BYTES_PER_LAYER_WIDTH",
                       t26.INDUCTOR_EXTRA_BYTES_PER_LAYER_WIDTH, "N2: 62,386.67 MiB at d24, batch 16", ("N2",),
                       "memory"),
        FittedConstant("nanochat_2026_terms.FP8_MATMUL_TIME_FACTOR", t26.FP8_MATMUL_TIME_FACTOR,
                       "SPEC-2026 §9: d26 630K -> 740K tok/s in fp8 (not a FIELD row)", (), "time"),
    ]


@dataclass(frozen=True)
class LeaveOneOut:
    """A figure's error when the constants were fitted without its row: for a row no constant was fitted
    to it is its ordinary prediction error; a row that alone fixed a constant cannot be left out of that
    constant's fit (nothing is left to fit it to): not cross-validated."""
    row: str
    figure: str
    error: float | None  # None: not cross-validated
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def leave_one_out(checks: list[Check] | None = None) -> list[LeaveOneOut]:
    checks = validate() if checks is None else checks
    constants = fitted_constants()
    kind = {"allocated GiB": "memory", "device GiB": "memory", "train minutes": "time"}
    out = []
    for c in checks:
        if c.relative_error is None:
            continue
        own = [k.name for k in constants if c.row in k.field_rows and k.figure == kind[c.figure]]
        if own:
            out.append(LeaveOneOut(c.row, c.figure, None, f"alone fixes {', '.join(own)}"))
        else:
            out.append(LeaveOneOut(c.row, c.figure, c.relative_error, "no constant fitted to this row"))
    return out

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

FIELD_FILE = Path(__file__).with_name("field.json")
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


@lru_cache(maxsize=1)
def field_rows() -> tuple[dict, ...]:
    return tuple(json.loads(FIELD_FILE.read_text())["rows"])


def _outcome_ok(expected: str, verdict: str) -> bool:
    # "fits" is a run that fitted: the plan may call it tight (inside the fit margin), never oom
    return verdict != "oom" if expected == "fits" else verdict == expected


def _depths(rule: dict) -> list[tuple[int, int]]:
    out = []
    for span, batch in rule.items():
        lo, hi = (int(x) for x in span.split("-"))
        out += [(d, batch) for d in range(lo, hi + 1, 2)]
    return out


def validate(catalog=None) -> list[Check]:
    """Every row, planned with its inputs and the MFU the model predicts (never typed in)."""
    from chatplan.plan import plan

    checks: list[Check] = []
    for row in field_rows():
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


def sources() -> dict[str, str]:
    return {row["id"]: row["source"] for row in field_rows()}

"""`chatplan check`: a CI budget gate (exit 0 when every limit holds, 1 when one is exceeded)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from chatplan.commands.options import Edge, JsonOpt, plan_options, print_json
from chatplan.errors import EXIT_REQUIREMENT, AlreadyReported
from chatplan.request import PlanRequest


# the data plan (shards, characters) is not something `check` gates on: its options are not offered
@plan_options("model", "horizon", "fleet", "precision", "money", "eval", files=("gpu_catalog", "calibration"))
def check(
    request: PlanRequest,
    edge: Edge,
    max_cost: Annotated[float | None, typer.Option("--max-cost", help="Fail above this pretraining cost (USD).")]
    = None,
    max_hours: Annotated[float | None, typer.Option("--max-hours", help="Fail above this pretraining time.")] = None,
    max_gpu_memory_frac: Annotated[float | None, typer.Option(
        "--max-gpu-memory-frac", help="Fail above this share of GPU memory (peak_device_gib / capacity).")] = None,
    min_headroom_gib: Annotated[float | None, typer.Option(
        "--min-headroom-gib", help="Fail with less free GPU memory than this (capacity - peak_device_gib).")] = None,
    pessimistic: Annotated[bool, typer.Option("--pessimistic", help="Gate on the high end of each figure's "
                                                                    "measured error band.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """CI budget gate: exit 0 when every limit holds, 1 when any is exceeded, 2 on bad input."""
    from chatplan.checks import run_checks
    from chatplan.plan import plan

    p = plan(request, catalog=edge.catalog(), calibration=edge.load_calibration())
    checks = run_checks(p, max_cost, max_hours, max_gpu_memory_frac, min_headroom_gib, pessimistic)
    failed = [c for c in checks if not c.ok]
    if json_out:
        print_json({"plan": {"depth": p.depth, "fleet": p.fleet.label,
                             "device_batch_size": p.parallelism.device_batch_size},
                    "checks": [c.to_dict() for c in checks], "ok": not failed})
    else:
        for c in checks:
            sys.stdout.write(c.line() + "\n")
        if len(checks) == 1:
            sys.stdout.write("(only the memory fit was checked: add --max-cost, --max-hours, "
                             "--max-gpu-memory-frac or --min-headroom-gib)\n")
    for c in failed:
        sys.stderr.write(f"chatplan: check failed: {c.line()}\n")
    if failed:
        raise AlreadyReported(f"{len(failed)} checks failed", EXIT_REQUIREMENT)

"""`chatplan estimate`: the plan, as a table or plan.json."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from chatplan.commands.options import Edge, FormatOpt, JsonOpt, output_format, plan_options, print_json
from chatplan.errors import EXIT_REQUIREMENT, ChatplanError
from chatplan.request import PlanRequest


@plan_options()
def estimate(
    request: PlanRequest,
    edge: Edge,
    json_out: JsonOpt = False,
    fmt: FormatOpt = "rich",
    save_plan: Annotated[Path | None, typer.Option("--save-plan", help="Write plan.json here.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when the chosen batch is predicted oom.")]
    = False,
) -> None:
    """The plan: exact sizes, FLOPs, horizon, data, memory fit, time and cost."""
    from chatplan.contract import plan_document
    from chatplan.files import write_json_atomic
    from chatplan.plan import plan

    fmt = output_format(fmt)
    p = plan(request, catalog=edge.catalog(), calibration=edge.load_calibration())
    doc = plan_document(p) if (json_out or save_plan) else None
    if save_plan is not None:
        write_json_atomic(save_plan, doc)
    if json_out:
        print_json(doc)
        for w in p.warnings:
            sys.stderr.write(f"warning: {w}\n")
    else:
        from chatplan.render import plan_sections, render_sections

        render_sections(plan_sections(p), fmt, f"chatplan: d{p.depth} on {p.fleet.label}", p.warnings, p.notes)
    if strict and p.memory.verdict == "oom":
        raise ChatplanError(f"device batch size {p.parallelism.device_batch_size} is predicted oom "
                            f"({p.memory.peak_device_gib:.1f} GiB > {p.memory.capacity_gib:.2f} GiB)",
                            EXIT_REQUIREMENT)

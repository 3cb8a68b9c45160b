"""`chatplan run`: resolve the plan, prepare data and tokenizer, launch the trainer, report, calibrate."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from chatplan.commands.options import Edge, plan_options
from chatplan.request import PlanRequest


@plan_options()
def run(
    request: PlanRequest,
    edge: Edge,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda; cpu for tiny).")]
    = None,
    nproc: Annotated[int | None, typer.Option("--nproc", help="Processes per node (default: GPUs per node).")]
    = None,
    node_rank: Annotated[int, typer.Option("--node-rank", help="This node's rank in a multi-node fleet.")] = 0,
    rdzv_endpoint: Annotated[str | None, typer.Option("--rdzv-endpoint", help="HOST:PORT of node 0 (multi-node).")]
    = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default: runs/d<depth>-<fleet>).")]
    = None,
    data: Annotated[str | None, typer.Option("--data", help="'sample' (embedded corpus) or a shard directory.")]
    = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Start without asking about the predicted cost.")]
    = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and every node's command; run nothing.")]
    = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest complete checkpoint.")] = False,
) -> None:
    """Resolve the plan, prepare data and tokenizer, launch the trainer (torchrun), report and calibrate."""
    from chatplan.plan import plan
    from chatplan.render import plan_sections, render_grid, render_sections
    from chatplan.runner import (
        RunOptions,
        fleet_request,
        launch_and_wait,
        prepare_run,
        report_and_calibrate,
    )
    from chatplan.runner.report import report_rows

    started = time.perf_counter()
    opts = RunOptions(device=device, nproc=nproc, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint, out=out,
                      data=data, yes=yes, dry_run=dry_run, resume=resume, calibration=edge.calibration)
    request, device = fleet_request(request, opts)
    catalog = edge.catalog()
    p = plan(request, catalog=catalog, calibration=edge.load_calibration(must_exist=False))
    fmt = "rich" if sys.stdout.isatty() else "plain"
    render_sections(plan_sections(p), fmt, f"chatplan run: d{p.depth} on {p.fleet.label}", p.warnings, p.notes)
    prep = prepare_run(p, device, opts, catalog)
    if dry_run:
        sys.stdout.write(f"\nplan written to {prep.plan_path}\n")
        for r in range(prep.launch.nodes):
            here = " (this node)" if r == node_rank and prep.launch.nodes > 1 else ""
            sys.stdout.write(f"node {r}{here}: {prep.launch.shell(r)}\n")
        return
    launch_and_wait(prep, node_rank)
    if node_rank != 0:
        return
    report, note = report_and_calibrate(prep, started, edge.calibration)
    render_grid(["", "achieved", "predicted", "relative error"], report_rows(report), fmt,
                f"prediction vs reality: {prep.run_dir}")
    if note:
        sys.stdout.write(note + "\n")

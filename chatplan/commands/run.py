"""`chatplan run`: resolve the plan, prepare data and tokenizer, launch the trainer, report, calibrate."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from chatplan.commands.options import Edge, JsonOpt, plan_options, print_json
from chatplan.request import PlanRequest, expand_target_tier


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
    launcher: Annotated[str, typer.Option("--launcher", help="torchrun (start the nodes yourself) or slurm "
                                                             "(write and sbatch a script for every node).")]
    = "torchrun",
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default: runs/d<depth>-<fleet>).")]
    = None,
    data: Annotated[str | None, typer.Option("--data", help="'sample' (embedded corpus) or a shard directory.")]
    = None,
    save_every: Annotated[int | None, typer.Option("--save-every", help="Steps between checkpoints (default: "
                                                                         "about every 15 minutes; 0: at the end).")]
    = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Start without asking about the predicted cost.")]
    = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and every node's command; run nothing.")]
    = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest complete checkpoint.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Resolve the plan, prepare data and tokenizer, launch the trainer (torchrun), report and calibrate."""
    from chatplan.plan import plan
    from chatplan.render import plan_sections, render_grid, render_sections
    from chatplan.runner import (
        SBATCH_FILE,
        RunOptions,
        fleet_request,
        launch_and_wait,
        prepare_run,
        report_and_calibrate,
        require_trainer,
        submit_sbatch,
    )
    from chatplan.runner.report import report_rows

    started = time.perf_counter()
    opts = RunOptions(device=device, nproc=nproc, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint, out=out,
                      data=data, yes=yes, dry_run=dry_run, resume=resume, calibration=edge.calibration,
                      save_every=save_every, launcher=launcher)
    if not dry_run and launcher != "slurm":
        require_trainer()
    request, device = fleet_request(expand_target_tier(request), opts)  # --tier gpt2 is a target, not a preset
    catalog = edge.catalog()
    p = plan(request, catalog=catalog, calibration=edge.load_calibration(must_exist=False))
    say = sys.stderr if json_out else sys.stdout  # --json: the document alone on stdout
    fmt = "rich"  # Rich wraps to 80 columns when piped
    if not json_out:
        render_sections(plan_sections(p), fmt, f"chatplan run: d{p.depth} on {p.fleet.label}", p.warnings, p.notes)
    prep = prepare_run(p, device, opts, catalog)
    slurm = launcher == "slurm"
    result = {"run_dir": str(prep.run_dir), "plan": str(prep.plan_path), "save_every": prep.save_every,
              "commands": [] if slurm else [prep.launch.shell(r) for r in range(prep.launch.nodes)]}
    if prep.finished:
        say.write(prep.finished + "\n")
        return print_json({**result, "finished": True}) if json_out else None
    if dry_run or launcher == "slurm":
        if launcher == "slurm":
            script = prep.run_dir / SBATCH_FILE
            result["sbatch"] = str(script)
            if not dry_run:
                result["submitted"] = submit_sbatch(prep.run_dir)
                say.write(f"submitted {script}: {result['submitted']}\n")
            else:
                say.write(f"\nsbatch script written to {script}\n")
        say.write(f"\nplan written to {prep.plan_path}\n")
        for r, command in enumerate(result["commands"]):
            here = " (this node)" if r == node_rank and prep.launch.nodes > 1 else ""
            say.write(f"node {r}{here}: {command}\n")
        return print_json(result) if json_out else None
    launch_and_wait(prep, node_rank)
    if node_rank != 0:
        return print_json(result) if json_out else None
    report, note = report_and_calibrate(prep, started, edge.calibration)
    if json_out:
        return print_json({**result, "report": report, "calibration": note})
    render_grid(["", "achieved", "predicted", "relative error"], report_rows(report), fmt,
                f"prediction vs reality: {prep.run_dir}")
    if note:
        sys.stdout.write(note + "\n")

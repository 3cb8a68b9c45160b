"""`chatplan calibrate`: record a finished run's achieved MFU and memory for later plans."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from chatplan.commands.options import JsonOpt, print_json
from chatplan.errors import InvalidInput


def calibrate(
    from_run: Annotated[Path, typer.Option("--from", help="A finished run directory (plan.json, report.json).")],
    calibration: Annotated[str | None, typer.Option("--calibration", help="Calibration file to append to.")] = None,
    core: Annotated[float | None, typer.Option("--core", help="The run's measured CORE (nanochat base_eval): "
                                                               "compared with its forecast.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Record a finished run's achieved MFU and memory; later plans on the same GPU and world size use it."""
    from chatplan import paths
    from chatplan.calibration import record_point
    from chatplan.runner.report import compare_core, point_from_run

    if calibration is not None and calibration.lower() == "none":
        raise InvalidInput("--calibration none records nothing: give a file")
    path = paths.calibration_path(calibration)
    point = point_from_run(from_run)
    check = compare_core(from_run, core) if core is not None else None  # refused before anything is recorded
    n = record_point(path, point)
    if json_out:
        print_json({"file": str(path), "points": n, "recorded": point.to_dict(),
                    **({"core_vs_forecast": check} if check else {})})
        return
    sys.stdout.write(f"recorded {point.gpu} x{point.world_size}, depth {point.depth}, batch "
                     f"{point.device_batch_size}: MFU {point.mfu:.4f} -> {path} ({n} points)\n")
    if check:
        sys.stdout.write(f"CORE {check['achieved']:.4f} vs forecast {check['predicted']:.4f} (band {check['low']:.4f}"
                         f" - {check['high']:.4f}): error {check['error']:+.4f}, "
                         f"{'inside' if check['within_band'] else 'outside'} the band\n")

"""After the run: the trainer's report with the runner's additions, its table and Markdown, greedy
samples of the trained model, and the calibration point the run yields."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from chatplan.calibration import CalibrationPoint, max_point_mfu
from chatplan.contract import (
    PlanDoc,
    achieved,
    add_run_summary,
    forecast_check,
    forecast_checks,
    load_plan,
    load_report,
    report_pairs,
    run_summary,
)
from chatplan.errors import InvalidInput, RuntimeFailure
from chatplan.files import write_json_atomic
from chatplan.runner.launch import child_env

# The five fixed prompts the report samples the trained model on.
SAMPLE_PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):",
    "The most important thing about learning is",
    "In 1969, the first",
    "Water boils at a temperature of",
)


def finish_report(run_dir: Path, doc: PlanDoc, wall_seconds: float, samples: dict | None) -> dict:
    """The trainer's report.json with end-to-end wall time, the plan in short and samples added;
    also written as report.md."""
    path = run_dir / "report.json"
    try:
        report = load_report(path)
    except InvalidInput:
        raise RuntimeFailure(f"the trainer left no readable report in {run_dir}") from None
    report = add_run_summary(report, doc, wall_seconds, (samples or {}).get("samples", []))
    write_json_atomic(path, report)
    (run_dir / "report.md").write_text(report_markdown(report, doc))
    return report


def report_rows(report: dict) -> list[list[str]]:
    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    rows = []
    for label, pair, spec in report_pairs(report):
        err = pair.get("relative_error")
        achieved = fmt(pair.get("achieved"), spec) if not pair.get("measurement_error") else "measurement error"
        rows.append([label, achieved, fmt(pair.get("predicted"), spec), "-" if err is None else f"{err:+.1%}"])
    return rows


def report_markdown(report: dict, doc: PlanDoc) -> str:
    from tabulate import tabulate

    s = run_summary(report)
    lines = [f"# chatplan run report: d{doc.shape.n_layer} on {doc.world_size} x {doc.gpu}", "",
             tabulate(report_rows(report), headers=["", "achieved", "predicted", "relative error"],
                      tablefmt="github"), "",
             f"Steps run: {s.steps_done}; wall time {s.run_wall_seconds or 0:.1f} s "
             f"(training {s.wall_seconds or 0:.1f} s); final loss {s.final_loss}; "
             f"validation bpb {s.final_val_bpb}.", ""]
    checks = forecast_checks(report)
    if checks:
        lines += ["## Capability forecast", "", tabulate(forecast_table(checks, s.steps_done, doc.steps),
                                                         headers=["", "achieved", "forecast", "band", "inside"],
                                                         tablefmt="github"), "",
                  "The forecast is for the plan's full horizon. CORE needs the benchmark data, which chatplan does "
                  "not download: measure it with nanochat's base_eval and compare with "
                  "`chatplan calibrate --from RUN_DIR --core X`.", ""]
    if s.samples:
        lines += ["## Samples (greedy)", ""]
        lines += [f"- **{x['prompt']}**{x['completion']}" for x in s.samples]
    return "\n".join(lines) + "\n"


def forecast_table(checks: list[tuple[str, dict]], steps_done: int | None, steps: int) -> list[list[str]]:
    """Rows of achieved quality beside the forecast band ('not measured' for CORE; a short run's bpb is not the
    forecast's, which is for the whole horizon)."""
    def fmt(v):
        return "-" if v is None else f"{v:.4f}"

    rows = []
    for label, c in checks:
        short = "val bpb" in label and c.get("achieved") is not None and (steps_done or 0) < steps
        inside = ("-" if c.get("within_band") is None else "yes" if c["within_band"] else "no")
        rows.append([label, fmt(c.get("achieved")) if c.get("achieved") is not None else "not measured",
                     fmt(c.get("predicted")), f"{fmt(c.get('low'))} - {fmt(c.get('high'))}",
                     f"{inside} (run stopped at step {steps_done:,} of {steps:,})" if short else inside])
    return rows


def compare_core(run_dir: str | os.PathLike, core: float) -> dict:
    """A measured CORE (nanochat's base_eval) beside the run's forecast: `chatplan calibrate --core`."""
    if not (isinstance(core, (int, float)) and 0 < core < 1):
        raise InvalidInput(f"--core must be a CORE score between 0 and 1, got {core!r}")
    doc = load_plan(Path(run_dir) / "plan.json")
    check = forecast_check(float(core), doc.forecast.get("core") if doc.forecast else None)
    if check is None:
        raise InvalidInput(f"{str(run_dir)!r}: plan.json has no capability forecast (a sample-data run, or a plan "
                           "written before the forecast): nothing to compare CORE with")
    return check


def sample_model(run_dir: Path, python: str = sys.executable) -> dict | None:
    """Greedy completions of the fixed prompts from the newest checkpoint (None if sampling fails)."""
    proc = subprocess.run([python, "-m", "chatplan_train.sample", "--run", str(run_dir), *SAMPLE_PROMPTS],
                          capture_output=True, text=True, env=child_env())
    if proc.returncode != 0:
        sys.stderr.write(f"warning: could not sample the trained model: {proc.stderr.strip()[:200]}\n")
        return None
    return json.loads(proc.stdout)


def point_from_run(run_dir: str | os.PathLike) -> CalibrationPoint:
    """Read a finished run's plan.json and report.json into a calibration point."""
    run = Path(run_dir)
    if not (run / "plan.json").is_file() or not (run / "report.json").is_file():
        missing = "plan.json" if not (run / "plan.json").is_file() else "report.json"
        raise InvalidInput(f"{str(run)!r} is not a finished run directory: {missing} is missing")
    doc = load_plan(run / "plan.json")
    report = load_report(run / "report.json")
    tok_s = achieved(report, "tokens_per_second")
    if not tok_s:
        raise InvalidInput(f"{str(run)!r}: report.json has no achieved throughput (did the run finish a step?)")
    # MFU against the peak the planner uses (the catalog's): on a GPU that is what the trainer reports;
    # on a CPU the trainer divides by its own measured matmul peak, which the next plan does not know.
    peak = doc.predictions["peak_flops_per_gpu"] or 0.0
    fleet_peak = peak * (doc.world_size if doc.device_type == "cuda" else 1)
    mfu = doc.flops_per_token * tok_s / fleet_peak if fleet_peak else 0.0
    if not 0 < mfu <= max_point_mfu(doc.device_type):
        raise InvalidInput(f"{str(run)!r}: the run's throughput gives MFU {mfu:.3f} against the catalog peak "
                           f"of {doc.gpu}: not a plausible calibration point")
    return CalibrationPoint(
        gpu=doc.gpu, device_type=doc.device_type, world_size=doc.world_size, depth=doc.shape.n_layer,
        device_batch_size=doc.device_batch_size, seq_len=doc.shape.sequence_len, vocab_size=doc.shape.vocab_size,
        mfu=float(mfu), chatplan_version=doc.chatplan_version, arch=doc.arch.name,
        peak_allocated_gib=achieved(report, "memory_gib.max_allocated"),
        peak_reserved_gib=achieved(report, "memory_gib.max_reserved"),
        device_used_gib=achieved(report, "memory_gib.device_used"),
        recorded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), run_dir=str(run.resolve()),
    )


def checkpoint_step(d: Path) -> int:
    """The step a checkpoint directory (checkpoints/step_00000040) holds."""
    return int(d.name.removeprefix("step_"))


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint directory whose manifest was written (the trainer verifies it on resume)."""
    root = Path(run_dir) / "checkpoints"
    done = sorted(d for d in root.glob("step_*") if (d / "MANIFEST.json").is_file()) if root.is_dir() else []
    return done[-1] if done else None

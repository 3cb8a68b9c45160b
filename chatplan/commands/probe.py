"""`chatplan probe`: a few real steps of the plan's model on this machine, recorded as calibration.

What it measures: on one process of the plan's device type (one GPU of the plan's type, or this CPU), the
real model and optimizer at the plan's device batch and at the next power of two, accumulation 1, a few
optimizer steps each (`python -m chatplan_train.probe`): median step time and the memory figures the
device can measure. What it extrapolates: the plan's world size, accumulation and node count, through
the model's ratio (chatplan.calibration). The points it records are used by the next `estimate`, `check`
and `run` on that GPU type ("calibrated from a probe on 1xH100-SXM, ...").
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from chatplan.commands.options import Edge, JsonOpt, plan_options, print_json
from chatplan.errors import InvalidInput, RuntimeFailure
from chatplan.request import PlanRequest


@dataclass(frozen=True)
class ProbeBatch:
    """One batch of the probe's document (chatplan_train/probe.py writes it)."""
    device_batch_size: int
    fit: bool
    steps: int
    step_seconds: float | None
    tokens_per_second: float | None
    max_allocated_gib: float | None = None
    max_reserved_gib: float | None = None
    device_used_gib: float | None = None
    peak_rss_gib: float | None = None
    rss_growth_gib: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class ProbeOutcome:
    probe_version: int
    measured_on: str
    device_type: str
    torch_version: str
    compile: bool
    threads: int
    peak_share: float  # the share of the device's peak the probe process had (CPU: its threads / the cores)
    memory_measure: str
    batches: list


def _read_outcome(path: Path) -> ProbeOutcome:
    try:
        raw = json.loads(path.read_text())
        outcome = ProbeOutcome(**{f.name: raw.get(f.name) for f in fields(ProbeOutcome)})
        return replace(outcome, batches=[ProbeBatch(**b) for b in outcome.batches])
    except (OSError, ValueError, TypeError) as e:
        raise RuntimeFailure(f"the probe left no readable result in {path}: {e}") from None


def _slowest(outcomes) -> ProbeOutcome:
    """The first probe process's outcome with each batch's step time the slowest process's."""
    first, *others = list(outcomes)
    batches = []
    for i, b in enumerate(first.batches):
        times = [b.step_seconds] + [o.batches[i].step_seconds for o in others if i < len(o.batches)]
        if b.fit and all(t is not None for t in times):
            slow = max(times)
            b = replace(b, step_seconds=slow, tokens_per_second=b.tokens_per_second * b.step_seconds / slow)
        batches.append(b)
    return replace(first, batches=batches)


def next_power_of_two(n: int) -> int:
    return 1 << n.bit_length()  # 8 -> 16, 12 -> 16


@plan_options("model", "horizon", "fleet", "precision", "eval", files=("gpu_catalog", "calibration"))
def probe(
    request: PlanRequest,
    edge: Edge,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: the plan's GPU type).")]
    = None,
    batch: Annotated[int | None, typer.Option("--batch", help="Device batch to probe, and its next power of two "
                                                              "(default: the plan's device batch).")] = None,
    probe_steps: Annotated[int, typer.Option("--probe-steps", help="Measured optimizer steps per batch (after 2 "
                                                                   "warm-up steps).")] = 3,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be probed and the command; run "
                                                            "nothing.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run the plan's real model for a few steps on this machine, at the plan's device batch and the next
    power of two; record step time and memory as calibration for later plans on this GPU type."""
    from chatplan import paths
    from chatplan.calibration import CalibrationPoint, load_calibration, record_point
    from chatplan.contract import plan_document
    from chatplan.plan import plan
    from chatplan.runner.launch import child_env

    steps = probe_steps
    if steps < 1 or steps > 100:
        raise InvalidInput(f"--probe-steps must be between 1 and 100, got {steps}")
    if batch is not None and batch < 1:
        raise InvalidInput(f"--batch must be a positive integer, got {batch}")
    catalog = edge.catalog()
    calibration = edge.load_calibration(must_exist=False)
    p = plan(request, catalog=catalog, calibration=calibration)
    gpu = p.fleet.gpu
    if device is not None and device not in ("cpu", "cuda"):
        raise InvalidInput(f"--device {device!r} is not one of cpu, cuda")
    if device is not None and device != gpu.device_type:
        raise InvalidInput(f"--device {device} cannot probe a plan on {gpu.name} ({gpu.device_type}): probe on the "
                           "plan's own device type (CPU points never calibrate GPU plans)")
    b = batch or p.parallelism.device_batch_size
    batches = [b, next_power_of_two(b)]
    T = p.shape.sequence_len
    one = replace(p.request, tier=None, budget=None, mfu=None, gpus=f"1x{gpu.name}", gpus_per_node=1, nodes=None,
                  device_batch_size=b, total_batch_size=b * T)
    probe_plan = plan(one, catalog=catalog)
    say = sys.stderr if json_out else sys.stdout
    say.write(f"probing d{p.depth} ({p.arch.name}, context {T:,}) on 1x{gpu.name}, one process, accumulation 1: "
              f"device batch {batches[0]} and {batches[1]}, 2 warm-up + {steps} measured steps each\n")
    say.flush()
    if dry_run:
        say.write(f"would run: {sys.executable} -m chatplan_train.probe --plan PLAN --out RESULT --batches "
                  f"{','.join(map(str, batches))} --steps {steps}\n")
        return None
    with tempfile.TemporaryDirectory(prefix="chatplan-probe-") as tmp:
        plan_path, out_path = Path(tmp) / "plan.json", Path(tmp) / "probe.json"
        plan_path.write_text(json.dumps(plan_document(probe_plan)))
        # On a CPU the plan's ranks share the machine: as many probe processes as the plan has ranks per node
        # run at once, each with one rank's threads, so the probe meets the contention (cores, memory
        # bandwidth, clocks) the run will; the slowest sets the step time, as the slowest rank does in a run.
        copies = p.fleet.gpus_per_node if gpu.device_type == "cpu" else 1
        outs = [out_path] + [Path(tmp) / f"probe{i}.json" for i in range(1, copies)]
        logs = [out.with_suffix(".err") for out in outs]
        procs = []
        for i, (out, log) in enumerate(zip(outs, logs, strict=True)):
            with open(log, "w") as err:  # a file, not a pipe: no process can block on a full pipe
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "chatplan_train.probe", "--plan", str(plan_path), "--out", str(out),
                     "--batches", ",".join(map(str, batches)), "--steps", str(steps), "--ranks-per-node",
                     str(copies)], env=child_env(), stdout=say if i == 0 else subprocess.DEVNULL, stderr=err,
                    text=True))
        codes = [proc.wait() for proc in procs]
        for code, log in zip(codes, logs, strict=True):
            err = log.read_text()
            if code != 0:
                last = (err.strip().splitlines() or ["no output"])[-1].removeprefix("chatplan_train.probe: ")
                if code == 2:  # refused (no CUDA device here, a bad memory cap): the user's input
                    raise InvalidInput(f"probe: {last}")
                raise RuntimeFailure(f"the probe failed: {last}")
        outcome = _slowest(_read_outcome(out) for out in outs)

    fit = [x for x in outcome.batches if x.fit]
    largest = max((x.device_batch_size for x in fit), default=0)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cuda = outcome.device_type == "cuda"
    points = [CalibrationPoint(
        gpu=gpu.name, device_type=gpu.device_type, world_size=1, depth=p.depth, device_batch_size=x.device_batch_size,
        seq_len=T, vocab_size=p.shape.vocab_size, arch=p.arch.name, source="probe", grad_accum_steps=1,
        # against the peak the probe had: on a CPU one rank's threads, as each rank of the plan will have
        mfu=p.flops_per_token * x.tokens_per_second / (gpu.peak_flops * outcome.peak_share),
        chatplan_version=_version(),
        peak_allocated_gib=x.max_allocated_gib if cuda else None,
        peak_reserved_gib=x.max_reserved_gib if cuda else None,
        device_used_gib=x.device_used_gib if cuda else None, recorded_at=now,
        run_dir=f"probe {gpu.name} {p.arch.name} d{p.depth} T{T} V{p.shape.vocab_size} b{x.device_batch_size}")
        for x in fit]
    recorded, path = 0, None
    if calibration is not None and points:
        path = paths.calibration_path(edge.calibration)
        for point in points:
            recorded = record_point(path, point)
    after = plan(request, catalog=catalog, calibration=load_calibration(str(path)) if path else None)
    _report(say, outcome, p, after, largest, path, recorded, json_out)


def _version() -> str:
    from chatplan.contract import chatplan_version

    return chatplan_version()


def _report(say, outcome: ProbeOutcome, before, after, largest: int, path, recorded: int, json_out: bool) -> None:
    measured = [{"device_batch_size": x.device_batch_size, "fit": x.fit, "step_seconds": x.step_seconds,
                 "tokens_per_second": x.tokens_per_second, "max_allocated_gib": x.max_allocated_gib,
                 "max_reserved_gib": x.max_reserved_gib, "device_used_gib": x.device_used_gib,
                 "peak_rss_gib": x.peak_rss_gib, "rss_growth_gib": x.rss_growth_gib, "error": x.error}
                for x in outcome.batches]
    par = after.parallelism
    extrapolated = {"world_size": par.world_size, "nodes": par.nodes, "device_batch_size": par.device_batch_size,
                    "grad_accum_steps": par.grad_accum_steps, "step_seconds": after.time.step_seconds,
                    "step_seconds_uncalibrated": before.time.step_seconds, "mfu": after.time.mfu,
                    "calibration": after.calibration.status, "memory_source": after.memory.source,
                    "peak_allocated_gib": after.memory.peak_allocated_gib,
                    "peak_device_gib": after.memory.peak_device_gib}
    if json_out:
        print_json({"measured_on": outcome.measured_on, "device_type": outcome.device_type,
                    "memory_measure": outcome.memory_measure, "compile": outcome.compile, "threads": outcome.threads,
                    "torch_version": outcome.torch_version, "batches": measured,
                    "largest_fitting_batch": largest, "calibration_file": str(path) if path else None,
                    "points_recorded": len([x for x in outcome.batches if x.fit]) if path else 0,
                    "plan": extrapolated})
        return
    say.write(f"\nmeasured on {outcome.measured_on} (torch {outcome.torch_version}, "
              f"{'compiled' if outcome.compile else 'eager'}):\n")
    for x in outcome.batches:
        if not x.fit:
            say.write(f"  batch {x.device_batch_size}: out of memory ({x.error})\n")
            continue
        mem = (f"allocated {x.max_allocated_gib:.2f} GiB, reserved {x.max_reserved_gib:.2f} GiB, device "
               f"{x.device_used_gib:.2f} GiB" if outcome.device_type == "cuda" else
               f"peak RSS {x.peak_rss_gib:.3f} GiB (+{x.rss_growth_gib:.3f} GiB over the process before the model)")
        say.write(f"  batch {x.device_batch_size}: {x.step_seconds:.4f} s/step, {x.tokens_per_second:,.0f} tok/s; "
                  f"{mem}\n")
    say.write(f"  largest batch that fit: {largest or 'none'}\n")
    if outcome.device_type != "cuda":
        say.write("  memory on a CPU: process RSS (it counts the interpreter and libraries), not the plan's "
                  "allocated figure; CPU points calibrate time only\n")
    say.write(f"extrapolated by the model to the plan: {par.world_size} rank(s) on {par.nodes} node(s), device batch "
              f"{par.device_batch_size} x accumulation {par.grad_accum_steps}: step {after.time.step_seconds:.4f} s "
              f"(uncalibrated {before.time.step_seconds:.4f} s), MFU {after.time.mfu:.2%}\n")
    say.write(f"  {after.calibration.status}\n")
    if after.memory.source != "model":
        say.write(f"  {after.memory.source}: allocated {after.memory.peak_allocated_gib:.2f} GiB, "
                  f"device {after.memory.peak_device_gib:.2f} GiB\n")
    if path:
        say.write(f"recorded {len([x for x in outcome.batches if x.fit])} point(s) -> {path} ({recorded} points)\n")
    else:
        say.write("recorded nothing (--calibration none)\n")
